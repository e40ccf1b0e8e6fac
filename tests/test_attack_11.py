"""Issue 11 under attack: a hostile server and a hostile user, over real HTTP.

Each test here failed before its fix: a stale ``Retry-After`` that made the client
hammer a limited key, ``--timeout`` outlived by rate-limit retries, a server quoting
the key into ``--json``, a POST refused outright taken for a resent one (by this
process or a resume), a budget wait in ``status --wait`` that was silence, and a
sequence whose step has no id crashing the run (or sending ``stepId: "None"``).
"""

from __future__ import annotations

import email.utils
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shandy_cli import RetryPolicy, SaleshandyClient, import_files
from shandy_cli.client import STATUS_ENDPOINT
from shandy_cli.errors import ApiError
from shandy_cli.pipeline.submission import resolve_step
from shandy_cli.ratelimit import RateLimits
from shandy_cli.sandbox import Sandbox
from shandy_cli.status import check_status
from tests.test_import import HEADER, leads, write_csv

STATUS = "/v1/prospects/import-status/"
STEP_IMPORT = "/v1/sequences/prospects/import-with-field-name"
KEY = "hostile-key-SECRET-98765"
LIMITED = {"code": 40000, "type": "TOO_MANY_REQUESTS", "message": "Rate Limit exceeded"}
FIELDS = [{"id": str(i), "label": label, "fieldType": "text"} for i, label in enumerate(HEADER)]

Answer = tuple[int, dict[str, str], Any]
Decide = Callable[[str, str, dict[str, str]], Answer | None]


class Hostile:
    """A server whose every answer a test decides; ``None`` falls back to a happy API."""

    def __init__(self, decide: Decide) -> None:
        self.decide = decide
        self.seen: list[tuple[float, str, str]] = []
        self.posts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((time.monotonic(), self.command, self.path))
                status, headers, body = outer.answer(self.command, self.path, dict(self.headers))
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, method: str, path: str, headers: dict[str, str]) -> Answer:
        if method == "POST":
            self.posts += 1
        decided = self.decide(method, path, headers)
        if decided is not None:
            return decided
        route = urlsplit(path).path
        if route == "/v1/fields":
            return 200, {}, {"payload": FIELDS}
        if method == "POST":
            return 201, {}, {"payload": {"requestId": f"r{self.posts}"}}
        if route.startswith(STATUS):
            return 200, {}, {"payload": {"isCompleted": True}}
        return 200, {}, {"payload": []}

    def calls(self, prefix: str) -> int:
        return sum(1 for _, _, path in self.seen if path.startswith(prefix))


@pytest.fixture
def hostile() -> Iterator[Callable[[Decide], Hostile]]:
    servers: list[Hostile] = []

    def start(decide: Decide) -> Hostile:
        servers.append(Hostile(decide))
        return servers[-1]

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


def shandy(
    *args: str, tmp_path: Path, url: str, key: str = KEY, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(SALESHANDY_BASE_URL=url, SALESHANDY_API_KEY=key,
               SHANDY_STATE_DIR=str(tmp_path / "state"))  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "shandy_cli", *args], capture_output=True, text=True,
        env=env, cwd=tmp_path, timeout=timeout,
    )  # fmt: skip


# -- (3) a rate-limit answer whose wait is already over by our clock ------------------------


@pytest.mark.parametrize("hint", ["past-date", "zero", "past-epoch-reset"])
def test_a_stale_rate_limit_hint_does_not_hammer_the_key(hostile, hint: str) -> None:
    """A server whose clock is behind ours (or that says ``Retry-After: 0``) while its
    limit still holds for a few seconds: the client used to retry 12 times in ~2 s and
    give up (exit 4). A hint that proved too short is a floor under a growing backoff."""
    started = time.monotonic()

    def decide(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if not path.startswith(STATUS) or time.monotonic() - started > 3.0:
            return None
        if hint == "past-date":
            said = {"Retry-After": email.utils.formatdate(time.time() - 10, usegmt=True)}
        elif hint == "zero":
            said = {"Retry-After": "0"}
        else:
            said = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) - 5)}
        return 400, said, LIMITED

    server = hostile(decide)
    policy = RetryPolicy(rate_limit_base=0.5, max_total=30)
    with SaleshandyClient(server.url, KEY, retry=policy, on_retry=None) as client:
        status = client.import_status("r1")
    assert status.completed
    assert server.calls(STATUS) <= 8  # not a dozen calls in two seconds


# -- (4) --timeout is kept when the status polls are rate-limited -------------------------


def limit_status(seconds: int) -> Decide:
    def decide(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if path.startswith(STATUS):
            return 400, {"Retry-After": str(seconds)}, LIMITED
        return None

    return decide


@pytest.mark.timeout(120)
def test_status_wait_keeps_its_timeout_under_a_rate_limit(hostile, tmp_path: Path) -> None:
    """Another client on the key has the status endpoint limited for 40 s at a time:
    ``--timeout 4`` used to wait out up to 300 s of retries, then exit 4."""
    server = hostile(limit_status(40))
    began = time.monotonic()
    done = shandy("status", "r1", "--wait", "--timeout", "4", tmp_path=tmp_path, url=server.url)
    assert time.monotonic() - began < 20
    assert done.returncode == 5, done.stderr
    assert "--timeout passed" in done.stderr


@pytest.mark.timeout(120)
def test_import_wait_keeps_its_timeout_under_a_rate_limit(hostile, tmp_path: Path) -> None:
    server = hostile(limit_status(40))
    write_csv(tmp_path / "leads.csv", HEADER, leads(5))
    began = time.monotonic()
    done = shandy("import", "leads.csv", "--step", "S1", "--timeout", "4", "--json",
                  tmp_path=tmp_path, url=server.url)  # fmt: skip
    assert time.monotonic() - began < 20
    assert done.returncode == 5, done.stderr
    result = json.loads(done.stdout)
    assert result["chunks"][0]["state"] == "accepted" and "shandy status r1" in result["error"]


# -- (7) the key, quoted back by the server, never reaches stdout ---------------------------


def test_a_key_quoted_by_the_server_is_masked_in_json(hostile, tmp_path: Path) -> None:
    """The key is revoked after the first chunk and the gateway quotes it in its error:
    the one-line error masked it, the ``--json`` document's ``error`` did not."""

    def decide(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if method == "POST" and server.posts >= 2:
            return 400, {}, {"code": 1001, "message": f"1001: Invalid token {headers['x-api-key']}"}
        return None

    server = hostile(decide)
    write_csv(tmp_path / "leads.csv", HEADER, leads(20))
    done = shandy("import", "leads.csv", "--step", "S1", "--max-rows", "10", "--json",
                  tmp_path=tmp_path, url=server.url)  # fmt: skip
    assert done.returncode == 3
    assert KEY not in done.stdout and KEY not in done.stderr
    assert "****8765" in json.loads(done.stdout)["error"]


# -- (5) a POST refused outright delivered nothing: no resend, now or on resume -------------


def seed_and_file(sandbox: Sandbox, tmp_path: Path) -> Path:
    """Three prospects already in the sequence of StepA1 (a run in another state dir)."""
    src = write_csv(tmp_path / "leads.csv", HEADER, leads(3))
    with SaleshandyClient(sandbox.url, "test-key") as client:
        seeded = import_files([str(src)], client=client, state_dir=tmp_path / "seed",
                              step_id="StepA1", poll_interval=0.05, timeout=30)  # fmt: skip
    assert seeded.exit_code == 0
    return src


def test_a_post_refused_then_resumed_is_no_resend(sandbox: Sandbox, tmp_path: Path) -> None:
    """The chunk's only POST was refused (the rate limit did not clear): the journal kept
    it "sending", so the next run warned its answer was lost and counted the prospects
    already in the sequence as its own repeats: exit 0 under overwrite, not 1."""
    src = seed_and_file(sandbox, tmp_path)
    sandbox.set_faults(["rl400"] * 3, match=STEP_IMPORT)
    once = RetryPolicy(rate_limit_attempts=1)
    client = SaleshandyClient(sandbox.url, "test-key", retry=once, on_retry=None)
    with client, pytest.raises(ApiError) as refused:
        import_files([str(src)], client=client, state_dir=tmp_path / "state",
                     step_id="StepA1", conflict="overwrite", poll_interval=0.05)  # fmt: skip
    assert refused.value.exit_code == 4
    sandbox.set_faults()
    with SaleshandyClient(sandbox.url, "test-key") as client:
        again = import_files([str(src)], client=client, state_dir=tmp_path / "state",
                             step_id="StepA1", conflict="overwrite", poll_interval=0.05,
                             timeout=30)  # fmt: skip
    assert again.chunks_resent == [] and not any("lost" in w for w in again.warnings)
    assert again.rows_already_present == 3 and again.exit_code == 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_while_waiting_out_a_rate_limit_resumes_without_a_resend(
    sandbox: Sandbox, tmp_path: Path, sig: signal.Signals
) -> None:
    """Killed during the wait after its POST was answered "rate limit": nothing was
    delivered, so ``shandy resume`` sends the chunk as a first delivery."""
    seed_and_file(sandbox, tmp_path)
    sandbox.set_faults(["429:60"], match=STEP_IMPORT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY="test-key",
               SHANDY_STATE_DIR=str(tmp_path / "state"))  # fmt: skip
    cmd = [sys.executable, "-m", "shandy_cli"]
    proc = subprocess.Popen(
        [*cmd, "import", "leads.csv", "--step", "StepA1", "--conflict", "overwrite"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "retry 1 in" in line:
            break
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    sandbox.set_faults()
    done = subprocess.run([*cmd, "resume", "--last", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    result = json.loads(done.stdout)
    assert result["chunks_resent"] == [], done.stderr
    assert result["rows_already_present"] == 3 and done.returncode == 1


# -- (2) a budget wait while polling is said, not silence ------------------------------------


def test_a_budget_wait_in_status_wait_is_said(sandbox: Sandbox, tmp_path: Path) -> None:
    with SaleshandyClient(sandbox.url, "test-key") as client:
        sent = import_files([str(write_csv(tmp_path / "leads.csv", HEADER, leads(40)))],
                            client=client, state_dir=tmp_path / "state", step_id="StepA1",
                            max_rows=5, wait=False)  # fmt: skip
    ids = sent.request_ids
    assert len(ids) == 8
    waits: list[tuple[str, float]] = []
    tight = RateLimits(per_endpoint=4, total=100, window=2.5)
    with SaleshandyClient(sandbox.url, "test-key", rate_limits=tight,
                          on_wait=lambda e, s: waits.append((e, s))) as client:  # fmt: skip
        results = check_status(ids, client=client, state_dir=tmp_path / "state", wait=True,
                               timeout=60, poll_interval=0.05)  # fmt: skip
    assert all(r.completed for r in results)
    assert any(e == STATUS_ENDPOINT and s >= 1 for e, s in waits), waits


# -- (6) a sequence whose step the API gives no id ------------------------------------------


@pytest.mark.parametrize(
    "steps", [[{"name": "Intro"}], [{"id": None}], [{"id": ""}], "abc", [["StepA1"]]]
)
def test_a_step_without_a_usable_id_is_a_clear_error(hostile, steps: object) -> None:
    """``KeyError: 'id'`` (internal error, exit 1) or, with ``"id": null``, a chunk sent
    to ``stepId: "None"``: a clear API error instead, before anything is sent."""

    def decide(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        url = urlsplit(path)
        if url.path == "/v1/sequences" and parse_qs(url.query).get("page") == ["1"]:
            return 200, {}, {"payload": [{"id": "S", "title": "Outbound", "steps": steps}]}
        return None

    server = hostile(decide)
    with SaleshandyClient(server.url, KEY) as client, pytest.raises(ApiError) as info:
        resolve_step(client, "Outbound")
    assert info.value.exit_code == 4 and "Outbound" in info.value.message


# -- hostile users ----------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", ["nan", "-5", "inf"])
def test_status_refuses_a_timeout_import_refuses(hostile, tmp_path: Path, timeout: str) -> None:
    """``--timeout nan`` made ``status --wait`` wait forever (every comparison with nan is
    false); import refuses it, and a negative one, as usage errors."""
    server = hostile(lambda m, p, h: (200, {}, {"payload": {"isCompleted": False}}))
    done = shandy("status", "r1", "--wait", "--timeout", timeout, tmp_path=tmp_path,
                  url=server.url, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "--timeout" in done.stderr
    assert server.calls(STATUS) == 0


def test_import_json_prints_a_document_when_nothing_was_sent(hostile, tmp_path: Path) -> None:
    server = hostile(lambda m, p, h: (400, {}, {"code": 1001, "message": "1001: Invalid token"}))
    write_csv(tmp_path / "leads.csv", HEADER, leads(3))
    done = shandy("import", "leads.csv", "--step", "S1", "--json", tmp_path=tmp_path,
                  url=server.url)  # fmt: skip
    assert done.returncode == 3
    assert json.loads(done.stdout)["error"]
