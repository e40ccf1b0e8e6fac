"""How a run ends: one decision for ``shandy import`` and ``shandy status`` alike.

Saleshandy's report of a completed request lists rows that did not go in as
asked. Each is one of:

- **failed** (``failed_rows``): not imported; it goes to the failures file, and
  the ledger forgets it so ``--only-new`` sends it again;
- **already present** (``already_present_rows``): the prospect was already in
  the step's sequence. It *is* in the sequence, so the ledger keeps it, but a
  step import never adds or updates it whatever ``conflictAction`` says. Under
  ``noUpdate`` that is what was asked; under the other actions the update did
  not happen, so those rows count against the exit code and are listed in the
  failures file with their reason;
- **an own repeat**: a chunk the journal saw sent more than once (its answer
  was lost, or a retry) finds its own first copy already present. Those rows
  landed: imported, neither failed nor already present. The report cannot
  tell an own repeat from a prospect that was in the sequence before the run,
  so in such a chunk *every* already-present row counts as imported.

Nothing here talks to the API: it reads saved reports and the journal.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shandy_cli.journal import ChunkRecord, Journal
from shandy_cli.pipeline.reporting import ServerFailure, parse_report, reason_kind
from shandy_cli.pipeline.validation import email_key

# How Saleshandy words "this prospect is already in the sequence": live, "Prospect already
# present in another step of same sequence"; older clients saw "already exists in this step".
ALREADY_PRESENT_MARKERS = ("already present", "already exist")
DONE_STATES = ("completed", "failed")
NO_UPDATE = "noUpdate"


def is_already_present(reason: str) -> bool:
    """Whether a report's reason says the prospect was already in the sequence."""
    text = reason.lower()
    return any(marker in text for marker in ALREADY_PRESENT_MARKERS)


def already_present_fails(conflict: str) -> bool:
    """Under ``noUpdate`` an already-present row is what was asked; otherwise its update
    (overwrite, addMissingFields, upsert) did not happen."""
    return conflict != NO_UPDATE


@dataclass
class ChunkOutcome:
    """One completed request's report, sorted; rows not listed were imported."""

    failed: list[ServerFailure] = field(default_factory=list)
    already_present: list[ServerFailure] = field(default_factory=list)
    own_repeats: int = 0

    def state(self, rows: int) -> str:
        """``failed`` when none of the chunk's rows landed; already present ones did."""
        return "failed" if rows and len(self.failed) >= rows else "completed"


def was_resent(chunk: ChunkRecord | None) -> bool:
    """The journal counts every POST of a chunk: more than one may have landed twice."""
    return chunk is not None and chunk.attempts > 1


def chunk_outcome(found: Iterable[ServerFailure], *, resent: bool) -> ChunkOutcome:
    outcome = ChunkOutcome()
    for failure in found:
        if not is_already_present(failure.reason):
            outcome.failed.append(failure)
        elif resent:
            outcome.own_repeats += 1
        else:
            outcome.already_present.append(failure)
    return outcome


def read_chunk_outcome(report: Path | None, request_id: str, *, resent: bool) -> ChunkOutcome:
    """The outcome of a request from its saved report (no report: every row imported)."""
    if report is None or not report.is_file():
        return ChunkOutcome()
    return chunk_outcome(parse_report(report, request_id), resent=resent)


def record_chunk(
    journal: Journal,
    chunk: ChunkRecord,
    outcome: ChunkOutcome,
    *,
    report: Path | None,
    report_url: str | None,
) -> str:
    """Write a completed chunk's end to the journal; returns its state."""
    state = outcome.state(chunk.rows)
    journal.mark(
        chunk.run_id, chunk.idx, state, report=str(report) if report else None,
        report_url=report_url, failed_rows=len(outcome.failed),
        already_present_rows=len(outcome.already_present),
    )  # fmt: skip
    return state


def all_done(chunks: Iterable[ChunkRecord]) -> bool:
    states = [c.state for c in chunks]
    return bool(states) and all(s in DONE_STATES for s in states)


@dataclass
class RunOutcome:
    """Every completed chunk of a run, from the reports the journal points to."""

    conflict: str
    failed: list[ServerFailure] = field(default_factory=list)
    already_present: list[ServerFailure] = field(default_factory=list)

    @property
    def listed(self) -> list[ServerFailure]:
        """The rows the failures file and the top reasons name: those not done as asked."""
        if already_present_fails(self.conflict):
            return [*self.failed, *self.already_present]
        return self.failed


def run_outcome(journal: Journal, run_id: str, conflict: str) -> RunOutcome:
    outcome = RunOutcome(conflict)
    for chunk in journal.chunks(run_id):
        report = Path(chunk.report) if chunk.report else None
        found = read_chunk_outcome(report, chunk.request_id or "", resent=was_resent(chunk))
        outcome.failed.extend(found.failed)
        outcome.already_present.extend(found.already_present)
    return outcome


def settle_run(journal: Journal, run_id: str, conflict: str) -> RunOutcome:
    """Once every chunk is done: the run's outcome, and the ledger keeps only what landed."""
    outcome = run_outcome(journal, run_id, conflict)
    refuse_in_ledger(journal, run_id, outcome)
    return outcome


def refuse_in_ledger(journal: Journal, run_id: str, outcome: RunOutcome) -> None:
    """Failed rows did not land: ``--only-new`` must send them again. Already-present rows
    are in the sequence (sending them to the step again would change nothing): kept."""
    refused = [email_key(f.email) for f in outcome.failed if f.email]
    if refused:
        journal.ledger_refuse(run_id, refused)


def finished_exit_code(*, rejected: int, failed: int, already_present: int, conflict: str) -> int:
    """0 or 1 for a run (or requests) that finished: the contract's exit code table."""
    if rejected or failed or (already_present and already_present_fails(conflict)):
        return 1
    return 0


def top_reasons(local: Counter[str], listed: Iterable[ServerFailure]) -> list[tuple[str, int]]:
    counts = Counter(local)
    counts.update(reason_kind(f"Saleshandy: {f.reason}") for f in listed)
    return counts.most_common()


def clean_completed(run_dir: Path, spools: Iterable[Path]) -> None:
    """A completed run's chunk bodies, sent index and copies of stdin have served."""
    shutil.rmtree(run_dir / "chunks", ignore_errors=True)
    (run_dir / "sent.idx").unlink(missing_ok=True)
    for spool in spools:
        spool.unlink(missing_ok=True)
