"""Stage 7: account for every row — rejects, Saleshandy's failed rows, the failures file.

The failures file joins the report CSVs Saleshandy returns back to the source
rows by email, so a user gets every row that did not land, with its original
columns and a reason, ready to fix and import again.
"""

from __future__ import annotations

import csv
import io
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shandy_cli._files import open_private, private_output
from shandy_cli.errors import ApiError
from shandy_cli.pipeline.mapping import normalize_header
from shandy_cli.pipeline.validation import email_key

META_COLUMNS = ["_file", "_row", "_reason"]
REASON_HEADERS = (
    "reason",
    "failurereason",
    "error",
    "errors",
    "errormessage",
    "remark",
    "remarks",
    "message",
    "status",
    "comment",
)
EMAIL_HEADERS = ("email", "emailaddress", "e-mail", "mail")


def union_columns(column_lists: Iterable[Sequence[str]]) -> list[str]:
    """All source columns, in order of first appearance, for files with different headers."""
    seen: dict[str, None] = {}
    for columns in column_lists:
        for name in columns:
            seen.setdefault(name, None)
    return list(seen)


def _clean(value: str) -> str:
    # Values that could not be decoded carry surrogates; the CSV must still be writable.
    return value.encode("utf-8", "replace").decode("utf-8") if _has_surrogate(value) else value


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(value: str) -> bool:
    return not value.isascii() and _SURROGATE.search(value) is not None


class RowsWriter:
    """A CSV of source rows in the union of the columns, plus _file, _row, _reason.

    Created lazily (no rows, no file), written to a temp file and renamed into
    place on ``close`` with mode 0600.
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self._position = {name: i for i, name in enumerate(columns)}
        self._ctx = None
        self._fh: IO[str] | None = None
        self._writer: csv.writer | None = None  # type: ignore[valid-type]

    def _open(self) -> None:
        self._ctx = private_output(self.path, "w", newline="", encoding="utf-8")
        self._fh = self._ctx.__enter__()
        self._writer = csv.writer(self._fh)
        self._writer.writerow([*self.columns, *META_COLUMNS])

    def add_many(
        self, file: str, columns: Sequence[str], rows: list[tuple[int, Sequence[str], str, str]]
    ) -> None:
        """(row number, values, reason, reason kind) each: what ``add`` writes, in one write.

        For the columnar path only: its values decoded as strict UTF-8 (no
        surrogates to replace) and are never wider than ``columns`` (a ragged
        long row makes it hand over to the per-row path), so ``add``'s repairs
        have nothing to do.
        """
        if self._writer is None:
            self._open()
        assert self._fh is not None
        text = io.StringIO()
        out = csv.writer(text)
        if list(columns) == self.columns:
            out.writerows([*values, file, number, reason] for number, values, reason, _ in rows)
        else:
            at = [self._position[c] for c in columns]
            for number, values, reason, _ in rows:
                full = [""] * len(self.columns)
                for i, value in zip(at, values, strict=False):
                    full[i] = value
                out.writerow([*full, file, number, reason])
        self._fh.write(text.getvalue())
        self.count += len(rows)
        self.reasons.update(kind for _, _, _, kind in rows)

    def add(
        self, file: str, row: int | None, columns: Sequence[str], values: Sequence[str], reason: str
    ) -> None:
        if self._writer is None:
            self._open()
        out = [""] * len(self.columns)
        for name, value in zip(columns, values, strict=False):
            out[self._position[name]] = _clean(value)
        extra = values[len(columns) :]
        if extra:  # ragged row: keep what has no column in the reason rather than lose it
            reason = f"{reason} (extra values: {', '.join(map(_clean, extra))})"
        self._writer.writerow([*out, file, "" if row is None else row, _clean(reason)])
        self.count += 1
        self.reasons[reason_kind(reason)] += 1

    def close(self, ok: bool = True) -> Path | None:
        if self._ctx is None:
            return None
        ctx, self._ctx, self._writer, self._fh = self._ctx, None, None, None
        if ok:
            ctx.__exit__(None, None, None)
        else:
            ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            return None
        return self.path


def reason_kind(reason: str) -> str:
    """Group reasons for the summary: drop quoted values and parenthesised details.

    A reason that starts with a double-quoted name keeps it: it names the field
    (``"Deal Size" is a number field: 'x' is not a number``), which is what the
    rows of that group share, not a value of each one.
    """
    lead = _LEADING_NAME.match(reason)
    head, rest = (lead.group(), reason[lead.end() :]) if lead else ("", reason)
    kind = re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)", "", rest)
    return (head + re.sub(r"\s+", " ", kind)).strip(" :;,") or reason


_LEADING_NAME = re.compile(r'"[^"]*"')


class SentIndex:
    """Where each submitted row came from: (email key, file index, row number), packed.

    16 bytes a row on disk, nothing in memory but a small buffer. Failure
    reports are joined back to source rows through it, and the rows' values
    are then read again from the inputs (stdin is kept as a private copy), so
    no second copy of the prospects' data is ever written.
    """

    FLUSH = 65536

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = open_private(path, "wb")
        self._buf = array("Q")

    @classmethod
    def reader(cls, path: Path) -> SentIndex:
        """An index written by an earlier process, opened only to look rows up."""
        index = cls.__new__(cls)
        index.path, index._fh, index._buf = path, None, array("Q")
        return index

    def add(self, key: int, file_index: int, row: int) -> None:
        buf = self._buf
        buf.append(key)
        buf.append((file_index << 40) | row)
        if len(buf) >= self.FLUSH:
            self._flush()

    def add_many(self, packed: bytes) -> None:
        """Append records already packed as native uint64 pairs (the fast path's output)."""
        self._flush()
        assert self._fh is not None
        self._fh.write(packed)

    def _flush(self) -> None:
        if self._buf and self._fh is not None:
            self._fh.write(self._buf.tobytes())
            self._buf = array("Q")

    def close(self) -> None:
        if self._fh:
            self._flush()
            self._fh.close()
            self._fh = None

    def lookup(self, keys: set[int]) -> dict[int, tuple[int, int]]:
        """First submitted (file index, row) for each email key in ``keys``."""
        self.close()
        found: dict[int, tuple[int, int]] = {}
        if not keys or not self.path.exists():
            return found
        with self.path.open("rb") as fh:
            while block := fh.read(1 << 20):
                records = array("Q")
                records.frombytes(block)
                for i in range(0, len(records), 2):
                    key = records[i]
                    if key in keys and key not in found:
                        where = records[i + 1]
                        found[key] = (where >> 40, where & ((1 << 40) - 1))
        return found


RowFetcher = Callable[[dict[int, set[int]]], dict[tuple[int, int], list[str]]]


@dataclass
class ServerFailure:
    email: str
    reason: str
    request_id: str
    values: dict[str, str] = field(default_factory=dict)


def parse_report(path: Path, request_id: str) -> list[ServerFailure]:
    """Read one Saleshandy error-report CSV; tolerant of its exact headers."""
    # A failed row may carry a huge value (a 20 MB note): allow fields that large.
    csv.field_size_limit(max(csv.field_size_limit(), 128 * 2**20))
    text = path.read_bytes().decode("utf-8-sig", "replace")
    try:
        return _parse_report_text(text, request_id)
    except csv.Error as exc:
        raise ApiError(
            f"the report of request {request_id} is not a readable CSV ({exc})"
        ) from None


def _parse_report_text(text: str, request_id: str) -> list[ServerFailure]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        return []
    norm = [normalize_header(h) for h in header]
    email_at = next((i for i, h in enumerate(norm) if h in EMAIL_HEADERS), None)
    reason_at = next(
        (norm.index(r) for r in REASON_HEADERS if r in norm), len(header) - 1 if header else None
    )
    failures = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        record = dict(zip(header, values, strict=False))
        email = values[email_at].strip() if email_at is not None and email_at < len(values) else ""
        reason = (
            values[reason_at].strip() if reason_at is not None and reason_at < len(values) else ""
        )
        failures.append(ServerFailure(email, reason or "failed at Saleshandy", request_id, record))
    return failures


def write_failures(
    path: Path,
    columns: list[str],
    rejects_path: Path | None,
    failures: list[ServerFailure],
    sent: SentIndex,
    sources: list[tuple[str, list[str]]],
    fetch: RowFetcher,
) -> Path | None:
    """Every row that did not land: local rejects, then Saleshandy's failures joined by email.

    ``sources`` are (name, columns) per input file, in the order of the sent
    index's file numbers; ``fetch`` reads the wanted rows' values again.
    """
    if rejects_path is None and not failures:
        return None
    keys = {email_key(f.email) for f in failures if f.email}
    where = sent.lookup(keys)
    wanted: dict[int, set[int]] = {}
    for file_index, row in where.values():
        wanted.setdefault(file_index, set()).add(row)
    values = fetch(wanted) if wanted else {}
    writer = RowsWriter(path, columns)
    if rejects_path is not None:
        _copy_rejects(rejects_path, writer)
    for failure in failures:
        reason = f"Saleshandy: {failure.reason}"
        hit = where.get(email_key(failure.email)) if failure.email else None
        if hit and hit in values:
            name, cols = sources[hit[0]]
            writer.add(name, hit[1], cols, values[hit], reason)
        else:  # not one of ours (or no email): keep what the report said
            names = [c for c in failure.values if c in writer._position]
            writer.add("", None, names, [failure.values[c] for c in names], reason)
    return writer.close()


def _copy_rejects(rejects_path: Path, writer: RowsWriter) -> None:
    with rejects_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            return
        n = len(header) - len(META_COLUMNS)
        for values in reader:
            file, row, reason = values[n], values[n + 1], values[n + 2]
            writer.add(file, int(row) if row else None, header[:n], values[:n], reason)
