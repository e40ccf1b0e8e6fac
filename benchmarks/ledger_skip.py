"""What a large ``--only-new`` ledger costs a 1M-row import: the same import to the sink
server against an empty ledger and against one of ``--keys`` earlier addresses.

    python benchmarks/ledger_skip.py                 # 300,000 ledger keys, 3 rounds
    python benchmarks/ledger_skip.py --keys 1000000 --repeat 5

The CSV is bench.py's (``generate.py``). The ledger's keys are random (none match the
file's rows), so every row is still sent: what is measured is the skip check itself
(the columnar reader asks it of every block) and loading the ledger. Each import runs in
this process (``import_files``, ``--no-wait``); medians, and the ratio of the two,
measured in the same run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402 -- a script beside this one

from shandy_cli import SaleshandyClient, import_files  # noqa: E402
from shandy_cli.journal import Journal  # noqa: E402


def one(data: Path, keys: int, url: str) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    try:
        with SaleshandyClient(url, "bench") as client:
            with Journal(tmp / "state") as journal:
                rng = random.Random(keys)
                packed = array("Q", (rng.getrandbits(64) for _ in range(keys)))
                for i in range(0, keys, 100_000):
                    part = packed[i : i + 100_000]
                    journal.ledger_add("StepA1", part, "r0", i // 100_000, account=client.account)
            started = time.perf_counter()
            import_files(
                [str(data)],
                client=client,
                state_dir=tmp / "state",
                step_id="StepA1",
                wait=False,
                only_new=True,
                on_unknown_column="ignore",
                rejects=tmp / "rejects.csv",
            )
            return time.perf_counter() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench")
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    data = bench.ensure_data("csv", args.rows, args.data_dir)
    print(f"{data}: {args.rows:,} rows; ledger of {args.keys:,} keys -- {bench.git_state()}")
    times: dict[int, list[float]] = {0: [], args.keys: []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-sink-"))
    try:
        with bench.server("sink", tmp, bench.clean_env()) as (url, _):
            for round_ in range(args.repeat):
                for keys in times:
                    times[keys].append(one(data, keys, url))
                    print(f"  round {round_ + 1}: {keys:>9,} ledger keys {times[keys][-1]:6.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    empty, full = (statistics.median(times[k]) for k in times)
    print(f"empty ledger {empty:.2f} s, {args.keys:,} keys {full:.2f} s: ratio {full / empty:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
