"""Pacing: one call budget per endpoint and one in total, shared by every call of a run.

Saleshandy limits a key to about 20 calls a minute per endpoint and 300 in total
(reported by a client author from Saleshandy support; the real limit can be
lower), and answers past it with HTTP 400 ``Rate Limit exceeded`` or a 429. A
client that only reacts to those answers wastes calls and waits; one that paces
itself never sees them. ``RateBudget`` keeps a sliding window of the calls made
per endpoint and in total, says how long the next call must wait, and tightens
itself from what the server says (``x-ratelimit-limit``, ``x-ratelimit-remaining``,
``x-ratelimit-reset``, ``Retry-After``).

A call is counted at the moment its answer arrives. The server counted it when
the request reached it, which is earlier, so a window measured from our side
always ends after the server's: pacing by it can never run ahead of the server.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

DEFAULT_PER_ENDPOINT = 20
DEFAULT_TOTAL = 300
WINDOW = 60.0
# A reset value above this is a moment (epoch seconds), below it a duration.
_EPOCH_FLOOR = 1_000_000_000
_EPOCH_MS_FLOOR = 100_000_000_000


@dataclass(frozen=True)
class RateLimits:
    """How many calls a run may make per ``window`` seconds: per endpoint and in total.

    ``None`` for both turns pacing off (the server's answers are still honoured).
    """

    per_endpoint: int | None = DEFAULT_PER_ENDPOINT
    total: int | None = DEFAULT_TOTAL
    window: float = WINDOW

    def describe(self) -> str:
        parts = []
        if self.per_endpoint:
            parts.append(f"{self.per_endpoint} per endpoint")
        if self.total:
            parts.append(f"{self.total} in total")
        return f"{' and '.join(parts) or 'no limit'} per {self.window:g}s"


UNLIMITED = RateLimits(per_endpoint=None, total=None)


def parse_reset(value: str | None, now: float | None = None) -> float | None:
    """Seconds from now until ``value`` (an ``x-ratelimit-reset`` or ``Retry-After``).

    Its format is undocumented, so every plausible one is read: seconds from now,
    epoch seconds, epoch milliseconds, an HTTP date and ISO 8601. ``None`` when
    ``value`` is none of them.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    now = time.time() if now is None else now
    try:
        number = float(text)
    except ValueError:
        return _parse_date(text, now)
    if not math.isfinite(number) or number < 0:
        return None
    if number >= _EPOCH_MS_FLOOR:
        return max(0.0, number / 1000 - now)
    if number >= _EPOCH_FLOOR:
        return max(0.0, number - now)
    return number


def _parse_date(text: str, now: float) -> float | None:
    when: datetime | None = None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # HTTP and API dates are UTC unless they say
    return max(0.0, when.timestamp() - now)


@dataclass
class _Endpoint:
    calls: deque[float] = field(default_factory=deque)
    limit: int | None = None  # as tightened by x-ratelimit-limit
    remaining: int | None = None  # what the server last said is left, until ``reset_at``
    reset_at: float = 0.0
    blocked_until: float = 0.0


WaitHook = Callable[[str, float], None]


class RateBudget:
    """The call budget of one run; thread-safe. Endpoints are names like ``"GET /v1/fields"``."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits or RateLimits()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._total: deque[float] = deque()
        self._inflight: dict[str, int] = {}
        self.calls: dict[str, int] = {}  # calls made per endpoint, for reports and tests
        self.waited = 0.0  # seconds spent waiting for the budget

    # -- asking ---------------------------------------------------------------------------

    def delay(self, endpoint: str, share: float = 1.0) -> float:
        """Seconds until a call to ``endpoint`` fits the budget (0: now).

        ``share`` < 1 lets a caller (the status poller) use only part of the
        endpoint's budget, so it never crowds out calls that matter more.
        """
        with self._lock:
            return self._delay(endpoint, share, self._clock())

    def _delay(self, endpoint: str, share: float, now: float) -> float:
        state = self._endpoints.get(endpoint) or _Endpoint()
        window = self.limits.window
        self._expire(state, now)
        inflight = self._inflight.get(endpoint, 0)
        waits = [state.blocked_until - now]
        limit = _lower(self.limits.per_endpoint, state.limit)
        if limit is not None:
            allowed = max(1, math.floor(limit * share))
            waits.append(_window_wait(state.calls, inflight, allowed, window, now))
        if self.limits.total is not None:
            total_inflight = sum(self._inflight.values())
            waits.append(_window_wait(self._total, total_inflight, self.limits.total, window, now))
        if state.remaining is not None and state.remaining - inflight <= 0:
            waits.append(state.reset_at - now)
        return max(0.0, *waits)

    def _expire(self, state: _Endpoint, now: float) -> None:
        horizon = now - self.limits.window
        while state.calls and state.calls[0] <= horizon:
            state.calls.popleft()
        while self._total and self._total[0] <= horizon:
            self._total.popleft()
        if state.remaining is not None and now >= state.reset_at:
            state.remaining = None  # the server's count has reset: our own window rules again

    def acquire(
        self, endpoint: str, *, share: float = 1.0, on_wait: WaitHook | None = None
    ) -> None:
        """Wait until a call to ``endpoint`` fits, then count it as in flight.

        Every ``acquire`` must be followed by ``done(endpoint)`` once the answer
        (or the failure) is in.
        """
        while True:
            with self._lock:
                wait = self._delay(endpoint, share, self._clock())
                if wait <= 0:
                    self._inflight[endpoint] = self._inflight.get(endpoint, 0) + 1
                    return
            if on_wait:
                on_wait(endpoint, wait)
            self.waited += wait
            self._sleep(wait)

    def done(self, endpoint: str, headers: Mapping[str, str] | None = None) -> None:
        """The call acquired for ``endpoint`` has its answer: count it, learn from its headers."""
        with self._lock:
            now = self._clock()
            self._inflight[endpoint] = max(0, self._inflight.get(endpoint, 0) - 1)
            state = self._endpoints.setdefault(endpoint, _Endpoint())
            self._expire(state, now)
            state.calls.append(now)
            self._total.append(now)
            self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
            if state.remaining is not None:
                state.remaining -= 1
            if headers is not None:
                self._learn(state, headers, now)

    def _learn(self, state: _Endpoint, headers: Mapping[str, str], now: float) -> None:
        limit = _int_header(headers, "x-ratelimit-limit")
        if limit is not None and limit > 0:
            state.limit = _lower(state.limit, limit)
        remaining = _int_header(headers, "x-ratelimit-remaining")
        if remaining is None:
            return
        reset = parse_reset(headers.get("x-ratelimit-reset"))
        state.remaining = max(0, remaining)
        # No reset given: assume the worst the window allows.
        state.reset_at = now + (reset if reset is not None else self.limits.window)

    def block(self, endpoint: str, seconds: float) -> None:
        """The server said "rate limit": no call to ``endpoint`` for ``seconds``."""
        with self._lock:
            state = self._endpoints.setdefault(endpoint, _Endpoint())
            state.blocked_until = max(state.blocked_until, self._clock() + max(0.0, seconds))


def _lower(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _window_wait(
    calls: deque[float], inflight: int, limit: int, window: float, now: float
) -> float:
    """How long until fewer than ``limit`` calls (counting those in flight) are in the window."""
    used = len(calls) + inflight
    if used < limit:
        return 0.0
    # The call that must leave the window first for one more to fit.
    index = used - limit
    if index >= len(calls):
        return window  # only calls in flight: the earliest fits once they are counted and age
    return calls[index] + window - now


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip().split(",")[0])
    except ValueError:
        return None
    return int(value) if math.isfinite(value) else None


__all__ = ["UNLIMITED", "RateBudget", "RateLimits", "parse_reset"]
