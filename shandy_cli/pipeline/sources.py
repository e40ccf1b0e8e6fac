"""Stage 1 of the pipeline: open a lead file and stream its rows.

``open_source(path)`` picks a reader by extension (by content for stdin and pipes),
settles encoding/delimiter/sheet, reads the header, and returns a ``Source`` whose
``rows()`` streams ``Row`` objects. Every file-level problem is an ``InputError``
(exit 2) with one readable line; row-level problems ride on ``Row.problem`` so the
next stages can reject just that row. Nothing here ever lets a library exception
(codec, csv, calamine) escape as a traceback.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any, BinaryIO

from shandy_cli.errors import InputError

from ._readers.base import EmptySource, Row, Source, SourceInfo
from ._readers.delimited import DelimitedSource, normalize_delimiter
from ._readers.jsonl import JsonlSource, parse_object
from ._readers.spreadsheet import open_workbook, workbook_kind
from ._readers.text import (
    SAMPLE_SIZE,
    decode_sample,
    detect_encoding,
    normalize_encoding,
    open_text,
    read_sample,
)

__all__ = ["FORMATS", "Row", "Source", "SourceInfo", "open_source"]

FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
    ".xlsx": "xlsx",
    ".xls": "xls",
    ".ods": "ods",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
SPREADSHEETS = frozenset({"xlsx", "xls", "ods"})
STDIN_NAME = "<stdin>"


def open_source(
    path: str,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    stdin: BinaryIO | None = None,
    name: str | None = None,
    fastexcel: bool = True,
) -> Source:
    """Open ``path`` ("-" for stdin) for reading rows; raises InputError on file problems.

    ``encoding`` and ``delimiter`` apply to text formats, ``sheet`` to workbooks; each
    is ignored where it does not apply, so one set of flags can serve mixed files.
    ``name`` shows a stream read through ``stdin`` under another name (a pipe such as
    ``<(zcat leads.gz)`` that was copied aside); its extension, if known, sets the format.
    """
    if encoding is not None:
        encoding = normalize_encoding(encoding)
    if delimiter is not None:
        delimiter = normalize_delimiter(delimiter)
    options: dict[str, Any] = {
        "encoding": encoding,
        "delimiter": delimiter,
        "sheet": sheet,
        "fastexcel": fastexcel,
    }
    if path == "-":
        source = stdin if stdin is not None else sys.stdin.buffer
        fmt = FORMATS.get(os.path.splitext(name)[1].lower()) if name else None
        shown = name or STDIN_NAME
        return _open_stream(source, path=path, name=shown, fmt=fmt, size=None, **options)
    f, is_regular = _open_file(path)
    try:
        fmt = _format_of(path, is_regular)
        size = os.fstat(f.fileno()).st_size if is_regular else None
        return _open_stream(f, path=path, name=path, fmt=fmt, size=size, owned=True, **options)
    except BaseException:
        f.close()
        raise


def _open_file(path: str) -> tuple[BinaryIO, bool]:
    """Open for binary reading, turning OS errors into one-line InputErrors."""
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 -- the Source owns and closes it
    except FileNotFoundError:
        raise InputError("file not found", file=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", file=path) from None
    except PermissionError:
        raise InputError("permission denied", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror or exc}", file=path) from None
    mode = os.fstat(f.fileno()).st_mode
    if stat.S_ISDIR(mode):  # some platforms open directories without complaint
        f.close()
        raise InputError("is a directory, not a file", file=path)
    return f, stat.S_ISREG(mode)


def _format_of(path: str, is_regular: bool) -> str | None:
    """The format an extension names; None means "decide by content"."""
    ext = os.path.splitext(path)[1].lower()
    if ext in FORMATS:
        return FORMATS[ext]
    if not is_regular and not ext:
        return None  # a pipe such as <(cat leads.csv): sniff it like stdin
    shown = f"{ext!r}" if ext else "(no extension)"
    supported = ", ".join(FORMATS)
    raise InputError(f"unsupported file type {shown}; supported: {supported}", file=path)


def _sniff_format(sample: bytes, complete: bool) -> str:
    """Format of an input without a name: workbook signature, JSON object, else CSV."""
    kind = workbook_kind(sample)
    if kind:
        return kind
    text = decode_sample(sample, detect_encoding(sample, complete), complete)
    first = next((line for line in text.split("\n") if line.strip()), "")
    if first.lstrip().startswith("{") and parse_object(first)[0] is not None:
        return "jsonl"
    return "csv"


def _open_stream(
    f: BinaryIO,
    *,
    path: str,
    name: str,
    fmt: str | None,
    size: int | None,
    encoding: str | None,
    delimiter: str | None,
    sheet: str | None,
    fastexcel: bool = True,
    owned: bool = False,
) -> Source:
    sample, complete = read_sample(f, SAMPLE_SIZE)
    if fmt is None:
        fmt = _sniff_format(sample, complete)
    mine = f if owned else None  # never close the caller's stdin
    if fmt in SPREADSHEETS and not sample:
        # An empty file is an empty source whatever its name, as for CSV: no rows.
        if mine is not None:
            mine.close()
        return EmptySource(SourceInfo(path, name, fmt, None, None, [], size))
    if fmt in SPREADSHEETS:
        try:
            return open_workbook(
                sample,
                f,
                path=path,
                name=name,
                fmt=fmt,
                on_disk=owned and size is not None,
                size=size,
                sheet=sheet,
                fastexcel=fastexcel,
            )
        finally:
            if mine is not None:
                mine.close()  # calamine has its own handle or an in-memory copy
    text = open_text(sample, complete, f, file=name, fmt=fmt, encoding=encoding)
    if fmt == "jsonl":
        return JsonlSource(text, path=path, name=name, size=size, owned=mine)
    return DelimitedSource(
        text, path=path, name=name, fmt=fmt, size=size, delimiter=delimiter, owned=mine
    )
