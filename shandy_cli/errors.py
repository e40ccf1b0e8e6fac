"""One exception hierarchy for everything shandy raises on purpose.

Every error carries the process exit code the contract gives it, so the CLI can
turn any ``ShandyError`` into one line on stderr and the right exit status
without knowing which stage raised it. Messages are written for people and
never contain the API key.
"""

from __future__ import annotations

from typing import Any

from shandy_cli.exits import ExitCode


class ShandyError(Exception):
    """Base class of every error shandy raises deliberately.

    An error carries its context (the request, the chunk, the file and row) as
    attributes, set where it is known; ``str(exc)`` (and ``exc.message``) composes
    them once, outermost first: ``chunk 2: POST /v1/...: HTTP 502: Bad Gateway``.
    Nothing on the way up rewrites the words: it sets the attribute it knows.
    ``detail`` is the words alone.
    """

    exit_code: int = ExitCode.ROWS_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.detail = message
        # The ImportResult of the run it ended, when there was one (raise_for_status, or
        # an import that stopped early): what the run had done so far.
        self.result: Any = None

    @property
    def message(self) -> str:
        """The one line for people: the context, then the words."""
        return str(self)

    def context(self) -> list[str]:
        """Where it happened, outermost first: each is a prefix of the message."""
        return []

    def notes(self) -> str:
        """What follows the words (a hint, a count): empty unless a subclass knows one."""
        return ""

    def __str__(self) -> str:
        return ": ".join([*self.context(), self.detail]) + self.notes()


class InputError(ShandyError):
    """Bad input or usage: a file, a row, a column, a flag. Nothing was sent (exit 2)."""

    exit_code = ExitCode.USAGE

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.row = row
        self.column = column
        self.reason = message

    def context(self) -> list[str]:
        where = []
        if self.file is not None:
            # config imports this module: its one_line can only be imported when called.
            from shandy_cli.redaction import one_line

            where.append(one_line(str(self.file)))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return [", ".join(where)] if where else []


class ConfigError(InputError):
    """A setting is missing or invalid (no API key, a bad base URL, ...)."""


class ApiError(ShandyError):
    """The Saleshandy API (or the network to it) failed. Exit 4: resumable.

    ``status_code`` is the HTTP status, ``code`` the server's own error code
    (``40000``, ``1001``, ...) when its answer carried one, ``server_message``
    the server's words as it said them. Its context: ``request`` (the call, e.g.
    ``GET /v1/fields``), ``endpoint`` (the budget it counts against, when that is
    not the request itself), ``chunk`` (the 1-based chunk whose POST it ended) and
    ``request_id`` (the import request it was about).
    """

    exit_code = ExitCode.API

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        server_message: str | None = None,
        request: str | None = None,
        endpoint: str | None = None,
        chunk: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.server_message = server_message
        self.request = request
        self.endpoint = endpoint
        self.chunk = chunk
        self.request_id = request_id

    def context(self) -> list[str]:
        where = [] if self.chunk is None else [f"chunk {self.chunk}"]
        return where + ([self.request] if self.request else [])


class AuthenticationError(ApiError):
    """The key is missing, wrong or lacks permission (exit 3).

    Live, a bad key is answered 400 ``1001: Invalid token`` on most endpoints,
    401 on some and 403 on others: all three are this.
    """

    exit_code = ExitCode.AUTH

    # The key it was made with, masked (``mask_secret``): which key was refused.
    key_hint: str | None = None

    def notes(self) -> str:
        return f" (key {self.key_hint})" if self.key_hint else ""


class ApiValidationError(ApiError):
    """400/404/406/422: the server refused the request as invalid, with its own message."""

    exit_code = ExitCode.USAGE


class RequestTooLargeError(ApiValidationError):
    """413: the request body exceeded the API's size limit."""


class NotFoundError(ApiValidationError):
    """The API has no such thing: ``40000: Prospect import request not found``, a 404."""


class RateLimitError(ApiError):
    """Too many requests: a 429, or any status whose message says "rate limit".

    Live, Saleshandy answers its rate limit as HTTP 400 ``{"code": 40000,
    "message": "Rate Limit exceeded"}``. ``retry_after`` is in seconds when the
    server said how long to wait (``Retry-After`` or ``x-ratelimit-reset``).
    Still raised after retries when the limit did not clear within the run's
    bounds: exit 4, resumable.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        retry_after: float | None = None,
        code: str | None = None,
        server_message: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(
            message, status_code=status_code, code=code, server_message=server_message, **context
        )
        self.retry_after = retry_after
        # Set when the retries gave up: how many answers were limits, over how many seconds.
        self.attempts: int | None = None
        self.waited: float | None = None

    def notes(self) -> str:
        if self.attempts is None:
            return ""
        return (
            f" (still limited after {self.attempts} attempt(s) over {self.waited or 0:.0f}s; "
            "Saleshandy allows about 20 calls a minute per endpoint)"
        )


class ServerError(ApiError):
    """5xx from the API. ``retry_after``: the seconds its ``Retry-After`` asked for, if any."""

    retry_after: float | None = None


class TransportError(ApiError):
    """The request did not complete: connection refused or dropped, timeout, TLS failure."""


class FaultError(ShandyError):
    """The machine failed the run, not the input or the API: a full disk, a file too large,
    a damaged journal, an unusable state dir. Exit 2 if nothing was sent, 4 once anything
    was: never 1, which says the run finished (cron reads it as "some rows rejected")."""

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.exit_code = ExitCode.API if sent else ExitCode.USAGE


class JournalDamaged(FaultError):
    """``journal.sqlite3`` is not a database, or a damaged one (exit 2: nothing is sent)."""


class RowsFailed(ShandyError):
    """The run finished, but not every row went in as asked (exit 1): rows rejected here,
    failed at Saleshandy, or already in the sequence under a ``--conflict`` other than
    ``noUpdate``. Raised by ``ImportResult.raise_for_status()``; the counts are attributes."""

    exit_code = ExitCode.ROWS_FAILED

    def __init__(
        self, message: str, *, rejected: int = 0, failed: int = 0, already_present: int = 0
    ) -> None:
        super().__init__(message)
        self.rows_rejected = rejected
        self.rows_failed = failed
        self.rows_already_present = already_present


class ImportTimeout(ShandyError):
    """``--timeout`` passed while Saleshandy was still processing (exit 5)."""

    exit_code = ExitCode.TIMEOUT


class Interrupted(ShandyError):
    """Ctrl-C, SIGTERM or SIGHUP stopped the run; the journal is saved. ``exit_code`` is the
    signal's: 130 (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP)."""

    exit_code: int = ExitCode.INTERRUPTED

    def __init__(self, message: str, *, exit_code: int = ExitCode.INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an exception so the run stops at a safe point (exit 143)."""

    exit_code = ExitCode.TERMINATED


class Hangup(Terminated):
    """SIGHUP (the ssh session or terminal went away): stopped like SIGTERM (exit 129)."""

    exit_code = ExitCode.HANGUP


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    """The exit code of a stop by signal: 130 for Ctrl-C (a bare KeyboardInterrupt)."""
    return int(getattr(exc, "exit_code", ExitCode.INTERRUPTED))
