"""A CSV/TSV file through the columnar stages: whether it can go, and reading it."""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from shandy_cli.pipeline._readers.compressed import PACKED_RATIO, packed_read
from shandy_cli.pipeline.columnar.commit import _Commit, _pipeline
from shandy_cli.pipeline.columnar.encoder import _Columnar, _Parsed
from shandy_cli.pipeline.columnar.framing import _blocks, _unit_codec, source_codec
from shandy_cli.pipeline.columnar.selfcheck import _check_json
from shandy_cli.pipeline.columnar.state import RunState
from shandy_cli.pipeline.formulas import written_by_shandy
from shandy_cli.pipeline.mapping import Mapping
from shandy_cli.pipeline.validation import EMAIL_LABEL

if TYPE_CHECKING:
    from shandy_cli.pipeline.sources import SourceInfo


def _opener(path: str, info: SourceInfo) -> Callable[[], BinaryIO]:
    """How to open the source's bytes: the file, or the file decompressed as it is read
    (no copy on disk; bounded as ``open_source`` bounds it)."""
    kind = info.compression
    if kind is None:
        return lambda: open(path, "rb")
    from shandy_cli.pipeline._readers.compressed import reopen

    return functools.partial(
        reopen, path, kind, info.member, name=info.name, limit=info.inflate_limit
    )


def columnar_eligible(info: SourceInfo, mapping: Mapping | None, path: str | None) -> str | None:
    """None when a source can go the columnar way, else why not (the per-row path takes it).

    ``path`` is the regular file holding the source's bytes (stdin and pipes are
    spooled to one by ``run.py``), or None when there is none.  Whether it is big
    enough to be worth it is ``prepare``'s to decide (``COLUMNAR_MIN_SIZE``).
    """
    if mapping is None:
        return "no columns"
    if info.format not in ("csv", "tsv", "txt") or not info.delimiter:
        return f"format {info.format}"
    if written_by_shandy(info.columns):  # its cells are unguarded one by one (formulas.py)
        return "a rejects or failures file shandy wrote"
    try:
        source_codec(info.encoding)
    except ValueError:
        return f"encoding {info.encoding}"
    if len(info.delimiter.encode()) != 1 or info.delimiter == '"':
        return "a multi-byte delimiter"
    if path is None:
        return "not a regular file"
    try:
        st = os.stat(path)
    except OSError:
        return "not a regular file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return plan_problem(mapping)


def plan_problem(mapping: Mapping) -> str | None:
    """None when the mapping's JSON can be built from fixed fragments, else why not."""
    # Where Mapping.prospect puts a key depends on the row in two cases: several
    # columns mapped to one label (the first non-empty one places it), and a --set
    # constant for a label a column also fills (in place, or at the end when the
    # cell is empty).  Fixed JSON fragments cannot say that.
    labels = [label for label in mapping.targets if label is not None]
    if len(labels) != len(set(labels)):
        return "several columns map to one label"
    if any(label in labels for label in mapping.constants) or EMAIL_LABEL in mapping.constants:
        return "a --set constant for a mapped label"
    # Number and currency values are checked per row (validation.field_value_problem);
    # that rule has one home, so a file feeding such a field is read row by row.
    if mapping.typed:
        return "a column feeds a number or currency field"
    return None


def read_columnar(path: str, info: SourceInfo, mapping: Mapping, state: RunState) -> int:
    """Read one source into the run's shared state; returns its data-row count.

    Raises ``Handover`` where the per-row path must take over; every row up to
    number ``done`` is then committed.
    """
    _check_json()
    domains = state.suppression is not None and bool(state.suppression.domains)
    reader = _Columnar(mapping, encode=state.encodes, domains=domains)
    commit = _Commit(reader, info, state)
    assert info.delimiter is not None
    delimiter = info.delimiter
    codec = source_codec(info.encoding)  # columnar_eligible has checked it
    opener = _opener(path, info)
    with opener() as f:
        codec, bom = _unit_codec(codec, f.read(2))
    # the bytes to expect, for the first block's guess at the row count
    expect = os.path.getsize(path) * (PACKED_RATIO if info.compression else 1)
    opened: list[BinaryIO] = []  # the stream the blocks come from, for a packed one's progress

    def open_blocks() -> BinaryIO:
        opened[:] = [opener()]
        return opened[0]

    def progress(rows: int, nbytes: int) -> None:
        # a compressed input's progress is in its archive's bytes, as info.size is
        if not info.compression:
            state.progress(rows, nbytes)
            return
        packed = packed_read(opened[0]) if opened else None  # None: closed, all read
        state.progress(rows, packed if packed is not None else (info.size or nbytes))

    def jobs() -> Iterator[Callable[[], _Parsed]]:
        for block in _blocks(path, info.columns, delimiter, codec, bom, open_blocks):
            yield functools.partial(reader.parse, block, delimiter, codec)

    return _pipeline(jobs(), commit, expect, progress)
