"""Suppression lists (``--suppress FILE``, ``SHANDY_SUPPRESS``): addresses never to send.

A list holds addresses, one a line, ``@domain`` or ``*@domain`` entries (every
address at exactly that domain), blank lines and ``#`` comment lines; or it is a
CSV whose header has an email column (a cell the ``Email`` label's header
matching accepts: ``Email``, ``E-mail``, ``Email Address``, ...), whose other
columns are ignored. A line that is neither an address nor a domain stops the
run before anything is sent (``InputError``, exit 2), naming the file and line.

Entries are keyed as the run's dedupe key keys addresses (``validation.email_key``:
trimmed, lowercased, XXH3-64), domains the same way: the rule has one home. A row
whose plausible address matches is skipped, never sent, before it is deduplicated
(a suppressed address is not a "duplicate"), with ``Suppression.reason`` naming the
list, the line and the entry (``suppressed by dnc.txt (line 12: @competitor.com)``;
the summary's reasons group them by list). The first list and line naming an address or domain
is the one named; an address entry wins over its domain's.

The columnar reader's twin is ``match_many`` (sorted key arrays, ``searchsorted``),
beside ``match``; ``tests/test_fastpath.py`` holds them equal.
"""

from __future__ import annotations

import csv
import io
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shandy_cli.errors import InputError
from shandy_cli.pipeline.mapping import EMAIL_LABEL, _Labels, clean_header
from shandy_cli.pipeline.validation import email_key, is_plausible_email
from shandy_cli.redaction import one_line

if TYPE_CHECKING:
    import numpy as np

SUPPRESSED = "suppressed by"  # every reason starts so
# Far above any real list (10M addresses are ~300 MB), far below what would exhaust memory.
MAX_LIST_BYTES = 1_000_000_000
_DELIMITERS = ",;\t|"
_SHOWN = 80
_EMAIL_HEADER = _Labels([EMAIL_LABEL])  # mapping's own header matching, for one label


class Suppressed(str):
    """A reason a row is skipped (not rejected): its address is on a suppression list."""

    __slots__ = ()


def domain_key(domain: str) -> int:
    """The key of a domain: ``email_key``'s rule (trimmed, lowercased, XXH3-64)."""
    return email_key(domain)


@dataclass
class Suppression:
    """Every entry of the run's lists: address keys and domain keys, each with its entry."""

    # (list name, line, entry as written) of each entry, in reading order
    entries: list[tuple[str, int, str]] = field(default_factory=list)
    addresses: dict[int, int] = field(default_factory=dict)  # email key -> entry index
    domains: dict[int, int] = field(default_factory=dict)  # domain key -> entry index
    _arrays: tuple[np.ndarray, ...] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def reason(self, index: int) -> Suppressed:
        name, line, entry = self.entries[index]
        # The summary groups by what is left outside the parentheses: the list.
        return Suppressed(f"{SUPPRESSED} {name} (line {line}: {entry})")

    def match(self, email: str, key: int | None = None) -> Suppressed | None:
        """The reason a plausible, trimmed ``email`` (whose ``email_key`` is ``key``,
        when known) is suppressed, or None."""
        index = self.addresses.get(email_key(email) if key is None else key)
        if index is None and self.domains:
            index = self.domains.get(domain_key(email.rpartition("@")[2]))
        return None if index is None else self.reason(index)

    def match_many(self, keys: np.ndarray, dkeys: np.ndarray | None) -> np.ndarray:
        """``match`` vectorised: for each email key (and its domain's key), the index of
        the entry it matches, or -1. ``dkeys`` may be None when there are no domains."""
        import numpy as np

        akeys, aidx, dk, didx = self._sorted()
        found = np.full(len(keys), -1, np.int64)
        for table, index, wanted in ((akeys, aidx, keys), (dk, didx, dkeys)):
            if not len(table) or wanted is None or not len(wanted):
                continue
            at = np.minimum(np.searchsorted(table, wanted), len(table) - 1)
            hit = (table[at] == wanted) & (found < 0)
            found[hit] = index[at[hit]]
        return found

    def _sorted(self) -> tuple[np.ndarray, ...]:
        if self._arrays is None:
            self._arrays = (*_sorted_pairs(self.addresses), *_sorted_pairs(self.domains))
        return self._arrays

    def add(self, entry: str, name: str, line: int) -> None:
        """Add one entry (stripped, not blank, not a comment) or raise ``InputError``."""
        lowered = entry.lower()
        if lowered.startswith(("*@", "@")):
            domain = lowered.removeprefix("*").removeprefix("@")
            if not is_plausible_email("x@" + domain):
                raise _bad(entry, name, line)
            table, key = self.domains, domain_key(domain)
        elif is_plausible_email(entry):
            table, key = self.addresses, email_key(entry)
        else:
            raise _bad(entry, name, line)
        if key not in table:
            table[key] = len(self.entries)
            self.entries.append((name, line, entry))
            self._arrays = None


def _sorted_pairs(table: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    keys = np.fromiter(table.keys(), np.uint64, len(table))
    values = np.fromiter(table.values(), np.int64, len(table))
    order = np.argsort(keys)
    return keys[order], values[order]


def _bad(entry: str, name: str, line: int) -> InputError:
    shown = entry if len(entry) <= _SHOWN else entry[: _SHOWN - 1] + "…"
    return InputError(
        f"suppression list line {line}: {shown!r} is not an address, @domain or *@domain entry",
        file=name,
    )


def load_suppression(paths: Iterable[str | Path]) -> Suppression | None:
    """Every entry of the lists ``paths``, in order; None when there are none."""
    out = Suppression()
    for path in paths:
        name = one_line(str(path))
        for line, entry in _entries(Path(path), name):
            out.add(entry, name, line)
    return out if out.entries else None


def check_list(path: Path, name: str | None = None) -> None:
    """Refuse a list that is not a regular file: a device (``/dev/zero`` would be read for
    ever), a directory, or a pipe (``<(curl ...)``: a list is read more than once, for the
    import's fingerprint, for matching, and again by ``shandy resume``)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading it says what is wrong with it
    if stat.S_ISREG(mode):
        return
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket"))
    what = next((text for test, text in kinds if test(mode)), "a device")
    raise InputError(
        f"the suppression list is {what}, not a file (save the list to a file first)",
        file=name or one_line(str(path)),
    )


def _read_list(path: Path, name: str) -> bytes:
    """A list's bytes, at most ``MAX_LIST_BYTES``: a regular file only (``check_list``)."""
    check_list(path, name)
    with path.open("rb") as fh:
        data = fh.read(MAX_LIST_BYTES + 1)
    if len(data) > MAX_LIST_BYTES:
        raise InputError(
            f"the suppression list is larger than {MAX_LIST_BYTES // 10**6:,} MB", file=name
        )
    return data


def _entries(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """(line number, entry) of each entry of one list file."""
    try:
        text = _read_list(path, name).decode("utf-8-sig")
    except OSError as exc:
        raise InputError(
            f"cannot read suppression list: {exc.strerror or exc}", file=name
        ) from None
    except UnicodeDecodeError:
        raise InputError("suppression list is not UTF-8 text", file=name) from None
    lines = text.splitlines()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _email_column(line)
        if header is None:
            break
        delimiter, column = header
        yield from _csv_entries(lines[number:], number, delimiter, column)
        return
    else:
        return
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _email_column(line: str) -> tuple[str, int] | None:
    """(delimiter, column) when ``line`` is a header with an email column."""
    for delimiter in _DELIMITERS:
        cells = next(csv.reader([line], delimiter=delimiter)) if delimiter in line else [line]
        for index, cell in enumerate(cells):
            if _is_email_header(cell):
                return delimiter, index
        if delimiter in line:
            return None
    return None


def _is_email_header(cell: str) -> bool:
    return _EMAIL_HEADER.automatic(clean_header(cell)) == EMAIL_LABEL


def _csv_entries(
    lines: Sequence[str], header_line: int, delimiter: str, column: int
) -> Iterator[tuple[int, str]]:
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    start = header_line + 1
    for values in reader:
        number = start
        start = header_line + 1 + reader.line_num
        if not values or values[0].strip().startswith("#"):
            continue
        value = values[column].strip() if column < len(values) else ""
        if value:  # a contact without an address suppresses nothing
            yield number, value
