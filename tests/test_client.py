"""The API client over real HTTP: headers, shapes, the error hierarchy, retries."""

from __future__ import annotations

import email.utils
import json
import time
from pathlib import Path

import pytest

from shandy_cli import (
    ApiValidationError,
    AuthenticationError,
    RateLimitError,
    RetryPolicy,
    SaleshandyClient,
    ServerError,
    TransportError,
    __version__,
)
from shandy_cli.client import parse_retry_after
from shandy_cli.sandbox import Sandbox
from tests.conftest import Recorder

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_total=10)


def js(data: object) -> bytes:
    return json.dumps(data).encode()


def test_headers_on_get_and_post(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    rec, url = recorder
    rec.answers = [(200, {}, js({"payload": []})), (201, {}, js({"payload": {"requestId": "r1"}}))]
    body = tmp_path / "body.json"
    body.write_bytes(b'{"prospectList":[]}')
    with SaleshandyClient(url, "key-123", retry=FAST) as client:
        client.list_fields()
        assert client.import_prospects(body, to_step=True) == "r1"
    get, post = rec.seen
    assert get["headers"]["x-api-key"] == "key-123"
    assert "Content-Type" not in get["headers"]  # a GET with one is answered 406
    assert get["headers"]["User-Agent"].startswith(f"shandy/{__version__}")
    assert get["path"] == "/v1/fields?systemFields=true"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Content-Length"] == str(len(body.read_bytes()))
    assert post["body"] == body.read_bytes()
    assert post["path"] == "/v1/sequences/prospects/import-with-field-name"


def test_bare_and_wrapped_status_shapes(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    rec.answers = [
        (200, {}, js({"isCompleted": True, "reportURL": "https://x/r.csv"})),
        (200, {}, js({"message": "ok", "payload": {"isCompleted": False, "reportURL": None}})),
        (200, {}, js({"payload": {"isCompleted": True, "failedProspectsURL": "https://x/f"}})),
    ]
    with SaleshandyClient(url, "k", retry=FAST) as client:
        a, b, c = (client.import_status(x) for x in ("1", "2", "3"))
    assert (a.completed, a.report_url) == (True, "https://x/r.csv")
    assert (b.completed, b.report_url) == (False, None)
    assert c.report_url == "https://x/f"


def test_server_message_is_kept(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    rec.answers = [(400, {}, js({"message": ["property sequenceId should not exist"]}))]
    with SaleshandyClient(url, "k", retry=FAST) as client, pytest.raises(ApiValidationError) as e:
        client.list_sequences()
    assert "sequenceId should not exist" in str(e.value)


def test_auth_errors(sandbox: Sandbox) -> None:
    with SaleshandyClient(sandbox.url, None) as client, pytest.raises(AuthenticationError):
        client.list_fields()


def test_retries_429_and_5xx_then_succeeds(sandbox: Sandbox) -> None:
    sandbox.set_faults(["429", "502", "drop-before"], match="/v1/sequences")
    retried: list[str] = []
    with SaleshandyClient(
        sandbox.url,
        "k",
        retry=FAST,
        on_retry=lambda what, n, d, e: retried.append(type(e).__name__),
    ) as client:
        assert client.list_sequences()
    assert retried == ["RateLimitError", "ServerError", "TransportError"]


def test_retry_after_is_honoured(sandbox: Sandbox) -> None:
    sandbox.set_faults(["429:1"], match="/v1/fields")
    delays: list[float] = []
    slow = RetryPolicy(attempts=3, base_delay=0.01, max_delay=5, max_total=10)
    started = time.monotonic()
    with SaleshandyClient(
        sandbox.url, "k", retry=slow, on_retry=lambda w, n, d, e: delays.append(d)
    ) as client:
        client.list_fields()
    assert len(delays) == 1 and 1.0 <= delays[0] <= 1.3  # what was asked, plus a little jitter
    assert time.monotonic() - started >= 1.0


def test_retries_are_bounded(sandbox: Sandbox) -> None:
    sandbox.set_faults(["503"] * 10, match="/v1/fields")
    client = SaleshandyClient(sandbox.url, "k", retry=FAST, on_retry=None)
    with client, pytest.raises(ServerError):
        client.list_fields()
    assert sum(r["path"].startswith("/v1/fields") for r in sandbox.requests()) == FAST.attempts


def test_rate_limit_error_carries_retry_after(sandbox: Sandbox) -> None:
    sandbox.set_faults(["429:3"], match="/v1/fields")
    policy = RetryPolicy(attempts=1, rate_limit_attempts=1)
    client = SaleshandyClient(sandbox.url, "k", retry=policy)
    with client, pytest.raises(RateLimitError) as info:
        client.list_fields()
    assert info.value.retry_after == 3.0


def test_connection_refused_is_transport_error() -> None:
    client = SaleshandyClient("http://127.0.0.1:9", "k", retry=FAST, on_retry=None)
    with client, pytest.raises(TransportError):
        client.list_fields()


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(future) or 0) <= 31


def test_report_download_keeps_key_on_api_host_only(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    rec, url = recorder
    rec.answers = [(200, {}, b"Email,Reason\n"), (200, {}, b"Email,Reason\n")]
    with SaleshandyClient(url, "secret-key", retry=FAST) as client:
        client.download_report(f"{url}/v1/file?x=1", tmp_path / "a.csv")
        other = url.replace("127.0.0.1", "localhost")  # another host: no key
        client.download_report(f"{other}/file", tmp_path / "b.csv")
    assert rec.seen[0]["headers"].get("x-api-key") == "secret-key"
    assert "x-api-key" not in rec.seen[1]["headers"]
    assert (tmp_path / "a.csv").stat().st_mode & 0o077 == 0


def test_report_url_plain_http_remote_refused(tmp_path: Path) -> None:
    from shandy_cli import ApiError

    with SaleshandyClient("http://127.0.0.1:9", "k") as client, pytest.raises(ApiError):
        client.download_report("http://reports.example.com/x.csv", tmp_path / "r.csv")
