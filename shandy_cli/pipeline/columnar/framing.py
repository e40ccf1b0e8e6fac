"""Framing: a CSV file's bytes cut into blocks of whole records, checked and located.

Byte scanning (``_Bytes``), record boundaries (outside quotes), UTF-16 code units
and the codecs a block is transcoded with. See docs/architecture.md.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from shandy_cli.pipeline._readers.delimited import FIELD_LIMIT
from shandy_cli.pipeline.chunking import ESCAPES
from shandy_cli.pipeline.columnar.state import Handover

# Bytes of whole records per block: enough to amortise polars' per-call overhead;
# each extra MB costs ~40 MB of peak RSS (four blocks in flight, ~10x each in polars).
BLOCK = 640 << 10
BOM = b"\xef\xbb\xbf"

# Single-byte encodings whose bytes 0-127 are ASCII: a block of whole records in
# one is a block of whole records in UTF-8 once decoded and encoded again (quotes,
# delimiters and newlines are the same bytes).  Excel's "CSV" on Windows is cp1252.
_SINGLE_BYTE = frozenset(
    [f"cp125{i}" for i in range(9)] + [f"iso8859-{i}" for i in (*range(1, 12), 13, 14, 15, 16)]
)


def source_codec(encoding: str | None) -> str | None:
    """How a source's bytes become UTF-8 for the columnar stages: None when they are
    UTF-8 already, else the codec to transcode each block with (a single-byte one,
    or UTF-16, whose blocks are cut on whole 2-byte units: see ``_unit_codec``).

    Raises ``ValueError`` for any other encoding (the per-row path reads those).
    """
    try:
        name = codecs.lookup(encoding or "").name
    except LookupError:
        raise ValueError(f"encoding {encoding}") from None
    if name in ("utf-8", "utf-8-sig"):
        return None
    if name in ("utf-16", "utf-16-le", "utf-16-be"):
        return name
    ascii_bytes = bytes(range(128))
    if name in _SINGLE_BYTE and ascii_bytes.decode(name) == ascii_bytes.decode("ascii"):
        return name
    raise ValueError(f"encoding {encoding}")


@dataclass
class _Bytes:
    """Where a block's special bytes are: found in two passes over it, used by every check."""

    a: np.ndarray  # the block, as uint8
    q: np.ndarray  # positions of quote characters
    nl: np.ndarray  # of newlines
    cr: np.ndarray  # of carriage returns
    control: np.ndarray  # how many of each byte below 32

    @classmethod
    def scan(cls, block: bytes) -> _Bytes:
        a = np.frombuffer(block, np.uint8)
        low = np.flatnonzero(a < 32)  # newlines mostly: a few per record
        kind = a[low]
        return cls(
            a,
            np.flatnonzero(a == 34),
            low[kind == 10],
            low[kind == 13],
            np.bincount(kind, minlength=32),
        )


def _structure_ok(b: _Bytes, delim: int, final: bool) -> str | None:
    """None when the block (whole records, starting outside quotes) is RFC 4180 clean."""
    a, q = b.a, b.q
    if b.control[0]:
        return "a NUL byte"
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
    cr = b.cr
    if len(cr) and (cr[-1] == len(a) - 1 or not (a[cr + 1] == 10).all()):
        return "a carriage return not followed by a newline"
    return None


def _records(b: _Bytes) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) byte offsets of each record of a structurally clean block."""
    a = b.a
    ends = _unquoted(b.nl, b.q) + 1
    if len(a) and a[-1] != 10:  # the file's last record, without a newline
        ends = np.append(ends, len(a))
    starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends
    return starts, ends


def _unquoted(nl: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The newline positions outside quotes (after an even number of quote positions)."""
    return nl[np.searchsorted(q, nl) % 2 == 0] if len(q) else nl


def _escape_chars(block: bytes, b: _Bytes, records: int, delim: int) -> str:
    """The characters JSON must escape that the values of a clean block may hold.

    In ``ESCAPES`` order; "" when none.  Counted on the bytes: a newline in a
    value shows as more newlines than records, a "" inside a quoted value as a
    closing quote right before an opening one, the rest are there or not.
    """
    counts = b.control.copy()
    counts[10] = counts[13] = 0  # record ends (every CR is followed by LF: _structure_ok)
    found = set()
    if b"\\" in block:
        found.add("\\")
    opening, closing = b.q[0::2], b.q[1::2]
    if len(opening) > 1 and np.any(closing[: len(opening) - 1] + 1 == opening[1:]):
        found.add('"')
    if len(b.nl) != records - (not block.endswith(b"\n")):
        found.update("\n\r")  # a newline (or CRLF) inside a quoted value
    if delim == 9:
        counts[9] = 0
        if len(b.q):
            found.add("\t")  # a tab inside quotes looks like a delimiter: do not guess
    found.update(map(chr, np.flatnonzero(counts).tolist()))
    return "".join(ch for ch in ESCAPES if ch in found)


def _units(buf: bytes, codec: str) -> np.ndarray:
    """A UTF-16 buffer's whole code units.  Newline and quote are units of their own
    (never half of a surrogate pair), so records can be found among them."""
    return np.frombuffer(buf, "<u2" if codec == "utf-16-le" else ">u2", len(buf) // 2)


def _unit_end(buf: bytes, codec: str, last: bool) -> int:
    """``_record_end`` / ``_last_record_end`` for UTF-16: a byte offset after a newline
    unit outside quotes (the first or the last one; -1 / 0 when there is none)."""
    u = _units(buf, codec)
    outside = _unquoted(np.flatnonzero(u == 10), np.flatnonzero(u == 34))
    if not len(outside):
        return 0 if last else -1
    return 2 * (int(outside[-1 if last else 0]) + 1)


def _unit_codec(codec: str | None, head: bytes) -> tuple[str | None, int]:
    """The codec to decode blocks with, and the BOM bytes to skip: "utf-16" reads
    its byte order from a BOM (native, little-endian here, without one), as the
    per-row path's decoder does."""
    if codec != "utf-16":
        return codec, 0
    if head.startswith(b"\xfe\xff"):
        return "utf-16-be", 2
    return "utf-16-le", 2 if head.startswith(b"\xff\xfe") else 0


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
    # numpy counts ~7x faster than bytes.count, and without holding the GIL
    quotes_total = int(np.count_nonzero(np.frombuffer(buf, np.uint8) == 34))
    while True:
        nl = buf.rfind(b"\n", 0, end)
        if nl < 0:
            return 0
        if (quotes_total - buf.count(b'"', nl)) % 2 == 0:
            return nl + 1
        end = nl


def _blocks(
    path: str,
    columns: list[str],
    delimiter: str,
    codec: str | None = None,
    bom: int = 0,
    opener: Callable[[], BinaryIO] | None = None,
) -> Iterator[bytes]:
    """The data records of a CSV file as byte blocks of whole records; header checked.

    The blocks are the file's bytes: in ``codec`` when it is not None (see
    ``source_codec``; ``_Columnar.parse`` transcodes them).  UTF-16 ("utf-16-le"
    or "-be" here) is cut on whole code units, after ``bom`` bytes.  ``opener``
    opens the bytes in place of ``path`` (a compressed file, decompressed as it is
    read: ``compressed.reopen``); its ``read(n)`` must return ``n`` bytes until the end.
    """
    unit = codec if codec in ("utf-16-le", "utf-16-be") else None  # cut on code units
    with opener() if opener is not None else open(path, "rb") as f:
        buf = f.read(BLOCK)
        if codec is None and buf.startswith(BOM):
            buf = buf[3:]
        buf = buf[bom:]  # UTF-16's, found by the caller (_unit_codec)
        if buf[: 4 * (1 + bool(unit))].decode(codec or "utf-8", "replace").lower() == "sep=":
            raise Handover("a sep= line")
        end = _unit_end(buf, unit, last=False) if unit else _record_end(buf)
        if end < 0:
            raise Handover("a header longer than a block")
        try:
            text = buf[:end].decode(codec or "utf-8")
        except UnicodeDecodeError:
            raise Handover(f"a header that is not {codec or 'UTF-8'}") from None
        header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        if header != columns:
            raise Handover("the header is not one clean first record")
        buf, eof = buf[end:], False
        while True:
            if not eof and len(buf) < BLOCK:
                more = f.read(max(BLOCK - len(buf), min(BLOCK, 1 << 16)))
                eof = not more
                buf += more
                continue
            if eof:
                if buf:
                    yield buf
                return
            cut = _unit_end(buf, unit, last=True) if unit else _last_record_end(buf)
            if cut == 0:  # one record longer than a block: read on
                if len(buf) > FIELD_LIMIT:  # the csv module would refuse it: let it say so
                    raise Handover("a record longer than the field limit")
                more = f.read(BLOCK)
                eof = not more
                buf += more
                continue
            yield buf[:cut]
            buf = buf[cut:]
