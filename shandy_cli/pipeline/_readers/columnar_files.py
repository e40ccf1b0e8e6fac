"""Parquet, Arrow IPC / Feather and JSON-array inputs, read through polars.

A file on disk is scanned lazily and read a batch of rows at a time (Parquet's
row groups and IPC's record batches are what a slice of a scan reads), so memory
holds one batch; a JSON array has no batches and is read whole, as is any of them
that comes from a stream or out of an archive: at most ``MEMORY_MAX_BYTES``.

Every value becomes the text the contract spells (``text_frame``): whole numbers
without ``.0``, dates ``YYYY-MM-DD``, datetimes as the XLSX reader writes them,
booleans ``true``/``false``, nulls empty. A nested column (struct, list) or a
binary one has no such spelling: the file is refused before a row is read.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import shandy_cli._allocator  # noqa: F401 -- before polars loads: one jemalloc arena
from shandy_cli.errors import InputError

from .base import Row, Source, SourceInfo, check_header, drop_empty_extras, repair_undecodable
from .spreadsheet import MEMORY_MAX_BYTES, cell_text

if TYPE_CHECKING:
    import polars as pl

COLUMNAR_FORMATS = frozenset({"parquet", "ipc", "json"})
# Rows per batch: memory holds a batch cast to text while the columnar reader works on
# it (a 1M-row dry run peaked at 218 MB with 65536, 192-198 MB with 16384, as fast;
# benchmarks/parquet.py); one block of the columnar reader (sheet.SHEET_BLOCK).
BATCH_ROWS = 16384
PARQUET_MAGIC = b"PAR1"
IPC_MAGIC = b"ARROW1"
FEATHER_V1_MAGIC = b"FEA1"


def columnar_kind(head: bytes) -> str | None:
    """The columnar format the first bytes announce (a JSON array by its ``[``)."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith((IPC_MAGIC, b"\xff\xff\xff\xff")):  # a file, or a stream's first message
        return "ipc"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"[") and stripped[1:].lstrip(b" \t\r\n")[:1] in (b"{", b"]", b""):
        return "json"
    return None


def _polars_error(exc: BaseException, fmt: str) -> str:
    detail = " ".join((str(exc).strip() or type(exc).__name__).split())[:200]
    what = {"parquet": "Parquet file", "ipc": "Arrow IPC / Feather file", "json": "JSON array"}
    return f"cannot read the {what[fmt]}: it is damaged or not one ({detail})"


def _is_fatal(exc: BaseException) -> bool:
    # polars is Rust: a panic arrives as a BaseException; only real interrupts pass.
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


class ColumnarFileSource(Source):
    """A Parquet, Arrow IPC or JSON-array input, as rows of text values."""

    def __init__(
        self,
        location: str | BinaryIO,
        *,
        head: bytes,
        path: str,
        name: str,
        fmt: str,
        size: int | None,
    ) -> None:
        self._name = name
        self._fmt = fmt
        self._frame: pl.DataFrame | None = None  # the whole file, when read whole
        self._lazy: pl.LazyFrame | None = None
        self._done_rows = 0
        self._skip = 0  # rows the caller skips (``skip_first``): not read at all
        self._path = ""  # a scanned file's, and what it was when opened (``_open``)
        self._identity: tuple[int, int, int, int] | None = None
        kind = columnar_kind(head)
        if kind != fmt and not (fmt == "ipc" and head.startswith(FEATHER_V1_MAGIC)):
            raise InputError(_not_this(head, fmt), file=name)
        if head.startswith(FEATHER_V1_MAGIC):
            raise InputError(
                "this is a Feather version 1 file, which polars cannot read; save it again "
                "as Feather v2 / Arrow IPC (pyarrow's default) or Parquet",
                file=name,
            )
        try:
            schema, self.total = self._open(location, head)
        except InputError:
            raise
        except BaseException as exc:
            if _is_fatal(exc):
                raise
            raise InputError(_polars_error(exc, fmt), file=name) from None
        self._exprs = text_exprs(schema, name)
        columns = check_header(list(schema), file=name, encoding=None)
        super().__init__(SourceInfo(path, name, fmt, None, None, columns, size))

    def _open(self, location: str | BinaryIO, head: bytes) -> tuple[Any, int]:
        import polars as pl

        if self._fmt == "json" or not isinstance(location, str):
            data = _read_capped(location, self._fmt, self._name)
            self._frame = _read_whole(data, self._fmt)
            return self._frame.schema, self._frame.height
        # A scan opens the path again at every batch: a file replaced meanwhile (a nightly
        # export renamed over it) would mix two exports' rows. Each batch checks this.
        self._path, self._identity = location, _identity(location)
        if self._fmt == "parquet":
            lazy = pl.scan_parquet(location)
        elif head.startswith(IPC_MAGIC):
            lazy = pl.scan_ipc(location)
        else:  # an IPC stream has no footer to scan: read it whole
            self._frame = _read_whole(_read_capped(location, "ipc", self._name), "ipc")
            return self._frame.schema, self._frame.height
        schema = lazy.collect_schema()
        total = lazy.select(pl.len()).collect().item()  # from the footer's metadata
        self._lazy = lazy
        return schema, int(total)

    @property
    def bytes_read(self) -> int:
        # a share of the file, as the rows go by: what progress and its ETA need
        return int((self.info.size or 0) * self._done_rows / max(self.total, 1))

    def batches(self, first: int = 0) -> Iterator[pl.DataFrame]:
        """The file's rows as frames of text (``text_exprs``), in order, a batch at a time,
        from the row at index ``first`` on (a slice of a scan reads only its row groups)."""
        for start in range(first, self.total, BATCH_ROWS):
            try:
                if self._frame is not None:
                    part = self._frame.slice(start, BATCH_ROWS).select(self._exprs)
                else:
                    assert self._lazy is not None
                    part = self._lazy.slice(start, BATCH_ROWS).select(self._exprs).collect()
                    self._check_unchanged()
            except InputError:
                raise
            except BaseException as exc:
                if _is_fatal(exc):
                    raise
                if self._lazy is not None:
                    self._check_unchanged()  # a file replaced mid-read fails as damaged
                raise InputError(_polars_error(exc, self._fmt), file=self._name) from None
            yield part

    def _check_unchanged(self) -> None:
        if _identity(self._path) != self._identity:
            raise InputError(
                "the file changed while it was being read (replaced or rewritten): run "
                "again once it is complete",
                file=self._name,
            )

    def text_batches(self) -> Iterator[pl.DataFrame]:
        """``batches`` as the columnar reader reads text frames (``columnar.read_frames``):
        columns ``c0, c1, ...``; data row N is the Nth row of them all. Progress moves
        as each batch is handed over."""
        for part in self.batches():
            # every column, also those past the header's (a trailing unnamed one):
            # read_frames hands a row with a value there to the row loop, which rejects it
            yield part.rename({name: f"c{i}" for i, name in enumerate(part.columns)})
            self._done_rows += part.height
        self._done_rows = self.total

    def skip_first(self, rows: int) -> None:
        # Every row here is numbered (none is skipped as blank): row N is at index N - 1,
        # so the rows the columnar path committed before a handover need not be cast again.
        self._skip = max(0, min(rows, self.total))

    def _rows(self) -> Iterator[Row]:
        number = self._skip
        self._done_rows = number
        columns = self.info.columns
        width = len(columns)
        for part in self.batches(number):
            for values in part.iter_rows():
                number += 1
                # an empty value past the header's columns (a stray unnamed one) is
                # nothing, as a CSV's trailing comma is
                texts = drop_empty_extras(["" if v is None else v for v in values], width)
                texts, problem = repair_undecodable(texts, columns, None)
                yield Row(self._name, number, texts, problem)
            self._done_rows = number
        self._done_rows = self.total

    def close(self) -> None:
        self._frame = None
        self._lazy = None


def _identity(path: str) -> tuple[int, int, int, int] | None:
    """Which file ``path`` is, and its state: device, inode, size, mtime (None: gone)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _not_this(head: bytes, fmt: str) -> str:
    found = columnar_kind(head)
    names = {"parquet": "a Parquet file", "ipc": "an Arrow IPC file", "json": "a JSON array"}
    if found:
        return f"this is {names[found]}, not {names[fmt]}: name it for what it is"
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if fmt == "json" and start == b"{":
        return (
            "a .json input must be one array of objects ([{...}, {...}]); "
            "for one object per line, name it .jsonl"
        )
    if fmt == "json" and start == b"[":
        return "a .json input must be one array of objects ([{...}, {...}]), not of other values"
    return f"this is not {names[fmt]} (if it is text, name it .csv)"


def _read_capped(location: str | BinaryIO, fmt: str, name: str) -> bytes:
    if isinstance(location, str):
        with open(location, "rb") as fh:
            data = fh.read(MEMORY_MAX_BYTES + 1)
    else:
        data = location.read(MEMORY_MAX_BYTES + 1)
    if len(data) > MEMORY_MAX_BYTES:
        where = "a JSON array" if fmt == "json" else "a columnar file from a pipe or an archive"
        raise InputError(
            f"{where} is read whole, and may be at most {MEMORY_MAX_BYTES // 1024**2} MB "
            "(use Parquet, or JSON Lines: one object per line)",
            file=name,
        )
    return data


def _read_whole(data: bytes, fmt: str) -> pl.DataFrame:
    import polars as pl

    if fmt == "parquet":
        return pl.read_parquet(io.BytesIO(data))
    if fmt == "ipc":
        if data.startswith(IPC_MAGIC):
            return pl.read_ipc(io.BytesIO(data))
        return pl.read_ipc_stream(io.BytesIO(data))
    text = data.removeprefix(b"\xef\xbb\xbf")
    if not text.strip(b" \t\r\n[]"):  # [] (or nothing): no rows, no columns
        return pl.DataFrame()
    return pl.read_json(io.BytesIO(text), infer_schema_length=None)


# -- values as text ------------------------------------------------------------------------


def text_exprs(schema: Any, name: str) -> list[pl.Expr]:
    """One expression per column giving its values as the contract spells them."""
    import polars as pl

    exprs = []
    for column, dtype in schema.items():
        expr = _text_expr(pl.col(column), dtype)
        if expr is None:
            raise InputError(
                f"column {column[:60]!r} holds {_kind(dtype)} values ({dtype}), which have no "
                "one text form; flatten it (or drop it) before importing",
                file=name,
            )
        exprs.append(expr.alias(column))
    return exprs


def _kind(dtype: Any) -> str:
    return "binary" if str(dtype).startswith("Binary") else "nested"


def _text_expr(col: pl.Expr, dtype: Any) -> pl.Expr | None:
    import polars as pl

    if dtype == pl.String:
        return col
    if dtype.is_integer() or dtype in (pl.Categorical, pl.Enum) or isinstance(dtype, pl.Enum):
        return col.cast(pl.String)
    if dtype == pl.Boolean:
        return pl.when(col).then(pl.lit("true")).when(col.not_()).then(pl.lit("false"))
    if dtype == pl.Date:
        return col.dt.strftime("%Y-%m-%d")
    if isinstance(dtype, pl.Datetime):
        midnight = col.dt.time() == dt.time(0)
        day, moment = col.dt.strftime("%Y-%m-%d"), col.dt.strftime("%Y-%m-%d %H:%M:%S")
        return pl.when(midnight).then(day).otherwise(moment)
    if dtype == pl.Time:
        return col.dt.strftime("%H:%M:%S")
    if dtype == pl.Null:
        return pl.lit(None, pl.String)
    if dtype.is_float() or isinstance(dtype, pl.Decimal | pl.Duration):
        # spelled by the XLSX reader's rules (15 significant digits, no .0): one home
        return col.map_batches(_python_text, return_dtype=pl.String)
    return None  # List, Array, Struct, Object, Binary


def _python_text(series: pl.Series) -> pl.Series:
    import polars as pl

    return pl.Series(series.name, [_value_text(v) for v in series.to_list()], pl.String)


def _value_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return str(int(value))
        return str(value.normalize()) if value.is_finite() else str(value)
    return cell_text(value)
