"""A whole import against the API as live clients see it: paced, polled sparingly, honest exits.

Over real HTTP to the sandbox. Where a test needs the limits small enough to
meet in seconds, the client is given a short window; the sandbox's own limits
(the live ones) stay as they are.
"""

from __future__ import annotations

from pathlib import Path

from shandy_cli import ImportResult, SaleshandyClient, import_files
from shandy_cli.pipeline.events import Event, Notice
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
    sandbox: Sandbox, tmp_path: Path
) -> None:
    events: list[Event] = []
    tight = RateLimits(per_endpoint=2, total=100, window=1.5)
    result = run(
        sandbox, tmp_path, 40, step_id="StepA1", max_rows=10, limits=tight, listener=events.append
    )
    assert result.exit_code == 0 and result.completed
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
