"""The types every reader produces, and the checks they share."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from shandy_cli.errors import InputError

# Lone surrogates only ever reach us from the byte-escaping decode error handler (valid
# input decodes to real characters), so one in a value means "these bytes did not decode".
SURROGATES = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


@dataclass
class SourceInfo:
    path: str  # as given by the user ("-" for stdin)
    name: str  # display name used in _file and messages ("<stdin>" for stdin)
    format: (
        str  # "csv" | "tsv" | "txt" | "xlsx" | "xls" | "ods" | "jsonl" | "parquet" | "ipc" | "json"
    )
    encoding: str | None  # None for spreadsheets
    delimiter: str | None  # None for spreadsheets and JSONL
    columns: list[str]  # the header exactly as in the file (not trimmed)
    size: int | None  # file bytes when known (for ETA); a compressed input's: the archive's
    # How the bytes were packed: "gzip", "bzip2", "xz", "zstd" or "zip" (None: as
    # they are), and the zip member read: what reading the file again must undo.
    compression: str | None = None
    member: str | None = None
    inflate_limit: int | None = None  # the bound on its decompressed bytes (None: 4 GB)


@dataclass(slots=True)
class Row:
    file: str  # SourceInfo.name
    number: int  # 1-based data row number within its file; the header is not counted
    values: list[str]  # untrimmed, in column order; may be shorter or longer than columns
    problem: str | None = None  # set when the reader found something that rejects the row


class Source(ABC):
    """One opened input file. A context manager; ``rows()`` streams it once."""

    info: SourceInfo

    def __init__(self, info: SourceInfo) -> None:
        self.info = info
        self._started = False
        # A compressed input's progress: the archive's bytes read, set by the opener.
        self.packed_read: Callable[[], int | None] | None = None

    def rows(self) -> Iterator[Row]:
        # Single pass: the underlying stream (stdin, a pipe) cannot be rewound.
        if self._started:
            raise RuntimeError(f"rows() of {self.info.name} can only be iterated once")
        self._started = True
        return self._rows()

    def skip_first(self, rows: int) -> None:  # noqa: B027 -- a hint most readers ignore
        """A hint before ``rows()``: the caller skips data rows numbered ``rows`` or less
        (the columnar path committed them before it handed over). A reader that can start
        past them without reading them may; the others yield them, and the caller skips."""

    @abstractmethod
    def _rows(self) -> Iterator[Row]:
        """The rows of this format: each reader (delimited, jsonl, workbook, empty) says how."""

    @property
    def bytes_read(self) -> int:
        return 0

    def progress_bytes(self, *, done: bool = False) -> int:
        """The input's bytes read so far, in ``info.size``'s unit: the file's, or for a
        compressed input the archive's (its unpacked bytes would run past 100%). Done, a
        compressed input is all read, though a zip's directory after its member is not."""
        if self.packed_read is None:
            return self.bytes_read
        if done and self.info.size is not None:
            return self.info.size
        return self.packed_read() or 0

    def close(self) -> None:  # noqa: B027 -- a source with no file has nothing to release
        """Release the file; safe to call twice."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EmptySource(Source):
    """A file with nothing in it: no columns, no rows."""

    def _rows(self) -> Iterator[Row]:
        return iter(())


def column_label(columns: list[str], index: int) -> str:
    """How a message names the column at ``index`` (0-based), even past the header."""
    if index < len(columns):
        return repr(columns[index])
    return f"#{index + 1} (no header)"


def check_header(cells: list[str], *, file: str, encoding: str | None) -> list[str]:
    """Validate a header row and return the columns.

    Trailing empty cells are dropped rather than refused: spreadsheet exports often
    carry a few formatted-but-empty columns, and an error there would only annoy.
    An empty cell *between* names is refused, since its column could not be mapped.
    """
    if cells and cells[0].startswith("\ufeff"):
        # A BOM left over by a user-forced encoding ("utf-8" on a "utf-8-sig" file).
        cells = [cells[0][1:], *cells[1:]]
    columns = list(cells)
    while columns and not columns[-1].strip():
        columns.pop()
    if cells and not columns:
        raise InputError("the header row has no column names", file=file)
    bad = [i for i, c in enumerate(columns) if SURROGATES.search(c)]
    if bad:
        raise InputError(
            f"the header is not valid {display_encoding(encoding)} "
            f"(column {bad[0] + 1}); pass --encoding to say how the file is encoded",
            file=file,
        )
    for i, name in enumerate(columns):
        if not name.strip():
            after = f" (after {_short(columns[i - 1])})" if i else ""
            raise InputError(
                f"the header cell of column {i + 1}{after} is empty; name the column or delete it",
                file=file,
            )
    dupes = [name for name, n in Counter(columns).items() if n > 1]
    if dupes:
        listed = ", ".join(f"{_short(name)} (columns {_at(columns, name)})" for name in dupes[:5])
        more = f", and {len(dupes) - 5:,} more" if len(dupes) > 5 else ""
        raise InputError(f"duplicate column names in the header: {listed}{more}", file=file)
    return columns


def _short(name: str, limit: int = 60) -> str:
    return repr(name) if len(name) <= limit else repr(name[:limit]) + "…"


def _at(columns: list[str], name: str, limit: int = 10) -> str:
    where = [str(i + 1) for i, c in enumerate(columns) if c == name]
    return ", ".join(where[:limit]) + (f", … ({len(where):,} in all)" if len(where) > limit else "")


def display_encoding(encoding: str | None) -> str:
    return "utf-8" if encoding == "utf-8-sig" else (encoding or "text")


def drop_empty_extras(values: list[str], width: int) -> list[str]:
    """Drop empty values past the header's width: trailing delimiters carry nothing."""
    end = len(values)
    while end > width and not values[end - 1]:
        end -= 1
    return values if end == len(values) else values[:end]


def repair_undecodable(
    values: list[str], columns: list[str], encoding: str | None
) -> tuple[list[str], str | None]:
    """Replace escaped undecodable bytes and NUL characters with U+FFFD; say where.

    The row is still passed on (so rejects files can show it), with a problem that
    makes the next stage reject it rather than send mangled text. A NUL is never
    part of a real name or address, and many databases refuse text holding one, so
    one such value could fail a whole request of 100,000 prospects.
    """
    joined = "".join(values)
    if "\x00" not in joined and not SURROGATES.search(joined):
        return values, None
    problems = []
    where = [column_label(columns, i) for i, v in enumerate(values) if SURROGATES.search(v)]
    if where:
        noun = "column" if len(where) == 1 else "columns"
        problems.append(
            f"undecodable bytes in {noun} {', '.join(where)} "
            f"(not valid {display_encoding(encoding)})"
        )
    nul = [column_label(columns, i) for i, v in enumerate(values) if "\x00" in v]
    if nul:
        noun = "column" if len(nul) == 1 else "columns"
        problems.append(f"a NUL character in {noun} {', '.join(nul)} (binary data?)")
    fixed = [SURROGATES.sub(REPLACEMENT, v).replace("\x00", REPLACEMENT) for v in values]
    return fixed, "; ".join(problems)
