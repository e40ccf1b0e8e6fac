"""A whole import against the API as live clients see it: paced, polled sparingly, honest exits.

Over real HTTP to the sandbox. Where a test needs the limits small enough to
meet in seconds, the client is given a short window; the sandbox's own limits
(the live ones) stay as they are.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shandy_cli import ImportResult, InputError, RetryPolicy, SaleshandyClient, import_files
from shandy_cli.pipeline.events import Event, Notice
from shandy_cli.pipeline.submission import resolve_step
from shandy_cli.ratelimit import RateLimits
from shandy_cli.sandbox import Sandbox
from tests.test_import import HEADER, leads, write_csv

STATUS = "/v1/prospects/import-status/"


def status_calls(sandbox: Sandbox) -> list[str]:
    """The request id of every status call, in the order the sandbox saw them."""
    return [r["path"][len(STATUS) :] for r in sandbox.requests() if r["path"].startswith(STATUS)]


def run(
    sandbox: Sandbox,
    tmp_path: Path,
    rows: int,
    *,
    limits: RateLimits | None = None,
    listener: object = None,
    **options: object,
) -> ImportResult:
    src = write_csv(tmp_path / "leads.csv", HEADER, leads(rows))
    options.setdefault("poll_interval", 0.05)
    options.setdefault("timeout", 60)
    with SaleshandyClient(sandbox.url, "test-key", rate_limits=limits) as client:
        return import_files(
            [str(src)], client=client, state_dir=tmp_path / "state",
            listener=listener or (lambda e: None), **options,
        )  # fmt: skip


def test_polls_one_request_per_tick_oldest_first(sandbox_factory, tmp_path: Path) -> None:
    # Each import takes a while, so polls see pending ones; limits high enough that the
    # test's quick ticks (0.05 s) are not slowed by the budget: this is about order.
    sandbox = sandbox_factory(delay_base=0.3, rate_per_endpoint=200)
    fast = RateLimits(per_endpoint=200, total=300)
    result = run(sandbox, tmp_path, 40, step_id="StepA1", max_rows=10, limits=fast)
    assert result.exit_code == 0 and len(result.chunks) == 4
    order = {c.request_id: c.index for c in result.chunks}
    polled = [order[rid] for rid in status_calls(sandbox)]
    assert polled == sorted(polled)  # oldest first: never back to an earlier chunk
    assert set(polled) == {0, 1, 2, 3}  # and every completion was seen


def test_while_the_import_endpoint_waits_accepted_chunks_are_polled(
    sandbox_factory, tmp_path: Path
) -> None:
    # The live limits scaled down, the same on both sides: 2 calls per endpoint per 1.5 s
    # (a wait under 1 s is not said, so no shorter).
    sandbox = sandbox_factory(rate_per_endpoint=2, rate_total=100, rate_window=1.5)
    events: list[Event] = []
    tight = RateLimits(per_endpoint=2, total=100, window=1.5)
    result = run(
        sandbox, tmp_path, 40, step_id="StepA1", max_rows=10, limits=tight, listener=events.append
    )
    assert result.exit_code == 0 and result.completed
    assert not any(r["limited"] for r in sandbox.requests())  # paced: never refused
    kinds = [
        "poll" if r["path"].startswith(STATUS) else "post"
        for r in sandbox.requests()
        if r["method"] == "POST" or r["path"].startswith(STATUS)
    ]
    first_post_after_wait = kinds.index("post", kinds.index("post", kinds.index("post") + 1) + 1)
    assert "poll" in kinds[:first_post_after_wait]  # polled before the third POST went out
    waits = [e.text for e in events if isinstance(e, Notice) and "rate limit" in e.text]
    assert waits and "polling accepted chunks meanwhile" in " ".join(waits)


def test_an_error_after_sending_is_exit_4_never_2(sandbox: Sandbox, tmp_path: Path) -> None:
    """The sandbox forgets the import once it is accepted: polling finds "not found",
    which before anything was sent would be exit 2; after, it must be 4 (resumable)."""

    def forget(event: Event) -> None:
        if getattr(event, "state", None) == "accepted":
            sandbox.reset()

    result = run(sandbox, tmp_path, 5, step_id="StepA1", listener=forget)
    assert result.exit_code == 4
    assert result.error and "not found" in result.error.lower()
    assert "shandy resume" in result.error
    assert result.request_ids  # the chunk was accepted: the journal still knows it


def test_a_rate_limited_post_is_no_resend(sandbox: Sandbox, tmp_path: Path) -> None:
    """A POST refused with the rate limit delivered nothing: its retry is the chunk's first
    delivery, so a prospect already in the sequence is still reported as such."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run(sandbox, tmp_path / "a", 1, step_id="StepA1")
    assert first.exit_code == 0
    sandbox.set_faults(["429:0"], match="/v1/sequences/prospects/import-with-field-name")
    again = run(sandbox, tmp_path / "b", 3, step_id="StepA1", conflict="overwrite")
    assert again.chunks_resent == []
    assert again.rows_already_present == 1 and again.exit_code == 1
    assert [r["fault"] for r in sandbox.requests() if r["method"] == "POST"][-2:] == ["429:0", None]


# -- issue 11's "done when", under the sandbox's default (live) limits -------------------------

WINDOW = 60.0


def busiest_minute(times: list[float]) -> int:
    """The most calls any sliding minute held."""
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - WINDOW:
            start += 1
        best = max(best, end - start + 1)
    return best


def per_endpoint_minutes(sandbox: Sandbox) -> dict[str, int]:
    """The busiest minute of each rate-limited endpoint (the report link is presigned: not one)."""
    by: dict[str, list[float]] = {}
    for r in sandbox.requests():
        if r.get("endpoint") and "/import-prospect/file" not in r["endpoint"]:
            by.setdefault(r["endpoint"], []).append(r["time"])
    return {endpoint: busiest_minute(times) for endpoint, times in by.items()}


def write_big(path: Path, n: int) -> tuple[int, int, set[str]]:
    """``n`` rows with a LinkedIn URL and a typed number column; some rejected here, some
    (internationalised domains, which the sandbox refuses) failed by Saleshandy."""
    bad_number = bad_email = 0
    idn: set[str] = set()
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["First Name", "Email", "Company", "LinkedIn URL", "Deal Size"])
        for i in range(n):
            email, size = f"person{i}@example.com", str(i % 5000)
            if i % 1000 == 999:
                size, bad_number = "twelve", bad_number + 1
            elif i % 1500 == 1498:
                email, bad_email = f"broken{i}", bad_email + 1
            elif i % 2000 == 1997:
                email = f"anna{i}@bücher.de"
                idn.add(email)
            w.writerow([f"N{i}", email, f"Co {i}", f"https://linkedin.com/in/p{i}", size])
    return bad_number, bad_email, idn


def cli(*args: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    base.update({"SHANDY_STATE_DIR": str(tmp_path / "state"), **env})
    return subprocess.run(
        [sys.executable, "-m", "shandy_cli", *args], capture_output=True, text=True,
        env=base, cwd=tmp_path, timeout=240,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_60k_rows_in_24_chunks_under_live_limits(sandbox_factory, tmp_path: Path) -> None:
    sandbox = sandbox_factory(extra_sequences=1100)  # "Outbound Q4" on page 2 even at 1000
    env = {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": "live-like-key-0001"}
    big = tmp_path / "big.csv"
    bad_number, bad_email, idn = write_big(big, 60_000)
    done = cli("import", str(big), "--sequence", "Outbound Q4", "--max-rows", "2500", "--json",
               tmp_path=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["step_id"] == "StepA1"
    assert result["rows_read"] == 60_000
    assert result["rows_rejected"] == bad_number + bad_email
    assert len(result["chunks"]) == 24
    assert result["rows_failed"] == len(idn) and result["rows_already_present"] == 0
    assert all(c["state"] == "completed" for c in result["chunks"])
    log = sandbox.requests()
    assert not any(r.get("limited") for r in log), "a call was answered with the rate limit"
    posts = [r for r in log if r["method"] == "POST"]
    assert len(posts) == 24  # every valid row accepted once: one POST per chunk, no repeat
    busiest = per_endpoint_minutes(sandbox)
    assert max(busiest.values()) <= 20, busiest
    with open(result["failures_file"], newline="", encoding="utf-8") as fh:
        failures = list(csv.DictReader(fh))
    server = [f for f in failures if f["Email"] in idn]
    assert len(server) == len(idn)
    for row in server:  # joined back to the source row, with its original columns
        i = int(row["_row"]) - 1
        assert row["LinkedIn URL"] == f"https://linkedin.com/in/p{i}"
        assert row["Email"] == f"anna{i}@bücher.de"

    # The same prospects, into another step of the same sequence: already present.
    landed = tmp_path / "landed.csv"
    with big.open(newline="", encoding="utf-8") as src, landed.open("w", newline="") as out:
        reader, writer = csv.reader(src), csv.writer(out)
        writer.writerow(next(reader))
        failed = {f["Email"] for f in failures}
        writer.writerows(r for r in reader if r[1] not in failed)
    again = cli("import", str(landed), "--step", "StepA2", "--json", tmp_path=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    landed_rows = 60_000 - bad_number - bad_email - len(idn)
    assert second["rows_already_present"] == second["rows_submitted"] == landed_rows
    assert second["rows_failed"] == 0

    guarded = sandbox_factory(api_key="the-right-key-123")
    bad = cli("fields", tmp_path=tmp_path,
              env={"SALESHANDY_BASE_URL": guarded.url, "SALESHANDY_API_KEY": "wrong-key-4567"})  # fmt: skip
    assert bad.returncode == 3
    assert "SALESHANDY_API_KEY" in bad.stderr and bad.stderr.count("Invalid token") == 1


def test_sequences_are_paged_and_a_name_on_any_page_is_found(sandbox_factory) -> None:
    sandbox = sandbox_factory(extra_sequences=150)
    with SaleshandyClient(sandbox.url, "test-key") as client:
        client.sequence_page_size = 100  # the API's default page: "Outbound Q4" is on page 2
        everything = client.list_sequences()
        assert len(everything) == 153
        assert [s["id"] for s in everything].index("seqOutQ4") == 150
        assert resolve_step(client, "seqOutQ4", 2) == "StepA2"  # an id: no name filter helps
        assert resolve_step(client, "Outbound Q4") == "StepA1"  # exact title beats "... EMEA"
        with pytest.raises(InputError) as info:
            resolve_step(client, "Campaign 1")  # Campaign 100 on page 1, 101-150 on page 2
    assert "matches 51 sequences" in str(info.value)
    assert "'Campaign 100'" in str(info.value) and "'Campaign 150'" in str(info.value)


def test_a_rate_limit_that_does_not_clear_is_exit_4_and_resumes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Every status call answered "Rate Limit exceeded" (HTTP 400, as live) beyond the
    run's bound: exit 4, never 2 — the chunks were sent — and the same command later
    finishes the run without sending them again."""
    sandbox.set_faults(["rl400:1"] * 50, match=STATUS)
    src = write_csv(tmp_path / "leads.csv", HEADER, leads(20))
    bounded = RetryPolicy(max_total=2.0, rate_limit_attempts=20)
    with SaleshandyClient(sandbox.url, "test-key", retry=bounded, on_retry=None) as client:
        first = import_files([str(src)], client=client, state_dir=tmp_path / "state",
                             step_id="StepA1", max_rows=10, poll_interval=0.05)  # fmt: skip
    assert first.exit_code == 4
    assert first.error and "Rate Limit exceeded" in first.error and "resume" in first.error
    assert len(first.request_ids) == 2
    sandbox.set_faults()
    with SaleshandyClient(sandbox.url, "test-key") as client:
        again = import_files([str(src)], client=client, state_dir=tmp_path / "state",
                             step_id="StepA1", max_rows=10, poll_interval=0.05)  # fmt: skip
    assert again.exit_code == 0 and again.resumed and again.chunks_sent == 0
    assert sum(1 for r in sandbox.requests() if r["method"] == "POST") == 2


def test_status_of_an_unknown_request_is_a_clear_error_at_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": "live-like-key-0001"}
    done = cli("status", "nosuchrequest", "--wait", tmp_path=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.count("40000: Prospect import request not found") == 1
    assert "retry" not in done.stderr and "Traceback" not in done.stderr
    assert len(status_calls(sandbox)) == 1  # told apart from the rate limit: not retried


def test_sequences_command_lists_every_page(sandbox_factory, tmp_path: Path) -> None:
    sandbox = sandbox_factory(extra_sequences=1100)
    env = {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": "live-like-key-0001"}
    done = cli("sequences", "--json", tmp_path=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert len(listed) == 1103 and listed[-3]["id"] == "seqOutQ4"
