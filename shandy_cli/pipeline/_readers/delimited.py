"""CSV, TSV and TXT: delimiter sniffing and a streaming ``csv`` reader.

Row numbering: a record is one data row however many physical lines it spans (quoted
newlines). Records whose values are all empty -- blank lines, and the ",,,," lines
spreadsheet exports leave behind -- are skipped and NOT counted: they carry nothing to
import and would otherwise all come back as "missing email" rejects. So ``number``
counts non-blank records, not physical lines.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import BinaryIO

from shandy_cli.errors import InputError

from ..formulas import unguard, written_by_shandy
from .base import Row, Source, SourceInfo, check_header, drop_empty_extras, repair_undecodable
from .text import TextInput, normalize_encoding

DELIMITERS = ",;\t|"  # in order of preference when the evidence is a tie
FIELD_LIMIT = 50 * 1024 * 1024  # characters; big enough for a 20 MB note, small enough to fail
SNIFF_CHARS = 8 * 1024  # csv.Sniffer's quote regex is quadratic on hostile input: keep it short
_SEP_HINT = re.compile(r'sep=([^"\r\n])(?:\r\n|\n|\r|$)')  # Excel's "sep=;" first line

_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def normalize_delimiter(delimiter: str) -> str:
    """Check ``--delimiter``; accept the spellings a shell makes easy (``\\t``, ``tab``)."""
    value = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(value) != 1 or value in '"\r\n':
        raise InputError(
            f"--delimiter must be one character other than a quote or newline, "
            f"e.g. ',' ';' '|' or '\\t' (got {delimiter!r})"
        )
    return value


def _first_record_counts(text: str) -> dict[str, int]:
    """How often each candidate occurs outside quotes in the first non-blank record."""
    counts = dict.fromkeys(DELIMITERS, 0)
    in_quotes = False
    for ch in text.lstrip("\r\n"):
        if ch == '"':
            in_quotes = not in_quotes  # "" toggles twice: right for escaped quotes too
        elif in_quotes:
            continue
        elif ch in "\r\n":
            break
        elif ch in counts:
            counts[ch] += 1
    return counts


def _complete_lines(text: str, complete: bool, limit: int | None = None) -> str:
    """Cut ``text`` after its last full line (a partial line would mislead the sniffer)."""
    if limit is not None and len(text) > limit:
        text, complete = text[:limit], False
    if complete:
        return text
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return text[: cut + 1] if cut > 0 else text


def sniff_delimiter(text: str, *, complete: bool, fmt: str) -> str:
    """Pick among , ; tab | using csv.Sniffer, checked against the header line.

    The sniffer looks at consistency across rows, which the header alone cannot show,
    but it guesses freely; its answer is only kept if the delimiter occurs in the
    header, otherwise the candidate most frequent in the header wins.
    """
    default = "\t" if fmt == "tsv" else ","
    counts = _first_record_counts(text)
    if fmt == "tsv" and counts["\t"]:
        return "\t"
    try:
        sniffed = csv.Sniffer().sniff(
            _complete_lines(text, complete, SNIFF_CHARS), delimiters=DELIMITERS
        )
        guess: str | None = sniffed.delimiter
    except csv.Error:
        guess = None
    if guess in counts and counts[guess] > 0:
        return guess
    best = max(DELIMITERS, key=lambda d: counts[d])  # max() keeps the first on ties
    return best if counts[best] else default


def ends_inside_quotes(raw: str, delimiter: str) -> bool:
    """Whether a record's raw text ends inside a quoted field, as csv (non-strict) reads it.

    At end of input the csv module silently closes an open quote, swallowing the rest of
    the file into one field; this is how we notice and refuse that instead.
    """
    in_quotes, field_start, i, n = False, True, 0, len(raw)
    while i < n:
        if in_quotes:
            j = raw.find('"', i)
            if j < 0:
                return True
            if raw.startswith('"', j + 1):  # "" is an escaped quote
                i = j + 2
                continue
            in_quotes, field_start, i = False, False, j + 1
            continue
        ch = raw[i]
        if ch == '"' and field_start:
            in_quotes = True
        else:
            # A quote later in an unquoted field is a literal character.
            field_start = ch in (delimiter, "\r", "\n")
        i += 1
    return in_quotes


class _LineTap:
    """Feeds lines to csv.reader while remembering the raw lines of the current record."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.record: list[str] = []
        self.hit_end = False

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            self.hit_end = True
            raise
        self.record.append(line)
        return line


class DelimitedSource(Source):
    def __init__(
        self,
        text: TextInput,
        *,
        path: str,
        name: str,
        fmt: str,
        size: int | None,
        delimiter: str | None,
        owned: BinaryIO | None,
    ) -> None:
        self._owned = owned
        self._stream = text.stream
        self._text = text.reader(newline="")  # csv wants newline="" to see quoted CRLFs
        sample = text.sample_text
        hint = _SEP_HINT.match(sample)
        if hint:
            next(self._text, None)  # the "sep=;" line is not data
            sample = sample[hint.end() :]
        if delimiter is None:
            delimiter = hint.group(1) if hint else None
        if delimiter is None:
            delimiter = sniff_delimiter(sample, complete=text.complete, fmt=fmt)
        self._delimiter = delimiter
        self._tap = _LineTap(self._text)
        self._number = 0
        self._name = name
        csv.field_size_limit(FIELD_LIMIT)
        self._reader = csv.reader(
            self._tap,
            delimiter=delimiter,
            quotechar='"',
            doublequote=True,
            skipinitialspace=False,  # values stay untrimmed
            strict=False,  # accept the sloppy quoting Excel and hand edits produce
        )
        header = self._next_values(row=None) or []
        # A rejects or failures file shandy wrote: its cells carry the spreadsheet guard,
        # taken off so that importing it again sends the values that were refused.
        self._unguard = written_by_shandy(header)
        if self._unguard:
            header = [unguard(cell) for cell in header]
        columns = check_header(header, file=name, encoding=text.encoding)
        super().__init__(
            SourceInfo(
                path=path,
                name=name,
                format=fmt,
                encoding=text.encoding,
                delimiter=delimiter,
                columns=columns,
                size=size,
            )
        )

    @property
    def bytes_read(self) -> int:
        return self._stream.count

    def _next_values(self, row: int | None) -> list[str] | None:
        """The next record with any non-empty value, or None at the end."""
        while True:
            self._tap.record.clear()
            try:
                values = next(self._reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                raise self._parse_error(str(exc), row) from None
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror or exc}", file=self._name) from None
            except UnicodeError as exc:  # a codec that refuses outright rather than per byte
                raise InputError(f"cannot decode: {exc}", file=self._name, row=row) from None
            if self._tap.hit_end and ends_inside_quotes("".join(self._tap.record), self._delimiter):
                raise self._parse_error("unterminated quote", row)
            if any(values):
                return values

    def _parse_error(self, detail: str, row: int | None) -> InputError:
        """A file-level error for a record the csv module cannot (or should not) accept."""
        if "field larger than field limit" in detail:
            reason = f"a value is longer than {FIELD_LIMIT // 2**20} MB (is a quote never closed?)"
        elif detail == "unterminated quote":
            reason = 'a quoted value is never closed (a " with no matching ")'
        else:
            reason = f"cannot parse: {detail}"
        if row is None:
            reason = f"in the header: {reason}"
        return InputError(reason, file=self._name, row=row)

    def _rows(self) -> Iterator[Row]:
        columns = self.info.columns
        width = len(columns)
        encoding = self.info.encoding
        name = self.info.name
        while True:
            values = self._next_values(row=self._number + 1)
            if values is None:
                return
            self._number += 1
            values = drop_empty_extras(values, width)
            if self._unguard:
                values = [unguard(value) for value in values]
            values, problem = repair_undecodable(values, columns, encoding)
            yield Row(name, self._number, values, problem)

    def close(self) -> None:
        self._text.close()
        if self._owned is not None:
            self._owned.close()


__all__ = ["DelimitedSource", "normalize_delimiter", "normalize_encoding", "sniff_delimiter"]
