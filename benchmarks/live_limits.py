"""How many calls each phase of a big import makes, per endpoint and per minute, under live limits.

    python benchmarks/live_limits.py [--rows 60000] [--max-rows 2500] [--delay 1.0]

Starts the sandbox with its default (live) rate limits — 20 calls a minute per
endpoint, 300 in total, answered as HTTP 400 — imports a generated file (the
same one the done-when test of issue 11 uses: a LinkedIn URL column, a typed
number column, local rejects and rows Saleshandy fails) into "Outbound Q4",
found by name beyond the first page of sequences, and prints for each phase
(before submitting, submitting, processing, reporting) its length and, per
endpoint, the calls made, calls per minute and the busiest sliding minute,
plus every rate-limit answer the sandbox gave.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shandy_cli import SaleshandyClient, import_files
from shandy_cli.pipeline.events import Event, Phase
from shandy_cli.sandbox import SandboxConfig, start_sandbox
from tests.test_live_api import busiest_minute, write_big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--max-rows", type=int, default=2_500)
    parser.add_argument("--delay", type=float, default=1.0, help="sandbox seconds per import")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shandy-limits-"))
    big = tmp / "big.csv"
    write_big(big, args.rows)
    config = SandboxConfig(state_dir=tmp / "sandbox", delay_base=args.delay, extra_sequences=1100)
    marks: list[tuple[str, float]] = [("before submitting", time.time())]

    def listen(event: Event) -> None:
        if isinstance(event, Phase) and event.name in ("submitting", "processing", "reporting"):
            marks.append((event.name, time.time()))

    with start_sandbox(config) as sandbox, SaleshandyClient(sandbox.url, "bench-key") as client:
        result = import_files(
            [str(big)], client=client, state_dir=tmp / "state", sequence="Outbound Q4",
            max_rows=args.max_rows, listener=listen,
        )  # fmt: skip
        marks.append(("end", time.time()))
        log = sandbox.requests()
    print(f"exit {result.exit_code}: {result.rows_read:,} read, {len(result.chunks)} chunks, "
          f"{result.rows_rejected} rejected, {result.rows_failed} failed at Saleshandy, "
          f"{marks[-1][1] - marks[0][1]:.1f} s")  # fmt: skip
    print(f"rate-limit answers: {sum(1 for r in log if r.get('limited'))}")
    for (name, start), (_, end) in itertools.pairwise(marks):
        calls = [r for r in log if start <= r["time"] < end and _limited_route(r)]
        print(f"\n{name}: {end - start:.1f} s, {len(calls)} calls")
        for endpoint, n in sorted(Counter(r["endpoint"] for r in calls).items()):
            times = [r["time"] for r in calls if r["endpoint"] == endpoint]
            per_minute = n / max(end - start, 1e-9) * 60
            print(f"  {endpoint:45} {n:4} calls  {per_minute:6.1f}/min  "
                  f"busiest minute {busiest_minute(times)}")  # fmt: skip


def _limited_route(entry: dict[str, object]) -> bool:
    endpoint = str(entry.get("endpoint") or "")
    return bool(endpoint) and "/import-prospect/file" not in endpoint


if __name__ == "__main__":
    main()
