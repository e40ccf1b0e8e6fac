"""Link inputs: an ``https://`` input is downloaded first, then read like a file.

The download goes to a private spool like stdin's (``spool.py``: ``STATE_DIR/stdin/
<content hash>.bin``, 0600, removed when the run completes), so the copy is what is
fingerprinted, read, and read again by a resume: the link is fetched once per run.
It follows the report download's rules (``_download.fetch_capped``): https only (plain
http to loopback), ``config.url_problem`` checked on every redirect, a byte cap
(``SHANDY_MAX_STREAM_BYTES``) and one deadline for the whole download. The link's host
is not the API: it is sent no key (a client of its own, with no headers of ours).
A Google Sheets share link becomes its CSV export.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from shandy_cli._version import __version__
from shandy_cli.config import ENV_MAX_STREAM_BYTES, NOT_A_URL, PLAIN_HTTP, url_problem
from shandy_cli.errors import InputError
from shandy_cli.pipeline.spool import HashingWriter, spool_copy
from shandy_cli.redaction import printable

if TYPE_CHECKING:
    import httpx

LINK_TIMEOUT = 600.0  # seconds for the whole download, as for a report
READ_TIMEOUT = 30.0  # per connect / read: a silent server is given up on sooner
SHEETS_HOST = "docs.google.com"  # a test points it at a loopback stand-in
_SHEET = re.compile(r"^/spreadsheets/d/([A-Za-z0-9_-]+)(?:/|$)")


def is_link(path: str) -> bool:
    """An input named by an http(s) URL (plain http is refused later, off loopback)."""
    return path[:8].lower() == "https://" or path[:7].lower() == "http://"


def shown_link(url: str) -> str:
    """The link as outputs name it: no user info, query or fragment (a signed link's
    token lives there), and nothing unprintable."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return printable(url.split("?", 1)[0])
    return printable(f"{parts.scheme}://{host}{port}{parts.path}")


def link_path(url: str) -> str:
    """The path part of a link, whose extension (``leads.csv.gz``) names its format."""
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


def sheets_export_url(url: str) -> str:
    """A Google Sheets share link (``.../spreadsheets/d/ID/edit#gid=GID``) as its CSV
    export (``.../spreadsheets/d/ID/export?format=csv&gid=GID``); any other link as is."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return url  # not a URL: the URL check says so
    if host != SHEETS_HOST:
        return url
    found = _SHEET.match(parts.path)
    if not found or parts.path.rstrip("/").endswith("/export"):
        return url
    gid = _gid(parts.query, parts.fragment)
    export = f"{parts.scheme}://{parts.netloc}/spreadsheets/d/{found.group(1)}/export?format=csv"
    return f"{export}&gid={gid}" if gid else export


def _gid(query: str, fragment: str) -> str | None:
    """The sheet (tab) a share link points at: ``?gid=`` or ``#gid=``; digits only."""
    for text in (query, fragment):
        values = parse_qs(text).get("gid")
        if values and values[0].isdigit():
            return values[0]
    return None


def spool_links(
    paths: Sequence[str], spools: dict[int, Path], state_dir: Path, limit: int
) -> list[Path]:
    """Download every link input not yet in ``spools`` (a resume brings its copies, so
    nothing is downloaded twice); returns the copies made now."""
    made: list[Path] = []
    for index, path in enumerate(paths):
        if index in spools or not is_link(path):
            continue
        spools[index] = download_link(path, state_dir, limit)
        made.append(spools[index])
    return made


def download_link(url: str, state_dir: Path, limit: int, timeout: float | None = None) -> Path:
    """Fetch ``url`` to a private copy named by its content; at most ``limit`` bytes."""
    shown = shown_link(url)
    _check_hop(url, shown, first=True)  # before anything else parses it
    target = sheets_export_url(url)
    wait = timeout if timeout is not None else LINK_TIMEOUT
    return spool_copy(state_dir, lambda out: _fetch(target, out, shown, limit, wait))


def _fetch(url: str, out: HashingWriter, shown: str, limit: int, timeout: float) -> None:
    import httpx  # loaded only when a link is read: sources.py imports this module

    from shandy_cli._download import TooBig, TooManyRedirects, TooSlow, fetch_capped

    deadline = time.monotonic() + timeout
    headers = {"user-agent": f"shandy/{__version__}"}
    # A client of its own: the API client's key header can never reach the link's host.
    with httpx.Client(timeout=READ_TIMEOUT, headers=headers, follow_redirects=False) as http:
        try:
            response = fetch_capped(
                http,
                url,
                out,  # type: ignore[arg-type]
                max_bytes=limit,
                deadline=deadline,
                headers_for=lambda hop: _check_hop(hop, shown),
                on_status=lambda r: InputError(_status_text(r), file=shown),
            )
        except TooBig:
            raise InputError(_too_big_text(limit), file=shown) from None
        except (TooSlow, httpx.TimeoutException):
            raise InputError(
                f"the download did not finish in {timeout:g} s; nothing was sent", file=shown
            ) from None
        except TooManyRedirects:
            raise InputError("too many redirects; nothing was sent", file=shown) from None
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
            raise InputError(
                f"could not download it ({type(exc).__name__}); nothing was sent", file=shown
            ) from None
    _check_type(response, shown)


def _check_hop(url: str, shown: str, *, first: bool = False) -> dict[str, str]:
    """Every URL fetched, the first and each redirect: the one URL rule, printable,
    and no user name or password
    (they would be sent, and kept in the journal)."""
    what = "it" if first else "a redirect"
    problem, parts = url_problem(url)
    if problem == NOT_A_URL or parts is None or not _printable(url):
        raise InputError(f"{what} is not a valid URL; nothing was sent", file=shown)
    if problem == PLAIN_HTTP:
        where = printable(parts.hostname or "")
        raise InputError(
            f"refusing a plain-http download from {where!r} (a redirect counts): use https; "
            "nothing was sent",
            file=shown,
        )
    if problem is not None:
        raise InputError(f"{what} {problem}; nothing was sent", file=shown)
    if parts.username is not None or parts.password is not None:
        raise InputError("a link must not contain a user name or password", file=shown)
    return {}


def _printable(url: str) -> bool:
    """No control characters (a header could be split); Unicode is percent- or
    IDNA-encoded by the client."""
    return url.isprintable()


def _status_text(response: httpx.Response) -> str:
    hint = ""
    if response.status_code in (401, 403, 404) and "docs.google.com" in str(response.url):
        hint = " (is the sheet shared as 'anyone with the link'?)"
    return f"the server answered HTTP {response.status_code}{hint}; nothing was sent"


def _check_type(response: httpx.Response, shown: str) -> None:
    """A web page is no lead file: a sign-in page or a share page, not the download."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        raise InputError(
            "the link answered with a web page, not a lead file; use a direct download "
            "link (a Google Sheet must be shared as 'anyone with the link'); nothing was sent",
            file=shown,
        )


def _too_big_text(limit: int) -> str:
    return (
        f"more than {limit:,} bytes behind this link, the most shandy downloads "
        f"({ENV_MAX_STREAM_BYTES}); nothing was sent. Raise {ENV_MAX_STREAM_BYTES} "
        "or download the file and import it by its path"
    )
