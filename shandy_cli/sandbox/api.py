"""The sandbox's endpoints: a request in, a ``Response`` out, no sockets involved.

Every answer is shaped like the real API's: JSON ``{"message": ..., "payload": ...}``;
errors add ``statusCode`` and ``error`` as NestJS does, and the message names the
problem so a client can show it to a person.
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

from shandy_cli.sandbox.faults import FaultPlan
from shandy_cli.sandbox.imports import Rejected, parse_import
from shandy_cli.sandbox.requestlog import RequestLog
from shandy_cli.sandbox.seed import EMAIL_LABEL, FIELD_TYPES
from shandy_cli.sandbox.store import Prospect, Store

JSON_TYPE = "application/json; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8"
REPORT_PATH = "/v1/import-prospect/file"
REPORT_FILE_NAME = "import error report.csv"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25
IMPORT_STARTED = (
    "Prospect import has started successfully. You will be notified once the import is completed."
)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiRequest:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes
    base_url: str  # scheme://host:port the client reached us on, for absolute links

    def param(self, name: str, default: str = "") -> str:
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else default


@dataclass
class Timing:
    """How long imports take; read from the config of the server that accepts them."""

    delay_base: float
    delay_per_row: float


def reply(status: int, message: str, payload: Any = None) -> Response:
    return Response(status, orjson.dumps({"message": message, "payload": payload}))


def error(status: int, message: str) -> Response:
    body = {
        "message": message,
        "payload": None,
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
    }
    return Response(status, orjson.dumps(body))


Handler = Callable[["Api", ApiRequest, re.Match[str]], Response]


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
    ) -> None:
        self.store = store
        self.faults = faults
        self.request_log = request_log
        self.api_key = api_key
        self.timing = timing

    def handle(self, request: ApiRequest) -> Response:
        try:
            return self._dispatch(request)
        except Rejected as rejected:
            return error(rejected.status, rejected.message)

    def _dispatch(self, request: ApiRequest) -> Response:
        if request.method == "GET" and request.headers.get("Content-Type") is not None:
            raise Rejected(406, "A GET request must not carry a Content-Type header")
        if request.path != REPORT_PATH and request.path.startswith("/v1/"):
            self._authenticate(request)  # the report link is presigned: its key is the secret
        for method, pattern, handler in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return handler(self, request, match)
        raise Rejected(404, f"Cannot {request.method} {request.path}")

    def _authenticate(self, request: ApiRequest) -> None:
        key = (request.headers.get("x-api-key") or "").strip()
        if not key:
            raise Rejected(401, "Missing API key: send it in the x-api-key header")
        if self.api_key is not None and not hmac.compare_digest(
            key.encode(), self.api_key.encode()
        ):
            raise Rejected(401, "Invalid API key")

    # -- fields and sequences ----------------------------------------------------------

    def get_fields(self, request: ApiRequest, _: re.Match[str]) -> Response:
        system = request.param("systemFields").lower() == "true"
        return reply(200, "Fields fetched successfully", self.store.fields(system=system))

    def create_field(self, request: ApiRequest, _: re.Match[str]) -> Response:
        body = _json_body(request)
        problems = [
            f"property {k} should not exist" for k in body if k not in ("label", "fieldType")
        ]
        label = body.get("label")
        if not isinstance(label, str) or not label.strip():
            problems.append("label must be a non-empty string")
        if body.get("fieldType") not in FIELD_TYPES:
            problems.append(
                f"fieldType must be one of the following values: {', '.join(sorted(FIELD_TYPES))}"
            )
        if problems:
            raise Rejected(400, "; ".join(problems))
        created = self.store.create_field(label.strip(), body["fieldType"])
        return reply(201, "Field created successfully", created)

    def get_sequences(self, _request: ApiRequest, _: re.Match[str]) -> Response:
        return reply(200, "Sequences fetched successfully", self.store.sequences())

    def get_steps(self, _request: ApiRequest, match: re.Match[str]) -> Response:
        sequence_id = unquote(match["id"])
        steps = self.store.steps(sequence_id)
        if steps is None:
            raise Rejected(404, f"Sequence {sequence_id} not found")
        return reply(200, "Steps fetched successfully", steps)

    # -- imports -----------------------------------------------------------------------

    def import_to_step(self, request: ApiRequest, _: re.Match[str]) -> Response:
        return self._import(request, with_step=True)

    def import_to_list(self, request: ApiRequest, _: re.Match[str]) -> Response:
        return self._import(request, with_step=False)

    def _import(self, request: ApiRequest, *, with_step: bool) -> Response:
        parsed = parse_import(
            _json_body(request, any_json=True),
            with_step=with_step,
            labels=self.store.labels(),
            step_ids=self.store.step_ids() if with_step else (),
        )
        now = time.time()
        done_at = now + self.timing.delay_base + len(parsed.prospects) * self.timing.delay_per_row
        request_id = self.store.accept_import(parsed, now=now, done_at=done_at)
        return reply(201, IMPORT_STARTED, {"requestId": request_id})

    def import_status(self, request: ApiRequest, match: re.Match[str]) -> Response:
        request_id = unquote(match["id"])
        state = self.store.import_state(request_id)
        if state is None:
            raise Rejected(404, f"Import request {request_id} not found")
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
        page_size = _int_param(request, "pageSize", DEFAULT_PAGE_SIZE, minimum=1)
        if page_size > MAX_PAGE_SIZE:
            raise Rejected(400, f"pageSize must not be greater than {MAX_PAGE_SIZE}")
        prospects, total = self.store.prospects(
            search=request.param("search"), page=page, page_size=page_size, now=time.time()
        )
        payload = {
            "prospects": [_prospect_json(p) for p in prospects],
            "total": total,
            "page": page,
            "pageSize": page_size,
        }
        return reply(200, "Prospects fetched successfully", payload)

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
        self.store.reset()
        self.faults.configure()
        self.request_log.clear()
        return reply(200, "Sandbox reset", None)


_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(r"/v1/fields"), Api.get_fields),
    ("POST", re.compile(r"/v1/fields"), Api.create_field),
    ("GET", re.compile(r"/v1/sequences"), Api.get_sequences),
    ("GET", re.compile(r"/v1/sequences/(?P<id>[^/]+)/steps"), Api.get_steps),
    ("POST", re.compile(r"/v1/sequences/prospects/import-with-field-name"), Api.import_to_step),
    ("POST", re.compile(r"/v1/prospects/import-with-field-name"), Api.import_to_list),
    ("GET", re.compile(r"/v1/prospects/import-status/(?P<id>[^/]+)"), Api.import_status),
    ("GET", re.compile(re.escape(REPORT_PATH)), Api.report_file),
    ("GET", re.compile(r"/v1/prospects"), Api.get_prospects),
    ("POST", re.compile(r"/_sandbox/faults"), Api.set_faults),
    ("GET", re.compile(r"/_sandbox/faults"), Api.get_faults),
    ("GET", re.compile(r"/_sandbox/requests"), Api.get_requests),
    ("POST", re.compile(r"/_sandbox/reset"), Api.reset),
]


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
