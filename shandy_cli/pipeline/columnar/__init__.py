"""The columnar reader: large CSV/TSV files and text-only XLSX sheets read in blocks
with polars and numpy, committing into the per-row path's own state, byte for byte
the per-row path's output. How it works: docs/architecture.md, "The columnar reader".

Importing this package loads polars and numpy: ``prepare`` imports it only for a
source it will read this way (small files never load them).
"""

from __future__ import annotations

import shandy_cli._allocator  # noqa: F401 -- before polars loads: one jemalloc arena
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
