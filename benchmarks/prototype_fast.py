"""Prototype: a columnar fast path for CSV sources, byte-identical to the per-row pipeline.

    python benchmarks/prototype_fast.py leads.csv --out-dir /tmp/p           # like a dry-run
    python benchmarks/prototype_fast.py leads.csv --out-dir /tmp/p --verify  # + prepare() diff

What it produces, for one CSV source, is what ``shandy_cli.pipeline.prepare``
produces for it: the chunk bodies (same bytes), the rejects CSV (written by the
same ``RowsWriter``), the sent index (same packed records), each chunk's email
keys, and the same counts.  ``--verify`` runs ``prepare()`` on the same file
and compares all of them byte for byte.

How, per block of ~1 MB of whole records read as bytes (``PROTO_BLOCK_MB``),
parsed by ``PROTO_WORKERS`` threads (default 2) while the main thread commits
the previous block in order:

1. structure check (numpy over the quote and CR positions): every opening
   quote starts a field, every closing quote ends one, no lone CR, no NUL.
   Where Python's csv module (``strict=False``) and an RFC 4180 parser could
   disagree, the block is *ineligible*;
2. ``polars.read_csv`` of the block (strict UTF-8, at most the header's column
   count: long ragged rows and bad bytes raise -> ineligible; short rows pad,
   which the per-row path treats the same way);
3. trim with exactly the characters ``str.strip()`` removes; all-empty records
   are dropped and not numbered, as the reader does;
4. email plausibility: an ASCII-only regex built from ``is_plausible_email``'s
   own character classes decides ASCII addresses; the others go through
   ``is_plausible_email`` itself;
5. dedupe on the ledger's key (BLAKE2b of the lowercased address; the one
   per-row Python loop left, run in the worker threads), in a numpy
   open-addressing table with vectorised batch inserts (first one wins);
6. JSON: ``concat_str`` of ``"Label":"value"`` fragments, empty values dropped
   with their separator, escapes by one Aho-Corasick ``replace_many`` on the
   columns that need it (checked against orjson at start-up, see check_json);
7. greedy packing on the items' byte lengths (cumsum + searchsorted per chunk,
   not per row); the items' bytes are read from polars' string-view buffers
   through the Arrow C data interface (no pyarrow, no copy), joined into ~1 MB
   writes, and written and hashed (the chunk digest) by a spool thread.

Ineligible mappings (several columns -> one label, a ``--set`` constant for a
mapped label) or files (not UTF-8, ``sep=`` line, header not a clean first
record) go per-row from the start; an ineligible block hands the rest of the
source to the per-row path after the last record already done (same row
numbers, same dedupe table, same chunk being filled).
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import hashlib
import io
import itertools
import json
import os
import queue
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# One jemalloc arena for polars: several worker threads otherwise spread freed
# memory over up to 8 arenas, each keeping it for 10 s (~60 MB more peak RSS).
# Read when polars loads, so it has to be set before the import.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1")

import numpy as np
import orjson
import polars as pl

from shandy_cli._files import private_output
from shandy_cli.pipeline.chunking import API_MAX_BYTES, API_MAX_ROWS, PREFIX, encode_prospect
from shandy_cli.pipeline.mapping import Mapping, build_mapping, parse_pairs
from shandy_cli.pipeline.reporting import META_COLUMNS, RowsWriter, SentIndex, reason_kind
from shandy_cli.pipeline.sources import open_source
from shandy_cli.pipeline.validation import (
    _ATOM,
    EMAIL_LABEL,
    MAX_EMAIL,
    MAX_LOCAL,
    _shown,
    email_key,
    is_plausible_email,
)

BLOCK = int(float(os.environ.get("PROTO_BLOCK_MB", "1")) * (1 << 20))
WORKERS = int(os.environ.get("PROTO_WORKERS", "2"))
ONE_QUERY = os.environ.get("PROTO_ONE_QUERY", "0") == "1"
DEPTH = int(os.environ.get("PROTO_DEPTH", "0"))  # blocks parsed ahead; 0: WORKERS + 1
ROW_BITS = 40
ROW_MASK = (1 << ROW_BITS) - 1
BOM = b"\xef\xbb\xbf"
# Exactly the characters str.strip() removes (str.isspace()), for polars' strip_chars.
PY_WS = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())
# JSON string escapes exactly as orjson writes them (checked by _check_json below).
ESCAPES = ["\\", '"', *map(chr, range(32))]
ESCAPED = [orjson.dumps(ch).decode()[1:-1] for ch in ESCAPES]
SUFFIX = b'],"stepId":"StepA1","verifyProspects":false,"conflictAction":"noUpdate","tags":[]}'


class Ineligible(Exception):
    """This block cannot go the columnar way; the per-row path continues from ``done``."""

    def __init__(self, reason: str, done: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.done = done  # data rows (non-blank records) already handled


# ---------------------------------------------------------------- email regex (ASCII, exact)


def _ascii_class(python_class: str, drop: str = "") -> str:
    """A Rust-regex class of exactly the ASCII characters a Python class matches."""
    chars = [
        chr(i) for i in range(128) if re.fullmatch(python_class, chr(i)) and chr(i) not in drop
    ]
    return "[" + "".join(f"\\x{ord(c):02x}" for c in chars) + "]"


def _fast_email_regex() -> str:
    atom = _ascii_class(_ATOM.removesuffix("+"))
    # "_" anywhere after the "@" makes is_plausible_email say no: leave it out of the domain.
    first = _ascii_class(r"[^\W_]")
    middle = _ascii_class(r"[\w-]", drop="_")
    alpha = _ascii_class(r"[^\W\d_]")
    label = f"{first}(?:{middle}{{0,61}}{first})?"
    tld = f"(?:{alpha}{{2,63}}|[xX][nN]--{middle}{{1,59}})"
    return f"^{atom}+(?:\\.{atom}+)*@(?:{label}\\.)+{tld}$"


FAST_EMAIL = _fast_email_regex()


# ---------------------------------------------------------------- dedupe table


class KeyTable:
    """Nonzero uint64 keys -> uint64 values; linear probing, at most 70% full.

    The layout of ``validation._DigestTable`` (two flat arrays), so the per-row
    path could share it; here with a vectorised ``setdefault_many``.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.keys = np.zeros(capacity, np.uint64)
        self.values = np.zeros(capacity, np.uint64)
        self.size = 0

    def _reserve(self, extra: int) -> None:
        capacity = len(self.keys)
        while (self.size + extra) * 10 > capacity * 7:  # at most 70% full
            capacity *= 2
        if capacity == len(self.keys):
            return
        used = self.keys != 0
        old_k, old_v = self.keys[used], self.values[used]
        self.keys = np.zeros(capacity, np.uint64)
        self.values = np.zeros(capacity, np.uint64)
        self.size = 0
        self._insert(old_k, old_v)  # distinct keys: every one is new

    def reserve(self, expected: int) -> None:
        """Size the table for ``expected`` keys now: growing later rehashes everything."""
        self._reserve(max(0, expected - self.size))

    def setdefault_many(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Insert in order; for each key, the value stored before it (0 if it was new).

        A key repeated within ``keys`` gets the value of its first occurrence.
        """
        self._reserve(len(keys))
        return self._insert(keys, values)

    def _insert(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        mask = np.uint64(len(self.keys) - 1)
        found = np.zeros(len(keys), np.uint64)
        pending = np.arange(len(keys))
        slots = keys & mask
        while len(pending):
            at = slots[pending]
            current = self.keys[at]
            mine = keys[pending]
            hit = current == mine
            found[pending[hit]] = self.values[at[hit]]
            empty = current == 0
            # Several pending keys may want the same empty slot: the earliest wins
            # (np.unique keeps the first index of each slot; pending is in order).
            idx_empty = np.flatnonzero(empty)
            _, first = np.unique(at[idx_empty], return_index=True)
            winners = idx_empty[first]
            self.keys[at[winners]] = mine[winners]
            self.values[at[winners]] = values[pending[winners]]
            self.size += len(winners)
            done = hit.copy()
            done[winners] = True
            moved = ~empty & ~hit  # occupied by another key: probe on
            slots[pending[moved]] = (slots[pending[moved]] + np.uint64(1)) & mask
            # losers of a contested empty slot retry it: it now holds the winner's key
            pending = pending[~done]
        return found

    def setdefault(self, key: int, value: int) -> int:
        return int(
            self.setdefault_many(np.array([key], np.uint64), np.array([value], np.uint64))[0]
        )


# ---------------------------------------------------------------- chunk bodies


@dataclass
class ChunkInfo:
    index: int
    rows: int
    bytes: int
    path: Path
    first: tuple[str, int]
    last: tuple[str, int]
    digest: str
    keys: np.ndarray


class _ArrowSchema(ctypes.Structure):
    _fields_ = [
        ("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
        ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
        ("children", ctypes.c_void_p), ("dictionary", ctypes.c_void_p),
        ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
    ]  # fmt: skip


class _ArrowArray(ctypes.Structure):
    pass


_RELEASE_ARRAY = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowArray))
_RELEASE_SCHEMA = ctypes.CFUNCTYPE(None, ctypes.POINTER(_ArrowSchema))
_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)), ("children", ctypes.c_void_p),
    ("dictionary", ctypes.c_void_p), ("release", _RELEASE_ARRAY), ("private_data", ctypes.c_void_p),
]  # fmt: skip


class _Exported:
    """A polars string column's buffers through the Arrow C data interface, without pyarrow.

    Zero-copy: the memory stays polars', released when this object goes away.
    """

    def __init__(self, series: pl.Series) -> None:
        self.array, self.schema = _ArrowArray(), _ArrowSchema()
        series._export_arrow_to_c(ctypes.addressof(self.array), ctypes.addressof(self.schema))
        if self.schema.format != b"vu" or self.array.null_count:
            self.close()
            raise TypeError(f"expected a string view column, got {self.schema.format!r}")

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

    @classmethod
    def single(cls, item: bytes) -> Items:
        framed = b"," + item
        one = np.array([0], np.int64)
        return cls([framed], one, one.copy(), np.array([len(framed)], np.int64))

    def take(self, index: np.ndarray) -> Items:
        taken = Items.__new__(Items)
        taken.buffers = self.buffers
        taken.buf, taken.off, taken.size = self.buf[index], self.off[index], self.size[index]
        taken.keep = getattr(self, "keep", None)
        return taken

    def runs(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """(buffer, from, to) slices covering items ``start..stop-1`` in order."""
        buf, off, size = self.buf[start:stop], self.off[start:stop], self.size[start:stop]
        breaks = np.flatnonzero((buf[1:] != buf[:-1]) | (off[1:] != off[:-1] + size[:-1])) + 1
        edges = [0, *breaks.tolist(), len(buf)]
        for a, b in itertools.pairwise(edges):
            yield int(buf[a]), int(off[a]), int(off[b - 1] + size[b - 1])


_VIEW = np.dtype([("len", "<u4"), ("prefix", "<u4"), ("buf", "<u4"), ("off", "<u4")])


class Spool(threading.Thread):
    """Writes and hashes chunk bodies off the main thread (both release the GIL)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=2)
        self.digests: list[str] = []
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        out, digest = None, None
        try:
            while True:
                op, arg = self.queue.get()
                if op == "open":
                    out = open(arg, "wb")  # noqa: SIM115 -- closed on "close"
                    digest = hashlib.blake2b(digest_size=16)
                elif op == "write":
                    out.write(arg)
                    digest.update(arg)
                elif op == "close":
                    out.close()
                    self.digests.append(digest.hexdigest())
                else:
                    return
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> list[str]:
        self.queue.put(("stop", None))
        self.join()
        if self.error:
            raise self.error
        return self.digests


class BodyWriter:
    """Greedy packing of items into spooled bodies: the Chunker's rule, per chunk not per row."""

    FLUSH = 1 << 20

    def __init__(
        self, suffix: bytes, spool: Path, max_rows: int, max_bytes: int, write: bool = True
    ) -> None:
        self.write = write  # False: a dry-run's accounting only (sizes, rows, keys)
        self.suffix = suffix
        self.spool = spool
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.chunks: list[ChunkInfo] = []
        self.rows = 0
        self.size = len(PREFIX)
        self._sink = Spool()
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        self._owners: list[object] = []
        self._keys: list[np.ndarray] = []
        self._first: tuple[str, int] = ("", 0)
        self._last: tuple[str, int] = ("", 0)
        self._path = spool
        spool.mkdir(parents=True, exist_ok=True)

    def fits_alone(self, length: int) -> bool:
        return len(PREFIX) + length + len(self.suffix) <= self.max_bytes

    def _write(self, data: bytes | memoryview, owner: object = None) -> None:
        # Slices of Arrow buffers are copied once, into one block per flush: a few
        # large writes instead of one per run of items (each would contend for the GIL).
        if not self.write:
            return
        if owner is not None:
            self._owners.append(owner)  # the slice's memory lives until it is copied
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._sink.queue.put(("write", b"".join(self._pending)))
            self._pending, self._pending_size, self._owners = [], 0, []

    def _open(self, first: tuple[str, int]) -> None:
        self._path = self.spool / f"chunk-{len(self.chunks):05d}.json"
        if self.write:
            self._sink.queue.put(("open", self._path))
        self._first = first
        self._write(PREFIX)

    def _close(self) -> None:
        self._write(self.suffix)
        self._flush()
        if self.write:
            self._sink.queue.put(("close", None))
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, np.uint64)
        self.chunks.append(
            ChunkInfo(
                len(self.chunks), self.rows, self.size + len(self.suffix), self._path,
                self._first, self._last, "", keys,
            )
        )  # fmt: skip
        self._keys = []
        self.rows, self.size = 0, len(PREFIX)

    def add(self, items: Items, keys: np.ndarray, numbers: np.ndarray, name: str) -> None:
        """Append items in order, closing a chunk whenever the next item does not fit."""
        n = len(keys)
        if not n:
            return
        lens = items.size - 1  # without the comma
        cum = np.cumsum(items.size)  # bytes of item j with the comma before it, summed
        limit_total = self.max_bytes - len(self.suffix)
        i = 0
        while i < n:
            skip_comma = self.rows == 0
            if skip_comma:
                self._open((name, int(numbers[i])))
                self.size += int(lens[i])
                self.rows = 1
                j = i + 1
            else:
                j = i
            base = int(cum[j - 1]) if j else 0
            k = int(np.searchsorted(cum, base + (limit_total - self.size), side="right"))
            k = min(k, j + (self.max_rows - self.rows), n)
            if k > j:
                self.size += int(cum[k - 1]) - base
                self.rows += k - j
            for buffer, start, stop in items.runs(i, k):
                if skip_comma:
                    start, skip_comma = start + 1, False
                self._write(items.buffers[buffer][start:stop], items)
            self._keys.append(keys[i:k])
            self._last = (name, int(numbers[k - 1]))
            if k < n:
                self._close()
            i = k

    def finish(self) -> None:
        if self.rows:
            self._close()
        digests = self._sink.finish()
        for chunk, digest in zip(self.chunks, digests if self.write else [], strict=self.write):
            chunk.digest = digest


# ---------------------------------------------------------------- reading blocks


def _structure_ok(a: np.ndarray, delim: int, final: bool) -> str | None:
    """None when the block (whole records, starting outside quotes) is RFC 4180 clean."""
    q = np.flatnonzero(a == 34)
    if len(q) % 2:
        return "a quoted value is never closed"
    if len(q):
        opening, closing = q[0::2], q[1::2]
        prev = a[np.maximum(opening - 1, 0)]
        ok_prev = (prev == delim) | (prev == 10) | (opening == 0)
        # an opening quote right after a closing one is the second half of ""
        ok_prev[1:] |= opening[1:] - 1 == closing[:-1]
        if not ok_prev.all():
            return "a quote inside an unquoted value"
        after = np.minimum(closing + 1, len(a) - 1)
        nxt = a[after]
        ok_next = (nxt == delim) | (nxt == 10) | (nxt == 13) | (nxt == 34)
        if final:
            ok_next |= closing == len(a) - 1
        if not ok_next.all():
            return "text after a closing quote"
    cr = np.flatnonzero(a == 13)
    if len(cr) and (cr[-1] == len(a) - 1 or not (a[cr + 1] == 10).all()):
        return "a carriage return not followed by a newline"
    return None


def _record_end(buf: bytes, start: int = 0) -> int:
    """Index just past the first newline outside quotes at or after ``start`` (-1 if none)."""
    pos = start
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return -1
        if buf.count(b'"', start, nl) % 2 == 0:
            return nl + 1
        pos = nl + 1


def _last_record_end(buf: bytes) -> int:
    """Index just past the last newline outside quotes (0 if none)."""
    end = len(buf)
    quotes_total = buf.count(b'"')
    while True:
        nl = buf.rfind(b"\n", 0, end)
        if nl < 0:
            return 0
        if (quotes_total - buf.count(b'"', nl)) % 2 == 0:
            return nl + 1
        end = nl


def blocks(path: str, encoding: str, columns: list[str], delimiter: str) -> Iterator[bytes]:
    """The data records of a CSV file as byte blocks of whole records; header checked."""
    if encoding not in ("utf-8", "utf-8-sig"):
        raise Ineligible(f"encoding {encoding}", 0)
    if len(delimiter.encode()) != 1:
        raise Ineligible("a multi-byte delimiter", 0)
    with open(path, "rb") as f:
        buf = f.read(BLOCK)
        if buf.startswith(BOM):
            buf = buf[3:]
        if buf[:4].lower() == b"sep=":
            raise Ineligible("a sep= line", 0)
        end = _record_end(buf)
        if end < 0:
            raise Ineligible("a header longer than a block", 0)
        header = next(
            csv.reader(io.StringIO(buf[:end].decode("utf-8"), newline=""), delimiter=delimiter)
        )
        if header != columns:
            raise Ineligible("the header is not one clean first record", 0)
        buf, eof = buf[end:], False
        while True:
            if not eof and len(buf) < BLOCK:
                more = f.read(max(BLOCK - len(buf), 1 << 16))
                eof = not more
                buf += more
                continue
            if eof:
                if buf:
                    yield buf
                return
            cut = _last_record_end(buf)
            if cut == 0:  # one record longer than a block: read on
                more = f.read(BLOCK)
                eof = not more
                buf += more
                continue
            yield buf[:cut]
            buf = buf[cut:]


# ---------------------------------------------------------------- the fast path


@dataclass
class Totals:
    rows_read: int = 0
    rows_submitted: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0
    fallback: str | None = None
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class Parsed:
    """Stage A's work on one block (polars and numpy, off the GIL, in a worker thread)."""

    rows: int
    nbytes: int
    raw: pl.DataFrame  # the non-blank records, untrimmed: for rejects
    email: pl.Series  # trimmed
    ascii: np.ndarray  # bool: accepted by the (ASCII-only) vector regex
    valid: np.ndarray  # bool: plausible so far (non-ASCII rows are decided in commit)
    missing: np.ndarray  # bool
    ascii_keys: np.ndarray  # email keys of the valid ASCII rows, in order
    items: Items  # every row's JSON item (rejected rows' too; they are never written)


class CsvFastPath:
    """One CSV source through the columnar stages; shares the run's table, writer and files."""

    def __init__(
        self,
        mapping: Mapping,
        *,
        table: KeyTable,
        writer: BodyWriter,
        rejects: RowsWriter,
        sent: SentIndex,
        skip_keys: np.ndarray,
        files: list[str],
        workers: int = WORKERS,
    ) -> None:
        self.mapping = mapping
        self.table = table
        self.writer = writer
        self.rejects = rejects
        self.sent = sent
        self.skip_keys = skip_keys
        self.files = files
        self.workers = workers
        self.ncols = len(mapping.columns)
        self.names = [f"c{i}" for i in range(self.ncols)]
        self.schema = dict.fromkeys(self.names, pl.String)
        self._item_exprs: dict[tuple[bool, ...], pl.Expr] = {}
        self.ineligible: Ineligible | None = None
        try:
            self._plan()
        except Ineligible as exc:
            self.ineligible = exc

    # -- what Mapping.prospect does, as column expressions --------------------------------

    def _plan(self) -> None:
        m = self.mapping
        by_label: dict[str, list[int]] = {}
        for index, label in enumerate(m.targets):
            if label is not None:
                by_label.setdefault(label, []).append(index)
        # Where Mapping.prospect puts a key depends on the row in two cases: several
        # columns mapped to one label (the first non-empty one places it), and a
        # --set constant for a label a column also fills (in place, or at the end when
        # the cell is empty). Fixed fragments cannot say that: the per-row path does it.
        if any(len(cols) > 1 for cols in by_label.values()):
            raise Ineligible("several columns map to one label", 0)
        if any(label in by_label for label in m.constants) or EMAIL_LABEL in m.constants:
            raise Ineligible("a --set constant for a mapped label", 0)
        self.mapped = [i for i, label in enumerate(m.targets) if label is not None]
        self.keys_json = {i: orjson.dumps(m.targets[i]).decode() for i in self.mapped}
        self.tail = "".join(
            "," + orjson.dumps(label).decode() + ":" + orjson.dumps(value).decode()
            for label, value in m.constants.items()
        )
        email_cols = by_label.get(EMAIL_LABEL, [])
        self.email_col = f"t{email_cols[0]}" if email_cols else None
        # All-empty records are skipped and not numbered (short rows read as null).
        lengths = [pl.col(n).str.len_bytes() for n in self.names]
        self.blank_expr = pl.sum_horizontal(lengths) == 0
        # Trimmed values, null when empty: null drops out of the JSON join.
        self.trim = []
        for i in self.mapped:
            stripped = pl.col(f"c{i}").str.strip_chars(PY_WS)
            self.trim.append(pl.when(stripped.str.len_bytes() > 0).then(stripped).alias(f"t{i}"))
        self.sticky: frozenset[int] = frozenset()
        self._check_exprs: dict[frozenset[int], list[pl.Expr]] = {}

    def _items(self, trimmed: pl.DataFrame, escape: list[bool]) -> pl.Series:
        """Each prospect's JSON with a leading comma: orjson's bytes exactly (see check_json)."""
        return trimmed.select(self._item_expr(escape)).to_series()

    def _item_expr(self, escape: list[bool]) -> pl.Expr:
        key = tuple(escape)
        if key not in self._item_exprs:
            frags = []
            for i in self.mapped:  # t{i}: trimmed, null when empty
                t = pl.col(f"t{i}")
                value = t.str.replace_many(ESCAPES, ESCAPED) if escape[i] else t
                frags.append(pl.concat_str([pl.lit(self.keys_json[i] + ':"'), value, pl.lit('"')]))
            # a null (empty) value drops out of the join together with its separator
            body = pl.concat_str(frags, separator=",", ignore_nulls=True)
            item = pl.concat_str([pl.lit(",{"), body, pl.lit(self.tail + "}")])
            self._item_exprs[key] = item.alias("item")
        return self._item_exprs[key]

    # -- stage A: one block, polars/numpy only ----------------------------------------------

    def _checks_plan(self, sticky: frozenset[int]) -> list[pl.Expr]:
        """Per-row columns (trimmed values, email checks) and per-block escape flags."""
        email = pl.col(self.email_col).fill_null("") if self.email_col else pl.lit("")
        exprs = [
            email.alias("email"),
            (
                email.str.contains(FAST_EMAIL)
                & (email.str.len_bytes() <= MAX_EMAIL)
                & (email.str.find("@", literal=True) <= MAX_LOCAL)
            ).alias("fast"),
            (email.str.len_bytes() == 0).alias("missing"),
            email.str.to_lowercase().cast(pl.Binary).alias("lowered"),
        ]
        # JSON escaping is needed where a value holds " \\ or a control character; a
        # column that needed it once is escaped from then on, without asking again.
        exprs += [
            pl.col(f"t{i}").str.contains_any(ESCAPES).any().alias(f"f{i}")
            for i in self.mapped
            if i not in sticky
        ]
        return exprs

    def parse(self, block: bytes, delimiter: str) -> Parsed:
        a = np.frombuffer(block, np.uint8)
        problem = _structure_ok(a, ord(delimiter), final=not block.endswith(b"\n"))
        if problem or b"\0" in block:
            raise Ineligible(problem or "a NUL byte", -1)
        try:
            raw = pl.read_csv(
                block, has_header=False, schema=self.schema, separator=delimiter,
                empty_string_is_null=False, quote_char='"', encoding="utf8",
            )  # fmt: skip
        except Exception as exc:  # any parser complaint: the per-row path decides
            raise Ineligible(f"polars: {str(exc).splitlines()[0]}", -1) from None
        sticky = self.sticky
        if sticky not in self._check_exprs:
            assumed = [i in sticky for i in range(self.ncols)]
            items = [self._item_expr(assumed)] if ONE_QUERY else []
            self._check_exprs[sticky] = [*self._checks_plan(sticky), *items]
        # One query: the items are built alongside the checks (in parallel), escaping
        # the columns known to need it; if another column turns out to need it in
        # this block, the items are built again (rare once the first blocks are seen).
        frame = (
            raw.lazy()
            .filter(~self.blank_expr)
            .with_columns(self.trim)
            .with_columns(self._check_exprs[sticky])
            .collect()
        )
        escape = [i in sticky for i in range(self.ncols)]
        item_col = frame.get_column("item") if ONE_QUERY else None
        if frame.height:
            new = [i for i in self.mapped if i not in sticky and frame.get_column(f"f{i}")[0]]
            if new:
                for i in new:
                    escape[i] = True
                self.sticky = frozenset(i for i, flag in enumerate(escape) if flag) | self.sticky
                item_col = None
        if item_col is None:
            item_col = self._items(frame, escape)
        # The vector regex only matches ASCII: what it accepts is valid; the rest is
        # invalid if ASCII, else for is_plausible_email to decide (in commit).
        ascii_ok = frame.get_column("fast").to_numpy()
        valid = ascii_ok.copy()
        lowered = frame.get_column("lowered").filter(pl.Series(valid)).to_list()
        # The ledger's key, as validation.email_key computes it (ASCII: lower() is the same).
        b2 = hashlib.blake2b
        ascii_keys = np.frombuffer(
            b"".join([b2(v, digest_size=8).digest() for v in lowered]), "<u8"
        )
        items = Items.from_series(item_col)
        return Parsed(
            frame.height, len(block), frame.select(self.names), frame.get_column("email"),
            ascii_ok, valid, frame.get_column("missing").to_numpy(), ascii_keys, items,
        )  # fmt: skip

    # -- one source ------------------------------------------------------------------------

    def run(
        self, path: str, encoding: str, delimiter: str, file_index: int, totals: Totals
    ) -> None:
        if self.ineligible:
            raise self.ineligible
        name = self.files[file_index]
        done = 0
        self.file_size = os.path.getsize(path)
        if self.workers == 0:  # sequential: for measuring
            try:
                for block in blocks(path, encoding, self.mapping.columns, delimiter):
                    done = self.commit(self.parse(block, delimiter), file_index, name, done, totals)
            except Ineligible as exc:
                exc.done = done
                raise
            return
        pending: deque[Future[Parsed]] = deque()
        with ThreadPoolExecutor(self.workers) as pool:
            try:
                for block in blocks(path, encoding, self.mapping.columns, delimiter):
                    pending.append(pool.submit(self.parse, block, delimiter))
                    if len(pending) >= (DEPTH or self.workers + 1):
                        done = self.commit(
                            pending.popleft().result(), file_index, name, done, totals
                        )
                while pending:
                    done = self.commit(pending.popleft().result(), file_index, name, done, totals)
            except Ineligible as exc:
                for future in pending:
                    future.cancel()
                exc.done = done
                raise

    # -- stage B: in order, on the main thread ----------------------------------------------

    def commit(self, p: Parsed, file_index: int, name: str, done: int, totals: Totals) -> int:
        n = p.rows
        if done == 0 and p.nbytes:  # rows to expect, from the first block's density
            self.table.reserve(self.table.size + int(n * self.file_size / p.nbytes))
        numbers = np.arange(done + 1, done + n + 1, dtype=np.int64)
        totals.rows_read += n
        valid = p.valid
        odd = np.flatnonzero(~p.ascii & ~p.missing)
        odd_values = p.email.gather(odd).to_list() if len(odd) else []
        for i, value in zip(odd, odd_values, strict=True):
            valid[i] = not value.isascii() and is_plausible_email(value)
        # -- dedupe on the ledger's key (BLAKE2b of the lowercased address), first wins
        ascii_keys = p.ascii_keys
        vidx = np.flatnonzero(valid)
        keys = np.empty(len(vidx), np.uint64)
        is_ascii = p.ascii[vidx]
        keys[is_ascii] = ascii_keys
        if not is_ascii.all():
            extra = vidx[~is_ascii]
            keys[~is_ascii] = [email_key(v) for v in p.email.gather(extra).to_list()]
        keys[keys == 0] = 1
        where = (np.uint64(file_index) << np.uint64(ROW_BITS)) | numbers[vidx].astype(np.uint64)
        first = self.table.setdefault_many(keys, where)
        dup = first != 0
        keep = vidx[~dup]
        kept_keys = keys[~dup]
        items = p.items.take(keep)
        oversize = len(PREFIX) + (items.size - 1) + len(self.writer.suffix) > self.writer.max_bytes
        skipped = np.zeros(len(keep), bool)
        if len(self.skip_keys):
            skipped = np.isin(kept_keys, self.skip_keys)
        # -- rejects, in row order, with the per-row path's reasons
        reasons: dict[int, tuple[str, str]] = {}
        for i in np.flatnonzero(p.missing):
            reasons[int(i)] = ("missing email", "missing email")
        bad = np.flatnonzero(~valid & ~p.missing)
        for i, value in zip(bad, p.email.gather(bad).to_list(), strict=True):
            reason = f"invalid email {_shown(value)}"
            reasons[int(i)] = (reason, _kind(reason, value, "invalid email"))
        dup_rows = vidx[dup]
        firsts = first[dup].tolist()
        for i, value, f in zip(dup_rows, p.email.gather(dup_rows).to_list(), firsts, strict=True):
            reason = (
                f"duplicate email {_shown(value)} (first seen in "
                f"{self.files[f >> ROW_BITS]} row {f & ROW_MASK})"
            )
            reasons[int(i)] = (reason, _kind(reason, value, "duplicate email"))
        for j in np.flatnonzero(oversize):
            reason = (
                f"prospect is {int(items.size[j] - 1):,} bytes, more than any request may hold "
                f"({self.writer.max_bytes:,} bytes)"
            )
            reasons[int(keep[j])] = (reason, reason_kind(reason))
        if reasons:
            order = sorted(reasons)
            rows = p.raw[order].fill_null("").rows()
            self.rejects.add_many(
                name,
                self.mapping.columns,
                [(int(numbers[i]), row, *reasons[i]) for i, row in zip(order, rows, strict=True)],
            )
        totals.rows_rejected += len(reasons)
        totals.rows_skipped += int(skipped.sum())
        send = ~oversize & ~skipped
        if not send.all():
            sel = np.flatnonzero(send)
            items, kept_keys, keep = items.take(sel), kept_keys[sel], keep[sel]
        assert not len(items.size) or items.size.min() > 12, "an item to send is inline"
        self.writer.add(items, kept_keys, numbers[keep], name)
        self._sent(kept_keys, numbers[keep], file_index, totals)
        return done + n

    def _sent(self, keys: np.ndarray, numbers: np.ndarray, file_index: int, totals: Totals) -> None:
        packed = np.empty((len(keys), 2), np.uint64)
        packed[:, 0] = keys
        packed[:, 1] = (np.uint64(file_index) << np.uint64(ROW_BITS)) | numbers.astype(np.uint64)
        self.sent.add_many(packed.tobytes())
        totals.rows_submitted += len(keys)


class FastRejects(RowsWriter):
    """RowsWriter, plus a batch writer for rows known to be clean text."""

    def _open(self) -> None:  # RowsWriter._open, keeping the file for add_many
        self._ctx = private_output(self.path, "w", newline="", encoding="utf-8")
        self._fh = self._ctx.__enter__()
        self._writer = csv.writer(self._fh)
        self._writer.writerow([*self.columns, *META_COLUMNS])

    def add_many(
        self, file: str, columns: list[str], rows: list[tuple[int, tuple, str, str]]
    ) -> None:
        """(row number, values, reason, kind) each: RowsWriter.add's output, one write.

        The values decoded cleanly (polars reads strict UTF-8: no surrogates to
        replace) and are as wide as the header (ragged rows never get here).
        """
        if self._writer is None:
            self._open()
        text = io.StringIO()
        out = csv.writer(text)
        if columns == self.columns:
            out.writerows([*values, file, number, reason] for number, values, reason, _ in rows)
        else:
            at = [self._position[c] for c in columns]
            for number, values, reason, _ in rows:
                full = [""] * len(self.columns)
                for i, value in zip(at, values, strict=True):
                    full[i] = value
                out.writerow([*full, file, number, reason])
        self._fh.write(text.getvalue())
        self.count += len(rows)
        self.reasons.update(kind for _, _, _, kind in rows)


def _kind(reason: str, value: str, template_kind: str) -> str:
    # reason_kind() drops quoted values and parenthesised details; it can only
    # come out differently from the template's when the value holds quotes or parens.
    return reason_kind(reason) if any(c in value for c in "'\"()") else template_kind


def check_json(fast: CsvFastPath) -> None:
    """Build items for awkward values the columnar way and compare with orjson: any
    difference (a polars upgrade changing an escape, say) disables the fast path."""
    if fast.ineligible:
        raise fast.ineligible
    samples = [
        "",
        " ",
        "plain",
        'a "quoted" word',
        "back\\slash",
        "tab\there",
        "line\nbreak",
        "\r\n",
        "\x00\x01\x1f\x7f",
        "é ü ß 🙂",
        "\u2028\u2029",
        "/ slash",
        "\x08\x0c",
        "  padded\t",
        "\x85nel\xa0",
        "\u3000wide\u3000",
        "\x1c\x1d\x1e\x1finfo",
    ]
    m = fast.mapping
    rows = [[samples[(r + c) % len(samples)] for c in range(fast.ncols)] for r in range(64)]
    for row in rows:
        row[m.targets.index(EMAIL_LABEL)] = "a@b.co"
    frame = pl.DataFrame(
        {f"t{i}": [row[i].strip() or None for row in rows] for i in fast.mapped},
        schema={f"t{i}": pl.String for i in fast.mapped},
    )
    got = fast._items(frame, [True] * fast.ncols).to_list()
    want = ["," + encode_prospect(m.prospect(row)).decode() for row in rows]
    if got != want:
        raise Ineligible("columnar JSON differs from orjson on this polars", 0)
    trims = pl.Series(samples).str.strip_chars(PY_WS).to_list()
    if trims != [v.strip() for v in samples]:
        raise Ineligible("polars trims differently from str.strip", 0)


# ---------------------------------------------------------------- per-row fallback


def per_row(
    path: str, mapping: Mapping, fast: CsvFastPath, file_index: int, done: int, totals: Totals
) -> None:
    """The rest of a source the way prepare._Reader does it (same table, same writer)."""
    writer, ncols = fast.writer, len(mapping.columns)
    skip = set(fast.skip_keys.tolist())
    with open_source(path) as src:
        for row in src.rows():
            if row.number <= done:
                continue
            totals.rows_read += 1
            problem = row.problem
            if (
                problem is None
                and len(row.values) > ncols
                and any(v.strip() for v in row.values[ncols:])
            ):
                problem = f"row has {len(row.values)} values but the header has {ncols} columns"
            prospect = mapping.prospect(row.values)
            reason, key = _check(prospect, problem, fast, file_index, row.number)
            item = b""
            if reason is None:
                try:
                    item = encode_prospect(prospect)
                except ValueError:
                    reason = "a value is not valid text"
            if reason is None and not writer.fits_alone(len(item)):
                reason = (
                    f"prospect is {len(item):,} bytes, more than any request may hold "
                    f"({writer.max_bytes:,} bytes)"
                )
            if reason is not None:
                fast.rejects.add(row.file, row.number, mapping.columns, row.values, reason)
                totals.rows_rejected += 1
                continue
            if key in skip:
                totals.rows_skipped += 1
                continue
            writer.add(
                Items.single(item), np.array([key], np.uint64), np.array([row.number]), row.file
            )
            fast._sent(np.array([key], np.uint64), np.array([row.number]), file_index, totals)


def _check(
    prospect: dict[str, str], problem: str | None, fast: CsvFastPath, file_index: int, row: int
) -> tuple[str | None, int]:
    if problem:
        return problem, 0
    email = prospect.get(EMAIL_LABEL, "").strip()
    if not email:
        return "missing email", 0
    if not is_plausible_email(email):
        return f"invalid email {_shown(email)}", 0
    key = email_key(email)
    first = fast.table.setdefault(key, (file_index << ROW_BITS) | min(row, ROW_MASK))
    if first == 0:
        return None, key
    return (
        f"duplicate email {_shown(email)} (first seen in {fast.files[first >> ROW_BITS]} "
        f"row {first & ROW_MASK})"
    ), 0


# ---------------------------------------------------------------- driver


def prepare_fast(
    path: str,
    out_dir: Path,
    labels: list[str],
    *,
    suffix: bytes = SUFFIX,
    max_rows: int = API_MAX_ROWS,
    max_bytes: int = API_MAX_BYTES,
    skip_keys: set[int] | None = None,
    column_map: dict[str, str] | None = None,
    constants: dict[str, str] | None = None,
    on_unknown_column: str = "error",
    write_bodies: bool = True,
) -> tuple[Totals, list[ChunkInfo], Path | None]:
    src = open_source(path)
    info = src.info
    src.close()
    mapping = build_mapping(
        info.columns, labels, explicit=column_map, constants=constants, on_unknown=on_unknown_column
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    rejects = FastRejects(out_dir / "rejects.csv", list(info.columns))
    sent = SentIndex(out_dir / "sent.idx")
    writer = BodyWriter(suffix, out_dir / "chunks", max_rows, max_bytes, write_bodies)
    skip = np.array(sorted(skip_keys or ()), np.uint64)
    fast = CsvFastPath(
        mapping, table=KeyTable(), writer=writer, rejects=rejects, sent=sent, skip_keys=skip,
        files=[info.name],
    )  # fmt: skip
    totals = Totals()
    try:
        check_json(fast)
        fast.run(path, info.encoding or "", info.delimiter or ",", 0, totals)
    except Ineligible as exc:
        totals.fallback = f"{exc.reason} (per-row from data row {exc.done + 1})"
        per_row(path, mapping, fast, 0, exc.done, totals)
    writer.finish()
    sent.close()
    rejects_path = rejects.close()
    for chunk in writer.chunks:
        (chunk.path.parent / f"keys-{chunk.index:05d}.bin").write_bytes(chunk.keys.tobytes())
    totals.reasons.update(rejects.reasons)
    return totals, writer.chunks, rejects_path


def verify(
    path: str,
    out_dir: Path,
    labels: list[str],
    totals: Totals,
    chunks: list[ChunkInfo],
    options: dict[str, object],
) -> bool:
    """Run the real per-row prepare() on the same file and compare everything it writes."""
    from shandy_cli.pipeline.events import ignore
    from shandy_cli.pipeline.prepare import PrepareContext, prepare
    from shandy_cli.pipeline.results import ImportOptions

    ref_dir = out_dir / "reference"
    run_dir = ref_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = PrepareContext(
        paths=[path], opts=ImportOptions(step_id="StepA1", dry_run=True, **options), labels=labels,
        step_id="StepA1", run_dir=run_dir, rejects_path=ref_dir / "rejects.csv",
        listener=ignore, notice=lambda text, level: None,
    )  # fmt: skip
    started = time.perf_counter()
    ref = prepare(ctx)
    print(f"reference prepare(): {time.perf_counter() - started:.2f}s", file=sys.stderr)
    ok = True

    def same(what: str, a: object, b: object) -> None:
        nonlocal ok
        if a != b:
            ok = False
            print(f"DIFFERENT {what}", file=sys.stderr)

    same("rows_read", ref.rows_read, totals.rows_read)
    same("rows_submitted", ref.rows_submitted, totals.rows_submitted)
    same("rows_rejected", ref.rows_rejected, totals.rows_rejected)
    same("chunk count", len(ref.chunks), len(chunks))
    for a, b in zip(ref.chunks, chunks, strict=False):
        same(f"chunk {a.index} rows/bytes", (a.rows, a.bytes), (b.rows, b.bytes))
        same(f"chunk {a.index} first/last", (a.first, a.last), (b.first, b.last))
        if b.path.exists():
            same(f"chunk {a.index} body", a.path.read_bytes(), b.path.read_bytes())
        same(f"chunk {a.index} keys", ref.keys_path(a).read_bytes(), b.keys.tobytes())
    if all(c.digest for c in chunks):
        same("chunk digests", ref.digests, [c.digest for c in chunks])
    same("sent index", (run_dir / "sent.idx").read_bytes(), (out_dir / "sent.idx").read_bytes())
    ref_rejects = (ref_dir / "rejects.csv").read_bytes() if ref.rejects_file else b""
    mine = (out_dir / "rejects.csv").read_bytes() if (out_dir / "rejects.csv").exists() else b""
    same("rejects file", ref_rejects, mine)
    same("reasons", dict(ref.reasons), dict(totals.reasons))
    print("verify: " + ("IDENTICAL" if ok else "MISMATCH"), file=sys.stderr)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument(
        "--verify", action="store_true", help="compare with prepare() byte for byte"
    )
    parser.add_argument("--max-rows", type=int, default=API_MAX_ROWS)
    parser.add_argument("--max-bytes", type=int, default=API_MAX_BYTES)
    parser.add_argument("--map", action="append", default=[], help='"Column=Label"')
    parser.add_argument("--set", action="append", default=[], help='"Label=value"')
    parser.add_argument("--on-unknown-column", default="error")
    parser.add_argument(
        "--no-bodies",
        action="store_true",
        help="a dry-run's needs only: count the bytes, do not write or hash the bodies",
    )
    args = parser.parse_args(argv)
    options: dict[str, object] = {
        "max_rows": args.max_rows,
        "max_bytes": args.max_bytes,
        "column_map": parse_pairs(args.map, "--map"),
        "constants": parse_pairs(args.set, "--set"),
        "on_unknown_column": args.on_unknown_column,
    }
    from shandy_cli.sandbox.seed import CUSTOM_FIELDS, SYSTEM_FIELDS

    labels = [label for _, label in SYSTEM_FIELDS] + [label for _, label, _ in CUSTOM_FIELDS]
    started = time.perf_counter()
    totals, chunks, _ = prepare_fast(
        args.csv, args.out_dir, labels, write_bodies=not args.no_bodies, **options
    )  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    summary = {
        "rows_read": totals.rows_read,
        "rows_submitted": totals.rows_submitted,
        "rows_rejected": totals.rows_rejected,
        "rows_skipped": totals.rows_skipped,
        "fallback": totals.fallback,
        "seconds": round(seconds, 3),
        "error": None,
        "chunks": [{"index": c.index, "rows": c.rows, "bytes": c.bytes} for c in chunks],
    }
    print(json.dumps(summary))
    if args.verify and not verify(args.csv, args.out_dir, labels, totals, chunks, options):
        return 3
    return 1 if totals.rows_rejected else 0


if __name__ == "__main__":
    sys.exit(main())
