"""The columnar reader: large CSV/TSV files and text-only XLSX sheets read in blocks
with polars and numpy, committing into the per-row path's own state, byte for byte
the per-row path's output. How it works: docs/architecture.md, "The columnar reader".

Importing this package loads polars and numpy: ``prepare`` imports it only for a
source it will read this way (small files never load them).
"""

from __future__ import annotations

import os

# One jemalloc arena for polars: several worker threads otherwise spread freed
# memory over up to 8 arenas, each keeping it for 10 s (more peak RSS; measure with
# benchmarks/bench.py --only dry-run, the peak RSS column, with and without it).
# Read when polars loads, so it has to be set before the first import of polars.
os.environ.setdefault("_RJEM_MALLOC_CONF", "narenas:1")

from shandy_cli.pipeline.columnar.delimited import (
    columnar_eligible,
    plan_problem,
    read_columnar,
)
from shandy_cli.pipeline.columnar.framing import source_codec
from shandy_cli.pipeline.columnar.sheet import read_frames, read_sheet
from shandy_cli.pipeline.columnar.state import Counts, Handover, RunState

__all__ = [
    "Counts",
    "Handover",
    "RunState",
    "columnar_eligible",
    "plan_problem",
    "read_columnar",
    "read_frames",
    "read_sheet",
    "source_codec",
]
