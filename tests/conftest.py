"""Shared pytest fixtures, and the order tests are scheduled in.

Fixtures only: helpers for one test file live in that file. Under pytest-xdist each
worker is its own process with its own ``tmp_path`` root, and every server here binds
port 0, so tests on different workers share nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shandy_cli.sandbox import Sandbox, SandboxConfig, start_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A running sandbox on a free port; imports complete 0.05 s after they are accepted."""
    config = SandboxConfig(state_dir=tmp_path / "sandbox", delay_base=0.05, delay_per_row=0.0)
    with start_sandbox(config) as running:
        yield running


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with any ``SandboxConfig`` settings; all are stopped after the test.

    Defaults match the ``sandbox`` fixture (same state dir, 0.05 s imports), so two
    sandboxes started from one factory share their database unless told otherwise.
    """
    started: list[Sandbox] = []

    def start(**settings: Any) -> Sandbox:
        settings.setdefault("state_dir", tmp_path / "sandbox")
        settings.setdefault("delay_base", 0.05)
        settings.setdefault("delay_per_row", 0.0)
        running = start_sandbox(SandboxConfig(**settings))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@dataclass
class Recorder:
    """A tiny scripted HTTP server: answers from a queue, records what it was sent."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    seen: list[dict] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            sent = dict(self.headers)
            rec.seen.append(
                {"method": self.command, "path": self.path, "headers": sent, "body": body}
            )
            status, headers, payload = rec.answers.pop(0) if rec.answers else (200, {}, b"{}")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first (otherwise in file order): under xdist a long test
    started last is the whole suite's tail. Order is scheduling only: no test needs it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
