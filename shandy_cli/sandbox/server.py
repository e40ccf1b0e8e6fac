"""The sandbox's HTTP layer on the stdlib, so every byte on the socket is ours to decide.

This layer owns what happens before the API sees a request: body framing (411, 413
decided from ``Content-Length`` without reading the body), fault injection (which
may answer for the API, drop the connection, or stall), and the request log. A fault
that answers for the API bypasses the rate limiter: it is neither counted nor given
``x-ratelimit-*`` headers it did not ask for.
"""

from __future__ import annotations

import logging
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import orjson

from shandy_cli.sandbox.api import (
    RATE_LIMIT_BODY,
    Api,
    ApiRequest,
    RatePolicy,
    Response,
    Timing,
    endpoint_of,
    error,
)
from shandy_cli.sandbox.faults import Fault, FaultPlan
from shandy_cli.sandbox.imports import MAX_BODY_BYTES
from shandy_cli.sandbox.ratelimit import RateLimiter, format_reset
from shandy_cli.sandbox.requestlog import RequestLog
from shandy_cli.sandbox.seed import generated_sequences
from shandy_cli.sandbox.store import Store

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox/"
_BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass
class SandboxConfig:
    state_dir: Path  # SQLite db at state_dir / "sandbox.sqlite3" (dir created 0700)
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    api_key: str | None = None  # None: any non-empty x-api-key is accepted
    delay_base: float = 1.0  # seconds before an import completes ...
    delay_per_row: float = 0.00002  # ... plus this per prospect (100k rows -> +2 s)
    fault_rate: float = 0.0  # probability of a random fault per /v1 request
    fault_kinds: tuple[str, ...] = ("429", "502")
    fault_seed: int | None = None
    quiet: bool = True  # no access log on stderr
    # Rate limits, on by default as on the live API: calls per key in a sliding window,
    # per endpoint (method + route template) and in total. None turns one off.
    rate_per_endpoint: int | None = 20
    rate_total: int | None = 300
    rate_window: float = 60.0  # seconds
    rate_status: int = 400  # 400 as Saleshandy's gateway answers, or 429 with Retry-After
    rate_reset_format: str = "seconds"  # x-ratelimit-reset: epoch | seconds | http-date | iso
    # Sequences listed before the seeded ones, for paging: ``extra_sequence_titles`` named
    # ones (seqExtra01, ...), then ``extra_sequences`` generated ones (seqGen001 "Campaign 001").
    extra_sequences: int = 0
    extra_sequence_titles: tuple[str, ...] = ()


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, config: SandboxConfig) -> None:
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        self.config = config
        if config.extra_sequences < 0:
            raise ValueError(f"extra_sequences must be >= 0, not {config.extra_sequences}")
        extra = generated_sequences(config.extra_sequences, tuple(config.extra_sequence_titles))
        self.store = Store(config.state_dir, extra)
        self.faults = FaultPlan(config.fault_rate, config.fault_kinds, config.fault_seed)
        self.request_log = RequestLog()
        limiter = RateLimiter(config.rate_per_endpoint, config.rate_total, config.rate_window)
        self.api = Api(
            self.store,
            self.faults,
            self.request_log,
            api_key=config.api_key,
            timing=Timing(config.delay_base, config.delay_per_row),
            rate=RatePolicy(limiter, config.rate_status, config.rate_reset_format),
        )
        self.stopping = threading.Event()
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__((config.host, config.port), SandboxHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, a DNS lookup that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._live_lock:
            self._live.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut keep-alive connections, so a stopped sandbox really stops answering."""
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is routine in fault tests; anything else is a bug.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    server_version = "shandy-sandbox"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection gives its thread back eventually
    disable_nagle_algorithm = True  # else headers and body, written apart, wait on delayed ACKs
    server: SandboxServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def handle_expect_100(self) -> bool:
        # Refuse before "100 Continue" when the body would be refused anyway.
        if self._framing_problem() is not None:
            self._serve()
            return False
        return super().handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.config.quiet:
            super().log_message(format, *args)

    # -- one request ---------------------------------------------------------------------

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        entry: dict[str, Any] = {
            "method": self.command,
            "path": path,
            "query": query,
            "status": None,  # stays None when a fault drops the connection
            "bytes": 0,  # the request body's declared length
            "fault": None,
            "time": time.time(),
            "endpoint": endpoint_of(self.command, path),  # "GET /v1/prospects/import-status/{id}"
            "limited": False,  # answered by the rate limiter
        }
        # Logged before it is answered (and filled in as it is): a client that has
        # its response must find its request in the log, not race the handler to it.
        if not path.startswith(CONTROL_PREFIX):
            self.server.request_log.add(entry)
        try:
            self._handle(entry, path, query)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("sandbox internal error answering %s %s", self.command, path)
            if entry["status"] is None:
                with suppress(OSError):
                    self._send(error(500, "Sandbox internal error"), entry, close=True)
            self.close_connection = True

    def _handle(self, entry: dict[str, Any], path: str, query: str) -> None:
        declared = (self.headers.get("Content-Length") or "0").strip()
        length = int(declared) if declared.isascii() and declared.isdigit() else 0
        entry["bytes"] = length
        problem = self._framing_problem()
        if problem is not None:
            self._send(problem, entry, close=True)  # the body is not read, so the stream is lost
            return
        fault = self.server.faults.next_fault(path)
        entry["fault"] = fault.spec if fault else None
        if fault and fault.kind == "drop-before":
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""  # one read: 17 MB is fine
        if len(body) < length:
            self.close_connection = True  # the client went away mid-body
            return
        if fault and fault.kind in ("status", "ratelimit"):
            self._send(_fault_response(fault), entry)
            return
        if fault and fault.kind == "slow":
            self.server.stopping.wait(fault.seconds)
        response = self.server.api.handle(
            ApiRequest(
                self.command,
                path,
                query,
                self.headers,
                body,
                self._base_url(),
                peer=str(self.client_address[0]),
            )
        )
        if fault and fault.kind == "drop-after":
            self.close_connection = True  # processed and stored, but the answer is "lost"
            return
        self._send(response, entry)

    def _framing_problem(self) -> Response | None:
        """An answer for a body we won't read (411, 413, bad length), or ``None`` if it's fine."""
        if self.headers.get("Transfer-Encoding") is not None:
            return error(411, "Content-Length is required; chunked request bodies are not accepted")
        declared = self.headers.get("Content-Length")
        if declared is None:
            if self.command in _BODY_METHODS:
                return error(411, "Content-Length header is required")
            return None
        declared = declared.strip()
        if not declared.isascii() or not declared.isdigit():
            return error(400, f"Invalid Content-Length: {declared!r}")
        if int(declared) > MAX_BODY_BYTES:
            return error(
                413,
                f"Request body of {int(declared)} bytes exceeds the limit"
                f" of {MAX_BODY_BYTES} bytes",
            )
        return None

    def _send(self, response: Response, entry: dict[str, Any], *, close: bool = False) -> None:
        entry["status"] = response.status
        entry["limited"] = response.limited
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)
        self.wfile.flush()

    def _base_url(self) -> str:
        """Where the client reached us, so links we hand out point back at this server."""
        host = self.headers.get("Host")
        if not host:
            bound, port = self.server.server_address[:2]
            bound = str(bound)
            host = f"[{bound}]:{port}" if ":" in bound else f"{bound}:{port}"
        return f"http://{host}"


def _fault_response(fault: Fault) -> Response:
    if fault.kind == "ratelimit":
        return _rate_limit_fault_response(fault)
    if fault.status == 429:
        headers = {}
        if fault.retry_after == "date":
            headers["Retry-After"] = formatdate(time.time() + 2, usegmt=True)
        elif fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        return Response(429, error(429, "Too Many Requests").body, headers=headers)
    if fault.status == 502:
        # Real gateways answer 502 with an HTML page, not the API's JSON.
        page = (
            b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
        )
        return Response(502, page, "text/html")
    return error(fault.status, "Sandbox fault injected: " + fault.spec)


def _rate_limit_fault_response(fault: Fault) -> Response:
    """The live 400 rate-limit answer; with a reset time, the headers saying when to retry."""
    headers = {}
    if fault.reset_format is not None:
        now = time.time()
        headers["x-ratelimit-remaining"] = "0"
        headers["x-ratelimit-reset"] = format_reset(now + fault.seconds, now, fault.reset_format)
    body = orjson.dumps(RATE_LIMIT_BODY | {"code": fault.code})
    return Response(fault.status, body, headers=headers)


class Sandbox:
    """A running sandbox server (see ``start_sandbox``); stop it, or use it as a context manager."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._server = SandboxServer(config)
        bound, port = self._server.server_address[:2]
        host = str(bound)
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one interval
            name=f"shandy-sandbox-{port}",
            daemon=True,
        )
        self._stopped = False

    def _start(self) -> None:
        self._thread.start()

    def set_faults(
        self,
        script: list[str] | None = None,
        *,
        match: str | None = None,
        rate: float | None = None,
        kinds: list[str] | None = None,
        seed: int | None = None,
    ) -> None:
        """Replace the fault plan; what is left out is off (``set_faults()`` ends all faults)."""
        self._server.faults.configure(script, match=match, rate=rate, kinds=kinds, seed=seed)

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first; see ``RequestLog`` for the keys of an entry."""
        return self._server.request_log.entries()

    def reset(self) -> None:
        """Forget prospects, imports, created fields, faults, the request log and rate counts."""
        self._server.api.reset_state()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.stopping.set()  # wakes requests sleeping in a "slow" fault
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_sandbox(config: SandboxConfig) -> Sandbox:
    """Start a sandbox on a background thread; it is listening when this returns."""
    sandbox = Sandbox(config)  # binds and listens: connections queue from here on
    sandbox._start()
    return sandbox


def serve_forever(config: SandboxConfig, on_ready: Callable[[Sandbox], None] | None = None) -> None:
    """Run a sandbox in the foreground until Ctrl-C (or SIGTERM), then stop it cleanly.

    ``on_ready`` hears the listening sandbox (its ``url``): the ``shandy sandbox`` command
    says where it listens; the library itself prints nothing.
    """
    restore = _raise_on_sigterm()
    try:
        with start_sandbox(config) as sandbox:
            if on_ready is not None:
                on_ready(sandbox)
            with suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    finally:
        restore()


def _raise_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM stop like Ctrl-C does (main thread only); returns what undoes that."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    return restore
