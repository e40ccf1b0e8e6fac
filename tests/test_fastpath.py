"""The columnar reader (pipeline/columnar/) against the per-row path, byte for byte.

Each case runs ``prepare()`` twice on the same inputs -- ``columnar="always"``
(whatever the size) and ``"never"`` (per-row only) -- and compares the chunk
bodies, chunk keys, digests, the sent index, the rejects file and the counts,
and pins how many rows the columnar reader committed.  Blocks are made small so
files span many blocks and a handover happens mid-file.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shandy_cli.errors import ShandyError
from shandy_cli.pipeline import columnar
from shandy_cli.pipeline.columnar import framing
from shandy_cli.pipeline.events import ReadProgress
from shandy_cli.pipeline.mapping import PY_WS, UNIT_SEPARATORS
from shandy_cli.pipeline.prepare import PrepareContext, Prepared, prepare
from shandy_cli.pipeline.results import ImportOptions
from shandy_cli.pipeline.validation import email_key

LABELS = ["First Name", "Last Name", "Email", "Company", "Industry", "Lead Source"]
HEADER = ["First Name", "Last Name", "Email", "Company", "Lead Source"]


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(framing, "BLOCK", 1 << 12)  # many blocks per file
    yield


WAYS = {"0": "never", "1": "always", "auto": "auto"}


def run(
    paths: list[Path],
    out: Path,
    way: str,
    monkeypatch: pytest.MonkeyPatch,
    skip: set[int] | None = None,
    events: list[object] | None = None,
    spools: dict[int, Path] | None = None,
    field_types: dict[str, str] | None = None,
    **options: Any,
) -> tuple[Prepared, Path]:
    run_dir = out / "run"
    run_dir.mkdir(parents=True)
    ctx = PrepareContext(
        paths=[str(p) for p in paths],
        opts=ImportOptions(step_id="S1", columnar=WAYS[way], **options),
        labels=LABELS,
        step_id="S1",
        run_dir=run_dir,
        rejects_path=out / "rejects.csv",
        listener=(events.append if events is not None else lambda e: None),
        notice=lambda text, level: None,
        skip_keys=skip or set(),
        spools=spools or {},
        field_types=field_types or {},
    )
    return prepare(ctx), run_dir


def snapshot(result: Prepared, run_dir: Path) -> dict[str, object]:
    return {
        "counts": (
            result.rows_read,
            result.rows_submitted,
            result.rows_rejected,
            result.rows_skipped,
        ),
        "reasons": dict(result.reasons),
        "plan": [(c.index, c.rows, c.bytes, c.first, c.last) for c in result.chunks],
        "chunks": [c.path.read_bytes() if c.path else None for c in result.chunks],
        "keys": [result.keys_path(c).read_bytes() if c.path else None for c in result.chunks],
        "digests": result.digests,
        "sent": (run_dir / "sent.idx").read_bytes(),
        "rejects": result.rejects_file.read_bytes() if result.rejects_file else None,
        "columnar": result.rows_columnar,
    }


def compare(
    paths: list[Path], tmp: Path, monkeypatch: pytest.MonkeyPatch, columnar: int | None, **kw: Any
) -> dict[str, object]:
    """Both ways give the same output; ``columnar``: how many rows went the columnar way
    (None only for generated data, where no fixed count exists)."""
    try:
        slow = snapshot(*run(paths, tmp / "slow", "0", monkeypatch, **kw))
    except ShandyError as exc:  # a file-level error must be the same error either way
        with pytest.raises(type(exc)) as fast_exc:
            run(paths, tmp / "fast", "1", monkeypatch, **kw)
        assert str(fast_exc.value) == str(exc)
        return {}
    fast = snapshot(*run(paths, tmp / "fast", "1", monkeypatch, **kw))
    assert slow["columnar"] == 0
    if columnar is not None:
        assert fast["columnar"] == columnar
    for key in slow.keys() - {"columnar"}:
        assert fast[key] == slow[key], key
    # A dry run, either way, plans what the real run made -- without writing a body.
    for way in "01":
        plan = snapshot(*run(paths, tmp / f"plan{way}", way, monkeypatch, dry_run=True, **kw))
        assert plan["columnar"] == (fast["columnar"] if way == "1" else 0)
        assert plan["chunks"] == plan["keys"] == [None] * len(slow["plan"])  # type: ignore[arg-type]
        assert not list((tmp / f"plan{way}" / "run").glob("chunks/*"))
        for key in ("counts", "reasons", "plan", "rejects"):
            assert plan[key] == slow[key], (way, key)
    return fast


def rows(n: int, seed: int = 1) -> list[list[str]]:
    rng = random.Random(seed)
    notes = ['say "hi"', "a,b", "tab\there", "back\\slash", "line\nbreak", "  padded  ", "é🙂"]
    out = []
    for i in range(n):
        email = f"user{i}@example.test"
        roll = rng.random()
        if roll < 0.03:
            email = rng.choice(["bad", "a@b", " ", "x y@z.test", "ü@exämple.test", "a_b@c_d.test"])
        elif roll < 0.06 and i:
            email = f"  USER{rng.randrange(i)}@Example.TEST "
        out.append(
            [
                f"Ann{i}",
                rng.choice(["", "Lee", " Ng "]),
                email,
                rng.choice(["", "Acme, Inc."]),
                rng.choice(notes) if rng.random() < 0.5 else "",
            ]
        )
    return out


def csv_bytes(header: list[str], data: list[list[str]], **dialect: Any) -> bytes:
    text = io.StringIO()
    csv.writer(text, **dialect).writerows([header, *data])
    return text.getvalue().encode()


BASE = rows(3000)
GOOD = csv_bytes(HEADER, BASE, lineterminator="\n")
CUT = GOOD.index(b"\n", len(GOOD) // 2) + 1
EARLY = GOOD.index(b"\n", 20000) + 1


WIN = GOOD.decode().replace("🙂", "€").encode("cp1252")  # as Excel on Windows saves it
WIN_CUT = WIN.index(b"\n", len(WIN) // 2) + 1


def mid(extra: bytes) -> bytes:
    return GOOD[:CUT] + extra + GOOD[CUT:]


CASES: dict[str, tuple[bytes, dict[str, Any], str]] = {
    # name: (file bytes, options, extension)
    "crlf": (csv_bytes(HEADER, BASE, lineterminator="\r\n"), {}, "csv"),
    "lf": (GOOD, {}, "csv"),
    "semicolon": (csv_bytes(HEADER, BASE, delimiter=";", lineterminator="\n"), {}, "csv"),
    "tab": (csv_bytes(HEADER, BASE, delimiter="\t", lineterminator="\n"), {}, "csv"),
    "tsv": (csv_bytes(HEADER, BASE, delimiter="\t", lineterminator="\n"), {}, "tsv"),
    "quote-all": (
        csv_bytes(HEADER, BASE, quoting=csv.QUOTE_ALL, lineterminator="\n"),
        {},
        "csv",
    ),
    "small-chunks": (GOOD, {"max_rows": 70}, "csv"),
    "byte-limit": (GOOD, {"max_bytes": 5_000}, "csv"),
    "set-constant": (GOOD, {"constants": {"Industry": 'Retail "EU"'}}, "csv"),
    "set-mapped": (GOOD, {"constants": {"Company": "Fixed"}}, "csv"),
    "map-explicit": (GOOD, {"column_map": {"Lead Source": "Industry"}}, "csv"),
    "bom": (b"\xef\xbb\xbf" + GOOD, {}, "csv"),
    "blank-lines": (
        GOOD.replace(b"\n", b"\n\n", 40).replace(b"\n\n", b"\n,,,,\n", 10),
        {},
        "csv",
    ),
    "no-final-newline": (GOOD.rstrip(b"\n"), {}, "csv"),
    "stray-quote-mid": (mid(b'Bo,"Smith"x,b@example.test,,\n'), {}, "csv"),
    "ragged-long-mid": (mid(b"Bo,Li,c@example.test,,,extra\n"), {}, "csv"),
    "ragged-short": (mid(b"Bo,Li,d@example.test\n"), {}, "csv"),
    "ragged-empty-extra": (mid(b"Bo,Li,d2@example.test,,,,\n"), {}, "csv"),
    "lone-cr": (mid(b"Bo,Li\r,e@example.test,,\n"), {}, "csv"),
    "cp1252": (GOOD.decode().replace("🙂", "").encode("cp1252"), {}, "csv"),
    # \x81 is not a cp1252 character: the per-row path reports it from that block on
    "cp1252-undefined-byte-mid": (
        WIN[:WIN_CUT] + b"Bo,\x81,u@example.test,,\n" + WIN[WIN_CUT:],
        {"encoding": "cp1252"},
        "csv",
    ),
    # Excel's "Unicode Text": UTF-16 LE with a BOM, tab-separated
    "utf-16-tsv": (
        b"\xff\xfe"
        + csv_bytes(HEADER, BASE, delimiter="\t", lineterminator="\r\n")
        .decode()
        .encode("utf-16-le"),
        {},
        "txt",
    ),
    "utf-16-be-no-bom": (GOOD.decode().encode("utf-16-be"), {"encoding": "utf-16-be"}, "csv"),
    "utf-16-be-bom": (b"\xfe\xff" + GOOD.decode().encode("utf-16-be"), {}, "csv"),
    # a lone surrogate: the per-row path rejects its row as undecodable
    "utf-16-lone-surrogate-mid": (
        GOOD[:CUT].decode().encode("utf-16-le")
        + "Bo,".encode("utf-16-le")
        + b"\x00\xd8"
        + ",u@example.test,,\n".encode("utf-16-le")
        + GOOD[CUT:].decode().encode("utf-16-le"),
        {"encoding": "utf-16-le"},
        "csv",
    ),
    # latin-1 has C1 controls: U+0085 is whitespace to str.strip()
    "latin-1-nel": (
        GOOD.decode().replace("🙂", "\x85").replace("Acme", "Acmé\xa0").encode("latin-1"),
        {"encoding": "latin-1"},
        "csv",
    ),
    "bad-utf8-mid": (mid(b"Bo,\xff\xfe,f@example.test,,\n"), {}, "csv"),
    "control-chars": (mid(b"Bo,\x01\x02,g@example.test,,\x1f\n"), {}, "csv"),
    "whitespace-line": (mid(b"   \n"), {}, "csv"),
    "quoted-newlines": (mid(b'"Multi\nLine","x\r\ny",h@example.test,"a\n\nb",\n'), {}, "csv"),
    "nul-in-a-value-mid": (mid(b"Bo,Li,nul@example.test,Ac\x00me,\n"), {}, "csv"),
    # within the first 64 KB, which the reader samples to tell text from binary data
    "nul-in-a-value-early": (
        GOOD[:EARLY] + b"Bo,Li,nul@example.test,Ac\x00me,\n" + GOOD[EARLY:],
        {},
        "csv",
    ),
    "oversize-row": (
        mid(b"Bo,Li,big@example.test,," + b"x" * 6000 + b"\n"),
        {"max_bytes": 5_000},
        "csv",
    ),
}


# Rows the columnar reader commits in each case (4 KB blocks): all 3000 (3001 with the
# extra row), 0 where it declines up front, or those before the block it hands over at.
HANDED_OVER = 1481  # the rows before the block holding the odd record inserted by mid()
COLUMNAR_ROWS = {
    **dict.fromkeys(CASES, 3000),
    **dict.fromkeys(["ragged-short", "control-chars", "whitespace-line"], 3001),
    **dict.fromkeys(["quoted-newlines", "oversize-row"], 3001),
    **dict.fromkeys(["stray-quote-mid", "ragged-long-mid", "ragged-empty-extra"], HANDED_OVER),
    **dict.fromkeys(["lone-cr", "bad-utf8-mid", "nul-in-a-value-mid"], HANDED_OVER),
    "set-mapped": 0,  # a --set constant for a mapped label: plan_problem declines
    "cp1252-undefined-byte-mid": 1490,  # its own bytes: the block cut falls elsewhere
    "utf-16-lone-surrogate-mid": 1488,
    "nul-in-a-value-early": 378,  # the blocks before the one holding it (~20 KB in)
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_output(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, options, ext = CASES[name]
    path = tmp_path / f"{name}.{ext}"
    path.write_bytes(data)
    compare([path], tmp_path, monkeypatch, COLUMNAR_ROWS[name], **options)


@pytest.mark.parametrize("name", ["nul-in-a-value-mid", "nul-in-a-value-early"])
def test_a_nul_byte_rejects_its_row_only(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Either way (the columnar reader hands the block over), the row holding a NUL is
    rejected with its reason and the others are imported -- the file is not refused."""
    data, options, ext = CASES[name]
    path = tmp_path / f"{name}.{ext}"
    path.write_bytes(data)
    got = compare([path], tmp_path, monkeypatch, COLUMNAR_ROWS[name], **options)
    assert got["reasons"] == {
        "duplicate email": 78,
        "invalid email": 65,
        "missing email": 16,
        "a NUL character in column": 1,
    }  # the same as without that row, and one more
    assert got["counts"] == (3001, 2841, 160, 0)
    rejects = got["rejects"].decode()  # type: ignore[union-attr]
    assert ",nul@example.test,Ac\ufffdme,," in rejects  # shown, the NUL replaced
    assert "a NUL character in column 'Company' (binary data?)" in rejects


def test_duplicates_across_files_fast_and_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Columnar, per-row (cp1252), columnar with another column order, a handover
    # mid-file, then the first file again: one dedupe table, one open chunk throughout.
    # File names with parentheses and quotes end up in the duplicate reasons.
    a = tmp_path / "a (1).csv"
    a.write_bytes(GOOD)
    b = tmp_path / "b.csv"
    b.write_bytes(
        csv_bytes(HEADER, rows(800, seed=2), lineterminator="\n")
        + "é,,x@é.test,,\n".encode("cp1252")
    )
    order = [2, 0, 4, 1, 3]
    c = tmp_path / "it's.csv"
    c.write_bytes(
        csv_bytes(
            [HEADER[i] for i in order],
            [[r[i] for i in order] for r in rows(900, seed=3)],
            lineterminator="\n",
        )
    )
    d = tmp_path / "d.csv"
    d.write_bytes(CASES["bad-utf8-mid"][0])
    got = compare([a, b, c, d, a], tmp_path, monkeypatch, 9182, max_rows=500)
    reasons: dict[str, int] = got["reasons"]  # type: ignore[assignment]
    assert sum(n for kind, n in reasons.items() if kind.startswith("duplicate email")) == 7523


def test_stdin_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run.py copies stdin and pipes aside; the columnar path reads that copy.
    spool = tmp_path / "stdin.bin"
    spool.write_bytes(CASES["bad-utf8-mid"][0])
    compare([Path("-")], tmp_path, monkeypatch, HANDED_OVER, spools={0: spool})


def test_only_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(mid(b"Bo,Li,user5@example.test,," + b"x" * 6000 + b"\n"))
    skip = {email_key(f"user{i}@example.test") for i in range(0, 3000, 3)}
    got = compare([path], tmp_path, monkeypatch, 3001, skip=skip, max_bytes=5_000)
    assert got["reasons"]["already imported"] == 951  # type: ignore[index]


def test_columnar_really_runs_and_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(GOOD)
    events: list[object] = []
    prepared, _ = run([path], tmp_path / "x", "1", monkeypatch, events=events)
    assert prepared.rows_columnar == 3000
    progress = [e for e in events if isinstance(e, ReadProgress)]
    assert [e.done for e in progress] == [False] * 32 + [True]  # one a block, then done
    assert (progress[-1].rows, progress[-1].bytes_read) == (3000, len(GOOD))


def numbers_csv(n: int) -> bytes:
    """HEADER's file with "Lead Source" holding numbers, some not numbers, some empty."""
    rng = random.Random(7)
    values = ["12", " -3.5 ", "", "0", "1,000", "twelve", "$5", "1e3", "٣", "7.25"]
    data = [[*row[:4], rng.choice(values)] for row in BASE]
    data[5][2] = data[4][2]  # a duplicate address after a refused value
    return csv_bytes(HEADER, data, lineterminator="\n")


@pytest.mark.parametrize("field_type", ["number", "currency"])
def test_a_column_feeding_a_number_field_reads_row_by_row_with_the_same_result(
    field_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path declines (the per-row check is the rule's one home), so both ways
    give the per-row result: the values that are not numbers rejected."""
    path = tmp_path / "n.csv"
    path.write_bytes(numbers_csv(3000))
    got = compare([path], tmp_path, monkeypatch, 0, field_types={"Lead Source": field_type})
    reasons: dict[str, int] = got["reasons"]  # type: ignore[assignment]
    assert reasons[f'"Lead Source" is a {field_type} field: is not a number'] == 1439


def test_a_number_field_no_column_feeds_keeps_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "n.csv"
    path.write_bytes(numbers_csv(3000))
    got = compare(
        [path],
        tmp_path,
        monkeypatch,
        3000,
        constants={"Industry": "42"},
        field_types={"Industry": "number", "Lead Source": "text"},
    )
    assert got["columnar"] == 3000


def test_plan_problem_names_a_number_field() -> None:
    from shandy_cli.pipeline.mapping import build_mapping

    typed = build_mapping(HEADER, LABELS, field_types={"Company": "currency"})
    assert columnar.plan_problem(typed) == "a column feeds a number or currency field"
    assert columnar.plan_problem(build_mapping(HEADER, LABELS)) is None


def test_small_files_stay_per_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(GOOD)
    monkeypatch.delenv("SHANDY_COLUMNAR", raising=False)
    from shandy_cli.pipeline._readers.base import SourceInfo

    info = SourceInfo(str(path), str(path), "csv", "utf-8", ",", HEADER, len(GOOD))
    assert columnar.columnar_eligible(info, None, str(path)) == "no columns"


_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(list('ab ,;"\n\r\t\\@.é🙂\x01\x00_\x85\u3000')), max_size=12),
    st.sampled_from(["x@y.co", " A@Y.CO ", "x@y.co", "b@é.test", "a_b@c.de", ""]),
    st.text(max_size=8),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.lists(st.lists(_TEXT, min_size=3, max_size=3), min_size=1, max_size=40))
def test_random_csvs(data: list[list[str]], tmp_path_factory: pytest.TempPathFactory) -> None:
    compare_tiny_blocks(random_csv(data).encode(), tmp_path_factory.mktemp("h"))


def random_csv(data: list[list[str]]) -> str:
    return csv_bytes(["Email", "First Name", "Company"], data, lineterminator="\n").decode()


def compare_tiny_blocks(raw: bytes, tmp: Path, **options: Any) -> None:
    """``compare`` on a file of ``raw`` bytes read in 64-byte blocks (hypothesis tests)."""
    path = tmp / "r.csv"
    path.write_bytes(raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(framing, "BLOCK", 64)
        compare([path], tmp, mp, None, **options)


_WIN_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t\\@.é€ß\xa0\x01_ÿ')), max_size=12),
    st.sampled_from(["x@y.co", " A@Y.CO ", "b@é.test", ""]),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.lists(st.lists(_WIN_TEXT, min_size=3, max_size=3), min_size=1, max_size=40),
    junk=st.booleans(),
)
def test_random_cp1252_csvs(
    data: list[list[str]], junk: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """cp1252 bytes transcoded block by block read as the per-row path reads them."""
    raw = random_csv(data).encode("cp1252")
    if junk:  # a byte cp1252 lacks, in the middle
        at = raw.find(b"\n", len(raw) // 2) + 1 or len(raw)
        raw = raw[:at] + b"\x8d@x.co,,\n" + raw[at:]
    compare_tiny_blocks(raw, tmp_path_factory.mktemp("w"), encoding="cp1252")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.lists(st.lists(_TEXT, min_size=3, max_size=3), min_size=1, max_size=40),
    order=st.sampled_from(["utf-16-le", "utf-16-be"]),
)
def test_random_utf16_csvs(
    data: list[list[str]], order: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """UTF-16 (surrogate pairs included) cut on code units, read as the per-row path reads it."""
    raw = ("\ufeff" + random_csv(data)).encode(order)  # a BOM, as Excel writes one
    compare_tiny_blocks(raw, tmp_path_factory.mktemp("u"), encoding="utf-16")


def test_whitespace_list_is_exactly_str_isspace() -> None:
    import sys

    every = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())
    assert every == PY_WS


def test_polars_default_trim_is_str_strip_but_unit_separators() -> None:
    """Blocks without U+001C..U+001F are trimmed by polars' own trim: over every code point,
    it must strip exactly what str.strip() strips (the runtime check samples only a few)."""
    import sys

    import polars as pl

    chars = [chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i <= 0xDFFF]
    chars = [ch for ch in chars if ch not in UNIT_SEPARATORS]
    padded = pl.Series([f"{ch}x{ch}" for ch in chars])
    got = padded.str.strip_chars().to_list()
    assert got == [f"{ch}x{ch}".strip() for ch in chars]


@pytest.mark.parametrize(
    "special",
    [
        "back\\slash",
        "line\nbreak",
        "crlf\r\nbreak",
        "ctrl\x01char",
        'say "hi"',
        "tab\there",
        "unit\x1fsep",
        "\x1c padded by separators \x1d",
        "\u3000 wide \u2028",
        "\x85nel\xa0",
    ],
)
@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_one_kind_of_escape_per_file(
    special: str, delimiter: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks whose only JSON-special character is one kind: the byte count must see it."""
    rng = random.Random(7)
    data = [
        [f"Ann{i}", "Lee", f"u{i}@example.test", "Acme", special if rng.random() < 0.02 else "x"]
        for i in range(2000)
    ]
    path = tmp_path / "one.csv"
    path.write_bytes(csv_bytes(HEADER, data, lineterminator="\n", delimiter=delimiter))
    compare([path], tmp_path, monkeypatch, 2000)  # all of it columnar: nothing handed over


def test_a_small_import_never_loads_polars(tmp_path: Path) -> None:
    """Under "auto" a small CSV is read row by row, and polars (~0.3 s) is never imported."""
    import subprocess
    import sys

    path = tmp_path / "a.csv"
    path.write_bytes(GOOD[:20_000])
    code = f"""
import sys
from pathlib import Path
from shandy_cli.pipeline.prepare import PrepareContext, prepare
from shandy_cli.pipeline.results import ImportOptions
run = Path({str(tmp_path / "run")!r})
run.mkdir()
ctx = PrepareContext(
    paths=[{str(path)!r}], opts=ImportOptions(step_id="S1"), labels={LABELS!r}, step_id="S1",
    run_dir=run, rejects_path=run / "rejects.csv", listener=print, notice=print,
)
prepared = prepare(ctx)
print(prepared.rows_read, prepared.rows_columnar, "polars" in sys.modules, file=sys.stderr)
"""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60
    )
    assert done.stderr.split() == ["461", "0", "False"], done.stderr


def test_reading_choice_takes_the_option_else_the_setting(tmp_path: Path) -> None:
    from shandy_cli.config import Settings, resolve_settings
    from shandy_cli.pipeline.prepare import reading_choice

    def settings(**env: str) -> Settings:
        return resolve_settings(environ=env, dotenv_path=tmp_path / "none", state_dir=tmp_path)

    auto = settings()
    assert reading_choice(ImportOptions(), auto) == {"columnar": "auto", "fastexcel": True}
    off = settings(SHANDY_COLUMNAR="0", SHANDY_FASTEXCEL="0")
    assert reading_choice(ImportOptions(), off) == {"columnar": "never", "fastexcel": False}
    assert reading_choice(ImportOptions(columnar="always", fastexcel=True), off) == {
        "columnar": "always",
        "fastexcel": True,
    }
    (tmp_path / ".env").write_text("SHANDY_COLUMNAR=1\n")
    dotenv = resolve_settings(environ={}, dotenv_path=tmp_path / ".env", state_dir=tmp_path)
    assert reading_choice(ImportOptions(), dotenv)["columnar"] == "always"
    ctx = PrepareContext(
        paths=[],
        opts=ImportOptions(fastexcel=False),
        labels=[],
        step_id=None,
        run_dir=tmp_path,
        rejects_path=tmp_path / "r.csv",
        listener=print,
        notice=print,
        **reading_choice(ImportOptions(), dotenv),
    )
    assert (ctx.columnar_choice, ctx.fastexcel_choice) == ("always", False)


@pytest.mark.parametrize(("dotenv", "columnar"), [("", False), ("SHANDY_COLUMNAR=1\n", True)])
def test_the_columnar_setting_in_dotenv_reaches_the_reader(
    tmp_path: Path, dotenv: str, columnar: bool
) -> None:
    """``import_files`` takes SHANDY_COLUMNAR from ``.env`` to the reader: with it, a small
    CSV is read the columnar way (polars loaded); without it, row by row (never loaded)."""
    import os
    import subprocess
    import sys

    (tmp_path / "a.csv").write_text(
        "First Name,Email\n" + "".join(f"P{i},p{i}@example.test\n" for i in range(300))
    )
    (tmp_path / ".env").write_text(dotenv)
    (tmp_path / ".env").chmod(0o600)
    code = """
import sys
from shandy_cli import import_files
result = import_files(["a.csv"], dry_run=True, step_id="S1", state_dir="state")
print(result.rows_read, result.rows_submitted, "polars" in sys.modules, file=sys.stderr)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHANDY_", "SALESHANDY_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.stderr.split() == ["300", "300", str(columnar)], done.stderr
