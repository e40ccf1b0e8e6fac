"""A small client for the Saleshandy Open API, over httpx.

Every call goes through ``_request``: it adds ``x-api-key``, sends
``Content-Type`` only with a body (the API answers a GET carrying one with
406), retries what is worth retrying, unwraps ``payload``-wrapped and bare
answers alike, and turns every failure into one ``shandy_cli.errors`` type.
"""

from __future__ import annotations

import logging
import os
import random
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from shandy_cli._download import MAX_REDIRECTS, TooBig, TooManyRedirects, TooSlow, fetch_capped
from shandy_cli._files import replace_file
from shandy_cli._version import __version__
from shandy_cli.config import is_loopback_host
from shandy_cli.errors import (
    ApiError,
    ApiValidationError,
    AuthenticationError,
    ImportTimeout,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    ShandyError,
    TransportError,
)
from shandy_cli.ratelimit import RateBudget, RateLimits, WaitHook, parse_reset
from shandy_cli.redaction import account_id, check_api_key, mask_secret, printable, redact

USER_AGENT = (
    f"shandy/{__version__} (+https://github.com/shandy-cli/shandy) httpx/{httpx.__version__}"
)
IMPORT_TO_STEP = "/v1/sequences/prospects/import-with-field-name"
IMPORT_TO_LIST = "/v1/prospects/import-with-field-name"
# A report of 100k failed rows is ~20 MB; far above that is hostile. A download
# must also finish in REPORT_TIMEOUT seconds overall (a server dripping one byte a
# minute never trips the per-read timeout), and follows at most REPORT_REDIRECTS
# redirects, each checked like the first URL.
REPORT_MAX_BYTES = 512 * 1024 * 1024
REPORT_TIMEOUT = 600.0
REPORT_REDIRECTS = MAX_REDIRECTS
REQUEST_ID_MAX = 200
STATUS_ENDPOINT = "GET /v1/prospects/import-status/{id}"
SEQUENCE_PAGE_SIZE = 1000  # the API's maximum: fewest calls for big accounts
MAX_PAGES = 100  # 100,000 sequences at 1000 a page; a list that never ends is the server's bug


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, bounded in attempts and total time.

    Rate limits are retried apart from other failures: more attempts
    (``rate_limit_attempts``), and a wait the server asks for is honoured in full
    however long (not capped at ``max_delay``) as long as the run's bound,
    ``max_total`` seconds from the first attempt, is kept.
    """

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_total: float = 300.0
    rate_limit_attempts: int = 12
    rate_limit_base: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def rate_limit_delay(self, attempt: int, retry_after: float | None, window: float) -> float:
        """The wait after the ``attempt``-th rate-limit answer in a row.

        With no hint from the server, back off from ``rate_limit_base`` seconds
        towards one whole window (a minute live), the longest a sliding window
        can make anyone wait; a little jitter keeps parallel runs apart.

        A hint is a floor, not a promise: once a wait the server asked for has
        proved too short (a ``Retry-After`` of 0, a reset already past by our
        clock, a skewed clock), the backoff of the attempts before grows under it,
        so a stale hint cannot make us hammer a limited key a dozen times a second.
        """
        if retry_after is not None:
            floor = self._rate_backoff(attempt - 1, window) if attempt > 1 else 0.0
            return max(retry_after, 0.0, floor) + random.uniform(0.05, 0.25)
        return self._rate_backoff(attempt, window)

    def _rate_backoff(self, attempt: int, window: float) -> float:
        ceiling = min(window, self.rate_limit_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


NO_RETRY = RetryPolicy(attempts=1, rate_limit_attempts=1)


@dataclass(frozen=True)
class ImportStatus:
    """One answer of the import-status endpoint: done or not, and the report's link."""

    request_id: str
    completed: bool
    report_url: str | None


RetryHook = Callable[[str, int, float, ApiError], None]


def retry_text(what: str, attempt: int, delay: float, error: ShandyError) -> str:
    """One retry, said once: an error that names its call (its ``request``) is said as it
    is; only one that does not is prefixed with ``what``."""
    said = str(error) if getattr(error, "request", None) else f"{what}: {error}"
    return f"{said}; retry {attempt} in {delay:.1f}s"


def _stderr_retry_hook(what: str, attempt: int, delay: float, error: ApiError) -> None:
    """The default ``on_retry``: one INFO record on the ``shandy_cli.client`` logger (the
    library never prints; the CLI renders it as ``shandy: ...`` on stderr)."""
    logging.getLogger(__name__).info(printable(redact(retry_text(what, attempt, delay, error))))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date (other forms tolerated)."""
    return parse_reset(value)


def unwrap(data: Any) -> Any:
    """The API wraps most answers as ``{"message", "payload"}``; some clients see them bare."""
    if isinstance(data, dict) and "payload" in data:
        return data["payload"]
    return data


_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
WORDS_MAX = 300  # characters of a server's message kept in an error line


def short_line(text: str, *, page: bool = False, limit: int = WORDS_MAX) -> str:
    """What a server said, as one short line of an error message: every run of
    whitespace, newlines included, one space; at most ``limit`` characters. A ``page``
    (a body that is not JSON: a proxy's HTML error page, megabytes of it) is said by
    its title, else by its text without tags."""
    head = text[: 64 * 1024]  # the title, or the words that matter, come first
    title = _TITLE.search(head) if page else None
    if title and title.group(1).strip():
        head = title.group(1)
    elif page:
        head = _TAG.sub(" ", head)
    line = _SPACE.sub(" ", head).strip()
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class ServerWords:
    """What an error answer said: the server's own code (if any) and its message."""

    code: str | None
    text: str


def server_words(response: httpx.Response) -> ServerWords:
    """Read the three error body shapes live clients see (and plain text).

    1. ``{"code": 40000, "type": "...", "message": "Rate Limit exceeded"}``;
    2. ``{"statusCode": 400, "message": "..." | ["...", "..."]}`` (validation);
    3. ``{"error": "...", "error_code": "...", "error_message": "..."}`` (the gateway).
    Messages often carry their code already ("1001: Invalid token"): it is not
    added again.
    """
    try:
        data = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        text = short_line(response.text, page=True) if response.content else ""
        return ServerWords(None, text or response.reason_phrase or "no message")
    code = data.get("code", data.get("error_code"))
    code_text = str(code) if isinstance(code, int | str) and str(code).strip() else None
    message = data.get("message") or data.get("error_message") or data.get("error")
    if isinstance(message, list):  # NestJS-style validation: a list of messages
        message = "; ".join(str(m) for m in message)
    text = short_line(str(message) if message else str(data))
    if "error_message" in data and code_text and not text.startswith(code_text):
        text = f"{code_text}: {text}"  # the gateway splits the code off; the others don't
    return ServerWords(code_text, text)


_AUTH_CODES = frozenset({"1001", "4003"})
_AUTH_WORDS = ("invalid token", "invalid api key", "api key is invalid", "unauthorized")


def error_for(response: httpx.Response, what: str, *, key_hint: str | None = None) -> ApiError:
    """Map a failed response to the exception hierarchy, keeping the server's own words.

    Live, Saleshandy answers a rate limit as HTTP 400 (code 40000 or 4000) and a
    bad key as 400 ``1001: Invalid token``: the message decides, not the status
    alone. ``40000: Prospect import request not found`` shares the rate limit's
    code and is told apart by its words. ``what`` (the call) is the error's
    ``request``; ``key_hint`` (the masked key) is said by an authentication error.
    """
    status = response.status_code
    words = server_words(response)
    said = words.text
    low = said.lower()
    msg = f"HTTP {status}: {said}"
    extra: dict[str, Any] = {
        "status_code": status,
        "code": words.code,
        "server_message": said,
        "request": what,
    }
    if status == 429 or "rate limit" in low or "too many requests" in low:
        return RateLimitError(msg, retry_after=rate_limit_wait(response), **extra)
    if status in (401, 403) or words.code in _AUTH_CODES or any(w in low for w in _AUTH_WORDS):
        auth = AuthenticationError(
            f"authentication failed (HTTP {status}: {said}); check SALESHANDY_API_KEY", **extra
        )
        auth.key_hint = key_hint
        return auth
    if status == 413:
        return RequestTooLargeError(msg, **extra)
    if status >= 500:
        error = ServerError(msg, **extra)
        error.retry_after = parse_reset(response.headers.get("retry-after"))
        return error
    if status == 404 or "not found" in low:
        return NotFoundError(msg, **extra)
    return ApiValidationError(msg, **extra)


def rate_limit_wait(response: httpx.Response) -> float | None:
    """How long a rate-limited answer asks us to wait: ``Retry-After``, else the reset."""
    wait = parse_reset(response.headers.get("retry-after"))
    if wait is None:
        wait = parse_reset(response.headers.get("x-ratelimit-reset"))
    return wait


@dataclass(frozen=True)
class Call:
    """One API call as ``_request`` makes it, every attempt alike."""

    method: str
    path: str
    endpoint: str  # the budget it counts against
    _: KW_ONLY
    params: dict[str, Any] | None = None
    json_body: Any = None
    body_file: Path | None = None
    ok: tuple[int, ...] = (200, 201)
    on_attempt: Callable[[int], None] | None = None
    share: float = 1.0

    @property
    def what(self) -> str:
        """The call as errors and retry lines name it: ``GET /v1/fields``."""
        return f"{self.method} {self.path}"


@dataclass
class Tries:
    """The retry state of one call: when it began, its caller's deadline, and how many
    answers so far were failures (5xx, transport) and how many were rate limits."""

    started: float
    deadline: float | None = None
    failures: int = 0
    limited: int = 0

    @property
    def count(self) -> int:
        return self.failures + self.limited


class SaleshandyClient:
    """The API calls shandy makes. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: RetryHook | None = _stderr_retry_hook,
        rate_limits: RateLimits | None = None,
        budget: RateBudget | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        """``rate_limits`` paces every call (default: 20 a minute per endpoint, 300 in
        total); pass ``budget`` instead to share one budget between clients.
        ``on_wait(endpoint, seconds)`` hears of every wait for the budget."""
        self.base_url = base_url.rstrip("/")
        self._api_key = check_api_key(api_key)
        # The account this key is, as the journal's ledgers name it (a keyed digest, never
        # the key): one whose URL changes each time (the built-in sandbox) sets its own.
        self.account = account_id(self.base_url, self._api_key)
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.budget = budget or RateBudget(rate_limits)
        self.sequence_page_size = SEQUENCE_PAGE_SIZE
        self.on_wait = on_wait
        # Where the key came from ("profile acme", "SALESHANDY_API_KEY", ...: the settings'
        # key_source), said with the masked key when it is refused.
        self.key_source: str | None = None
        # verify=True always: TLS verification is never switched off (custom CAs via
        # SSL_CERT_FILE / SSL_CERT_DIR, which httpx honours).
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=15.0),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
            trust_env=True,
        )

    def __repr__(self) -> str:
        return f"SaleshandyClient(base_url={self.base_url!r})"

    def __enter__(self) -> SaleshandyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the one place requests are made -------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        if not self._api_key:
            raise AuthenticationError(
                "no API key: set SALESHANDY_API_KEY (environment or .env), or use --sandbox"
            )
        return {"x-api-key": self._api_key}

    def _send_once(self, call: Call) -> httpx.Response:
        headers = self._auth_headers()
        content: Any = None
        if call.json_body is not None:
            content = orjson.dumps(call.json_body)
            headers["Content-Type"] = "application/json"
        try:
            if call.body_file is not None:
                headers["Content-Type"] = "application/json"
                headers["Content-Length"] = str(call.body_file.stat().st_size)
                with call.body_file.open("rb") as fh:  # streamed from disk, never held in memory
                    return self._http.request(
                        call.method,
                        call.path,
                        params=call.params,
                        content=_iter_file(fh),
                        headers=headers,
                    )
            return self._http.request(
                call.method, call.path, params=call.params, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out ({type(exc).__name__})", request=call.what) from None
        except httpx.HTTPError as exc:
            detail = redact(str(exc))
            if _certificate_problem(exc):  # not transient: retrying cannot help
                raise ApiError(
                    f"the server's TLS certificate is not trusted ({detail}); verification is "
                    "always on: for a private CA set SSL_CERT_FILE or SSL_CERT_DIR",
                    request=call.what,
                ) from None
            raise TransportError(f"{type(exc).__name__}: {detail}", request=call.what) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str | None = None,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        body_file: Path | None = None,
        ok: tuple[int, ...] = (200, 201),
        on_attempt: Callable[[int], None] | None = None,
        share: float = 1.0,
        deadline: float | None = None,
    ) -> Any:
        """One call, paced by the budget and retried as the policy allows.

        ``endpoint`` names the budget the call counts against (the path's template,
        e.g. ``GET /v1/prospects/import-status/{id}``); ``share`` < 1 lets the call
        use only part of that endpoint's budget. ``deadline`` (monotonic) is the
        caller's own bound, e.g. ``--timeout``: a retry whose wait would pass it is
        not waited for; ``ImportTimeout`` is raised instead.
        """
        call = Call(
            method,
            path,
            endpoint or f"{method} {path}",
            params=params,
            json_body=json_body,
            body_file=body_file,
            ok=ok,
            on_attempt=on_attempt,
            share=share,
        )
        tries = Tries(time.monotonic(), deadline)
        while True:
            try:
                return self._attempt(call, tries.count + 1)
            except RateLimitError as exc:
                tries.limited += 1
                window = self.budget.limits.window
                delay = self.retry.rate_limit_delay(tries.limited, exc.retry_after, window)
                self.budget.block(call.endpoint, delay)  # also for whoever calls it next
                self._give_up_or_wait(
                    exc,
                    tries,
                    attempt=tries.limited,
                    attempts=self.retry.rate_limit_attempts,
                    delay=delay,
                )
                self._pause(call.what, tries.limited, delay, exc)
            except (ServerError, TransportError) as exc:
                tries.failures += 1
                hint = exc.retry_after if isinstance(exc, ServerError) else None
                delay = self.retry.delay(tries.failures, hint)
                self._give_up_or_wait(
                    exc, tries, attempt=tries.failures, attempts=self.retry.attempts, delay=delay
                )
                self._pause(call.what, tries.failures, delay, exc)

    def _attempt(self, call: Call, attempt: int) -> Any:
        self._auth_headers()  # no key: fail before spending any budget or waiting for it
        self._check_wait(call.endpoint, call.share)
        self.budget.acquire(call.endpoint, share=call.share, on_wait=self.on_wait)
        headers: httpx.Headers | None = None
        try:
            if call.on_attempt:
                call.on_attempt(attempt)
            response = self._send_once(call)
            headers = response.headers
        finally:
            self.budget.done(call.endpoint, headers)
        if response.status_code in call.ok:
            return unwrap(_json(response, call.what))
        hint = mask_secret(self._api_key) if self._api_key else None
        if hint and self.key_source:
            hint = f"{hint} from {self.key_source}"
        raise error_for(response, call.what, key_hint=hint)

    def _check_wait(self, endpoint: str, share: float) -> None:
        """A budget wait past the run's bound (a server's reset an hour away) is not waited
        out in silence: it is a rate limit that does not clear, raised at once (exit 4)."""
        wait = self.budget.delay(endpoint, share)
        if wait > self.retry.max_total:
            raise RateLimitError(
                f"the API's rate limit allows the next call in {wait:.0f}s, "
                f"more than this run waits ({self.retry.max_total:.0f}s)",
                status_code=0,
                retry_after=wait,
                request=endpoint,
                endpoint=endpoint,
            )

    def _give_up_or_wait(
        self, exc: ApiError, tries: Tries, *, attempt: int, attempts: int, delay: float
    ) -> None:
        """Re-raise ``exc`` when the policy's attempts or its time bound are spent;
        ``ImportTimeout`` when the wait would pass the caller's ``deadline`` first."""
        now = time.monotonic()
        spent = now - tries.started
        if tries.deadline is not None and now + delay > tries.deadline and attempt < attempts:
            raise ImportTimeout(f"{exc}; the time allowed ran out before a retry")
        if attempt >= attempts or spent + delay > self.retry.max_total:
            if isinstance(exc, RateLimitError):
                exc.attempts, exc.waited = attempt, spent
            raise exc

    def _pause(self, what: str, attempt: int, delay: float, exc: ApiError) -> None:
        if self.on_retry:
            self.on_retry(what, attempt, delay, exc)
        time.sleep(delay)

    # -- the API ---------------------------------------------------------------------------

    def list_fields(self, system_fields: bool = True) -> list[dict[str, Any]]:
        params = {"systemFields": "true"} if system_fields else None
        return _as_list(self._request("GET", "/v1/fields", params=params), "fields")

    def create_field(
        self, label: str, field_type: str = "text", *, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create a custom field. A dropdown needs ``metadata={"options": [...]}``, a
        currency field ``metadata={"currencyCode": "USD"}``."""
        body: dict[str, Any] = {"label": label, "fieldType": field_type}
        if metadata is not None:
            body["metadata"] = metadata
        return self._request("POST", "/v1/fields", json_body=body) or {}

    def list_sequences(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every sequence of the account, all pages; ``name`` asks the server to filter.

        The list is paged (``pageSize`` at most 1000): agencies often have more
        sequences than one page holds. A short page does not end the listing (a
        server may cap ``pageSize`` below what was asked): an empty page does, or
        one that repeats what was seen (a server ignoring ``page``).
        """
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            params: dict[str, Any] = {"page": page, "pageSize": self.sequence_page_size}
            if name:
                params["sequenceName"] = name
            batch = _as_list(self._request("GET", "/v1/sequences", params=params), "sequences")
            new = [s for s in batch if str(s.get("id")) not in seen]
            if not new:
                break
            seen.update(str(s.get("id")) for s in new)
            found.extend(new)
        else:
            raise ApiError(
                f"the list did not end after {MAX_PAGES} pages", request="GET /v1/sequences"
            )
        return found

    def list_steps(self, sequence_id: str) -> list[dict[str, Any]]:
        path = f"/v1/sequences/{_segment(sequence_id)}/steps"
        return _as_list(
            self._request("GET", path, endpoint="GET /v1/sequences/{id}/steps"), "steps"
        )

    def import_prospects(
        self,
        body_file: Path,
        *,
        to_step: bool,
        on_attempt: Callable[[int], None] | None = None,
    ) -> str:
        """POST a prepared request body (a file) and return Saleshandy's request id.

        ``on_attempt(n)`` is called before each attempt, so a caller can record
        durably that the body may be on its way before it is.
        """
        path = IMPORT_TO_STEP if to_step else IMPORT_TO_LIST
        data = self._request("POST", path, body_file=body_file, on_attempt=on_attempt)
        request_id = data.get("requestId") if isinstance(data, dict) else None
        if request_id is None or request_id == "":
            raise ApiError("the answer has no requestId", request=f"POST {path}")
        return check_request_id(request_id, f"POST {path}")

    def import_status(
        self, request_id: str, *, share: float = 1.0, deadline: float | None = None
    ) -> ImportStatus:
        """Whether Saleshandy finished the import ``request_id``, and its report link.

        ``share`` < 1: the call may use only that part of the status endpoint's
        budget (the poller's way of leaving room for everything else). A retry
        that would wait past ``deadline`` (monotonic) raises ``ImportTimeout``.
        """
        what = f"import status {request_id}"
        path = f"/v1/prospects/import-status/{_segment(request_id)}"
        data = self._request("GET", path, endpoint=STATUS_ENDPOINT, share=share, deadline=deadline)
        if not isinstance(data, dict):
            raise ApiError("unexpected answer", request=what, request_id=request_id)
        url = data.get("reportURL") or data.get("failedProspectsURL") or None
        if url is not None and not isinstance(url, str):
            raise ApiError("the report URL is not a string", request=what, request_id=request_id)
        completed = data.get("isCompleted")
        if completed not in (True, False, None, 0, 1):
            raise ApiError("isCompleted is not true or false", request=what, request_id=request_id)
        return ImportStatus(request_id, bool(completed), url)

    def list_prospects(
        self, search: str = "", page: int = 1, page_size: int = 100
    ) -> list[dict[str, Any]]:
        """One page of the account's prospects (``pageSize`` is capped at 100 by the API).

        Live it is a bare array; a ``{"prospects": [...]}`` page is read too.
        """
        params = {"search": search, "page": page, "pageSize": page_size}
        return _as_list(self._request("GET", "/v1/prospects", params=params), "prospects")

    def download_report(
        self,
        url: str,
        dest: Path,
        *,
        max_bytes: int = REPORT_MAX_BYTES,
        timeout: float = REPORT_TIMEOUT,
    ) -> Path:
        """Save the failed-rows CSV behind ``url`` to ``dest`` (0600, atomically).

        ``url`` comes from the server: it must be https (plain http only to loopback),
        the key goes only to the API's own origin, redirects are followed a few times
        and each is checked the same way, and the download is capped in bytes and in
        total time. The caller picks ``dest``; nothing in the URL names the file.
        """
        what = "download report"
        deadline = time.monotonic() + timeout
        tmp_fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".report-", suffix=".part")
        try:
            with os.fdopen(tmp_fd, "wb") as out:
                try:
                    self._fetch_report(url, out, what, max_bytes, deadline)
                except httpx.TimeoutException:
                    raise TransportError("timed out", request=what) from None
                except httpx.HTTPError as exc:
                    raise TransportError(f"{type(exc).__name__}", request=what) from None
            replace_file(tmp_name, dest)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return dest

    def _fetch_report(self, url: str, out: Any, what: str, max_bytes: int, deadline: float) -> None:
        try:
            fetch_capped(
                self._http,
                url,
                out,
                max_bytes=max_bytes,
                deadline=deadline,
                headers_for=self._report_headers,
                on_status=lambda response: error_for(response, what),
            )
        except TooBig:
            raise ApiError(f"report larger than {max_bytes} bytes", request=what) from None
        except TooSlow:
            raise TransportError("took longer than the download limit", request=what) from None
        except TooManyRedirects:
            raise ApiError(f"more than {REPORT_REDIRECTS} redirects", request=what) from None

    def _report_headers(self, url: str) -> dict[str, str]:
        """Only https (or loopback http); the key goes only to the API's own origin."""
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except (ValueError, TypeError, AttributeError):
            raise ApiError("report URL is not a valid URL") from None
        if not hostname or parts.scheme not in ("http", "https"):
            raise ApiError(f"report URL is not an http(s) URL: {parts.scheme[:10]!r}")
        if parts.scheme == "http" and not is_loopback_host(hostname):
            raise ApiError(f"refusing plain-http report URL on {hostname!r}: use https")
        api = urlsplit(self.base_url)
        if (parts.scheme, parts.netloc) == (api.scheme, api.netloc) and self._api_key:
            return {"x-api-key": self._api_key}
        return {}


def _certificate_problem(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # the ssl error sits a few causes down, under httpcore's
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _segment(value: str) -> str:
    """``value`` as one URL path segment: an id cannot climb to another endpoint."""
    return quote(str(value), safe="")


def check_request_id(value: Any, what: str) -> str:
    """A request id from the server, refused unless it is a plain, short token.

    It ends up in URL paths and file names, so "../../x", control characters or a
    megabyte of text would be a hostile (or broken) server's doing, not an id.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ApiError("the requestId is not a string", request=what)
    text = str(value)
    if (
        not text.strip()
        or len(text) > REQUEST_ID_MAX
        or text in (".", "..")
        or any(ch in "/\\" or not ch.isprintable() for ch in text)
    ):
        shown = text[:40] + ("…" if len(text) > 40 else "")
        raise ApiError(f"refusing an unusable requestId {shown!r}", request=what)
    return text


def _iter_file(fh: Any, size: int = 1024 * 1024) -> Iterator[bytes]:
    while part := fh.read(size):
        yield part


def _json(response: httpx.Response, what: str) -> Any:
    if not response.content:
        return {}
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ApiError("the answer is not JSON", request=what) from None


def _as_list(data: Any, what: str) -> list[dict[str, Any]]:
    if isinstance(data, dict):  # tolerate {"fields": [...]} style wrappers
        for value in data.values():
            if isinstance(value, list):
                data = value
                break
    if not isinstance(data, list):
        raise ApiError("unexpected answer", request=what)
    return [item for item in data if isinstance(item, dict)]
