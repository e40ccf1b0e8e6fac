"""The whole import, stage after stage: the library call the CLI itself makes.

    sources -> mapping -> validation -> chunking   (prepare.py: all to disk first)
            -> submission -> polling -> reporting  (here, each step in the journal)

An import is identified by its *fingerprint*: the content of its inputs, its
target and every option that changes what is sent. Running the same import
again resumes it if it is unfinished (accepted chunks are never sent twice),
or sends nothing if it completed (unless ``force``). One run of an import at
a time holds its lock.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from shandy_cli._files import ensure_private_dir
from shandy_cli._lock import RunLock, lock_path
from shandy_cli._version import __version__
from shandy_cli.client import ImportStatus, SaleshandyClient
from shandy_cli.config import DEFAULT_MAX_STREAM_BYTES, resolve_settings
from shandy_cli.errors import (
    ApiError,
    ApiValidationError,
    AuthenticationError,
    InputError,
    RateLimitError,
    ServerError,
    TransportError,
    interrupt_exit_code,
)
from shandy_cli.exits import INTERRUPT_CODES
from shandy_cli.faults import as_fault, fault_message
from shandy_cli.journal import UNFINISHED, Journal, RunRecord
from shandy_cli.pipeline.events import ChunkEvent, Listener, Phase, ignore, notify
from shandy_cli.pipeline.housekeeping import drop_bodies, drop_superseded
from shandy_cli.pipeline.labels import SYSTEM_LABELS as SYSTEM_LABELS
from shandy_cli.pipeline.labels import field_labels
from shandy_cli.pipeline.labels import field_type as field_type
from shandy_cli.pipeline.outcome import (
    clean_completed,
    finished_exit_code,
    read_chunk_outcome,
    record_chunk,
    settle_run,
    top_reasons,
    was_resent,
)
from shandy_cli.pipeline.polling import Poller
from shandy_cli.pipeline.prepare import (
    SKIPPED_REASON,
    PrepareContext,
    Prepared,
    fetch_rows,
    input_identity,
    prepare,
)
from shandy_cli.pipeline.reporting import (
    OutputPaths,
    SentIndex,
    ServerFailure,
    report_path,
    write_failures,
)
from shandy_cli.pipeline.results import (
    ChunkResult,
    ImportOptions,
    ImportResult,
    attach_result,
    stopped_result,
)
from shandy_cli.pipeline.spool import (
    fingerprint,
    refuse_devices,
    releasable,
    remove_spools,
    spool_streams,
    stored_spools,
)
from shandy_cli.pipeline.submission import import_endpoint, resolve_step, submit_chunks

# A POST answered with one of these was refused outright: nothing of it was imported.
REFUSED = (RateLimitError, AuthenticationError, ApiValidationError)

# Re-exported: the labels' rules live in pipeline/labels.py (preview uses them too).


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def import_files(
    paths: Sequence[str | os.PathLike[str]],
    options: ImportOptions | None = None,
    *,
    client: SaleshandyClient | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    listener: Listener = ignore,
    stdin: BinaryIO | None = None,
    resume_run: str | None = None,
    spools: dict[int, Path] | None = None,
    max_stream_bytes: int | str | None = None,
    **option_kwargs: Any,
) -> ImportResult:
    """Import lead files into a Saleshandy step (or the prospect list) and account for every row.

    ``options`` or keyword arguments of ``ImportOptions`` (``step_id=...``,
    ``tags=[...]``, ``dry_run=True``, ``only_new=True``, ...). Without
    ``client`` one is made from ``api_key``/``base_url`` or the environment.
    Raises ``ShandyError`` subclasses for problems that stop the run before
    anything is sent; otherwise returns an ``ImportResult`` whose
    ``exit_code`` follows the contract. ``max_stream_bytes`` (an int or ``"4GB"``)
    caps the copy of a stream input, as ``SHANDY_MAX_STREAM_BYTES`` does.
    """
    opts = options or ImportOptions(**option_kwargs)
    names = [str(p) for p in paths]
    runner: _Run | None = None
    own_client = client is None
    try:
        opts.check()
        settings = resolve_settings(
            api_key=api_key, base_url=base_url, state_dir=state_dir,
            max_stream_bytes=max_stream_bytes,
        )  # fmt: skip
        if client is None and (settings.api_key or not opts.dry_run):
            client = SaleshandyClient(
                settings.base_url, settings.api_key, rate_limits=settings.rate_limits
            )
        runner = _Run(names, opts, client, settings.state_dir, listener, stdin)
        runner.spools = dict(spools or {})
        runner.max_stream_bytes = settings.max_stream_bytes
        return runner.run(resume_run)
    except (Exception, KeyboardInterrupt) as exc:
        raise _stopped(exc, runner, names, opts) from exc
    finally:
        if own_client and client is not None:
            client.close()


def _stopped(
    exc: Exception | KeyboardInterrupt, runner: _Run | None, names: list[str], opts: ImportOptions
) -> BaseException:
    """What a run that stopped early raises: ``exc`` itself when its exit code stands, else a
    ``FaultError`` (2 if nothing was sent, 4 once anything was), with the run's
    ``ImportResult`` attached either way (``stopped_result``) so ``--json`` can print it."""
    sent = runner is not None and runner._anything_sent()
    state_dir = runner.state_dir if runner else None
    raised: BaseException = exc
    if not isinstance(exc, KeyboardInterrupt):
        raised = as_fault(exc, sent=sent, state_dir=state_dir)
    if runner is not None:
        result = runner.result
    else:
        result = stopped_result(exc, names, dry_run=opts.dry_run, step_id=opts.step_id)
    result.stop(exc, sent=sent, state_dir=state_dir)
    attach_result(raised, result)
    return raised


def resume_import(
    run_id: str | None = None,
    *,
    last: bool = False,
    client: SaleshandyClient | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    listener: Listener = ignore,
    **overrides: Any,
) -> ImportResult:
    """Continue an unfinished run from the journal (by id, or the most recent one)."""
    settings = resolve_settings(state_dir=state_dir)
    with Journal(settings.state_dir) as journal:
        record = journal.last() if last or not run_id else journal.get(run_id)
    if record is None:
        raise InputError(f"no run {run_id!r} in the journal" if run_id else "no runs to resume")
    if record.outcome == "completed":
        raise InputError(f"run {record.id} already completed; nothing to resume")
    opts = ImportOptions.from_json(record.options["options"])
    for key, value in overrides.items():
        setattr(opts, key, value)
    paths = record.options["paths"]
    spools = stored_spools(record.options)
    for index, spool in spools.items():
        if not spool.is_file():
            raise InputError(f"run {record.id} read {paths[index]!r}, and its saved copy is gone")
    return import_files(
        paths, opts, client=client, state_dir=settings.state_dir, listener=listener,
        resume_run=record.id, spools=spools,
    )  # fmt: skip


class _Run:
    def __init__(
        self,
        paths: list[str],
        opts: ImportOptions,
        client: SaleshandyClient | None,
        state_dir: Path,
        listener: Listener,
        stdin: BinaryIO | None,
    ) -> None:
        if not paths:
            raise InputError("no input files")
        if paths.count("-") > 1:
            raise InputError("'-' (stdin) may be given only once")
        self.paths = paths
        self.opts = opts
        self.client = client
        self.state_dir = state_dir
        self.listener = listener
        self.stdin = stdin
        self.spools: dict[int, Path] = {}
        self.max_stream_bytes = DEFAULT_MAX_STREAM_BYTES
        self.run_id = new_run_id()
        names = ["<stdin>" if p == "-" else p for p in paths]
        self.result = ImportResult(
            self.run_id, opts.dry_run, opts.step_id, names, conflict=opts.conflict
        )
        self.failures: list[ServerFailure] = []  # the rows the failures file lists
        self.journal: Journal | None = None
        self.poller: Poller | None = None
        self._attempted: Counter[int] = Counter()  # POST attempts per chunk index, this process
        self._sending: int | None = None  # the chunk whose POST is under way
        self._uncertain: set[int] = set()  # chunks a POST may have delivered, answer unknown
        self.field_types: dict[str, str] = {}  # label -> fieldType, filled by _labels
        # Each input as it was read: a failures file is joined only to the same file.
        self.inputs: list[dict[str, Any] | None] = []
        self.abandoned: RunRecord | None = None  # a crashed run of the same inputs' paths

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "runs" / self.run_id

    def notice(self, text: str, level: str = "warning") -> None:
        """Say ``text`` once: logged and heard by the listener (``events.notify``)."""
        if level == "warning":
            self.result.warnings.append(text)
        notify(self.listener, text, level)

    # -- the run ---------------------------------------------------------------------------

    def run(self, resume_run: str | None = None) -> ImportResult:
        refuse_devices(self.paths, self.spools, self.stdin)
        self._outputs()  # no input is ever overwritten: checked before anything is sent
        labels = self._labels()
        step_id = self._target()
        if self.opts.dry_run:
            return self._dry_run(labels, step_id)
        self._spool_streams()
        fingerprint = self._fingerprint(step_id)
        with Journal(self.state_dir) as journal:
            self.journal = journal
            prior = journal.find(fingerprint)
            if resume_run and (prior is None or prior.id != resume_run):
                raise InputError(
                    f"the inputs or options of run {resume_run} changed; nothing was sent "
                    "(run the import again to start a new run)"
                )
            if prior and prior.outcome == "completed" and not self.opts.force:
                return self._already_imported(prior)
            resume = prior if prior and prior.outcome in UNFINISHED else None
            if resume:
                self.run_id = self.result.run_id = resume.id
            if resume is None:
                self._note_abandoned(journal, step_id)
            with RunLock(lock_path(self.state_dir, fingerprint), self.run_id):
                return self._locked_run(labels, step_id, fingerprint, resume)

    def _note_abandoned(self, journal: Journal, step_id: str | None) -> None:
        """A run of the same target and inputs stopped while sending (a crash), and the
        inputs changed since (so this is a new run): say so, and skip what it landed."""
        paths = self._stored_options()["paths"]
        record = journal.abandoned(step_id, paths)
        if record is None:
            return
        chunks = journal.chunks(record.id)
        landed = [c for c in chunks if c.state in ("accepted", "completed", "failed")]
        if not landed:
            return  # it sent nothing: nothing of it to account for
        self.abandoned = record
        self.notice(
            f"run {record.id} of the same step and file(s) did not finish "
            f"({journal.live_outcome(record)}: {len(landed)} of {len(chunks)} chunk(s), "
            f"{sum(c.rows for c in landed):,} row(s) accepted); the file(s) changed since, so "
            f"this is a new run, and rows that run imported are skipped"
        )

    def _locked_run(
        self, labels: list[str], step_id: str | None, fingerprint: str, resume: RunRecord | None
    ) -> ImportResult:
        journal = self.journal
        assert journal is not None
        if resume:
            current = journal.get(resume.id)  # it may have finished while we waited
            if current and current.outcome == "completed" and not self.opts.force:
                return self._already_imported(current)
            self.result.resumed = True
            drop_bodies(self.state_dir, self.run_id)  # an earlier attempt's: rebuilt below
            journal.update_run(self.run_id, outcome="running", pid=os.getpid(), ended=None)
            self.notice(f"resuming unfinished run {self.run_id}", "info")
        else:
            journal.create_run(
                self.run_id, fingerprint, self._stored_options(), self.result.files, step_id,
                os.getpid(),
            )  # fmt: skip
        ensure_private_dir(self.run_dir)
        skip = (
            journal.ledger_keys(step_id, exclude_run=self.run_id) if self.opts.only_new else set()
        )
        if self.abandoned is not None:  # rows it landed are not sent again, nor failures
            skip |= journal.ledger_keys(step_id, only_run=self.abandoned.id)
        try:
            prepared = self._prepare(labels, step_id, skip)
        except KeyboardInterrupt:
            self._record_end("interrupted")
            raise
        except BaseException:
            self._record_end("failed")
            raise
        self._plan(prepared)
        try:
            self._send_and_wait(prepared, step_id)
        except KeyboardInterrupt as exc:
            self._interrupted(exc)
        except Exception as exc:
            if self._sending is not None and not isinstance(exc, ApiError):
                self._uncertain.add(self._sending)  # a fault just after a POST: it may have landed
            if not self._anything_sent():
                self._record_end("failed")
                raise  # nothing left this machine: import_files gives the exit code (2, 3)
            self._failed_after_sending(exc)
        self._finish(prepared)
        return self.result

    def _send_and_wait(self, prepared: Prepared, step_id: str | None) -> None:
        assert self.client is not None
        previous, self.client.on_wait = self.client.on_wait, self._budget_wait
        try:
            to_send = self._to_send(prepared)
            if to_send:
                self._submit(prepared, to_send, step_id)
            if self.result.error is None and self.opts.wait and self.result.request_ids:
                self._wait_and_report(prepared, step_id)
        finally:
            self.client.on_wait = previous

    def _anything_sent(self) -> bool:
        """True once any chunk may be at Saleshandy: accepted, or a POST whose answer was
        lost (dropped, timed out, a 5xx) now or in an earlier attempt. A POST the API
        refused outright (a 400, the key, a rate limit) imported nothing."""
        return bool(self.result.request_ids or self._uncertain or self.result.chunks_resent)

    def _note_uncertain(self, exc: BaseException) -> None:
        if self._sending is not None and isinstance(exc, ServerError | TransportError):
            self._uncertain.add(self._sending)

    def _record_end(self, outcome: str) -> None:
        """Journal how a run that is failing ended. Recording it may fail too (the same full
        disk, most likely): that is a warning, and the error that ended the run is the one
        reported, not the later one raised while writing it down."""
        if self.journal is None:
            return
        try:
            self.journal.update_run(self.run_id, outcome=outcome, ended=time.time())
        except Exception as exc:
            self.notice(
                f"the journal could not record the run's end: {fault_message(exc, self.state_dir)}"
            )

    def _failed_after_sending(self, exc: Exception) -> None:
        """Anything that ends a run after the first POST is exit 4 (3: the key): resumable,
        never 2, which says nothing was sent, and never 1, which says it finished."""
        detail = fault_message(exc, self.state_dir)
        self.result.error = (
            f"{detail}; the journal is saved: `shandy resume {self.run_id}` (or the same "
            "command) continues without sending accepted chunks again"
        )
        self.result.exit_code = 3 if isinstance(exc, AuthenticationError) else 4

    def _budget_wait(self, endpoint: str, seconds: float, also: str = "") -> None:
        """A wait for the rate-limit budget is said, not silent (short ones are noise)."""
        if seconds >= 1:
            assert self.client is not None
            limits = self.client.budget.limits.describe()
            self.notice(
                f"waiting {seconds:.0f}s for the rate limit of {endpoint} "
                f"(pacing at {limits}){also}",
                "info",
            )

    def _dry_run(self, labels: list[str], step_id: str | None) -> ImportResult:
        ensure_private_dir(self.run_dir)
        try:
            prepared = self._prepare(labels, step_id, set())
            self._plan(prepared)
            self._finish(prepared)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.result

    # -- before sending ----------------------------------------------------------------------

    def _labels(self) -> list[str]:
        found = field_labels(self.client)  # the rule preview follows too
        self.result.labels_source = found.source
        self.field_types = found.types
        if found.source == "system":
            self.notice(
                "no API key: mapping against Saleshandy's system field labels only "
                "(set SALESHANDY_API_KEY or use --sandbox to map against your account)",
                "info",
            )
        return found.labels

    def _target(self) -> str | None:
        if self.opts.sequence:
            if self.client is None:
                raise InputError(
                    "--sequence needs the API: set SALESHANDY_API_KEY or use --sandbox"
                )
            step_id = resolve_step(self.client, self.opts.sequence, self.opts.step_number)
            self.notice(f"sequence {self.opts.sequence!r}: step {step_id}", "info")
            self.result.step_id = step_id
            return step_id
        return self.opts.step_id

    def _spool_streams(self) -> None:
        spool_streams(self.paths, self.spools, self.state_dir, self.max_stream_bytes, self.stdin)

    def _fingerprint(self, step_id: str | None) -> str:
        part = {"v": 2, "step": step_id, "options": self.opts.fingerprint_part()}
        found, digests = fingerprint(self.paths, self.spools, part)
        for index, (path, digest) in enumerate(zip(self.paths, digests, strict=True)):
            target = self.spools.get(index, Path(path))
            try:
                self.inputs.append(None if digest is None else input_identity(target, digest))
            except OSError:
                self.inputs.append(None)  # open_source will report the problem clearly
        return found

    def _stored_options(self) -> dict[str, Any]:
        paths = [p if p == "-" else str(Path(p).resolve()) for p in self.paths]
        options = self.opts.to_json()
        options["step_id"] = self.result.step_id
        options["sequence"] = None
        return {
            "paths": paths,
            "options": options,
            "spools": {str(i): str(p) for i, p in self.spools.items()},
            "version": __version__,
        }

    def _outputs(self) -> OutputPaths:
        return OutputPaths.for_run(self.paths, self.opts.rejects, self.run_dir)

    def _rejects_path(self) -> Path:
        return self._outputs().rejects

    def _failures_path(self) -> Path:
        return self._outputs().failures

    def _prepare(self, labels: list[str], step_id: str | None, skip: set[int]) -> Prepared:
        ctx = PrepareContext(
            paths=self.paths,
            opts=self.opts,
            labels=labels,
            step_id=step_id,
            run_dir=self.run_dir,
            rejects_path=self._rejects_path(),
            listener=self.listener,
            notice=self.notice,
            client=self.client,
            stdin=self.stdin,
            spools=self.spools,
            skip_keys=skip,
            field_types=self.field_types,
        )
        prepared = prepare(ctx)
        res = self.result
        res.files = prepared.names
        res.rows_read = prepared.rows_read
        res.rows_submitted = prepared.rows_submitted
        res.rows_rejected = prepared.rows_rejected
        res.rows_skipped = prepared.rows_skipped
        res.rejects_file = str(prepared.rejects_file) if prepared.rejects_file else None
        if prepared.rows_skipped and self.abandoned and not self.opts.only_new:
            # every skip is one of the abandoned run's rows: the reason names it
            count = prepared.reasons.pop(SKIPPED_REASON, 0)
            prepared.reasons[f"imported by run {self.abandoned.id}"] += count
        if prepared.rows_skipped:
            self.notice(f"{prepared.rows_skipped:,} row(s) skipped: already imported", "info")
        return prepared

    def _plan(self, prepared: Prepared) -> None:
        """Chunk results, merged with what the journal knows of a resumed run."""
        known = {c.idx: c for c in self.journal.chunks(self.run_id)} if self.journal else {}
        for chunk, digest in zip(prepared.chunks, prepared.digests, strict=True):
            result = ChunkResult(chunk.index, chunk.rows, chunk.bytes)
            old = known.get(chunk.index)
            if old and old.hash == digest and old.state in ("accepted", "completed", "failed"):
                result.state = old.state
                result.request_id = old.request_id
                result.report_url = old.report_url
                result.failed_rows = old.failed_rows or 0
                result.already_present_rows = old.already_present_rows or 0
            elif self.journal:
                if old and old.hash == digest and old.state == "sending":
                    self.result.chunks_resent.append(chunk.index)
                self.journal.plan_chunk(
                    self.run_id, chunk.index, rows=chunk.rows, size=chunk.bytes, digest=digest,
                    first=chunk.first, last=chunk.last,
                )  # fmt: skip
            self.result.chunks.append(result)
        if self.journal:
            self.journal.drop_chunks_from(self.run_id, len(prepared.chunks))
            meta = {
                "columns": prepared.columns,
                "file_columns": prepared.file_columns,
                "sources": prepared.sources,
                "rejects_file": self.result.rejects_file,
                "failures_file": str(self._failures_path()),
                "rows_read": prepared.rows_read,
                "rows_rejected": prepared.rows_rejected,
                "rows_skipped": prepared.rows_skipped,
                "rows_submitted": prepared.rows_submitted,
                "step_id": self.result.step_id,
                "inputs": self.inputs,
            }
            self.journal.update_run(self.run_id, meta=meta, step_id=self.result.step_id)

    def _to_send(self, prepared: Prepared) -> list[int]:
        pending = [c.index for c in self.result.chunks if c.state == "planned"]
        done = len(self.result.chunks) - len(pending)
        if self.result.resumed and done:
            self.notice(
                f"{done} chunk(s) were accepted by an earlier attempt: not sent again", "info"
            )
        for idx in self.result.chunks_resent:
            self.notice(
                f"chunk {idx + 1} was being sent when the last attempt stopped and its answer "
                "was lost: sending it again (conflictAction makes a repeat harmless)"
            )
        return pending

    # -- sending, waiting, reporting ---------------------------------------------------------

    def _submit(self, prepared: Prepared, to_send: list[int], step_id: str | None) -> None:
        assert self.journal is not None and self.client is not None
        journal = self.journal
        self.listener(Phase("submitting", len(self.result.chunks)))
        results = {c.index: c for c in self.result.chunks}
        chunks = [c for c in prepared.chunks if c.index in set(to_send)]
        poller = self._poller()
        for earlier in self.result.chunks:  # accepted by an earlier attempt: oldest first
            if earlier.state == "accepted" and earlier.request_id:
                poller.add(earlier.request_id)

        previous_hook = self.client.on_retry

        def on_retry(what: str, attempt: int, delay: float, exc: ApiError) -> None:
            if what.startswith("POST "):
                self._post_failed(exc)
            if previous_hook:
                previous_hook(what, attempt, delay, exc)

        self.client.on_retry = on_retry
        try:
            for sub in submit_chunks(self.client, chunks, to_step=step_id is not None,
                                     listener=self._send_event, idle=self._idle):  # fmt: skip
                keys = prepared.chunk_keys(sub.chunk)
                journal.accept(self.run_id, sub.chunk.index, sub.request_id, step_id, keys)
                chunk = results[sub.chunk.index]
                chunk.request_id, chunk.state = sub.request_id, "accepted"
                self.result.chunks_sent += 1
                if sub.chunk.path is not None:
                    sub.chunk.path.unlink(missing_ok=True)  # accepted: never needed again
                poller.add(sub.request_id)
                self._sending = None
        except ApiError as exc:
            self._note_uncertain(exc)
            if isinstance(exc, REFUSED):
                self._unsend()
            if not self._anything_sent():
                self._record_end("failed")
                raise  # nothing was sent: the error's own exit code (2, 3 or 4)
            unsent = sum(c.rows for c in self.result.chunks if c.state == "planned")
            self.result.error = (
                f"{exc.message}; {unsent:,} row(s) in unsent chunks: run the same command "
                f"again, or `shandy resume {self.run_id}`, to send them"
            )
            self.result.exit_code = 3 if exc.exit_code == 3 else 4
        finally:
            self.client.on_retry = previous_hook

    def _send_event(self, event: Any) -> None:
        if isinstance(event, ChunkEvent) and event.state == "sending":
            self._begin_attempt(event.index)
        self.listener(event)

    def _begin_attempt(self, index: int) -> None:
        """Journal a POST attempt, durably, before it is made."""
        assert self.journal is not None
        self.journal.mark(self.run_id, index, "sending")
        self._sending = index  # only once journalled: a POST is never made unrecorded
        self._attempted[index] += 1
        if self._attempted[index] == 2 and index not in self.result.chunks_resent:
            self.result.chunks_resent.append(index)  # the first may have landed

    def _unsend(self) -> None:
        """The POST under way was refused outright (a rate limit, the key, validation): it
        delivered nothing, so it is no attempt, in this process or in the journal. Else a
        refused chunk would be taken for a resent one, now or by a resume, and its rows
        already in the sequence counted as its own repeats (imported)."""
        index, self._sending = self._sending, None
        if index is None or self._attempted[index] < 1:
            return
        assert self.journal is not None
        self._attempted[index] -= 1
        self.journal.unsend(self.run_id, index)

    def _post_failed(self, exc: ApiError) -> None:
        if isinstance(exc, REFUSED):
            self._unsend()
        else:
            self._note_uncertain(exc)

    def _poller(self) -> Poller:
        if self.poller is None:
            assert self.client is not None
            self.poller = Poller(
                self.client, interval=self.opts.poll_interval, on_status=self._on_status
            )
        return self.poller

    def _idle(self, seconds: float) -> None:
        """The import endpoint's budget makes the next POST wait: poll meanwhile. What is
        left of the wait (all of it, with nothing to poll) the client waits out, and says."""
        poller = self._poller()
        if not (self.opts.wait and poller.pending):
            return
        endpoint = import_endpoint(self.result.step_id is not None)
        self._budget_wait(endpoint, seconds, "; polling accepted chunks meanwhile")
        poller.run_until(time.monotonic() + seconds)

    def _on_status(self, status: ImportStatus) -> None:
        chunk = next((c for c in self.result.chunks if c.request_id == status.request_id), None)
        if chunk is None or not status.completed or chunk.state != "accepted":
            return  # still processing: already said when it was accepted
        chunk.state, chunk.report_url = "completed", status.report_url
        self.listener(
            ChunkEvent(chunk.index, "completed", chunk.rows, chunk.bytes, chunk.request_id)
        )

    def _wait_and_report(self, prepared: Prepared, step_id: str | None) -> None:
        assert self.client is not None and self.journal is not None
        poller = self._poller()
        accepted = [c for c in self.result.chunks if c.request_id]
        for chunk in accepted:
            if chunk.state == "accepted":
                poller.add(str(chunk.request_id))
        if poller.pending:
            self.listener(Phase("processing", len(poller.pending)))
        timeout = self.opts.timeout
        poller.run_until(None if timeout is None else time.monotonic() + timeout)
        self.listener(Phase("reporting"))
        folder = ensure_private_dir(Path(self.opts.report_dir or self.run_dir / "reports"))
        for chunk in accepted:
            status = poller.latest.get(str(chunk.request_id))
            if status is not None and status.completed and chunk.state == "completed":
                self._chunk_report(chunk, status, folder)
        self._account(prepared, step_id)

    def _chunk_report(self, chunk: ChunkResult, status: ImportStatus, folder: Path) -> None:
        assert self.client is not None and self.journal is not None
        report = None
        if status.report_url:
            report = report_path(
                folder, str(status.request_id), self.paths, self.run_dir / "reports"
            )
            ensure_private_dir(report.parent)
            self.client.download_report(status.report_url, report)
        record = self.journal.chunk(self.run_id, chunk.index)
        assert record is not None
        # The journal's count of POSTs, not this process's: an earlier attempt's count too.
        outcome = read_chunk_outcome(report, str(status.request_id), resent=was_resent(record))
        chunk.failed_rows = len(outcome.failed)
        chunk.already_present_rows = len(outcome.already_present)
        chunk.state = record_chunk(
            self.journal, record, outcome, report=report, report_url=status.report_url
        )

    def _account(self, prepared: Prepared, step_id: str | None) -> None:
        """Once every chunk is done: the failures file, and the ledger keeps only what landed."""
        if not all(c.state in ("completed", "failed") for c in self.result.chunks):
            return
        assert self.journal is not None
        outcome = settle_run(self.journal, self.run_id, self.opts.conflict)
        failures = self.failures = outcome.listed
        self.result.rows_failed = len(outcome.failed)
        self.result.rows_already_present = len(outcome.already_present)
        rejects = Path(self.result.rejects_file) if self.result.rejects_file else None
        sent = prepared.sent or SentIndex.reader(self.run_dir / "sent.idx")
        path = write_failures(
            self._failures_path(), prepared.columns, rejects, failures, sent, prepared.sources,
            lambda wanted: fetch_rows(
                self.paths, self.opts, self.spools, wanted, self.inputs, self.notice
            ),
        )  # fmt: skip
        self.result.failures_file = str(path) if path else None

    def _interrupted(self, exc: KeyboardInterrupt) -> None:
        code = interrupt_exit_code(exc)
        sent = len(self.result.request_ids)
        self.result.exit_code = code
        self.result.error = (
            f"interrupted after {sent} of {len(self.result.chunks)} chunk(s) were accepted; "
            f"the journal is saved: `shandy resume {self.run_id}` (or the same command) continues"
        )

    def _already_imported(self, prior: RunRecord) -> ImportResult:
        res = self.result
        res.run_id, res.already_imported, res.completed = prior.id, True, True
        meta = prior.meta
        res.step_id = prior.step_id
        res.rows_read = meta.get("rows_read", 0)
        res.rows_submitted = meta.get("rows_submitted", 0)
        res.rows_rejected = meta.get("rows_rejected", 0)
        res.rows_skipped = meta.get("rows_skipped", 0)
        res.rejects_file = meta.get("rejects_file")
        if self.journal:
            for rec in self.journal.chunks(prior.id):
                res.chunks.append(
                    ChunkResult(rec.idx, rec.rows, rec.bytes, rec.request_id, rec.state,
                                rec.report_url, rec.failed_rows or 0,
                                rec.already_present_rows or 0)
                )  # fmt: skip
            res.rows_failed = sum(c.failed_rows for c in res.chunks)
            res.rows_already_present = sum(c.already_present_rows for c in res.chunks)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(prior.ended or prior.started))
        self.notice(
            f"this import already completed in run {prior.id} ({when}); nothing sent "
            "(--force imports it again)"
        )
        res.exit_code = 0
        if self.journal:  # the copy just made to fingerprint stdin has served
            remove_spools(releasable(self.journal, self.spools.values()))
        return res

    def _finish(self, prepared: Prepared) -> None:
        res = self.result
        res.reasons = top_reasons(prepared.reasons, self.failures)
        res.completed = (not res.error) and all(
            c.state in ("completed", "failed") for c in res.chunks
        )
        if res.dry_run:
            res.completed = False
        res.exit_code = self._exit_code()
        if res.exit_code == 5:
            res.error = (
                "--timeout passed while Saleshandy was still processing; continue with: "
                f"shandy status {' '.join(res.request_ids)} --wait (or run the same command again)"
            )
        self._close_journal_run()

    def _exit_code(self) -> int:
        res = self.result
        if res.error:
            return res.exit_code or 4
        if res.chunks and not res.dry_run and self.opts.wait and not res.completed:
            return 5
        return finished_exit_code(
            rejected=res.rows_rejected, failed=res.rows_failed,
            already_present=res.rows_already_present, conflict=self.opts.conflict,
        )  # fmt: skip

    def _close_journal_run(self) -> None:
        if self.journal is None:
            return
        res = self.result
        if res.exit_code in INTERRUPT_CODES:
            outcome = "interrupted"
        elif res.error:
            outcome = "failed"
        elif res.completed or not res.chunks:
            outcome = "completed"
        else:
            outcome = "processing"  # accepted, not yet known to be done (--no-wait, --timeout)
        if res.error:
            self._record_end(outcome)  # the run's own error is the one to report
            return
        self.journal.update_run(self.run_id, outcome=outcome, ended=time.time())
        if outcome == "completed":
            clean_completed(self.run_dir, releasable(self.journal, self.spools.values()))
            record = self.journal.get(self.run_id)
            if record is not None:
                drop_superseded(self.journal, record)


__all__ = ["ChunkResult", "ImportOptions", "ImportResult", "import_files", "resume_import"]
