"""Issue 6.2: fuzzing. Whatever a lead file, a mapping or a server throws at shandy,
only shandy's own error types come out (``InputError`` for inputs, ``ApiError`` for
answers) -- never a ``csv.Error``, ``UnicodeError``, ``KeyError``, ``RecursionError``...

tests/test_sources.py already throws random bytes at every reader and round-trips
the dialects shandy writes itself; this goes wider: any dialect ``csv.writer`` can
produce, in any encoding, with or without a ``sep=`` line, forced options and a BOM,
through the reader *and* the mapping and ``prospect()``, as ``import`` uses them.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import string
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shandy_cli.client import NO_RETRY, SaleshandyClient
from shandy_cli.errors import ApiError, InputError
from shandy_cli.pipeline.mapping import (
    ALIASES,
    build_mapping,
    load_mapping_file,
    parse_pairs,
)
from shandy_cli.pipeline.run import SYSTEM_LABELS
from shandy_cli.pipeline.sources import open_source

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- strategies -----------------------------------------------------------------------------

# Headers people (and scrapers) write: real labels, aliases in any case and spacing,
# punctuation, BOMs, zero-width characters, blanks and plain junk.
_HEADER_WORDS = [*SYSTEM_LABELS, "Lead Source", "Industry", *(a.title() for a in ALIASES)]
HEADERS = st.one_of(
    st.sampled_from(_HEADER_WORDS),
    st.sampled_from(_HEADER_WORDS).map(str.upper),
    st.sampled_from(_HEADER_WORDS).map(lambda h: f"  {h.replace(' ', '_')}\t"),
    st.sampled_from(["", " ", "\ufeffEmail", "E\u200bmail", "-", "=", "#", "Email ", "email"]),
    st.text(max_size=12),
)

# Cell text: anything, with what quoting and line handling trip over made likely.
CELLS = st.one_of(
    st.text(max_size=15),
    st.sampled_from(
        ['"', '""', "\n", "\r", "\r\n", ",", ";", "\t", "|", "\\", "\x00", " ", "sep=,"]
    ),
    st.emails(),
)


@st.composite
def dialects(draw: st.DrawFn) -> dict[str, Any]:
    """Any dialect csv.writer accepts, not only the ones shandy reads back exactly."""
    quoting = draw(
        st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_NONE])
    )
    dialect = {
        "delimiter": draw(st.sampled_from([",", ";", "\t", "|", ":", " ", "~", "^"])),
        "lineterminator": draw(st.sampled_from(["\n", "\r\n", "\r"])),
        "quoting": quoting,
        "quotechar": draw(st.sampled_from(['"', '"', "'"])),
        "doublequote": draw(st.booleans()),
        "escapechar": draw(st.sampled_from([None, "\\", "/"])),
    }
    if (quoting == csv.QUOTE_NONE or not dialect["doublequote"]) and dialect["escapechar"] is None:
        dialect["escapechar"] = "\\"  # csv.writer needs one in these dialects
    if dialect["escapechar"] in (dialect["delimiter"], dialect["quotechar"]):
        dialect["escapechar"] = "\\"
    return dialect


@st.composite
def lead_files(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A lead file as some program somewhere could have written it, and read options."""
    width = draw(st.integers(1, 6))
    header = draw(st.lists(HEADERS, min_size=width, max_size=width))
    body = draw(
        st.lists(st.lists(CELLS, min_size=0, max_size=width + 2), max_size=8)  # ragged rows
    )
    dialect = draw(dialects())
    out = io.StringIO(newline="")
    try:
        csv.writer(out, **dialect).writerows([header, *body])
    except csv.Error:  # e.g. QUOTE_NONE with a value the writer cannot escape
        out = io.StringIO(newline="")
        dialect = {"delimiter": dialect["delimiter"]}
        csv.writer(out, **dialect).writerows([header, *body])
    text = out.getvalue()
    if draw(st.booleans()):
        text = f"sep={dialect['delimiter']}\n" + text
    encoding = draw(
        st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252", "latin-1"])
    )
    data = text.encode(encoding, errors="replace" if encoding != "utf-8" else "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # now and then, a few bytes flipped at random
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at + 1 :]
    options: dict[str, Any] = {}
    if draw(st.integers(0, 3)) == 0:
        options["delimiter"] = draw(st.sampled_from([",", ";", "tab", "|", "\\t", ":"]))
    if draw(st.integers(0, 3)) == 0:
        options["encoding"] = draw(st.sampled_from(["utf-8", "cp1252", "utf-16", "latin-1"]))
    return data, options


def _consume(path: Path, options: dict[str, Any], on_unknown: str) -> None:
    """Read a file and map every row, as ``import`` does before sending."""
    with open_source(str(path), **options) as source:
        columns = source.info.columns
        mapping = None
        if columns:
            mapping = build_mapping(columns, SYSTEM_LABELS, on_unknown=on_unknown, file=path.name)
        for row in source.rows():
            assert all(isinstance(v, str) for v in row.values)
            assert not any("\ud800" <= c <= "\udfff" for v in row.values for c in v)
            assert "\x00" not in "".join(row.values) or row.problem
            if mapping is not None:
                prospect = mapping.prospect(row.values)
                assert all(isinstance(v, str) and v == v.strip() and v for v in prospect.values())
                json.dumps(prospect)  # what is sent must be encodable


# -- readers and mapping --------------------------------------------------------------------


@FUZZ
@given(
    lead=lead_files(),
    ext=st.sampled_from([".csv", ".tsv", ".txt"]),
    on_unknown=st.sampled_from(["ignore", "error", "create"]),
)
def test_any_dialect_any_encoding_only_input_errors(
    tmp_path: Path, lead: tuple[bytes, dict[str, Any]], ext: str, on_unknown: str
) -> None:
    data, options = lead
    path = tmp_path / f"lead{ext}"
    path.write_bytes(data)
    try:
        _consume(path, options, on_unknown)
    except InputError as exc:
        assert str(exc) and "\n" not in exc.reason.split(":")[0]


# JSON Lines: random JSON values and near-JSON, one per line.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
_LINES = st.one_of(
    st.dictionaries(
        st.sampled_from(["Email", "First Name", "Company", "x", ""]), _JSON, max_size=4
    ).map(json.dumps),
    _JSON.map(json.dumps),
    st.text(alphabet=string.printable, max_size=20),
    st.sampled_from(
        ["", "{", "}", "[", '{"Email": "a@b.co"', '{"a": NaN}', "\ufeff{}", '"\\ud800"']
    ),
)


@FUZZ
@given(
    lines=st.lists(_LINES, max_size=8),
    crlf=st.booleans(),
    on_unknown=st.sampled_from(["ignore", "create"]),
)
def test_jsonl_only_input_errors(
    tmp_path: Path, lines: list[str], crlf: bool, on_unknown: str
) -> None:
    path = tmp_path / "lead.jsonl"
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode("utf-8", "surrogatepass"))
    with contextlib.suppress(InputError):
        _consume(path, {}, on_unknown)


@FUZZ
@given(
    columns=st.lists(HEADERS, max_size=8),
    labels=st.lists(st.sampled_from(_HEADER_WORDS) | st.text(max_size=10), max_size=12),
    explicit=st.dictionaries(
        HEADERS,
        st.sampled_from(_HEADER_WORDS) | st.sampled_from(["-", "", " "]) | st.text(max_size=6),
        max_size=4,
    ),
    constants=st.dictionaries(
        st.sampled_from(_HEADER_WORDS) | st.text(max_size=6), st.text(max_size=6), max_size=3
    ),
    on_unknown=st.sampled_from(["error", "ignore", "create", "bogus"]),
    values=st.lists(CELLS, max_size=10),
)
def test_mapping_only_input_errors(
    columns: list[str],
    labels: list[str],
    explicit: dict[str, str],
    constants: dict[str, str],
    on_unknown: str,
    values: list[str],
) -> None:
    try:
        mapping = build_mapping(
            columns, labels, explicit=explicit, constants=constants, on_unknown=on_unknown
        )
    except InputError:
        return
    assert len(mapping.targets) == len(columns)
    assert mapping.targets[mapping.email_index] is not None
    prospect = mapping.prospect(values)
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in prospect.items())
    assert mapping.as_dict().keys() <= set(columns)


@FUZZ
@given(
    items=st.lists(
        st.text(max_size=12) | st.sampled_from(["=", "a=", "=b", "a==b", " a = b "]), max_size=5
    )
)
def test_flag_pairs_only_input_errors(items: list[str]) -> None:
    try:
        pairs = parse_pairs(items, "--map")
    except InputError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items())


@FUZZ
@given(
    data=st.binary(max_size=300)
    | _JSON.map(lambda v: json.dumps(v).encode())
    | st.sampled_from(
        [
            b"columns = 1\n",
            b'[columns]\n"a" = 1.5\n',
            b'{"columns": {"a": [1]}}',
            b"\xff\xfe{}",
            b'[set]\n"x" = true\n',
            b'{"set": null, "columns": {}}',
        ]
    ),
    suffix=st.sampled_from([".toml", ".json", ".txt", ""]),
)
def test_mapping_files_only_input_errors(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"map{suffix}"
    path.write_bytes(data)
    try:
        columns, constants = load_mapping_file(path)
    except InputError:
        return
    assert all(isinstance(v, str) for v in [*columns.values(), *constants.values()])


# -- what a hostile or broken server answers ------------------------------------------------

_ANSWERS = st.one_of(
    _JSON,
    st.fixed_dictionaries({"payload": _JSON}),
    st.fixed_dictionaries({"payload": st.fixed_dictionaries({"requestId": _JSON})}),
    st.fixed_dictionaries(
        {"payload": st.fixed_dictionaries({"isCompleted": _JSON, "reportURL": _JSON})}
    ),
    st.sampled_from(
        [
            {"requestId": "../../etc/passwd"},
            {"requestId": "a/b"},
            {"requestId": "x" * 10_000},
            {"requestId": "\x1b[2J"},
            {"requestId": True},
            {"isCompleted": "false", "reportURL": "file:///etc/passwd"},
            {"isCompleted": True, "reportURL": ["http://x"]},
        ]
    ),
)


@settings(FUZZ, max_examples=80)
@given(
    status=st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 406, 413, 422, 429, 500, 502]),
    answer=_ANSWERS,
    raw=st.none() | st.binary(max_size=50),
    retry_after=st.none()
    | st.sampled_from(["1", "-5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "1e9"]),
)
def test_server_answers_only_api_errors(
    tmp_path: Path, status: int, answer: Any, raw: bytes | None, retry_after: str | None
) -> None:
    body = raw if raw is not None else json.dumps(answer).encode()
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = retry_after

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    body_file = tmp_path / "body.json"
    body_file.write_bytes(b'{"prospectList": []}')
    with SaleshandyClient("https://api.example.com", "fuzz-key-0000", retry=NO_RETRY) as client:
        client._http = httpx.Client(
            base_url="https://api.example.com", transport=httpx.MockTransport(handler)
        )
        calls = [
            lambda: client.import_prospects(body_file, to_step=True),
            lambda: client.import_status("r1"),
            lambda: client.list_fields(),
            lambda: client.list_sequences(),
        ]
        for call in calls:
            try:
                result = call()
            except ApiError:
                continue
            if hasattr(result, "report_url"):
                assert result.report_url is None or isinstance(result.report_url, str)
                assert isinstance(result.completed, bool)
            if isinstance(result, str):  # a request id: safe in a path and a file name
                assert "/" not in result and "\\" not in result and result not in (".", "..")
                assert result.isprintable() and len(result) <= 200


@pytest.mark.parametrize("codec", ["utf-8", "utf-16", "cp1252"])
def test_encodings_round_trip_sample(tmp_path: Path, codec: str) -> None:
    """A sanity anchor for the strategies above: a plain file in each encoding reads back."""
    path = tmp_path / "plain.csv"
    path.write_bytes("Email,City\na@example.com,Zürich\n".encode(codec))
    with open_source(str(path)) as source:
        assert [r.values for r in source.rows()] == [["a@example.com", "Zürich"]]
        assert codecs.lookup(source.info.encoding or "").name.startswith(
            codecs.lookup(codec).name[:5]
        )
