"""Stage 1 of the pipeline: open a lead file and stream its rows.

``open_source(path)`` picks a reader by extension (by content for stdin and pipes),
settles encoding/delimiter/sheet, reads the header, and returns a ``Source`` whose
``rows()`` streams ``Row`` objects. Every file-level problem is an ``InputError``
(exit 2) with one readable line; row-level problems ride on ``Row.problem`` so the
next stages can reject just that row. Nothing here ever lets a library exception
(codec, csv, calamine) escape as a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import sys
from dataclasses import dataclass
from typing import BinaryIO

from shandy_cli.errors import InputError
from shandy_cli.pipeline import links

from ._readers import compressed
from ._readers.base import EmptySource, Row, Source, SourceInfo
from ._readers.columnar_files import COLUMNAR_FORMATS, ColumnarFileSource, columnar_kind
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
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "ipc",
    ".arrow": "ipc",
    ".ipc": "ipc",
    ".json": "json",
}
SPREADSHEETS = frozenset({"xlsx", "xls", "ods"})
STDIN_NAME = "<stdin>"
STREAMS = frozenset({"gzip", "bzip2", "xz", "zstd"})  # compressions without a directory


@dataclass
class _How:
    """How to read: the reader options, the zip member, the bound on decompressed bytes."""

    encoding: str | None
    delimiter: str | None
    sheet: str | None
    fastexcel: bool
    member: str | None
    limit: int | None  # None: compressed.MAX_INFLATED


def open_source(
    path: str,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    stdin: BinaryIO | None = None,
    name: str | None = None,
    fastexcel: bool = True,
    member: str | None = None,
    max_bytes: int | None = None,
) -> Source:
    """Open ``path`` ("-" for stdin) for reading rows; raises InputError on file problems.

    ``encoding`` and ``delimiter`` apply to text formats, ``sheet`` to workbooks; each
    is ignored where it does not apply, so one set of flags can serve mixed files.
    ``name`` shows a stream read through ``stdin`` under another name (a pipe such as
    ``<(zcat leads.gz)`` that was copied aside); its extension, if known, sets the format.

    A compressed input (``.gz``, ``.bz2``, ``.xz``, ``.zst``, or a ``.zip`` holding one
    lead file, ``member`` when it holds several; by its magic bytes when it has no
    name) is read as it decompresses, at most ``max_bytes`` of it (None:
    ``compressed.MAX_INFLATED``, 4 GB); its format is its inner name's (``leads.csv.gz``
    is a CSV), and its rows are named ``leads.csv.gz`` / ``leads.zip:leads.csv`` in
    ``_file``. Parquet, Arrow IPC and JSON arrays come as rows of text
    (``_readers/columnar_files.py``).
    """
    if encoding is not None:
        encoding = normalize_encoding(encoding)
    if delimiter is not None:
        delimiter = normalize_delimiter(delimiter)
    how = _How(encoding, delimiter, sheet, fastexcel, member, max_bytes)
    if path == "-":
        source = stdin if stdin is not None else sys.stdin.buffer
        shown, named = _stream_names(name)
        return _open_any(source, path=path, shown=shown, named=named, how=how)
    if links.is_link(path):  # read from its download (pipeline/links.py), never in place
        raise InputError("a link is read from its download; import it with shandy import")
    f, is_regular = _open_file(path)
    try:
        size = os.fstat(f.fileno()).st_size if is_regular else None
        named = path if is_regular or os.path.splitext(path)[1] else None
        return _open_any(f, path=path, shown=path, named=named, how=how, size=size, owned=True)
    except BaseException:
        f.close()
        raise


def _open_any(
    f: BinaryIO,
    *,
    path: str,
    shown: str,
    named: str | None,
    how: _How,
    size: int | None = None,
    owned: bool = False,
) -> Source:
    """Open an input whose name (``named``; None: unnamed, decided by content) may say
    it is compressed: undo that, then open what is inside."""
    head, f, seekable = _peek(f)
    magic = compressed.kind_of(head)
    kind = compressed.kind_by_name(named) if named else None
    if named is not None and kind is None:
        fmt = _format_of(named)
        if magic in STREAMS:  # leads.csv that is gzip: say what to call it
            raise InputError(
                f"this is {magic}-compressed data, not a plain {os.path.splitext(named)[1]} "
                f"file; name it {os.path.basename(named)}{_EXT[magic]} (or decompress it)",
                file=shown,
            )
        return _open_stream(
            f,
            path=path,
            name=shown,
            fmt=fmt,
            size=size,
            how=how,
            owned=owned,
            on_disk=owned and size is not None,
        )
    if kind is not None and magic != kind:
        raise InputError(_not_compressed(head, kind, named or shown), file=shown)
    if kind is None and magic == "zip" and not seekable:
        f, seekable = compressed.in_memory(f, shown), True  # a zip's directory is at its end
    if kind is None and magic == "zip" and _is_workbook(f):
        magic = None  # an unnamed .xlsx or .ods: a workbook, not an archive of lead files
    if kind is None and magic is None:
        return _open_stream(f, path=path, name=shown, fmt=None, size=size, how=how, owned=owned)
    inner = compressed.inner_name(named) if named and kind else None
    return _open_packed(
        f,
        kind or magic or "",
        inner,
        path=path,
        shown=shown,
        how=how,
        owned=owned,
        seekable=seekable,
        size=size,
    )


_EXT = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst", "zip": ".zip"}


def _peek(f: BinaryIO) -> tuple[bytes, BinaryIO, bool]:
    """The first bytes of ``f``, and a stream that still starts with them."""
    seekable = False
    with contextlib.suppress(OSError, ValueError, AttributeError):
        seekable = f.seekable()
    if seekable:
        try:
            start = f.tell()
            head = f.read(compressed.HEAD) or b""
            f.seek(start)
            return head, f, True
        except OSError:
            pass
    head, _complete = read_sample(f, compressed.HEAD)
    return head, compressed.replay(head, f), False


def _is_workbook(f: BinaryIO) -> bool:
    """An unnamed zip: an .xlsx / .ods workbook (by the members that make one), or not."""
    try:
        import zipfile

        start = f.tell()
        try:
            with zipfile.ZipFile(f) as archive:
                names = set(archive.namelist())
        finally:
            f.seek(start)
    except Exception:  # a damaged zip: the workbook reader says what is wrong with it
        return True
    return "[Content_Types].xml" in names or "mimetype" in names


def _not_compressed(head: bytes, kind: str, named: str) -> str:
    ext = os.path.splitext(named)[1]
    found = compressed.kind_of(head)
    if found:
        return f"named {ext}, but this is {found} data: name it for what it is"
    what = "a zip archive" if kind == "zip" else f"{kind}-compressed data"
    return f"named {ext}, but this is not {what} (if it is plain text, drop the {ext})"


def _open_packed(
    f: BinaryIO,
    kind: str,
    inner: str | None,
    *,
    path: str,
    shown: str,
    how: _How,
    owned: bool,
    seekable: bool,
    size: int | None,
) -> Source:
    """A compressed stream or a zip member, decompressed as it is read, then opened.
    ``size``: the archive's bytes (None: a pipe), what its progress is counted in."""
    member: str | None = None
    if kind == "zip":
        picked = compressed.open_member(
            f,
            name=shown,
            member=how.member,
            seekable=seekable,
            limit=how.limit,
            known=_is_lead_name,
            owns=owned,
        )
        member, stream, inner = picked.name, picked.stream, picked.name
        shown = f"{shown}:{picked.name}"
    else:
        stream = compressed.inflate(f, kind, name=shown, limit=how.limit, owns=owned)
    try:
        fmt = _inner_format(inner, shown)
        src = _open_stream(
            stream, path=path, name=shown, fmt=fmt, size=size, how=how, owned=True, packed=True
        )
    except BaseException:
        stream.close()
        raise
    if size is not None:  # progress in the archive's bytes: the unpacked ones pass 100%
        src.packed_read = functools.partial(compressed.packed_read, stream)
    src.info.compression, src.info.member = kind, member
    src.info.inflate_limit = how.limit  # reading it again (the columnar reader) is bounded alike
    return src


def _stream_names(name: str | None) -> tuple[str, str | None]:
    """How a stream read through stdin is shown, and the name its format is read from:
    None, a name whose extension says nothing (``/dev/fd/63``, ``https://host/download``),
    leaves it to the content. A link is shown without its query (a signed link's token),
    and named by its path (``https://host/leads.csv.gz?sig=...`` is a gzipped CSV)."""
    if name and links.is_link(name):
        path = links.link_path(name)
        return links.shown_link(name), path if _is_lead_name(path) else None
    return name or STDIN_NAME, name if name and _is_lead_name(name) else None


def _is_lead_name(name: str) -> bool:
    ext = os.path.splitext(name)[1].lower()
    return ext in FORMATS or ext in compressed.COMPRESSIONS


def _inner_format(inner: str | None, shown: str) -> str | None:
    """The format a compressed input's inner name gives; None: decide by content."""
    if inner is None:
        return None
    ext = os.path.splitext(inner)[1].lower()
    if ext in compressed.COMPRESSIONS:
        raise InputError(
            f"an archive inside an archive ({os.path.basename(inner)!r}); unpack the outer "
            "one first",
            file=shown,
        )
    if not ext:
        return None
    return _format_of(inner)


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


def _format_of(path: str) -> str:
    """The format an extension names, or an InputError naming the supported ones."""
    ext = os.path.splitext(path)[1].lower()
    if ext in FORMATS:
        return FORMATS[ext]
    shown = f"{ext!r}" if ext else "(no extension)"
    supported = ", ".join([*FORMATS, *compressed.COMPRESSIONS])
    raise InputError(f"unsupported file type {shown}; supported: {supported}", file=path)


def _sniff_format(sample: bytes, complete: bool) -> str:
    """Format of an input without a name: columnar or workbook signature, JSON, else CSV."""
    kind = columnar_kind(sample) or workbook_kind(sample)
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
    how: _How,
    owned: bool = False,
    on_disk: bool = False,
    packed: bool = False,
) -> Source:
    """Open a stream of a lead file's own bytes. ``on_disk``: ``f`` is the file at
    ``path`` (a reader that wants random access may open it itself); ``packed``: they
    come decompressed, so ``size`` is the archive's."""
    sample, complete = read_sample(f, SAMPLE_SIZE)
    if fmt is None:
        fmt = _sniff_format(sample, complete)
        if packed and compressed.kind_of(sample) in STREAMS:
            raise InputError("compressed twice; decompress the outer layer first", file=name)
    mine = f if owned else None  # never close the caller's stdin
    if (fmt in SPREADSHEETS or fmt in COLUMNAR_FORMATS) and not sample:
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
                on_disk=on_disk,
                size=size,
                sheet=how.sheet,
                fastexcel=how.fastexcel,
            )
        finally:
            if mine is not None:
                mine.close()  # calamine has its own handle or an in-memory copy
    if fmt in COLUMNAR_FORMATS:
        return _open_columnar(
            f,
            sample,
            complete,
            path=path,
            name=name,
            fmt=fmt,
            size=size,
            on_disk=on_disk,
            mine=mine,
        )
    text = open_text(sample, complete, f, file=name, fmt=fmt, encoding=how.encoding)
    if fmt == "jsonl":
        return JsonlSource(text, path=path, name=name, size=size, owned=mine)
    return DelimitedSource(
        text, path=path, name=name, fmt=fmt, size=size, delimiter=how.delimiter, owned=mine
    )


def _open_columnar(
    f: BinaryIO,
    sample: bytes,
    complete: bool,
    *,
    path: str,
    name: str,
    fmt: str,
    size: int | None,
    on_disk: bool,
    mine: BinaryIO | None,
) -> Source:
    """Parquet / Arrow IPC / a JSON array: scanned by path on disk, else read whole
    (bounded) from the stream with its sample put back."""
    try:
        if on_disk:
            return ColumnarFileSource(path, head=sample, path=path, name=name, fmt=fmt, size=size)
        rest = io.BytesIO(sample) if complete else compressed.replay(sample, f)
        return ColumnarFileSource(rest, head=sample, path=path, name=name, fmt=fmt, size=size)
    finally:
        if mine is not None:
            mine.close()  # polars has its own handle, or the bytes in memory
