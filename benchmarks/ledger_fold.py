"""What folding the ledger (``Journal.compact_ledger``) saves the runs that read it.

    python benchmarks/ledger_fold.py                       # 30 nights of 200,000 rows
    python benchmarks/ledger_fold.py --nights 60 --rows 1000000 --repeat 3

A nightly cron imports the same export every night (chunks of 100,000, all completed):
the ledger holds ``nights x rows`` keys. Measured in the same run, medians of
``--repeat``: what an ``--only-new`` run reads (``ledger_keys``) and an
``--only-changed`` run reads (``ledger_state``), before and after the fold, the
fold itself, and the keys the ledger holds. Printed as ratios, before / after.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shandy_cli.journal import Journal

CHUNK = 100_000


def fill(journal: Journal, nights: int, rows: int) -> None:
    for night in range(nights):
        run_id = f"night{night:03d}"
        journal.create_run(run_id, f"fp{night}", {}, [], "StepA1", 1)
        for idx, start in enumerate(range(0, rows, CHUNK)):
            keys = array("Q", range(start + 1, min(start + CHUNK, rows) + 1))
            digests = array("Q", (k * 31 + night % 3 for k in keys))  # some rows change
            journal.accept(run_id, idx, f"q{night}.{idx}", "StepA1", keys,
                           hashes=digests, account="acct")  # fmt: skip
        journal.update_run(run_id, outcome="completed", ended=time.time())


def timed(call: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, answer = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), answer


def peak_mb(call: Callable[[], object]) -> float:
    """The most memory ``call`` held at once (numpy's arrays included), in MB."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def fold_copy(journal: Journal, where: Path) -> None:
    """Fold a copy of the journal (the timed fold then starts from the same ledger)."""
    where.mkdir()
    with sqlite3.connect(where / "journal.sqlite3") as copy:
        journal.db.backup(copy)
    with Journal(where) as other:
        other.compact_ledger()


def held(journal: Journal) -> int:
    (blob,) = journal.db.execute("SELECT SUM(LENGTH(keys)) FROM ledger_chunks").fetchone()
    return int(blob or 0) // 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fold-") as tmp, Journal(Path(tmp)) as journal:
        fill(journal, args.nights, args.rows)
        keys_before = held(journal)
        new_before, skip = timed(lambda: journal.ledger_keys("StepA1", account="acct"), args.repeat)
        state_before, _ = timed(lambda: journal.ledger_state("StepA1", "acct"), args.repeat)
        state_peak = peak_mb(lambda: journal.ledger_state("StepA1", "acct"))
        fold_peak = peak_mb(lambda: fold_copy(journal, Path(tmp) / "copy"))
        start = time.perf_counter()
        journal.compact_ledger()
        fold = time.perf_counter() - start
        new_after, skip_after = timed(
            lambda: journal.ledger_keys("StepA1", account="acct"), args.repeat
        )
        state_after, _ = timed(lambda: journal.ledger_state("StepA1", "acct"), args.repeat)
        assert skip == skip_after, "the fold changed what --only-new skips"
        keys_after = held(journal)
    print(f"{args.nights} nights of {args.rows:,} rows; medians of {args.repeat}")
    print(f"ledger keys held     {keys_before:>12,} -> {keys_after:>10,}"
          f"  ({keys_before / keys_after:.1f}x fewer)")  # fmt: skip
    for name, before, after in (
        ("--only-new read", new_before, new_after),
        ("--only-changed read", state_before, state_after),
    ):
        print(f"{name:<20} {before:>10.3f} s -> {after:>8.3f} s  ({before / after:.1f}x faster)")
    print(f"the fold, once       {fold:>10.3f} s")
    print(
        f"peak memory: --only-changed read before {state_peak:,.0f} MB,"
        f" the fold {fold_peak:,.0f} MB"
    )


if __name__ == "__main__":
    main()
