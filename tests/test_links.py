"""Issue 16, item 3: an https:// (or loopback http://) input is downloaded to a private
spool under the report download's rules, then read and fingerprinted like a file.

Every test runs the CLI in-process against the sandbox and a loopback link server the
test starts (real HTTP both ways); nothing of our own client is mocked.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import stat
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from incli import Ran, run_cli

from shandy_cli.client import SaleshandyClient
from shandy_cli.pipeline import links
from shandy_cli.sandbox import Sandbox, SandboxConfig, start_sandbox

KEY = "links-test-key-abcdef123456"
HEADER = ["Email", "First Name", "Company"]
COUNTS = {"rows_read": 30, "rows_submitted": 27, "rows_rejected": 3, "rows_skipped": 0}

# A route: (status, headers, body) or a callable writing the answer itself.
Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


class LinkServer:
    """A loopback web server: ``routes`` by path (query ignored), every request's path
    and headers kept in ``seen``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = owner.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_error(404)
                    return
                if callable(route):
                    route(self)
                    return
                status, headers, body = route
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "content-length" not in {k.lower() for k in headers}:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def gets(self) -> list[str]:
        return [path for path, _ in self.seen]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web() -> Iterator[LinkServer]:
    server = LinkServer()
    yield server
    server.close()


def lead_rows(n: int = 30) -> list[list[str]]:
    rows = []
    for i in range(n):
        email = "not-an-address" if i % 10 == 4 else f"person{i}@example.com"
        rows.append([email, f"Ann {i}", f"Acme {i % 3}"])
    return rows


def csv_bytes() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(lead_rows())
    return out.getvalue().encode()


def parquet_bytes() -> bytes:
    out = io.BytesIO()
    pl.DataFrame(lead_rows(), schema=HEADER, orient="row").write_parquet(out)
    return out.getvalue()


def shandy(where: Path, sandbox: Sandbox, *args: str, **env: str) -> Ran:
    base = {
        "SALESHANDY_BASE_URL": sandbox.url,
        "SALESHANDY_API_KEY": KEY,
        "SHANDY_STATE_DIR": str(where / "state"),
    }
    return run_cli(*args, cwd=where, env={**base, **env})


def do_import(where: Path, sandbox: Sandbox, link: str, *extra: str, **env: str) -> Ran:
    where.mkdir(exist_ok=True)
    argv = ["import", link, "--step", "StepA1", "--json", "--poll-interval", "0.05", *extra]
    return shandy(where, sandbox, *argv, **env)


def landed(sandbox: Sandbox) -> list[str]:
    found = []
    with SaleshandyClient(sandbox.url, KEY) as client:
        page = 1
        while batch := client.list_prospects(page=page):
            found.extend(batch)
            page += 1
    return sorted(json.dumps(p, sort_keys=True) for p in found)


def posts(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests() if r["method"] == "POST"]


def spooled(where: Path) -> list[Path]:
    folder = where / "state" / "stdin"
    return sorted(folder.iterdir()) if folder.exists() else []


def refused(ran: Ran, words: str) -> None:
    """One clear line, exit 2, no traceback."""
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert words in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr


# -- a link imports like the file -----------------------------------------------------------


def test_a_csv_link_imports_like_the_file(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path
) -> None:
    web.routes["/exports/leads.csv"] = (200, {"Content-Type": "text/csv"}, csv_bytes())
    link = f"{web.url}/exports/leads.csv?sig=TOKEN-secret-123"
    ran = do_import(tmp_path / "a", sandbox, link)
    assert ran.returncode == 1, ran.stderr  # the three rejects
    doc = json.loads(ran.stdout)
    assert {k: doc[k] for k in COUNTS} == COUNTS and doc["completed"]
    shown = f"{web.url}/exports/leads.csv"
    assert doc["files"] == [shown]
    with open(doc["rejects_file"], newline="", encoding="utf-8") as fh:
        assert {r["_file"] for r in csv.DictReader(fh)} == {shown}
    # the signed link's token is in no output; the key never went to the link's host
    assert "TOKEN-secret" not in ran.stdout + ran.stderr
    assert Path(doc["rejects_file"]).read_text().count("TOKEN-secret") == 0
    [(_, headers)] = web.seen
    assert KEY not in json.dumps(headers) and "x-api-key" not in headers
    assert spooled(tmp_path / "a") == []  # the copy is removed when the run completes
    # the same leads as a file, into a sandbox of their own: the same prospects
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "leads.csv").write_bytes(csv_bytes())
    with start_sandbox(SandboxConfig(state_dir=tmp_path / "sb2", delay_base=0.05)) as other:
        again = do_import(tmp_path / "b", other, "leads.csv")
        assert again.returncode == 1, again.stderr
        assert {k: json.loads(again.stdout)[k] for k in COUNTS} == COUNTS
        assert landed(other) == landed(sandbox)


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/leads.csv.gz", {}, "gzip"),
        ("/download", {"Content-Type": "application/gzip"}, "gzip"),
        ("/leads.parquet", {}, "parquet"),
        ("/download", {"Content-Type": "application/vnd.apache.parquet"}, "parquet"),
    ],
)
def test_a_packed_or_columnar_link_by_name_or_content(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path, path: str, headers: dict, body: str
) -> None:
    data = gzip.compress(csv_bytes()) if body == "gzip" else parquet_bytes()
    web.routes[path] = (200, headers, data)
    ran = do_import(tmp_path, sandbox, web.url + path)
    assert ran.returncode == 1, ran.stderr
    assert {k: json.loads(ran.stdout)[k] for k in COUNTS} == COUNTS
    assert len(landed(sandbox)) == 27


def test_a_dry_run_of_a_link_reads_it_and_leaves_no_copy(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path
) -> None:
    web.routes["/leads.csv"] = (200, {}, csv_bytes())
    ran = do_import(tmp_path, sandbox, f"{web.url}/leads.csv", "--dry-run")
    assert ran.returncode in (0, 1), ran.stderr
    assert json.loads(ran.stdout)["rows_read"] == 30
    assert posts(sandbox) == [] and spooled(tmp_path) == []


# -- redirects ------------------------------------------------------------------------------


def redirect(to: str) -> Route:
    return (302, {"Location": to}, b"")


def test_a_redirect_chain_is_followed(sandbox: Sandbox, web: LinkServer, tmp_path: Path) -> None:
    web.routes["/a"] = redirect(f"{web.url}/b")  # absolute
    web.routes["/b"] = redirect("/c/leads.csv")  # relative
    web.routes["/c/leads.csv"] = (200, {}, csv_bytes())
    ran = do_import(tmp_path, sandbox, f"{web.url}/a")
    assert ran.returncode == 1, ran.stderr
    assert json.loads(ran.stdout)["rows_submitted"] == 27
    assert web.gets() == ["/a", "/b", "/c/leads.csv"]


def test_too_many_redirects_are_refused(sandbox: Sandbox, web: LinkServer, tmp_path: Path) -> None:
    web.routes["/loop"] = redirect("/loop")
    ran = do_import(tmp_path, sandbox, f"{web.url}/loop")
    refused(ran, "too many redirects")
    assert len(web.gets()) == 6 and posts(sandbox) == []
    assert spooled(tmp_path) == []


@pytest.mark.parametrize(
    "target", ["http://example.com/leads.csv", "ftp://127.0.0.1/leads.csv", "http://[::1/x"]
)
def test_a_redirect_off_https_is_refused(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path, target: str
) -> None:
    web.routes["/leads.csv"] = redirect(target)
    ran = do_import(tmp_path, sandbox, f"{web.url}/leads.csv")
    assert ran.returncode == 2 and "nothing was sent" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr
    assert posts(sandbox) == [] and spooled(tmp_path) == []


def test_a_plain_http_link_off_loopback_is_refused_before_any_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    ran = do_import(tmp_path, sandbox, "http://example.com/leads.csv")
    refused(ran, "plain-http")
    assert posts(sandbox) == []


def test_a_link_with_a_password_is_refused(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path
) -> None:
    ran = do_import(tmp_path, sandbox, f"http://me:pw@127.0.0.1:{web.url.rsplit(':', 1)[1]}/l.csv")
    refused(ran, "user name or password")
    assert web.seen == [] and "pw@" not in ran.stderr


# -- bounds and failures --------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversize_body_is_refused(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path, declared: bool
) -> None:
    body = csv_bytes() * 10

    def chunked(handler: BaseHTTPRequestHandler) -> None:  # no Content-Length: counted
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)

    web.routes["/big.csv"] = (200, {}, body) if declared else chunked
    ran = do_import(tmp_path, sandbox, f"{web.url}/big.csv", SHANDY_MAX_STREAM_BYTES="1000")
    refused(ran, "more than 1,000 bytes behind this link")
    assert posts(sandbox) == [] and spooled(tmp_path) == []


def test_a_slow_body_hits_the_time_cap(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        try:
            for _ in range(60):  # a byte every 0.05 s: no single read ever times out
                handler.wfile.write(b"E")
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client hung up, as it should

    web.routes["/slow.csv"] = drip
    monkeypatch.setattr(links, "LINK_TIMEOUT", 0.5)
    started = time.monotonic()
    ran = do_import(tmp_path, sandbox, f"{web.url}/slow.csv")
    refused(ran, "did not finish in 0.5 s")
    assert time.monotonic() - started < 2.5
    assert spooled(tmp_path) == []


@pytest.mark.parametrize("status", [404, 500, 403])
def test_an_error_status_is_one_clear_line(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path, status: int
) -> None:
    web.routes["/gone.csv"] = (status, {}, b"<h1>nope</h1>")
    ran = do_import(tmp_path, sandbox, f"{web.url}/gone.csv")
    refused(ran, f"the server answered HTTP {status}")
    assert posts(sandbox) == [] and spooled(tmp_path) == []


def test_a_dead_host_is_one_clear_line(sandbox: Sandbox, tmp_path: Path) -> None:
    server = LinkServer()
    url = server.url
    server.close()  # nothing listens there now
    ran = do_import(tmp_path, sandbox, f"{url}/leads.csv")
    refused(ran, "could not download it (ConnectError)")


def test_a_web_page_is_not_a_lead_file(sandbox: Sandbox, web: LinkServer, tmp_path: Path) -> None:
    web.routes["/share"] = (200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>sign in")
    ran = do_import(tmp_path, sandbox, f"{web.url}/share")
    refused(ran, "answered with a web page")
    assert spooled(tmp_path) == []


# -- Google Sheets --------------------------------------------------------------------------

SHEET = "1AbC-d_Ef"


@pytest.mark.parametrize(
    ("given_url", "expected"),
    [
        (
            f"https://docs.google.com/spreadsheets/d/{SHEET}/edit#gid=0",
            f"https://docs.google.com/spreadsheets/d/{SHEET}/export?format=csv&gid=0",
        ),
        (
            f"https://docs.google.com/spreadsheets/d/{SHEET}/edit?usp=sharing&gid=42#gid=42",
            f"https://docs.google.com/spreadsheets/d/{SHEET}/export?format=csv&gid=42",
        ),
        (
            f"https://docs.google.com/spreadsheets/d/{SHEET}",
            f"https://docs.google.com/spreadsheets/d/{SHEET}/export?format=csv",
        ),
        (  # already an export: as given
            f"https://docs.google.com/spreadsheets/d/{SHEET}/export?format=xlsx",
            f"https://docs.google.com/spreadsheets/d/{SHEET}/export?format=xlsx",
        ),
        (  # a gid that is not a number is dropped, not passed on
            f"https://docs.google.com/spreadsheets/d/{SHEET}/edit#gid=1%2F..%2Fx",
            f"https://docs.google.com/spreadsheets/d/{SHEET}/export?format=csv",
        ),
        ("https://docs.google.com/document/d/X/edit", "https://docs.google.com/document/d/X/edit"),
        ("https://example.com/spreadsheets/d/X/edit", "https://example.com/spreadsheets/d/X/edit"),
    ],
)
def test_a_sheets_share_link_becomes_its_csv_export(given_url: str, expected: str) -> None:
    assert links.sheets_export_url(given_url) == expected


@given(st.text(max_size=60))
def test_the_rewrite_never_raises_and_only_touches_sheets(tail: str) -> None:
    for url in (f"https://docs.google.com/spreadsheets/d/{tail}", f"https://e.com/{tail}"):
        try:
            out = links.sheets_export_url(url)
        except ValueError:
            continue  # urlsplit's own refusal: the URL check words it later
        assert out == url or out.startswith("https://docs.google.com/spreadsheets/d/")


def test_a_sheets_link_is_fetched_as_csv_from_a_loopback_stand_in(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(links, "SHEETS_HOST", "127.0.0.1")
    export = f"/spreadsheets/d/{SHEET}/export"
    web.routes[export] = (200, {"Content-Type": "text/csv"}, csv_bytes())
    ran = do_import(tmp_path, sandbox, f"{web.url}/spreadsheets/d/{SHEET}/edit#gid=7")
    assert ran.returncode == 1, ran.stderr
    assert json.loads(ran.stdout)["rows_submitted"] == 27
    assert web.gets() == [f"{export}?format=csv&gid=7"]


# -- resume ---------------------------------------------------------------------------------


def test_a_link_run_resumes_from_its_copy_without_downloading_again(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path
) -> None:
    web.routes["/leads.csv"] = (200, {}, csv_bytes())
    started = do_import(tmp_path, sandbox, f"{web.url}/leads.csv", "--no-wait")
    assert started.returncode in (0, 1, 5), started.stderr  # 1: its three rejects
    assert not json.loads(started.stdout)["completed"]  # not waited for: unfinished
    [copy] = spooled(tmp_path)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    web.routes.clear()  # the link is gone now: a resume must not need it
    resumed = shandy(tmp_path, sandbox, "resume", "--last", "--json", "--poll-interval", "0.05")
    assert resumed.returncode == 1, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["completed"] and doc["rows_submitted"] == 27
    assert web.gets() == ["/leads.csv"]  # downloaded once
    assert spooled(tmp_path) == []
    # the same link again: fetched to fingerprint it, found done, its copy removed
    web.routes["/leads.csv"] = (200, {}, csv_bytes())
    sent = len(posts(sandbox))
    again = do_import(tmp_path, sandbox, f"{web.url}/leads.csv")
    assert "already completed" in again.stderr + again.stdout, again.stderr
    assert len(posts(sandbox)) == sent and spooled(tmp_path) == []


def test_a_truncated_body_is_refused_not_imported_in_part(
    sandbox: Sandbox, web: LinkServer, tmp_path: Path
) -> None:
    body = csv_bytes()

    def cut(handler: BaseHTTPRequestHandler) -> None:  # declares it all, sends half
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.close_connection = True

    web.routes["/cut.csv"] = cut
    ran = do_import(tmp_path, sandbox, f"{web.url}/cut.csv")
    refused(ran, "could not download it")
    assert posts(sandbox) == [] and spooled(tmp_path) == []


@pytest.mark.parametrize(
    ("link", "words"),
    [
        ("https://", "it is not an http(s) URL"),
        ("https://[::1", "it is not a valid URL"),
        ("https://exa\x1bmple.com/a.csv", "it is not a valid URL"),
        ("https://h:99999/x.csv", "it is not a valid URL"),
        ("https://" + "a" * 300 + ".invalid/x.csv", "could not download it"),
    ],
)
def test_a_hostile_link_is_one_clear_line(
    sandbox: Sandbox, tmp_path: Path, link: str, words: str
) -> None:
    ran = do_import(tmp_path, sandbox, link)
    refused(ran, words)
    assert "\x1b" not in ran.stderr and posts(sandbox) == []
