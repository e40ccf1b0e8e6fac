"""Rate limits as the live API applies them: per key, per endpoint and in total, sliding window.

Live clients report about 20 calls a minute per endpoint and 300 a minute in total,
per key, answered as HTTP 400 ``{"code": 40000, "message": "Rate Limit exceeded"}``
(or 429 with ``Retry-After``). An *endpoint* is a method and a route template, so
every ``GET /v1/prospects/import-status/{id}`` shares one budget. A refused call is
not counted: a client that backs off gets its slot back when the oldest counted call
leaves the window, whatever it tried in between.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

RESET_FORMATS = ("epoch", "seconds", "http-date", "iso")
RATE_STATUSES = (400, 429)

_SWEEP_AT = 10_000  # buckets tracked before idle ones are dropped, so random keys can't grow us


@dataclass(frozen=True)
class Verdict:
    """One call's outcome: refused or counted, and what the ``x-ratelimit-*`` headers say."""

    limited: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the binding window's oldest call leaves it
    now: float


class RateLimiter:
    """Sliding-window counters for one server; thread-safe (requests run on threads)."""

    def __init__(
        self,
        per_endpoint: int | None,
        total: int | None,
        window: float,
        *,
        clock: Callable[[], float] = time.time,  # wall clock: reset headers name wall times
    ) -> None:
        for name, value in (("rate_per_endpoint", per_endpoint), ("rate_total", total)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for no limit)")
        if not window > 0:
            raise ValueError(f"rate_window must be > 0 seconds, not {window}")
        self.per_endpoint = per_endpoint
        self.total = total
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], deque[float]] = {}  # (key, endpoint) -> call times
        self._totals: dict[str, deque[float]] = {}  # key -> call times across endpoints

    @property
    def enabled(self) -> bool:
        return self.per_endpoint is not None or self.total is not None

    def check(self, key: str, endpoint: str) -> Verdict | None:
        """Count one call of ``key`` to ``endpoint``, or refuse it; ``None`` when limits are off."""
        if not self.enabled:
            return None
        with self._lock:
            now = self._clock()
            if len(self._calls) + len(self._totals) > _SWEEP_AT:
                self._sweep(now)
            windows = self._windows(key, endpoint, now)
            full = [calls for calls, limit in windows if len(calls) >= limit]
            if full:
                # A slot is free once every full window has lost its oldest call.
                free_at = max(calls[0] for calls in full) + self.window
                return Verdict(True, self._limit(), 0, free_at, now)
            for calls, _ in windows:
                calls.append(now)
            # The headers speak for whichever window has the fewest calls left.
            calls, limit = min(windows, key=lambda w: w[1] - len(w[0]))
            return Verdict(False, self._limit(), limit - len(calls), calls[0] + self.window, now)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
            self._totals.clear()

    def _limit(self) -> int:
        # x-ratelimit-limit names the endpoint's budget; the total's when only that is set.
        limit = self.per_endpoint if self.per_endpoint is not None else self.total
        assert limit is not None  # only called when enabled
        return limit

    def _windows(self, key: str, endpoint: str, now: float) -> list[tuple[deque[float], int]]:
        """The endpoint window, then the total one (those that are on), pruned to ``now``."""
        windows = []
        if self.per_endpoint is not None:
            windows.append((self._calls.setdefault((key, endpoint), deque()), self.per_endpoint))
        if self.total is not None:
            windows.append((self._totals.setdefault(key, deque()), self.total))
        for calls, _ in windows:
            _prune(calls, now - self.window)
        return windows

    def _sweep(self, now: float) -> None:
        _drop_idle(self._calls, now - self.window)
        _drop_idle(self._totals, now - self.window)


def _prune(calls: deque[float], cutoff: float) -> None:
    while calls and calls[0] <= cutoff:
        calls.popleft()


def _drop_idle(buckets: dict[Any, deque[float]], cutoff: float) -> None:
    for bucket_key, calls in list(buckets.items()):
        _prune(calls, cutoff)
        if not calls:
            del buckets[bucket_key]


def format_reset(reset_at: float, now: float, fmt: str) -> str:
    """``x-ratelimit-reset`` in one of ``RESET_FORMATS``, rounded up to a whole second.

    Rounding up keeps the promise: a client that waits until then finds a free slot.
    """
    whole = math.ceil(reset_at)
    if fmt == "seconds":
        return str(max(0, math.ceil(reset_at - now)))
    if fmt == "epoch":
        return str(whole)
    if fmt == "http-date":
        return formatdate(whole, usegmt=True)
    check_reset_format(fmt)  # only "iso" is left; anything else raises
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_reset_format(fmt: str) -> str:
    if fmt not in RESET_FORMATS:
        raise ValueError(
            f"rate reset format must be one of {', '.join(RESET_FORMATS)}, not {fmt!r}"
        )
    return fmt


def check_rate_status(status: int) -> int:
    if status not in RATE_STATUSES:
        raise ValueError(f"rate limit status must be 400 or 429, not {status}")
    return status


def ratelimit_headers(verdict: Verdict, fmt: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(verdict.limit),
        "x-ratelimit-remaining": str(verdict.remaining),
        "x-ratelimit-reset": format_reset(verdict.reset_at, verdict.now, fmt),
    }


def retry_after(verdict: Verdict) -> str:
    """Whole seconds until a slot frees, at least 1 (a 0 would invite an immediate retry)."""
    return str(max(1, math.ceil(verdict.reset_at - verdict.now)))
