"""One way to fetch a URL into a file within bounds, shared by the failed-rows report
(``client.SaleshandyClient.download_report``) and link inputs (``pipeline/links.py``).

A URL that came from elsewhere (a server's answer, a user's link) is fetched with a
byte cap (declared and counted), one deadline for the whole download (a server dripping
a byte a minute never trips a per-read timeout), and a few redirects, each hop checked
by the caller's ``headers_for`` before anything is sent to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO
from urllib.parse import urljoin

import httpx

MAX_REDIRECTS = 5


class TooBig(Exception):
    """The body is larger than the cap (declared or counted)."""


class TooSlow(Exception):
    """The download did not finish by its deadline."""


class TooManyRedirects(Exception):
    """More redirects than ``MAX_REDIRECTS``."""


def fetch_capped(
    http: httpx.Client,
    url: str,
    out: IO[bytes],
    *,
    max_bytes: int,
    deadline: float,
    headers_for: Callable[[str], dict[str, str]],
    on_status: Callable[[httpx.Response], Exception],
) -> httpx.Response:
    """Write the body behind ``url`` to ``out``; returns the final (read) response.

    ``headers_for(url)`` checks every hop (raising to refuse it) and says what to send
    to it; ``on_status`` turns a non-200 answer into the caller's error. Raises
    ``TooBig``, ``TooSlow``, ``TooManyRedirects``, or httpx's errors."""
    for _hop in range(MAX_REDIRECTS + 1):
        headers = headers_for(url)
        with http.stream("GET", url, headers=headers) as response:
            if response.is_redirect and response.headers.get("location"):
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code != 200:
                response.read()
                raise on_status(response)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise TooBig
            total = 0
            for part in response.iter_bytes():
                total += len(part)
                if total > max_bytes:
                    raise TooBig
                if time.monotonic() > deadline:
                    raise TooSlow
                out.write(part)
            return response
    raise TooManyRedirects
