"""The sandbox answers as the live Saleshandy API does, over real HTTP on loopback.

The rate limits are on by default, as live (``test_rate_limits_are_on_by_default``).
Most tests here poll fast and would trip them, so this module's ``sandbox`` and
``sandbox_factory`` start sandboxes with the limits off unless a test asks for them;
the rate-limit tests set their own, small, limits.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shandy_cli.sandbox import Sandbox, SandboxConfig, start_sandbox

KEY = {"x-api-key": "test-key"}
STEP_IMPORT = "/v1/sequences/prospects/import-with-field-name"
LIST_IMPORT = "/v1/prospects/import-with-field-name"
STATUS = "/v1/prospects/import-status/{}"
REASON_IN_SEQUENCE = "Prospect already present in another step of same sequence"
REASON_MISMATCH = "Mismatch in custom field type"
RATE_LIMITED = {"code": 40000, "type": "TOO_MANY_REQUESTS", "message": "Rate Limit exceeded"}
NO_LIMITS = {"rate_per_endpoint": None, "rate_total": None}


@pytest.fixture
def sandbox_factory(sandbox_factory: Callable[..., Sandbox]) -> Callable[..., Sandbox]:
    """conftest's factory, with the rate limits off unless a test passes its own."""

    def start(**settings: Any) -> Sandbox:
        return sandbox_factory(**(NO_LIMITS | settings))

    return start


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    """conftest's sandbox (0.05 s imports), with the rate limits off."""
    return sandbox_factory()


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=KEY, timeout=10) as client:
        yield client


def client_for(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.url, headers=KEY, timeout=10)


def import_body(prospects: list[Any], *, step: str | None = "StepA1", **extra: Any) -> dict:
    body: dict[str, Any] = {
        "prospectList": prospects,
        "verifyProspects": False,
        "conflictAction": "noUpdate",
        "tags": [],
    }
    if step is not None:
        body["stepId"] = step
    return body | extra


def submit(api: httpx.Client, prospects: list[Any], **options: Any) -> str:
    """Import and return the request id; ``step=None`` imports to the prospect list."""
    path = LIST_IMPORT if options.get("step", "StepA1") is None else STEP_IMPORT
    response = api.post(path, json=import_body(prospects, **options))
    assert response.status_code == 201, response.text
    return response.json()["payload"]["requestId"]


def wait_done(api: httpx.Client, request_id: str, timeout: float = 5.0) -> dict:
    """Poll until the import completes; returns the status payload."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(STATUS.format(request_id))
        assert response.status_code == 200, response.text
        payload = response.json()["payload"]
        if payload["isCompleted"]:
            return payload
        assert time.monotonic() < deadline, "import did not complete"
        time.sleep(0.02)


def import_and_wait(api: httpx.Client, prospects: list[Any], **options: Any) -> dict:
    return wait_done(api, submit(api, prospects, **options))


def prospects_by_email(api: httpx.Client, search: str = "") -> dict[str, dict[str, Any]]:
    """Every visible prospect (all pages) as email -> {"attrs": {label: value}, "steps", "tags"}."""
    found: dict[str, dict[str, Any]] = {}
    page = 1
    while True:
        response = api.get(
            "/v1/prospects", params={"search": search, "page": page, "pageSize": 100}
        )
        assert response.status_code == 200, response.text
        payload = response.json()["payload"]  # a bare array, as live
        for p in payload:
            attrs = {a["key"]: a["value"] for a in p["attributes"]}
            found[p["email"].lower()] = {"attrs": attrs, "steps": p["steps"], "tags": p["tags"]}
        if len(payload) < 100:
            return found
        page += 1


def raw_exchange(sandbox: Sandbox, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes, then read until the server closes the connection (or ``timeout``)."""
    host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def assert_400(response: httpx.Response, *needles: str) -> None:
    """A NestJS validation answer (shape 2) whose message(s) name every needle."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["statusCode"], body["error"]) == (400, "Bad Request"), body
    messages = body["message"] if isinstance(body["message"], list) else [body["message"]]
    for needle in needles:
        assert any(needle in message for message in messages), (needle, messages)


def report_rows(status: dict) -> list[dict[str, str]]:
    """The error report of a completed import, fetched without a key as live clients do."""
    report = httpx.get(status["reportURL"])
    assert report.status_code == 200, report.text
    return list(csv.DictReader(io.StringIO(report.text, newline="")))


def ratelimit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}


# -- authentication and request framing ---------------------------------------------------


def test_missing_or_empty_key_is_401(sandbox: Sandbox) -> None:
    for headers in ({}, {"x-api-key": ""}):
        response = httpx.get(f"{sandbox.url}/v1/sequences", headers=headers)
        assert response.status_code == 401
        assert "x-api-key" in response.json()["message"]


def test_any_key_is_accepted_unless_one_is_configured(
    sandbox: Sandbox, sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    assert httpx.get(f"{sandbox.url}/v1/sequences", headers={"x-api-key": "x"}).status_code == 200
    strict = sandbox_factory(state_dir=tmp_path / "strict", api_key="s3cret")
    right = httpx.get(f"{strict.url}/v1/sequences", headers={"x-api-key": "s3cret"})
    assert right.status_code == 200


INVALID_TOKEN = {"code": 1001, "type": "UNAUTHORIZED", "message": "1001: Invalid token"}
GATEWAY_401 = {"error": "Unauthorized", "error_code": "1001", "error_message": "Invalid token"}
FORBIDDEN = {
    "code": 4003,
    "type": "FORBIDDEN",
    "message": "4003: You don't have required permissions to perform this task",
}


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/v1/fields", 400, INVALID_TOKEN),
        ("GET", "/v1/sequences/seqOutQ4/steps", 400, INVALID_TOKEN),
        ("POST", STEP_IMPORT, 400, INVALID_TOKEN),
        ("POST", LIST_IMPORT, 400, INVALID_TOKEN),
        ("GET", STATUS.format("abc"), 400, INVALID_TOKEN),
        ("GET", "/v1/prospects", 400, INVALID_TOKEN),
        ("GET", "/v1/sequences", 401, GATEWAY_401),
        ("POST", "/v1/fields", 403, FORBIDDEN),
    ],
)
def test_a_wrong_key_is_answered_as_live_per_endpoint(
    sandbox_factory: Callable[..., Sandbox], method: str, path: str, status: int, body: dict
) -> None:
    strict = sandbox_factory(api_key="s3cret")
    wrong = httpx.request(method, f"{strict.url}{path}", headers={"x-api-key": "guess"}, json={})
    assert (wrong.status_code, wrong.json()) == (status, body)


def test_the_report_link_needs_no_key_even_when_one_is_configured(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    strict = sandbox_factory(api_key="s3cret")
    with httpx.Client(base_url=strict.url, headers={"x-api-key": "s3cret"}) as api:
        status = import_and_wait(api, [{"Email": "broken"}])
    assert [row["Email"] for row in report_rows(status)] == ["broken"]


def test_get_with_content_type_is_answered_normally(api: httpx.Client) -> None:
    # The docs say 406; live clients (the official CLI among them) send it and get answers.
    response = api.get("/v1/sequences", headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert len(response.json()["payload"]) == 3


def test_oversized_body_is_refused_from_its_length_without_reading_it(sandbox: Sandbox) -> None:
    # Only a few bytes of the declared 90,000,001 are sent: an answer proves nothing was awaited.
    head = (
        f"POST {STEP_IMPORT} HTTP/1.1\r\nHost: sandbox\r\nx-api-key: k\r\n"
        "Content-Type: application/json\r\nContent-Length: 90000001\r\n\r\n"
    )
    answer = raw_exchange(sandbox, head.encode() + b'{"prospectList": [')
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer
    assert b"90000000" in answer  # the message names the limit
    (entry,) = sandbox.requests()
    assert (entry["status"], entry["bytes"]) == (413, 90_000_001)


def test_body_at_the_limit_is_awaited_not_refused(sandbox: Sandbox) -> None:
    # With "Expect: 100-continue" the server decides from the headers alone.
    head = (
        f"POST {STEP_IMPORT} HTTP/1.1\r\nHost: sandbox\r\nx-api-key: k\r\n"
        "Content-Type: application/json\r\nExpect: 100-continue\r\n"
    )
    host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"{head}Content-Length: 90000000\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
    over = raw_exchange(sandbox, f"{head}Content-Length: 90000001\r\n\r\n".encode())
    assert over.startswith(b"HTTP/1.1 413 ")


def test_post_without_content_length_is_411(sandbox: Sandbox) -> None:
    plain = f"POST {STEP_IMPORT} HTTP/1.1\r\nHost: sandbox\r\nx-api-key: k\r\n\r\n"
    assert raw_exchange(sandbox, plain.encode()).startswith(b"HTTP/1.1 411 ")
    chunked = (
        f"POST {STEP_IMPORT} HTTP/1.1\r\nHost: sandbox\r\nx-api-key: k\r\n"
        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    assert raw_exchange(sandbox, chunked.encode()).startswith(b"HTTP/1.1 411 ")


def test_unknown_route_is_404(api: httpx.Client) -> None:
    assert api.get("/v1/nothing-here").status_code == 404
    assert api.get("/v1/sequences/").status_code == 404


# -- import validation: the whole request is refused -------------------------------------

ONE = [{"Email": "ann@example.com", "First Name": "Ann"}]


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({"prospectList": {"Email": "a@b.co"}}, ["prospectList must be an array"]),
        ({"prospectList": ["ann@example.com"]}, ["prospectList[0] must be an object"]),
        ({"conflictAction": "merge"}, ["conflictAction", "addMissingFields"]),
        ({"verifyProspects": "false"}, ["verifyProspects must be a boolean"]),
        ({"verifyProspects": None}, ["verifyProspects must be a boolean"]),
        ({"tags": "vip"}, ["tags"]),
        ({"tags": ["vip", 7]}, ["tags"]),
        ({"stepId": "StepNope"}, ["StepNope"]),
        ({"sequenceId": "seqOutQ4"}, ["property sequenceId should not exist"]),
        ({"colour": "red"}, ["property colour should not exist"]),
        (
            {"prospectList": [*ONE, {"Email": "b@example.com", "Favourite Colour": "red"}]},
            ["prospectList[1]", "Favourite Colour"],
        ),
        (
            {"prospectList": [*ONE, {"Email": "b@example.com", "Phone Number": 5551234}]},
            ["prospectList[1].Phone Number must be a string"],
        ),
        ({"prospectList": [{"Email": None}]}, ["prospectList[0].Email must be a string"]),
        ({"prospectList": []}, ["prospectList should not be empty"]),
    ],
)
def test_malformed_import_is_400(api: httpx.Client, body: dict, needles: list[str]) -> None:
    assert_400(api.post(STEP_IMPORT, json=import_body(ONE) | body), *needles)


def test_verify_prospects_is_required(api: httpx.Client) -> None:
    body = import_body(ONE)
    del body["verifyProspects"]
    assert_400(api.post(STEP_IMPORT, json=body), "verifyProspects")


def test_step_id_is_required_by_the_sequence_import_only(api: httpx.Client) -> None:
    assert_400(api.post(STEP_IMPORT, json=import_body(ONE, step=None)), "stepId must be a string")
    assert api.post(LIST_IMPORT, json=import_body(ONE, step=None)).status_code == 201
    assert api.post(LIST_IMPORT, json=import_body(ONE)).status_code == 201  # optional there
    assert_400(api.post(LIST_IMPORT, json=import_body(ONE, step="StepNope")), "StepNope")


def test_several_problems_are_a_list_of_messages(api: httpx.Client) -> None:
    body = import_body(ONE) | {"conflictAction": "merge", "verifyProspects": "no"}
    response = api.post(STEP_IMPORT, json=body)
    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"statusCode", "message", "error"}
    assert answer["error"] == "Bad Request"
    assert isinstance(answer["message"], list) and len(answer["message"]) == 2
    one = api.post(STEP_IMPORT, json=import_body(ONE, step="StepNope")).json()
    assert one == {
        "statusCode": 400,
        "message": "stepId StepNope does not exist",
        "error": "Bad Request",
    }


def test_invalid_json_and_missing_content_type_are_400(api: httpx.Client) -> None:
    broken = api.post(
        STEP_IMPORT, content=b'{"prospectList": [', headers={"Content-Type": "application/json"}
    )
    assert_400(broken, "Invalid JSON")
    assert_400(api.post(STEP_IMPORT, content=b"{}"), "Content-Type must be application/json")


def test_at_most_100000_prospects_per_request(api: httpx.Client) -> None:
    def body(count: int) -> bytes:
        rows = b",".join(b'{"Email":"u%d@example.com"}' % i for i in range(count))
        return b'{"prospectList":[%s],"stepId":"StepA1","verifyProspects":false,' % rows + (
            b'"conflictAction":"noUpdate"}'
        )

    json_headers = {"Content-Type": "application/json"}
    # timeout=30: on a loaded machine the read may outlast the client's 10 s; the
    # bounds below are the test's.
    too_many = api.post(STEP_IMPORT, content=body(100_001), headers=json_headers, timeout=30)
    assert_400(too_many, "no more than 100000")
    # CPU time of this process (the sandbox is a thread of it), not wall time: the same
    # bound, blind to other processes sharing the machine (xdist workers, say).
    # A wall-clock backstop catches a sandbox that sleeps instead.
    started, began = time.process_time(), time.monotonic()
    at_limit = api.post(STEP_IMPORT, content=body(100_000), headers=json_headers, timeout=30)
    assert at_limit.status_code == 201, at_limit.text
    assert time.process_time() - started < 5, "100k prospects must be accepted in seconds"
    assert time.monotonic() - began < 30


# -- import processing ---------------------------------------------------------------------


def test_import_answers_201_with_a_request_id(api: httpx.Client) -> None:
    first = api.post(STEP_IMPORT, json=import_body(ONE))
    assert first.status_code == 201
    assert first.json()["message"].startswith("Prospect import has started successfully.")
    second = api.post(LIST_IMPORT, json=import_body(ONE, step=None))
    ids = {first.json()["payload"]["requestId"], second.json()["payload"]["requestId"]}
    assert len(ids) == 2 and all(isinstance(i, str) and i for i in ids)


def test_import_completes_after_its_delay_and_only_then_lands(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    slow = sandbox_factory(delay_base=0.4)
    with client_for(slow) as api:
        request_id = submit(api, [*ONE, {"Email": "broken"}])
        status = api.get(f"/v1/prospects/import-status/{request_id}").json()["payload"]
        assert status == {"isCompleted": False, "reportURL": None}
        assert prospects_by_email(api) == {}
        done = wait_done(api, request_id)
        assert done["isCompleted"] is True and done["reportURL"]
        assert list(prospects_by_email(api)) == ["ann@example.com"]


def test_unknown_import_request_is_400_with_the_rate_limits_code(api: httpx.Client) -> None:
    response = api.get(STATUS.format("nope"))
    assert (response.status_code, response.json()) == (
        400,
        {"code": 40000, "type": "NOT_FOUND", "message": "40000: Prospect import request not found"},
    )


def test_imports_are_processed_one_after_another(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    queued = sandbox_factory(delay_base=0.3, delay_per_row=0.1)
    with client_for(queued) as api:
        started = time.monotonic()
        first = submit(api, ONE)  # 0.3 + 0.1 s
        second = submit(api, [{"Email": f"q{i}@example.com"} for i in range(3)], step="StepE1")
        wait_done(api, first)
        first_done = time.monotonic() - started
        assert api.get(STATUS.format(second)).json()["payload"]["isCompleted"] is False
        wait_done(api, second)  # 0.3 + 3 * 0.1 s after the first is done
        second_done = time.monotonic() - started
    assert 0.4 <= first_done < 0.8
    assert second_done >= 1.0


def test_report_csv_names_failed_rows_with_reasons(sandbox: Sandbox, api: httpx.Client) -> None:
    prospects = [
        {"Email": "ok@example.com", "First Name": "Ok"},
        {"First Name": "No Email", "Company": 'Acme, "Inc"'},
        {"Email": "not-an-email", "Company": "Line\nBreak"},
        {"Email": "OK@example.com", "First Name": "Again", "City": "Oslo"},
    ]
    status = import_and_wait(api, prospects)
    url = status["reportURL"]
    assert url.startswith(
        f"{sandbox.url}/v1/import-prospect/file?fileName=import+error+report.csv&key="
    )
    report = httpx.get(url)  # presigned: no x-api-key
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(report.text, newline="")))
    assert rows == [
        ["Email", "First Name", "Company", "City", "Reason"],
        ["", "No Email", 'Acme, "Inc"', "", "Email is required"],
        ["not-an-email", "", "Line\nBreak", "", "Invalid email"],
        ["OK@example.com", "Again", "", "Oslo", "Duplicate email in file"],
    ]
    assert httpx.get(url.replace("key=", "key=x")).status_code == 404


def test_no_report_when_nothing_failed(api: httpx.Client) -> None:
    assert import_and_wait(api, ONE)["reportURL"] is None


def test_conflict_actions_decide_what_happens_to_an_existing_prospect(api: httpx.Client) -> None:
    email = "ann@example.com"
    import_and_wait(api, [{"Email": email, "First Name": "Ann", "Job Title": ""}], step=None)

    def update(action: str, **fields: str) -> dict[str, str]:
        import_and_wait(api, [{"Email": email, **fields}], step=None, conflictAction=action)
        return prospects_by_email(api)[email]["attrs"]

    assert update("noUpdate", **{"First Name": "Anne", "City": "Oslo"}) == {
        "First Name": "Ann", "Email": email, "Job Title": ""
    }  # fmt: skip
    assert update("addMissingFields", **{"First Name": "Anne", "Job Title": "CTO"}) == {
        "First Name": "Ann", "Email": email, "Job Title": "CTO"
    }  # fmt: skip
    assert update("overwrite", **{"First Name": "Anna", "City": "Oslo"}) == {
        "First Name": "Anna", "Email": email, "Job Title": "CTO", "City": "Oslo"
    }  # fmt: skip
    assert update("upsert", **{"First Name": "Anouk", "Job Title": ""}) == {
        "First Name": "Anouk", "Email": email, "Job Title": "", "City": "Oslo"
    }  # fmt: skip


@pytest.mark.parametrize("step", ["StepA1", "StepA2"])
@pytest.mark.parametrize("action", ["overwrite", "upsert", "addMissingFields"])
def test_prospect_already_in_the_sequence_fails_and_is_left_untouched(
    api: httpx.Client, step: str, action: str
) -> None:
    import_and_wait(api, [{"Email": "ann@example.com", "First Name": "Ann"}], tags=["q4"])
    again = [{"Email": "ANN@example.com", "First Name": "Anna", "City": "Oslo"}]
    status = import_and_wait(api, again, step=step, conflictAction=action, tags=["vip"])
    assert report_rows(status) == [
        {"Email": "ANN@example.com", "First Name": "Anna", "City": "Oslo",
         "Reason": REASON_IN_SEQUENCE},
    ]  # fmt: skip
    ann = prospects_by_email(api)["ann@example.com"]
    assert ann == {
        "attrs": {"Email": "ann@example.com", "First Name": "Ann"}, "steps": ["StepA1"],
        "tags": ["q4"],
    }  # fmt: skip


def test_prospect_in_another_sequence_is_added_and_updated(api: httpx.Client) -> None:
    import_and_wait(api, [{"Email": "ann@example.com", "First Name": "Ann"}], tags=["q4"])
    again = [{"Email": "ann@example.com", "First Name": "Anna"}, {"Email": "new@example.com"}]
    status = import_and_wait(api, again, step="StepE1", conflictAction="overwrite", tags=["vip"])
    assert status["reportURL"] is None
    found = prospects_by_email(api)
    assert found["ann@example.com"] == {
        "attrs": {"Email": "ann@example.com", "First Name": "Anna"},
        "steps": ["StepA1", "StepE1"], "tags": ["q4", "vip"],
    }  # fmt: skip
    assert found["new@example.com"]["steps"] == ["StepE1"]


def test_the_account_import_updates_enrolled_prospects(api: httpx.Client) -> None:
    import_and_wait(api, [{"Email": "ann@example.com", "First Name": "Ann"}])
    update = [{"Email": "ann@example.com", "First Name": "Anna"}]
    assert import_and_wait(api, update, step=None, conflictAction="overwrite")["reportURL"] is None
    # With a stepId of the same sequence: still updated, and left in the step it is in.
    body = import_body(
        [{"Email": "ann@example.com", "City": "Oslo"}, {"Email": "bob@example.com"}],
        step="StepA2", conflictAction="upsert",
    )  # fmt: skip
    response = api.post(LIST_IMPORT, json=body)
    assert response.status_code == 201, response.text
    assert wait_done(api, response.json()["payload"]["requestId"])["reportURL"] is None
    found = prospects_by_email(api)
    assert found["ann@example.com"]["attrs"] == {
        "Email": "ann@example.com", "First Name": "Anna", "City": "Oslo"
    }  # fmt: skip
    assert found["ann@example.com"]["steps"] == ["StepA1"]
    assert found["bob@example.com"]["steps"] == ["StepA2"]


def test_prospects_search_and_paging(api: httpx.Client) -> None:
    people = [
        {"Email": f"p{i}@example.com", "Company": "Acme" if i % 2 else "Globex"} for i in range(5)
    ]
    import_and_wait(api, people, step=None)
    page = api.get("/v1/prospects", params={"page": 3, "pageSize": 2}).json()["payload"]
    assert [p["email"] for p in page] == ["p4@example.com"]
    assert set(prospects_by_email(api, search="aCmE")) == {"p1@example.com", "p3@example.com"}
    assert set(prospects_by_email(api, search="P2@")) == {"p2@example.com"}
    for params in ({"page": 0}, {"pageSize": "ten"}, {"pageSize": 0}):
        assert_400(api.get("/v1/prospects", params=params))


def test_prospects_page_size_over_100_is_capped(api: httpx.Client) -> None:
    import_and_wait(api, [{"Email": f"p{i}@example.com"} for i in range(105)], step=None)
    big = api.get("/v1/prospects", params={"pageSize": 500})
    assert big.status_code == 200
    assert len(big.json()["payload"]) == 100
    rest = api.get("/v1/prospects", params={"pageSize": 500, "page": 2}).json()["payload"]
    assert [p["email"] for p in rest] == [f"p{i}@example.com" for i in range(100, 105)]


# -- fields and sequences ------------------------------------------------------------------

SYSTEM_LABELS = [
    "First Name", "Last Name", "Email", "Company", "Phone Number", "Job Title",
    "City", "Country", "LinkedIn",
]  # fmt: skip
CUSTOM_FIELDS = [
    ("Website", "text"), ("State", "text"), ("Lead Source", "text"), ("Industry", "dropdown"),
    ("Deal Size", "number"), ("Annual Revenue", "currency"),
]  # fmt: skip


def test_fields_with_and_without_system_fields(api: httpx.Client) -> None:
    everything = api.get("/v1/fields", params={"systemFields": "true"}).json()["payload"]
    assert [f["label"] for f in everything] == [*SYSTEM_LABELS, *(c for c, _ in CUSTOM_FIELDS)]
    assert all(set(f) == {"id", "label", "fieldType"} for f in everything)
    custom = api.get("/v1/fields", params={"systemFields": "false"}).json()["payload"]
    assert [(f["label"], f["fieldType"]) for f in custom] == CUSTOM_FIELDS


def test_created_field_can_be_imported_into(api: httpx.Client) -> None:
    created = api.post("/v1/fields", json={"label": "Shoe Size", "fieldType": "number"})
    assert created.status_code == 201
    assert created.json()["payload"]["label"] == "Shoe Size"
    assert_400(api.post("/v1/fields", json={"label": "lead SOURCE", "fieldType": "text"}), "exists")
    assert_400(api.post("/v1/fields", json={"label": "Mood", "fieldType": "emoji"}), "fieldType")
    import_and_wait(api, [{"Email": "ann@example.com", "Shoe Size": "38"}], step=None)
    assert prospects_by_email(api)["ann@example.com"]["attrs"]["Shoe Size"] == "38"


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ({"label": "LinkedIn", "fieldType": "text"}, ["Default fields cannot be added"]),
        ({"label": "email", "fieldType": "text"}, ["Default fields cannot be added"]),
        ({"label": "Tier", "fieldType": "dropdown"}, ["metadata.options"]),
        (
            {"label": "Tier", "fieldType": "dropdown", "metadata": {"options": []}},
            ["metadata.options"],
        ),
        ({"label": "MRR", "fieldType": "currency", "metadata": {}}, ["metadata.currencyCode"]),
        (
            {"label": "MRR", "fieldType": "currency", "metadata": "USD"},
            ["metadata must be an object"],
        ),
        ({"label": "Note", "fieldType": "text", "fallbackText": 7}, ["fallbackText"]),
        ({"label": "", "fieldType": "text", "colour": "red"}, ["label", "property colour"]),
    ],
)
def test_create_field_is_validated(api: httpx.Client, body: dict, needles: list[str]) -> None:
    assert_400(api.post("/v1/fields", json=body), *needles)


def test_create_field_takes_fallback_text_and_metadata(api: httpx.Client) -> None:
    bodies = [
        {"label": "Tier", "fieldType": "dropdown", "metadata": {"options": ["A", "B"]}},
        {"label": "MRR", "fieldType": "currency", "metadata": {"currencyCode": "EUR"}},
        {"label": "Note", "fieldType": "long-text", "fallbackText": "there"},
    ]
    for body in bodies:
        assert api.post("/v1/fields", json=body).status_code == 201, body
    custom = api.get("/v1/fields", params={"systemFields": "false"}).json()["payload"]
    assert [(f["label"], f["fieldType"]) for f in custom][-3:] == [
        ("Tier", "dropdown"), ("MRR", "currency"), ("Note", "long-text"),
    ]  # fmt: skip


def test_a_non_number_in_a_number_or_currency_field_fails_its_row(api: httpx.Client) -> None:
    rows = [
        {"Email": "a@example.com", "Deal Size": " 12.50 ", "Annual Revenue": "-3"},
        {"Email": "b@example.com", "Deal Size": "12k", "First Name": "Bee"},
        {"Email": "c@example.com", "Annual Revenue": "$100"},
        {"Email": "d@example.com", "Deal Size": ".5", "Annual Revenue": "+7."},
        {"Email": "e@example.com", "Deal Size": ""},
        {"Email": "b@example.com", "Deal Size": "3"},  # the failed row did not claim the email
    ]
    status = import_and_wait(api, rows, step=None)
    failed = [(r["Email"], r["Reason"]) for r in report_rows(status)]
    assert failed == [
        (e, REASON_MISMATCH) for e in ("b@example.com", "c@example.com", "e@example.com")
    ]
    found = prospects_by_email(api)
    assert sorted(found) == ["a@example.com", "b@example.com", "d@example.com"]
    assert found["b@example.com"]["attrs"] == {"Email": "b@example.com", "Deal Size": "3"}


def test_sequences_and_steps_have_the_documented_ids(api: httpx.Client) -> None:
    sequences = api.get("/v1/sequences").json()["payload"]
    assert [(s["id"], s["title"], [st["id"] for st in s["steps"]]) for s in sequences] == [
        ("seqOutQ4", "Outbound Q4", ["StepA1", "StepA2"]),
        ("seqWebinar", "Webinar Follow-up", ["StepW1"]),
        ("seqOutQ4E", "Outbound Q4 EMEA", ["StepE1"]),
    ]
    steps = api.get("/v1/sequences/seqOutQ4/steps").json()["payload"]
    assert steps == [{"id": "StepA1", "name": "Intro email"}, {"id": "StepA2", "name": "Follow-up"}]
    assert api.get("/v1/sequences/seqNope/steps").status_code == 404


def sequences_page(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/sequences", params=params)
    assert response.status_code == 200, response.text
    return response.json()["payload"]


def test_sequences_are_paged_with_extra_ones_listed_first(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    big = sandbox_factory(extra_sequences=150)
    with client_for(big) as api:
        first = sequences_page(api)  # pageSize 100 by default
        assert len(first) == 100
        assert first[0] == {
            "id": "seqGen001", "title": "Campaign 001", "active": True,
            "steps": [{"id": "StepG001", "name": "Step 1"}],
        }  # fmt: skip
        second = sequences_page(api, page=2)
        assert [s["id"] for s in second] == [
            *(f"seqGen{n:03d}" for n in range(101, 151)), "seqOutQ4", "seqWebinar", "seqOutQ4E"
        ]  # fmt: skip
        assert "Outbound Q4" not in {s["title"] for s in first}
        assert sequences_page(api, page=3) == []
        assert len(sequences_page(api, pageSize=1000)) == 153
        fixed = sequences_page(api, pageSize=50, page=4)
        assert [s["id"] for s in fixed] == ["seqOutQ4", "seqWebinar", "seqOutQ4E"]
        for params in ({"pageSize": 1001}, {"page": 0}, {"pageSize": 0}, {"page": "two"}):
            assert_400(api.get("/v1/sequences", params=params))
        assert api.get("/v1/sequences/seqGen007/steps").json()["payload"] == [
            {"id": "StepG007", "name": "Step 1"}
        ]
        assert import_and_wait(api, ONE, step="StepG150")["reportURL"] is None
        assert prospects_by_email(api)["ann@example.com"]["steps"] == ["StepG150"]


def test_sequence_name_filters_case_insensitively(sandbox_factory: Callable[..., Sandbox]) -> None:
    big = sandbox_factory(extra_sequences=150)
    with client_for(big) as api:
        found = sequences_page(api, sequenceName="outBOUND q4")
        assert [s["id"] for s in found] == ["seqOutQ4", "seqOutQ4E"]
        assert [s["id"] for s in sequences_page(api, sequenceName="ign 14")] == [
            f"seqGen{n}" for n in range(140, 150)
        ]
        assert sequences_page(api, sequenceName="nothing like it") == []


def test_a_named_extra_sequence_puts_a_title_clash_on_two_pages(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    clash = sandbox_factory(extra_sequences=150, extra_sequence_titles=("Outbound Q4",))
    with client_for(clash) as api:
        assert sequences_page(api)[0] == {
            "id": "seqExtra01", "title": "Outbound Q4", "active": True,
            "steps": [{"id": "StepX01", "name": "Step 1"}],
        }  # fmt: skip
        second = sequences_page(api, page=2)
        assert [s["id"] for s in second if s["title"] == "Outbound Q4"] == ["seqOutQ4"]
        titled = sequences_page(api, sequenceName="Outbound Q4")
        assert [s["id"] for s in titled] == ["seqExtra01", "seqOutQ4", "seqOutQ4E"]


def test_sequences_sort(sandbox_factory: Callable[..., Sandbox]) -> None:
    some = sandbox_factory(extra_sequences=2)
    with client_for(some) as api:
        ids = [s["id"] for s in sequences_page(api)]
        assert ids == ["seqGen001", "seqGen002", "seqOutQ4", "seqWebinar", "seqOutQ4E"]
        oldest_first = sequences_page(api, sortBy="createdAt", sort="ASC")
        assert [s["id"] for s in oldest_first] == ids[::-1]
        titles = [s["title"] for s in sequences_page(api, sortBy="title")]
        assert titles == sorted(titles, key=str.casefold)
        assert [s["title"] for s in sequences_page(api, sortBy="title", sort="desc")] == titles[
            ::-1
        ]
        assert_400(api.get("/v1/sequences", params={"sortBy": "colour"}), "sortBy")
        assert_400(api.get("/v1/sequences", params={"sort": "up"}), "sort")


def test_extra_sequences_belong_to_the_server_not_the_database(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    plain, big = sandbox_factory(), sandbox_factory(extra_sequences=2)  # one database
    with client_for(plain) as api_plain, client_for(big) as api_big:
        assert len(sequences_page(api_plain)) == 3
        assert len(sequences_page(api_big)) == 5


# -- state ---------------------------------------------------------------------------------


def test_state_persists_across_a_restart(sandbox_factory: Callable[..., Sandbox]) -> None:
    first = sandbox_factory()
    with client_for(first) as api:
        api.post("/v1/fields", json={"label": "Shoe Size", "fieldType": "number"})
        request_id = submit(api, [*ONE, {"Email": "bad"}])
    first.stop()
    time.sleep(0.06)  # past the import's completion time, with no server running
    second = sandbox_factory()
    with client_for(second) as api:
        status = wait_done(api, request_id, timeout=0)
        assert httpx.get(status["reportURL"]).status_code == 200
        assert status["reportURL"].startswith(second.url)  # links point at who answered
        assert list(prospects_by_email(api)) == ["ann@example.com"]
        labels = [f["label"] for f in api.get("/v1/fields").json()["payload"]]
        assert "Shoe Size" in labels


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("leftover", [False, True], ids=["new", "older-0644-db"])
def test_the_database_is_private_whatever_the_umask(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path, leftover: bool
) -> None:
    """The database holds imported contact data: 0600 (and its -wal, -shm), in dirs it
    made 0700; an existing dir keeps its mode. It used to be 0644 under umask 022."""
    (tmp_path / "shared").mkdir(mode=0o755)
    state = tmp_path / "shared" / "made" / "sandbox"
    if leftover:
        state.mkdir(parents=True)
        (state / "sandbox.sqlite3").touch(mode=0o644)
    previous = os.umask(0o022)
    try:
        running = sandbox_factory(state_dir=state)
        # A reader held open keeps the -wal and -shm files that the last close removes.
        with closing(sqlite3.connect(state / "sandbox.sqlite3")) as reader:
            reader.execute("SELECT COUNT(*) FROM imports").fetchone()
            with client_for(running) as api:
                wait_done(api, submit(api, ONE))
            files = {p.name: p.stat().st_mode & 0o777 for p in state.iterdir()}
    finally:
        os.umask(previous)
    assert files == {f"sandbox.sqlite3{end}": 0o600 for end in ("", "-wal", "-shm")}
    made = 0o755 if leftover else 0o700  # made by the test (under umask 022), or by the sandbox
    assert state.stat().st_mode & 0o777 == made
    assert (state.parent.stat().st_mode & 0o777) == made
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o755  # not ours: left as it was


def test_two_servers_share_one_database(sandbox_factory: Callable[..., Sandbox]) -> None:
    one, two = sandbox_factory(), sandbox_factory()
    with client_for(one) as api_one, client_for(two) as api_two:
        request_id = submit(api_one, ONE)
        wait_done(api_two, request_id)
        assert list(prospects_by_email(api_two)) == ["ann@example.com"]


def test_state_dir_is_private(sandbox: Sandbox, tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    assert (state_dir / "sandbox.sqlite3").is_file()
    assert state_dir.stat().st_mode & 0o777 == 0o700


def test_reset_forgets_data_but_keeps_the_seed(sandbox: Sandbox, api: httpx.Client) -> None:
    request_id = submit(api, ONE)
    api.post("/v1/fields", json={"label": "Shoe Size", "fieldType": "number"})
    sandbox.set_faults(["503"], match="/v1/fields")
    assert httpx.post(f"{sandbox.url}/_sandbox/reset").status_code == 200
    assert sandbox.requests() == []
    assert api.get(STATUS.format(request_id)).json()["type"] == "NOT_FOUND"
    fields = api.get("/v1/fields").json()["payload"]
    assert [(f["label"], f["fieldType"]) for f in fields] == CUSTOM_FIELDS
    assert len(api.get("/v1/sequences").json()["payload"]) == 3


def test_stop_closes_kept_alive_connections(sandbox_factory: Callable[..., Sandbox]) -> None:
    running = sandbox_factory()
    with client_for(running) as api:
        assert api.get("/v1/sequences").status_code == 200
        running.stop()
        with pytest.raises(httpx.TransportError):
            api.get("/v1/sequences")


# -- rate limits ---------------------------------------------------------------------------


def test_rate_limits_are_on_by_default(tmp_path: Path) -> None:
    config = SandboxConfig(state_dir=tmp_path / "defaults")
    settings = (config.rate_per_endpoint, config.rate_total, config.rate_window)
    assert settings == (20, 300, 60.0)
    assert (config.rate_status, config.rate_reset_format) == (400, "seconds")
    with start_sandbox(config) as running, client_for(running) as api:
        answers = [api.get("/v1/fields") for _ in range(21)]
    assert [a.status_code for a in answers] == [200] * 20 + [400]
    assert answers[-1].json() == RATE_LIMITED
    assert "Retry-After" not in answers[-1].headers
    assert ratelimit_headers(answers[0])["x-ratelimit-limit"] == "20"
    assert [ratelimit_headers(a)["x-ratelimit-remaining"] for a in answers[-3:]] == ["1", "0", "0"]
    assert 59 <= int(answers[-1].headers["x-ratelimit-reset"]) <= 60


def kind(response: httpx.Response) -> str:
    """What answered: "limited", an application error's type, or the status."""
    if response.json() == RATE_LIMITED:
        return "limited"
    return response.json().get("type") or str(response.status_code)


def test_an_endpoint_is_a_method_and_a_route_template(
    sandbox: Sandbox, sandbox_factory: Callable[..., Sandbox]
) -> None:
    limited = sandbox_factory(rate_per_endpoint=3)
    with client_for(limited) as api:
        polls = [api.get(STATUS.format(f"req{i}")) for i in range(4)]
        assert [kind(p) for p in polls] == ["NOT_FOUND"] * 3 + ["limited"]
        steps = [api.get(f"/v1/sequences/{sid}/steps") for sid in ("seqOutQ4", "seqWebinar")]
        steps += [api.get("/v1/sequences/seqOutQ4E/steps") for _ in range(2)]
        assert [s.status_code for s in steps] == [200, 200, 200, 400]
        # Same path, other method: another endpoint.
        assert [api.get("/v1/fields").status_code for _ in range(3)] == [200] * 3
        assert_400(api.post("/v1/fields", json={}), "label")
    log = [(e["endpoint"], e["limited"]) for e in limited.requests()]
    assert log[3] == ("GET /v1/prospects/import-status/{id}", True)
    assert sum(limited for _, limited in log) == 2
    assert log[-1] == ("POST /v1/fields", False)


def test_the_total_limit_spans_endpoints_and_remaining_is_the_lesser(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    limited = sandbox_factory(rate_per_endpoint=3, rate_total=5)
    with client_for(limited) as api:
        answers = [api.get("/v1/fields") for _ in range(3)]
        answers += [api.get("/v1/sequences") for _ in range(2)]
        answers.append(api.get("/v1/prospects"))
    remaining = [ratelimit_headers(a)["x-ratelimit-remaining"] for a in answers]
    assert remaining == ["2", "1", "0", "1", "0", "0"]
    assert {ratelimit_headers(a)["x-ratelimit-limit"] for a in answers} == {"3"}
    assert answers[-1].json() == RATE_LIMITED


def test_limits_are_per_key(sandbox_factory: Callable[..., Sandbox]) -> None:
    limited = sandbox_factory(rate_per_endpoint=1)
    one = {"x-api-key": "one"}
    assert httpx.get(f"{limited.url}/v1/fields", headers=one).status_code == 200
    assert httpx.get(f"{limited.url}/v1/fields", headers=one).status_code == 400
    assert httpx.get(f"{limited.url}/v1/fields", headers={"x-api-key": "two"}).status_code == 200


def test_refused_calls_are_not_counted_and_the_window_slides(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    limited = sandbox_factory(rate_per_endpoint=2, rate_window=0.6)
    with client_for(limited) as api:
        started = time.monotonic()

        def calls(at: float, count: int) -> list[int]:
            time.sleep(max(0.0, started + at - time.monotonic()))
            return [api.get("/v1/fields").status_code for _ in range(count)]

        assert calls(0.0, 2) == [200, 200]
        assert calls(0.3, 3) == [400, 400, 400]  # counted, these would fill the next window
        assert calls(0.75, 3) == [200, 200, 400]


def test_429_mode_adds_retry_after(sandbox_factory: Callable[..., Sandbox]) -> None:
    limited = sandbox_factory(rate_per_endpoint=1, rate_status=429, rate_window=5)
    with client_for(limited) as api:
        assert api.get("/v1/fields").status_code == 200
        refused = api.get("/v1/fields")
    assert (refused.status_code, refused.json()) == (429, RATE_LIMITED)
    assert refused.headers["Retry-After"] == "5"  # ceil of the 4.99 s until the slot frees
    assert ratelimit_headers(refused)["x-ratelimit-remaining"] == "0"


def test_every_answer_of_a_limited_endpoint_carries_the_headers(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    limited = sandbox_factory(rate_per_endpoint=10, api_key="s3cret")
    with client_for(limited) as api:  # the wrong key: 400 1001, counted under that key
        answers = [
            api.get("/v1/fields"),
            httpx.post(f"{limited.url}{STEP_IMPORT}", headers={"x-api-key": "s3cret"}, json={}),
            httpx.get(f"{limited.url}/v1/sequences/seqNope/steps", headers={"x-api-key": "s3cret"}),
        ]
    assert [a.status_code for a in answers] == [400, 400, 404]
    assert all(ratelimit_headers(a)["x-ratelimit-remaining"] == "9" for a in answers)


def reset_as_epoch(value: str, fmt: str) -> float:
    """Parse an x-ratelimit-reset value strictly in ``fmt``."""
    if fmt == "seconds":
        assert value.isdigit(), value
        return time.time() + int(value)
    if fmt == "epoch":
        assert value.isdigit() and len(value) == 10, value
        return int(value)
    if fmt == "http-date":
        assert value.endswith(" GMT"), value
        return parsedate_to_datetime(value).timestamp()
    assert len(value) == 20 and value[10] == "T" and value.endswith("Z"), value
    return datetime.fromisoformat(value).timestamp()


@pytest.mark.parametrize("fmt", ["seconds", "epoch", "http-date", "iso"])
def test_reset_header_formats(sandbox_factory: Callable[..., Sandbox], fmt: str) -> None:
    limited = sandbox_factory(rate_per_endpoint=5, rate_window=30, rate_reset_format=fmt)
    with client_for(limited) as api:
        first_at = time.time()
        first = api.get("/v1/fields")
        time.sleep(1.1)  # the reset stays with the oldest call, not the newest
        second = api.get("/v1/fields")
    for answer in (first, second):
        reset = reset_as_epoch(answer.headers["x-ratelimit-reset"], fmt)
        assert first_at + 29 <= reset <= first_at + 31.5, (fmt, answer.headers)


def test_the_report_link_control_paths_and_unknown_routes_are_never_limited(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    limited = sandbox_factory(rate_total=2, delay_base=0.0)
    with client_for(limited) as api:
        request_id = submit(api, [{"Email": "broken"}])
        url = api.get(STATUS.format(request_id)).json()["payload"]["reportURL"]
        assert url is not None
        for _ in range(5):
            report = httpx.get(url)
            assert report.status_code == 200 and ratelimit_headers(report) == {}
            control = httpx.get(f"{limited.url}/_sandbox/requests")
            assert control.status_code == 200 and ratelimit_headers(control) == {}
            assert api.get("/v1/nothing-here").status_code == 404
            assert httpx.get(f"{limited.url}/v1/fields").status_code == 401  # no key: no bucket
        assert api.get("/v1/fields").json() == RATE_LIMITED


def test_limits_hold_under_concurrent_calls(sandbox_factory: Callable[..., Sandbox]) -> None:
    limited = sandbox_factory(rate_per_endpoint=20)
    start = threading.Barrier(40)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    pool = httpx.Limits(max_connections=40)  # one connection, so one server thread, per call
    with httpx.Client(base_url=limited.url, headers=KEY, timeout=10, limits=pool) as api:

        def call() -> None:
            start.wait()
            answer = api.get("/v1/fields")
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=call) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    ok = [a for a in answers if a.status_code == 200]
    assert len(ok) == 20
    remaining = sorted(int(a.headers["x-ratelimit-remaining"]) for a in ok)
    assert remaining == list(range(20))  # each slot handed out exactly once
    assert sum(e["limited"] for e in limited.requests()) == 20


def test_fault_answers_are_not_counted(sandbox_factory: Callable[..., Sandbox]) -> None:
    limited = sandbox_factory(rate_per_endpoint=1)
    limited.set_faults(["503", "rl400"])
    with client_for(limited) as api:
        statuses = [api.get("/v1/fields").status_code for _ in range(4)]
        assert statuses == [503, 400, 200, 400]
    assert [e["limited"] for e in limited.requests()] == [False, False, False, True]


# -- faults --------------------------------------------------------------------------------


def test_429_faults_carry_retry_after(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(["429", "429:3", "429:date", "429:none"])
    answers = [api.get("/v1/sequences") for _ in range(5)]
    assert [a.status_code for a in answers] == [429, 429, 429, 429, 200]
    assert answers[0].headers["Retry-After"] == "1"
    assert answers[1].headers["Retry-After"] == "3"
    retry_at = parsedate_to_datetime(answers[2].headers["Retry-After"]).timestamp()
    assert time.time() < retry_at <= time.time() + 3
    assert "Retry-After" not in answers[3].headers


def test_rate_limit_faults_answer_as_live(sandbox: Sandbox, api: httpx.Client) -> None:
    specs = ["rl400", "rl4000", "rl400:7", "rl4000:7:epoch", "rl400:7:http-date", "rl400:7:iso"]
    sandbox.set_faults(specs)
    asked_at = time.time()
    answers = [api.get("/v1/fields") for _ in range(7)]
    assert [a.status_code for a in answers] == [400] * 6 + [200]
    assert [a.json() for a in answers[:2]] == [RATE_LIMITED, RATE_LIMITED | {"code": 4000}]
    assert all("Retry-After" not in a.headers for a in answers)
    assert [ratelimit_headers(a) for a in answers[:2]] == [{}, {}]
    assert ratelimit_headers(answers[2]) == {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "7"}
    for answer, fmt in zip(answers[3:6], ["epoch", "http-date", "iso"], strict=True):
        assert answer.headers["x-ratelimit-remaining"] == "0"
        reset = reset_as_epoch(answer.headers["x-ratelimit-reset"], fmt)
        assert asked_at + 6 <= reset <= asked_at + 9, fmt
    for bad in ("rl400:soon", "rl400:5:weekday", "rl40"):
        with pytest.raises(ValueError, match=bad):
            sandbox.set_faults([bad])


def test_5xx_faults(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(["500", "502", "503"])
    answers = [api.get("/v1/sequences") for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 502, 503]
    assert answers[1].headers["content-type"] == "text/html"  # gateways don't speak JSON


def test_drop_before_closes_without_processing(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(["drop-before"])
    with pytest.raises(httpx.TransportError):
        api.post(STEP_IMPORT, json=import_body(ONE))
    time.sleep(0.1)
    assert prospects_by_email(api) == {}
    assert sandbox.requests()[0] | {"time": 0, "bytes": 0} == {
        "method": "POST", "path": STEP_IMPORT, "query": "", "status": None,
        "bytes": 0, "fault": "drop-before", "time": 0, "endpoint": f"POST {STEP_IMPORT}",
        "limited": False,
    }  # fmt: skip


def test_drop_after_stores_the_import_but_loses_the_answer(
    sandbox: Sandbox, api: httpx.Client
) -> None:
    sandbox.set_faults(["drop-after"], match=STEP_IMPORT)
    with pytest.raises(httpx.TransportError):
        api.post(STEP_IMPORT, json=import_body(ONE))
    time.sleep(0.1)
    assert list(prospects_by_email(api)) == ["ann@example.com"]
    entry = sandbox.requests()[0]
    sent = len(httpx.Request("POST", sandbox.url, json=import_body(ONE)).content)
    assert (entry["status"], entry["fault"], entry["bytes"]) == (None, "drop-after", sent)


def test_slow_fault_delays_a_normal_answer(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(["slow:0.3"])
    started = time.monotonic()
    assert api.get("/v1/sequences").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_script_is_consumed_by_matching_requests_only(sandbox: Sandbox, api: httpx.Client) -> None:
    sandbox.set_faults(["ok", "503"], match="/v1/sequences")
    statuses = [api.get(path).status_code for path in ("/v1/fields", *["/v1/sequences"] * 3)]
    assert statuses == [200, 200, 503, 200]
    assert [e["fault"] for e in sandbox.requests()] == [None, "ok", "503", None]


def test_random_faults_are_reproducible_with_a_seed(sandbox: Sandbox, api: httpx.Client) -> None:
    def run() -> list[int]:
        sandbox.set_faults(rate=0.5, kinds=["503"], seed=7)
        return [api.get("/v1/sequences").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert set(first) == {200, 503}
    sandbox.set_faults()  # everything off again
    assert all(api.get("/v1/sequences").status_code == 200 for _ in range(5))


def test_configured_fault_rate_spares_the_control_paths(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    noisy = sandbox_factory(fault_rate=1.0, fault_kinds=("500",))
    with client_for(noisy) as api:
        assert api.get("/v1/sequences").status_code == 500
        assert api.get("/_sandbox/requests").status_code == 200


def test_faults_over_http(sandbox: Sandbox, api: httpx.Client) -> None:
    plan = {"script": ["429:2"], "match": "/v1/fields"}
    assert httpx.post(f"{sandbox.url}/_sandbox/faults", json=plan).status_code == 200
    described = httpx.get(f"{sandbox.url}/_sandbox/faults").json()["payload"]
    assert described["script"] == ["429:2"]
    assert api.get("/v1/fields").headers["Retry-After"] == "2"
    log = httpx.get(f"{sandbox.url}/_sandbox/requests").json()["payload"]
    assert [(e["path"], e["status"], e["fault"]) for e in log] == [("/v1/fields", 429, "429:2")]
    bad = httpx.post(f"{sandbox.url}/_sandbox/faults", json={"script": ["418"]})
    assert bad.status_code == 400 and "418" in bad.json()["message"]
    with pytest.raises(ValueError, match="teapot"):
        sandbox.set_faults(["teapot"])


# -- foreground server ---------------------------------------------------------------------


def test_serve_forever_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """The library prints nothing: its ``on_ready`` hook hears where the sandbox listens."""
    code = (
        "import sys\n"
        "from shandy_cli.sandbox import SandboxConfig, serve_forever\n"
        f"serve_forever(SandboxConfig(state_dir={str(tmp_path / 'fg')!r}),\n"
        "              on_ready=lambda s: print('listening on', s.url, file=sys.stderr))\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    root = Path(__file__).resolve().parents[1]  # importable even when not installed
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env, cwd=root
    )
    try:
        banner = proc.stderr.readline() if proc.stderr else ""
        url = banner.split("listening on ")[1].split()[0]
        assert httpx.get(f"{url}/v1/sequences", headers=KEY).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_command(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """``shandy sandbox --port 0 FLAGS`` in a child process, and the URL it listens on."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SHANDY_STATE_DIR": str(tmp_path / "state")}
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "shandy_cli", "sandbox", "--port", "0", *flags]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=root)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on " in line:
            return proc, line.split("listening on ")[1].split()[0]
    proc.wait(timeout=10)
    raise AssertionError(f"the sandbox did not start (exit {proc.returncode})")


def stop_command(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sandbox_command_sets_rate_limits_and_sequences(tmp_path: Path) -> None:
    flags = ["--rate-per-endpoint", "2", "--rate-status", "429", "--rate-window", "30"]
    proc, url = start_command(tmp_path, *flags, "--sequences", "150", "--rate-reset-format", "iso")
    try:
        with httpx.Client(base_url=url, headers=KEY) as api:
            second_page = api.get("/v1/sequences", params={"page": 2}).json()["payload"]
            assert "Outbound Q4" in [s["title"] for s in second_page]
            assert api.get("/v1/sequences").status_code == 200
            refused = api.get("/v1/sequences")
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 30
            assert refused.headers["x-ratelimit-reset"].endswith("Z")
    finally:
        stop_command(proc)


def test_sandbox_command_can_turn_the_limits_off(tmp_path: Path) -> None:
    proc, url = start_command(tmp_path, "--no-rate-limit")
    try:
        with httpx.Client(base_url=url, headers=KEY) as api:
            answers = [api.get("/v1/fields") for _ in range(25)]
        assert {a.status_code for a in answers} == {200}
        assert ratelimit_headers(answers[0]) == {}
    finally:
        stop_command(proc)


def test_sandbox_command_refuses_a_bad_rate_status(tmp_path: Path) -> None:
    env = {**os.environ, "SHANDY_STATE_DIR": str(tmp_path / "state")}
    command = [sys.executable, "-m", "shandy_cli", "sandbox", "--rate-status", "503"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 2
    assert "400 or 429" in done.stderr
