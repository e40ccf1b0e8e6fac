"""Text frames -- a text-only XLSX sheet (loaded whole by fastexcel), or a Parquet / IPC /
JSON input cast to text a batch at a time -- through the columnar stages."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
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

SHEET_BLOCK = 16384  # rows of a frame per block
NUL = "a NUL character"
PAST = "values beyond the header's columns"


def read_sheet(
    frame: pl.DataFrame, header: int, info: SourceInfo, mapping: Mapping, state: RunState
) -> int:
    """``read_columnar`` for a text sheet loaded by fastexcel (``spreadsheet.text_sheet``).

    ``frame`` holds the whole sheet as strings (``c0, c1, ...``, null for an
    empty cell) and ``header`` is the header's row in it: the sheet's row
    ``header + N`` is data row N, as the per-row reader numbers them (empty rows
    leave gaps, as the per-row XLSX reader skips them).
    """
    data = frame.slice(header + 1)
    return read_frames([data], info, mapping, state, rows=data.height)


def read_frames(
    frames: Iterable[pl.DataFrame],
    info: SourceInfo,
    mapping: Mapping,
    state: RunState,
    *,
    rows: int | None = None,
    blanks: bool = True,
) -> int:
    """Text frames (``c0, c1, ...``, null for empty), one after another, as data rows
    numbered from 1 in their order; returns the data-row count.

    Only the frame being cut into blocks and the blocks in flight are held, so a
    source can stream its frames.  ``rows``: the total, when known (the dedupe
    table is sized once).  ``blanks``: skip all-empty rows, as the per-row XLSX
    reader does (their numbers stay gaps); False counts them as rows, as the
    per-row Parquet / IPC / JSON reader does.  At a row the per-row path reads
    differently (a NUL character, a value past the header's columns), raises
    ``Handover`` with every row before it committed.
    """
    _check_json()
    domains = state.suppression is not None and bool(state.suppression.domains)
    reader = _Columnar(mapping, encode=state.encodes, domains=domains)
    commit = _Commit(reader, info, state)
    if rows is not None:
        state.validator.reserve(rows)
    return _pipeline(_jobs(frames, reader, blanks, len(info.columns)), commit, 0, state.progress)


def _jobs(
    frames: Iterable[pl.DataFrame], reader: _Columnar, blanks: bool, ncols: int
) -> Iterator[Callable[[], _Parsed]]:
    """Each frame's blocks, to parse on a worker; a row the per-row path must read ends
    them with a job raising ``Handover`` (committed in order: every row before it is in)."""
    start = 0  # rows of the frames before this one
    for whole in frames:
        frame, why, chars, columns = _up_to_handover(whole, ncols)
        # The columns known to hold an escape only grow: a block of this frame need not
        # ask about them (``_Columnar._stages`` still asks about the others, so a
        # worker's stale copy costs a question, never a wrong item).
        reader.sticky = reader.sticky | columns
        for at in range(0, frame.height, SHEET_BLOCK):
            block = frame.slice(at, SHEET_BLOCK)
            yield functools.partial(reader.parse_frame, block, start + at + 1, chars, blanks)
        if why is not None:  # the per-row path goes on from the row it stopped at
            yield functools.partial(_handover, why)
            return
        start += frame.height


def _up_to_handover(
    frame: pl.DataFrame, ncols: int
) -> tuple[pl.DataFrame, str | None, str, frozenset[int]]:
    """The frame's header columns up to the first row the per-row path reads differently
    (a NUL character; a value past the header's columns, which it rejects), why it stops
    there (None: it does not), the characters JSON escapes those rows hold, and the
    columns holding one."""
    data = frame.select(frame.columns[:ncols])
    if not frame.height:
        return data, None, "", frozenset()
    chars, columns = _sheet_escape_chars(data)
    stops = []
    if "\x00" in chars:
        nul = [pl.col(c).str.contains("\x00", literal=True).fill_null(False) for c in data.columns]
        stops.append((pl.any_horizontal(nul), NUL))
    if frame.width > ncols:
        past = [pl.col(c).str.len_bytes().fill_null(0) > 0 for c in frame.columns[ncols:]]
        stops.append((pl.any_horizontal(past), PAST))
    found = [(frame.select(stop.arg_true().first()).item(), why) for stop, why in stops]
    if not (found := [(at, why) for at, why in found if at is not None]):
        return data, None, chars, columns
    at, why = min(found)
    data = data.head(at)
    chars, columns = _sheet_escape_chars(data) if at else ("", frozenset())
    return data, why, chars, columns


def _handover(why: str) -> _Parsed:
    raise Handover(why)


def _sheet_escape_chars(data: pl.DataFrame) -> tuple[str, frozenset[int]]:
    """The characters JSON escapes that a frame's cells hold, and the columns holding one."""
    special = r'[\x00-\x1f"\\]'
    found = data.select(pl.all().str.extract_all(special).explode().unique().implode()).row(0)
    per_column = [{ch for ch in column if ch} for column in found]
    chars = "".join(ch for ch in ESCAPES if any(ch in column for column in per_column))
    return chars, frozenset(i for i, column in enumerate(per_column) if column)
