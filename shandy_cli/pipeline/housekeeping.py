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

*Keeping* (``expire_runs``): runs are kept ``SHANDY_KEEP_DAYS`` (default 90) after
they ended, then a *finished* one is removed whole: its journal records (run,
chunks), its run dir (``runs/<id>/``: reports, chunk bodies, sent index) and the
copies of stdin it read that no remaining run reads. Finished means completed,
superseded (above), or no longer resumable: it has no complete set of copies of
its streams (it read files, or ``--prune`` took its copy). So a failed,
interrupted or crashed run that read stdin stays while its copy does (a week of
``--prune``'s default, or for ever if nobody prunes), and a ``--no-wait`` run
waiting for ``shandy status`` that read stdin stays too; one that read files goes
at ``keep_days`` like the rest. The ``--only-new`` ledger is never pruned: it says
what landed, whatever became of the run that sent it. It is *folded* then
(``Journal.compact_ledger``): the rows of completed and removed runs keep each
address's last landing only, so nightly imports of the same rows do not grow it.

``keep_runs`` does this after a completed import at most once a ~day per state
dir (the mtime of the 0600 marker ``.kept``), so a cron job of many small runs
does not scan the journal each time; ``shandy runs --prune`` does it every time.
Keeping never fails a run: an error is a logged warning, and a run whose files
cannot be removed keeps its journal records (it is tried again next time).

A run is never touched while its lock is held: that is a process running it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shandy_cli._files import ensure_private_dir
from shandy_cli._lock import RunLock
from shandy_cli.config import DEFAULT_KEEP_DAYS
from shandy_cli.errors import InputError
from shandy_cli.exits import ExitCode
from shandy_cli.journal import Journal, LedgerCompaction, RunRecord
from shandy_cli.pipeline.spool import remove_spools, spool_dir, stored_spools

# Outcomes whose leftovers --prune takes; "processing" runs wait for `shandy status`,
# which still needs their sent index and copies.
PRUNABLE = ("failed", "interrupted", "running")  # "running" only when its lock is free
DAY = 86_400.0
PRUNE_DAYS = 7.0  # `shandy runs --prune`'s default age: a week to notice and resume a run
KEEP_MARKER = ".kept"  # in the state dir: its mtime is when finished runs were last pruned
KEEP_EVERY = 20 * 3600.0  # at most once a ~day: a nightly cron's runs drift by some hours

log = logging.getLogger(__name__)


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
    removed_runs: list[str] = field(default_factory=list)  # finished runs removed whole
    keep_days: float = DEFAULT_KEEP_DAYS  # the age they were removed at
    warnings: list[str] = field(default_factory=list)  # what could not be removed
    ledger: LedgerCompaction = field(default_factory=LedgerCompaction)  # what was folded

    def to_json(self) -> dict[str, Any]:
        """The contract's ``shandy runs --prune --json`` document."""
        return {
            "pruned_runs": self.runs,
            "files_removed": self.files,
            "bytes_freed": self.bytes_freed,
            "removed_runs": self.removed_runs,
            "ledger_keys_folded": self.ledger.keys_removed,
        }


def prune_runs(
    journal: Journal,
    older_than_days: float,
    now: float | None = None,
    result: PruneResult | None = None,
) -> PruneResult:
    """Remove what failed, interrupted and crashed runs older than N days left behind."""
    cutoff = (time.time() if now is None else now) - older_than_days * DAY
    result = result if result is not None else PruneResult()
    result.older_than_days = older_than_days
    runs = journal.runs(limit=-1)
    old = [r for r in runs if r.outcome in PRUNABLE and (r.ended or r.started) <= cutoff]
    with contextlib.ExitStack() as locks:
        idle_runs = [r for r in old if locks.enter_context(idle(journal.state_dir, r))]
        taken = {r.id for r in idle_runs}
        held = _held_spools(runs, taken)
        for run in idle_runs:
            result.bytes_freed += _prune_one(journal.state_dir, run, held)
            result.runs.append(run.id)
        _prune_spool_dir(journal.state_dir, cutoff, held, result)
    return result


def _held_spools(runs: list[RunRecord], taken: set[str]) -> set[Path]:
    """The stream copies a run that stays (busy, newer, or unfinished) still reads: kept."""
    return {
        path
        for r in runs
        if r.outcome != "completed" and r.id not in taken
        for path in stored_spools(r.options).values()
    }


def expire_runs(
    journal: Journal, keep_days: float, now: float | None = None, result: PruneResult | None = None
) -> PruneResult:
    """Remove finished runs that ended more than ``keep_days`` ago, whole (see above), and
    fold the ledger.

    What cannot be removed is logged as a warning (and listed in ``warnings``); its
    run stays in the journal. Never raises for a file that will not go."""
    cutoff = (time.time() if now is None else now) - keep_days * DAY
    result = result if result is not None else PruneResult()
    result.keep_days = keep_days
    runs = journal.runs(limit=-1)
    completed = [r for r in runs if r.outcome == "completed"]
    old = [r for r in runs if (r.ended or r.started) <= cutoff and _finished(r, completed)]
    with contextlib.ExitStack() as locks:
        idle_runs = [r for r in old if locks.enter_context(idle(journal.state_dir, r))]
        taken = {r.id for r in idle_runs}
        held = _held_spools(runs, taken)
        gone = []
        for run in idle_runs:
            folder = run_dir(journal.state_dir, run.id)
            freed = _size(folder)
            errors: list[str] = []
            if folder.exists() or folder.is_symlink():
                _remove_tree(folder, errors)
            if errors:
                text = f"run {run.id} is kept: cannot remove {errors[0]}"
                log.warning(text)
                result.warnings.append(text)
                continue
            spools = [p for p in stored_spools(run.options).values() if p not in held]
            freed += sum(_size(p) for p in spools)
            remove_spools(spools)
            result.bytes_freed += freed
            gone.append(run.id)
        journal.forget_runs(gone)
        result.removed_runs.extend(gone)
    _fold_ledger(journal, result)
    return result


def _fold_ledger(journal: Journal, result: PruneResult) -> None:
    """``Journal.compact_ledger``; a failure (a full disk, a busy journal) is a warning: the
    ledger is as it was, or folded up to the stretch that failed, and answers the same."""
    try:
        result.ledger = journal.compact_ledger()
    except sqlite3.Error as exc:
        text = f"the ledger was not folded: {exc}"
        log.warning(text)
        result.warnings.append(text)


def keep_runs(journal: Journal, keep_days: float, now: float | None = None) -> PruneResult | None:
    """After a completed run: ``expire_runs`` if the state dir's marker is a ~day old (or
    missing), else nothing (None). Never raises: what goes wrong is a logged warning."""
    try:
        now = time.time() if now is None else now
        marker = journal.state_dir / KEEP_MARKER
        with contextlib.suppress(FileNotFoundError):
            if now - marker.stat().st_mtime < KEEP_EVERY:
                return None
        touch_marker(journal.state_dir, now)  # first: a failing prune is not retried each run
        return expire_runs(journal, keep_days, now)
    except Exception as exc:  # pruning never fails a run
        log.warning("pruning runs older than %g days failed: %s", keep_days, exc)
        return None


def touch_marker(state_dir: Path, now: float | None = None) -> None:
    """Say finished runs were pruned now: the 0600 marker's mtime."""
    marker = ensure_private_dir(state_dir) / KEEP_MARKER
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    stamp = time.time() if now is None else now
    os.utime(marker, (stamp, stamp))


def _finished(run: RunRecord, completed: list[RunRecord]) -> bool:
    """Completed, superseded by a later completed run, or no longer resumable (no
    complete set of copies of the streams it read)."""
    if run.outcome == "completed":
        return True
    if any(c.started >= run.started and same_import_source(run, c) for c in completed):
        return True
    spools = stored_spools(run.options).values()
    return not spools or not all(p.is_file() for p in spools)


def _remove_tree(folder: Path, errors: list[str]) -> None:
    def failed(_func: object, path: str, info: tuple[type, BaseException, object]) -> None:
        exc = info[1]
        errors.append(f"{path} ({getattr(exc, 'strerror', None) or exc})")

    try:
        shutil.rmtree(folder, onerror=failed)
    except OSError as exc:  # a symlink, say: rmtree refuses it before calling onerror
        errors.append(f"{folder} ({exc.strerror or exc})")


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
