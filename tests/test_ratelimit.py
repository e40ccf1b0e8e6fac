"""Rate limits as live clients see them, the call budget, and errors in the server's words.

Live, Saleshandy answers its rate limit as HTTP 400 ``{"code": 40000, "message":
"Rate Limit exceeded"}`` (or 4000, or a 429), a bad key as 400 ``1001: Invalid
token``, and an unknown request id as 400 ``40000: ... not found``. These tests
script exactly those answers over real HTTP (the ``recorder`` server).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shandy_cli import AuthenticationError, RateLimitError, RetryPolicy, SaleshandyClient
from shandy_cli.errors import ApiValidationError, NotFoundError
from shandy_cli.ratelimit import UNLIMITED, RateBudget, RateLimits, parse_reset
from tests.conftest import Recorder

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_total=10)
FIELDS_OK = (200, {}, json.dumps({"payload": [{"id": "f", "label": "Email"}]}).encode())


def js(data: object) -> bytes:
    return json.dumps(data).encode()


def client_for(url: str, **kwargs: object) -> SaleshandyClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("on_retry", None)
    kwargs.setdefault("rate_limits", UNLIMITED)
    return SaleshandyClient(url, "test-key-1234", **kwargs)  # type: ignore[arg-type]


# -- the reset and Retry-After values, in every plausible format ---------------------------


def test_parse_reset_reads_every_plausible_format() -> None:
    now = 1_800_000_000.0
    assert parse_reset("7", now) == 7.0
    assert parse_reset("0.5", now) == 0.5
    assert parse_reset(str(int(now) + 42), now) == 42.0  # epoch seconds
    assert parse_reset(str(int(now * 1000) + 9_000), now) == pytest.approx(9.0)  # epoch ms
    http_date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_reset(http_date, now) == pytest.approx(30.0)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 12))
    assert parse_reset(iso, now) == pytest.approx(12.0)
    assert parse_reset(iso.replace("Z", "+00:00"), now) == pytest.approx(12.0)
    assert parse_reset(str(int(now) - 5), now) == 0.0  # already past: no wait, never negative
    for junk in (None, "", "soon", "-3", "nan", "inf"):
        assert parse_reset(junk, now) is None


# -- the answer decides, not the status alone -----------------------------------------------


@pytest.mark.parametrize(
    "status,body",
    [
        (400, {"code": 40000, "type": "TOO_MANY_REQUESTS", "message": "Rate Limit exceeded"}),
        (400, {"code": 4000, "message": "Rate Limit exceeded"}),
        (429, {"message": "Too Many Requests"}),
        (403, {"error": "Forbidden", "error_code": "40000", "error_message": "rate limit hit"}),
    ],
)
def test_every_shape_of_rate_limit_is_retried(
    recorder: tuple[Recorder, str], status: int, body: dict[str, object]
) -> None:
    rec, url = recorder
    rec.answers = [(status, {"x-ratelimit-reset": "0"}, js(body)), FIELDS_OK]
    retried: list[str] = []
    hook = lambda what, n, d, e: retried.append(type(e).__name__)  # noqa: E731
    with client_for(url, on_retry=hook) as client:
        assert client.list_fields()[0]["label"] == "Email"
    assert retried == ["RateLimitError"]
    assert len(rec.seen) == 2


def test_import_request_not_found_is_not_a_rate_limit(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    body = {
        "code": 40000,
        "type": "NOT_FOUND",
        "message": "40000: Prospect import request not found",
    }
    rec.answers = [(400, {}, js(body))] * 3
    with client_for(url) as client, pytest.raises(NotFoundError) as info:
        client.import_status("abc123")
    assert len(rec.seen) == 1  # at once: no retry
    assert info.value.exit_code == 2
    assert str(info.value).count("Prospect import request not found") == 1
    assert info.value.code == "40000"


@pytest.mark.parametrize(
    "status,body,said",
    [
        (400, {"code": 1001, "type": "UNAUTHORIZED", "message": "1001: Invalid token"},
         "1001: Invalid token"),
        (401, {"error": "Unauthorized", "error_code": "1001", "error_message": "Invalid token"},
         "1001: Invalid token"),
        (403, {"code": 4003, "message": "4003: You don't have required permissions to perform "
               "this task"}, "4003: You don't have required permissions"),
        (401, {"statusCode": 401, "message": ["Invalid token"]}, "Invalid token"),
    ],
)  # fmt: skip
def test_bad_key_in_every_shape_is_an_authentication_error(
    recorder: tuple[Recorder, str], status: int, body: dict[str, object], said: str
) -> None:
    rec, url = recorder
    rec.answers = [(status, {}, js(body))] * 3
    with client_for(url) as client, pytest.raises(AuthenticationError) as info:
        client.list_fields()
    text = str(info.value)
    assert len(rec.seen) == 1
    assert info.value.exit_code == 3
    assert "SALESHANDY_API_KEY" in text
    assert text.count(said) == 1  # the server's words, once
    assert "1001: 1001" not in text and "test-key-1234" not in text


def test_validation_messages_in_a_list_are_joined_once(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    body = {"statusCode": 400, "message": ["pageSize must be a number", "page must be > 0"]}
    rec.answers = [(400, {}, js(body))]
    with client_for(url) as client, pytest.raises(ApiValidationError) as info:
        client.list_sequences()
    assert "pageSize must be a number; page must be > 0" in str(info.value)
    assert str(info.value).count("GET /v1/sequences") == 1


# -- waits: as long as asked, within the run's bounds ---------------------------------------


def test_a_wait_longer_than_the_backoff_cap_is_honoured(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    limited = {"code": 40000, "message": "Rate Limit exceeded"}
    rec.answers = [(400, {"Retry-After": "2"}, js(limited)), FIELDS_OK]
    capped = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.1, max_total=10)
    delays: list[float] = []
    started = time.monotonic()
    with client_for(url, retry=capped, on_retry=lambda w, n, d, e: delays.append(d)) as client:
        client.list_fields()
    assert delays and delays[0] >= 2.0  # not cut to max_delay
    assert time.monotonic() - started >= 2.0


def test_a_limit_that_does_not_clear_in_bounds_raises_rate_limit(
    recorder: tuple[Recorder, str],
) -> None:
    rec, url = recorder
    limited = (
        400,
        {"x-ratelimit-reset": "1"},
        js({"code": 40000, "message": "Rate Limit exceeded"}),
    )
    rec.answers = [limited] * 10
    bounded = RetryPolicy(max_total=2.5, rate_limit_attempts=10)
    with client_for(url, retry=bounded) as client, pytest.raises(RateLimitError) as info:
        client.list_fields()
    assert info.value.exit_code == 4
    assert 2 <= len(rec.seen) <= 4  # waited ~1 s between, stopped at the bound
    assert "still limited" in str(info.value)


def test_budget_tightens_from_the_servers_headers(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    rec.answers = [
        (200, {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0",
               "x-ratelimit-reset": "1"}, js({"payload": []})),
        (200, {}, js({"payload": []})),
    ]  # fmt: skip
    waits: list[float] = []
    with client_for(url, on_wait=lambda e, s: waits.append(s)) as client:
        client.list_fields()
        started = time.monotonic()
        client.list_fields()  # nothing left until the reset: the client waits, not the server
    assert time.monotonic() - started >= 0.9
    assert waits and 0.5 <= waits[0] <= 1.1
    assert len(rec.seen) == 2


def test_sequences_are_paged_until_an_empty_page(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    page = lambda a, b: js({"payload": [{"id": f"s{i}", "title": f"T{i}"} for i in range(a, b)]})  # noqa: E731
    # A server that caps pageSize at 100 whatever was asked: a short page is not the end.
    rec.answers = [(200, {}, page(0, 100)), (200, {}, page(100, 200)), (200, {}, page(200, 230)),
                   (200, {}, page(0, 0))]  # fmt: skip
    with client_for(url) as client:
        found = client.list_sequences()
    assert [s["id"] for s in found] == [f"s{i}" for i in range(230)]
    assert [r["path"].split("page=")[1].split("&")[0] for r in rec.seen] == ["1", "2", "3", "4"]
    assert all("pageSize=1000" in r["path"] for r in rec.seen)


def test_paging_stops_when_the_server_ignores_page(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    same = (200, {}, js({"payload": [{"id": "s1", "title": "Only"}]}))
    rec.answers = [same] * 5
    with client_for(url) as client:
        assert [s["id"] for s in client.list_sequences()] == ["s1"]
    assert len(rec.seen) == 2


# -- the budget itself, on a fake clock ------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


def make_budget(limits: RateLimits) -> tuple[RateBudget, FakeClock]:
    clock = FakeClock()
    return RateBudget(limits, clock=clock, sleep=clock.sleep), clock


def test_budget_waits_for_the_oldest_call_to_leave_the_window() -> None:
    budget, clock = make_budget(RateLimits(per_endpoint=3, total=100, window=60))
    for _ in range(3):
        budget.acquire("GET /a")
        budget.done("GET /a")
        clock.now += 1
    assert budget.delay("GET /a") == pytest.approx(57.0)
    assert budget.delay("GET /b") == 0.0  # another endpoint has its own budget
    budget.acquire("GET /a")
    assert clock.now == pytest.approx(1060.0)


def test_share_keeps_part_of_the_budget_free() -> None:
    budget, _ = make_budget(RateLimits(per_endpoint=20, total=300, window=60))
    for _ in range(15):
        budget.acquire("GET /s", share=0.75)
        budget.done("GET /s")
    assert budget.delay("GET /s", share=0.75) > 0
    assert budget.delay("GET /s") == 0.0  # a full-share call still fits


def test_block_after_a_rate_limit_answer() -> None:
    budget, _ = make_budget(RateLimits())
    budget.block("POST /x", 12)
    assert budget.delay("POST /x") == pytest.approx(12.0)
    assert budget.delay("GET /y") == 0.0


calls = st.lists(
    st.tuples(st.sampled_from(["GET /a", "GET /b", "POST /c"]), st.floats(0, 5)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(calls=calls, per=st.integers(1, 8), total=st.integers(1, 20))
def test_no_window_ever_holds_more_calls_than_allowed(
    calls: list[tuple[str, float]], per: int, total: int
) -> None:
    """Whatever the mix and spacing of calls, the budget keeps every sliding window in limits."""
    window = 10.0
    budget, clock = make_budget(RateLimits(per_endpoint=per, total=total, window=window))
    made: list[tuple[str, float]] = []
    for endpoint, gap in calls:
        clock.now += gap
        budget.acquire(endpoint)
        clock.now += 0.01  # the answer takes a moment
        budget.done(endpoint)
        made.append((endpoint, clock.now))
    for limit, key in ((per, lambda e: e), (total, lambda e: "all")):
        by_key: dict[str, deque[float]] = {}
        for endpoint, at in made:
            times = by_key.setdefault(key(endpoint), deque())
            while times and times[0] <= at - window:
                times.popleft()
            times.append(at)
            assert len(times) <= limit


def test_a_503_with_retry_after_is_retried_after_that_wait(recorder: tuple[Recorder, str]) -> None:
    rec, url = recorder
    rec.answers = [(503, {"Retry-After": "1"}, b"busy"), FIELDS_OK]
    delays: list[float] = []
    patient = RetryPolicy(attempts=3, base_delay=0.01, max_delay=5, max_total=10)
    with client_for(url, retry=patient, on_retry=lambda w, n, d, e: delays.append(d)) as client:
        client.list_fields()
    assert delays == [1.0]  # not the 0.01 s backoff: the server said how long
