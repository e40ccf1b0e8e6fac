"""Stage 6: wait for Saleshandy to finish processing each accepted request."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from shandy_cli.client import ImportStatus, SaleshandyClient

FIRST_INTERVAL = 1.0
MAX_INTERVAL = 15.0
GROWTH = 1.5


def poll_until_done(
    client: SaleshandyClient,
    request_ids: Iterable[str],
    *,
    timeout: float | None = None,
    first_interval: float = FIRST_INTERVAL,
    on_status: Callable[[ImportStatus], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, ImportStatus]:
    """Poll every id with growing intervals (about 1 s up to about 15 s).

    Returns the last status of every id; those not completed when ``timeout``
    seconds passed are returned with ``completed=False``.
    """
    pending = list(dict.fromkeys(request_ids))
    latest: dict[str, ImportStatus] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = first_interval
    while pending:
        for request_id in list(pending):
            status = client.import_status(request_id)
            if on_status and latest.get(request_id) != status:
                on_status(status)
            latest[request_id] = status
            if status.completed:
                pending.remove(request_id)
        if not pending:
            break
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sleep(min(interval, left))
        else:
            sleep(interval)
        interval = min(MAX_INTERVAL, interval * GROWTH)
    return latest
