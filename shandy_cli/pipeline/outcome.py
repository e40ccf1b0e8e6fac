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

This is the one home of how a run ends, for ``import`` (``run.py``) and
``status`` (``status.py``) alike: a chunk's outcome and its end in the journal
(``end_chunk``), the run's failures and the ledger's refusals (``settle_run``,
``write_run_failures``), the top reasons, the journal's word for the end
(``journal_outcome``), the cleanup of a completed run (``complete_run``) and the
exit code of a run, or of requests, that ended (``ended_exit_code``).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shandy_cli.exits import INTERRUPT_CODES, ExitCode
from shandy_cli.journal import LATE, ChunkRecord, Journal
from shandy_cli.pipeline.housekeeping import drop_superseded, run_dir
from shandy_cli.pipeline.reporting import (
    RowFetcher,
    SentIndex,
    ServerFailure,
    parse_report,
    reason_kind,
    write_failures,
)
from shandy_cli.pipeline.spool import releasable
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
        chunk.run_id,
        chunk.idx,
        state,
        report=str(report) if report else None,
        report_url=report_url,
        failed_rows=len(outcome.failed),
        already_present_rows=len(outcome.already_present),
    )
    return state


def end_chunk(
    journal: Journal | None,
    chunk: ChunkRecord | None,
    report: Path | None,
    *,
    request_id: str,
    report_url: str | None,
) -> tuple[ChunkOutcome, str]:
    """A completed request, counted as the import that sent it counts it (``chunk``: its
    journal record, whose POSTs say whether its own repeats are in the report), and, for a
    chunk still accepted in the journal, its end written there. Returns the outcome and
    the chunk's state (``completed`` or ``failed``)."""
    outcome = read_chunk_outcome(report, request_id, resent=was_resent(chunk))
    if chunk is None:
        return outcome, outcome.state(0)
    if journal is not None and chunk.state == "accepted":
        return outcome, record_chunk(journal, chunk, outcome, report=report, report_url=report_url)
    return outcome, outcome.state(chunk.rows)


def all_done(chunks: Iterable[ChunkRecord]) -> bool:
    states = [c.state for c in chunks]
    return bool(states) and all(s in DONE_STATES for s in states)


@dataclass
class RunOutcome:
    """Every completed chunk of a run, from the reports the journal points to."""

    conflict: str
    failed: list[ServerFailure] = field(default_factory=list)
    already_present: list[ServerFailure] = field(default_factory=list)
    # email keys of already-present rows a late update chunk updated (--update-existing)
    updated: set[int] = field(default_factory=set)
    # (email key, chunk index) of every row a late update chunk sent again
    sent_again: list[tuple[int, int]] = field(default_factory=list)

    @property
    def not_updated(self) -> list[ServerFailure]:
        """The already-present rows whose fields nothing updated."""
        if not self.updated:
            return self.already_present
        return [f for f in self.already_present if email_key(f.email) not in self.updated]

    @property
    def listed(self) -> list[ServerFailure]:
        """The rows the failures file and the top reasons name: those not done as asked."""
        if already_present_fails(self.conflict):
            return [*self.failed, *self.not_updated]
        return self.failed


def run_outcome(journal: Journal, run_id: str, conflict: str) -> RunOutcome:
    outcome = RunOutcome(conflict)
    for chunk in journal.chunks(run_id):
        report = Path(chunk.report) if chunk.report else None
        found = read_chunk_outcome(report, chunk.request_id or "", resent=was_resent(chunk))
        outcome.failed.extend(found.failed)
        outcome.already_present.extend(found.already_present)
        if chunk.updates == LATE and chunk.state in DONE_STATES:
            refused = {email_key(f.email) for f in found.failed if f.email}
            keys = journal.ledger_chunk(run_id, chunk.idx)
            outcome.updated.update(set(keys) - refused)
            outcome.sent_again.extend((key, chunk.idx) for key in keys)
    return outcome


def settle_run(journal: Journal, run_id: str, conflict: str) -> RunOutcome:
    """Once every chunk is done: the run's outcome, and the ledger keeps only what landed."""
    outcome = run_outcome(journal, run_id, conflict)
    refuse_in_ledger(journal, run_id, outcome)
    return outcome


def refuse_in_ledger(journal: Journal, run_id: str, outcome: RunOutcome) -> None:
    """Failed rows did not land: ``--only-new`` must send them again. Already-present rows
    are in the sequence (sending them to the step again would change nothing): kept, but
    their fields are not what was sent, so ``--only-changed`` counts them as changed."""
    refused = [email_key(f.email) for f in outcome.failed if f.email]
    if refused:
        journal.ledger_refuse(run_id, refused)
    unwritten = [email_key(f.email) for f in outcome.already_present if f.email]
    if unwritten:
        journal.ledger_unwritten(run_id, unwritten)


def write_run_failures(
    journal: Journal,
    run_id: str,
    conflict: str,
    *,
    path: Path,
    columns: list[str],
    rejects: Path | None,
    sent: SentIndex,
    sources: list[tuple[str, list[str]]],
    fetch: RowFetcher,
) -> tuple[RunOutcome, Path | None]:
    """Once every chunk is done: the run settled (``settle_run``) and its failures file
    written, rows joined back to their source rows (``fetch``). Returns the outcome
    and the file written (None: no row to list)."""
    outcome = settle_run(journal, run_id, conflict)
    # `shandy trace`: Saleshandy's word on each row, and the rows late chunks sent again
    from shandy_cli.pipeline.trace import save_outcome  # once a run, not at every status

    save_outcome(journal, run_id, outcome.failed, outcome.already_present, outcome.sent_again)
    written = write_failures(path, columns, rejects, outcome.listed, sent, sources, fetch)
    return outcome, written


def finished_exit_code(
    *, rejected: int, failed: int, already_present: int, conflict: str
) -> ExitCode:
    """0 or 1 for a run (or a request) that finished: the contract's exit code table."""
    if rejected or failed or (already_present and already_present_fails(conflict)):
        return ExitCode.ROWS_FAILED
    return ExitCode.OK


def ended_exit_code(
    finished: Iterable[int], *, pending: bool = False, error_code: int | None = None
) -> ExitCode:
    """The exit code of a run, or of ``status``'s requests, that ended: the code of the error
    that ended it (``error_code``; 0 there says 4: resumable); 5 when the wait for
    Saleshandy ran out with requests still processing (``pending``); else the worst of the
    ``finished`` codes (``finished_exit_code`` of each), 0 with none."""
    if error_code is not None:
        return ExitCode(error_code or ExitCode.API)
    if pending:
        return ExitCode.TIMEOUT
    return ExitCode(max(finished, default=ExitCode.OK))


def timeout_message(request_ids: Iterable[str], *, run: bool) -> str:
    """What a wait that ran out says: ``import``'s (``run``) names how to continue."""
    ids = " ".join(request_ids)
    if run:
        return (
            "--timeout passed while Saleshandy was still processing; continue with: "
            f"shandy status {ids} --wait (or run the same command again)"
        )
    return f"--timeout passed; still processing: {ids}"


def unsent_error(detail: str, unsent_rows: int, run_id: str) -> str:
    """A run the API stopped after something was sent: what is left, and how to send it."""
    return (
        f"{detail}; {unsent_rows:,} row(s) in unsent chunks: run the same command "
        f"again, or `shandy resume {run_id}`, to send them"
    )


def resumable_error(detail: str, run_id: str) -> str:
    """A run that anything else stopped after something was sent."""
    return (
        f"{detail}; the journal is saved: `shandy resume {run_id}` (or the same "
        "command) continues without sending accepted chunks again"
    )


def interrupted_error(accepted: int, chunks: int, run_id: str) -> str:
    return (
        f"interrupted after {accepted} of {chunks} chunk(s) were accepted; the journal "
        f"is saved: `shandy resume {run_id}` (or the same command) continues"
    )


def after_sending_code(exc: BaseException) -> ExitCode:
    """Anything that ends a run after the first POST is 4 (3: the key): resumable, never
    2, which says nothing was sent, and never 1, which says it finished."""
    code = getattr(exc, "exit_code", None)
    return ExitCode.AUTH if code == ExitCode.AUTH else ExitCode.API


def journal_outcome(*, exit_code: int, error: bool, completed: bool, chunks: int) -> str:
    """The journal's word for how a run ended."""
    if exit_code in INTERRUPT_CODES:
        return "interrupted"
    if error:
        return "failed"
    if completed or not chunks:
        return "completed"
    return "processing"  # accepted, not yet known to be done (--no-wait, --timeout)


def complete_run(journal: Journal, run_id: str, spools: Iterable[Path]) -> None:
    """A run is done: journalled completed, its leftovers cleaned (``clean_completed``;
    of ``spools``, those no unfinished run still reads), and the runs it supersedes
    dropped."""
    journal.update_run(run_id, outcome="completed", ended=time.time())
    clean_completed(run_dir(journal.state_dir, run_id), releasable(journal, spools))
    record = journal.get(run_id)
    if record is not None:
        drop_superseded(journal, record)


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
