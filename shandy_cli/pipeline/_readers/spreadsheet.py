"""XLSX, XLS and ODS through python-calamine.

calamine loads one sheet's cells into memory when the sheet is opened (workbooks are
zip/OLE containers: there is no streaming a row at a time from disk), then
``iter_rows`` hands them out without building a second Python copy of the sheet.

Row numbering follows the sheet grid: ``number`` is the sheet row minus the header
row, so with the header in row 1, data row N is spreadsheet row N + 1 -- what a user
looking for a rejected row in Excel needs. Fully empty rows are skipped (never
emitted), which leaves a gap in the numbers rather than shifting later rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO
from xml.etree import ElementTree

import python_calamine as calamine

import shandy_cli._allocator  # noqa: F401 -- before polars loads: one jemalloc arena
from shandy_cli.errors import InputError

from .base import Row, Source, SourceInfo, check_header, drop_empty_extras, repair_undecodable
from .text import describe_magic

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EXCEL_DIGITS = 15  # Excel shows at most 15 significant digits; beyond is float noise

# Zip bombs: .xlsx and .ods are zip archives, and calamine inflates what it reads.
# The central directory declares every member's sizes, so a bomb is refused from
# those numbers before a byte is inflated. A real sheet's XML compresses 5-20x;
# a million-row export is a few hundred MB of XML.
ZIP_MAX_TOTAL = 1024**3  # declared uncompressed bytes, all members together
ZIP_MAX_RATIO = 200  # uncompressed / compressed, for a member ...
ZIP_RATIO_FLOOR = 100 * 1024**2  # ... that also inflates to more than this
ZIP_MAX_MEMBERS = 10_000
# A workbook that has to be read into memory (stdin, a misnamed file) may be this big.
MEMORY_MAX_BYTES = 512 * 1024**2


def workbook_kind(head: bytes) -> str | None:
    """What kind of workbook the first bytes announce, if any."""
    if head.startswith(ZIP_MAGIC):
        # ODF puts an uncompressed "mimetype" member first, naming the document type.
        return "ods" if b"opendocument.spreadsheet" in head[:200] else "xlsx"
    if head.startswith(OLE_MAGIC):
        return "xls"
    return None


def not_a_workbook(head: bytes, fmt: str) -> str:
    what = describe_magic(head)
    if what:
        return f"this is {what}, not a .{fmt} workbook"
    if b"<html" in head[:1024].lower() or b"<table" in head[:1024].lower():
        return f"this is an HTML page, not a .{fmt} workbook (save it from Excel as .xlsx or .csv)"
    return f"this is not a .{fmt} workbook (if it is text, rename it to .csv)"


def _float_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))  # 1234567890.0 -> "1234567890": phone numbers, ids
    text = repr(value)
    mantissa = text.split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    if len(mantissa) > _EXCEL_DIGITS:
        text = format(value, f".{_EXCEL_DIGITS}g")  # 0.30000000000000004 -> "0.3"
    return text


def cell_text(value: Any) -> str:
    """A cell as the text a person sees in it (without number formats)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return str(value)


def text_sheet(path: str, sheet: str) -> Any:
    """The sheet as a polars frame of strings, when every cell in it is text; else None.

    fastexcel (calamine too, into Arrow, no Python object per cell) reads a
    sheet ~1.6x faster than python-calamine's ``to_python``.  It is used only
    where its answer is exactly ``cell_text``'s: a sheet whose every non-empty
    cell is a string (``strict`` typing over all rows refuses a column that mixes
    in a number, a date or a boolean, which it would otherwise spell its own way).
    Columns are ``c0, c1, ...``, the header row included, empty cells null.
    (``SHANDY_FASTEXCEL=0``, ``ImportOptions.fastexcel=False``: never called.)
    """
    try:
        import fastexcel

        reader = fastexcel.read_excel(path)
        with ThreadPoolExecutor(1, thread_name_prefix="shandy-sheet") as pool:
            loading = pool.submit(
                reader.load_sheet,
                sheet,
                header_row=None,
                dtype_coercion="strict",
                schema_sample_rows=None,
            )
            # The load holds no GIL: import what reading the frame needs meanwhile
            # (polars and numpy, ~0.3 s of this thread, otherwise after it).
            import numpy  # noqa: F401
            import polars as pl

            loaded = loading.result()
        frame = loaded.to_polars()
    except BaseException as exc:  # mixed types, or anything else: python-calamine decides
        if _is_fatal(exc):  # (a Rust panic is a BaseException too: it falls back as well)
            raise
        return None
    if any(dtype not in (pl.String, pl.Null) for dtype in frame.dtypes):
        return None
    return frame.select(
        pl.col(c).cast(pl.String).alias(f"c{i}") for i, c in enumerate(frame.columns)
    )


_CELL = re.compile(rb"<(?:\w+:)?c\b([^>]*)>")
_CELL_TYPE = re.compile(rb'\bt="([^"]*)"')
_TEXT_TYPES = (b"s", b"str", b"inlineStr")
_PEEK = 1 << 16  # of the sheet's XML: a few hundred cells


def looks_typed(path: str, sheet: str) -> bool:
    """Whether the first cells of an .xlsx sheet already show a number, date or boolean.

    Then ``text_sheet`` would spend a whole parse to find out (fastexcel's strict
    typing fails at the end), so it is not tried.  A peek at the start of the
    sheet's XML: only speed depends on it -- a wrong answer either way gives the
    same rows, from one reader or the other.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            member = _sheet_member(archive, sheet)
            if member is None:
                return False
            with archive.open(member) as fh:
                head = fh.read(_PEEK)
    except Exception:  # anything odd: let text_sheet try, as before
        return False
    for match in _CELL.finditer(head):
        attrs = match.group(1)
        if attrs.endswith(b"/"):
            continue  # <c r="B2" s="1"/>: an empty cell
        kind = _CELL_TYPE.search(attrs)
        if kind is None or kind.group(1) not in _TEXT_TYPES:
            return True  # a number (no t, or t="n"), t="b", t="d", t="e"
    return False


def _sheet_member(archive: zipfile.ZipFile, sheet: str) -> str | None:
    """The zip member holding a sheet's cells, from workbook.xml and its relationships."""
    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rel_ns = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
    book = ElementTree.fromstring(_small_member(archive, "xl/workbook.xml"))
    rid = next(
        (s.get(f"{rel_ns}id") for s in book.iter(f"{main}sheet") if s.get("name") == sheet), None
    )
    rels = ElementTree.fromstring(_small_member(archive, "xl/_rels/workbook.xml.rels"))
    for rel in rels:
        if rel.get("Id") == rid and (target := rel.get("Target")):
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return None


def _small_member(archive: zipfile.ZipFile, name: str, limit: int = 4 << 20) -> bytes:
    with archive.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{name} is larger than a workbook's index should be")
    return data


def _calamine_error(exc: BaseException) -> str:
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, calamine.PasswordError):
        return "the workbook is password-protected; save an unprotected copy"
    if isinstance(exc, calamine.ZipError | calamine.XmlError):
        return f"the workbook is damaged or truncated ({detail})"
    return f"cannot read the workbook ({detail})"


def _is_fatal(exc: BaseException) -> bool:
    # calamine is Rust: a bug there surfaces as pyo3's PanicException, a BaseException.
    # Everything but a real interrupt/exit becomes a clean InputError.
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


def _pick_sheet(book: calamine.CalamineWorkbook, sheet: str | None, file: str) -> str:
    names = list(book.sheet_names)
    if not names:
        raise InputError("the workbook has no sheets", file=file)
    if sheet is None:
        # The first sheet a person would see: skip hidden ones and chart sheets.
        for meta in book.sheets_metadata:
            if (
                meta.visible == calamine.SheetVisibleEnum.Visible
                and meta.typ == calamine.SheetTypeEnum.WorkSheet
            ):
                return meta.name
        return names[0]
    if sheet in names:
        return sheet
    folded = [n for n in names if n.casefold() == sheet.casefold()]
    if len(folded) == 1:
        return folded[0]
    available = ", ".join(repr(n) for n in names)
    raise InputError(f"no sheet named {sheet!r} (the sheets are: {available})", file=file)


class WorkbookSource(Source):
    def __init__(
        self,
        location: str | io.BytesIO,
        *,
        path: str,
        name: str,
        fmt: str,
        size: int | None,
        sheet: str | None,
        fastexcel: bool = True,
    ) -> None:
        self._name = name
        self._size = size
        self._done = False
        self._book: calamine.CalamineWorkbook | None = None
        # A sheet of text cells only, loaded whole by fastexcel (see text_sheet): the
        # rows come from it, and the columnar path reads it without a row in Python.
        self.frame: Any = None
        try:
            if isinstance(location, str):
                self._book = calamine.CalamineWorkbook.from_path(location)
            else:
                self._book = calamine.CalamineWorkbook.from_filelike(location)
            chosen = _pick_sheet(self._book, sheet, name)
            text_only = fastexcel and fmt == "xlsx" and isinstance(location, str)
            if text_only and isinstance(location, str) and not looks_typed(location, chosen):
                self.frame = text_sheet(location, chosen)
            if self.frame is not None:
                self._cells = self.frame.iter_rows()
            else:
                self._cells = iter(self._book.get_sheet_by_name(chosen).iter_rows())
            header, self._header_index = self._next_nonempty(-1)
        except InputError:
            self.close()
            raise
        except BaseException as exc:
            self.close()
            if _is_fatal(exc):
                raise
            raise InputError(_calamine_error(exc), file=name) from None
        columns = check_header(header or [], file=name, encoding=None)
        super().__init__(
            SourceInfo(
                path=path,
                name=name,
                format=fmt,
                encoding=None,
                delimiter=None,
                columns=columns,
                size=size,
            )
        )

    @property
    def bytes_read(self) -> int:
        # calamine gives no progress; the whole file counts as read once rows are out.
        return (self._size or 0) if self._done else 0

    def _next_nonempty(self, index: int) -> tuple[list[str] | None, int]:
        """The next row with any non-empty cell, as text, and its 0-based sheet index."""
        for raw in self._cells:
            index += 1
            values = [cell_text(v) for v in raw]
            if any(values):
                return values, index
        return None, index

    def _rows(self) -> Iterator[Row]:
        width = len(self.info.columns)
        index = self._header_index
        while True:
            try:
                values, index = self._next_nonempty(index)
            except BaseException as exc:
                if _is_fatal(exc):
                    raise
                raise InputError(_calamine_error(exc), file=self._name) from None
            if values is None:
                self._done = True
                return
            # calamine pads every row to the sheet's width; the padding is not data.
            values = drop_empty_extras(values, width)
            values, problem = repair_undecodable(values, self.info.columns, None)
            yield Row(self._name, index - self._header_index, values, problem)

    @property
    def header_index(self) -> int:
        """The header's row in the sheet (0-based; data row N is sheet row header + N)."""
        return self._header_index

    def drop_frame(self) -> None:
        """Forget the loaded text sheet (its rows were read another way)."""
        self.frame = None
        self._cells = iter(())

    def close(self) -> None:
        self.drop_frame()
        if self._book is not None:
            book, self._book = self._book, None
            with contextlib.suppress(calamine.CalamineError):  # already closed
                book.close()


def open_workbook(
    head: bytes,
    rest: BinaryIO,
    *,
    path: str,
    name: str,
    fmt: str,
    on_disk: bool,
    size: int | None,
    sheet: str | None,
    fastexcel: bool = True,
) -> WorkbookSource:
    """Check the signature, then open with calamine.

    Checking first gives "this is a PNG image" instead of a zip library's complaint.
    A file whose content matches its extension is opened by path (calamine reads it
    from disk as needed); anything else -- stdin, an .xlsx renamed .xls -- is read into
    memory and opened by content, so the misnamed file still just works.
    """
    kind = workbook_kind(head)
    if kind is None:
        raise InputError(not_a_workbook(head, fmt), file=name)
    if on_disk and kind == fmt:
        location: str | io.BytesIO = path
    else:
        data = head + _read_capped(rest, MEMORY_MAX_BYTES - len(head), name)
        location, size = io.BytesIO(data), len(data)
    if kind in ("xlsx", "ods"):
        check_zip(location, name)
    return WorkbookSource(
        location, path=path, name=name, fmt=kind, size=size, sheet=sheet, fastexcel=fastexcel
    )


def _read_capped(stream: BinaryIO, limit: int, name: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(
            f"a workbook read from a pipe or a misnamed file may be at most "
            f"{MEMORY_MAX_BYTES // 1024**2} MB; save it as .csv (or name it for what it is)",
            file=name,
        )
    return data


def check_zip(location: str | io.BytesIO, name: str) -> None:
    """Refuse a damaged archive, or one whose declared sizes make it a zip bomb.

    Reads only the central directory (what ``infolist`` parses); nothing is inflated.
    """
    try:
        with zipfile.ZipFile(location) as archive:
            members = archive.infolist()
    except Exception as exc:  # BadZipFile, but a hostile directory can raise others
        detail = str(exc).strip() or type(exc).__name__
        raise InputError(f"the workbook is damaged or truncated ({detail})", file=name) from None
    finally:
        if isinstance(location, io.BytesIO):
            location.seek(0)
    if len(members) > ZIP_MAX_MEMBERS:
        raise InputError(
            f"refusing to open: the workbook holds {len(members):,} files "
            f"(a real one has a few dozen; the limit is {ZIP_MAX_MEMBERS:,})",
            file=name,
        )
    total = 0
    for member in members:
        total += member.file_size
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > ZIP_RATIO_FLOOR and ratio > ZIP_MAX_RATIO:
            raise InputError(
                f"refusing to open: {member.filename[:80]!r} in the workbook would inflate "
                f"{ratio:,.0f}x to {_size(member.file_size)} (a zip bomb?); nothing was read",
                file=name,
            )
    if total > ZIP_MAX_TOTAL:
        raise InputError(
            f"refusing to open: the workbook would inflate to {_size(total)}, over the "
            f"{_size(ZIP_MAX_TOTAL)} limit (a zip bomb, or too big for a workbook: "
            "save it as .csv)",
            file=name,
        )


def _size(n: int) -> str:
    return f"{n / 1024**3:,.1f} GB" if n >= 1024**3 else f"{n / 1024**2:,.0f} MB"
