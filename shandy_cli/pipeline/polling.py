"""Stage 6: wait for Saleshandy to finish processing each accepted request.

Every status call counts against the key's rate limit (about 20 a minute per
endpoint, live), and a Saleshandy QA harness that polled every 3 s tripped it.
So the poller spends a small, fixed part of the budget whatever the number of
chunks: it waits before the first poll, then polls **one** pending request per
tick, the oldest first — Saleshandy processes a key's imports one after another,
so the oldest is the one that finishes next. A completion moves it on to the
next request at once; a request still pending makes the tick grow (up to
``MAX_INTERVAL``). Every request is polled until it is seen completed, so no
completion goes unnoticed, and status calls may use only ``POLL_SHARE`` of the
status endpoint's budget.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from shandy_cli.client import STATUS_ENDPOINT, ImportStatus, SaleshandyClient
from shandy_cli.errors import ImportTimeout

FIRST_INTERVAL = 3.0  # seconds before the first poll, and the tick it starts from
MAX_INTERVAL = 15.0
GROWTH = 1.5
POLL_SHARE = 0.75  # of the status endpoint's budget: the rest stays free for other calls


class Poller:
    """Polls accepted requests, oldest first, one per tick; feed it with ``add``.

    ``run_until`` polls until every request completed or a deadline passed, so a
    run can also use time it must wait anyway (for the import endpoint's budget)
    to notice completions.
    """

    def __init__(
        self,
        client: SaleshandyClient,
        *,
        interval: float = FIRST_INTERVAL,
        on_status: Callable[[ImportStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        share: float = POLL_SHARE,
        first_delay: float | None = None,
    ) -> None:
        """``first_delay``: before the first poll (default ``interval``: a request just
        sent is not done yet; ``shandy status`` of an earlier one asks at once)."""
        self.client = client
        self.first_delay = interval if first_delay is None else first_delay
        self.base_interval = interval
        self.on_status = on_status
        self.share = share
        self._clock = clock
        self._sleep = sleep
        self.pending: deque[str] = deque()
        self.latest: dict[str, ImportStatus] = {}
        self.polls = 0
        self._interval = interval
        self._next: float | None = None

    def add(self, request_id: str) -> None:
        if request_id in self.latest or request_id in self.pending:
            return
        self.pending.append(request_id)
        if self._next is None:  # the first poll waits: nothing finishes the moment it is sent
            self._next = self._clock() + self.first_delay

    def run_until(self, deadline: float | None) -> None:
        """Poll as ticks fall due until nothing is pending or ``deadline`` (monotonic) passed."""
        while self.pending:
            now = self._clock()
            budget = self.client.budget.delay(STATUS_ENDPOINT, self.share)
            if budget > self.client.retry.max_total:
                self.poll_once()  # the client raises: a limit that will not clear in bounds
            due = self._due_in(now)
            wait = max(due, budget)
            if deadline is not None and now + wait > deadline:
                if deadline > now:
                    self._sleep(deadline - now)
                return
            if wait > 0:
                if budget > due and self.client.on_wait:  # a wait for the budget is said
                    self.client.on_wait(STATUS_ENDPOINT, budget)
                self._sleep(wait)
            try:
                self.poll_once(deadline)
            except ImportTimeout:
                return  # a retry would outlast the deadline: still pending, as a timeout says

    def _due_in(self, now: float) -> float:
        return 0.0 if self._next is None else max(0.0, self._next - now)

    def poll_once(self, deadline: float | None = None) -> ImportStatus:
        """Ask about the oldest pending request, now; returns its status. A retry that
        would wait past ``deadline`` raises ``ImportTimeout``."""
        request_id = self.pending[0]
        status = self.client.import_status(request_id, share=self.share, deadline=deadline)
        self.polls += 1
        if self.on_status and self.latest.get(request_id) != status:
            self.on_status(status)
        self.latest[request_id] = status
        now = self._clock()
        if status.completed:
            self.pending.popleft()
            self._interval = self.base_interval
            self._next = now  # the next one was queued behind it: likely done too
        else:
            self._next = now + self._interval
            self._interval = min(MAX_INTERVAL, self._interval * GROWTH)
        return status


def poll_until_done(
    client: SaleshandyClient,
    request_ids: Iterable[str],
    *,
    timeout: float | None = None,
    first_interval: float = FIRST_INTERVAL,
    on_status: Callable[[ImportStatus], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    first_delay: float | None = None,
) -> dict[str, ImportStatus]:
    """Poll every id (oldest first, one per tick) until all completed or ``timeout`` passed.

    Returns the last status of every id; those not seen completed in time are
    returned with ``completed=False``.
    """
    poller = Poller(
        client, interval=first_interval, on_status=on_status, sleep=sleep, first_delay=first_delay
    )
    for request_id in request_ids:
        poller.add(request_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    poller.run_until(deadline)
    waiting = {rid: ImportStatus(rid, False, None) for rid in poller.pending}
    return {**waiting, **poller.latest}
