"""Parquet, Arrow IPC / Feather and JSON-array inputs: values spelled as the contract says,
read a batch at a time, rows numbered and accounted for as a CSV's."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from incli import Ran, run_cli

from shandy_cli.errors import InputError
from shandy_cli.pipeline._readers import columnar_files
from shandy_cli.pipeline.sources import open_source


def shandy(tmp_path: Path, *args: str, stdin: bytes | None = None) -> Ran:
    env = {"SHANDY_STATE_DIR": str(tmp_path / "state"), "SHANDY_SANDBOX_DELAY": "0.05"}
    return run_cli(*args, cwd=tmp_path, env=env, stdin=stdin)


def values(path: Path | str, **kw: object) -> list[list[str]]:
    with open_source(str(path), **kw) as src:  # type: ignore[arg-type]
        return [row.values for row in src.rows()]


TYPED = pl.DataFrame(
    {
        "Email": ["a@x.test", "b@x.test", None],
        "Phone": pl.Series([1234567890, None, -5], dtype=pl.Int64),
        "Score": [3.0, 0.1 + 0.2, None],
        "Big": [1e20, 2.5, None],
        "Joined": [dt.date(2024, 1, 2), None, dt.date(1999, 12, 31)],
        "Seen": [dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 2, 3, 4, 5, 600), None],
        "Active": [True, False, None],
        "Price": pl.Series(
            [decimal.Decimal("12.00"), decimal.Decimal("1.50"), None], dtype=pl.Decimal(10, 2)
        ),
        "Tier": pl.Series(["gold", None, "gold"], dtype=pl.Categorical),
        "At": [dt.time(9, 30), None, dt.time(0, 0, 1)],
        "Nothing": pl.Series([None, None, None], dtype=pl.Null),
    }
)
SPELLED = [
    ["a@x.test", "1234567890", "3", "1e+20", "2024-01-02", "2024-01-02", "true", "12", "gold",
     "09:30:00", ""],
    ["b@x.test", "", "0.3", "2.5", "", "2024-01-02 03:04:05", "false", "1.5", "", "", ""],
    ["", "-5", "", "", "1999-12-31", "", "", "", "gold", "00:00:01", ""],
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "feather", "arrow"])
def test_typed_values_are_spelled_as_the_contract_says(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"typed.{fmt}"
    if fmt == "parquet":
        TYPED.write_parquet(path)
    else:
        TYPED.write_ipc(path)
    assert values(path) == SPELLED


def test_json_array_values(tmp_path: Path) -> None:
    path = tmp_path / "leads.json"
    doc = [
        {"Email": "a@x.test", "Phone": 1234567890, "Active": True, "Score": 2.0},
        {"Email": "b@x.test", "Active": False, "Score": 0.5, "Extra": None},
        {"Phone": 7, "Email": "c@x.test"},
    ]
    path.write_text(json.dumps(doc))
    with open_source(str(path)) as src:
        assert src.info.columns == ["Email", "Phone", "Active", "Score", "Extra"]
        assert [r.values for r in src.rows()] == [
            ["a@x.test", "1234567890", "true", "2", ""],
            ["b@x.test", "", "false", "0.5", ""],
            ["c@x.test", "7", "", "", ""],
        ]


def test_row_groups_are_read_a_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many row groups, small batches: every row once, in order, numbered from 1."""
    monkeypatch.setattr(columnar_files, "BATCH_ROWS", 7)
    n = 100
    frame = pl.DataFrame({"Email": [f"p{i}@x.test" for i in range(n)], "N": list(range(n))})
    path = tmp_path / "many.parquet"
    frame.write_parquet(path, row_group_size=10)
    seen: list[int] = []
    with open_source(str(path)) as src:
        assert isinstance(src, columnar_files.ColumnarFileSource) and src.total == n
        batches = list(src.batches())
        assert max(b.height for b in batches) == 7
    with open_source(str(path)) as src:
        for row in src.rows():
            seen.append(row.number)
            assert row.values == [f"p{row.number - 1}@x.test", str(row.number - 1)]
        assert src.bytes_read == path.stat().st_size
    assert seen == list(range(1, n + 1))


def test_rejects_and_counts_match_a_csv(tmp_path: Path) -> None:
    rows = [["a@x.test", "Ann"], ["bad", "Bob"], ["", "Cy"], ["A@X.test", "Dup"], ["d@x.test", ""]]
    frame = pl.DataFrame({"Email": [r[0] for r in rows], "First Name": [r[1] for r in rows]})
    frame.write_parquet(tmp_path / "leads.parquet")
    frame.write_csv(tmp_path / "leads.csv")
    docs = {}
    for name in ("leads.parquet", "leads.csv"):
        ran = shandy(tmp_path, "import", name, "--sandbox", "--step", "StepA1", "--json",
                     "--rejects", f"{name}.rejects.csv")  # fmt: skip
        assert ran.returncode == 1, ran.stderr
        doc = json.loads(ran.stdout)
        docs[name] = doc
        rejects = (tmp_path / f"{name}.rejects.csv").read_text(encoding="utf-8")
        docs[name + "rejects"] = rejects.replace(name, "FILE")
    keys = ("rows_read", "rows_submitted", "rows_rejected", "rows_skipped", "exit_code")
    assert [docs["leads.parquet"][k] for k in keys] == [docs["leads.csv"][k] for k in keys]
    assert [docs["leads.parquet"][k] for k in keys[:4]] == [5, 2, 3, 0]
    assert docs["leads.parquetrejects"] == docs["leads.csvrejects"]


def test_sniffed_from_stdin_and_read_whole(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pl.DataFrame({"Email": ["a@x.test", "b@x.test"]}).write_ipc(buf)
    for data in (buf.getvalue(), b'[{"Email": "a@x.test"}, {"Email": "b@x.test"}]'):
        ran = shandy(tmp_path, "preview", "-", "--json", stdin=data)
        assert ran.returncode == 0, ran.stderr
        doc = json.loads(ran.stdout)
        assert doc["format"] in ("ipc", "json")
        assert [r["Email"] for r in doc["rows"]] == ["a@x.test", "b@x.test"]


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b'{"Email": "a@x.test"}', "must be one array of objects"),
        (b'[{"Email": "a@x.test"}, {"Email": ', "cannot read the JSON array"),
        (b'[{"Email": "a@x.test", "Where": {"city": "Oslo"}}]', "holds nested values"),
        (b'[{"Email": "a@x.test", "Tags": ["a", "b"]}]', "holds nested values"),
        (b"[1, 2, 3]", "must be one array of objects"),
        (b"Email\na@x.test\n", "this is not a JSON array"),
    ],
)
def test_bad_json_is_one_clear_line(tmp_path: Path, content: bytes, said: str) -> None:
    (tmp_path / "leads.json").write_bytes(content)
    ran = shandy(tmp_path, "import", "leads.json", "--sandbox", "--step", "StepA1", "--dry-run")
    assert ran.returncode == 2, ran.stderr
    assert said in ran.stderr and "Traceback" not in ran.stderr


def test_empty_array_and_empty_file_have_no_rows(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"[]")
    (tmp_path / "b.parquet").write_bytes(b"")
    for name in ("a.json", "b.parquet"):
        with open_source(str(tmp_path / name)) as src:
            assert src.info.columns == [] and list(src.rows()) == []


def test_a_json_array_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar_files, "MEMORY_MAX_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"Email": f"p{i}@x.test"} for i in range(20)]))
    with pytest.raises(InputError, match="read whole, and may be at most"):
        open_source(str(path))


def test_binary_and_feather_v1_are_refused(tmp_path: Path) -> None:
    pl.DataFrame({"Email": ["a@x.test"], "Blob": [b"\x00\x01"]}).write_parquet(
        tmp_path / "b.parquet"
    )
    with pytest.raises(InputError, match="'Blob' holds binary values"):
        open_source(str(tmp_path / "b.parquet"))
    (tmp_path / "old.feather").write_bytes(b"FEA1" + b"\0" * 64)
    with pytest.raises(InputError, match="Feather version 1"):
        open_source(str(tmp_path / "old.feather"))
    (tmp_path / "x.parquet").write_bytes(b"email\na@x.test\n")
    with pytest.raises(InputError, match="this is not a Parquet file"):
        open_source(str(tmp_path / "x.parquet"))


def test_a_compressed_parquet_file_is_read(tmp_path: Path) -> None:
    import gzip

    buf = io.BytesIO()
    TYPED.write_parquet(buf)
    (tmp_path / "typed.parquet.gz").write_bytes(gzip.compress(buf.getvalue()))
    assert values(tmp_path / "typed.parquet.gz") == SPELLED


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ints=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=1, max_size=30),
    texts=st.data(),
)
def test_values_survive_as_text(
    tmp_path: Path, ints: list[int | None], texts: st.DataObject
) -> None:
    """Any integers and strings: each value read back is the one written, as text."""
    strings = texts.draw(
        st.lists(
            st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"]))),
            min_size=len(ints),
            max_size=len(ints),
        )
    )
    path = tmp_path / "h.parquet"
    pl.DataFrame({"I": pl.Series(ints, dtype=pl.Int64), "S": strings}).write_parquet(path)
    got = values(path)
    want = [
        ["" if i is None else str(i), "" if s is None else s.replace("\x00", "\ufffd")]
        for i, s in zip(ints, strings, strict=True)
    ]
    assert got == want


# -- the columnar reader's sheet path, against the per-row loop ------------------------------


def _prepare(path: Path, out: Path, way: str) -> tuple[object, ...]:
    from shandy_cli.pipeline.prepare import PrepareContext, prepare
    from shandy_cli.pipeline.results import ImportOptions

    run_dir = out / "run"
    run_dir.mkdir(parents=True)
    ctx = PrepareContext(
        paths=[str(path)],
        opts=ImportOptions(step_id="S1", columnar=way),
        labels=["Email", "First Name", "Company", "Phone Number", "Lead Source"],
        step_id="S1",
        run_dir=run_dir,
        rejects_path=out / "rejects.csv",
        listener=lambda e: None,
        notice=lambda text, level: None,
    )
    got = prepare(ctx)
    return (
        (got.rows_read, got.rows_submitted, got.rows_rejected, got.rows_skipped),
        [c.path.read_bytes() if c.path else None for c in got.chunks],
        [got.keys_path(c).read_bytes() for c in got.chunks if c.path],
        got.rejects_file.read_bytes() if got.rejects_file else None,
        (run_dir / "sent.idx").read_bytes(),
        got.rows_columnar,
    )


NOTES = [
    'say "hi"',
    "a,b",
    "tab\there",
    "back\\slash",
    "line\nbreak",
    "  padded  ",
    "é🙂",
    "",
    None,
]


@pytest.mark.parametrize("fmt", ["parquet", "feather", "json"])
@pytest.mark.parametrize("nul", [False, True])
def test_sheet_path_sends_what_the_row_loop_sends(tmp_path: Path, fmt: str, nul: bool) -> None:
    n = 3000
    emails = [f"user{i}@example.test" for i in range(n)]
    emails[5], emails[9], emails[11] = "bad", " USER3@Example.TEST ", None  # type: ignore[call-overload]
    notes = [NOTES[i % len(NOTES)] for i in range(n)]
    if nul:
        notes[2000] = "a\x00b"  # the fast path hands over to the row loop at that row
    frame = pl.DataFrame(
        {
            "Email": emails,
            "First Name": [f"Ann{i}" if i % 7 else "" for i in range(n)],
            "Phone Number": pl.Series([5550000000 + i if i % 5 else None for i in range(n)]),
            "Lead Source": notes,
        }
    )
    path = tmp_path / f"leads.{fmt}"
    if fmt == "parquet":
        frame.write_parquet(path, row_group_size=500)
    elif fmt == "feather":
        frame.write_ipc(path)
    else:
        path.write_text(json.dumps(frame.to_dicts()))
    fast = _prepare(path, tmp_path / "fast", "always")
    slow = _prepare(path, tmp_path / "slow", "never")
    assert slow[-1] == 0
    assert fast[-1] == (2000 if nul else n)  # rows 1..2000 went the fast way
    assert fast[:-1] == slow[:-1]
