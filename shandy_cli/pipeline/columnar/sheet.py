"""A text-only XLSX sheet (loaded whole by fastexcel) through the columnar stages."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import polars as pl

from shandy_cli.pipeline.chunking import ESCAPES
from shandy_cli.pipeline.columnar.commit import _Commit, _pipeline
from shandy_cli.pipeline.columnar.encoder import _Columnar, _Parsed
from shandy_cli.pipeline.columnar.selfcheck import _check_json
from shandy_cli.pipeline.columnar.state import Handover, RunState
from shandy_cli.pipeline.mapping import Mapping

if TYPE_CHECKING:
    from shandy_cli.pipeline.sources import SourceInfo

SHEET_BLOCK = 16384  # rows of a sheet per block


def read_sheet(
    frame: pl.DataFrame, header: int, info: SourceInfo, mapping: Mapping, state: RunState
) -> int:
    """``read_columnar`` for a text sheet loaded by fastexcel (``spreadsheet.text_sheet``).

    ``frame`` holds the whole sheet as strings (``c0, c1, ...``, null for an
    empty cell) and ``header`` is the header's row in it: the sheet's row
    ``header + N`` is data row N, as the per-row reader numbers them (empty rows
    leave gaps).  What the per-row path would treat differently -- values past
    the header's columns, NUL characters -- is refused before anything is read.
    """
    _check_json()
    ncols = len(info.columns)
    data = frame.slice(header + 1)
    extra = data.columns[ncols:]
    if extra and data.select(pl.any_horizontal(pl.col(extra).str.len_bytes() > 0).any()).item():
        raise Handover("values beyond the header's columns")
    data = data.select(data.columns[:ncols])
    chars, columns = _sheet_escape_chars(data) if data.height else ("", frozenset())
    if "\x00" in chars:
        raise Handover("a NUL character")
    domains = state.suppression is not None and bool(state.suppression.domains)
    reader = _Columnar(mapping, encode=state.encodes, domains=domains)
    reader.sticky = columns  # known for the whole sheet: no block needs to ask
    commit = _Commit(reader, info, state)
    state.validator.reserve(data.height)

    def jobs() -> Iterator[Callable[[], _Parsed]]:
        for start in range(0, data.height, SHEET_BLOCK):
            block = data.slice(start, SHEET_BLOCK)
            yield functools.partial(reader.parse_frame, block, start + 1, chars)

    return _pipeline(jobs(), commit, 0, state.progress)


def _sheet_escape_chars(data: pl.DataFrame) -> tuple[str, frozenset[int]]:
    """The characters JSON escapes that a sheet's cells hold, and the columns holding one."""
    special = r'[\x00-\x1f"\\]'
    found = data.select(pl.all().str.extract_all(special).explode().unique().implode()).row(0)
    per_column = [{ch for ch in column if ch} for column in found]
    chars = "".join(ch for ch in ESCAPES if any(ch in column for column in per_column))
    return chars, frozenset(i for i, column in enumerate(per_column) if column)
