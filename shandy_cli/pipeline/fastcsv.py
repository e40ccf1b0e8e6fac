"""A columnar fast path for large CSV/TSV files (UTF-8, or UTF-16 or a single-byte
encoding transcoded block by block) and text-only XLSX sheets, byte-identical to
the per-row path.

``prepare._Reader`` reads every row through Python (decode, ``csv``, trim,
validate, ``orjson`` per row): ~3x the time of just reading the file.  For the
common case -- a big, clean export -- this module does the same work on
blocks of ~640 KB of whole records with polars and numpy, in two worker threads,
and commits each block in order on the calling thread into the run's SAME
``Validator`` (dedupe table), ``Chunker`` (numbering, spool files, the open
chunk), ``RowsWriter`` and ``SentIndex``.  The output (chunk bodies, keys,
rejects, sent index, counts) is the per-row path's, byte for byte; the tests in
``tests/test_fastpath.py`` hold it to that.

Per block:

1. structure check (numpy over the quote and control-byte positions, found in
   two passes by ``_Bytes.scan``): every opening quote starts a field, every
   closing quote ends one, no lone CR, no NUL -- where Python's ``csv``
   (``strict=False``) and an RFC 4180 parser could disagree, the block is
   handed over;
2. ``polars.read_csv`` (strict UTF-8, at most the header's width: bad bytes and
   long ragged rows raise -> hand over; short rows pad, as ``Mapping.prospect``
   reads them);
3. trim with exactly ``str.strip()``'s characters (polars' own trim where the
   block holds none of the four it lacks); all-empty records are dropped and
   not numbered, as the reader does (no filter when no record is short enough);
4. email plausibility: an ASCII-only regex built from ``is_plausible_email``'s
   own classes decides ASCII addresses, ``is_plausible_email`` the others;
5. dedupe on the ledger's key (XXH3 of the lowercased address, by polars-hash) in the
   Validator's table, vectorised (first one wins);
6. JSON: ``concat_str`` of ``"Label":"value"`` fragments.  Which characters a
   block needs escaped is read off its bytes (``_escape_chars``), and only the
   columns found to hold one are escaped, with only those characters (a
   literal replace for one, ``replace_many`` for several); checked against
   orjson once per process, see ``_check_json``.  A dry run's chunker writes no
   bodies (``Chunker.writes``): then only each item's exact length is computed
   (``_size_expr``: byte lengths plus what escaping adds), not the item;
7. packing by ``Chunker.add_many``; the items' bytes are written straight from
   polars' string-view buffers (``_items.py``: Arrow C data interface, no
   pyarrow, no copy).

After ``read_csv``, stages 3-4, the keys and 6 are one polars query per block
on a worker thread (6 again only in a block where a column first needs
escapes); the in-order commit (5, 7, rejects) makes no polars call for a CSV:
one would wait for the busy thread pool while holding the GIL.

A text-only XLSX sheet (``spreadsheet.text_sheet``: fastexcel loads it whole
as strings) skips 1-2: ``read_sheet`` finds which columns hold characters JSON
escapes once for the sheet, cuts the frame into blocks of rows and the same
stages 3-7 run on them, numbered as the sheet's rows are.

Whatever it cannot do identically it does not try: ``columnar_eligible`` says
no up front (mapping or file shape: a column feeding a number or currency field
included, whose per-row check is not re-implemented here), and ``Handover`` hands the rest of a file
to the per-row path after the last row committed (same row numbers, same
table, same open chunk).
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

# One jemalloc arena for polars: several worker threads otherwise spread freed
# memory over up to 8 arenas, each keeping it for 10 s (~60 MB more peak RSS).
# Read when polars loads, so it has to be set before the import.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1")

import numpy as np
import orjson
import polars as pl
import polars_hash as plh

from shandy_cli.pipeline._items import Items, Sizes
from shandy_cli.pipeline._readers.base import drop_empty_extras
from shandy_cli.pipeline._readers.delimited import FIELD_LIMIT
from shandy_cli.pipeline.chunking import PREFIX, Chunk, Chunker, encode_prospect
from shandy_cli.pipeline.formulas import written_by_shandy
from shandy_cli.pipeline.mapping import Mapping
from shandy_cli.pipeline.reporting import RowsWriter, SentIndex, reason_kind
from shandy_cli.pipeline.validation import (
    _ATOM,
    EMAIL_LABEL,
    MAX_EMAIL,
    MAX_LOCAL,
    Validator,
    _shown,
    email_key,
    is_plausible_email,
)

if TYPE_CHECKING:
    from collections import Counter

    from shandy_cli.pipeline.sources import SourceInfo

# Bytes of whole records per block: enough to amortise polars' per-call overhead;
# each extra MB costs ~40 MB of peak RSS (four blocks in flight, ~10x each in polars).
BLOCK = 640 << 10
WORKERS = 2  # parsing threads; the commit (in order) runs on the caller's thread
MIN_SIZE = 2 << 20  # below this the per-row path is as fast as starting the workers
SKIPPED_REASON = "already imported"
ROW_BITS = 40
BOM = b"\xef\xbb\xbf"
# Exactly the characters str.strip() removes (str.isspace()), for polars' strip_chars.
# Spelled out: finding them among all 1.1M code points costs 60 ms at every start
# (tests/test_fastpath.py checks the list against this Python's str.isspace).
PY_WS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
    "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# JSON string escapes exactly as orjson writes them (checked by _check_json).
ESCAPES = ["\\", '"', *map(chr, range(32))]
ESCAPED = [orjson.dumps(ch).decode()[1:-1] for ch in ESCAPES]
ESCAPE_ALL = "".join(ESCAPES)
UNIT_SEPARATORS = "\x1c\x1d\x1e\x1f"  # str.isspace() says yes, Rust's trim no


class Handover(Exception):
    """The columnar path stops here; the per-row path resumes at data row ``done + 1``."""

    def __init__(self, reason: str, done: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.done = done  # data rows (non-blank records) already committed


class Counts(Protocol):
    """What the run counts (``prepare.Prepared`` is one)."""

    rows_read: int
    rows_submitted: int
    rows_rejected: int
    rows_skipped: int
    reasons: Counter[str]


def mode() -> str:
    """``SHANDY_COLUMNAR``: "0" never, "1" whatever the size (tests), else by size."""
    return os.environ.get("SHANDY_COLUMNAR", "")


def columnar_eligible(info: SourceInfo, mapping: Mapping | None, path: str | None) -> str | None:
    """None when a source can go the columnar way, else why not (the per-row path takes it).

    ``path`` is the regular file holding the source's bytes (stdin and pipes are
    spooled to one by ``run.py``), or None when there is none.
    """
    if mode() == "0":
        return "disabled by SHANDY_COLUMNAR=0"
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
    if mode() != "1" and st.st_size < MIN_SIZE:
        return "small file"
    return plan_problem(mapping)


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


def plan_problem(mapping: Mapping) -> str | None:
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


# ---------------------------------------------------------------- blocks of records


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
            a, np.flatnonzero(a == 34), low[kind == 10], low[kind == 13],
            np.bincount(kind, minlength=32),
        )  # fmt: skip


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
    path: str, columns: list[str], delimiter: str, codec: str | None = None, bom: int = 0
) -> Iterator[bytes]:
    """The data records of a CSV file as byte blocks of whole records; header checked.

    The blocks are the file's bytes: in ``codec`` when it is not None (see
    ``source_codec``; ``_Columnar.parse`` transcodes them).  UTF-16 ("utf-16-le"
    or "-be" here) is cut on whole code units, after ``bom`` bytes.
    """
    unit = codec if codec in ("utf-16-le", "utf-16-be") else None  # cut on code units
    with open(path, "rb") as f:
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


# ---------------------------------------------------------------- the columnar reader


@dataclass
class _Parsed:
    """One block after the parallel stage (polars and numpy, mostly off the GIL)."""

    rows: int
    records: np.ndarray  # each row's record index in the block (blank records are not rows)
    valid: np.ndarray  # bool: a plausible address
    missing: np.ndarray  # bool
    keys: np.ndarray  # email keys of the ``valid`` rows, in order (the ledger's, 0 folded)
    bad: np.ndarray  # rows with an implausible address, and the addresses
    bad_values: list[str]
    items: Items | Sizes  # every row's JSON item with a leading comma (rejected rows' too)
    numbers: np.ndarray | None = None  # row numbers, when not the next ones (a sheet's gaps)
    raw: pl.DataFrame | None = None  # a sheet block's untrimmed cells, for rejects
    nbytes: int = 0
    block: bytes = b""  # a CSV block's records, for rejects: see _Commit.raw_rows
    starts: np.ndarray | None = None  # byte offsets of each row's record in ``block``
    ends: np.ndarray | None = None


class _Columnar:
    """One source through the columnar stages, committing into the run's shared state."""

    def __init__(self, mapping: Mapping, encode: bool = True) -> None:
        self.mapping = mapping
        self.encode = encode  # False: the items' sizes only (a plan writes no bodies)
        self.ncols = len(mapping.columns)
        self.names = [f"c{i}" for i in range(self.ncols)]
        self.schema = dict.fromkeys(self.names, pl.String)
        m = mapping
        self.mapped = [i for i, label in enumerate(m.targets) if label is not None]
        self.keys_json = {i: orjson.dumps(m.targets[i]).decode() for i in self.mapped}
        self.tail = "".join(
            "," + orjson.dumps(label).decode() + ":" + orjson.dumps(value).decode()
            for label, value in m.constants.items()
        )
        email_cols = [i for i in self.mapped if m.targets[i] == EMAIL_LABEL]
        self.email_index = email_cols[0] if email_cols else None
        self.email_col = f"t{email_cols[0]}" if email_cols else None
        # All-empty records are skipped and not numbered (short rows read as null).
        self.blank = pl.sum_horizontal([pl.col(n).str.len_bytes() for n in self.names]) == 0
        # The longest record that can be blank: every field "" (``parse`` skips the
        # filter for blocks without a record this short).
        self.blank_bytes = 3 * self.ncols + 1
        self.key = plh.col("lowered").nchash.xxh3_64().alias("key")
        # Columns found to need JSON escapes stay escaped: no need to ask again.
        self.sticky: frozenset[int] = frozenset()
        self._item_exprs: dict[tuple[tuple[bool, ...], str], pl.Expr] = {}
        # (trim, checks, output) for the sticky columns and a block's characters
        self._check_exprs: dict[
            tuple[frozenset[int], str], tuple[list[pl.Expr], list[pl.Expr], pl.Expr]
        ] = {}

    # -- what Mapping.prospect + orjson do, as column expressions

    def _trim(self, chars: str) -> list[pl.Expr]:
        """Trimmed values, null when empty (a null drops out of the JSON join).

        Exactly ``str.strip()``: polars' default trim is Rust's (Unicode
        White_Space), which is Python's but for U+001C..U+001F -- spelled out
        (slower) only for blocks that hold one (``chars`` lists them).
        """
        full = any(ch in chars for ch in UNIT_SEPARATORS)
        return [
            pl.col(f"c{i}")
            .str.strip_chars(PY_WS if full else None)
            .replace("", None)
            .alias(f"t{i}")
            for i in self.mapped
        ]

    def items(
        self, trimmed: pl.DataFrame, escape: list[bool], chars: str = ESCAPE_ALL
    ) -> pl.Series:
        return trimmed.select(self._item_expr(escape, chars)).to_series()

    def _item_expr(self, escape: list[bool], chars: str) -> pl.Expr:
        key = (tuple(escape), chars)
        if key not in self._item_exprs:
            if len(self._item_exprs) > 256:  # many mixes of characters: build afresh
                self._item_exprs.clear()
            frags = []
            for i in self.mapped:
                value = pl.col(f"t{i}")
                if escape[i] and len(chars) == 1:
                    value = value.str.replace_all(
                        chars, ESCAPED[ESCAPES.index(chars)], literal=True
                    )
                elif escape[i] and chars:  # only the ones present: fewer patterns, faster
                    value = value.str.replace_many(
                        list(chars), [ESCAPED[ESCAPES.index(ch)] for ch in chars]
                    )
                frags.append(pl.concat_str([pl.lit(self.keys_json[i] + ':"'), value, pl.lit('"')]))
            body = pl.concat_str(frags, separator=",", ignore_nulls=True)
            item = pl.concat_str([pl.lit(",{"), body, pl.lit(self.tail + "}")])
            self._item_exprs[key] = item.alias("item")
        return self._item_exprs[key]

    def _output(self, escape: list[bool], chars: str) -> pl.Expr:
        """The items, or only their sizes when no body is written, as column "out"."""
        if self.encode:
            return self._item_expr(escape, chars).alias("out")
        return self._size_expr(escape, chars).alias("out")

    def sizes(self, trimmed: pl.DataFrame, escape: list[bool], chars: str) -> np.ndarray:
        """``len`` of each row's item, without building it (rows with a value at least:
        an item without one is never written)."""
        return trimmed.select(self._size_expr(escape, chars)).to_series().to_numpy()

    def _size_expr(self, escape: list[bool], chars: str) -> pl.Expr:
        # ,{ + the fragments '"Label":"value"' joined by commas + tail + }
        parts = []
        for i in self.mapped:
            value = pl.col(f"t{i}")
            n = value.str.len_bytes().cast(pl.Int64) + (len(self.keys_json[i].encode()) + 4)
            if escape[i]:
                n = n + _escape_growth(value, chars)
            parts.append(n)
        fixed = 2 + len(self.tail.encode())
        return (pl.sum_horizontal(parts) + fixed).alias("size")

    def _checks(self, sticky: frozenset[int], chars: str) -> list[pl.Expr]:
        email = pl.col(self.email_col).fill_null("") if self.email_col else pl.lit("")
        exprs = [
            email.alias("email"),
            (
                email.str.contains(FAST_EMAIL)
                & (email.str.len_bytes() <= MAX_EMAIL)
                & (email.str.find("@", literal=True) <= MAX_LOCAL)
            ).alias("fast"),
            (email.str.len_bytes() == 0).alias("missing"),
            email.str.to_lowercase().alias("lowered"),
        ]
        others = [pl.col(f"t{i}") for i in self.mapped if i not in sticky]
        if chars and others:
            # One question for all the columns not yet known to need escapes (asking
            # each costs ~2x); ``_new_escapes`` asks which only when one does.
            joined = pl.concat_str(others, ignore_nulls=True)
            exprs.append(_holds(joined, chars).any().alias("escapes"))
        return exprs

    def _new_escapes(
        self, frame: pl.DataFrame, chars: str, sticky: frozenset[int]
    ) -> frozenset[int]:
        """The columns not in ``sticky`` that hold a character of ``chars``."""
        cols = [i for i in self.mapped if i not in sticky]
        found = frame.select([_holds(pl.col(f"t{i}"), chars).any() for i in cols]).row(0)
        return frozenset(i for i, yes in zip(cols, found, strict=True) if yes)

    # -- stage A: one block, in a worker thread

    def parse(self, block: bytes, delimiter: str, codec: str | None = None) -> _Parsed:
        """A block of whole CSV records, in UTF-8 or in the single-byte ``codec``."""
        size = len(block)  # the file's bytes, for progress
        if codec is not None:  # strict: a byte the codec lacks is the per-row path's to report
            try:
                block = block.decode(codec).encode("utf-8")
            except UnicodeDecodeError:
                raise Handover(f"bytes that are not {codec}") from None
        found = _Bytes.scan(block)
        problem = _structure_ok(found, ord(delimiter), final=not block.endswith(b"\n"))
        if problem:
            raise Handover(problem)
        starts, ends = _records(found)
        try:
            raw = pl.read_csv(
                block, has_header=False, schema=self.schema, separator=delimiter,
                empty_string_is_null=False, quote_char='"', encoding="utf8",
            )  # fmt: skip
        except Exception as exc:  # any parser complaint: the per-row path decides
            raise Handover(f"polars: {str(exc).splitlines()[0]}") from None
        if raw.height != len(starts):  # records as polars counts them: they must agree
            raise Handover(f"polars read {raw.height} records, not {len(starts)}")
        chars = _escape_chars(block, found, len(ends), ord(delimiter))
        blanks = bool(len(ends)) and int((ends - starts).min()) <= self.blank_bytes
        p = self._stages(raw, chars, blanks)
        p.nbytes, p.block = size, block
        p.starts, p.ends = starts[p.records], ends[p.records]
        return p

    def parse_frame(self, raw: pl.DataFrame, first: int, chars: str = ESCAPE_ALL) -> _Parsed:
        """A block of a text sheet's rows (columns c0..), numbered from ``first``;
        ``chars``: the characters JSON escapes that its cells may hold."""
        p = self._stages(raw, chars, blanks=True)
        p.numbers = first + p.records
        p.raw = raw
        return p

    def _stages(self, raw: pl.DataFrame, chars: str, blanks: bool) -> _Parsed:
        """The stages after parsing.  ``chars``: the characters JSON escapes that
        the block may hold (see ``_escape_chars``); ``blanks``: whether it may
        hold an all-empty record."""
        sticky = self.sticky
        if (sticky, chars) not in self._check_exprs:
            if len(self._check_exprs) > 256:
                self._check_exprs.clear()
            self._check_exprs[sticky, chars] = (
                self._trim(chars), self._checks(sticky, chars),
                self._output([i in sticky and bool(chars) for i in range(self.ncols)], chars),
            )  # fmt: skip
        trim, checks, output = self._check_exprs[sticky, chars]
        query = raw.lazy().with_row_index("record")
        if blanks:
            query = query.filter(~self.blank)
        # The items (or their sizes) in the same query, escaped as the columns known
        # to need it are; built again below in the rare block where another does.
        frame = (
            query.with_columns(trim).with_columns(checks).with_columns(self.key, output)
            .collect(engine="in-memory")
        )  # fmt: skip
        out = frame.get_column("out")
        if frame.height and "escapes" in frame.columns and frame["escapes"][0]:
            sticky = sticky | self._new_escapes(frame, chars, sticky)
            self.sticky = self.sticky | sticky  # another worker's may be lost: asked again
            escape = [i in sticky and bool(chars) for i in range(self.ncols)]
            out = frame.select(self._output(escape, chars)).to_series()
        try:
            items: Items | Sizes = Items.from_series(out) if self.encode else Sizes(out.to_numpy())
        except ValueError as exc:  # not the string-view layout this polars was checked with
            raise Handover(str(exc)) from None
        missing = frame.get_column("missing").to_numpy()
        email = frame.get_column("email")
        valid, keys, bad, bad_values = _judge(
            frame.get_column("fast").to_numpy(), missing, email, frame.get_column("key")
        )
        records = frame.get_column("record").to_numpy()
        return _Parsed(
            frame.height, records, valid, missing, keys, bad, bad_values, items
        )  # fmt: skip


def _judge(
    fast: np.ndarray, missing: np.ndarray, email: pl.Series, key: pl.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Which rows hold a plausible address, their ledger keys, and the rest's addresses.

    The vector regex decides ASCII addresses (``fast``); the few others are
    judged by ``is_plausible_email`` itself.  The key is validation.email_key's:
    for ASCII polars' lowercase is Python's, others get theirs from email_key.
    Done here, in a worker, so the in-order commit has less to do.
    """
    odd = np.flatnonzero(~fast & ~missing)
    values = email.gather(odd).to_list() if len(odd) else []
    ok = np.array([not v.isascii() and is_plausible_email(v) for v in values], bool)
    valid = fast.copy()
    valid[odd] = ok
    keys = key.to_numpy()
    if ok.any():
        keys = keys.copy()
        keys[odd[ok]] = [email_key(v) for v, good in zip(values, ok, strict=True) if good]
    keys = keys[valid]
    keys[keys == 0] = 1  # as email_key folds it
    bad_values = [v for v, good in zip(values, ok, strict=True) if not good]
    return valid, keys, odd[~ok], bad_values


def _escape_growth(text: pl.Expr, chars: str) -> pl.Expr:
    """How many bytes JSON escaping adds to each value, which may hold only ``chars``."""
    by_extra: dict[int, list[str]] = {}
    for ch in chars:  # \" is 1 byte more, \u001f 5: one count for each
        by_extra.setdefault(len(ESCAPED[ESCAPES.index(ch)]) - 1, []).append(ch)
    growth: pl.Expr = pl.lit(0, pl.Int64)
    for extra, group in by_extra.items():
        if len(group) == 1:
            count = text.str.count_matches(group[0], literal=True)
        else:
            count = text.str.count_matches("[" + "".join(f"\\x{ord(c):02x}" for c in group) + "]")
        growth = growth + count.cast(pl.Int64) * extra
    return growth


def _holds(text: pl.Expr, chars: str) -> pl.Expr:
    """Whether each value holds one of ``chars``."""
    if len(chars) == 1:
        return text.str.contains(chars, literal=True)
    return text.str.contains_any(list(chars))


@dataclass
class RunState:
    """The run's state the columnar readers commit into, shared with the per-row path.

    ``add_keys`` takes the email keys of rows added to the open chunk (native
    uint64s), ``planned`` each chunk closed (after the keys that belong to it),
    ``progress`` (rows, bytes) after each block.
    """

    validator: Validator
    chunker: Chunker
    rejects: RowsWriter
    sent: SentIndex
    file_index: int
    skip_keys: set[int]
    counts: Counts
    add_keys: Callable[[bytes], None]
    planned: Callable[[Chunk], None]
    progress: Callable[[int, int], None]


def read_columnar(path: str, info: SourceInfo, mapping: Mapping, state: RunState) -> int:
    """Read one source into the run's shared state; returns its data-row count.

    Raises ``Handover`` where the per-row path must take over; every row up to
    number ``done`` is then committed.
    """
    _check_json()
    reader = _Columnar(mapping, encode=state.chunker.writes)
    commit = _Commit(reader, info, state)
    assert info.delimiter is not None
    delimiter = info.delimiter
    codec = source_codec(info.encoding)  # columnar_eligible has checked it
    with open(path, "rb") as f:
        codec, bom = _unit_codec(codec, f.read(2))
    expect = os.path.getsize(path)

    def jobs() -> Iterator[Callable[[], _Parsed]]:
        for block in _blocks(path, info.columns, delimiter, codec, bom):
            yield functools.partial(reader.parse, block, delimiter, codec)

    return _pipeline(jobs(), commit, expect, state.progress)


SHEET_BLOCK = 16384  # rows of a sheet per block


def read_sheet(
    frame: pl.DataFrame, header: int, info: SourceInfo, mapping: Mapping, state: RunState
) -> int:
    """``read_columnar`` for a text sheet loaded by fastexcel (``spreadsheet.text_sheet``).

    ``frame`` holds the whole sheet as strings (``c0, c1, ...``, null for an
    empty cell) and ``header`` is the header's row in it: the sheet's row
    ``header + N`` is data row N, as the per-row reader numbers them (empty rows
    leave gaps).  What the per-row path would treat differently -- values past
    the header's columns, NUL characters -- is refused before anything is read.
    """
    _check_json()
    ncols = len(info.columns)
    data = frame.slice(header + 1)
    extra = data.columns[ncols:]
    if extra and data.select(pl.any_horizontal(pl.col(extra).str.len_bytes() > 0).any()).item():
        raise Handover("values beyond the header's columns")
    data = data.select(data.columns[:ncols])
    chars, columns = _sheet_escape_chars(data) if data.height else ("", frozenset())
    if "\x00" in chars:
        raise Handover("a NUL character")
    reader = _Columnar(mapping, encode=state.chunker.writes)
    reader.sticky = columns  # known for the whole sheet: no block needs to ask
    commit = _Commit(reader, info, state)
    state.validator.reserve(data.height)

    def jobs() -> Iterator[Callable[[], _Parsed]]:
        for start in range(0, data.height, SHEET_BLOCK):
            block = data.slice(start, SHEET_BLOCK)
            yield functools.partial(reader.parse_frame, block, start + 1, chars)

    return _pipeline(jobs(), commit, 0, state.progress)


def _sheet_escape_chars(data: pl.DataFrame) -> tuple[str, frozenset[int]]:
    """The characters JSON escapes that a sheet's cells hold, and the columns holding one."""
    special = r'[\x00-\x1f"\\]'
    found = data.select(pl.all().str.extract_all(special).explode().unique().implode()).row(0)
    per_column = [{ch for ch in column if ch} for column in found]
    chars = "".join(ch for ch in ESCAPES if any(ch in column for column in per_column))
    return chars, frozenset(i for i, column in enumerate(per_column) if column)


def _pipeline(
    jobs: Iterator[Callable[[], _Parsed]],
    commit: _Commit,
    expect: int,
    progress: Callable[[int, int], None],
) -> int:
    """Parse blocks on WORKERS threads and commit them in order on this one."""
    pending: deque[Future[_Parsed]] = deque()
    with ThreadPoolExecutor(WORKERS) as pool:
        try:
            for job in jobs:
                pending.append(pool.submit(job))
                if len(pending) > WORKERS:
                    commit(pending.popleft().result(), expect)
                    progress(commit.done, commit.nbytes)
            while pending:
                commit(pending.popleft().result(), expect)
                progress(commit.done, commit.nbytes)
        except Handover as exc:
            for future in pending:
                future.cancel()
            exc.done = commit.last
            raise
    return commit.done


class _Commit:
    """Stage B: each block in order, on the caller's thread, into the shared state."""

    def __init__(self, reader: _Columnar, info: SourceInfo, state: RunState) -> None:
        self.reader, self.info = reader, info
        self.validator, self.chunker = state.validator, state.chunker
        self.rejects, self.sent = state.rejects, state.sent
        self.file_index = state.file_index
        self.skip = np.fromiter(state.skip_keys, np.uint64, len(state.skip_keys))
        self.counts, self.add_keys, self.planned = state.counts, state.add_keys, state.planned
        self.done = 0  # rows committed
        self.last = 0  # the number of the last one
        self.nbytes = 0

    def __call__(self, p: _Parsed, expect: int) -> None:
        name, counts = self.info.name, self.counts
        n = p.rows
        if self.done == 0 and p.nbytes:  # rows to expect, from the first block's density
            self.validator.reserve(int(n * expect / p.nbytes))
        if p.numbers is None:
            numbers = np.arange(self.done + 1, self.done + n + 1, dtype=np.int64)
        else:
            numbers = p.numbers.astype(np.int64)
        # -- dedupe, first one wins, in the run's table (shared with the per-row path)
        vidx, keys = np.flatnonzero(p.valid), p.keys
        first = self.validator.check_many(keys, numbers[vidx], file=name)
        dup = first != 0
        keep, kept_keys = vidx[~dup], keys[~dup]
        items = p.items.take(keep)
        sizes = items.size - 1  # without the leading comma
        chunker = self.chunker
        # The per-row order: validator, then encoding and size (a row too big for any
        # request is rejected, its address stays seen), then --only-new.
        oversize = len(PREFIX) + sizes + len(chunker.suffix) > chunker.max_bytes
        skipped = np.zeros(len(keep), bool)
        if len(self.skip):
            skipped = np.isin(kept_keys, self.skip) & ~oversize
        rejected = self.reject(p, numbers, vidx[dup], first[dup], keep[oversize], sizes[oversize])
        counts.rows_read += n
        counts.rows_rejected += rejected
        nskip = int(skipped.sum())
        counts.rows_skipped += nskip
        if nskip:
            counts.reasons[SKIPPED_REASON] += nskip
        send = ~oversize & ~skipped
        if not send.all():
            sel = np.flatnonzero(send)
            items, kept_keys, keep, sizes = items.take(sel), kept_keys[sel], keep[sel], sizes[sel]
        rownums = numbers[keep]
        assert not len(sizes) or sizes.min() >= 12, "an item to send is inline"
        closed = chunker.add_many(sizes, items.write, file=name, rows=rownums)
        start = 0
        for chunk, stop in closed:
            self.add_keys(kept_keys[start:stop].tobytes())
            self.planned(chunk)
            start = stop
        self.add_keys(kept_keys[start:].tobytes())
        packed = np.empty((len(kept_keys), 2), np.uint64)
        packed[:, 0] = kept_keys
        packed[:, 1] = (np.uint64(self.file_index) << np.uint64(ROW_BITS)) | rownums.astype(
            np.uint64
        )
        self.sent.add_many(packed.tobytes())
        counts.rows_submitted += len(kept_keys)
        self.done += n
        self.nbytes += p.nbytes
        if n:
            self.last = int(numbers[-1])

    def reject(
        self, p: _Parsed, numbers: np.ndarray, dup_rows: np.ndarray, first: np.ndarray,
        big_rows: np.ndarray, big_sizes: np.ndarray,
    ) -> int:  # fmt: skip
        """Write the block's rejected rows, in row order, with the per-row path's reasons.

        Their values are read again from the block (``raw_rows``), a duplicate's
        address too: a polars call on this thread would wait, holding the GIL,
        for the thread pool the workers keep busy.
        """
        missing = np.flatnonzero(p.missing)
        order = np.union1d(np.union1d(missing, p.bad), np.union1d(dup_rows, big_rows)).tolist()
        if not order:
            return 0
        rows = dict(zip(order, self.raw_rows(p, order), strict=True))
        reasons: dict[int, tuple[str, str]] = {}
        for i in missing.tolist():
            reasons[i] = ("missing email", "missing email")
        for i, value in zip(p.bad.tolist(), p.bad_values, strict=True):
            reason = f"invalid email {_shown(value)}"
            reasons[i] = (reason, _kind(reason, value, "invalid email"))
        at = self.reader.email_index
        for i, f in zip(dup_rows.tolist(), first.tolist(), strict=True):
            assert at is not None  # a duplicate has an address
            reason = self.validator.duplicate_reason(rows[i][at].strip(), f)
            # the file name is in the reason too: it may hold quotes or parentheses
            reasons[i] = (reason, reason_kind(reason))
        for i, size in zip(big_rows.tolist(), big_sizes.tolist(), strict=True):
            reason = self.chunker.oversize_reason(size)
            reasons[i] = (reason, reason_kind(reason))
        self.rejects.add_many(
            self.info.name,
            self.info.columns,
            [(int(numbers[i]), rows[i], *reasons[i]) for i in order],
        )
        return len(order)

    def raw_rows(self, p: _Parsed, order: list[int]) -> list[list[str]]:
        """The values of rows ``order`` as the per-row path reads them (``csv``, untrimmed).

        Only rejected rows need them (a few per block): their records are read
        again from the block's bytes, off polars (whose thread pool the workers keep busy).
        """
        width = len(self.info.columns)
        if p.raw is not None:  # a sheet's cells
            return p.raw[p.records[order]].fill_null("").rows()  # type: ignore[return-value]
        assert p.starts is not None and p.ends is not None
        text = "".join(
            p.block[p.starts[i] : p.ends[i]].decode("utf-8").rstrip("\r\n") + "\n" for i in order
        )
        assert self.info.delimiter is not None
        reader = csv.reader(
            io.StringIO(text, newline=""), delimiter=self.info.delimiter, quotechar='"',
            doublequote=True, skipinitialspace=False, strict=False,
        )  # fmt: skip
        rows = []
        for values in reader:
            values = drop_empty_extras(values, width)
            rows.append(values + [""] * (width - len(values)))
        if len(rows) != len(order):
            raise AssertionError("a rejected record read back as several")
        return rows


def _kind(reason: str, value: str, template_kind: str) -> str:
    # reason_kind() drops quoted values and parenthesised details; it can only
    # come out differently from the template's when the value holds quotes or parens.
    return reason_kind(reason) if any(c in value for c in "'\"()") else template_kind


_JSON_OK: list[bool] = []  # the check's result, once per process


def _check_json() -> None:
    """Build awkward items the columnar way and compare with orjson (once per process).

    Any difference (a polars upgrade changing an escape or a trim, say) sends
    sources down the per-row path instead of producing different bytes.
    """
    if not _JSON_OK:
        _JSON_OK.append(_json_matches())
    if not _JSON_OK[0]:
        raise Handover("columnar JSON differs from orjson on this polars")


def _json_matches() -> bool:
    from shandy_cli.pipeline.mapping import build_mapping

    samples = [
        "", " ", "plain", 'a "quoted" word', "back\\slash", "tab\there", "line\nbreak", "\r\n",
        "\x00\x01\x1f\x7f", "é ü ß 🙂", "\u2028\u2029", "/ slash", "\x08\x0c", "  padded\t",
        "\x85nel\xa0", "\u3000wide\u3000", "\x1c\x1d\x1e\x1finfo", "\u200bzw\u180e", '"\\"',
    ]  # fmt: skip
    columns = ["Email", "First Name", "Note", "Città"]  # sizes count a label's bytes
    m = build_mapping(
        columns, ["Email", "First Name", "Note", "Città", "Tag"], constants={"Tag": 'x "ÿ"\n'}
    )
    reader = _Columnar(m)
    # Each mix of escapes the blocks use: all (sheets), one character, a few.
    for chars in (ESCAPE_ALL, '"', '\\"\t', ""):
        usable = [v for v in samples if all(ch in chars for ch in v if ch in ESCAPE_ALL)]
        rows = [[usable[(r + c) % len(usable)] for c in range(len(columns))] for r in range(64)]
        for row in rows:
            row[0] = "a@b.co"
        raw = pl.DataFrame({f"c{i}": [row[i] for row in rows] for i in range(len(columns))})
        trimmed = raw.select(reader._trim(chars))
        got = reader.items(trimmed, [True] * reader.ncols, chars)
        want = ["," + encode_prospect(m.prospect(row)).decode() for row in rows]
        if got.to_list() != want:
            return False
        if reader.sizes(trimmed, [True] * reader.ncols, chars).tolist() != [
            len(item.encode()) for item in want
        ]:
            return False
    addresses = ["a@b.co", "Mixed.Case@Example.ORG", "x" * 300 + "@y.io", "o'neil+tag@d-1.example"]
    lowered = pl.DataFrame({"lowered": [a.lower() for a in addresses]})
    keys = lowered.select(reader.key).to_series().to_list()
    if keys != [email_key(a) for a in addresses]:
        return False
    # The default trim is Python's for every whitespace character but U+001C..U+001F.
    padded = pl.Series([f"{ch}x{ch}" for ch in PY_WS if ch not in UNIT_SEPARATORS])
    return set(padded.str.strip_chars().to_list()) == {"x"}
