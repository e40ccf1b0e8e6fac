"""Issue 13, named things: ``ImportResult.raise_for_status()`` raises the exception of each
exit code, and errors carry their context (the request, the chunk) as attributes, said
once in ``str(exc)`` (the request prefix was once printed twice).

Every run is real: ``import_files`` against the sandbox over loopback HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shandy_cli import SaleshandyClient, import_files
from shandy_cli.client import NO_RETRY, RetryPolicy, retry_text
from shandy_cli.errors import (
    ApiError,
    AuthenticationError,
    Hangup,
    ImportTimeout,
    InputError,
    Interrupted,
    RateLimitError,
    RowsFailed,
    ServerError,
    ShandyError,
    Terminated,
)
from shandy_cli.exits import ExitCode
from shandy_cli.pipeline.events import ChunkEvent
from shandy_cli.pipeline.outcome import ended_exit_code, journal_outcome
from shandy_cli.pipeline.results import ImportResult
from shandy_cli.sandbox import Sandbox, SandboxConfig, start_sandbox
from shandy_cli.status import StatusResult, check_status
from tests.test_import import HEADER, leads, write_csv

IMPORT_PATH = "/v1/sequences/prospects/import-with-field-name"
POST = f"POST {IMPORT_PATH}"


def run_import(
    url: str,
    tmp_path: Path,
    rows: list[list[str]],
    *,
    key: str = "test-key",
    retry: RetryPolicy | None = None,
    **options: Any,
) -> ImportResult:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = write_csv(tmp_path / "leads.csv", HEADER, rows)
    options.setdefault("poll_interval", 0.05)
    options.setdefault("timeout", 30)
    with SaleshandyClient(url, key, retry=retry, on_retry=None) as client:
        return import_files(
            [str(src)], client=client, state_dir=tmp_path / "state", step_id="StepA1", **options
        )


def raised(result: ImportResult) -> ShandyError:
    with pytest.raises(ShandyError) as info:
        result.raise_for_status()
    assert info.value.result is result
    assert info.value.exit_code == result.exit_code
    return info.value


def stop_on_accept(signal_exc: Callable[[], KeyboardInterrupt]) -> Callable[[object], None]:
    """A listener that stops the run as a signal would, as the second chunk is about to go
    (the first accepted)."""

    def listener(event: object) -> None:
        if isinstance(event, ChunkEvent) and (event.index, event.state) == (1, "sending"):
            raise signal_exc()

    return listener


# -- raise_for_status, one real run per exit code ------------------------------------------


def test_exit_0_raises_nothing_and_returns_the_result(sandbox: Sandbox, tmp_path: Path) -> None:
    result = run_import(sandbox.url, tmp_path, leads(3))
    assert result.exit_code == 0
    assert result.raise_for_status() is result


def test_exit_1_raises_rows_failed_naming_the_counts(sandbox: Sandbox, tmp_path: Path) -> None:
    rows = [*leads(3), ["Bad", "Row", "not-an-email", "Co"]]
    result = run_import(sandbox.url, tmp_path, rows)
    error = raised(result)
    assert type(error) is RowsFailed and error.exit_code == ExitCode.ROWS_FAILED
    assert (error.rows_rejected, error.rows_failed, error.rows_already_present) == (1, 0, 0)
    assert str(error).startswith("1 rejected here of 4 row(s) read (listed in ")
    assert str(result.rejects_file) in str(error)


def test_exit_1_counts_already_present_rows_only_when_they_fail(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    run_import(sandbox.url, tmp_path / "a", leads(2))  # both now in the sequence
    result = run_import(sandbox.url, tmp_path / "b", leads(3), conflict="overwrite")
    error = raised(result)
    assert type(error) is RowsFailed
    assert (error.rows_rejected, error.rows_failed, error.rows_already_present) == (0, 0, 2)
    assert "2 already in the sequence, not updated (--conflict overwrite)" in str(error)


def test_exit_2_raises_the_input_error_the_run_stopped_on(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        import_files([str(tmp_path / "missing.csv")], state_dir=tmp_path / "state", dry_run=True)
    result = info.value.import_result  # type: ignore[attr-defined]
    assert info.value.result is result and result.exit_code == ExitCode.USAGE
    assert raised(result) is info.value


def test_exit_3_raises_authentication_error(tmp_path: Path) -> None:
    config = SandboxConfig(tmp_path / "sb", api_key="the-right-key", delay_base=0.05)
    with start_sandbox(config) as sandbox, pytest.raises(AuthenticationError) as info:
        run_import(sandbox.url, tmp_path, leads(2), key="a-wrong-key")
    result = info.value.result
    assert isinstance(result, ImportResult) and result.exit_code == ExitCode.AUTH
    assert raised(result) is info.value
    assert info.value.request == "GET /v1/fields"
    assert str(info.value).count("GET /v1/fields") == 1


def test_exit_4_after_sending_raises_api_error_with_the_chunk(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_faults(["ok", "502"], match=IMPORT_PATH)
    result = run_import(sandbox.url, tmp_path, leads(4), retry=NO_RETRY, max_rows=2)
    assert result.exit_code == ExitCode.API and result.chunks_sent == 1
    error = raised(result)
    assert isinstance(error, ApiError) and type(error) is not ServerError
    assert str(error).startswith(f"chunk 2: {POST}: HTTP 502: ")
    assert str(error).count(POST) == 1


def test_exit_5_raises_import_timeout(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(delay_base=30.0)
    result = run_import(sandbox.url, tmp_path, leads(2), timeout=0.3)
    assert result.exit_code == ExitCode.TIMEOUT
    error = raised(result)
    assert type(error) is ImportTimeout
    assert str(error).startswith("--timeout passed while Saleshandy was still processing")


@pytest.mark.parametrize(
    ("signal_exc", "code"),
    [(KeyboardInterrupt, 130), (Terminated, 143), (Hangup, 129)],
)
def test_a_signal_raises_interrupted_with_its_code(
    sandbox: Sandbox, tmp_path: Path, signal_exc: Callable[[], KeyboardInterrupt], code: int
) -> None:
    result = run_import(
        sandbox.url, tmp_path, leads(4), max_rows=2, listener=stop_on_accept(signal_exc)
    )
    assert result.exit_code == code and result.chunks_sent == 1
    error = raised(result)
    assert type(error) is Interrupted and error.exit_code == code
    assert str(error).startswith("interrupted after 1 of 2 chunk(s) were accepted")


# -- context as attributes, said once ------------------------------------------------------


def test_a_502_names_its_request_once_in_the_error_and_every_retry_line(
    sandbox: Sandbox,
) -> None:
    """The defect: ``GET /v1/fields: GET /v1/fields: HTTP 502``."""
    sandbox.set_faults(["502", "502", "502"], match="/v1/fields")
    lines: list[str] = []

    def on_retry(what: str, attempt: int, delay: float, error: ApiError) -> None:
        lines.append(retry_text(what, attempt, delay, error))

    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    client = SaleshandyClient(sandbox.url, "k", retry=policy, on_retry=on_retry)
    with client, pytest.raises(ServerError) as info:
        client.list_fields()
    error = info.value
    assert (error.request, error.status_code, error.chunk) == ("GET /v1/fields", 502, None)
    assert str(error) == error.message == "GET /v1/fields: HTTP 502: 502 Bad Gateway"
    assert error.detail == "HTTP 502: 502 Bad Gateway"
    assert [line.split(";")[0] for line in lines] == [str(error)] * 2
    assert all(line.count("GET /v1/fields") == 1 for line in lines)


def test_a_refused_first_post_is_raised_with_its_chunk_and_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.set_faults(["rl400"], match=IMPORT_PATH)
    with pytest.raises(RateLimitError) as info:
        run_import(sandbox.url, tmp_path, leads(2), retry=NO_RETRY)
    error = info.value
    assert (error.chunk, error.request) == (1, POST)
    assert error.attempts == 1  # the retries gave up: said once, after the words
    assert str(error) == (
        f"chunk 1: {POST}: HTTP 400: Rate Limit exceeded (still limited after 1 attempt(s) "
        "over 0s; Saleshandy allows about 20 calls a minute per endpoint)"
    )


def test_an_error_naming_another_request_than_the_call_is_said_once() -> None:
    """A budget refusal names the endpoint's template, not the call's path: guessing by
    prefix (the old way) said both, ``GET .../abc: GET .../{id}: ...``."""
    error = RateLimitError(
        "the API's rate limit allows the next call in 900s",
        status_code=0,
        request="GET /v1/prospects/import-status/{id}",
    )
    line = retry_text("GET /v1/prospects/import-status/abc", 1, 2.0, error)
    assert line == (
        "GET /v1/prospects/import-status/{id}: the API's rate limit allows the next call in "
        "900s; retry 1 in 2.0s"
    )


def test_an_error_without_a_request_is_prefixed_by_the_retry_line() -> None:
    error = ServerError("HTTP 503: busy")
    assert retry_text("GET /v1/x", 1, 0.5, error) == "GET /v1/x: HTTP 503: busy; retry 1 in 0.5s"
    error.request = "GET /v1/x"
    assert retry_text("GET /v1/x", 1, 0.5, error) == "GET /v1/x: HTTP 503: busy; retry 1 in 0.5s"


def test_input_error_context_is_composed_once() -> None:
    error = InputError("bad value", file="leads.csv", row=3, column="Email")
    assert str(error) == "leads.csv, row 3, column 'Email': bad value"
    assert (error.reason, error.detail) == ("bad value", "bad value")


# -- status: one result object, its exit code decided where import's is -------------------


def status_of(url: str, tmp_path: Path, ids: list[str], **kwargs: Any) -> StatusResult:
    kwargs.setdefault("poll_interval", 0.05)
    with SaleshandyClient(url, "test-key", on_retry=None) as client:
        return check_status(ids, client=client, state_dir=tmp_path / "state", **kwargs)


def test_status_result_of_completed_requests(sandbox: Sandbox, tmp_path: Path) -> None:
    result = run_import(sandbox.url, tmp_path, leads(4), wait=False, max_rows=2)
    ids = result.request_ids
    status = status_of(sandbox.url, tmp_path, ids, wait=True, timeout=20)
    assert (status.exit_code, status.pending, status.error, len(status)) == (0, [], None, 2)
    assert [r.request_id for r in status] == ids and status[0] is status.requests[0]
    assert status.to_dict() == [r.to_dict() for r in status.requests]
    assert [d["failed_rows"] for d in json.loads(status.to_json())] == [0, 0]


def test_status_exit_1_when_already_present_rows_fail(sandbox: Sandbox, tmp_path: Path) -> None:
    run_import(sandbox.url, tmp_path / "a", leads(2))
    result = run_import(sandbox.url, tmp_path, leads(3), wait=False, conflict="overwrite")
    status = status_of(sandbox.url, tmp_path, result.request_ids, wait=True, timeout=20)
    assert [r.already_present_rows for r in status] == [2]
    assert status.exit_code == ExitCode.ROWS_FAILED and status.error is None


def test_status_exit_5_when_the_wait_runs_out(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(delay_base=30.0)
    result = run_import(sandbox.url, tmp_path, leads(2), wait=False)
    [rid] = result.request_ids
    status = status_of(sandbox.url, tmp_path, [rid], wait=True, timeout=0.3)
    assert status.pending == [rid] and status.exit_code == ExitCode.TIMEOUT
    assert status.error == f"--timeout passed; still processing: {rid}"
    unwaited = status_of(sandbox.url, tmp_path, [rid])  # not waiting: still processing is 0
    assert unwaited.pending == [rid] and unwaited.exit_code == ExitCode.OK


# -- the one rule of how a run (or status's requests) ends ---------------------------------


@pytest.mark.parametrize(
    ("finished", "pending", "error_code", "expected"),
    [
        ([], False, None, ExitCode.OK),
        ([ExitCode.OK, ExitCode.ROWS_FAILED], False, None, ExitCode.ROWS_FAILED),
        ([ExitCode.ROWS_FAILED], True, None, ExitCode.TIMEOUT),  # still processing wins
        ([ExitCode.OK], True, ExitCode.AUTH, ExitCode.AUTH),  # the error that ended it wins
        ([ExitCode.OK], False, 0, ExitCode.API),  # an error with no code: resumable
        ([ExitCode.OK], False, ExitCode.TERMINATED, ExitCode.TERMINATED),
    ],
)
def test_ended_exit_code(
    finished: list[int], pending: bool, error_code: int | None, expected: ExitCode
) -> None:
    assert ended_exit_code(finished, pending=pending, error_code=error_code) is expected


@pytest.mark.parametrize(
    ("exit_code", "error", "completed", "chunks", "expected"),
    [
        (ExitCode.INTERRUPTED, True, False, 2, "interrupted"),
        (ExitCode.HANGUP, True, False, 2, "interrupted"),
        (ExitCode.API, True, False, 2, "failed"),
        (ExitCode.ROWS_FAILED, False, True, 2, "completed"),
        (ExitCode.OK, False, False, 0, "completed"),  # nothing to send
        (ExitCode.TIMEOUT, False, False, 2, "processing"),
    ],
)
def test_journal_outcome(
    exit_code: int, error: bool, completed: bool, chunks: int, expected: str
) -> None:
    got = journal_outcome(exit_code=exit_code, error=error, completed=completed, chunks=chunks)
    assert got == expected
