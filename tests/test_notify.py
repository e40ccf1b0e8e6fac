"""--notify: signed webhooks and Slack messages when an import ends, over real HTTP to the
sandbox's receiver and to servers of the tests' own (down, failing, hanging)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from incli import run_cli

from shandy_cli import notify
from shandy_cli.client import RetryPolicy, SaleshandyClient
from shandy_cli.config import Settings
from shandy_cli.errors import InputError
from shandy_cli.notify import Policy
from shandy_cli.pipeline.results import ImportOptions, ImportResult
from shandy_cli.pipeline.run import import_files
from shandy_cli.redaction import redact
from shandy_cli.sandbox import Sandbox, webhooks
from shandy_cli.sandbox.api import ApiRequest
from shandy_cli.sandbox.webhooks import MAX_BODY, MAX_PER_NAME

KEY = "notify-test-key-0001"
SECRET = "whsec-notify-test-secret-42"
SLACK_TOKEN = "xoxbTOKENsecret0123456789"
FAST = Policy(attempts=3, timeout=0.5, backoff=0.05, deadline=3.0)


def env_for(sandbox: Sandbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SALESHANDY_BASE_URL": sandbox.url,
        "SALESHANDY_API_KEY": KEY,
        "SHANDY_STATE_DIR": str(tmp_path / "state"),
        **extra,
    }


def leads(tmp_path: Path, bad: bool = True, name: str = "leads.csv") -> Path:
    who = name.split(".")[0]  # each file's own addresses: no run finds another's done
    rows = f"email,first_name\nann.{who}@example.com,Ann\nbob.{who}@example.com,Bob\n"
    path = tmp_path / name
    path.write_text(rows + ("not-an-address,Eve\n" if bad else ""))
    return path


def shandy_import(sandbox: Sandbox, tmp_path: Path, *args: str, **extra: str) -> Any:
    return run_cli(
        "import", *args, "--step", "StepA1", "--json", "--poll-interval", "0.05",
        cwd=tmp_path, env=env_for(sandbox, tmp_path, **extra),
    )  # fmt: skip


def received(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{sandbox.url}/webhooks/{name}")
    answer.raise_for_status()
    return answer.json()["payload"]


def verified(entry: dict[str, Any], secret: str = SECRET) -> bool:
    headers = entry["headers"]
    return notify.verify_signature(
        secret,
        entry["body"].encode(),
        headers.get("x-shandy-timestamp"),
        headers.get("x-shandy-signature"),
    )


# -- a receiver of the test's own -----------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """Records raw requests; answers ``status`` (or never, with ``hang``)."""

    daemon_threads = True

    def __init__(self, status: int = 200, hang: bool = False) -> None:
        self.seen: list[dict[str, Any]] = []
        self.status, self.hang = status, hang
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append({"path": self.path, "headers": self.headers, "body": body})
        if self.server.hang:
            self.server.release.wait(60)
            return
        payload = b"ok"
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(**kwargs: Any) -> Receiver:
        server = Receiver(**kwargs)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


def dead_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- signed JSON documents ------------------------------------------------------------------


def test_a_signed_document_reaches_the_sandbox_and_is_verified(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    hook = f"{sandbox.url}/webhooks/nightly"
    ran = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path)), "--notify", hook, SHANDY_WEBHOOK_SECRET=SECRET
    )
    assert ran.returncode == 1, ran.stderr
    [entry] = received(sandbox, "nightly")
    assert entry["json"] == json.loads(ran.stdout)  # exactly the --json document
    assert entry["headers"]["content-type"] == "application/json"
    assert entry["headers"]["x-shandy-event"] == "import.finished"
    assert verified(entry)
    assert not verified(entry, secret=SECRET + "x")
    tampered = dict(entry, body=entry["body"].replace('"rows_read":3', '"rows_read":4'))
    assert tampered["body"] != entry["body"] and not verified(tampered)
    old = int(entry["headers"]["x-shandy-timestamp"]) - notify.SIGNATURE_TOLERANCE - 1
    replayed = notify.sign(SECRET, entry["body"].encode(), old)
    assert not notify.verify_signature(SECRET, entry["body"].encode(), str(old), replayed)
    assert "notification 1" in ran.stderr and "delivered" in ran.stderr


def test_a_receiver_of_our_own_verifies_the_raw_bytes(
    sandbox: Sandbox, tmp_path: Path, receiver_factory: Any
) -> None:
    server = receiver_factory()
    ran = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path, bad=False)),
        "--notify", f"{server.url}/shandy", SHANDY_WEBHOOK_SECRET=SECRET,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    [seen] = server.seen
    headers: Message = seen["headers"]
    stamp, signature = headers["X-Shandy-Timestamp"], headers["X-Shandy-Signature"]
    assert signature.startswith("sha256=") and abs(int(stamp) - time.time()) < 60
    assert notify.verify_signature(SECRET, seen["body"], stamp, signature)
    assert json.loads(seen["body"]) == json.loads(ran.stdout)
    assert headers["X-Shandy-Delivery"]


def test_unsigned_without_a_secret(sandbox: Sandbox, tmp_path: Path) -> None:
    ran = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path)), "--notify", f"{sandbox.url}/webhooks/plain"
    )
    [entry] = received(sandbox, "plain")
    assert entry["json"] == json.loads(ran.stdout)
    assert "x-shandy-signature" not in entry["headers"]
    assert "x-shandy-timestamp" not in entry["headers"]


def test_notify_on_failure_sends_for_exit_1_and_not_for_exit_0(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    hook = f"{sandbox.url}/webhooks/failures"
    clean = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path, bad=False, name="clean.csv")),
        "--notify", hook, "--notify-on", "failure",
    )  # fmt: skip
    assert clean.returncode == 0 and received(sandbox, "failures") == []
    failed = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path)), "--notify", hook, "--notify-on", "failure"
    )
    assert failed.returncode == 1
    [entry] = received(sandbox, "failures")
    assert entry["json"]["exit_code"] == 1 and entry["json"]["rows_rejected"] == 1


def test_every_url_is_told_once_and_a_repeat_is_dropped(sandbox: Sandbox, tmp_path: Path) -> None:
    a, b = f"{sandbox.url}/webhooks/a", f"{sandbox.url}/webhooks/b"
    ran = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path)), "--notify", a, "--notify", b, "--notify", a
    )
    assert ran.returncode == 1
    assert len(received(sandbox, "a")) == 1 and len(received(sandbox, "b")) == 1


def test_a_dry_run_notifies_with_its_document(sandbox: Sandbox, tmp_path: Path) -> None:
    ran = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path)), "--dry-run",
        "--notify", f"{sandbox.url}/webhooks/dry",
    )  # fmt: skip
    [entry] = received(sandbox, "dry")
    assert entry["json"] == json.loads(ran.stdout) and entry["json"]["dry_run"] is True


# -- Slack ----------------------------------------------------------------------------------


def test_a_slack_url_gets_a_slack_message(sandbox: Sandbox, tmp_path: Path) -> None:
    slack = f"{sandbox.url}/services/T000/B000/{SLACK_TOKEN}"
    ran = shandy_import(sandbox, tmp_path, str(leads(tmp_path)), "--notify", slack)
    assert ran.returncode == 1
    doc = json.loads(ran.stdout)
    [entry] = received(sandbox, "slack")
    text = entry["json"]["text"]
    assert set(entry["json"]) == {"text"}
    assert "exit 1" in text and "Target: step StepA1" in text
    assert "3 read, 2 submitted, 0 updated, 1 rejected, 0 skipped, 0 failed" in text
    assert "1 x invalid email" in text
    assert f"Failures file: {doc['failures_file']}" in text
    assert doc["run_id"] in text and "shandy resume" not in text  # finished: nothing to resume
    assert "x-shandy-signature" not in entry["headers"]  # Slack is not signed
    assert "delivered (HTTP 200)" in ran.stderr
    assert SLACK_TOKEN not in ran.stderr + ran.stdout


def test_slack_text_escapes_what_came_from_files() -> None:
    result = ImportResult("run-1", False, "StepA1", ["<!channel> & <https://evil|click>.csv"])
    result.reasons = [("<!here> bad & worse", 2)]
    result.exit_code, result.error = 4, "stopped <@U123>"
    text = notify.slack_text(result, sequence="Q4 <b>")
    assert "<" not in text and ">" not in text.replace("&gt;", "")
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;.csv" in text
    assert "Resume: `shandy resume run-1`" in text  # exit 4: resumable
    result.exit_code, result.already_imported = 0, True
    assert "nothing sent" in notify.slack_text(result)
    assert "sequence Q4 &lt;b&gt;, step StepA1" in text


def test_slack_is_told_apart_by_host_and_loopback_path() -> None:
    assert notify.is_slack_url("https://hooks.slack.com/services/T/B/x")
    assert notify.is_slack_url("https://HOOKS.slack.com/workflows/x")
    assert notify.is_slack_url("http://127.0.0.1:9/services/T/B/x")
    assert not notify.is_slack_url("https://example.com/services/T/B/x")
    assert not notify.is_slack_url("http://127.0.0.1:9/webhooks/x")


def test_the_sandbox_answers_as_slack_does(sandbox: Sandbox) -> None:
    url = f"{sandbox.url}/services/T/B/tok"
    assert httpx.post(url, json={"text": "hi"}).text == "ok"
    assert httpx.post(url, content=b"[1]").text == "invalid_payload"
    missing = httpx.post(url, json={"username": "x"})
    assert (missing.status_code, missing.text) == (400, "no_text")
    assert [e["path"] for e in received(sandbox, "slack")] == ["/services/****"] * 3


# -- receivers that fail ----------------------------------------------------------------------


def plain_import(sandbox: Sandbox, tmp_path: Path, name: str, *notify_args: str) -> Any:
    return shandy_import(sandbox, tmp_path, str(leads(tmp_path, name=name)), *notify_args)


def same_document(a: str, b: str) -> bool:
    """Two runs' documents, the same but for their own run ids and paths."""

    own = ("run_id", "files", "failures_file", "rejects_file", "chunks")

    def norm(doc: dict[str, Any]) -> dict[str, Any]:
        chunks = [{k: v for k, v in c.items() if k != "request_id"} for c in doc["chunks"]]
        return {k: v for k, v in doc.items() if k not in own} | {"chunks": chunks}

    return norm(json.loads(a)) == norm(json.loads(b))


def test_a_receiver_that_is_down_is_only_a_warning(sandbox: Sandbox, tmp_path: Path) -> None:
    base = plain_import(sandbox, tmp_path, "one.csv")
    started = time.monotonic()
    ran = plain_import(sandbox, tmp_path, "two.csv", "--notify", dead_url())
    took = time.monotonic() - started
    assert ran.returncode == base.returncode == 1
    assert same_document(ran.stdout, base.stdout)
    assert json.loads(ran.stdout)["warnings"] == json.loads(base.stdout)["warnings"]
    assert "warning: notification 1 (http://127.0.0.1:" in ran.stderr
    assert "could not connect" in ran.stderr and "3 attempt(s)" in ran.stderr
    assert took < 10


def test_a_receiver_answering_500_is_retried_then_a_warning(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    base = plain_import(sandbox, tmp_path, "one.csv")
    hook = f"{sandbox.url}/webhooks/broken?status=500"
    ran = plain_import(sandbox, tmp_path, "two.csv", "--notify", hook)
    assert ran.returncode == 1 and same_document(ran.stdout, base.stdout)
    arrived = received(sandbox, "broken")
    assert len(arrived) == notify.DEFAULT_POLICY.attempts
    assert len({e["headers"]["x-shandy-delivery"] for e in arrived}) == 1  # one delivery
    assert "HTTP 500" in ran.stderr and "not delivered after 3 attempt(s)" in ran.stderr


def test_a_refusal_is_not_retried(sandbox: Sandbox, tmp_path: Path) -> None:
    ran = plain_import(
        sandbox, tmp_path, "one.csv", "--notify", f"{sandbox.url}/webhooks/no?status=403"
    )
    assert ran.returncode == 1 and len(received(sandbox, "no")) == 1
    assert "HTTP 403" in ran.stderr


def test_a_redirect_is_not_followed(sandbox: Sandbox, receiver_factory: Any) -> None:
    mover = receiver_factory(status=301)
    item = notify.Delivery(1, f"{mover.url}/x", b"{}", {"Content-Type": "application/json"})
    notify.deliver([item], FAST)
    assert not item.delivered and len(mover.seen) == 1 and "redirect" in item.problem


@pytest.mark.slow
def test_a_receiver_that_hangs_holds_the_run_a_bounded_time(
    sandbox: Sandbox, tmp_path: Path, receiver_factory: Any
) -> None:
    stuck = receiver_factory(hang=True)
    base = plain_import(sandbox, tmp_path, "one.csv")
    started = time.monotonic()
    ran = plain_import(sandbox, tmp_path, "two.csv", "--notify", f"{stuck.url}/x")
    took = time.monotonic() - started
    assert ran.returncode == 1 and same_document(ran.stdout, base.stdout)
    assert "timed out" in ran.stderr or "no answer within" in ran.stderr
    assert took < notify.DEFAULT_POLICY.deadline + 5, took


def test_the_deadline_bounds_every_url_at_once(receiver_factory: Any) -> None:
    stuck = [receiver_factory(hang=True) for _ in range(3)]
    items = [notify.Delivery(n, f"{s.url}/x", b"{}", {}) for n, s in enumerate(stuck, 1)]
    started = time.monotonic()
    notify.deliver(items, Policy(attempts=5, timeout=10, backoff=0.01, deadline=1.0))
    assert time.monotonic() - started < 2.5
    assert not any(i.delivered for i in items)


# -- runs that stop early ------------------------------------------------------------------------


def test_a_run_stopped_before_sending_notifies_on_failure(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("email,favourite_colour\nann@example.com,blue\n")
    ran = shandy_import(
        sandbox, tmp_path, str(path),
        "--notify", f"{sandbox.url}/webhooks/early", "--notify-on", "failure",
    )  # fmt: skip
    assert ran.returncode == 2
    [entry] = received(sandbox, "early")
    assert entry["json"] == json.loads(ran.stdout)
    assert entry["json"]["exit_code"] == 2 and "favourite_colour" in entry["json"]["error"]


def test_a_run_the_api_stops_notifies_with_how_to_resume(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_faults(["ok", *["503"] * 10], match="/v1/sequences/prospects/import")
    quick = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
    hooks = [f"{sandbox.url}/webhooks/api", f"{sandbox.url}/services/T/B/x"]
    with SaleshandyClient(sandbox.url, KEY, retry=quick) as client:
        result = import_files(
            [str(leads(tmp_path, bad=False))], client=client, state_dir=tmp_path / "state",
            step_id="StepA1", max_rows=1, poll_interval=0.05,
            notify=hooks, notify_on="failure",
        )  # fmt: skip
    assert result.exit_code == 4
    [entry] = received(sandbox, "api")
    assert entry["json"] == json.loads(notify.document(result))
    assert entry["json"]["exit_code"] == 4
    [slack] = received(sandbox, "slack")
    assert f"Resume: `shandy resume {result.run_id}`" in slack["json"]["text"]


# -- URLs that are refused, and secrets ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://127.0.0.1/x",
        "https:///nohost",
        "https://example.com:99999/x",
        "https://example.com/a b",
        "file:///etc/passwd",
        "",
    ],
)
def test_a_refused_url_stops_the_run_before_anything_is_sent(
    sandbox: Sandbox, tmp_path: Path, url: str
) -> None:
    ran = shandy_import(sandbox, tmp_path, str(leads(tmp_path)), "--notify", url)
    assert ran.returncode == 2, ran.stderr
    assert "--notify" in ran.stderr and "Traceback" not in ran.stderr
    assert not [r for r in sandbox.requests() if r["path"].startswith("/v1/sequences/prospects")]


def test_a_refused_url_is_shown_masked() -> None:
    with pytest.raises(InputError) as refused:
        notify.check_urls([f"http://hooks.slack.example/services/T/B/{SLACK_TOKEN}"])
    assert SLACK_TOKEN not in str(refused.value)
    assert "http://hooks.slack.example/****" in str(refused.value)


def test_the_secret_and_the_slack_token_appear_in_no_output_or_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    hooks = ["--notify", f"{sandbox.url}/webhooks/s", "--notify", dead_url()]
    hooks += ["--notify", f"{sandbox.url}/services/T/B/{SLACK_TOKEN}"]
    ran = shandy_import(
        sandbox, tmp_path, str(leads(tmp_path)), *hooks, SHANDY_WEBHOOK_SECRET=SECRET
    )
    assert ran.returncode == 1
    assert SECRET not in ran.stdout + ran.stderr and SLACK_TOKEN not in ran.stdout + ran.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    # The journal keeps the URLs (a resumed run notifies them): private, as all its files.
    for path in (tmp_path / "state").rglob("*"):
        private = stat.S_IRWXG | stat.S_IRWXO
        assert path.stat().st_mode & private == 0, path
    assert all(SECRET not in e["body"] for e in received(sandbox, "s"))


def test_a_resumed_run_notifies_again(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_faults(["ok", *["503"] * 10], match="/v1/sequences/prospects/import")
    quick = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
    path = str(leads(tmp_path, bad=False))
    opts = ImportOptions(step_id="StepA1", max_rows=1, poll_interval=0.05)
    opts.notify = [f"{sandbox.url}/webhooks/resume"]
    with SaleshandyClient(sandbox.url, KEY, retry=quick) as client:
        broken = import_files([path], opts, client=client, state_dir=tmp_path / "state")
    sandbox.set_faults()
    ran = run_cli(
        "resume", broken.run_id or "", "--json", cwd=tmp_path, env=env_for(sandbox, tmp_path)
    )
    assert ran.returncode == 0, ran.stderr
    codes = [e["json"]["exit_code"] for e in received(sandbox, "resume")]
    assert codes == [4, 0]


# -- the sandbox's receiver ------------------------------------------------------------------------


def handle(sandbox: Sandbox, method: str, path: str, body: bytes = b"", peer: str = "127.0.0.1"):
    request = ApiRequest(method, path, "", Message(), body, sandbox.url, peer=peer)
    return sandbox._server.api.handle(request)


def test_the_receiver_answers_loopback_only_and_stays_bounded(sandbox: Sandbox) -> None:
    assert handle(sandbox, "POST", "/webhooks/x", b"{}", peer="10.1.2.3").status == 403
    assert handle(sandbox, "GET", "/webhooks/x", peer="192.168.0.9").status == 403
    assert handle(sandbox, "POST", "/services/T/B/x", b"{}", peer="10.1.2.3").status == 403
    assert handle(sandbox, "POST", "/webhooks/x", b"{}", peer="::1").status == 200
    assert handle(sandbox, "POST", "/webhooks/x", b"x" * (MAX_BODY + 1)).status == 413
    assert handle(sandbox, "POST", "/webhooks/..%2f").status == 400
    for n in range(MAX_PER_NAME + 5):
        handle(sandbox, "POST", "/webhooks/many", f'{{"n": {n}}}'.encode())
    kept = received(sandbox, "many")
    assert len(kept) == MAX_PER_NAME and kept[0]["json"] == {"n": 5}
    assert httpx.delete(f"{sandbox.url}/webhooks/many").status_code == 200
    assert received(sandbox, "many") == []
    assert httpx.get(f"{sandbox.url}/v1/sequences").status_code == 401  # the API still asks


def test_after_import_never_raises_and_never_changes_the_result(receiver_factory: Any) -> None:
    result = ImportResult("r", False, "StepA1", ["a.csv"], exit_code=1)
    before = result.to_dict()
    opts = ImportOptions(notify=[dead_url(), "not a url"])
    assert notify.after_import(opts, result, None, FAST) == []  # refused: nothing sent
    opts = ImportOptions(notify=[dead_url()])
    settings = Settings(api_key=None, base_url="x", state_dir=Path("."), webhook_secret=SECRET)
    [item] = notify.after_import(opts, result, settings, FAST)
    assert not item.delivered and result.to_dict() == before


# -- invariants ------------------------------------------------------------------------------


@given(st.text(), st.text())
def test_slack_values_never_carry_control_sequences(text: str, reason: str) -> None:
    escaped = notify._slack(text + reason)
    assert "<" not in escaped and ">" not in escaped and "\n" not in escaped
    assert len(escaped) <= notify.MAX_TEXT + 20 * 4


@given(
    st.sampled_from(["https", "http"]),
    st.sampled_from(["hooks.slack.com", "127.0.0.1", "[::1]", "example.com"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789/_-", min_size=1),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&", max_size=10),
)
def test_a_masked_url_keeps_no_path_or_query(scheme: str, host: str, path: str, q: str) -> None:
    token = "T" + path + "Z"
    masked = notify.mask_url(f"{scheme}://{host}/{token}?{q}")
    assert masked.endswith("/****") and token not in masked
    assert masked.startswith(f"{scheme}://{host}")


@given(st.binary(), st.text(min_size=1), st.integers(min_value=0, max_value=2**40))
def test_a_signature_verifies_only_its_own_body(body: bytes, secret: str, stamp: int) -> None:
    signature = notify.sign(secret, body, stamp)
    assert notify.verify_signature(secret, body, str(stamp), signature, now=stamp)
    assert not notify.verify_signature(secret, body + b"x", str(stamp), signature, now=stamp)
    assert not notify.verify_signature(secret, body, str(stamp), signature, now=stamp + 301)


def test_the_readme_snippet_verifies_what_shandy_signs() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Notifications", 1)[1].split("\n### ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    space: dict[str, Any] = {}
    exec(textwrap.dedent(snippet), space)
    body, stamp = b'{"exit_code":0}', int(time.time())
    signature = notify.sign(SECRET, body, stamp)
    assert space["verify"](SECRET, body, str(stamp), signature)
    assert not space["verify"](SECRET, body + b" ", str(stamp), signature)
    assert not space["verify"](
        SECRET, body, str(stamp - 301), notify.sign(SECRET, body, stamp - 301)
    )


def test_at_most_so_many_urls() -> None:
    urls = [f"https://example.com/{n}" for n in range(notify.MAX_URLS + 1)]
    with pytest.raises(InputError, match="at most"):
        notify.check_urls(urls)
    assert len(notify.check_urls(urls[:-1])) == notify.MAX_URLS
    assert notify.check_urls(" https://example.com/x ") == ["https://example.com/x"]


def test_the_receiver_keeps_a_bounded_number_of_bytes(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "MAX_TOTAL", 10_000)
    for n in range(30):
        handle(sandbox, "POST", f"/webhooks/n{n % 3}", b"x" * 1000)
    kept = [e for n in range(3) for e in received(sandbox, f"n{n}")]
    assert sum(len(e["body"]) for e in kept) <= 10_000
    assert min(e["id"] for e in kept) > 20  # the oldest went first, whatever their name


def test_a_long_retry_after_is_cut_by_the_deadline(recorder: Any) -> None:
    rec, url = recorder
    rec.answers = [(429, {"Retry-After": "100"}, b"slow down")] * 3
    item = notify.Delivery(1, f"{url}/hook", b"{}", {"Content-Type": "application/json"})
    started = time.monotonic()
    notify.deliver([item], FAST)
    assert time.monotonic() - started < FAST.deadline + 1.5
    assert not item.delivered and "HTTP 429 (slow down)" in item.problem


def test_a_receiver_echoing_its_token_does_not_show_it(recorder: Any) -> None:
    rec, url = recorder
    hook = f"{url}/services/T/B/{SLACK_TOKEN}"
    rec.answers = [(400, {}, f"no such hook /services/T/B/{SLACK_TOKEN}".encode())]
    opts = ImportOptions(notify=[hook])
    result = ImportResult("r", False, "StepA1", ["a.csv"], exit_code=1)
    [item] = notify.after_import(opts, result, None, FAST)
    assert not item.delivered and "HTTP 400" in item.problem
    assert SLACK_TOKEN not in redact(item.problem)


@pytest.mark.slow
def test_sigterm_while_notifying_keeps_the_runs_code_and_document(
    sandbox: Sandbox, tmp_path: Path, receiver_factory: Any
) -> None:
    stuck = receiver_factory(hang=True)
    err = tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHANDY_", "SALESHANDY_"))}
    env.update(env_for(sandbox, tmp_path))
    args = [sys.executable, "-m", "shandy_cli", "import", str(leads(tmp_path)), "--step"]
    args += ["StepA1", "--json", "--poll-interval", "0.05", "--notify", f"{stuck.url}/x"]
    with err.open("wb") as sink:
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=sink)
        for _ in range(200):  # until it is notifying: the receiver has the request
            if stuck.seen:
                break
            time.sleep(0.05)
        assert stuck.seen, err.read_text()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 3
    assert proc.returncode == 1, err.read_text()  # the run's code: it had finished
    doc = json.loads(out)
    assert doc["exit_code"] == 1 and doc["error"] is None
    assert "notifications stopped by a signal" in err.read_text()


def test_a_run_stopped_before_importing_still_notifies_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """No key at all (api_session stops the command before import_files): the failure is
    told, once; an import that ran is told once too (not again by the command)."""
    leads(tmp_path)
    env = {"SHANDY_STATE_DIR": str(tmp_path / "state"), "SALESHANDY_BASE_URL": sandbox.url}
    url = f"{sandbox.url}/webhooks/nokey"
    done = run_cli(
        "import", "leads.csv", "--step", "StepA1", "--notify", url, "--notify-on", "failure",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    [entry] = received(sandbox, "nokey")
    assert json.loads(entry["body"])["exit_code"] == 3
    ran = shandy_import(sandbox, tmp_path, "leads.csv", "--notify", f"{sandbox.url}/webhooks/ran")
    assert ran.returncode == 1, ran.stderr
    assert len(received(sandbox, "ran")) == 1
