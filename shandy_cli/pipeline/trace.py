"""``shandy trace EMAIL``: every kept run that saw an address, and what became of it there.

What a run keeps for trace lives in its run dir (``runs/<id>/``), so it goes when the
run is pruned (``housekeeping.expire_runs`` removes the dir whole) and survives its
completion (``outcome.clean_completed`` takes only the chunk bodies and the sent index):

- ``trace.bin``: one record per row the run decided that had an address -- rejected
  (with its reason), skipped (``--only-new``, a suppression list: with its reason) or
  submitted (with its chunk) -- written once reading is done (``save_run``);
- ``trace-server.bin``: what Saleshandy's reports said of the submitted rows (failed,
  with its reason; already present), written when every chunk is done
  (``save_outcome``, from ``outcome.write_run_failures``: import and status alike).

No address is stored: a record holds a *keyed digest* of it, SipHash-1-3 of the
address's ``validation.email_key`` under a random per-state-dir key (``trace.key``,
0600, made on first use). ``digest_many`` (numpy, for the columnar path's million
rows) and ``digest_one`` (plain Python, for small runs and the lookup) are twins,
held equal by tests/test_trace.py; reasons quote the address nowhere (``scrub``).

A record is three little-endian uint64 words: the digest, where (``file << ROW_BITS |
row``, the sent index's packing) and ``code << 56 | reason << 32 | chunk + 1``. Records
are sorted by (digest, where): a lookup is a binary search, nothing is read whole.
Whether the submitted rows landed is read at lookup time from the journal's chunks
(their state, request id and endpoint) and the server file.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import os
import re
import secrets
import struct
import sys
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shandy_cli._files import ensure_private_dir, open_private, private_output, replace_file
from shandy_cli.errors import InputError
from shandy_cli.exits import ExitCode
from shandy_cli.pipeline.suppression import Suppressed
from shandy_cli.pipeline.validation import (
    EMAIL_LABEL,
    ROW_BITS,
    ROW_MASK,
    SKIPPED_REASON,
    email_key,
)

if TYPE_CHECKING:
    import numpy as np

    from shandy_cli.journal import ChunkRecord, Journal, RunRecord
    from shandy_cli.pipeline.prepare import Prepared
    from shandy_cli.pipeline.reporting import ServerFailure

log = logging.getLogger(__name__)

TRACE_FILE = "trace.bin"  # in the run dir: the run's own decisions
SERVER_FILE = "trace-server.bin"  # in the run dir: Saleshandy's word on the submitted rows
SECRET_FILE = "trace.key"  # in the state dir: the digests' key
MAGIC = b"SHTRACE1"
_HEADER = struct.Struct("<8sQQQ")  # magic, records, reasons, bytes of reason text
_WORDS = 3  # uint64 words per record
NOWHERE = (1 << 64) - 1  # a server record's ``where``: its row is the submitted one's
SMALL = 4096  # fewer records than this are digested and sorted without numpy

# Outcome codes (a record's top byte). SUBMITTED becomes imported, updated, submitted
# or not sent when read, from its chunk's state in the journal and the server file.
REJECTED, SKIPPED, SUBMITTED, FAILED, ALREADY_PRESENT, SENT = 1, 2, 3, 4, 5, 6
_LOCAL = (REJECTED, SKIPPED, SUBMITTED)
_SERVER = (FAILED, ALREADY_PRESENT, SENT)
_REASON_LIMIT = (1 << 24) - 1
ADDRESS = "<address>"  # what a reason says where it quoted the address


# -- the key and the digest ------------------------------------------------------------------


def secret_path(state_dir: Path) -> Path:
    return Path(state_dir) / SECRET_FILE


def _publish_once(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` unless a file is there already (another run's, which wins).
    A hard link does it atomically; where the file system has none (FAT and exFAT drives,
    some network shares), a lock around "is it there yet, else rename" does."""
    try:
        os.link(tmp, path)  # fails if another process made it first: theirs is used
        return
    except FileExistsError:
        return
    except OSError:
        pass  # no hard links here
    from shandy_cli._lock import exclusive

    with exclusive(path.with_name(f".{path.name}.lock")):
        if not path.exists():
            replace_file(tmp, path)


def load_secret(state_dir: Path, *, create: bool) -> tuple[int, int] | None:
    """The digests' key (two 64-bit halves) of ``state_dir``; None when it has none (and
    ``create`` is False). Made atomically on first use: two runs starting at once agree."""
    path = secret_path(state_dir)
    if not path.exists() and create:
        ensure_private_dir(path.parent)
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}.part")
        with open_private(tmp, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(16) + "\n")
        try:
            _publish_once(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceKeyError(f"{path}: cannot read the trace key ({exc})") from None
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise TraceKeyError(f"{path}: the trace key is damaged (32 hex digits expected)")
    raw = bytes.fromhex(text)
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


class TraceKeyError(Exception):
    """The state dir's trace key cannot be used."""


_M = (1 << 64) - 1
_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
_LENGTH_WORD = 8 << 56  # SipHash's last block for an 8-byte message


def siphash(word: int, k0: int, k1: int, c: int = 1, d: int = 3) -> int:
    """SipHash-c-d of one 64-bit word (its 8 little-endian bytes) under key (k0, k1)."""
    v0, v1, v2, v3 = k0 ^ _INIT[0], k1 ^ _INIT[1], k0 ^ _INIT[2], k1 ^ _INIT[3]

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _M
            v1 = (((v1 << 13) | (v1 >> 51)) & _M) ^ v0
            v0 = ((v0 << 32) | (v0 >> 32)) & _M
            v2 = (v2 + v3) & _M
            v3 = (((v3 << 16) | (v3 >> 48)) & _M) ^ v2
            v0 = (v0 + v3) & _M
            v3 = (((v3 << 21) | (v3 >> 43)) & _M) ^ v0
            v2 = (v2 + v1) & _M
            v1 = (((v1 << 17) | (v1 >> 47)) & _M) ^ v2
            v2 = ((v2 << 32) | (v2 >> 32)) & _M

    for m in (word, _LENGTH_WORD):
        v3 ^= m
        rounds(c)
        v0 ^= m
    v2 ^= 0xFF
    rounds(d)
    return v0 ^ v1 ^ v2 ^ v3


_BATCH = 1 << 15  # words hashed at a time: the state arrays stay in the CPU's cache


def siphash_many(
    words: np.ndarray,
    k0: int,
    k1: int,
    c: int = 1,
    d: int = 3,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``siphash`` of each uint64 in ``words``, vectorised (numpy wraps uint64 arithmetic),
    into ``out`` when given. ``words`` may be a strided view: batches are copied, not it."""
    import numpy as np

    if out is None:
        out = np.empty(len(words), np.uint64)
    for at in range(0, len(words), _BATCH):
        batch = np.ascontiguousarray(words[at : at + _BATCH], dtype=np.uint64)
        out[at : at + _BATCH] = _siphash_batch(batch, k0, k1, c, d)
    return out


def _siphash_batch(words: np.ndarray, k0: int, k1: int, c: int, d: int) -> np.ndarray:
    import numpy as np

    u = np.uint64
    n = len(words)
    v0, v1 = np.full(n, k0 ^ _INIT[0], u), np.full(n, k1 ^ _INIT[1], u)
    v2, v3 = np.full(n, k0 ^ _INIT[2], u), np.full(n, k1 ^ _INIT[3], u)
    tmp = np.empty(n, u)

    def rotl(v: np.ndarray, bits: int) -> None:
        np.right_shift(v, u(64 - bits), out=tmp)
        np.left_shift(v, u(bits), out=v)
        np.bitwise_or(v, tmp, out=v)

    add, xor = np.add, np.bitwise_xor

    def rounds(count: int) -> None:  # in place: no array is made per step
        for _ in range(count):
            add(v0, v1, out=v0)
            rotl(v1, 13)
            xor(v1, v0, out=v1)
            rotl(v0, 32)
            add(v2, v3, out=v2)
            rotl(v3, 16)
            xor(v3, v2, out=v3)
            add(v0, v3, out=v0)
            rotl(v3, 21)
            xor(v3, v0, out=v3)
            add(v2, v1, out=v2)
            rotl(v1, 17)
            xor(v1, v2, out=v1)
            rotl(v2, 32)

    v3 ^= words
    rounds(c)
    v0 ^= words
    last = u(_LENGTH_WORD)
    v3 ^= last
    rounds(c)
    v0 ^= last
    v2 ^= u(0xFF)
    rounds(d)
    v0 ^= v1
    v0 ^= v2
    v0 ^= v3
    return v0


def digest_one(email: str, key: tuple[int, int]) -> int:
    """The keyed digest of an address (case and surrounding space aside)."""
    return siphash(email_key(email), *key)


def digest_many(
    keys: np.ndarray, key: tuple[int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """The keyed digests of many ``email_key`` values: ``digest_one``'s twin."""
    return siphash_many(keys, *key, out=out)


# -- what a run records while it reads ---------------------------------------------------------


def scrub(reason: str, email: str) -> str:
    """``reason`` without the address it quotes (validation's ``_shown``, a list's entry)."""
    email = email.strip()
    if not email:
        return reason
    shown = email if len(email) <= 80 else email[:79] + "…"  # as validation._shown cuts it
    text = reason.replace(repr(shown), ADDRESS)
    if email.lower() in text.lower():
        text = re.sub(re.escape(email), ADDRESS, text, flags=re.IGNORECASE)
    return text


def safe_reason(reason: str, email: str) -> str:
    """``scrub``, and if the address is still there in some other spelling, only the
    reason's kind (``reporting.reason_kind``), or nothing of it."""
    from shandy_cli.pipeline.reporting import reason_kind

    text = scrub(reason, email)
    address = email.strip().lower()
    if address and address in text.lower():
        text = reason_kind(text)
        if address in text.lower():
            text = "(reason not kept: it quotes the address)"
    return text


class RunTrace:
    """The rows a run refused or skipped, as they are decided (``prepare``'s per-row loop
    and the columnar commit call in); the submitted ones are read back from the sent
    index when the run saves it (``save_run``). Email keys, not addresses, in memory."""

    def __init__(self) -> None:
        self.keys = array("Q")
        self.where = array("Q")
        self.info = array("Q")
        self.reasons: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def reason(self, text: str) -> int:
        index = self.reasons.get(text)
        if index is None:
            if len(self.reasons) >= _REASON_LIMIT - 1:  # absurdly many distinct reasons
                text = "(reason not kept: too many distinct reasons in one run)"
                index = self.reasons.get(text)
                if index is not None:
                    return index
            index = self.reasons[text] = len(self.reasons)
        return index

    def refused(self, prospect: Mapping[str, str], file_index: int, row: int, reason: str) -> None:
        """A row the per-row path rejected (or skipped: a ``Suppressed`` reason)."""
        email = prospect.get(EMAIL_LABEL, "")
        if email and email.strip():
            self.refused_one(email, file_index, row, reason)

    def refused_one(self, email: str, file_index: int, row: int, reason: str) -> None:
        code = SKIPPED if isinstance(reason, Suppressed) else REJECTED
        self.keys.append(email_key(email))
        self.where.append(_where(file_index, row))
        self.info.append(_info(code, self.reason(safe_reason(reason, email)), -1))

    def refused_block(
        self,
        file_index: int,
        numbers: np.ndarray,
        order: list[int],
        rows: Mapping[int, Sequence[str]],
        reasons: Mapping[int, tuple[str, str]],
        at: int | None,
    ) -> None:
        """The columnar commit's rejected and suppressed rows of a block (``_Commit.reject``):
        row ``i`` of ``order`` has number ``numbers[i]``, values ``rows[i]`` (the address at
        ``at``; None: no address column) and ``reasons[i][0]``."""
        if at is None:
            return
        for i in order:
            email = rows[i][at]
            if email.strip():
                self.refused_one(email, file_index, int(numbers[i]), reasons[i][0])

    def skipped(self, key: int, file_index: int, row: int, reason: str = SKIPPED_REASON) -> None:
        """A row not sent because an earlier run sent it (``--only-new``), or ``reason``."""
        self.keys.append(key)
        self.where.append(_where(file_index, row))
        self.info.append(_info(SKIPPED, self.reason(reason), -1))

    def skipped_many(
        self, keys: np.ndarray, rows: np.ndarray, file_index: int, reason: str = SKIPPED_REASON
    ) -> None:
        """``skipped`` for the columnar path: a block's skipped rows' keys and numbers."""
        import numpy as np

        n = len(keys)
        if not n:
            return
        where = (np.uint64(file_index) << np.uint64(ROW_BITS)) | np.minimum(
            rows.astype(np.uint64), np.uint64(ROW_MASK)
        )
        self.keys.frombytes(np.ascontiguousarray(keys, np.uint64).tobytes())
        self.where.frombytes(where.tobytes())
        info = np.full(n, _info(SKIPPED, self.reason(reason), -1), np.uint64)
        self.info.frombytes(info.tobytes())


def _where(file_index: int, row: int) -> int:
    return (file_index << ROW_BITS) | (row if 0 <= row <= ROW_MASK else ROW_MASK)


def _info(code: int, reason: int, chunk: int) -> int:
    return (code << 56) | (reason << 32) | ((chunk + 1) & 0xFFFFFFFF)


# -- writing -----------------------------------------------------------------------------------


def save_run(state_dir: Path, run_dir: Path, prepared: Prepared, *, dry_run: bool = False) -> None:
    """Write the run's ``trace.bin`` once reading is done. A dry run writes nothing; a
    failure to write is a logged warning: trace never fails an import."""
    if dry_run:
        return
    try:
        key = load_secret(state_dir, create=True)
        assert key is not None
        trace = prepared.trace
        submitted = _Submitted.read(prepared, run_dir / "sent.idx")
        no_reason = trace.reason("")
        reasons = sorted(trace.reasons, key=trace.reasons.__getitem__)
        local = (trace.keys, trace.where, trace.info)
        write_trace(run_dir / TRACE_FILE, key, local, reasons, submitted, no_reason)
    except Exception as exc:  # a diagnostic record: the import goes on
        log.warning("could not record this run for `shandy trace`: %s", exc)


@dataclass
class _Submitted:
    """The submitted rows as the run's files hold them: the sent index (email key, where,
    in order) and each chunk's keys (``keys-*.bin``), whose chunk each row is in."""

    sent: bytes = b""
    chunk_keys: bytes | bytearray = b""
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (chunk index, keys)

    @classmethod
    def read(cls, prepared: Prepared, sent_path: Path) -> _Submitted:
        found = cls(sent_path.read_bytes() if sent_path.exists() else b"")
        paths = [(c.index, prepared.keys_path(c)) for c in prepared.chunks if c.path is not None]
        sizes = [(i, p.stat().st_size // 8 if p.exists() else 0) for i, p in paths]
        joined = bytearray(8 * sum(n for _, n in sizes))  # read in place: no second copy
        at = 0
        for (_, path), (_, n) in zip(paths, sizes, strict=True):
            if n:
                with path.open("rb") as fh:
                    fh.readinto(memoryview(joined)[at : at + 8 * n])
            at += 8 * n
        found.sizes, found.chunk_keys = sizes, joined
        return found

    def __len__(self) -> int:
        return len(self.sent) // 16

    def python(self, no_reason: int) -> tuple[array[int], array[int], array[int]]:
        sent, chunk_keys = array("Q", self.sent), array("Q", self.chunk_keys)
        keys, where = sent[0::2], sent[1::2]
        owner: dict[int, int] = {}
        at = 0
        for index, count in self.sizes:
            for k in chunk_keys[at : at + count]:
                owner.setdefault(k, index)
            at += count
        base = (SUBMITTED << 56) | (no_reason << 32)
        info = array("Q", (base | ((owner.get(k, -1) + 1) & 0xFFFFFFFF) for k in keys))
        return keys, where, info

    def numpy(self, no_reason: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import numpy as np

        sent = np.frombuffer(self.sent, np.uint64).reshape(-1, 2)
        keys, where = sent[:, 0], sent[:, 1]
        chunk_keys = np.frombuffer(self.chunk_keys, np.uint64)
        counts = np.array([c for _, c in self.sizes], np.int64)
        numbers = np.array([i + 1 for i, _ in self.sizes], np.uint64)  # chunk + 1; 0: none
        if np.array_equal(chunk_keys, keys):  # in sent order: each row's chunk by position
            info = np.repeat(numbers, counts)
        else:  # find each key's chunk
            chunk_of = np.repeat(numbers, counts)
            order = np.argsort(chunk_keys, kind="stable")
            at = np.searchsorted(chunk_keys[order], keys)
            at = np.minimum(at, max(len(order) - 1, 0))
            hit = (chunk_keys[order][at] == keys) if len(order) else np.zeros(len(keys), bool)
            info = np.where(hit, chunk_of[order][at] if len(order) else 0, 0).astype(np.uint64)
            del chunk_of, order, at, hit
        del chunk_keys
        self.chunk_keys = b""  # read once: its memory goes before the records are sorted
        info &= np.uint64(0xFFFFFFFF)
        info |= np.uint64((SUBMITTED << 56) | (no_reason << 32))
        return keys, where, info


def save_outcome(
    journal: Journal,
    run_id: str,
    failed: Sequence[ServerFailure],
    already_present: Sequence[ServerFailure],
    sent_again: Iterable[tuple[int, int]] = (),
) -> None:
    """Write the run's ``trace-server.bin``: Saleshandy's failed and already-present rows,
    each under the chunk of its request, and ``sent_again``: (email key, chunk index) of
    rows sent once more after reading, in a chunk of their own (shown with that chunk's
    outcome). Never raises (a logged warning)."""
    from shandy_cli.pipeline.housekeeping import run_dir

    try:
        folder = run_dir(journal.state_dir, run_id)
        if not (folder / TRACE_FILE).exists():
            return  # the run recorded nothing to match (an older shandy, a dry run)
        key = load_secret(journal.state_dir, create=True)
        assert key is not None
        by_request = {c.request_id: c.idx for c in journal.chunks(run_id) if c.request_id}
        keys, where, info = array("Q"), array("Q"), array("Q")
        reasons: dict[str, int] = {}
        for code, rows in ((FAILED, failed), (ALREADY_PRESENT, already_present)):
            for f in rows:
                if not f.email or not f.email.strip():
                    continue
                text = safe_reason(f"Saleshandy: {f.reason}", f.email)
                reason = reasons.setdefault(text, len(reasons))
                keys.append(email_key(f.email))
                where.append(NOWHERE)
                info.append(_info(code, reason, by_request.get(f.request_id, -1)))
        for sent_key, chunk in sent_again:
            keys.append(sent_key)
            where.append(NOWHERE)
            info.append(_info(SENT, reasons.setdefault("", len(reasons)), chunk))
        ordered = sorted(reasons, key=reasons.__getitem__)
        write_trace(folder / SERVER_FILE, key, (keys, where, info), ordered)
    except Exception as exc:  # never fails the run that settles
        log.warning("could not record Saleshandy's outcome for `shandy trace`: %s", exc)


def write_trace(
    path: Path,
    key: tuple[int, int],
    local: tuple[array[int], array[int], array[int]],
    reasons: Sequence[str],
    submitted: _Submitted | None = None,
    no_reason: int = 0,
) -> None:
    """Digest the records' keys, sort them by (digest, where, info), write them 0600,
    atomically. Small runs never import numpy (~0.1 s); large ones are vectorised."""
    submitted = submitted or _Submitted()
    n = len(local[0]) + len(submitted)
    # Reasons are numbered in sorted order, not as they came: the columnar reader meets
    # a block's rejects before its skips, the per-row one row by row.
    ordered = sorted(range(len(reasons)), key=reasons.__getitem__)
    renumber = [0] * len(reasons)
    for new, old in enumerate(ordered):
        renumber[old] = new
    reasons = [reasons[old] for old in ordered]
    body: Iterable[bytes | memoryview]
    no_reason = renumber[no_reason] if renumber else 0
    if n < SMALL:
        keys, where = array("Q", local[0]), array("Q", local[1])
        info = array("Q", (_renumbered(i, renumber) for i in local[2]))
        for whole, part in zip((keys, where, info), submitted.python(no_reason), strict=True):
            whole.extend(part)
        body = [_records_small(key, keys, where, info)]
    else:
        body = _record_blocks(key, local, submitted.numpy(no_reason), renumber)
    texts = [r.encode("utf-8", "surrogatepass") for r in reasons]
    offsets = array("Q", [0])
    for t in texts:
        offsets.append(offsets[-1] + len(t))
    if sys.byteorder == "big":
        offsets.byteswap()
    blob = b"".join(texts)
    with private_output(path, "wb") as fh:
        fh.write(_HEADER.pack(MAGIC, n, len(texts), len(blob)))
        for block in body:
            fh.write(block)
        fh.write(offsets.tobytes())
        fh.write(blob)


def _renumbered(info: int, renumber: list[int]) -> int:
    reason = (info >> 32) & 0xFFFFFF
    return (info & ~(0xFFFFFF << 32)) | (renumber[reason] << 32)


def _records_small(
    key: tuple[int, int], keys: array[int], where: array[int], info: array[int]
) -> bytes:
    records = sorted(zip((siphash(k, *key) for k in keys), where, info, strict=True))
    flat = array("Q", [w for record in records for w in record])
    if sys.byteorder == "big":
        flat.byteswap()
    return flat.tobytes()


def _records_numpy(
    key: tuple[int, int],
    local: tuple[array[int], array[int], array[int]],
    submitted: tuple[np.ndarray, np.ndarray, np.ndarray],
    renumber: list[int] | None = None,
) -> bytes:
    """The sorted records as one bytes object (``_record_blocks`` joined)."""
    return b"".join(bytes(b) for b in _record_blocks(key, local, submitted, renumber))


BLOCK = 1 << 16  # records gathered and written at a time: the table is never whole in memory


def _ties(digests: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Positions ``i`` in ``order`` whose digest equals the next one's, found a block at a
    time (no sorted copy of the digests)."""
    import numpy as np

    found = []
    for start in range(0, max(len(order) - 1, 0), BLOCK):
        block = digests[order[start : start + BLOCK + 1]]
        found.append(start + np.flatnonzero(block[1:] == block[:-1]))
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _record_blocks(
    key: tuple[int, int],
    local: tuple[array[int], array[int], array[int]],
    submitted: tuple[np.ndarray, np.ndarray, np.ndarray],
    renumber: list[int] | None = None,
) -> Iterator[memoryview]:
    """The records sorted by (digest, where, info), in blocks of ``BLOCK``: only the
    digests and the sort order are whole arrays (16 bytes a record), each block is
    gathered from the local and submitted parts as it is written."""
    import numpy as np

    mine = np.frombuffer(local[2], np.uint64)
    if renumber and len(mine):  # the submitted rows' reason is renumbered already
        mask = np.uint64(0xFFFFFF << 32)
        old = ((mine & mask) >> np.uint64(32)).astype(np.int64)
        new = np.array(renumber, np.uint64)[old]
        mine = (mine & ~mask) | (new << np.uint64(32))
    parts = [
        (np.frombuffer(local[0], np.uint64), np.frombuffer(local[1], np.uint64), mine),
        submitted,
    ]
    nlocal = len(mine)
    digests = np.empty(nlocal + len(parts[1][0]), np.uint64)
    digest_many(parts[0][0], key, out=digests[:nlocal])
    digest_many(parts[1][0], key, out=digests[nlocal:])
    order = np.argsort(digests)

    def column(c: int, idx: np.ndarray) -> np.ndarray:
        if not nlocal:
            return parts[1][c][idx]
        if len(idx) and idx.min() >= nlocal:
            return parts[1][c][idx - nlocal]
        ours = idx < nlocal
        out = np.empty(len(idx), np.uint64)
        out[ours] = parts[0][c][idx[ours]]
        out[~ours] = parts[1][c][idx[~ours] - nlocal]
        return out

    # One address's records (a duplicate row, a skip) share a digest: those few are put
    # in (where, info) order too, so both readers' files are the same bytes.
    tie = _ties(digests, order)
    if len(tie):
        at = np.union1d(tie, tie + 1)
        group = order[at]
        info, where = column(2, group), column(1, group)
        order[at] = group[np.lexsort((info, where, digests[group]))]
    for start in range(0, len(order), BLOCK):
        idx = order[start : start + BLOCK]
        table = np.empty((len(idx), _WORDS), "<u8")
        table[:, 0] = digests[idx]
        table[:, 1] = column(1, idx)
        table[:, 2] = column(2, idx)
        yield table.data.cast("B")


# -- reading -----------------------------------------------------------------------------------


class DamagedTrace(Exception):
    """A trace file that is not what ``write_trace`` wrote (truncated, overwritten)."""


@dataclass(frozen=True)
class _Found:
    where: int
    code: int
    reason: str
    chunk: int  # -1: none


def lookup(path: Path, digest: int) -> list[_Found] | None:
    """The records of ``digest`` in one trace file (a binary search, nothing read whole);
    None when there is no such file. Raises ``DamagedTrace``."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size < _HEADER.size:
            raise DamagedTrace("shorter than its header")
        magic, n, nreasons, blob = _HEADER.unpack(fh.read(_HEADER.size))
        if magic != MAGIC:
            raise DamagedTrace("not a trace file (or one of another version)")
        records_at = _HEADER.size
        offsets_at = records_at + 24 * n
        blob_at = offsets_at + 8 * (nreasons + 1)
        if size != blob_at + blob:
            raise DamagedTrace(f"{size} bytes where its header says {blob_at + blob}")
        if n == 0:
            return []
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _search(mm, n, digest, offsets_at, nreasons, blob_at, blob)


def _search(
    mm: mmap.mmap, n: int, digest: int, offsets_at: int, nreasons: int, blob_at: int, blob: int
) -> list[_Found]:
    record = struct.Struct("<QQQ")

    class _Digests(Sequence[int]):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: Any) -> Any:
            return record.unpack_from(mm, _HEADER.size + 24 * i)[0]

    i = bisect.bisect_left(_Digests(), digest)
    found = []
    while i < n:
        d, where, info = record.unpack_from(mm, _HEADER.size + 24 * i)
        if d != digest:
            break
        code, reason, chunk = info >> 56, (info >> 32) & 0xFFFFFF, (info & 0xFFFFFFFF) - 1
        if code not in _LOCAL + _SERVER or reason >= nreasons:
            raise DamagedTrace("a record that no shandy wrote")
        lo, hi = struct.unpack_from("<QQ", mm, offsets_at + 8 * reason)
        if not lo <= hi <= blob:
            raise DamagedTrace("a reason out of bounds")
        text = mm[blob_at + lo : blob_at + hi].decode("utf-8", "replace")
        found.append(_Found(where, code, text, chunk))
        i += 1
    return found


@dataclass(frozen=True)
class TraceEntry:
    """One row of one run that held the address, and what became of it."""

    run_id: str
    started: str | None  # local time, as ``shandy runs`` shows it
    ended: str | None
    run_outcome: str  # the run's, as ``shandy runs`` says it now
    step_id: str | None  # None: the prospect list
    file: str
    row: int | None  # 1-based data row, as ``_row`` in the rejects file (None: unknown)
    chunk: int | None  # the chunk's index, as ``import --json`` numbers chunks (None: none)
    request_id: str | None
    endpoint: str | None  # "step" or "prospects", for a submitted row
    outcome: str  # imported | updated | rejected | skipped | failed | already present |
    #               submitted (no answer known yet) | not sent
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started": self.started,
            "ended": self.ended,
            "run_outcome": self.run_outcome,
            "step_id": self.step_id,
            "file": self.file,
            "row": self.row,
            "chunk": self.chunk,
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass
class TraceResult:
    """Every kept run that saw an address, newest first (``shandy trace EMAIL``)."""

    email: str
    entries: list[TraceEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    keep_days: float = 90.0

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(e.run_id for e in self.entries))

    @property
    def exit_code(self) -> ExitCode:
        # 1: no kept run saw the address (nothing failed: the only other answer there is)
        return ExitCode.OK if self.entries else ExitCode.ROWS_FAILED

    @property
    def error(self) -> str | None:
        if self.entries:
            return None
        return (
            f"no kept run saw {self.email}: runs are kept for SHANDY_KEEP_DAYS "
            f"({self.keep_days:g}) days after they end, then pruned"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "found": bool(self.entries),
            "runs": self.runs,
            "entries": [e.to_dict() for e in self.entries],
            "warnings": self.warnings,
        }


def trace(email: str, *, state_dir: str | os.PathLike[str] | None = None) -> TraceResult:
    """Every kept run of ``state_dir``'s journal that saw ``email`` (case and surrounding
    space aside): per row, when, file, row, chunk, request, endpoint and outcome."""
    from shandy_cli.config import resolve_settings
    from shandy_cli.journal import Journal

    address = email.strip().lower()
    if not address:
        raise InputError("trace needs an email address")
    settings = resolve_settings(state_dir=state_dir, need_key=False)
    result = TraceResult(address, keep_days=settings.keep_days)
    try:
        key = load_secret(settings.state_dir, create=False)
    except TraceKeyError as exc:
        _warn(result, str(exc))
        return result
    if key is None:
        return result  # nothing was ever recorded here
    digest = digest_one(address, key)
    with Journal(settings.state_dir) as journal:
        for run in journal.runs(limit=-1):
            result.entries.extend(_run_entries(journal, run, address, digest, result))
    return result


def _warn(result: TraceResult, text: str) -> None:
    log.warning("%s", text)
    result.warnings.append(text)


def chunk_endpoint(chunk: ChunkRecord | None, run: RunRecord) -> str:
    """Where a chunk went: the journal's word once it records it, else the run's target."""
    return getattr(chunk, "endpoint", None) or ("step" if run.step_id else "prospects")


def _run_entries(
    journal: Journal, run: RunRecord, address: str, digest: int, result: TraceResult
) -> list[TraceEntry]:
    from shandy_cli.pipeline.housekeeping import run_dir

    folder = run_dir(journal.state_dir, run.id)
    try:
        local = lookup(folder / TRACE_FILE, digest)
        server = lookup(folder / SERVER_FILE, digest)
    except (DamagedTrace, OSError, ValueError, struct.error) as exc:
        _warn(result, f"run {run.id}: its trace file is damaged ({exc}); skipped")
        return []
    if not local and not server:
        return []
    view = _RunView(journal, run, address, server)
    entries = [view.entry(f) for f in sorted(local or [], key=lambda f: (f.where, f.code))]
    entries.extend(view.resent())
    return entries


class _RunView:
    """One run's records of an address, read against its journal records."""

    def __init__(
        self, journal: Journal, run: RunRecord, address: str, server: list[_Found] | None
    ) -> None:
        self.run, self.address = run, address
        self.chunks = {c.idx: c for c in journal.chunks(run.id)}
        self.live = journal.live_outcome(run)
        self.settled = server is not None  # Saleshandy's word on the submitted rows is kept
        self.server = {(f.chunk): f for f in server or [] if f.code in (FAILED, ALREADY_PRESENT)}
        self.sent_again = [f for f in server or [] if f.code == SENT]
        self.submitted: _Found | None = None

    def position(self, where: int) -> tuple[str, int | None]:
        if where == NOWHERE:
            if self.submitted is None:
                return "", None
            where = self.submitted.where
        index, row = where >> ROW_BITS, where & ROW_MASK
        files = self.run.files
        return (files[index] if index < len(files) else f"file {index + 1}"), row

    def entry(self, found: _Found) -> TraceEntry:
        file, row = self.position(found.where)
        chunk = found.chunk if found.chunk >= 0 else None
        if found.code == REJECTED:
            return self._make(file, row, None, "rejected", found.reason or None)
        if found.code == SKIPPED:
            return self._make(file, row, None, "skipped", found.reason or None)
        self.submitted = found
        outcome, reason = self.landed(chunk)
        return self._make(file, row, chunk, outcome, reason)

    def resent(self) -> list[TraceEntry]:
        """Chunks the server file names that no local record does (rows sent again,
        elsewhere, after Saleshandy's first answer)."""
        mine = {self.submitted.chunk} if self.submitted else set()
        extra = [f for f in self.sent_again if f.chunk not in mine]
        extra += [f for c, f in self.server.items() if c not in mine and c >= 0]
        entries = []
        for found in sorted(extra, key=lambda f: f.chunk):
            file, row = self.position(found.where)
            outcome, reason = self.landed(found.chunk)
            entries.append(self._make(file, row, found.chunk, outcome, reason))
        return entries

    def landed(self, chunk: int | None) -> tuple[str, str | None]:
        """What became of a row submitted in ``chunk``."""
        record = self.chunks.get(chunk) if chunk is not None else None
        if record is None:
            return "submitted", "the journal no longer holds its chunk"
        said = self.server.get(record.idx)
        if said is None and not self.settled and record.state in ("completed", "failed"):
            said = self._from_report(record)
        if said is not None:
            outcome = "failed" if said.code == FAILED else "already present"
            return outcome, said.reason or None
        state = record.state
        if state == "completed":
            updated = self.run.step_id and chunk_endpoint(record, self.run) == "prospects"
            return ("updated" if updated else "imported"), None
        if state == "failed":
            return "failed", "Saleshandy: no row of its chunk was imported"
        if state == "accepted":
            return "submitted", (
                f"accepted; Saleshandy had not finished: shandy status {record.request_id} --wait"
            )
        if state == "sending":
            return "submitted", (
                "being sent when the run stopped: whether Saleshandy has it is not known "
                "(shandy resume sends it again)"
            )
        return "not sent", f"the run ended ({self.live}) before its chunk was sent"

    def _from_report(self, record: ChunkRecord) -> _Found | None:
        """A chunk that completed in a run not yet settled: its saved report, if any."""
        from shandy_cli.pipeline.outcome import read_chunk_outcome, was_resent

        report = Path(record.report) if record.report else None
        try:
            said = read_chunk_outcome(report, record.request_id or "", resent=was_resent(record))
        except Exception:  # a report that will not parse says nothing
            return None
        key = email_key(self.address)
        for code, rows in ((FAILED, said.failed), (ALREADY_PRESENT, said.already_present)):
            for f in rows:
                if f.email and email_key(f.email) == key:
                    reason = safe_reason(f"Saleshandy: {f.reason}", f.email)
                    return _Found(NOWHERE, code, reason, -1)
        return None

    def _make(
        self, file: str, row: int | None, chunk: int | None, outcome: str, reason: str | None
    ) -> TraceEntry:
        run = self.run
        record = self.chunks.get(chunk) if chunk is not None else None
        return TraceEntry(
            run_id=run.id,
            started=_when(run.started),
            ended=_when(run.ended),
            run_outcome=self.live,
            step_id=run.step_id,
            file=file,
            row=row,
            chunk=chunk,
            request_id=record.request_id if record else None,
            endpoint=chunk_endpoint(record, run) if chunk is not None else None,
            outcome=outcome,
            reason=reason,
        )


# What a row of ``shandy trace`` shows, in order.
TRACE_COLUMNS = (
    "run",
    "started",
    "target",
    "file",
    "row",
    "chunk",
    "request",
    "endpoint",
    "outcome",
    "reason",
)


def trace_cells(entry: TraceEntry) -> list[str]:
    """An entry's values under ``TRACE_COLUMNS``, as text (chunks numbered from 1, as
    ``import`` says them)."""
    e = entry
    return [
        e.run_id,
        e.started or "",
        e.step_id or "prospect list",
        e.file,
        "" if e.row is None else str(e.row),
        "" if e.chunk is None else f"#{e.chunk + 1}",
        e.request_id or "",
        e.endpoint or "",
        e.outcome,
        e.reason or "",
    ]


def _when(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) if ts else None
