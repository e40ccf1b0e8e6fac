"""Stage 7: account for every row — rejects, Saleshandy's failed rows, the failures file.

The failures file joins the report CSVs Saleshandy returns back to the source
rows by email, so a user gets every row that did not land, with its original
columns and a reason, ready to fix and import again.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from shandy_cli._files import open_private, private_output
from shandy_cli.pipeline.mapping import normalize_header

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


def _has_surrogate(value: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in value)


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
        self._writer: csv.writer | None = None  # type: ignore[valid-type]

    def _open(self) -> None:
        self._ctx = private_output(self.path, "w", newline="", encoding="utf-8")
        fh = self._ctx.__enter__()
        self._writer = csv.writer(fh)
        self._writer.writerow([*self.columns, *META_COLUMNS])

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
        ctx, self._ctx, self._writer = self._ctx, None, None
        if ok:
            ctx.__exit__(None, None, None)
        else:
            ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            return None
        return self.path


def reason_kind(reason: str) -> str:
    """Group reasons for the summary: drop quoted values and parenthesised details."""
    kind = re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)", "", reason)
    return re.sub(r"\s+", " ", kind).strip(" :;,") or reason


class SentIndex:
    """A spool of every submitted row (email, file, row, original values), to join
    Saleshandy's failure reports back to the source rows without holding them in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = open_private(path, "wb")

    @classmethod
    def reader(cls, path: Path) -> SentIndex:
        """An index written by an earlier process, opened only to look rows up."""
        index = cls.__new__(cls)
        index.path, index._fh = path, None
        return index

    def add(self, email: str, file: str, row: int, values: Sequence[str]) -> None:
        assert self._fh is not None
        record = [email.strip().lower(), file, row, [_clean(v) for v in values]]
        self._fh.write(orjson.dumps(record) + b"\n")

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None

    def lookup(self, emails: set[str]) -> dict[str, tuple[str, int, list[str]]]:
        """First submitted row for each lowercased email in ``emails``."""
        self.close()
        found: dict[str, tuple[str, int, list[str]]] = {}
        if not emails or not self.path.exists():
            return found
        with self.path.open("rb") as fh:
            for line in fh:
                email, file, row, values = orjson.loads(line)
                if email in emails and email not in found:
                    found[email] = (file, row, values)
        return found


@dataclass
class ServerFailure:
    email: str
    reason: str
    request_id: str
    values: dict[str, str] = field(default_factory=dict)


def parse_report(path: Path, request_id: str) -> list[ServerFailure]:
    """Read one Saleshandy error-report CSV; tolerant of its exact headers."""
    text = path.read_bytes().decode("utf-8-sig", "replace")
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
    file_columns: dict[str, list[str]],
) -> tuple[Path | None, Counter[str]]:
    """Every row that did not land: local rejects, then Saleshandy's failures joined by email."""
    reasons: Counter[str] = Counter()
    if rejects_path is None and not failures:
        return None, reasons
    joined = sent.lookup({f.email.lower() for f in failures if f.email})
    writer = RowsWriter(path, columns)
    if rejects_path is not None:
        _copy_rejects(rejects_path, writer)
    for failure in failures:
        reason = f"Saleshandy: {failure.reason}"
        hit = joined.get(failure.email.lower())
        if hit:
            file, row, values = hit
            writer.add(file, row, file_columns.get(file, columns), values, reason)
        else:  # not one of ours (or no email): keep what the report said
            names = [c for c in failure.values if c in writer._position]
            vals = [failure.values[c] for c in names]
            writer.add("", None, names, vals, reason)
    reasons = writer.reasons
    return writer.close(), reasons


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
