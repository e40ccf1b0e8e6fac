"""Chunking: split the valid prospects into request bodies within the API limits.

The limits apply to the exact bytes sent, so this module builds those bytes
itself and counts them, instead of estimating.  One request body is exactly::

    PREFIX + item_0 + b"," + item_1 + ... + item_n + suffix

with ``PREFIX = b'{"prospectList":['``, each item ``orjson.dumps(prospect)``, and
``suffix = body_suffix(options)`` closing the list and adding the other keys
(``stepId``, ``verifyProspects``, ...).  Each body is written to a spool file as
it grows, so memory stays flat however large the import; the submitter sends
the file as is.

Packing is greedy and keeps the order: a chunk is closed only when the next
item would take it past ``max_rows`` or ``max_bytes``, so every chunk but the
last is as full as the next item allows.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    import numpy as np

import orjson
from xxhash import xxh3_64_intdigest

from shandy_cli._files import make_missing_dirs
from shandy_cli.errors import InputError

API_MAX_ROWS = 100_000
API_MAX_BYTES = 90_000_000
PREFIX = b'{"prospectList":['
# The smallest prospect worth sending; a --max-bytes that cannot hold one
# alongside the prefix and suffix could never send anything.
MIN_ITEM = orjson.dumps({"Email": "a@b.co"})
_BUFFER = 1 << 20


def encode_prospect(prospect: dict[str, str]) -> bytes:
    """The JSON bytes of one prospect, exactly as they go into the body.

    Raises ``ValueError`` for text that is not valid Unicode (a lone surrogate
    from a mis-decoded file), so the caller can reject that row.
    """
    try:
        return orjson.dumps(prospect)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"prospect cannot be encoded as JSON: {exc}") from exc


def prospect_salt(tags: Iterable[str]) -> int:
    """What of the body, beyond its item, belongs to a prospect as it lands: its tags
    (as a set). Mixed into every ``prospect_hash`` of a run."""
    return xxh3_64_intdigest(orjson.dumps(sorted({t.strip() for t in tags})))


def prospect_hash(item: bytes, salt: int) -> int:
    """The 64-bit digest of a prospect as sent: its item's bytes (labels, values and
    constants, exactly as in the body) with the run's ``prospect_salt``, for
    ``--only-changed``. Hashed with the comma that leads it in the body, as the columnar
    twin (``columnar/encoder.py``, polars-hash over the same item) hashes it."""
    return xxh3_64_intdigest(b"," + item) ^ salt


# The encoder's columnar twin: the JSON string escapes exactly as orjson writes them
# (the columnar reader replaces ESCAPES[i] by ESCAPED[i]; columnar/selfcheck.py
# compares its items with encode_prospect's once per process).
ESCAPES = ["\\", '"', *map(chr, range(32))]
ESCAPED = [orjson.dumps(ch).decode()[1:-1] for ch in ESCAPES]
ESCAPE_ALL = "".join(ESCAPES)


def body_suffix(options: dict[str, object]) -> bytes:
    """The bytes after the last item: ``]``, the other top-level members, ``}``."""
    if "prospectList" in options:
        raise ValueError("options must not contain 'prospectList'")
    if not options:
        return b"]}"
    return b"]," + orjson.dumps(options)[1:-1] + b"}"


class _Fill:
    """How full the current chunk is: the one rule shared by Chunker and plan_chunks."""

    __slots__ = ("max_bytes", "max_rows", "rows", "size", "suffix_len")

    def __init__(self, suffix_len: int, max_rows: int, max_bytes: int) -> None:
        self.suffix_len = suffix_len
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rows = 0
        self.size = len(PREFIX)  # body bytes so far, without the suffix

    def fits_alone(self, item_len: int) -> bool:
        return len(PREFIX) + item_len + self.suffix_len <= self.max_bytes

    def joins(self, item_len: int) -> bool:
        """Whether the next item joins the current chunk (else it starts a new one).

        Raises ``ValueError`` for an item that fits in no chunk at all.  One call
        per item, because this is the hot path of a million-row import.
        """
        if len(PREFIX) + item_len + self.suffix_len > self.max_bytes:
            raise ValueError(f"item of {item_len} bytes fits in no request")
        return self.rows == 0 or (
            self.rows < self.max_rows
            and self.size + 1 + item_len + self.suffix_len <= self.max_bytes
        )

    def add(self, item_len: int) -> None:
        self.size += item_len + (1 if self.rows else 0)
        self.rows += 1

    def reset(self) -> None:
        self.rows = 0
        self.size = len(PREFIX)


def plan_chunks(
    sizes: list[int], suffix_len: int, max_rows: int, max_bytes: int
) -> list[list[int]]:
    """Indices of the items in each chunk, as the Chunker would pack them."""
    fill = _Fill(suffix_len, max_rows, max_bytes)
    plan: list[list[int]] = []
    for index, size in enumerate(sizes):
        if not fill.joins(size):
            fill.reset()
        if fill.rows == 0:
            plan.append([])
        plan[-1].append(index)
        fill.add(size)
    return plan


# Where a chunk goes: the step import, or the account-level prospects import.
STEP, PROSPECTS = "step", "prospects"


@dataclass
class Chunk:
    index: int
    rows: int
    bytes: int  # exact body length, == the spool file's size
    path: Path | None  # the complete body, valid JSON, mode 0600 (None: a plan, no body)
    first: tuple[str, int]  # (file, row) of the first prospect
    last: tuple[str, int]
    endpoint: str = STEP  # STEP or PROSPECTS
    update: bool = False  # its rows update prospects that landed before (--only-changed)


class Sink(Protocol):
    """Where a chunk's body bytes go: a spooled file, or nowhere (a plan)."""

    def write(self, data: bytes | memoryview, /) -> int: ...


class _Discard:
    """Where a plan's bodies go: a dry run sends nothing, so it writes nothing."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)

    def close(self) -> None:
        pass


class Chunker:
    """Packs encoded prospects, in order, into spooled request bodies.

    With ``spool_dir=None`` it only plans (a dry run): the same chunks, rows and
    byte counts, and no body is written (``Chunk.path`` is None); ``writes``
    tells callers they need not build the items' bytes at all, only their sizes.
    """

    def __init__(
        self,
        suffix: bytes,
        *,
        max_rows: int = API_MAX_ROWS,
        max_bytes: int = API_MAX_BYTES,
        spool_dir: Path | None,
        endpoint: str = STEP,
        update: bool = False,
        prefix: str = "chunk",
    ) -> None:
        """``endpoint``/``update`` are each chunk's (``Chunk``); bodies are spooled as
        ``{prefix}-NNNNN-*.json``."""
        _check_limits(suffix, max_rows, max_bytes)
        self.suffix = suffix
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.spool_dir = None if spool_dir is None else Path(spool_dir)
        self.writes = spool_dir is not None
        self._fill = _Fill(len(suffix), max_rows, max_bytes)
        self.endpoint, self.update, self.prefix = endpoint, update, prefix
        self._index = 0
        self._out: BinaryIO | _Discard | None = None
        self._path: Path | None = None
        self._first: tuple[str, int] = ("", 0)
        self._last: tuple[str, int] = ("", 0)

    def fits_alone(self, item: bytes) -> bool:
        """Whether ``item`` fits in a request by itself (PREFIX + item + suffix)."""
        return self._fill.fits_alone(len(item))

    def oversize_reason(self, item: bytes | int) -> str:
        """The reject reason for an item (or an item's length) that does not fit alone."""
        size = item if isinstance(item, int) else len(item)
        return (
            f"prospect is {size:,} bytes, more than any request may hold ({self.max_bytes:,} bytes)"
        )

    def add(self, item: bytes, *, file: str, row: int) -> Chunk | None:
        """Append ``item``; return the chunk it closed, if it did not fit in it."""
        fill = self._fill
        size = len(item)
        try:
            joins = fill.joins(size)
        except ValueError:
            raise ValueError(self.oversize_reason(item)) from None
        closed = None if joins else self._close()
        out = self._out
        if out is None:
            out = self._open()
            self._first = (file, row)
            out.write(PREFIX)
        else:
            out.write(b",")
        out.write(item)
        fill.add(size)
        self._last = (file, row)
        return closed

    def add_many(
        self,
        sizes: np.ndarray,
        write: Callable[[Sink, int, int, bool], None],
        *,
        file: str,
        rows: np.ndarray,
    ) -> list[tuple[Chunk, int]]:
        """Append many items, packed exactly as calls of ``add`` one by one would pack them.

        ``sizes`` are the items' lengths (each must fit alone), ``rows`` their row
        numbers; ``write(out, i, k, lead)`` writes items ``i..k-1`` joined by
        commas, with a comma before the first when ``lead``.  Returns each chunk
        closed, with the index of the first item not in it.  The fit is decided
        per chunk (cumulative sums and a binary search), not per item.
        """
        import numpy as np

        closed: list[tuple[Chunk, int]] = []
        n = len(sizes)
        if not n:
            return closed
        fill = self._fill
        cum = np.cumsum(sizes.astype(np.int64) + 1)  # each item with the comma before it
        room = self.max_bytes - len(self.suffix)
        i = 0
        while i < n:
            if fill.rows == 0:
                out = self._open()
                self._first = (file, int(rows[i]))
                out.write(PREFIX)
                fill.add(int(sizes[i]))
                lead, j = False, i + 1
            else:
                assert self._out is not None
                out, lead, j = self._out, True, i
            base = int(cum[j - 1]) if j else 0
            k = int(np.searchsorted(cum, base + room - fill.size, side="right"))
            k = min(k, j + (self.max_rows - fill.rows), n)
            if k > j:
                fill.size += int(cum[k - 1]) - base
                fill.rows += k - j
            if k > i:
                write(out, i, k, lead)
                self._last = (file, int(rows[k - 1]))
            if k < n:
                closed.append((self._close(), k))
            i = k
        return closed

    def finish(self) -> Chunk | None:
        """Close the last chunk; None when nothing is pending."""
        return self._close() if self._fill.rows else None

    def abort(self) -> None:
        """Drop the chunk being built (after an error): close and delete its file."""
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        self._fill.reset()

    def _open(self) -> BinaryIO | _Discard:
        if self.spool_dir is None:
            self._out = _Discard()
            return self._out
        make_missing_dirs(self.spool_dir)  # 0700: it holds prospects' data
        # mkstemp creates the file 0600 and never reuses a name, so two runs
        # sharing a spool directory cannot clobber each other's bodies.
        fd, name = tempfile.mkstemp(
            prefix=f"{self.prefix}-{self._index:05d}-", suffix=".json", dir=self.spool_dir
        )
        self._path = Path(name)
        self._out = os.fdopen(fd, "wb", buffering=_BUFFER)
        return self._out

    def _close(self) -> Chunk:
        assert self._out is not None
        self._out.write(self.suffix)
        self._out.close()
        fill = self._fill
        chunk = Chunk(
            index=self._index,
            rows=fill.rows,
            bytes=fill.size + fill.suffix_len,
            path=self._path,
            first=self._first,
            last=self._last,
            endpoint=self.endpoint,
            update=self.update,
        )
        self._out, self._path = None, None
        self._index += 1
        fill.reset()
        return chunk


def _check_limits(suffix: bytes, max_rows: int, max_bytes: int) -> None:
    if not 1 <= max_rows <= API_MAX_ROWS:
        raise InputError(f"--max-rows must be between 1 and {API_MAX_ROWS:,}, not {max_rows:,}")
    if max_bytes > API_MAX_BYTES:
        raise InputError(f"--max-bytes may only lower the API limit of {API_MAX_BYTES:,} bytes")
    smallest = len(PREFIX) + len(MIN_ITEM) + len(suffix)
    if max_bytes < smallest:
        raise InputError(
            f"--max-bytes {max_bytes:,} cannot hold even one prospect "
            f"(a request needs at least {smallest:,} bytes)"
        )
