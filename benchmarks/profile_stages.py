"""Where shandy's per-row CSV path spends its time, stage by stage, without profiler overhead.

    python benchmarks/profile_stages.py /tmp/bench/leads-1000000.csv

Runs the pipeline's own components cumulatively -- read; + map; + validate;
+ encode; + chunk (spool to disk); + ledger (second email key, sent index,
chunk keys) -- each level a full pass over the file, and prints each level's
time and the difference to the previous one (the stage's own cost).  Then
calls ``prepare()`` itself (which also writes rejects and chunk digests).
cProfile inflates the per-call costs ~1.5x; this does not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from array import array
from pathlib import Path

from shandy_cli.pipeline.chunking import Chunker, encode_prospect
from shandy_cli.pipeline.mapping import build_mapping
from shandy_cli.pipeline.reporting import SentIndex
from shandy_cli.pipeline.sources import open_source
from shandy_cli.pipeline.validation import Validator, email_key
from shandy_cli.sandbox.seed import CUSTOM_FIELDS, SYSTEM_FIELDS

LABELS = [label for _, label in SYSTEM_FIELDS] + [label for _, label, _ in CUSTOM_FIELDS]
LEVELS = ["read", "map", "validate", "encode", "chunk", "ledger"]
SUFFIX = b'],"stepId":"StepA1","verifyProspects":false,"conflictAction":"noUpdate","tags":[]}'


def run_level(path: str, level: int, tmp: Path) -> tuple[float, int]:
    started = time.perf_counter()
    src = open_source(path)
    mapping = build_mapping(src.info.columns, LABELS)
    ncols = len(src.info.columns)
    validator = Validator()
    chunker = Chunker(SUFFIX, spool_dir=tmp / f"chunks-{level}")
    sent = SentIndex(tmp / f"sent-{level}.idx")
    keys = array("Q")
    sent_rows = 0
    for row in src.rows():
        if level < 1:
            continue
        if len(row.values) > ncols and any(v.strip() for v in row.values[ncols:]):
            continue
        prospect = mapping.prospect(row.values)
        if level < 2:
            continue
        if validator.check(prospect, file=row.file, row=row.number, problem=row.problem):
            continue
        if level < 3:
            continue
        item = encode_prospect(prospect)
        if not chunker.fits_alone(item):
            continue
        if level < 4:
            continue
        closed = chunker.add(item, file=row.file, row=row.number)
        if level < 5:
            continue
        key = email_key(prospect.get("Email", ""))
        if closed:
            keys = array("Q")
        keys.append(key)
        sent.add(key, 0, row.number)
        sent_rows += 1
    chunker.finish()
    sent.close()
    src.close()
    return time.perf_counter() - started, sent_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shandy-stages-") as tmp:
        previous = 0.0
        print(f"{'level':<10} {'total s':>8} {'stage s':>8}")
        for level, name in enumerate(LEVELS):
            seconds, _ = run_level(args.csv, level, Path(tmp))
            print(f"{name:<10} {seconds:>8.2f} {seconds - previous:>8.2f}", flush=True)
            previous = seconds


if __name__ == "__main__":
    main()
