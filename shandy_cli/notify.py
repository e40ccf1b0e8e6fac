"""A word to the team when an import ends (``--notify URL``, ``--notify-on``).

A Slack incoming-webhook URL gets a Slack message (target, counts, top reasons, the
failures file, how to resume); any other URL gets the import's ``--json`` document
(``ImportResult.to_dict()``, redacted as ``--json`` prints it), signed with HMAC-SHA256
when ``SHANDY_WEBHOOK_SECRET`` is set::

    X-Shandy-Timestamp: 1764655200             (Unix seconds, when it was signed)
    X-Shandy-Signature: sha256=<hex>           HMAC-SHA256(secret, timestamp + "." + body)
    X-Shandy-Delivery:  <id>                   the same on every retry of one notification

A receiver checks the signature over the raw body and refuses an old timestamp
(``verify_signature``), so a captured request cannot be replayed later.

Delivery never decides the import's outcome: https only (plain http to loopback), no
redirects, short timeouts, a few retries on 429, 5xx and connection errors, every URL
at once under one overall bound (``Policy.deadline``). What cannot be delivered is a
warning on the ``shandy_cli.notify`` logger; the result is never changed.

Webhook URLs are secrets (a Slack URL carries its token): they are shown only masked
(``mask_url``) and registered with ``redaction`` so no message shows them whole.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import orjson

from shandy_cli._version import __version__
from shandy_cli.config import NOT_A_URL, NOT_HTTP, PLAIN_HTTP, is_loopback_host, url_problem
from shandy_cli.errors import InputError
from shandy_cli.exits import INTERRUPT_CODES, ExitCode
from shandy_cli.redaction import one_line, redact, redact_tree, register_secret

if TYPE_CHECKING:
    from shandy_cli.config import Settings
    from shandy_cli.pipeline.results import ImportOptions, ImportResult

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Shandy-Signature"
TIMESTAMP_HEADER = "X-Shandy-Timestamp"
DELIVERY_HEADER = "X-Shandy-Delivery"
EVENT_HEADER = "X-Shandy-Event"
EVENT = "import.finished"
SIGNATURE_TOLERANCE = 300  # seconds a receiver accepts a timestamp (verify_signature)
SLACK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")
MAX_URL = 2048
MAX_URLS = 20  # one thread each: a job file cannot start hundreds
# Exit codes after which `shandy resume RUN_ID` continues the run.
RESUMABLE = (ExitCode.API, *INTERRUPT_CODES)
USER_AGENT = f"shandy/{__version__} (+notify)"


@dataclass(frozen=True)
class Policy:
    """How hard one notification is tried: a cron job must not wait long on a dead
    receiver, so every URL shares one ``deadline`` (seconds) whatever it does."""

    attempts: int = 3
    timeout: float = 5.0  # per attempt: connect, and each read or write
    backoff: float = 0.5  # seconds before the 2nd attempt, doubled after (with jitter)
    deadline: float = 15.0  # all URLs, all attempts, from the first byte sent


DEFAULT_POLICY = Policy()


# -- the URLs ------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """A webhook URL as it may be shown: scheme, host and port; the path (a Slack token)
    and any query or user name become ``****``."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    host = f"[{host}]" if ":" in host else host
    return one_line(f"{parts.scheme or '?'}://{host}{port}/****")


def is_slack_url(url: str) -> bool:
    """A Slack incoming webhook: any URL on Slack's hook hosts, and on loopback the
    ``/services/...`` path shape (the sandbox's Slack stand-in, tests)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host in SLACK_HOSTS:
        return True
    return is_loopback_host(host) and parts.path.startswith("/services/")


def check_urls(urls: Iterable[str]) -> list[str]:
    """The URLs to notify, trimmed and without repeats; an ``InputError`` (exit 2) names
    the first that is refused (masked): not http(s), plain http to a host that is not
    loopback, no host, a bad port, spaces or control characters. Called before anything
    is sent (``pipeline.run.import_files``); a job file's checks can call it too."""
    checked: list[str] = []
    urls = [urls] if isinstance(urls, str) else list(urls)  # one URL, not its characters
    if len(urls) > MAX_URLS:
        raise InputError(f"--notify may be given at most {MAX_URLS} times, not {len(urls)}")
    for number, raw in enumerate(urls, 1):
        url = _checked_url(raw, number)
        register_secret(url)  # never shown whole, whatever message quotes it ...
        register_secret(url.split("//", 1)[1].partition("/")[2])  # ... nor its token alone
        if url not in checked:
            checked.append(url)
    return checked


def _checked_url(raw: object, number: int) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InputError(f"--notify #{number} is empty: give an https:// URL")
    url = raw.strip()
    shown = f"--notify #{number} ({mask_url(url)})"
    if len(url) > MAX_URL or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InputError(f"{shown} has spaces or control characters, or is too long")
    problem, _ = url_problem(url)  # the rule the API's base URL follows
    if problem in (NOT_A_URL, NOT_HTTP):
        raise InputError(f"{shown} {problem}")
    if problem == PLAIN_HTTP:
        raise InputError(
            f"{shown} is plain http: the import's document would travel unencrypted; use "
            "https:// (plain http is allowed only to loopback)"
        )
    return url


# -- what is sent ----------------------------------------------------------------------------


def should_notify(notify_on: str, exit_code: int) -> bool:
    """``always``, or ``failure`` and a non-zero exit code."""
    return notify_on == "always" or (notify_on == "failure" and exit_code != ExitCode.OK)


def document(result: ImportResult) -> bytes:
    """The body a webhook gets: the import's ``--json`` document, every secret hidden as
    ``--json`` hides it (``cli.common.print_json``)."""
    return orjson.dumps(redact_tree(result.to_dict()))


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``sha256=HEX``: HMAC-SHA256 with ``secret`` over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature is ours for this body and timestamp, and the
    timestamp is within ``tolerance`` seconds of ``now`` (no replay of an old request)."""
    if not timestamp or not signature or not timestamp.isascii() or not timestamp.isdigit():
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, int(timestamp)), signature)


def webhook_request(result: ImportResult, secret: str | None) -> tuple[bytes, dict[str, str]]:
    """The body and headers for a non-Slack URL; signed when ``secret`` is given."""
    body = document(result)
    headers = {"Content-Type": "application/json", EVENT_HEADER: EVENT}
    if secret:
        stamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(stamp)
        headers[SIGNATURE_HEADER] = sign(secret, body, stamp)
    return body, headers


def slack_request(result: ImportResult, sequence: str | None) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"text": slack_text(result, sequence)})
    return body, {"Content-Type": "application/json"}


# -- the Slack message -------------------------------------------------------------------------

_OUTCOMES: dict[int, str] = {
    ExitCode.OK: ":white_check_mark: every row imported",
    ExitCode.ROWS_FAILED: ":warning: finished, some rows did not land",
    ExitCode.USAGE: ":x: stopped before anything was sent",
    ExitCode.AUTH: ":x: the API key was refused",
    ExitCode.API: ":x: stopped by an API or network failure (resumable)",
    ExitCode.TIMEOUT: ":hourglass: --timeout passed while Saleshandy was still processing",
}
MAX_REASONS = 5
MAX_TEXT = 300  # characters of one value from a file (a reason, a file name)


def slack_text(result: ImportResult, sequence: str | None = None) -> str:
    """The message: outcome, target, counts, top reasons, the failures file, how to go on.
    Every value is escaped for Slack (``<!channel>`` in a file stays text)."""
    lines = [
        f"*shandy import{' (dry run)' if result.dry_run else ''}*: "
        f"{_OUTCOMES.get(result.exit_code, ':x: interrupted')} (exit {int(result.exit_code)})",
        f"Target: {_target(result, sequence)}",
        f"Files: {_slack(', '.join(result.files[:5]) + (' ...' if len(result.files) > 5 else ''))}",
        "Rows: " + ", ".join(f"{n:,} {what}" for what, n in _counts(result)),
    ]
    if result.already_imported:
        lines.append("Already imported by that run: nothing sent (--force imports again)")
    if result.reasons:
        top = result.reasons[:MAX_REASONS]
        lines.append("Top reasons: " + "; ".join(f"{n:,} x {_slack(r)}" for r, n in top))
    if result.failures_file:
        lines.append(f"Failures file: {_slack(result.failures_file)}")
    if result.error:
        lines.append(f"Error: {_slack(redact(result.error))}")
    if result.run_id and result.exit_code in RESUMABLE:
        lines.append(f"Resume: `shandy resume {_slack(result.run_id)}`")
    if result.run_id:
        lines.append(f"Run: {_slack(result.run_id)}")
    return "\n".join(lines)


def _target(result: ImportResult, sequence: str | None) -> str:
    step = f"step {_slack(result.step_id)}" if result.step_id else "the prospect list"
    return f"sequence {_slack(sequence)}, {step}" if sequence and result.step_id else step


def _counts(result: ImportResult) -> list[tuple[str, int]]:
    return [
        ("read", result.rows_read),
        ("submitted", result.rows_submitted),
        ("updated", result.rows_updated),
        ("rejected", result.rows_rejected),
        ("skipped", result.rows_skipped),
        ("failed", result.rows_failed),
        ("already present", result.rows_already_present),
    ]


def _slack(text: str) -> str:
    """A value as Slack text: ``& < >`` escaped (Slack's only control characters: no
    mention or link can be forged), on one line, at most ``MAX_TEXT`` characters."""
    text = one_line(text)
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 3] + "..."
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- delivery ------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One URL's notification and how it went (``delivered``, or ``problem`` in words)."""

    number: int
    url: str
    body: bytes
    headers: dict[str, str]
    delivered: bool = False
    status: int | None = None
    problem: str = "not tried"
    attempts: int = 0

    @property
    def shown(self) -> str:
        return f"notification {self.number} ({mask_url(self.url)})"


def after_import(
    opts: ImportOptions,
    result: ImportResult,
    settings: Settings | None,
    policy: Policy = DEFAULT_POLICY,
) -> list[Delivery]:
    """Notify ``opts.notify`` of how the import ended, as ``opts.notify_on`` asks; the
    hook ``import_files`` calls on every exit. Never raises, never changes ``result``."""
    try:
        urls = check_urls(opts.notify)
    except InputError:
        return []  # the import itself stopped on it (exit 2), before anything was sent
    if not urls or not should_notify(opts.notify_on, result.exit_code):
        return []
    secret = settings.webhook_secret if settings is not None else None
    register_secret(secret)
    try:
        deliveries = [_delivery(n, url, result, opts, secret) for n, url in enumerate(urls, 1)]
        deliver(deliveries, policy)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while notifying: the run's code stands
        log.warning("notifications stopped by a signal; the import's result stands")
        return []
    except Exception as exc:  # a notification never fails the import
        log.warning("notifications not sent: %s", redact(f"{type(exc).__name__}: {exc}"))
        return []
    return deliveries


def _delivery(
    number: int, url: str, result: ImportResult, opts: ImportOptions, secret: str | None
) -> Delivery:
    if is_slack_url(url):
        body, headers = slack_request(result, opts.sequence)
    else:
        body, headers = webhook_request(result, secret)
    headers[DELIVERY_HEADER] = secrets.token_hex(8)
    headers["User-Agent"] = USER_AGENT
    return Delivery(number, url, body, headers)


def deliver(deliveries: Sequence[Delivery], policy: Policy = DEFAULT_POLICY) -> None:
    """Send every notification at once, each on its own thread, and wait at most
    ``policy.deadline``: a receiver that trickles bytes forever is left behind (its
    daemon thread ends with its timeouts, or with the process), with a warning."""
    deadline = time.monotonic() + policy.deadline
    # One client for all (thread-safe): making one loads the CA bundle, ~70 ms each.
    client = httpx.Client(follow_redirects=False, trust_env=True)
    threads = [
        threading.Thread(target=_attempt_all, args=(client, d, policy, deadline), daemon=True)
        for d in deliveries
    ]
    for thread in threads:
        thread.start()
    for thread, item in zip(threads, deliveries, strict=True):
        thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        if thread.is_alive():
            item.problem = f"no answer within {policy.deadline:g} s"
        _say(item)
    if not any(thread.is_alive() for thread in threads):
        client.close()  # else left to the threads left behind, and the garbage collector


def _say(item: Delivery) -> None:
    if item.delivered:
        log.info("%s delivered (HTTP %s)", item.shown, item.status)
    else:
        log.warning(
            "%s not delivered after %d attempt(s): %s; the import's result stands",
            item.shown,
            item.attempts,
            redact(item.problem),
        )


def _attempt_all(client: httpx.Client, item: Delivery, policy: Policy, deadline: float) -> None:
    """Try until delivered, refused for good, out of attempts or out of time."""
    try:
        for attempt in range(policy.attempts):
            left = deadline - time.monotonic()
            if left <= 0:
                item.problem += f" (gave up: {policy.deadline:g} s passed)"
                return
            item.attempts = attempt + 1
            wait = _attempt(client, item, min(policy.timeout, left))
            if wait is None:
                return
            pause = max(wait, policy.backoff * 2**attempt * random.uniform(0.8, 1.2))
            if attempt + 1 < policy.attempts:
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
    except Exception as exc:  # on a thread: said as the problem, never a traceback
        item.problem = f"{type(exc).__name__}: {exc}"


def _attempt(client: httpx.Client, item: Delivery, timeout: float) -> float | None:
    """One POST. None: done (delivered, or refused for good); else seconds the receiver
    asked to wait before the next try (0 when it did not say)."""
    try:
        with client.stream(
            "POST", item.url, content=item.body, headers=item.headers, timeout=timeout
        ) as response:
            said = _first_bytes(response)
    except httpx.HTTPError as exc:
        item.problem = _transport_problem(exc)
        return 0.0
    item.status = response.status_code
    if response.is_success:
        item.delivered, item.problem = True, ""
        return None
    item.problem = f"HTTP {response.status_code}" + (f" ({said})" if said else "")
    if response.is_redirect:
        item.problem += ": a redirect, not followed"
        return None
    if response.status_code == 429 or response.status_code >= 500:
        return _retry_after(response.headers.get("Retry-After"))
    return None  # refused: trying again cannot help


def _first_bytes(response: httpx.Response, limit: int = 200) -> str:
    """The start of the receiver's answer (Slack says why in it), never more."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return one_line(data[:limit].decode("utf-8", "replace").strip())


def _transport_problem(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    return type(exc).__name__


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` in seconds (an HTTP date counts as not said);
    the overall deadline caps it anyway."""
    if value and value.strip().isdigit():
        return float(value.strip())
    return 0.0
