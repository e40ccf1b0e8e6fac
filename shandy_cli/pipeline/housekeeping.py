"""What an unfinished run leaves in the state dir, and when it goes.

A run's *chunk bodies* (``runs/<id>/chunks/``) are rebuilt from its inputs by
every attempt, so a run that is not running never needs the ones it left: they
go when

- the run is attempted again (the earlier attempt's bodies, before the new ones);
- it is *superseded*: a later run of the same target (step, or the prospect
  list) from the same input path(s) completed — an older export's unfinished
  import, abandoned for the new one. Its journal entry stays, and it can still
  be resumed (its bodies are rebuilt then);
- it is *pruned*: ``shandy runs --prune`` (``prune_runs``) takes, from failed,
  interrupted and crashed runs older than N days, the bodies, the sent index and
  the copies of stdin or pipes they read. Those copies are all a resume of a
  stdin run needs: the user asked, so it cannot be resumed after that (a run
  from files still can). Partial copies (``.part``) a ``kill -9`` left, and
  copies no unfinished run holds, older than N days, go too.

A run is never touched while its lock is held: that is a process running it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shandy_cli._lock import RunLock
from shandy_cli.errors import InputError
from shandy_cli.exits import ExitCode
from shandy_cli.journal import Journal, RunRecord
from shandy_cli.pipeline.spool import remove_spools, spool_dir, stored_spools

# Outcomes whose leftovers --prune takes; "processing" runs wait for `shandy status`,
# which still needs their sent index and copies.
PRUNABLE = ("failed", "interrupted", "running")  # "running" only when its lock is free
DAY = 86_400.0
PRUNE_DAYS = 7.0  # `shandy runs --prune`'s default age: a week to notice and resume a run


def run_dir(state_dir: Path, run_id: str) -> Path:
    return state_dir / "runs" / run_id


def drop_bodies(state_dir: Path, run_id: str) -> int:
    """Remove a run's chunk bodies; the bytes freed."""
    folder = run_dir(state_dir, run_id) / "chunks"
    freed = _size(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return freed


@contextlib.contextmanager
def idle(state_dir: Path, run: RunRecord) -> Iterator[bool]:
    """Hold ``run``'s lock while its files are removed: True if no process runs it."""
    try:
        lock = RunLock(state_dir / "locks" / f"{run.fingerprint}.lock", "housekeeping")
        lock.__enter__()
    except InputError:
        yield False  # it is running (or being resumed) right now
        return
    try:
        yield True
    finally:
        lock.__exit__(None, None, None)


def same_import_source(a: RunRecord, b: RunRecord) -> bool:
    """Same target and same input paths (as journalled: resolved, ``-`` for stdin)."""
    return a.step_id == b.step_id and a.options.get("paths") == b.options.get("paths")


def drop_superseded(journal: Journal, completed: RunRecord) -> list[str]:
    """Chunk bodies of unfinished runs ``completed`` supersedes; the ids swept."""
    swept = []
    for run in journal.runs(limit=-1):
        if run.id == completed.id or run.outcome == "completed" or run.outcome == "processing":
            continue  # processing: accepted, its bodies are gone already; nothing to take
        if run.started > completed.started or not same_import_source(run, completed):
            continue
        with idle(journal.state_dir, run) as free:
            if free and (run_dir(journal.state_dir, run.id) / "chunks").exists():
                drop_bodies(journal.state_dir, run.id)
                swept.append(run.id)
    return swept


@dataclass
class PruneResult:
    runs: list[str] = field(default_factory=list)  # ids whose leftovers were removed
    files: int = 0  # stray copies and partial copies removed
    bytes_freed: int = 0
    older_than_days: float = PRUNE_DAYS  # what was asked
    exit_code: ExitCode = ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """The contract's ``shandy runs --prune --json`` document."""
        return {
            "pruned_runs": self.runs,
            "files_removed": self.files,
            "bytes_freed": self.bytes_freed,
        }


def prune_runs(journal: Journal, older_than_days: float, now: float | None = None) -> PruneResult:
    """Remove what failed, interrupted and crashed runs older than N days left behind."""
    cutoff = (time.time() if now is None else now) - older_than_days * DAY
    result = PruneResult(older_than_days=older_than_days)
    runs = journal.runs(limit=-1)
    old = [r for r in runs if r.outcome in PRUNABLE and (r.ended or r.started) <= cutoff]
    with contextlib.ExitStack() as locks:
        idle_runs = [r for r in old if locks.enter_context(idle(journal.state_dir, r))]
        taken = {r.id for r in idle_runs}
        # Copies a run that stays (busy, newer, or processing) still reads: kept.
        held = {
            path
            for r in runs
            if r.outcome != "completed" and r.id not in taken
            for path in stored_spools(r.options).values()
        }
        for run in idle_runs:
            result.bytes_freed += _prune_one(journal.state_dir, run, held)
            result.runs.append(run.id)
        _prune_spool_dir(journal.state_dir, cutoff, held, result)
    return result


def _prune_one(state_dir: Path, run: RunRecord, held: set[Path]) -> int:
    freed = drop_bodies(state_dir, run.id)
    sent = run_dir(state_dir, run.id) / "sent.idx"
    freed += _size(sent)
    sent.unlink(missing_ok=True)
    spools = [p for p in stored_spools(run.options).values() if p not in held]
    freed += sum(_size(p) for p in spools)
    remove_spools(spools)
    return freed


def _prune_spool_dir(state_dir: Path, cutoff: float, held: set[Path], result: PruneResult) -> None:
    """Partial copies a ``kill -9`` left, and whole copies no remaining run reads, if old."""
    folder = spool_dir(state_dir)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path in held or not path.name.endswith((".part", ".bin")):
            continue
        with contextlib.suppress(FileNotFoundError):
            info = path.stat()
            if info.st_mtime <= cutoff:  # a copy being written now has a fresh mtime
                path.unlink()
                result.files += 1
                result.bytes_freed += info.st_size


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0
