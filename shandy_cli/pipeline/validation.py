"""Validation: which prospects are sent, and why the others are not.

A prospect is refused, in this order of precedence, for: the reader's own
problem with the row; no email; an email that does not look like an address;
an address on a suppression list (``suppression.py``: a ``Suppressed`` reason,
a skip rather than a rejection, and the row never claims its address); a value
that is not a number in a ``number`` or ``currency`` field (see ``is_number``);
an email (case-insensitive) already seen earlier in this run.
The first occurrence of an address wins; a refused row does not claim its
address, so a later, correct row with it is sent.

The dedupe index is sized for a million rows: an open-addressing table of
8-byte XXH3 hashes of the lowercased address and where each was first seen
(file index and row, in 32 bits while they fit, else 64).  At 1,000,000
addresses it holds 2**21 slots: 25 MB (a ``dict[int, int]`` of the same
measured 110 MB).
Only digests are kept, so two different addresses could collide and the later
one be reported as a duplicate: with n addresses that happens with probability
about n**2 / 2**65, ~3e-8 at a million — far below any other source of error.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xxhash import xxh3_64_intdigest

if TYPE_CHECKING:
    import numpy as np

    from shandy_cli.pipeline.suppression import Suppression

EMAIL_LABEL = "Email"
MAX_EMAIL = 254
MAX_LOCAL = 64
_SHOWN = 80  # longest value quoted in a reject reason, so one bad cell cannot flood a report

# Local part: dot-separated runs of anything printable except the separators
# that mean "this is not one address" (space, comma, semicolon, angle brackets,
# quotes, brackets, colon).  Domain: labels of letters (any script, for IDN),
# digits and inner hyphens, and a top-level label of >= 2 letters or an IDN
# "xn--" label.  ``\w`` admits "_", which is refused separately: keeping the
# character classes simple makes the regex about twice as fast.
_ATOM = r'[^\s@,;:<>()\[\]\\"\x00-\x1f\x7f.]+'
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_TLD = r"(?:[^\W\d_]{2,63}|[xX][nN]--[\w-]{1,59})"
EMAIL_PATTERN = rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+{_TLD}"
_EMAIL_RE = re.compile(EMAIL_PATTERN)


# Its columnar twin: the same pattern for ASCII addresses, as a Rust regex (no
# Unicode classes, "_" left out of the domain where is_plausible_email refuses it
# by a separate check). Derived from the classes above, so it cannot drift; the
# columnar reader judges the few non-ASCII addresses with is_plausible_email itself.
def _ascii_class(python_class: str, drop: str = "") -> str:
    """A Rust-regex class of exactly the ASCII characters a Python class matches."""
    chars = [
        chr(i) for i in range(128) if re.fullmatch(python_class, chr(i)) and chr(i) not in drop
    ]
    return "[" + "".join(f"\\x{ord(c):02x}" for c in chars) + "]"


def _fast_email_pattern() -> str:
    atom = _ascii_class(_ATOM.removesuffix("+"))
    first = _ascii_class(r"[^\W_]")
    middle = _ascii_class(r"[\w-]", drop="_")
    alpha = _ascii_class(r"[^\W\d_]")
    label = f"{first}(?:{middle}{{0,61}}{first})?"
    tld = f"(?:{alpha}{{2,63}}|[xX][nN]--{middle}{{1,59}})"
    return f"^{atom}+(?:\\.{atom}+)*@(?:{label}\\.)+{tld}$"


FAST_EMAIL = _fast_email_pattern()  # plus the MAX_EMAIL / MAX_LOCAL length checks

# The reasons a row is refused for its address; the columnar reader writes the same.
MISSING_EMAIL = "missing email"
INVALID_EMAIL = "invalid email"
# --only-new: a row whose address an earlier run sent is skipped, counted under this.
SKIPPED_REASON = "already imported"


def invalid_email_reason(email: str) -> str:
    return f"{INVALID_EMAIL} {_shown(email)}"


def is_plausible_email(value: str) -> bool:
    """True when ``value`` looks like one deliverable-shaped address.

    Pragmatic, not RFC 5322: rejects display names, lists, quoted local parts,
    IP literals and dot-less domains, which real import files only contain by
    mistake.  Cheap checks run before the regex.
    """
    at = value.find("@")
    if not 0 < at <= MAX_LOCAL or len(value) > MAX_EMAIL:
        return False
    if value.find("@", at + 1) != -1 or value.find("_", at) != -1:
        return False
    return _EMAIL_RE.fullmatch(value) is not None


# Field types whose values Saleshandy checks as numbers: text there fails the whole
# row at Saleshandy ("Mismatch in custom field type"), so it is refused here instead.
NUMBER_TYPES = frozenset({"number", "currency"})
# Strict, as everything sent should be: an optional minus, ASCII digits, at most one
# decimal point with digits on both sides.  No "+", thousands separators, currency
# signs, exponents, ".5" or "5." -- forms the API may read differently or not at all.
NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def is_number(value: str) -> bool:
    """True when ``value`` (trimmed) is a number as ``NUMBER_RE`` spells one."""
    return NUMBER_RE.fullmatch(value.strip()) is not None


def field_value_problem(label: str, field_type: str | None, value: str) -> str | None:
    """Why ``value`` cannot go into the field ``label`` of type ``field_type``, or None."""
    if field_type in NUMBER_TYPES and not is_number(value):
        return f'"{label}" is a {field_type} field: {_shown(value.strip())} is not a number'
    return None


def email_key(email: str) -> int:
    """The 64-bit dedupe key of an address: case and surrounding space ignored.

    XXH3-64 of the lowercased UTF-8 address: a stable, well-mixed hash with a
    C implementation per row (``xxhash``) and a vectorised one inside polars
    (``polars-hash``, the columnar path), which are checked to agree.  The
    ``--only-new`` ledger keeps these keys across runs: changing the function
    means bumping ``journal.KEYS_VERSION`` (and ``JOURNAL_VERSION`` with it).
    """
    # 0 marks an empty slot in the table; folding it onto 1 costs nothing measurable.
    return xxh3_64_intdigest(email.strip().lower().encode()) or 1


@dataclass(slots=True)
class Verdict:
    ok: bool
    reason: str | None


class _DigestTable:
    """A set of nonzero 64-bit keys, each with a 64-bit value, in flat arrays.

    Linear probing, kept at most half full; a Python dict of ints would cost
    three times the memory for the same million entries.  Values are packed
    ``file << 40 | row`` positions; while every file index fits 8 bits and every
    row 24 (up to 256 files of 16.7M rows) they are kept in 32 bits, which
    saves a quarter of the table (8 MB at a million addresses); the first value
    that does not fit widens the table to 64-bit values.
    """

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._mask = capacity - 1
        self._keys = _zeros(capacity)
        self._values = _zeros(capacity, "I")
        self.size = 0

    @property
    def _wide(self) -> bool:
        return self._values.typecode == "Q"

    def setdefault(self, key: int, value: int) -> int | None:
        """Store ``value`` under ``key`` unless present; return the earlier value, if any."""
        wide = self._wide
        if not wide and not _narrow_fits(value):
            self._widen()
            wide = True
        keys, mask = self._keys, self._mask
        slot = key & mask
        while (found := keys[slot]) != 0:
            if found == key:
                stored = self._values[slot]
                return stored if wide else _narrow_decode(stored)
            slot = (slot + 1) & mask
        keys[slot] = key
        self._values[slot] = value if wide else _narrow_encode(value)
        self.size += 1
        if self.size * 2 > mask:
            self._grow()
        return None

    def reserve(self, extra: int) -> None:
        """Grow now for ``extra`` more keys: one rehash instead of several doublings."""
        capacity = self._mask + 1
        while (self.size + extra) * 2 > capacity - 1:
            capacity *= 2
        if capacity == self._mask + 1:
            return
        self._rehash(capacity, self._values.typecode)

    def _rehash(self, capacity: int, typecode: str) -> None:
        import numpy as np  # only the columnar path and rare widening get here

        keys = np.frombuffer(self._keys, np.uint64)
        used = keys != 0
        old_k, old_v = keys[used], self._decoded(np.frombuffer(self._values, self._dtype())[used])
        self._mask = capacity - 1
        self._keys, self._values = _zeros(capacity), _zeros(capacity, typecode)
        self.size = 0
        self._insert_many(old_k, old_v)  # distinct keys: every one is new

    def _widen(self) -> None:
        self._rehash(self._mask + 1, "Q")

    def _dtype(self) -> type:
        import numpy as np

        return np.uint64 if self._wide else np.uint32

    def _decoded(self, stored: np.ndarray) -> np.ndarray:
        import numpy as np

        if self._wide:
            return stored.astype(np.uint64)
        wide = stored.astype(np.uint64)
        return ((wide >> np.uint64(24)) << np.uint64(ROW_BITS)) | (wide & np.uint64(0xFFFFFF))

    def setdefault_many(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``setdefault`` for each key in order, vectorised; 0 where the key was new.

        The same table as the per-row ``setdefault`` (a key placed here is found
        there and vice versa). A key repeated within ``keys`` gets the value of
        its first occurrence, as sequential calls would give.
        """
        import numpy as np

        if not self._wide and len(values):
            files, rows = values >> np.uint64(ROW_BITS), values & np.uint64(ROW_MASK)
            if files.max() > 0xFF or rows.max() > 0xFFFFFF:
                self._widen()
        self.reserve(len(keys))
        found = self._insert_many(keys, values)
        if self.size * 2 > self._mask:
            self.reserve(0)
        return found

    def _insert_many(self, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        import numpy as np

        table_keys = np.frombuffer(self._keys, np.uint64)  # views: writes land in the arrays
        table_values: np.ndarray = np.frombuffer(self._values, self._dtype())
        if not self._wide:  # callers made sure every value fits
            values = (
                ((values >> np.uint64(ROW_BITS)) << np.uint64(24)) | (values & np.uint64(0xFFFFFF))
            ).astype(np.uint32)
        mask = np.uint64(self._mask)
        found = np.zeros(len(keys), table_values.dtype)
        pending = np.arange(len(keys))
        slots = keys & mask
        # Linear probing a whole batch per round. Any insertion order leaves every
        # key reachable from its home slot (no deletions); only "first one wins"
        # matters, and for equal keys the earliest takes the slot (np.unique keeps
        # the first index), the later ones then find it there.
        while len(pending):
            at = slots[pending]
            current = table_keys[at]
            mine = keys[pending]
            hit = current == mine
            found[pending[hit]] = table_values[at[hit]]
            empty = current == 0
            idx_empty = np.flatnonzero(empty)
            _, first = np.unique(at[idx_empty], return_index=True)
            winners = idx_empty[first]
            table_keys[at[winners]] = mine[winners]
            table_values[at[winners]] = values[pending[winners]]
            self.size += len(winners)
            done = hit.copy()
            done[winners] = True
            moved = ~empty & ~hit  # another key there: probe on
            slots[pending[moved]] = (slots[pending[moved]] + np.uint64(1)) & mask
            pending = pending[~done]  # losers of a contested slot retry it
        return self._decoded(found)  # 0 (new) decodes to 0

    def _grow(self) -> None:
        old = zip(self._keys, self._values, strict=True)
        capacity = 2 * (self._mask + 1)
        self._mask = mask = capacity - 1
        self._keys = keys = _zeros(capacity)
        self._values = values = _zeros(capacity, self._values.typecode)
        for key, value in old:
            if key:
                slot = key & mask
                while keys[slot]:
                    slot = (slot + 1) & mask
                keys[slot] = key
                values[slot] = value


def _narrow_fits(value: int) -> bool:
    return (value >> ROW_BITS) <= 0xFF and (value & ROW_MASK) <= 0xFFFFFF


def _narrow_encode(value: int) -> int:
    return ((value >> ROW_BITS) << 24) | (value & 0xFFFFFF)


def _narrow_decode(stored: int) -> int:
    return ((stored >> 24) << ROW_BITS) | (stored & 0xFFFFFF)


def _zeros(count: int, typecode: str = "Q") -> array[int]:
    # Repetition builds the array in place: no temporary as large as the table.
    return array(typecode, [0]) * count


# A (file index, row) position packed in 64 bits: ``file << ROW_BITS | row``. The
# same packing is the sent index's (reporting.SentIndex.add, and the columnar commit's
# add_many): tests/test_fastpath.py compares their bytes.
ROW_BITS = 40  # rows up to ~1.1e12 per file; files up to 2**24 per run
ROW_MASK = (1 << ROW_BITS) - 1


class Validator:
    """Decides, row by row and in order, which prospects are sent."""

    def __init__(
        self, *, email_label: str = EMAIL_LABEL, suppression: Suppression | None = None
    ) -> None:
        self._email_label = email_label
        self.suppression = suppression
        self._files: list[str] = []
        self._file_index: dict[str, int] = {}
        self._table = _DigestTable()
        # Rows come file after file, so remembering the last file's packed
        # index saves a dict lookup per row.
        self._last_file: str | None = None
        self._file_bits = 0
        # The email key of the last accepted prospect: the caller's ledger needs it too,
        # and BLAKE2b per row is worth computing once.
        self.last_key = 0

    def check(
        self,
        prospect: dict[str, str],
        *,
        file: str,
        row: int,
        problem: str | None = None,
        typed: Mapping[str, str] | None = None,
    ) -> str | None:
        """None when ``prospect`` should be sent, else the reason it is not.

        ``typed`` maps the labels whose values are checked (``Mapping.typed``)
        to their field types.  An accepted address is remembered, so a later
        row with it is a duplicate; a rejected row is not remembered.
        """
        if problem:
            return problem
        email = prospect.get(self._email_label, "").strip()
        if not email:
            return MISSING_EMAIL
        if not is_plausible_email(email):
            return invalid_email_reason(email)
        key = email_key(email)
        if self.suppression is not None:
            suppressed = self.suppression.match(email, key)
            if suppressed is not None:
                return suppressed
        if typed:
            for label, field_type in typed.items():
                value = prospect.get(label)
                reason = None if value is None else field_value_problem(label, field_type, value)
                if reason is not None:
                    return reason
        if file != self._last_file:
            self._switch_file(file)
        # A row beyond 2**40 cannot occur; clamping keeps it out of the file bits.
        where = self._file_bits | (row if 0 <= row <= ROW_MASK else ROW_MASK)
        first = self._table.setdefault(key, where)
        if first is None:
            self.last_key = key
            return None
        return self.duplicate_reason(email, first)

    def check_many(self, keys: np.ndarray, rows: np.ndarray, *, file: str) -> np.ndarray:
        """The dedupe step of ``check`` for many plausible addresses of one file at once.

        ``keys`` are ``email_key`` values (uint64, nonzero), ``rows`` their row
        numbers.  Returns, per key, 0 when it was new (now remembered) or the
        packed position of its first occurrence, for ``duplicate_reason``.
        """
        import numpy as np

        if file != self._last_file:
            self._switch_file(file)
        where = np.uint64(self._file_bits) | np.minimum(rows, ROW_MASK).astype(np.uint64)
        return self._table.setdefault_many(keys.astype(np.uint64, copy=False), where)

    def reserve(self, expected: int) -> None:
        """Size the table for ``expected`` more addresses at once (see ``check_many``)."""
        self._table.reserve(expected)

    def duplicate_reason(self, email: str, first: int) -> str:
        first_file, first_row = self._files[first >> ROW_BITS], first & ROW_MASK
        return f"duplicate email {_shown(email)} (first seen in {first_file} row {first_row})"

    def verdict(self, prospect: dict[str, str], **where: Any) -> Verdict:
        """``check`` (same keywords) as a ``Verdict``."""
        reason = self.check(prospect, **where)
        return Verdict(ok=reason is None, reason=reason)

    def seen(self) -> int:
        """How many distinct addresses have been accepted so far."""
        return self._table.size

    def _switch_file(self, file: str) -> None:
        index = self._file_index.get(file)
        if index is None:
            index = self._file_index[file] = len(self._files)
            self._files.append(file)
        self._last_file, self._file_bits = file, index << ROW_BITS


def _shown(value: str) -> str:
    """``value`` quoted for a message, cut short when it is long."""
    if len(value) > _SHOWN:
        value = value[: _SHOWN - 1] + "…"
    return repr(value)
