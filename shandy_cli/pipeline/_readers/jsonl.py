"""JSON Lines: one JSON object per line.

Columns are the keys of the records in the first ~64 KB, in first-seen order (a union,
so an optional key missing from the very first record still becomes a column). A later
record with a key outside that set keeps its known values but gets a problem naming the
key, so it is rejected rather than silently losing data. Missing keys read as "".
A later line that is not a JSON object is a row with a problem (not a file error); only
a bad *first* line is a file error, since then this is probably not JSON Lines at all.
Blank lines are skipped and not counted, as in CSV.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from shandy_cli.errors import InputError

from .base import SURROGATES, Row, Source, SourceInfo, display_encoding, repair_undecodable
from .text import SAMPLE_SIZE, TextInput

LINE_LIMIT = 50 * 1024 * 1024  # characters, as for one CSV field
_JSON_SPACE = " \t\r\n"


class _Number(str):
    """A JSON number kept exactly as written (``1.50`` stays ``1.50``, big ints stay exact)."""


def _loads(line: str) -> Any:
    return json.loads(line, parse_int=_Number, parse_float=_Number, parse_constant=_Number)


def _compact(value: Any) -> str:
    """Compact JSON for nested values, writing numbers back exactly as they were read."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{_compact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    return "[" + ",".join(_compact(v) for v in value) + "]"


def json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(value)  # a plain str, even for a _Number
    return _compact(value)


def parse_object(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """The object on a line, or None and why not."""
    try:
        value = _loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not a JSON object (invalid JSON at column {exc.colno}: {exc.msg})"
    except RecursionError:
        return None, "not a JSON object (nested too deeply)"
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else "a single value"
        return None, f"not a JSON object (the line holds {kind})"
    return value, None


class JsonlSource(Source):
    def __init__(
        self,
        text: TextInput,
        *,
        path: str,
        name: str,
        size: int | None,
        owned: BinaryIO | None,
    ) -> None:
        self._owned = owned
        self._stream = text.stream
        self._text = text.reader(newline=None)
        self._name = name
        self._encoding = text.encoding
        self._ahead: list[str] = []  # lines read to find the columns, replayed by rows()
        columns = self._discover_columns()
        super().__init__(
            SourceInfo(
                path=path,
                name=name,
                format="jsonl",
                encoding=text.encoding,
                delimiter=None,
                columns=columns,
                size=size,
            )
        )

    @property
    def bytes_read(self) -> int:
        return self._stream.count

    def _read_line(self) -> str:
        try:
            line = self._text.readline(LINE_LIMIT + 1)
        except UnicodeError as exc:  # a codec that refuses outright rather than per byte
            raise InputError(f"cannot decode: {exc}", file=self._name) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=self._name) from None
        if len(line) > LINE_LIMIT:
            raise InputError(f"a line is longer than {LINE_LIMIT // 2**20} MB", file=self._name)
        return line

    def _discover_columns(self) -> list[str]:
        keys: dict[str, None] = {}  # an ordered set
        seen = 0
        first = True
        while seen < SAMPLE_SIZE:
            line = self._read_line()
            if not line:
                break
            self._ahead.append(line)
            seen += len(line)
            if not line.strip(_JSON_SPACE):
                continue
            obj, problem = parse_object(line)
            if first and obj is None:
                hint = " (a JSON array? this needs one object per line)" if line[:1] == "[" else ""
                raise InputError(f"the first line is {problem}{hint}", file=self._name)
            first = False
            keys.update(dict.fromkeys(obj or ()))
        columns = list(keys)
        if any(SURROGATES.search(c) for c in columns):
            raise InputError(
                f"the keys are not valid {display_encoding(self._encoding)}; "
                "pass --encoding to say how the file is encoded",
                file=self._name,
            )
        return columns

    def _lines(self) -> Iterator[str]:
        yield from self._ahead
        self._ahead = []
        while line := self._read_line():
            yield line

    def _rows(self) -> Iterator[Row]:
        columns = self.info.columns
        known = set(columns)
        number = 0
        for line in self._lines():
            if not line.strip(_JSON_SPACE):
                continue
            number += 1
            yield self._row(line, number, columns, known)

    def _row(self, line: str, number: int, columns: list[str], known: set[str]) -> Row:
        obj, problem = parse_object(line)
        if obj is None:
            return Row(self._name, number, [], problem)
        try:
            values = [json_text(obj.get(c)) for c in columns]
        except RecursionError:
            return Row(self._name, number, [], "not a JSON object (nested too deeply)")
        extra = [k for k in obj if k not in known]
        if extra:
            noun = "key" if len(extra) == 1 else "keys"
            problem = (
                f"unexpected {noun} {', '.join(repr(k) for k in extra)} "
                "(not among the keys of the first records)"
            )
        values, undecodable = repair_undecodable(values, columns, self._encoding)
        problem = "; ".join(p for p in (undecodable, problem) if p) or None
        return Row(self._name, number, values, problem)

    def close(self) -> None:
        self._text.close()
        if self._owned is not None:
            self._owned.close()
