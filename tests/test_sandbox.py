"""The sandbox answers as the documented Saleshandy API does, over real HTTP on loopback."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shandy_cli.sandbox import Sandbox

KEY = {"x-api-key": "test-key"}
STEP_IMPORT = "/v1/sequences/prospects/import-with-field-name"
LIST_IMPORT = "/v1/prospects/import-with-field-name"
REASON_IN_STEP = "Prospect already exists in this step"


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
        response = api.get(f"/v1/prospects/import-status/{request_id}")
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
        payload = response.json()["payload"]
        for p in payload["prospects"]:
            attrs = {a["key"]: a["value"] for a in p["attributes"]}
            found[p["email"].lower()] = {"attrs": attrs, "steps": p["steps"], "tags": p["tags"]}
        if page * 100 >= payload["total"]:
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
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    for needle in needles:
        assert needle in message


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
    wrong = httpx.get(f"{strict.url}/v1/sequences", headers={"x-api-key": "guess"})
    assert wrong.status_code == 401
    assert wrong.json()["message"] == "Invalid API key"
    right = httpx.get(f"{strict.url}/v1/sequences", headers={"x-api-key": "s3cret"})
    assert right.status_code == 200


def test_get_with_content_type_is_406(api: httpx.Client) -> None:
    response = api.get("/v1/sequences", headers={"Content-Type": "application/json"})
    assert response.status_code == 406
    assert "Content-Type" in response.json()["message"]


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


def test_step_id_belongs_only_to_the_sequence_import(api: httpx.Client) -> None:
    assert_400(api.post(LIST_IMPORT, json=import_body(ONE)), "property stepId should not exist")
    assert_400(api.post(STEP_IMPORT, json=import_body(ONE, step=None)), "stepId")


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
    too_many = api.post(STEP_IMPORT, content=body(100_001), headers=json_headers)
    assert_400(too_many, "no more than 100000")
    started = time.monotonic()
    at_limit = api.post(STEP_IMPORT, content=body(100_000), headers=json_headers)
    assert at_limit.status_code == 201, at_limit.text
    assert time.monotonic() - started < 5, "100k prospects must be accepted in seconds"


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
        assert api.get("/v1/prospects/import-status/nope").status_code == 404


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


def test_prospect_already_in_step_is_reported_but_still_updated(api: httpx.Client) -> None:
    import_and_wait(api, [{"Email": "ann@example.com", "First Name": "Ann"}], tags=["q4"])
    again = [{"Email": "ANN@example.com", "First Name": "Anna"}]
    status = import_and_wait(api, again, conflictAction="overwrite", tags=["vip"])
    rows = list(csv.DictReader(io.StringIO(httpx.get(status["reportURL"]).text)))
    assert rows == [
        {"Email": "ANN@example.com", "First Name": "Anna", "Reason": REASON_IN_STEP},
    ]
    assert import_and_wait(api, again, step="StepA2")["reportURL"] is None
    ann = prospects_by_email(api)["ann@example.com"]
    assert ann["attrs"]["First Name"] == "Anna"
    assert ann["steps"] == ["StepA1", "StepA2"]
    assert ann["tags"] == ["q4", "vip"]


def test_prospects_search_and_paging(api: httpx.Client) -> None:
    people = [
        {"Email": f"p{i}@example.com", "Company": "Acme" if i % 2 else "Globex"} for i in range(5)
    ]
    import_and_wait(api, people, step=None)
    page = api.get("/v1/prospects", params={"page": 3, "pageSize": 2}).json()["payload"]
    assert (page["total"], page["page"], page["pageSize"]) == (5, 3, 2)
    assert [p["email"] for p in page["prospects"]] == ["p4@example.com"]
    assert set(prospects_by_email(api, search="aCmE")) == {"p1@example.com", "p3@example.com"}
    assert set(prospects_by_email(api, search="P2@")) == {"p2@example.com"}
    for params in ({"pageSize": 101}, {"page": 0}, {"pageSize": "ten"}):
        assert api.get("/v1/prospects", params=params).status_code == 400


# -- fields and sequences ------------------------------------------------------------------

SYSTEM_LABELS = [
    "First Name", "Last Name", "Email", "Phone Number", "Company", "Job Title",
    "Website", "LinkedIn URL", "City", "State", "Country",
]  # fmt: skip


def test_fields_with_and_without_system_fields(api: httpx.Client) -> None:
    everything = api.get("/v1/fields", params={"systemFields": "true"}).json()["payload"]
    assert [f["label"] for f in everything] == [*SYSTEM_LABELS, "Lead Source", "Industry"]
    assert all(set(f) == {"id", "label", "fieldType"} for f in everything)
    custom = api.get("/v1/fields").json()["payload"]
    assert [f["label"] for f in custom] == ["Lead Source", "Industry"]


def test_created_field_can_be_imported_into(api: httpx.Client) -> None:
    created = api.post("/v1/fields", json={"label": "Shoe Size", "fieldType": "number"})
    assert created.status_code == 201
    assert created.json()["payload"]["label"] == "Shoe Size"
    assert_400(api.post("/v1/fields", json={"label": "lead SOURCE", "fieldType": "text"}), "exists")
    assert_400(api.post("/v1/fields", json={"label": "Mood", "fieldType": "emoji"}), "fieldType")
    import_and_wait(api, [{"Email": "ann@example.com", "Shoe Size": "38"}], step=None)
    assert prospects_by_email(api)["ann@example.com"]["attrs"]["Shoe Size"] == "38"


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
    assert api.get(f"/v1/prospects/import-status/{request_id}").status_code == 404
    assert [f["label"] for f in api.get("/v1/fields").json()["payload"]] == [
        "Lead Source",
        "Industry",
    ]
    assert len(api.get("/v1/sequences").json()["payload"]) == 3


def test_stop_closes_kept_alive_connections(sandbox_factory: Callable[..., Sandbox]) -> None:
    running = sandbox_factory()
    with client_for(running) as api:
        assert api.get("/v1/sequences").status_code == 200
        running.stop()
        with pytest.raises(httpx.TransportError):
            api.get("/v1/sequences")


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
        "bytes": 0, "fault": "drop-before", "time": 0,
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
    assert (entry["status"], entry["fault"], entry["bytes"] > 0) == (None, "drop-after", True)


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
    code = (
        "from shandy_cli.sandbox import SandboxConfig, serve_forever\n"
        f"serve_forever(SandboxConfig(state_dir={str(tmp_path / 'fg')!r}))\n"
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
