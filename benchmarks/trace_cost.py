"""What ``shandy trace`` costs an import: the records the readers keep while reading, and
``trace.save_run`` writing ``trace.bin`` (digests, sort, file), on a generated CSV.

    python benchmarks/trace_cost.py --rows 1000000 [--way auto|never] [--only-new]

Runs ``prepare`` (stages 1-4, chunk bodies written, as a real import) with the trace
hooks turned into no-ops, then with them, each ``--repeat`` times, and prints the
best of each, the time ``save_run`` took and the size of the file. ``--only-new``
marks every address as imported before (every row is skipped: the hooks' worst case).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from shandy_cli.pipeline import trace as trace_mod  # noqa: E402
from shandy_cli.pipeline.prepare import PrepareContext, prepare  # noqa: E402
from shandy_cli.pipeline.results import ImportOptions  # noqa: E402
from shandy_cli.pipeline.validation import email_key  # noqa: E402

LABELS = ["First Name", "Last Name", "Email", "Company", "Job Title", "Phone Number",
          "Website", "City", "Country", "Lead Source"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--way", default="auto", choices=["auto", "never", "always"])
    parser.add_argument("--only-new", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    data = args.data_dir / f"leads-{args.rows}.csv"
    if not data.exists():
        subprocess.run([sys.executable, str(HERE / "generate.py"), "csv", "--rows",
                        str(args.rows), "--out", str(data)], check=True)  # fmt: skip
    skip: set[int] = set()
    if args.only_new:
        import csv

        with data.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            at = next(reader).index("Email")
            skip = {email_key(r[at]) for r in reader if r[at].strip()}
    work = Path(tempfile.mkdtemp(prefix="trace-cost-"))
    off, on, saves = [], [], []
    try:
        for attempt in range(args.repeat):
            for traced in (False, True):
                run_dir = work / f"run-{attempt}-{traced}"
                run_dir.mkdir()
                ctx = PrepareContext(
                    paths=[str(data)], opts=ImportOptions(step_id="S1", columnar=args.way),
                    labels=LABELS, step_id="S1", run_dir=run_dir,
                    rejects_path=run_dir / "rejects.csv", listener=lambda e: None,
                    notice=lambda t, lvl: None, skip_keys=skip,
                )  # fmt: skip
                saved = {}
                if not traced:
                    for name in ("refused", "refused_block", "skipped", "skipped_many"):
                        saved[name] = getattr(trace_mod.RunTrace, name)
                        setattr(trace_mod.RunTrace, name, lambda self, *a, **k: None)
                try:
                    start = time.perf_counter()
                    prepared = prepare(ctx)
                    took = time.perf_counter() - start
                finally:
                    for name, method in saved.items():
                        setattr(trace_mod.RunTrace, name, method)
                if traced:
                    start = time.perf_counter()
                    trace_mod.save_run(work / "state", run_dir, prepared)
                    saves.append(time.perf_counter() - start)
                    size = (run_dir / trace_mod.TRACE_FILE).stat().st_size
                (on if traced else off).append(took)
                shutil.rmtree(run_dir)
        print(f"rows {args.rows:,} ({args.way}{', only-new' if args.only_new else ''}): "
              f"prepare {min(off):.3f} s without the hooks, {min(on):.3f} s with them "
              f"(+{min(on) - min(off):.3f} s); save_run {min(saves):.3f} s "
              f"(runs: {', '.join(f'{s:.3f}' for s in saves)}); trace.bin {size:,} bytes; "
              f"{prepared.rows_submitted:,} submitted, {prepared.rows_rejected:,} rejected, "
              f"{prepared.rows_skipped:,} skipped")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
