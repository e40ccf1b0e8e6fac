"""Parquet inputs stream through the columnar reader a batch at a time (issue 16): over
real HTTP to the sandbox, the same prospects, counts and rejects as the same rows as a
CSV and as the per-row loop (``--columnar never``), with batches small enough that a
file of a few hundred rows is many of them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_columnar_inputs import _prepare
from test_compressed import landed, shandy

from shandy_cli.errors import InputError
from shandy_cli.pipeline._readers import columnar_files
from shandy_cli.pipeline.columnar import sheet
from shandy_cli.pipeline.sources import open_source
from shandy_cli.sandbox import Sandbox

BATCH = 64  # rows per batch here: a file of N rows is N / 64 batches
HEADER = ["Email", "First Name", "Company", "Phone Number", "Lead Source"]
ESCAPING = ['say "hi"', "back\\slash", "tab\there", "line\nbreak", "ctl\x1fchar"]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar_files, "BATCH_ROWS", BATCH)


def leads(n: int = 300) -> list[list[str | None]]:
    """Rows with an implausible address, a repeat and an empty one; no escapes yet."""
    rows: list[list[str | None]] = []
    for i in range(n):
        email: str | None = f"person{i}@example.com"
        if i % 41 == 7:
            email = "not-an-address"
        if i % 53 == 20:
            email = "PERSON3@example.com"  # a repeat of row 4
        if i % 97 == 50:
            email = None
        rows.append([email, f"Ann {i}", f"Acme {i % 4}", str(5550000000 + i), f"src{i % 3}"])
    return rows


def write(rows: list[list[str | None]], folder: Path, ext: str) -> Path:
    folder.mkdir(exist_ok=True)
    columns = {h: [r[i] for r in rows] for i, h in enumerate(HEADER)}
    frame = pl.DataFrame(columns, schema=dict.fromkeys(HEADER, pl.String))
    path = folder / f"leads.{ext}"
    if ext == "parquet":
        frame.write_parquet(path, row_group_size=50)  # row groups across the batches' edges
    else:
        frame.write_csv(path)
    return path


def imported(factory: Callable[..., Sandbox], path: Path, way: str) -> dict[str, Any]:
    """Import ``path`` into a sandbox of its own: counts, prospects landed, rejects."""
    where = path.parent / f"run-{way}"
    where.mkdir()
    box = factory(state_dir=where / "sandbox")
    env = {"SALESHANDY_BASE_URL": box.url, "SALESHANDY_API_KEY": "k", "SHANDY_COLUMNAR": way}
    ran = shandy(where, "import", str(path), "--step", "StepA1", "--json",
                 "--poll-interval", "0.05", env=env)  # fmt: skip
    doc = json.loads(ran.stdout)
    assert doc["completed"] and doc["rows_failed"] == 0, ran.stderr
    keys = ("rows_read", "rows_submitted", "rows_rejected", "rows_skipped", "exit_code")
    rejects = Path(doc["rejects_file"]).read_text("utf-8") if doc.get("rejects_file") else ""
    return {
        "counts": {k: doc[k] for k in keys},
        "landed": landed(box),
        "rejects": rejects.replace(str(path), "FILE"),
    }


def test_a_multi_batch_parquet_sends_what_a_csv_and_the_row_loop_send(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    rows = leads()
    parquet = write(rows, tmp_path / "pq", "parquet")
    fast = imported(sandbox_factory, parquet, "always")
    assert fast["counts"]["rows_read"] == 300 and len(fast["landed"]) > 250
    assert fast == imported(sandbox_factory, parquet, "never")
    assert fast == imported(sandbox_factory, write(rows, tmp_path / "csv", "csv"), "always")


def test_escapes_first_seen_in_a_late_batch_are_encoded(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """Batches 1-3 hold no character JSON escapes; batch 4 holds them, in two columns
    (one of which held none before), batch 5 again none."""
    rows = leads()
    for k, i in enumerate(range(4 * BATCH - 30, 4 * BATCH - 30 + 2 * len(ESCAPING))):
        rows[i][4] = ESCAPING[k % len(ESCAPING)]
        rows[i][2] = ESCAPING[(k + 1) % len(ESCAPING)] if k % 2 else rows[i][2]
    parquet = write(rows, tmp_path / "pq", "parquet")
    fast = imported(sandbox_factory, parquet, "always")
    sent = "".join(fast["landed"])
    assert all(json.dumps(text)[1:-1] in sent for text in ESCAPING)  # landed as sent
    assert fast == imported(sandbox_factory, parquet, "never")
    assert fast == imported(sandbox_factory, write(rows, tmp_path / "csv", "csv"), "always")


def test_a_nul_in_batch_two_hands_over_at_its_row(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    rows = leads()
    rows[BATCH + 10][4] = "a\x00b"  # the row loop rejects it (base.repair_undecodable)
    parquet = write(rows, tmp_path / "pq", "parquet")
    fast = imported(sandbox_factory, parquet, "always")
    assert f",{BATCH + 11}," in fast["rejects"] and "a NUL character" in fast["rejects"]
    assert fast == imported(sandbox_factory, parquet, "never")
    # the rows before it went the fast way, the rest row by row
    got = _prepare(parquet, tmp_path / "prep-fast", "always")
    assert got[-1] == BATCH + 10
    assert got[:-1] == _prepare(parquet, tmp_path / "prep-slow", "never")[:-1]


@pytest.mark.parametrize("skip", [0, 1, BATCH - 1, BATCH, BATCH + 10, 299, 300, 400])
def test_after_a_handover_the_row_loop_starts_at_the_row_not_the_file(
    tmp_path: Path, skip: int
) -> None:
    """``skip_first``: the rows the columnar path committed are not cast again (a late
    NUL in a large file would otherwise be read twice); the rest are the same rows."""
    path = write(leads(), tmp_path / "pq", "parquet")
    with open_source(str(path)) as src:
        every = [(row.number, row.values) for row in src.rows()]
    with open_source(str(path)) as src:
        src.skip_first(skip)
        rest = [(row.number, row.values) for row in src.rows()]
        assert src.progress_bytes(done=True) == src.info.size
    assert rest == every[skip:]


@pytest.mark.parametrize("values", ["late", "none"])
def test_a_trailing_unnamed_column_is_read_as_the_row_loop_reads_it(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path, values: str
) -> None:
    """A column with an empty name past the header's (an export's stray one): dropped from
    the header; a row with a value there is rejected, by the fast path as by the row loop
    (it hands over at that row), and a column of nulls or empties changes nothing."""
    rows = leads()
    extra = [None] * len(rows)
    if values == "late":
        extra[2 * BATCH + 5] = "stray"
        extra[2 * BATCH + 9] = " "  # blank: nothing there, as for a CSV's trailing comma
    (tmp_path / "pq").mkdir()
    path = tmp_path / "pq" / "leads.parquet"
    columns = {h: [r[i] for r in rows] for i, h in enumerate(HEADER)}
    pl.DataFrame({**columns, "": extra}, schema={**dict.fromkeys(HEADER, pl.String), "": pl.String}
                 ).write_parquet(path, row_group_size=50)  # fmt: skip
    fast = imported(sandbox_factory, path, "always")
    assert fast == imported(sandbox_factory, path, "never")
    stray = "row has 6 values but the header has 5 columns"
    assert (stray in fast["rejects"]) is (values == "late")


def test_an_all_null_row_is_a_row_as_the_row_loop_reads_it(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """A Parquet row of nulls is a row (rejected: no address), not a blank line to skip."""
    rows = leads()
    rows[BATCH * 2 + 5] = [None] * len(HEADER)
    parquet = write(rows, tmp_path / "pq", "parquet")
    fast = imported(sandbox_factory, parquet, "always")
    slow = imported(sandbox_factory, parquet, "never")
    assert fast == slow
    assert fast["counts"]["rows_read"] == 300
    assert f",{BATCH * 2 + 6}," in fast["rejects"]  # its row number, in the rejects


def test_progress_reaches_the_whole_file(tmp_path: Path) -> None:
    parquet = write(leads(), tmp_path / "pq", "parquet")
    with columnar_files.ColumnarFileSource(
        str(parquet), head=b"PAR1", path=str(parquet), name="x", fmt="parquet", size=1000
    ) as src:
        seen = []
        for frame in src.text_batches():
            assert frame.columns == [f"c{i}" for i in range(len(HEADER))]
            seen.append(src.bytes_read)
        assert seen == sorted(seen) and seen[0] < 1000 / 2
        assert src.bytes_read == 1000


_cells = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "x", "a@b.test", "A@B.test", *ESCAPING, "n\x00ul"]),
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(st.lists(_cells, min_size=5, max_size=5), min_size=1, max_size=40),
    batch=st.integers(1, 9),
    block=st.integers(1, 9),
)
def test_any_batches_give_the_row_loops_output(
    tmp_path_factory: pytest.TempPathFactory,
    data: list[list[str | None]],
    batch: int,
    block: int,
) -> None:
    """Whatever the rows and wherever the batches and blocks are cut: the bodies, keys,
    rejects and sent index of the fast path are the row loop's, byte for byte."""
    folder = tmp_path_factory.mktemp("h")
    parquet = write(data, folder, "parquet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(columnar_files, "BATCH_ROWS", batch)
        mp.setattr(sheet, "SHEET_BLOCK", block)
        fast = _prepare(parquet, folder / "fast", "always")
    slow = _prepare(parquet, folder / "slow", "never")
    assert fast[:-1] == slow[:-1]


@pytest.mark.parametrize("how", ["renamed over", "rewritten", "removed"])
def test_a_parquet_replaced_while_it_is_read_is_refused_not_mixed(tmp_path: Path, how: str) -> None:
    """A scan opens the file again at each batch: a nightly export renamed over it mid-read
    would otherwise give the first batches of one export and the rest of another."""
    path = write(leads(), tmp_path / "pq", "parquet")
    newer = write([[f"new{i}@example.com", "B", "C", "1", "s"] for i in range(300)],
                  tmp_path / "next", "parquet")  # fmt: skip
    with open_source(str(path)) as src:
        rows = src.rows()
        first = [next(rows) for _ in range(BATCH)]
        assert first[0].values[0] == "person0@example.com"
        if how == "renamed over":
            os.replace(newer, path)
        elif how == "rewritten":
            path.write_bytes(newer.read_bytes())
        else:
            path.unlink()
        with pytest.raises(InputError, match="changed while it was being read"):
            list(rows)
