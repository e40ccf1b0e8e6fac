"""The sandbox's endpoints: a request in, a ``Response`` out, no sockets involved.

Every answer is shaped like the live API's. Success: ``{"message": ..., "payload": ...}``.
Errors come in the live shapes: request validation as NestJS sends it,
``{"statusCode": 400, "message": "..." | ["...", ...], "error": "Bad Request"}``;
application errors as ``{"code": 40000, "type": "...", "message": "..."}``; and the
gateway's ``{"error", "error_code", "error_message"}`` (a bad key on some endpoints).

Before an endpoint runs, a request passes the rate limiter (``ratelimit``) and then
authentication; see the package docstring for which endpoint answers a bad key how.
"""

from __future__ import annotations

import csv
import hmac
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import orjson

from shandy_cli.sandbox import webhooks
from shandy_cli.sandbox.faults import FaultPlan
from shandy_cli.sandbox.imports import Rejected, parse_import, rejected
from shandy_cli.sandbox.ratelimit import (
    RateLimiter,
    Verdict,
    check_rate_status,
    check_reset_format,
    ratelimit_headers,
    retry_after,
)
from shandy_cli.sandbox.requestlog import RequestLog
from shandy_cli.sandbox.seed import EMAIL_LABEL, FIELD_TYPES
from shandy_cli.sandbox.store import Prospect, Store, account_of

JSON_TYPE = "application/json; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8"
REPORT_PATH = "/v1/import-prospect/file"
REPORT_FILE_NAME = "import error report.csv"
MAX_PAGE_SIZE = 100  # GET /v1/prospects: a larger pageSize is capped to this, as live
DEFAULT_PAGE_SIZE = 25
SEQUENCES_PAGE_SIZE = 100  # GET /v1/sequences: the default pageSize ...
SEQUENCES_MAX_PAGE_SIZE = 1000  # ... and the most it takes (more is refused)
SEQUENCE_SORT_KEYS = ("createdAt", "updatedAt", "title")
IMPORT_STARTED = (
    "Prospect import has started successfully. You will be notified once the import is completed."
)
RATE_LIMIT_BODY = {"code": 40000, "type": "TOO_MANY_REQUESTS", "message": "Rate Limit exceeded"}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    limited: bool = False  # answered by the rate limiter (the request log says so)


@dataclass
class ApiRequest:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes
    base_url: str  # scheme://host:port the client reached us on, for absolute links
    peer: str = ""  # the client's address: the webhook receiver answers loopback only

    def param(self, name: str, default: str = "") -> str:
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else default

    @property
    def key(self) -> str:
        return (self.headers.get("x-api-key") or "").strip()

    @property
    def account(self) -> str:
        """The account the key opens (each key its own, as live); only read once authenticated."""
        return account_of(self.key)


@dataclass
class Timing:
    """How long imports take; read from the config of the server that accepts them."""

    delay_base: float
    delay_per_row: float


@dataclass
class RatePolicy:
    """The rate limiter and how its refusals and headers are written."""

    limiter: RateLimiter
    status: int = 400  # 400 as Saleshandy's gateway answers, or 429
    reset_format: str = "seconds"  # of x-ratelimit-reset; see ratelimit.RESET_FORMATS

    def __post_init__(self) -> None:
        check_rate_status(self.status)
        check_reset_format(self.reset_format)


def reply(status: int, message: str, payload: Any = None) -> Response:
    return Response(status, orjson.dumps({"message": message, "payload": payload}))


def error(status: int, message: str | list[str]) -> Response:
    """NestJS's answer to a bad request: ``{"statusCode", "message", "error"}``."""
    body = {"statusCode": status, "message": message, "error": HTTPStatus(status).phrase}
    return Response(status, orjson.dumps(body))


def app_error(status: int, code: int, kind: str, message: str) -> Response:
    """The API's own error shape: ``{"code", "type", "message"}``."""
    return Response(status, orjson.dumps({"code": code, "type": kind, "message": message}))


class AppError(Exception):
    """An application error (``app_error`` shape), raised from inside an endpoint."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


# How each endpoint answers a wrong key, as live clients saw it (see the package docstring).
# Functions, so every answer gets its own headers dict to add rate-limit headers to.
def invalid_token() -> Response:
    return app_error(400, 1001, "UNAUTHORIZED", "1001: Invalid token")


def gateway_unauthorized() -> Response:
    body = {"error": "Unauthorized", "error_code": "1001", "error_message": "Invalid token"}
    return Response(401, orjson.dumps(body))


def forbidden() -> Response:
    return app_error(
        403, 4003, "FORBIDDEN", "4003: You don't have required permissions to perform this task"
    )


def import_not_found() -> Response:
    # The rate limit's code on purpose, as live: clients must tell them apart by the message.
    return app_error(400, 40000, "NOT_FOUND", "40000: Prospect import request not found")


Handler = Callable[["Api", ApiRequest, re.Match[str]], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/v1/prospects/import-status/{id}": what the rate limiter counts by
    handler: Handler
    bad_key: Callable[[], Response] = invalid_token  # the answer to a wrong key
    limited: bool = True  # counted and limited; the presigned report link is not
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def is_api(self) -> bool:
        return self.template.startswith("/v1/")


class Api:
    """Routes requests to endpoint methods; one instance per running server."""

    def __init__(
        self,
        store: Store,
        faults: FaultPlan,
        request_log: RequestLog,
        *,
        api_key: str | None,
        timing: Timing,
        rate: RatePolicy,
    ) -> None:
        self.store = store
        self.faults = faults
        self.request_log = request_log
        self.api_key = api_key
        self.timing = timing
        self.rate = rate
        self.webhooks = webhooks.Inbox()  # what --notify sent here (webhooks.py)

    def handle(self, request: ApiRequest) -> Response:
        route, match = find_route(request.method, request.path)
        verdict = None
        if route is not None and route.is_api and route.limited and request.key:
            # Before authentication, as a gateway counts: a wrong key is counted under itself.
            verdict = self.rate.limiter.check(request.key, route.endpoint)
        if verdict is not None and verdict.limited:
            return self._rate_limited(verdict)
        response = self._answer(request, route, match)
        if verdict is not None:
            response.headers.update(ratelimit_headers(verdict, self.rate.reset_format))
        return response

    def _answer(
        self, request: ApiRequest, route: Route | None, match: re.Match[str] | None
    ) -> Response:
        try:
            if request.path != REPORT_PATH and request.path.startswith("/v1/"):
                # The report link is presigned: its key is the secret.
                self._authenticate(request, route.bad_key if route else invalid_token)
            if route is None or match is None:
                raise Rejected(404, f"Cannot {request.method} {request.path}")
            return route.handler(self, request, match)
        except Rejected as refused:
            return error(refused.status, refused.message)
        except AppError as failed:
            return failed.response

    def _rate_limited(self, verdict: Verdict) -> Response:
        headers = ratelimit_headers(verdict, self.rate.reset_format)
        if self.rate.status == 429:
            headers["Retry-After"] = retry_after(verdict)
        return Response(
            self.rate.status, orjson.dumps(RATE_LIMIT_BODY), headers=headers, limited=True
        )

    def _authenticate(self, request: ApiRequest, bad_key: Callable[[], Response]) -> None:
        if not request.key:
            raise Rejected(401, "Missing API key: send it in the x-api-key header")
        if self.api_key is not None and not hmac.compare_digest(
            request.key.encode(), self.api_key.encode()
        ):
            raise AppError(bad_key())

    # -- fields and sequences ----------------------------------------------------------

    def get_fields(self, request: ApiRequest, _: re.Match[str]) -> Response:
        system = request.param("systemFields").lower() == "true"
        return reply(200, "Fields fetched successfully", self.store.fields(system=system))

    def create_field(self, request: ApiRequest, _: re.Match[str]) -> Response:
        body = _json_body(request)
        problems = _field_problems(body)
        if problems:
            raise rejected(problems)
        meta = {k: body[k] for k in ("fallbackText", "metadata") if k in body}
        created = self.store.create_field(body["label"].strip(), body["fieldType"], meta)
        return reply(201, "Field created successfully", created)

    def get_sequences(self, request: ApiRequest, _: re.Match[str]) -> Response:
        page = _int_param(request, "page", 1, minimum=1)
        size = _int_param(request, "pageSize", SEQUENCES_PAGE_SIZE, minimum=1)
        if size > SEQUENCES_MAX_PAGE_SIZE:
            raise Rejected(400, f"pageSize must not be greater than {SEQUENCES_MAX_PAGE_SIZE}")
        listed = _sorted_sequences(self.store.sequences(), request)
        needle = request.param("sequenceName").casefold()
        if needle:
            listed = [s for s in listed if needle in s["title"].casefold()]
        chunk = listed[(page - 1) * size : page * size]
        return reply(200, "Sequences fetched successfully", chunk)

    def get_steps(self, _request: ApiRequest, match: re.Match[str]) -> Response:
        sequence_id = unquote(match["id"])
        steps = self.store.steps(sequence_id)
        if steps is None:
            raise Rejected(404, f"Sequence {sequence_id} not found")
        return reply(200, "Steps fetched successfully", steps)

    # -- imports -----------------------------------------------------------------------

    def import_to_step(self, request: ApiRequest, _: re.Match[str]) -> Response:
        return self._import(request, to_step=True)

    def import_to_list(self, request: ApiRequest, _: re.Match[str]) -> Response:
        return self._import(request, to_step=False)

    def _import(self, request: ApiRequest, *, to_step: bool) -> Response:
        parsed = parse_import(
            _json_body(request, any_json=True),
            to_step=to_step,
            field_types=self.store.field_types(),
            step_ids=self.store.step_ids(),
        )
        duration = self.timing.delay_base + len(parsed.prospects) * self.timing.delay_per_row
        request_id = self.store.accept_import(
            parsed, account=request.account, now=time.time(), duration=duration
        )
        return reply(201, IMPORT_STARTED, {"requestId": request_id})

    def import_status(self, request: ApiRequest, match: re.Match[str]) -> Response:
        request_id = unquote(match["id"])
        state = self.store.import_state(request_id, request.account)
        if state is None:
            raise AppError(import_not_found())
        completed = time.time() >= state.done_at
        report_url = None
        if completed and state.report_key:
            query = urlencode({"fileName": REPORT_FILE_NAME, "key": state.report_key})
            report_url = f"{request.base_url}{REPORT_PATH}?{query}"
        message = "Prospect import is completed" if completed else "Prospect import is in progress"
        return reply(200, message, {"isCompleted": completed, "reportURL": report_url})

    def report_file(self, request: ApiRequest, _: re.Match[str]) -> Response:
        found = self.store.report(request.param("key"))
        # Unknown key and unfinished import look alike, as a presigned link that isn't there yet.
        if found is None or time.time() < found[0].done_at:
            raise Rejected(404, "Report not found")
        disposition = f'attachment; filename="{REPORT_FILE_NAME}"'
        return Response(200, report_csv(found[1]), CSV_TYPE, {"Content-Disposition": disposition})

    # -- prospects ---------------------------------------------------------------------

    def get_prospects(self, request: ApiRequest, _: re.Match[str]) -> Response:
        page = _int_param(request, "page", 1, minimum=1)
        # Live caps a larger pageSize instead of refusing it: a client must not assume it got
        # what it asked for.
        size = min(_int_param(request, "pageSize", DEFAULT_PAGE_SIZE, minimum=1), MAX_PAGE_SIZE)
        prospects = self.store.prospects(
            account=request.account,
            search=request.param("search"),
            page=page,
            page_size=size,
            now=time.time(),
        )
        return reply(200, "Prospects fetched successfully", [_prospect_json(p) for p in prospects])

    # -- /_sandbox control (no key: it is the test harness's, not the API's) ------------

    def set_faults(self, request: ApiRequest, _: re.Match[str]) -> Response:
        body = _json_body(request, required=False)
        unknown = [k for k in body if k not in ("script", "match", "rate", "kinds", "seed")]
        if unknown:
            raise Rejected(400, "; ".join(f"property {k} should not exist" for k in unknown))
        try:
            self.faults.configure(**body)
        except (TypeError, ValueError) as exc:
            raise Rejected(400, f"Invalid fault plan: {exc}") from None
        return reply(200, "Fault plan set", self.faults.describe())

    def get_faults(self, _request: ApiRequest, _: re.Match[str]) -> Response:
        return reply(200, "Fault plan", self.faults.describe())

    def get_requests(self, _request: ApiRequest, _: re.Match[str]) -> Response:
        return reply(200, "Request log", self.request_log.entries())

    def reset(self, _request: ApiRequest, _: re.Match[str]) -> Response:
        self.reset_state()
        return reply(200, "Sandbox reset", None)

    def reset_state(self) -> None:
        """Forget prospects, imports, created fields, faults, the request log and rate counts."""
        self.store.reset()
        self.faults.configure()
        self.request_log.clear()
        self.rate.limiter.clear()
        self.webhooks.clear()


_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/fields", Api.get_fields),
    Route("POST", "/v1/fields", Api.create_field, bad_key=forbidden),
    Route("GET", "/v1/sequences", Api.get_sequences, bad_key=gateway_unauthorized),
    Route("GET", "/v1/sequences/{id}/steps", Api.get_steps),
    Route("POST", "/v1/sequences/prospects/import-with-field-name", Api.import_to_step),
    Route("POST", "/v1/prospects/import-with-field-name", Api.import_to_list),
    Route("GET", "/v1/prospects/import-status/{id}", Api.import_status),
    Route("GET", REPORT_PATH, Api.report_file, limited=False),
    Route("GET", "/v1/prospects", Api.get_prospects),
    Route("POST", "/_sandbox/faults", Api.set_faults),
    Route("GET", "/_sandbox/faults", Api.get_faults),
    Route("GET", "/_sandbox/requests", Api.get_requests),
    Route("POST", "/_sandbox/reset", Api.reset),
    Route("POST", "/webhooks/{name}", webhooks.receive),
    Route("GET", "/webhooks/{name}", webhooks.listing),
    Route("DELETE", "/webhooks/{name}", webhooks.forget),
    Route("POST", "/services/{team}/{bot}/{token}", webhooks.slack),
)


def find_route(method: str, path: str) -> tuple[Route | None, re.Match[str] | None]:
    for route in _ROUTES:
        match = route.pattern.fullmatch(path)
        if match and route.method == method:
            return route, match
    return None, None


def endpoint_of(method: str, path: str) -> str | None:
    """``"GET /v1/prospects/import-status/{id}"`` for a request, or None off the routes."""
    route, _ = find_route(method, path)
    return route.endpoint if route is not None else None


def _field_problems(body: dict[str, Any]) -> list[str]:
    """What is wrong with a ``POST /v1/fields`` body, as NestJS would list it."""
    allowed = ("label", "fieldType", "fallbackText", "metadata")
    problems = [f"property {k} should not exist" for k in body if k not in allowed]
    label, field_type = body.get("label"), body.get("fieldType")
    metadata = body.get("metadata", {})
    if not isinstance(label, str) or not label.strip():
        problems.append("label must be a non-empty string")
    if field_type not in FIELD_TYPES:
        problems.append(
            f"fieldType must be one of the following values: {', '.join(sorted(FIELD_TYPES))}"
        )
    if "fallbackText" in body and not isinstance(body["fallbackText"], str):
        problems.append("fallbackText must be a string")
    if not isinstance(metadata, dict):
        return [*problems, "metadata must be an object"]
    options = metadata.get("options")
    if field_type == "dropdown" and not (
        isinstance(options, list) and options and all(isinstance(o, str) for o in options)
    ):
        problems.append("metadata.options must be a non-empty array of strings for a dropdown")
    code = metadata.get("currencyCode")
    if field_type == "currency" and not (isinstance(code, str) and code.strip()):
        problems.append("metadata.currencyCode is required for a currency field")
    return problems


def _sorted_sequences(sequences: list[dict[str, Any]], request: ApiRequest) -> list[dict[str, Any]]:
    """The listing in ``sortBy`` order (``title``, or creation: newest first) and ``sort``."""
    sort_by, sort = request.param("sortBy"), request.param("sort").lower()
    problems = []
    if sort_by and sort_by not in SEQUENCE_SORT_KEYS:
        problems.append(
            f"sortBy must be one of the following values: {', '.join(SEQUENCE_SORT_KEYS)}"
        )
    if sort not in ("", "asc", "desc"):
        problems.append("sort must be one of the following values: asc, desc")
    if problems:
        raise rejected(problems)
    if sort_by == "title":
        listed = sorted(sequences, key=lambda s: s["title"].casefold())
        return listed[::-1] if sort == "desc" else listed
    return sequences[::-1] if sort == "asc" else sequences  # listed newest first


def _json_body(request: ApiRequest, *, required: bool = True, any_json: bool = False) -> Any:
    """The body as JSON. ``any_json``: let the caller judge a non-object (it names the problem)."""
    if not request.body and not required:
        return {}
    media_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if required and media_type != "application/json":
        raise Rejected(400, "Content-Type must be application/json")
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"Invalid JSON in request body: {exc}") from None
    if not any_json and not isinstance(body, dict):
        raise Rejected(400, "Request body must be a JSON object")
    return body


def _int_param(request: ApiRequest, name: str, default: int, *, minimum: int) -> int:
    raw = request.param(name)
    if raw == "":
        return default
    if not raw.isascii() or not raw.isdigit():
        raise Rejected(400, f"{name} must be an integer")
    value = int(raw)
    if value < minimum:
        raise Rejected(400, f"{name} must not be less than {minimum}")
    return value


def _prospect_json(prospect: Prospect) -> dict[str, Any]:
    return {
        "id": prospect.id,
        "email": prospect.email,
        "attributes": [{"key": k, "value": v} for k, v in prospect.attributes],
        "steps": prospect.steps,
        "tags": prospect.tags,
    }


def report_csv(rows: list[tuple[dict[str, str], str]]) -> bytes:
    """The error report: ``Email``, the other labels in order of first appearance, ``Reason``."""
    columns = dict.fromkeys(label for data, _ in rows for label in data)  # ordered, unique
    labels = [label for label in columns if label != EMAIL_LABEL]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([EMAIL_LABEL, *labels, "Reason"])
    for data, reason in rows:
        writer.writerow(
            [data.get(EMAIL_LABEL, ""), *(data.get(label, "") for label in labels), reason]
        )
    return out.getvalue().encode("utf-8")
