"""A webhook receiver in the sandbox, for tests and demos of ``--notify``: not Saleshandy's
API, so no key is asked, and only loopback clients are answered.

* ``POST /webhooks/NAME`` stores what arrived (headers, body; bounded) and answers
  ``{"message": "Webhook received", "payload": {"id": N}}``. ``?status=CODE`` (400-599)
  answers that status instead, after storing it: a receiver that fails, to count retries.
* ``POST /services/T/B/TOKEN`` answers as a Slack incoming webhook does: ``ok`` (text),
  or 400 ``invalid_payload`` (not a JSON object) / ``no_text`` (no ``text``, no
  ``blocks``). What arrived is stored under the name ``slack``.
* ``GET /webhooks/NAME`` lists what arrived there, oldest first; ``DELETE`` forgets it.

Each entry: ``{"id", "time", "method", "path", "headers" (lower-cased names), "body"
(the text, as sent), "json" (the parsed body, or null)}``. The token in a Slack path
is kept out of ``path`` (``/services/****``).
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

# api.py registers the routes below, so this module reads api's names at call time.
from shandy_cli.sandbox import api as _api

if TYPE_CHECKING:
    from shandy_cli.sandbox.api import Api, ApiRequest, Response

MAX_BODY = 1_000_000  # bytes of one body; a larger one is refused (413)
MAX_PER_NAME = 100  # entries kept per name, oldest dropped first
MAX_NAMES = 100  # names kept; a new one past that drops the oldest name
MAX_TOTAL = 32_000_000  # bytes of bodies kept in all; past it the oldest entries go
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
SLACK_NAME = "slack"


class Inbox:
    """What arrived, per name: thread-safe and bounded (``MAX_*``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._boxes: dict[str, deque[dict[str, Any]]] = {}
        self._next = 1

    def add(self, name: str, entry: dict[str, Any]) -> int:
        with self._lock:
            box = self._boxes.pop(name, None) or deque()
            self._boxes[name] = box  # most recently used last
            while len(self._boxes) > MAX_NAMES:
                del self._boxes[next(iter(self._boxes))]
            entry["id"], self._next = self._next, self._next + 1
            box.append(entry)
            if len(box) > MAX_PER_NAME:
                box.popleft()
            self._trim()
            return int(entry["id"])

    def _trim(self) -> None:
        """Drop the oldest entries (by id, whatever their name) past ``MAX_TOTAL`` bytes."""
        total = sum(len(e["body"]) for box in self._boxes.values() for e in box)
        while total > MAX_TOTAL:
            oldest = min((b for b in self._boxes.values() if b), key=lambda b: b[0]["id"])
            total -= len(oldest.popleft()["body"])

    def entries(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._boxes.get(name, ())]

    def clear(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._boxes.clear()
            else:
                self._boxes.pop(name, None)


def _loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


def _entry(request: ApiRequest, path: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(request.body) if request.body else None
    except orjson.JSONDecodeError:
        parsed = None
    return {
        "time": time.time(),
        "method": request.method,
        "path": path,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "body": request.body.decode("utf-8", "replace"),
        "json": parsed,
    }


def _refusal(request: ApiRequest, name: str) -> Response | None:
    if not _loopback(request.peer):
        return _api.error(403, "The webhook receiver answers loopback clients only")
    if not NAME.fullmatch(name):
        return _api.error(400, "A webhook name is 1-64 letters, digits, '.', '_' or '-'")
    if len(request.body) > MAX_BODY:
        return _api.error(413, f"A webhook body is at most {MAX_BODY} bytes")
    return None


def receive(api: Api, request: ApiRequest, match: re.Match[str]) -> Response:
    name = match["name"]
    refused = _refusal(request, name)
    if refused is not None:
        return refused
    entry_id = api.webhooks.add(name, _entry(request, request.path))
    status = request.param("status")
    if status.isascii() and status.isdigit() and 400 <= int(status) <= 599:
        return _api.error(int(status), f"Webhook {name} answers {status}, as asked")
    return _api.reply(200, "Webhook received", {"id": entry_id})


def listing(api: Api, request: ApiRequest, match: re.Match[str]) -> Response:
    refused = _refusal(request, match["name"])
    if refused is not None:
        return refused
    return _api.reply(200, "Webhooks received", api.webhooks.entries(match["name"]))


def forget(api: Api, request: ApiRequest, match: re.Match[str]) -> Response:
    refused = _refusal(request, match["name"])
    if refused is not None:
        return refused
    api.webhooks.clear(match["name"])
    return _api.reply(200, "Webhooks forgotten", None)


def slack(api: Api, request: ApiRequest, _match: re.Match[str]) -> Response:
    """Slack's incoming webhook: plain-text answers, as Slack gives them."""
    refused = _refusal(request, SLACK_NAME)
    if refused is not None:
        return refused
    entry = _entry(request, "/services/****")
    api.webhooks.add(SLACK_NAME, entry)
    message = entry["json"]
    if not isinstance(message, dict):
        return _api.Response(400, b"invalid_payload", "text/plain")
    if not message.get("text") and not message.get("blocks"):
        return _api.Response(400, b"no_text", "text/plain")
    return _api.Response(200, b"ok", "text/plain")
