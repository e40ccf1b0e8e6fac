"""The journal of imports as ``shandy runs`` lists it: one record a run, newest first."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from shandy_cli.config import resolve_settings
from shandy_cli.exits import ExitCode
from shandy_cli.journal import Journal, RunRecord
from shandy_cli.pipeline.housekeeping import PruneResult, prune_runs

# What a run's line shows, in order (``runs`` off a terminal prints these as a header).
RUN_COLUMNS = ("run", "started", "outcome", "step", "files", "rows", "chunks")


@dataclass(frozen=True)
class RunsResult:
    """The runs the journal holds (the contract's ``shandy runs --json`` records)."""

    runs: list[dict[str, Any]]
    exit_code: ExitCode = ExitCode.OK

    def to_json(self) -> list[dict[str, Any]]:
        return self.runs


def list_runs(limit: int = 20, *, state_dir: str | os.PathLike[str] | None = None) -> RunsResult:
    """The ``limit`` most recent runs in the journal of ``state_dir``, newest first."""
    settings = resolve_settings(state_dir=state_dir)
    with Journal(settings.state_dir) as journal:
        return RunsResult([run_record(journal, r) for r in journal.runs(limit)])


def prune(
    older_than_days: float, *, state_dir: str | os.PathLike[str] | None = None
) -> PruneResult:
    """``prune_runs`` on the journal of ``state_dir`` (``shandy runs --prune``)."""
    settings = resolve_settings(state_dir=state_dir)
    with Journal(settings.state_dir) as journal:
        return prune_runs(journal, older_than_days)


def run_record(journal: Journal, run: RunRecord) -> dict[str, Any]:
    """One run as ``shandy runs --json`` lists it (its outcome as the journal knows it now)."""
    chunks = journal.chunks(run.id)
    return {
        "run_id": run.id,
        "started": _iso(run.started),
        "ended": _iso(run.ended),
        "outcome": journal.live_outcome(run),
        "pid": run.pid,
        "step_id": run.step_id,
        "files": run.files,
        "rows_read": run.meta.get("rows_read"),
        "rows_submitted": run.meta.get("rows_submitted"),
        "chunks": len(chunks),
        "chunks_accepted": sum(c.state in ("accepted", "completed", "failed") for c in chunks),
        "request_ids": [c.request_id for c in chunks if c.request_id],
    }


def run_cells(record: dict[str, Any]) -> list[str]:
    """A run's values under ``RUN_COLUMNS``, as text."""
    r = record
    chunks = f"{r['chunks_accepted']}/{r['chunks']}"
    rows = str(r["rows_read"] or 0)
    files = ", ".join(r["files"])
    return [
        r["run_id"],
        r["started"] or "",
        r["outcome"],
        r["step_id"] or "list",
        files,
        rows,
        chunks,
    ]


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) if ts else None
