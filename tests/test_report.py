"""Saleshandy's error report, whose columns are undocumented: read from real files of
several shapes, and downloaded over real HTTP by an import; and --conflict upsert.

The end-to-end tests use a loopback "API" (``LoopbackApi``) instead of the sandbox:
it serves a report of whatever shape a test gives and accepts ``upsert``, which
the sandbox does not model.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shandy_cli import SaleshandyClient, import_files
from shandy_cli.errors import InputError
from shandy_cli.pipeline.reporting import parse_report, reason_kind
from shandy_cli.pipeline.results import CONFLICT_ACTIONS, ImportOptions

FIELDS = ["Email", "First Name", "Company"]


# ---------------------------------------------------------------- report files of many shapes


def report(tmp_path: Path, data: bytes) -> list[tuple[str, str]]:
    path = tmp_path / "report.csv"
    path.write_bytes(data)
    return [(f.email, f.reason) for f in parse_report(path, "r1")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (  # the sandbox's shape
            b"Email,First Name,Reason\r\na@x.com,Ann,Invalid email\r\n",
            [("a@x.com", "Invalid email")],
        ),
        (
            b"Prospect Email,Failure Reason\nb@x.com,Prospect already present\n",
            [("b@x.com", "Prospect already present")],
        ),
        (b"E-mail;Remarks\nc@x.com;Bounced prospect\n", [("c@x.com", "Bounced prospect")]),
        (b"emailId\tError Message\nd@x.com\tUnsubscribed\n", [("d@x.com", "Unsubscribed")]),
        (
            b"EMAIL ADDRESS,status\n e@x.com ,Duplicate prospect\n",
            [("e@x.com", "Duplicate prospect")],
        ),
        (b"mail,Reason for failure\nf@x.com,Invalid\n", [("f@x.com", "Invalid")]),
    ],
    ids=["sandbox", "prospect-email", "semicolon", "tab-emailid", "caps-status", "mail"],
)
def test_email_and_reason_columns_by_header(
    tmp_path: Path, data: bytes, expected: list[tuple[str, str]]
) -> None:
    assert report(tmp_path, data) == expected


def test_without_an_email_header_the_column_of_addresses_is_the_email(tmp_path: Path) -> None:
    data = b"Name,Contact,Reason\nAnn,ann@x.com,Invalid\nBo,bo@x.com,Bounced\nCy,,Missing\n"
    assert report(tmp_path, data) == [
        ("ann@x.com", "Invalid"), ("bo@x.com", "Bounced"), ("", "Missing")
    ]  # fmt: skip


def test_without_a_reason_header_every_other_column_is_the_reason(tmp_path: Path) -> None:
    data = b"Email Address,First Name,Company,Note\na@x.com,Ann,Acme,\nb@x.com,,,in another step\n"
    assert report(tmp_path, data) == [
        ("a@x.com", "First Name: Ann; Company: Acme"),
        ("b@x.com", "Note: in another step"),
    ]


def test_without_either_header_nothing_the_server_said_is_lost(tmp_path: Path) -> None:
    data = b"Who,Where,What\nAnn,ann@x.com,Mismatch in custom field type,extra\nBo,bo@x.com\n"
    assert report(tmp_path, data) == [
        ("ann@x.com", "Who: Ann; What: Mismatch in custom field type; column 4: extra"),
        ("bo@x.com", "Who: Bo"),
    ]


def test_the_email_header_that_holds_addresses_wins(tmp_path: Path) -> None:
    data = b"Email Status,Email,Reason\nbad,a@x.com,Bounced\nbad,b@x.com,Bounced\n"
    assert [email for email, _ in report(tmp_path, data)] == ["a@x.com", "b@x.com"]


def test_an_email_header_of_invalid_addresses_still_names_them(tmp_path: Path) -> None:
    data = b"Email,Reason\nnot-an-address,Invalid email\n,Email is required\n"
    assert report(tmp_path, data) == [
        ("not-an-address", "Invalid email"), ("", "Email is required")
    ]  # fmt: skip


def test_bom_crlf_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf"Email","Reason"\r\n"a@x.com","first line\r\nsecond, quoted"\r\n\r\n,\r\n'
    assert report(tmp_path, data) == [("a@x.com", "first line\r\nsecond, quoted")]


def test_a_utf16_report(tmp_path: Path) -> None:
    data = "\ufeffEmail\tReason\r\nzoë@x.com\tInvalid\r\n".encode("utf-16-le")
    assert report(tmp_path, data) == [("zoë@x.com", "Invalid")]


_HEADERS = st.sampled_from(["Email", "email address", "Prospect Email", "E-mail", "emailId"])
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    name=_HEADERS,
    at=st.integers(0, 2),
    delimiter=st.sampled_from([",", ";", "\t"]),
    rows=st.lists(st.tuples(st.from_regex(r"[a-z]{1,5}@[a-z]{1,5}\.com", fullmatch=True),
                            _TEXT, _TEXT), min_size=1, max_size=20),
)  # fmt: skip
def test_any_report_gives_back_each_address_and_all_the_other_text(
    name: str, at: int, delimiter: str, rows: list[tuple[str, str, str]]
) -> None:
    """Whatever the email header is called and wherever it is, without a reason column
    the addresses come back in order, and every other value is in the reason."""
    header = ["Notes", "Detail"]
    header.insert(at, name)
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter)
    writer.writerow(header)
    for email, note, detail in rows:
        values = [note, detail]
        values.insert(at, email)
        writer.writerow(values)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.csv"
        path.write_text(text.getvalue(), encoding="utf-8", newline="")
        found = parse_report(path, "r1")
    assert [f.email for f in found] == [email for email, _, _ in rows]
    for failure, (_, note, detail) in zip(found, rows, strict=True):
        for column, value in (("Notes", note), ("Detail", detail)):
            if value.strip():
                assert f"{column}: {value.strip()}" in failure.reason


def test_empty_and_header_only_reports(tmp_path: Path) -> None:
    assert report(tmp_path, b"") == []
    assert report(tmp_path, b"Email,Reason\r\n") == []


def test_the_record_keeps_every_column_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"\xef\xbb\xbf Email ,Company\na@x.com,Acme\n")
    (failure,) = parse_report(path, "r9")
    assert failure.values == {"Email": "a@x.com", "Company": "Acme"}
    assert failure.reason == "Company: Acme" and failure.request_id == "r9"


def test_a_reason_that_names_a_field_keeps_the_name_in_its_group() -> None:
    assert reason_kind("\"Deal Size\" is a number field: 'x' is not a number") == (
        '"Deal Size" is a number field: is not a number'
    )
    assert reason_kind('invalid email "o\'x"') == "invalid email"


# ---------------------------------------------------------------- over HTTP, through an import


@dataclass
class LoopbackApi:
    """Fields, both import endpoints, import status and one report, on 127.0.0.1."""

    url: str = ""
    report: bytes | None = None  # served at /report.csv once an import completes
    bodies: list[dict[str, Any]] = field(default_factory=list)


def _handler(api: LoopbackApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _payload(self, status: int, payload: object) -> None:
            self._send(status, json.dumps({"message": "ok", "payload": payload}).encode())

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/v1/fields":
                self._payload(200, [{"id": f, "label": f, "fieldType": "text"} for f in FIELDS])
            elif path.startswith("/v1/prospects/import-status/"):
                url = f"{api.url}/report.csv" if api.report is not None else None
                self._payload(200, {"isCompleted": True, "reportURL": url})
            elif path == "/report.csv" and api.report is not None:
                self._send(200, api.report, "text/csv")
            else:
                self._payload(404, None)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            api.bodies.append(json.loads(body))
            self._payload(201, {"requestId": f"req{len(api.bodies)}"})

    return Handler


@pytest.fixture
def api() -> Iterator[LoopbackApi]:
    state = LoopbackApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def write_leads(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Email", "First Name", "Company"])
        writer.writerows([[f"p{i}@example.com", f"P{i}", f"Co {i}"] for i in range(5)])
    return path


def import_to(api: LoopbackApi, tmp_path: Path, **options: Any) -> Any:
    with SaleshandyClient(api.url, "k") as client:
        return import_files(
            [str(write_leads(tmp_path / "leads.csv"))], client=client,
            state_dir=tmp_path / "state", step_id="S1", poll_interval=0.05, timeout=30,
            **options,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        (b"Prospect Email,Failure Reason\r\np1@example.com,Bounced prospect\r\n"
         b"P3@EXAMPLE.COM,Bounced prospect\r\n", "Saleshandy: Bounced prospect"),
        (b"\xef\xbb\xbfWho;Contact;Remark\np1@example.com;x;\n", None),
        (b"Name,Contact\r\n\"P, one\",p1@example.com\r\nP3,p3@example.com\r\n",
         "Saleshandy: Name: "),
    ],
    ids=["headers", "addresses-without-header-empty-remark", "no-email-no-reason-header"],
)  # fmt: skip
def test_an_import_downloads_the_report_and_joins_it_to_the_source_rows(
    api: LoopbackApi, tmp_path: Path, shape: bytes, reason: str | None
) -> None:
    api.report = shape
    result = import_to(api, tmp_path)
    assert result.completed and result.exit_code == 1
    failed = {row["Email"]: row for row in read_rows(result.failures_file)}
    expected = {"p1@example.com"} if reason is None else {"p1@example.com", "p3@example.com"}
    assert set(failed) == expected and result.rows_failed == len(expected)
    for row in failed.values():  # the source row, found by the address the report named
        assert row["_file"].endswith("leads.csv") and row["Company"].startswith("Co ")
        if reason is not None:
            assert row["_reason"].startswith(reason)
    if reason is None:  # a reason column left empty: no reason made up from the data
        assert failed["p1@example.com"]["_reason"] == "Saleshandy: failed at Saleshandy"


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- --conflict upsert


def test_upsert_is_a_conflict_action_and_is_sent_as_given(api: LoopbackApi, tmp_path: Path) -> None:
    assert "upsert" in CONFLICT_ACTIONS
    ImportOptions(conflict="upsert").check()
    result = import_to(api, tmp_path, conflict="upsert")
    assert result.exit_code == 0 and result.rows_submitted == 5
    assert [body["conflictAction"] for body in api.bodies] == ["upsert"]
    # The same file with another action is another import, not "already imported".
    again = import_to(api, tmp_path, conflict="overwrite")
    assert not again.already_imported
    assert [body["conflictAction"] for body in api.bodies] == ["upsert", "overwrite"]


def test_an_unknown_conflict_action_lists_upsert() -> None:
    with pytest.raises(InputError, match="addMissingFields, upsert"):
        ImportOptions(conflict="merge").check()


def test_cli_accepts_conflict_upsert_and_documents_it(api: LoopbackApi, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "leads.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(
        SALESHANDY_BASE_URL=api.url, SALESHANDY_API_KEY="k",
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )  # fmt: skip
    command = [sys.executable, "-m", "shandy_cli", "import"]
    result = subprocess.run(
        [*command, str(src), "--step", "S1", "--conflict", "upsert", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows_submitted"] == 5
    assert [body["conflictAction"] for body in api.bodies] == ["upsert"]
    helped = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "upsert" in helped.stdout
