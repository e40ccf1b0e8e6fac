"""The columnar path's JSON items as polars built them, read without a copy.

A polars string column is exported through the Arrow C data interface (ctypes,
no pyarrow): its views say where each item's bytes are, and runs of
consecutive items are written to a chunk's spool file as single slices.  A dry
run needs only the items' sizes (``Sizes``).
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from shandy_cli.pipeline.chunking import Sink


class _ArrowSchema(ctypes.Structure):
    _fields_ = [
        ("format", ctypes.c_char_p),
        ("name", ctypes.c_char_p),
        ("metadata", ctypes.c_char_p),
        ("flags", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("children", ctypes.c_void_p),
        ("dictionary", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class _ArrowArray(ctypes.Structure):
    pass


_RELEASE_ARRAY = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowArray))
_RELEASE_SCHEMA = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowSchema))
_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.c_void_p),
    ("dictionary", ctypes.c_void_p),
    ("release", _RELEASE_ARRAY),
    ("private_data", ctypes.c_void_p),
]


class _Exported:
    """A polars string column's buffers through the Arrow C data interface, without pyarrow.

    Zero-copy: the memory stays polars', released when this object goes away.
    """

    def __init__(self, series: pl.Series) -> None:
        self.array, self.schema = _ArrowArray(), _ArrowSchema()
        series._export_arrow_to_c(ctypes.addressof(self.array), ctypes.addressof(self.schema))
        if self.schema.format != b"vu" or self.array.null_count:
            self.close()
            raise ValueError(f"expected a string view column, got {self.schema.format!r}")

    def views(self) -> np.ndarray:
        a = self.array
        raw = (ctypes.c_char * (16 * (a.offset + a.length))).from_address(a.buffers[1])
        return np.frombuffer(raw, _VIEW)[a.offset :]

    def data_buffers(self) -> list[memoryview]:
        a = self.array
        count = a.n_buffers - 3  # validity, views, data..., variadic sizes
        sizes_ptr = ctypes.cast(a.buffers[a.n_buffers - 1], ctypes.POINTER(ctypes.c_int64))
        return [
            memoryview((ctypes.c_char * sizes_ptr[i]).from_address(a.buffers[2 + i])).cast("B")
            for i in range(count)
        ]

    def close(self) -> None:
        if self.array.release:
            self.array.release(ctypes.pointer(self.array))
        if self.schema.release:
            _RELEASE_SCHEMA(self.schema.release)(ctypes.pointer(self.schema))
            self.schema.release = None

    def __del__(self) -> None:
        self.close()


class Items:
    """Encoded items, each with a leading comma: ``buffers[buf[i]][off[i] : off[i] + size[i]]``.

    A polars string-view column exported to Arrow without a copy: long strings sit
    back to back in a few data buffers, so runs of consecutive items are one slice.
    """

    keep: object = None  # what keeps ``buffers`` alive

    def __init__(self, buffers: list, buf: np.ndarray, off: np.ndarray, size: np.ndarray) -> None:
        self.buffers = [memoryview(b) for b in buffers]
        self.buf, self.off, self.size = buf, off, size

    @classmethod
    def from_series(cls, series: pl.Series) -> Items:
        exported = _Exported(series.rechunk())
        views = exported.views()
        size = views["len"].astype(np.int64)
        # Strings of <= 12 bytes are inlined in their view (no buffer): only a rejected
        # row can be that short (no email), and rejected rows are never written.
        buf, off = views["buf"].astype(np.int64), views["off"].astype(np.int64)
        items = cls(exported.data_buffers(), buf, off, size)
        items.keep = exported  # the buffers live as long as the export
        return items

    def take(self, index: np.ndarray) -> Items:
        taken = Items.__new__(Items)
        taken.buffers = self.buffers
        taken.buf, taken.off, taken.size = self.buf[index], self.off[index], self.size[index]
        taken.keep = self.keep
        return taken

    def write(self, out: Sink, start: int, stop: int, lead: bool) -> None:
        """Write items ``start..stop-1``; without the first one's comma unless ``lead``."""
        for buffer, a, b in self.runs(start, stop):
            if not lead:
                a, lead = a + 1, True
            out.write(self.buffers[buffer][a:b])

    def runs(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """(buffer, from, to) slices covering items ``start..stop-1`` in order."""
        buf, off, size = self.buf[start:stop], self.off[start:stop], self.size[start:stop]
        breaks = np.flatnonzero((buf[1:] != buf[:-1]) | (off[1:] != off[:-1] + size[:-1])) + 1
        edges = [0, *breaks.tolist(), len(buf)]
        for a, b in itertools.pairwise(edges):
            yield int(buf[a]), int(off[a]), int(off[b - 1] + size[b - 1])


class Sizes:
    """Items known by their sizes only (``Items.size``): what a plan (a dry run) needs.

    Its chunker writes no bodies (``Chunker.writes`` is false), so ``write``
    has nothing to do.
    """

    def __init__(self, size: np.ndarray) -> None:
        self.size = size

    def take(self, index: np.ndarray) -> Sizes:
        return Sizes(self.size[index])

    def write(self, out: Sink, start: int, stop: int, lead: bool) -> None:
        pass


_VIEW = np.dtype([("len", "<u4"), ("prefix", "<u4"), ("buf", "<u4"), ("off", "<u4")])
