"""Fault injection: make the sandbox fail on purpose so retry and resume code gets exercised.

A *fault plan* has two parts. A *script* is a list of fault specs consumed one per
matching ``/v1`` request, in order; it makes a test deterministic ("the 2nd POST
gets a 502"). A *rate* applies a random fault (drawn from ``kinds`` with a seeded
RNG) to matching requests once the script is used up; it makes soak tests noisy.

Fault specs::

    ok            no fault (a placeholder in a script)
    429           429 Too Many Requests with ``Retry-After: 1``
    429:N         ... with ``Retry-After: N`` (seconds)
    429:date      ... with ``Retry-After`` as an HTTP-date two seconds ahead
    429:none      ... with no ``Retry-After`` at all
    rl400         the live rate-limit answer: HTTP 400
                  ``{"code": 40000, "type": "TOO_MANY_REQUESTS", "message": "Rate Limit exceeded"}``
                  with no ``Retry-After`` and no ``x-ratelimit-*`` headers
    rl4000        ... the same with ``"code": 4000`` (another client saw that code live)
    rl400:S[:F]   (and ``rl4000:S[:F]``) ... plus ``x-ratelimit-remaining: 0`` and an
                  ``x-ratelimit-reset`` S seconds ahead, written in format F: ``seconds``
                  (the default; seconds from now), ``epoch``, ``http-date`` or ``iso``
    500 502 503   (any 5xx) that status; 502 answers an HTML page like a real gateway
    drop-before   read the headers, then close the socket: no body read, no answer
    drop-after    read and fully process the request, then close without answering
    slow:S        sleep S seconds, then answer normally
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass

from shandy_cli.sandbox.ratelimit import RESET_FORMATS

DEFAULT_MATCH = "/v1/"
_RATE_LIMIT_CODES = {"rl400": 40000, "rl4000": 4000}  # spec name -> the body's "code"


@dataclass(frozen=True)
class Fault:
    """One parsed fault spec. ``spec`` is the text it came from (what the request log shows)."""

    spec: str
    kind: str  # "ok" | "status" | "ratelimit" | "drop-before" | "drop-after" | "slow"
    status: int = 0
    retry_after: str | None = None  # "1", "3", "date" or None (no header)
    seconds: float = 0.0  # slow: the sleep; ratelimit: how far ahead x-ratelimit-reset is
    code: int = 0  # ratelimit: the body's "code"
    reset_format: str | None = None  # ratelimit: None sends no x-ratelimit-* headers


def parse_fault(spec: str) -> Fault:
    """Parse a fault spec, raising ``ValueError`` naming it when it is not one we know."""
    if not isinstance(spec, str):
        raise ValueError(f"fault spec must be a string, not {spec!r}")
    name, _, arg = spec.strip().partition(":")
    if name in ("ok", "drop-before", "drop-after") and not arg:
        return Fault(spec, name)
    if name == "slow":
        return Fault(spec, "slow", seconds=_non_negative(spec, arg))
    if name == "429":
        return Fault(spec, "status", 429, retry_after=_retry_after(spec, arg))
    if name in _RATE_LIMIT_CODES:
        return _rate_limit_fault(spec, _RATE_LIMIT_CODES[name], arg)
    if len(name) == 3 and name.startswith("5") and name.isdigit() and not arg:
        return Fault(spec, "status", int(name))
    raise ValueError(f"unknown fault {spec!r}")


def _rate_limit_fault(spec: str, code: int, arg: str) -> Fault:
    if not arg:
        return Fault(spec, "ratelimit", 400, code=code)
    seconds, _, fmt = arg.partition(":")
    fmt = fmt or "seconds"
    if fmt not in RESET_FORMATS:
        raise ValueError(f"fault {spec!r}: reset format must be one of {', '.join(RESET_FORMATS)}")
    return Fault(
        spec, "ratelimit", 400, seconds=_non_negative(spec, seconds), code=code, reset_format=fmt
    )


def _retry_after(spec: str, arg: str) -> str | None:
    if arg == "":
        return "1"
    if arg == "none":
        return None
    if arg == "date":
        return "date"
    return str(int(_non_negative(spec, arg)))


def _non_negative(spec: str, arg: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"fault {spec!r} needs a number of seconds") from None
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"fault {spec!r} needs a number of seconds >= 0")
    return value


@dataclass
class FaultDefaults:
    """What a fault plan falls back to for the parts a caller leaves out."""

    kinds: tuple[str, ...]
    seed: int | None


class FaultPlan:
    """The live fault plan of one server; thread-safe because requests run in threads."""

    def __init__(self, rate: float, kinds: tuple[str, ...], seed: int | None) -> None:
        self._lock = threading.Lock()
        self._defaults = FaultDefaults(tuple(kinds), seed)
        self._script: deque[Fault] = deque()
        self._match = DEFAULT_MATCH
        self._rate = 0.0
        self._kinds: list[Fault] = []
        self._rng = random.Random(seed)
        self.configure(rate=rate)

    def configure(
        self,
        script: list[str] | None = None,
        *,
        match: str | None = None,
        rate: float | None = None,
        kinds: list[str] | tuple[str, ...] | None = None,
        seed: int | None = None,
    ) -> None:
        """Replace the whole plan. What is left out is off: no script, rate 0, match all /v1.

        Everything is parsed before anything changes, so a bad spec leaves the old plan.
        """
        parsed_script = [parse_fault(s) for s in (script or [])]
        parsed_kinds = [
            parse_fault(s) for s in (kinds if kinds is not None else self._defaults.kinds)
        ]
        rate = 0.0 if rate is None else float(rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, not {rate}")
        if rate > 0 and not parsed_kinds:
            raise ValueError("a fault rate needs at least one fault kind")
        match = DEFAULT_MATCH if match is None else match
        if not isinstance(match, str) or not match.startswith("/"):
            raise ValueError(f"match must be a path prefix starting with '/', not {match!r}")
        with self._lock:
            self._script = deque(parsed_script)
            self._match = match
            self._rate = rate
            self._kinds = parsed_kinds
            self._rng = random.Random(seed if seed is not None else self._defaults.seed)

    def next_fault(self, path: str) -> Fault | None:
        """The fault for a request to ``path``; ``None`` or an ``ok`` fault: answer normally.

        Consumes one script entry when ``path`` matches, so the log shows which entry it got.
        """
        if not path.startswith("/v1/"):
            return None
        with self._lock:
            if not path.startswith(self._match):
                return None
            if self._script:
                return self._script.popleft()
            if self._rate > 0 and self._rng.random() < self._rate:
                return self._rng.choice(self._kinds)
        return None

    def describe(self) -> dict[str, object]:
        """The plan as JSON-able data, for ``GET /_sandbox/faults``."""
        with self._lock:
            return {
                "script": [f.spec for f in self._script],
                "match": self._match,
                "rate": self._rate,
                "kinds": [f.spec for f in self._kinds],
            }
