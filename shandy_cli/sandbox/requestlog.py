"""The request log: what the sandbox was asked and how it answered, for tests to assert on."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

_LOG_LIMIT = 10_000  # entries kept; a long-running sandbox must not grow without bound


class RequestLog:
    """Thread-safe and bounded. Entry keys: method, path, query, status, bytes, fault, time,
    endpoint (the route template, ``"GET /v1/prospects/import-status/{id}"``; None off the
    routes) and limited (True when the rate limiter answered it).

    An entry is added when its request arrives and completed as it is answered
    (``status`` is None until then, and stays None when a fault drops the
    connection), so a client holding its response always finds it here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
