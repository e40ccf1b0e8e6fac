"""Issue 6.3-6.5: the key stays secret, the transport stays honest, files stay private.

Most checks run the CLI (the way a key leaks in practice is through what a process
prints and writes): in this process with typer's ``CliRunner``, or as a real
subprocess where the process itself matters (a wrapper's root logging, a monkeyed
client in ``-c`` code, the umask); the rest drive the client against a scripted
transport or a tiny local server, including a real TLS one.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from incli import Ran, run_cli

from shandy_cli import ApiError, ConfigError, SaleshandyClient, TransportError, check_status
from shandy_cli._files import ensure_private_dir, private_output, safe_filename
from shandy_cli.client import NO_RETRY, check_request_id
from shandy_cli.config import check_base_url
from shandy_cli.redaction import mask_secret, redact
from shandy_cli.sandbox import Sandbox

SECRET = "sk-live-TOPSECRET-9a8b7c6d"
MASKED = mask_secret(SECRET)  # "****6d"-style: the last four characters only
API = "https://api.example.com"


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("SALESHANDY_", "SHANDY_", "SSL_CERT_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update({"SHANDY_SANDBOX_DELAY": "0.05", **extra})
    return env


def shandy(
    *args: str, cwd: Path, env: dict[str, str], code: str | None = None, umask: int | None = None
) -> Ran | subprocess.CompletedProcess[str]:
    """Run the CLI in this process; or, given ``code`` (a Python prelude that then runs the
    CLI) or a ``umask``, in a subprocess."""
    if code is None and umask is None:
        return run_cli(*args, cwd=cwd, env=env)
    argv = (
        [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "shandy_cli", *args]
    )
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=90,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def leads(path: Path, tag: str = "p", n: int = 3, bad: int = 1) -> Path:
    rows = [["Email", "First Name"], *([f"{tag}{i}@example.com", "Ann"] for i in range(n))]
    rows += [[f"broken{i}", "Bo"] for i in range(bad)]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def every_file(root: Path) -> Iterator[Path]:
    yield from (p for p in root.rglob("*") if p.is_file())


# -- 3. secrets -----------------------------------------------------------------------------


def test_key_never_printed_or_written_in_a_verbose_import_with_rejects_and_reports(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Import twice (the second run, under overwrite, gets a Saleshandy report of rows
    already in the step, joined into its failures file); then runs, status: every byte
    printed or written is free of the key."""
    src = leads(tmp_path / "l.csv")
    env = clean_env(
        SALESHANDY_BASE_URL=sandbox.url,
        SALESHANDY_API_KEY=SECRET,
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )
    common = ("import", str(src), "--step", "StepA1", "--json", "--poll-interval", "0.05")
    first = shandy("-v", *common, cwd=tmp_path, env=env)
    second = shandy("-v", *common, "--conflict", "overwrite", cwd=tmp_path, env=env)
    doc = json.loads(second.stdout)
    assert first.returncode == second.returncode == 1, second.stderr
    assert doc["chunks"][0]["already_present_rows"] == 3  # the report was downloaded and joined
    rid = doc["chunks"][0]["request_id"]
    runs = shandy("-v", "runs", "--json", cwd=tmp_path, env=env)
    status = shandy("-v", "status", rid, "--json", cwd=tmp_path, env=env)
    for result in (first, second, runs, status):
        assert result.returncode in (0, 1), result.stderr
        assert SECRET not in result.stdout + result.stderr
    files = list(every_file(tmp_path))
    assert any(p.name.endswith(".failures.csv") for p in files)
    assert any(p.parent.name == "reports" for p in files)
    assert any(p.name == "journal.sqlite3" for p in files)
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data, path
        assert SECRET.encode("utf-16-le") not in data, path


@pytest.mark.parametrize("key", [SECRET + "\n", f"  {SECRET}\t"])
def test_a_key_with_stray_whitespace_is_trimmed_not_leaked(
    sandbox: Sandbox, tmp_path: Path, key: str
) -> None:
    # httpx refuses such a header value with "Illegal header value b'<the key>'", and
    # that message used to reach stderr, once per retry.
    env = clean_env(SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY=key)
    result = shandy("-v", "fields", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_key_that_cannot_be_sent_is_refused_masked(tmp_path: Path) -> None:
    bad = "sk-live-TOP SECRET\n-9a8b"
    env = clean_env(SALESHANDY_BASE_URL="http://127.0.0.1:9", SALESHANDY_API_KEY=bad)
    result = shandy("-v", "fields", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "API key" in result.stderr and mask_secret(bad.strip()) in result.stderr
    assert "TOP" not in result.stderr  # not even in the --verbose traceback


def test_verbose_traceback_of_an_internal_error_hides_the_key(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A bug that puts the key in an exception message: the one-line error and the
    --verbose traceback both show it masked."""
    prelude = (
        "import sys\n"
        "import shandy_cli.client as c\n"
        "def boom(self, *a, **k):\n"
        "    key = self._api_key\n"
        "    raise RuntimeError(f'bug with key={key}')\n"
        "c.SaleshandyClient.list_fields = boom\n"
        "from shandy_cli.cli import main\n"
        "sys.argv = ['shandy', *sys.argv[1:]]\n"
        "main()\n"
    )
    env = clean_env(SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY=SECRET)
    result = shandy("-v", "fields", cwd=tmp_path, env=env, code=prelude)
    assert result.returncode == 2  # the contract: never 1, which says "finished, rows rejected"
    assert "Traceback" in result.stderr and "internal error: RuntimeError" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert f"key={MASKED}" in result.stderr


def test_httpx_and_httpcore_logging_at_trace_never_shows_the_key(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)  # everything: httpcore traces headers at DEBUG and below
    for name in ("httpx", "httpcore", "h11"):
        logging.getLogger(name).setLevel(1)
    open_box = sandbox_factory()
    body = tmp_path / "body.json"
    body.write_bytes(
        b'{"prospectList":[{"Email":"log@example.com"}],"stepId":"StepA1",'
        b'"verifyProspects":false,"conflictAction":"noUpdate","tags":[]}'
    )
    with SaleshandyClient(open_box.url, SECRET) as client:
        client.list_fields()
        rid = client.import_prospects(body, to_step=True)
        deadline = time.monotonic() + 10
        while not client.import_status(rid).completed and time.monotonic() < deadline:
            time.sleep(0.05)
    locked = sandbox_factory(api_key="another-key", state_dir=tmp_path / "locked")
    with (
        SaleshandyClient(locked.url, SECRET, retry=NO_RETRY) as client,
        pytest.raises(ApiError) as failed,
    ):
        client.list_fields()
    assert SECRET not in str(failed.value) and MASKED in str(failed.value)
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # logging was on
    for record in caplog.records:
        assert SECRET not in record.getMessage(), record.name


def test_cli_with_root_logging_on_shows_no_key(sandbox: Sandbox, tmp_path: Path) -> None:
    """A wrapper script that turns on logging for everything, then runs shandy -v."""
    prelude = (
        "import logging, sys\n"
        "logging.basicConfig(level=1, stream=sys.stderr)\n"
        "from shandy_cli.cli import main\n"
        "sys.argv = ['shandy', *sys.argv[1:]]\n"
        "main()\n"
    )
    src = leads(tmp_path / "l.csv", "rl")
    env = clean_env(
        SALESHANDY_BASE_URL=sandbox.url,
        SALESHANDY_API_KEY=SECRET,
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )
    result = shandy(
        "-v",
        "import",
        str(src),
        "--step",
        "StepA1",
        "--poll-interval",
        "0.05",
        cwd=tmp_path,
        env=env,
        code=prelude,
    )
    assert result.returncode == 1, result.stderr
    assert "httpcore" in result.stderr  # the logs are there ...
    assert SECRET not in result.stderr + result.stdout  # ... the key is not


def test_api_key_flag_warns_once_about_ps(sandbox: Sandbox, tmp_path: Path) -> None:
    src = leads(tmp_path / "l.csv", "ps", bad=0)
    env = clean_env(SHANDY_STATE_DIR=str(tmp_path / "state"))
    for args in (
        ["fields", "--api-key", SECRET, "--base-url", sandbox.url],
        ["preview", str(src), "--api-key", SECRET, "--base-url", sandbox.url],
    ):
        result = shandy(*args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("`ps`") == 1, result.stderr
        assert SECRET not in result.stderr + result.stdout


def test_dotenv_readable_by_others_warns_once(sandbox: Sandbox, tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"SALESHANDY_API_KEY={SECRET}\nSALESHANDY_BASE_URL={sandbox.url}\n")
    src = leads(tmp_path / "l.csv", "de", bad=0)
    env = clean_env(SHANDY_STATE_DIR=str(tmp_path / "state"))
    args = ("import", str(src), "--step", "StepA1", "--poll-interval", "0.05")
    for mode, warnings in ((0o644, 1), (0o640, 1), (0o600, 0)):
        dotenv.chmod(mode)
        result = shandy(*args, "--force", cwd=tmp_path, env=env)
        assert result.returncode in (0, 1), result.stderr  # 1: rows already in the step
        assert result.stderr.count("readable by group or others") == warnings, result.stderr
        assert ("chmod 600" in result.stderr) == bool(warnings)
        assert SECRET not in result.stderr + result.stdout


def test_sandbox_flag_never_gets_the_real_key(tmp_path: Path) -> None:
    env = clean_env(SALESHANDY_API_KEY=SECRET, SHANDY_STATE_DIR=str(tmp_path / "state"))
    result = shandy("-v", "fields", "--sandbox", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "(key ****" in result.stderr and MASKED not in result.stderr


def test_redact_and_mask() -> None:
    from shandy_cli.redaction import register_secret

    register_secret(SECRET)
    assert redact(f"x {SECRET} y") == f"x {MASKED} y"
    assert MASKED.endswith(SECRET[-4:]) and MASKED.startswith("****")
    assert mask_secret("short") == "****"


# -- 4. transport ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://open-api.saleshandy.com",
        "http://10.0.0.5:8080",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "http://[::ffff:10.0.0.1]",
        "https://user:pass@api.example.com",
        "ftp://127.0.0.1",
        "https://api.example.com:99999",
    ],
)
def test_unsafe_base_urls_exit_2_saying_https(tmp_path: Path, url: str) -> None:
    env = clean_env(SALESHANDY_API_KEY=SECRET)
    for how in (["--base-url", url], []):
        run_env = env if how else {**env, "SALESHANDY_BASE_URL": url}
        result = shandy("fields", *how, cwd=tmp_path, env=run_env)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("shandy: error:")]
        assert len(errors) == 1 and "Traceback" not in result.stderr
        if url.startswith("http://"):
            assert "use https://" in errors[0]
        assert "pass" not in errors[0] or "password" in errors[0]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1", "http://127.9.9.9", "http://localhost:8", "http://[::1]:8"]
)
def test_loopback_http_is_allowed(url: str) -> None:
    assert check_base_url(url) == url


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[dict]]]:
    """An HTTPS API on loopback whose certificate is signed by a throwaway CA."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=shandy test CA",
    )
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            body = b'{"payload": [{"id": "f1", "label": "Email", "fieldType": "text"}]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(d / "srv.pem", d / "srv.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}", d / "ca.pem", seen
    server.shutdown()
    server.server_close()


def test_tls_is_verified_and_a_custom_ca_comes_from_the_environment(
    tls: tuple[str, Path, list[dict]], tmp_path: Path
) -> None:
    url, ca, seen = tls
    env = clean_env(SALESHANDY_BASE_URL=url, SALESHANDY_API_KEY=SECRET)
    untrusted = shandy("fields", "--json", cwd=tmp_path, env=env)
    assert untrusted.returncode == 4, untrusted.stderr
    assert "certificate" in untrusted.stderr and "SSL_CERT_FILE" in untrusted.stderr
    assert "retry" not in untrusted.stderr  # not transient: not retried
    assert seen == []  # the handshake failed: no request, no key, reached the server
    trusted = shandy("fields", "--json", cwd=tmp_path, env={**env, "SSL_CERT_FILE": str(ca)})
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)[0]["label"] == "Email"
    assert seen[-1]["x-api-key"] == SECRET


# Report downloads, against a scripted transport: the client's own httpx.Client is
# swapped for one whose answers the test writes.


def scripted(answers: dict[str, httpx.Response], seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.get(str(request.url))
        return answer if answer is not None else httpx.Response(404)

    return httpx.Client(
        base_url=API, transport=httpx.MockTransport(handler), follow_redirects=False
    )


def client_with(answers: dict[str, httpx.Response], seen: list[httpx.Request]) -> SaleshandyClient:
    client = SaleshandyClient(API, SECRET, retry=NO_RETRY)
    client._http.close()
    client._http = scripted(answers, seen)
    return client


def test_report_redirects_are_checked_and_the_key_stays_on_the_api_host(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    answers = {
        f"{API}/r/1": httpx.Response(302, headers={"location": "https://cdn.example.net/f.csv"}),
        "https://cdn.example.net/f.csv": httpx.Response(200, content=b"Email,Reason\n"),
        f"{API}/r/2": httpx.Response(302, headers={"location": "http://cdn.example.net/f.csv"}),
        f"{API}/r/loop": httpx.Response(302, headers={"location": f"{API}/r/loop"}),
    }
    with client_with(answers, seen) as client:
        client.download_report(f"{API}/r/1", tmp_path / "a.csv")
        assert [r.headers.get("x-api-key") for r in seen] == [SECRET, None]
        with pytest.raises(ApiError, match="plain-http"):
            client.download_report(f"{API}/r/2", tmp_path / "b.csv")
        with pytest.raises(ApiError, match="redirects"):
            client.download_report(f"{API}/r/loop", tmp_path / "c.csv")
    assert (tmp_path / "a.csv").read_bytes() == b"Email,Reason\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]  # no partial files


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://api.example.com/r.csv",
        "http://reports.example.com/r.csv",
        "javascript:alert(1)",
        "https:///no-host",
        "https://api.example.com:bad/r.csv",
    ],
)
def test_report_url_must_be_https(tmp_path: Path, url: str) -> None:
    seen: list[httpx.Request] = []
    with client_with({}, seen) as client, pytest.raises(ApiError):
        client.download_report(url, tmp_path / "r.csv")
    assert seen == [] and list(tmp_path.iterdir()) == []


def test_report_size_is_capped_declared_or_streamed(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def endless() -> Iterator[bytes]:
        while True:
            yield b"x" * 4096

    answers = {
        f"{API}/big": httpx.Response(200, headers={"content-length": str(10**12)}, content=b""),
        f"{API}/stream": httpx.Response(200, content=endless()),
    }
    with client_with(answers, seen) as client:
        for path in ("big", "stream"):
            with pytest.raises(ApiError, match="larger than"):
                client.download_report(f"{API}/{path}", tmp_path / f"{path}.csv", max_bytes=10_000)
    assert list(tmp_path.iterdir()) == []


def test_report_download_has_an_overall_time_limit(tmp_path: Path) -> None:
    """A server that drips a byte every 50 ms never trips a per-read timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"1\r\nx\r\n")
            except OSError:
                break
            time.sleep(0.05)
        conn.close()

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    started = time.monotonic()
    try:
        with SaleshandyClient(url, SECRET) as client, pytest.raises(TransportError):
            client.download_report(f"{url}/r.csv", tmp_path / "r.csv", timeout=0.5)
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "request_id",
    ["../../evil", "a/b", "..", ".", "a\\b", "x" * 500, "\x1b[2J", "", True, None, 1.5],
)
def test_hostile_request_ids_from_the_server_are_refused(
    tmp_path: Path, request_id: object
) -> None:
    seen: list[httpx.Request] = []
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    answer = httpx.Response(201, json={"payload": {"requestId": request_id}})
    answers = {f"{API}/v1/sequences/prospects/import-with-field-name": answer}
    with client_with(answers, seen) as client, pytest.raises(ApiError):
        client.import_prospects(body, to_step=True)


def test_plain_request_ids_pass() -> None:
    assert check_request_id("129a184", "t") == "129a184"
    assert check_request_id(42, "t") == "42"
    assert check_request_id("0f9c-AB_x.y:z", "t") == "0f9c-AB_x.y:z"


def test_a_request_id_cannot_climb_out_of_the_api_path_or_the_report_dir(tmp_path: Path) -> None:
    """`shandy status ../../evil`: the id is one URL path segment, and the report it
    leads to is saved inside --report-dir under a harmless name."""
    seen: list[httpx.Request] = []
    rid = "../../evil"
    status_url = f"{API}/v1/prospects/import-status/..%2F..%2Fevil"
    answers = {
        status_url: httpx.Response(
            200, json={"payload": {"isCompleted": True, "reportURL": f"{API}/r.csv"}}
        ),
        f"{API}/r.csv": httpx.Response(200, content=b"Email,Reason\nx@example.com,bad\n"),
    }
    reports = tmp_path / "a" / "b" / "reports"
    with client_with(answers, seen) as client:
        [result] = check_status(
            [rid], client=client, report_dir=reports, state_dir=tmp_path / "state"
        )
    assert str(seen[0].url) == status_url
    assert result.failed_rows == 1
    saved = Path(result.report_file or "")
    assert saved.parent == reports and not saved.name.startswith(".")
    assert [p for p in every_file(tmp_path) if reports not in p.parents] == []


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("129a184", "129a184"),
        ("req-1.csv", "req-1.csv"),
        ("../../x", None),
        ("", None),
        ("a/b", None),
        ("a\x00b", None),
        (".hidden", None),
        ("x" * 300, None),
        ("é", None),
    ],
)
def test_safe_filename(text: str, ok: str | None) -> None:
    name = safe_filename(text, "report")
    if ok is not None:
        assert name == ok
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert name.isascii() and name.isprintable() and len(name) <= 120
    assert name not in (".", "..")
    assert safe_filename("a/b") != safe_filename("a_b")  # distinct ids stay distinct


# -- 5. files -------------------------------------------------------------------------------


def test_everything_written_is_private_whatever_the_umask(sandbox: Sandbox, tmp_path: Path) -> None:
    """umask 000 would make every file 0666 and every dir 0777 unless shandy says otherwise."""
    work = tmp_path / "work"
    work.mkdir()
    src = leads(work / "l.csv", "um")
    stale = work / "l.rejects.csv"
    stale.write_text("old\n")
    stale.chmod(0o644)  # an earlier rejects file, world-readable: replaced, not reused
    state = tmp_path / "state" / "nested"
    env = clean_env(
        SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY=SECRET, SHANDY_STATE_DIR=str(state)
    )
    args = ("import", str(src), "--step", "StepA1", "--poll-interval", "0.05", "--json")
    shandy(*args, cwd=work, env=env, umask=0)
    # With a Saleshandy report, joined into the failures file (overwrite: its rows are listed)
    again = shandy(*args, "--conflict", "overwrite", cwd=work, env=env, umask=0)
    doc = json.loads(again.stdout)
    assert doc["chunks"][0]["already_present_rows"] == 3 and doc["failures_file"], again.stderr
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700  # made by shandy: private too
    written = [p for p in [state, *state.rglob("*")] if "sandbox" not in p.parts]
    assert any(p.parent.name == "reports" and p.is_file() for p in written)
    for path in written:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    for name in ("l.rejects.csv", "l.failures.csv"):
        assert (work / name).stat().st_mode & 0o777 == 0o600, name
    assert stale.read_text() != "old\n"
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # no temp files left


def test_private_output_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old\n")
    target.chmod(0o644)
    with pytest.raises(RuntimeError), private_output(target) as fh:
        fh.write("half a fi")
        assert target.read_text() == "old\n"  # readers never see a half-written file
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]
    with private_output(target) as fh:
        fh.write("new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o600


def test_state_dir_is_made_private_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    ensure_private_dir(shared / "made")
    assert (shared / "made").stat().st_mode & 0o777 == 0o700
    assert shared.stat().st_mode & 0o777 == 0o755  # not ours: its mode is left alone
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ConfigError):
        ensure_private_dir(afile)
    src = leads(tmp_path / "l.csv", "sd")
    result = shandy(
        "import",
        str(src),
        "--step",
        "StepA1",
        "--sandbox",
        "--state-dir",
        str(afile),
        cwd=tmp_path,
        env=clean_env(),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len([x for x in result.stderr.splitlines() if x.startswith("shandy: error:")]) == 1


@pytest.fixture
def fake_api() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    """A loopback "API" answering GET paths from a dict the test fills."""
    routes: dict[str, tuple[int, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            status, body = routes.get(self.path.split("?")[0], (404, b"{}"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


def test_a_report_with_a_huge_value_is_not_an_internal_error(
    fake_api: tuple[str, dict[str, tuple[int, bytes]]], tmp_path: Path
) -> None:
    url, routes = fake_api
    status = {"payload": {"isCompleted": True, "reportURL": f"{url}/report.csv"}}
    routes["/v1/prospects/import-status/r1"] = (200, json.dumps(status).encode())
    routes["/report.csv"] = (
        200,
        b"Email,Notes,Reason\nx@example.com," + b"n" * 200_000 + b",bad\n",
    )
    env = clean_env(
        SALESHANDY_BASE_URL=url, SALESHANDY_API_KEY=SECRET, SHANDY_STATE_DIR=str(tmp_path / "s")
    )
    result = shandy("status", "r1", "--json", cwd=tmp_path, env=env)
    assert "internal error" not in result.stderr, result.stderr
    assert result.returncode in (0, 1, 4)
