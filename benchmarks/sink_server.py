"""A loopback API that accepts imports and does nothing with them: shandy's side alone.

    python benchmarks/sink_server.py --port 8788

The sandbox parses every body and writes every prospect to SQLite *before* it
answers 201, which on 2 cores costs as much CPU as the import itself.  This sink
answers the calls ``shandy import --no-wait`` makes (``GET /v1/fields``, the two
import POSTs) with the sandbox's seeded fields and a request id, after reading
and discarding the body, so the time measured is the client's.  ``--check``
parses each body and counts its prospects (off by default: it costs CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from shandy_cli.sandbox.seed import CUSTOM_FIELDS, SYSTEM_FIELDS

FIELDS = [{"id": i, "label": label, "fieldType": "text"} for i, label in SYSTEM_FIELDS] + [
    {"id": i, "label": label, "fieldType": t} for i, label, t in CUSTOM_FIELDS
]
IMPORT_PATHS = (
    "/v1/sequences/prospects/import-with-field-name",
    "/v1/prospects/import-with-field-name",
)
_ids = itertools.count(1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    check = False
    # The status line and headers, then the body, go out as two writes: with Nagle on,
    # the second waits for the client's delayed ACK (40 ms a request on Linux).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.buffer = bytearray(4 << 20)

    def _reply(self, status: int, payload: object) -> None:
        body = orjson.dumps({"message": "ok", "payload": payload})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/v1/fields":
            self._reply(200, FIELDS)
        else:
            self._reply(404, None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.check:
            body = self.rfile.read(length)
            rows = len(orjson.loads(body)["prospectList"])
            self.log_message("%s: %d bytes, %d prospects", self.path, length, rows)
        else:  # into one reusable buffer: a sink should cost as little as possible
            view = memoryview(self.buffer)
            left = length
            while left:
                got = self.rfile.readinto(view[: min(left, len(view))])
                if not got:
                    break
                left -= got
        if self.path.split("?")[0] in IMPORT_PATHS:
            self._reply(201, {"requestId": f"sink{next(_ids)}"})
        else:
            self._reply(404, None)

    def log_message(self, format: str, *args: object) -> None:
        if self.check:
            sys.stderr.write(format % args + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--check", action="store_true", help="parse and count each body")
    args = parser.parse_args(argv)
    Handler.check = args.check
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"sink on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
