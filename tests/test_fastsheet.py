"""Text-only XLSX sheets: fastexcel + the columnar stages give the per-row path's bytes.

The reference is the per-row path over python-calamine (``fastexcel=False``,
``columnar="never"``); the fast way loads the sheet with fastexcel and reads it
with ``columnar.read_sheet``.  Chunk bodies, keys, digests, sent index, rejects
and counts must be identical, and how many rows went the columnar way is pinned.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shandy_cli.pipeline import columnar
from shandy_cli.pipeline._readers import spreadsheet
from shandy_cli.pipeline._readers.spreadsheet import text_sheet
from shandy_cli.pipeline.columnar import sheet as columnar_sheet
from tests.test_fastpath import HEADER, rows, run, snapshot


def workbook(path: Path, grid: list[list[Any]], at: str = "A1") -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    first = openpyxl.utils.cell.coordinate_from_string(at)
    col0 = openpyxl.utils.cell.column_index_from_string(first[0])
    for r, values in enumerate(grid):
        for c, value in enumerate(values):
            if value is not None:
                sheet.cell(row=first[1] + r, column=col0 + c, value=value)
    book.save(path)
    return path


def compare_sheet(
    path: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, columnar: int | None, **kw: Any
) -> None:
    """Both ways read the same; ``columnar``: the rows the fast way read columnar
    (None only for generated sheets)."""
    slow = snapshot(*run([path], tmp / "slow", "0", monkeypatch, fastexcel=False, **kw))
    fast = snapshot(*run([path], tmp / "fast", "1", monkeypatch, fastexcel=True, **kw))
    assert slow["columnar"] == 0
    if columnar is not None:
        assert fast["columnar"] == columnar
    for key in slow.keys() - {"columnar"}:
        assert fast[key] == slow[key], key
    plan = snapshot(
        *run([path], tmp / "plan", "1", monkeypatch, dry_run=True, fastexcel=True, **kw)
    )
    assert plan["columnar"] == fast["columnar"]
    for key in ("counts", "reasons", "plan", "rejects"):
        assert plan[key] == slow[key], key


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What became of each read_sheet call: "read" or the hand-over reason."""
    outcomes: list[str] = []
    real = columnar.read_sheet

    def spy(*args: Any, **kwargs: Any) -> int:
        try:
            done = real(*args, **kwargs)
        except columnar.Handover as exc:
            outcomes.append(exc.reason)
            raise
        outcomes.append("read")
        return done

    monkeypatch.setattr(columnar, "read_sheet", spy)
    monkeypatch.setattr(columnar_sheet, "SHEET_BLOCK", 257)  # many blocks per sheet
    return outcomes


def test_plain_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: list[str]) -> None:
    path = workbook(tmp_path / "a.xlsx", [HEADER, *rows(2000)])
    compare_sheet(path, tmp_path, monkeypatch, 2000)
    assert counted == ["read"] * 2  # the import, then the dry run


def test_gaps_offset_header_and_empty_strings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: list[str]
) -> None:
    data = rows(900, seed=3)
    grid: list[list[Any]] = [[None] * 5, HEADER]
    for i, row in enumerate(data):
        grid.append(row)
        if i % 97 == 0:
            grid += [[None] * 5, [None] * 5]  # empty rows leave gaps in the numbers
        if i % 131 == 0:
            grid.append(["", " ", None, "", ""])  # no email: rejected, numbered
    path = workbook(tmp_path / "b.xlsx", grid, at="C4")
    compare_sheet(path, tmp_path, monkeypatch, 900)
    assert counted == ["read"] * 2


def test_values_past_the_header_hand_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: list[str]
) -> None:
    grid = [HEADER, *rows(600)]
    grid[400] = [*grid[400], "stray"]
    path = workbook(tmp_path / "c.xlsx", grid)
    compare_sheet(path, tmp_path, monkeypatch, 399)  # the rows before it went fast
    assert counted == ["values beyond the header's columns"] * 2


@pytest.mark.parametrize("cell", [4155550100.0, 7, True, dt.datetime(2024, 5, 1, 9, 30)])
def test_typed_cells_keep_python_calamine(tmp_path: Path, cell: object) -> None:
    grid: list[list[Any]] = [HEADER, *rows(1500)]
    grid[1400][3] = cell  # past fastexcel's default 1000-row type sample
    path = workbook(tmp_path / "d.xlsx", grid)
    assert text_sheet(str(path), "Sheet") is None


def test_typed_sheet_same_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: list[str]
) -> None:
    grid: list[list[Any]] = [HEADER, *rows(700)]
    grid[650][3] = 0.30000000000000004
    grid[651][0] = False
    path = workbook(tmp_path / "e.xlsx", grid)
    compare_sheet(path, tmp_path, monkeypatch, 0)
    assert counted == []  # not a text sheet: the per-row path read it


def test_early_typed_cells_skip_the_text_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A number in the first rows: fastexcel's text load (a whole parse, then a failure)
    # is not even tried, and the rows are python-calamine's as before.
    grid: list[list[Any]] = [HEADER, *rows(700)]
    grid[2][3] = 4155550100
    path = workbook(tmp_path / "f.xlsx", grid)
    tried: list[str] = []
    real = spreadsheet.text_sheet
    monkeypatch.setattr(spreadsheet, "text_sheet", lambda *a: tried.append(a[1]) or real(*a))
    compare_sheet(path, tmp_path, monkeypatch, 0)
    assert tried == []


@pytest.mark.parametrize(
    ("cell", "typed"),
    [
        ("text", False),
        (None, False),
        (12, True),
        (0.5, True),
        (True, True),
        (dt.datetime(2024, 5, 1), True),
        ("=1+1", True),
    ],
)
def test_looks_typed_reads_the_first_cells(tmp_path: Path, cell: object, typed: bool) -> None:
    book = openpyxl.Workbook()
    book.active.title = "R&D <leads>"  # escaped in workbook.xml
    book.active.append(["Email", "Note"])
    book.active.append(["a@b.co", cell])
    other = book.create_sheet("Other")
    other.append(["Email", "Count"])
    other.append(["a@b.co", 3])
    path = tmp_path / "t.xlsx"
    book.save(path)
    assert spreadsheet.looks_typed(str(path), "R&D <leads>") is typed
    assert spreadsheet.looks_typed(str(path), "Other") is True
    assert spreadsheet.looks_typed(str(path), "missing") is False  # then text_sheet decides


def test_looks_typed_only_peeks(tmp_path: Path) -> None:
    grid: list[list[Any]] = [HEADER, *rows(1500)]
    grid[1400][3] = 7  # far past the peek: text_sheet's own strict typing finds it
    path = workbook(tmp_path / "g.xlsx", grid)
    assert spreadsheet.looks_typed(str(path), "Sheet") is False
    assert text_sheet(str(path), "Sheet") is None
    (tmp_path / "junk.xlsx").write_bytes(b"PK\x03\x04 not really")
    assert spreadsheet.looks_typed(str(tmp_path / "junk.xlsx"), "Sheet") is False


_CELL = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list('ab ,;"\n\t\\@.é🙂_\x85\u3000')), max_size=10),
    st.sampled_from(["x@y.co", " A@Y.CO ", "b@é.test", "a_b@c.de", "", "  "]),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=30))
def test_random_sheets(
    data: list[list[str | None]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("s")
    path = workbook(tmp / "r.xlsx", [["Email", "First Name", "Company"], *data])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(columnar_sheet, "SHEET_BLOCK", 7)
        compare_sheet(path, tmp, mp, None)


@pytest.mark.parametrize(
    ("cell", "fast"),
    [
        ("=A2", 0),  # a formula: the sheet is not text-only (looks_typed), read per row
        ("=1+1", 0),
        *((cell, 300) for cell in ["_x000D_ and _x0009_", "  ", "\u00a0nbsp\u00a0", "x" * 3000]),
        ("ünï©ødé 🙂", 300),
    ],
)
def test_odd_text_cells_read_the_same(
    cell: str, fast: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid: list[list[Any]] = [HEADER, *rows(300)]
    for r in range(5, 300, 37):
        grid[r][4] = cell
    path = workbook(tmp_path / "f.xlsx", grid)
    compare_sheet(path, tmp_path, monkeypatch, fast)
