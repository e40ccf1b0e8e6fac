"""Stage 7: account for every row — rejects, Saleshandy's failed rows, the failures file.

The failures file joins the report CSVs Saleshandy returns back to the source
rows by email, so a user gets every row that did not land, with its original
columns and a reason, ready to fix and import again.
"""

from __future__ import annotations

import csv
import io
import os
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from shandy_cli._files import (
    ensure_private_dir,
    open_private,
    private_output,
    safe_filename,
    same_file,
    writable_dir,
)
from shandy_cli.errors import ApiError, InputError
from shandy_cli.pipeline.formulas import META_COLUMNS, guard, unguard
from shandy_cli.pipeline.mapping import clean_header, normalize_header
from shandy_cli.pipeline.validation import email_key, is_plausible_email
from shandy_cli.redaction import one_line

if TYPE_CHECKING:
    from shandy_cli.client import SaleshandyClient

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
# Headers that name the address without the word "email" (normalized).
EMAIL_HEADERS = ("mail", "mailaddress", "mailid")


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


@dataclass(frozen=True)
class OutputPaths:
    """Where a run's files for people go: one rule for import, status and resume."""

    rejects: Path
    failures: Path

    @classmethod
    def for_run(
        cls, inputs: Sequence[str], rejects: str | os.PathLike[str] | None, run_dir: Path
    ) -> OutputPaths:
        """``--rejects PATH``, else ``<first input>.rejects.csv`` beside it (the run dir
        when that folder takes no files: stdin's cwd, ``/dev/fd``); the failures file
        beside the rejects file. Raises InputError, before anything is sent, when either
        is one of the inputs: writing it would replace the rows being imported."""
        paths = cls._derive(inputs, rejects, run_dir)
        for what, path in (("rejects", paths.rejects), ("failures", paths.failures)):
            clash = next((p for p in inputs if p != "-" and same_file(p, path)), None)
            if clash is not None:
                how = "--rejects" if rejects else f"the default for {one_line(inputs[0])}"
                raise InputError(
                    f"the {what} file {one_line(str(path))} ({how}) is the input "
                    f"{one_line(clash)}: writing it would destroy the input; give --rejects "
                    "another path"
                )
        return paths

    @classmethod
    def _derive(
        cls, inputs: Sequence[str], rejects: str | os.PathLike[str] | None, run_dir: Path
    ) -> OutputPaths:
        if rejects:
            path = Path(rejects)
        else:
            first = inputs[0]
            if first == "-":
                folder, stem = Path.cwd(), "stdin"
            else:
                folder, stem = Path(first).resolve().parent, Path(first).stem
            if not writable_dir(folder):
                folder = run_dir
            path = folder / f"{stem}{REJECTS_SUFFIX}"
        return cls(path, failures_beside(path))


REJECTS_SUFFIX, FAILURES_SUFFIX = ".rejects.csv", ".failures.csv"  # the outputs' names


def failures_beside(rejects: Path) -> Path:
    """The failures file that goes with a rejects file: beside it, named after it."""
    return rejects.with_name(rejects.name.replace(REJECTS_SUFFIX, "") + FAILURES_SUFFIX)


def is_output_name(path: Path) -> bool:
    """Whether a file is named as a run's rejects or failures file is (``OutputPaths``):
    last night's, beside the export, must not become tonight's input (``shandy run``'s
    globs skip them)."""
    return path.name.endswith((REJECTS_SUFFIX, FAILURES_SUFFIX))


def report_path(folder: Path, request_id: str, inputs: Sequence[str], spare: Path) -> Path:
    """Where Saleshandy's report of ``request_id`` is saved: ``<id>.csv`` in ``folder``
    unless the server's id names an input there (``--report-dir .``, id ``leads``), which
    it must not replace; then ``spare`` (a private dir of the run's) takes it."""
    path = folder / f"{safe_filename(request_id, 'report')}.csv"
    if any(p != "-" and same_file(p, path) for p in inputs):
        return spare / path.name
    return path


def save_report(
    client: SaleshandyClient,
    url: str | None,
    request_id: str,
    *,
    folder: Path,
    inputs: Sequence[str],
    spare: Path,
) -> Path | None:
    """Download a completed request's report to ``report_path`` (None: it has none)."""
    if not url:
        return None
    report = report_path(folder, request_id, inputs, spare)
    ensure_private_dir(report.parent)
    return client.download_report(url, report)


class RowsWriter:
    """A CSV of source rows in the union of the columns, plus _file, _row, _reason.

    Every cell a spreadsheet would run as a formula is guarded (``formulas.guard``).

    Created lazily (no rows, no file), written to a temp file and renamed into
    place on ``close`` with mode 0600.
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self._position = {name: i for i, name in enumerate(columns)}
        self._ctx: AbstractContextManager[IO[str]] | None = None
        self._fh: IO[str] | None = None
        self._writer: Any = None  # a csv writer: the csv module exports no type for it

    def _open(self) -> None:
        self._ctx = private_output(self.path, "w", newline="", encoding="utf-8")
        self._fh = self._ctx.__enter__()
        self._writer = csv.writer(self._fh)
        self._writer.writerow([*map(guard, self.columns), *META_COLUMNS])

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
        file = guard(file)
        if list(columns) == self.columns:
            out.writerows(
                [*map(guard, values), file, number, guard(reason)]
                for number, values, reason, _ in rows
            )
        else:
            at = [self._position[c] for c in columns]
            for number, values, reason, _ in rows:
                full = [""] * len(self.columns)
                for i, value in zip(at, values, strict=False):
                    full[i] = guard(value)
                out.writerow([*full, file, number, guard(reason)])
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
            out[self._position[name]] = guard(_clean(value))
        extra = values[len(columns) :]
        if extra:  # ragged row: keep what has no column in the reason rather than lose it
            reason = f"{reason} (extra values: {', '.join(map(_clean, extra))})"
        number = "" if row is None else row
        self._writer.writerow([*out, guard(file), number, guard(_clean(reason))])
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
    """Read one Saleshandy error-report CSV.

    Its columns are undocumented, so nothing about them is assumed: the email
    column is found by its header, else by its values (``email_column``); the
    reason by its header, else every other column's text is kept as the reason
    (``reason_text``), so nothing the server said is lost.
    """
    # A failed row may carry a huge value (a 20 MB note): allow fields that large.
    csv.field_size_limit(max(csv.field_size_limit(), 128 * 2**20))
    text = _decode_report(path.read_bytes())
    try:
        return _parse_report_text(text, request_id)
    except csv.Error as exc:
        raise ApiError(
            f"the report of request {request_id} is not a readable CSV ({exc})"
        ) from None


def _decode_report(data: bytes) -> str:
    # UTF-8 with or without a BOM as seen; a UTF-16 BOM is what Excel-made CSVs carry.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    return data.decode("utf-8-sig", "replace")


def _parse_report_text(text: str, request_id: str) -> list[ServerFailure]:
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=_report_delimiter(text))
    header = [clean_header(h) for h in next(rows, None) or []]
    if not header:
        return []
    records = [values for values in rows if any(v.strip() for v in values)]
    email_at = email_column(header, records)
    reason_at = reason_column(header, email_at)
    failures = []
    for values in records:
        email = _cell(values, email_at)
        if reason_at is not None:
            reason = _cell(values, reason_at)
        else:
            reason = reason_text(header, values, email_at)
        record = dict(zip(header, values, strict=False))
        failures.append(ServerFailure(email, reason or "failed at Saleshandy", request_id, record))
    return failures


def _report_delimiter(text: str) -> str:
    """The header line's delimiter: a comma unless ``;`` or a tab is more common there."""
    line = text.split("\n", 1)[0]
    counts = {d: line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])  # ties: the first, the comma
    return best if counts[best] else ","


def _cell(values: list[str], index: int | None) -> str:
    return values[index].strip() if index is not None and index < len(values) else ""


def _mentions_email(header: str) -> bool:
    norm = normalize_header(header)  # "E-mail", "emailId", "Prospect Email" all say it
    return "email" in norm or norm in EMAIL_HEADERS


def email_column(header: list[str], records: list[list[str]]) -> int | None:
    """Where a report keeps the failed row's address.

    A column whose header mentions email, the one holding the most plausible
    addresses when several do ("Email", "Email Status"); failing that, the column
    whose values are mostly addresses; failing that, the first header that
    mentions email (its values may be the invalid addresses that failed).
    """
    sample = records[:EMAIL_SAMPLE]
    named = [i for i, h in enumerate(header) if _mentions_email(h)]
    scores = {i: _addresses(sample, i) for i in named}
    if named and max(scores.values()) > 0:
        return max(named, key=lambda i: scores[i])  # max keeps the first of equals
    width = max([len(header), *map(len, sample)])
    by_values = [(_addresses(sample, i), i) for i in range(width) if _mostly_addresses(sample, i)]
    if by_values:
        return max(by_values, key=lambda pair: (pair[0], -pair[1]))[1]
    return named[0] if named else None


EMAIL_SAMPLE = 1000  # records looked at to find the email column: plenty to tell columns apart


def _addresses(records: list[list[str]], index: int) -> int:
    return sum(1 for values in records if is_plausible_email(_cell(values, index)))


def _mostly_addresses(records: list[list[str]], index: int) -> bool:
    filled = sum(1 for values in records if _cell(values, index))
    return filled > 0 and _addresses(records, index) * 2 > filled


def reason_column(header: list[str], email_at: int | None) -> int | None:
    """The column a report says why in: a known reason header, else one naming a reason
    or an error; None when there is none (``reason_text`` then keeps every column)."""
    norm = [normalize_header(h) if i != email_at else "" for i, h in enumerate(header)]
    for name in REASON_HEADERS:
        if name in norm:
            return norm.index(name)
    return next((i for i, h in enumerate(norm) if "reason" in h or "error" in h), None)


def reason_text(header: list[str], values: list[str], email_at: int | None) -> str:
    """Every non-empty value but the address, as ``Col: value; Col2: value``."""
    parts = []
    for index, value in enumerate(values):
        if index != email_at and value.strip():
            name = header[index] if index < len(header) and header[index] else f"column {index + 1}"
            parts.append(f"{name}: {value.strip()}")
    return "; ".join(parts)


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
    hits = [where.get(email_key(f.email)) if f.email else None for f in failures]
    # Rows of ours whose input changed since it was read: the report's own values.
    stale = [f for f, hit in zip(failures, hits, strict=True) if hit and hit not in values]
    writer = RowsWriter(path, _with_report_columns(columns, stale))
    if rejects_path is not None:
        _copy_rejects(rejects_path, writer)
    for failure, hit in zip(failures, hits, strict=True):
        reason = f"Saleshandy: {failure.reason}"
        if hit and hit in values:
            name, cols = sources[hit[0]]
            writer.add(name, hit[1], cols, values[hit], reason)
        elif hit:  # sent from that file and row, which now holds something else (or nothing)
            names = [_report_column(c, writer.columns) for c in failure.values]
            writer.add(sources[hit[0]][0], hit[1], names, list(failure.values.values()), reason)
        else:  # not one of ours (or no email): keep what the report said
            names = [c for c in failure.values if c in writer._position]
            writer.add("", None, names, [failure.values[c] for c in names], reason)
    return writer.close()


def _report_column(header: str, columns: Sequence[str]) -> str:
    """The failures file's column for a report header: the input's own column of that
    name (``first_name`` for "First Name"), else the header itself."""
    if header in columns:
        return header
    norm = normalize_header(header)
    return next((c for c in columns if normalize_header(c) == norm), header)


def _with_report_columns(columns: list[str], failures: list[ServerFailure]) -> list[str]:
    """``columns`` plus the report headers of ``failures`` that match none of them."""
    out = list(columns)
    for failure in failures:
        for header in failure.values:
            if _report_column(header, out) not in out:
                out.append(header)
    return out


def _copy_rejects(rejects_path: Path, writer: RowsWriter) -> None:
    with rejects_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [unguard(name) for name in next(reader, None) or []]
        if not header:
            return
        n = len(header) - len(META_COLUMNS)
        for guarded in reader:  # written by RowsWriter, so guarded: back to the true values
            values = [unguard(value) for value in guarded]
            file, row, reason = values[n], values[n + 1], values[n + 2]
            writer.add(file, int(row) if row else None, header[:n], values[:n], reason)
