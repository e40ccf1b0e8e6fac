"""The journal of imports as ``shandy runs`` lists it: one record a run, newest first."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from shandy_cli.config import resolve_settings
from shandy_cli.exits import ExitCode
from shandy_cli.journal import Journal, RunRecord
from shandy_cli.pipeline.housekeeping import (
    PRUNE_DAYS,
    PruneResult,
    expire_runs,
    prune_runs,
    touch_marker,
)

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
    settings = resolve_settings(state_dir=state_dir, need_key=False)
    with Journal(settings.state_dir) as journal:
        return RunsResult([run_record(journal, r) for r in journal.runs(limit)])


def prune(
    older_than_days: float | None = None, *, state_dir: str | os.PathLike[str] | None = None
) -> PruneResult:
    """``shandy runs --prune`` on the journal of ``state_dir``: finished runs older than
    ``older_than_days`` removed whole (``expire_runs``, as a completed import does once a
    day; default the ``keep_days`` setting, ``SHANDY_KEEP_DAYS``), then the leftovers of
    unfinished runs older than ``older_than_days`` (``prune_runs``; default a week)."""
    settings = resolve_settings(state_dir=state_dir, need_key=False)
    leftovers = PRUNE_DAYS if older_than_days is None else older_than_days
    keep = settings.keep_days if older_than_days is None else older_than_days
    with Journal(settings.state_dir) as journal:
        touch_marker(settings.state_dir)
        # Finished runs first: a run whose stdin copy goes now says so if resumed, until
        # the next prune (a completed import's, or this command's) removes it.
        result = expire_runs(journal, keep)
        return prune_runs(journal, leftovers, result=result)


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
