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
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from shandy_cli import notify as notifications
from shandy_cli._files import ensure_private_dir
from shandy_cli._lock import RunLock, lock_path
from shandy_cli._version import __version__
from shandy_cli.client import ImportStatus, SaleshandyClient
from shandy_cli.config import DEFAULT_KEEP_DAYS, DEFAULT_MAX_STREAM_BYTES, resolve_settings
from shandy_cli.errors import ApiError, InputError, interrupt_exit_code
from shandy_cli.exits import ExitCode
from shandy_cli.faults import as_fault, fault_message
from shandy_cli.journal import LATE, UNFINISHED, Journal, Plan, RunRecord, run_options
from shandy_cli.pipeline.changes import UNCHANGED_SINCE, Changes
from shandy_cli.pipeline.chunking import STEP, Chunk
from shandy_cli.pipeline.events import ChunkEvent, Listener, Phase, ignore, notify
from shandy_cli.pipeline.housekeeping import drop_bodies, keep_runs, run_dir
from shandy_cli.pipeline.labels import SYSTEM_LABELS as SYSTEM_LABELS
from shandy_cli.pipeline.labels import field_labels
from shandy_cli.pipeline.labels import field_type as field_type
from shandy_cli.pipeline.links import is_link, shown_link, spool_links
from shandy_cli.pipeline.outcome import (
    DONE_STATES,
    after_sending_code,
    complete_run,
    end_chunk,
    ended_exit_code,
    finished_exit_code,
    interrupted_error,
    journal_outcome,
    resumable_error,
    timeout_message,
    top_reasons,
    unsent_error,
    write_run_failures,
)
from shandy_cli.pipeline.polling import Poller
from shandy_cli.pipeline.prepare import (
    SKIPPED_REASON,
    PrepareContext,
    Prepared,
    fetch_rows,
    prepare,
    reading_choice,
    suppress_lists,
)
from shandy_cli.pipeline.reporting import (
    OutputPaths,
    SentIndex,
    ServerFailure,
    save_report,
)
from shandy_cli.pipeline.results import (
    ChunkResult,
    ImportOptions,
    ImportResult,
    attach_result,
    stopped_result,
)
from shandy_cli.pipeline.spool import (
    digest_file,
    fingerprint_inputs,
    refuse_devices,
    releasable,
    remove_spools,
    spool_streams,
    stored_spools,
)
from shandy_cli.pipeline.submission import (
    Attempts,
    Submitted,
    resolve_step,
    submit_chunks,
)
from shandy_cli.pipeline.trace import save_run

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
    profile: str | None = None,
    **option_kwargs: Any,
) -> ImportResult:
    """Import lead files into a Saleshandy step (or the prospect list) and account for every row.

    ``options`` or keyword arguments of ``ImportOptions`` (``step_id=...``,
    ``tags=[...]``, ``dry_run=True``, ``only_new=True``, ...). Without
    ``client`` one is made from ``api_key``/``base_url`` or the environment.
    Raises ``ShandyError`` subclasses for problems that stop the run before
    anything is sent; otherwise returns an ``ImportResult`` whose
    ``exit_code`` follows the contract. ``max_stream_bytes`` (an int or ``"4GB"``)
    caps the copy of a stream input, as ``SHANDY_MAX_STREAM_BYTES`` does. ``profile``
    names the stored account profile (``shandy auth login``) whose key and base URL
    apply when no argument, variable or ``.env`` gives them; the journal records it.
    """
    opts = options or ImportOptions(**option_kwargs)
    names = [str(p) for p in paths]
    runner: _Run | None = None
    own_client = client is None
    settings = None
    try:
        opts.check()
        notifications.check_urls(opts.notify)  # a bad --notify URL: exit 2, nothing sent
        settings = resolve_settings(
            api_key=api_key,
            base_url=base_url,
            state_dir=state_dir,
            max_stream_bytes=max_stream_bytes,
            profile=profile,
        )
        if client is None and (settings.api_key or not opts.dry_run):
            client = SaleshandyClient(
                settings.base_url, settings.api_key, rate_limits=settings.rate_limits
            )
        # the setting's suppression lists always apply; the import's are added to them
        opts = replace(opts, suppress=suppress_lists(opts, settings))
        runner = _Run(names, opts, client, settings.state_dir, listener, stdin)
        runner.spools = dict(spools or {})
        runner.max_stream_bytes = settings.max_stream_bytes
        runner.reading = reading_choice(opts, settings)
        runner.keep_days = settings.keep_days
        runner.profile = settings.profile
        result = runner.run(resume_run)
    except (Exception, KeyboardInterrupt) as exc:
        stopped = _stopped(exc, runner, names, opts)
        notifications.after_import(opts, stopped_result(stopped, names), settings)
        stopped.notified = True  # type: ignore[attr-defined]  # callers must not tell again
        raise stopped from exc
    finally:
        if own_client and client is not None:
            client.close()
    notifications.after_import(opts, result, settings)  # never raises, never changes result
    return result


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
    profile: str | None = None,
    **overrides: Any,
) -> ImportResult:
    """Continue an unfinished run from the journal (by id, or the most recent one), with
    the account profile it ran with unless ``profile`` names another."""
    overrides_profile = profile
    settings = resolve_settings(state_dir=state_dir, need_key=False)  # the run's key, below
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
        paths,
        opts,
        client=client,
        state_dir=settings.state_dir,
        listener=listener,
        resume_run=record.id,
        spools=spools,
        profile=overrides_profile or record.options.get("profile"),
    )


class _Run:
    """One import, in layers that each call the next, as httpx layers ``send``:

    ``run`` (checks before anything is sent; a dry run ends here) -> ``_journalled``
    (the inputs' fingerprint in the journal: done already? a resume?) -> ``_locked``
    (the run's lock and record) -> ``_prepare_journalled`` and ``_plan`` -> ``_send``
    (a stop while sending) -> ``_send_and_wait`` -> ``_submit`` (a refusal) and
    ``_wait_and_report`` -> ``_finish``. How the run ends is decided in ``outcome``;
    spooling and fingerprints are ``spool``'s, the journal's records ``journal``'s.
    """

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
        self.reading: dict[str, Any] = {}  # how inputs are read (prepare.reading_choice)
        self.keep_days = DEFAULT_KEEP_DAYS  # finished runs older than this are pruned
        self.profile: str | None = None  # the account profile the settings came from
        self.run_id = new_run_id()
        names = ["<stdin>" if p == "-" else shown_link(p) if is_link(p) else p for p in paths]
        self.result = ImportResult(
            self.run_id, opts.dry_run, opts.step_id, names, conflict=opts.conflict
        )
        self.failures: list[ServerFailure] = []  # the rows the failures file lists
        self.journal: Journal | None = None
        self.poller: Poller | None = None
        self.attempts: Attempts | None = None  # the POSTs made, once the run is journalled
        self.field_types: dict[str, str] = {}  # label -> fieldType, filled by _labels
        # Each input as it was read: a failures file is joined only to the same file.
        self.inputs: list[dict[str, Any] | None] = []
        self.abandoned: RunRecord | None = None  # a crashed run of the same inputs' paths
        self.reported: set[int] = set()  # chunks whose report this process has read
        self.not_updated: int | None = None  # of the already-present rows: not updated
        # whose ledgers this run reads and writes (redaction.account_id; '' without a key)
        self.account = client.account if client is not None else ""

    @property
    def run_dir(self) -> Path:
        return run_dir(self.state_dir, self.run_id)

    def _outputs(self) -> OutputPaths:
        return OutputPaths.for_run(self.paths, self.opts.rejects, self.run_dir)

    def notice(self, text: str, level: str = "warning") -> None:
        """Say ``text`` once: logged and heard by the listener (``events.notify``)."""
        if level == "warning":
            self.result.warnings.append(text)
        notify(self.listener, text, level)

    # -- the layers ------------------------------------------------------------------------

    def run(self, resume_run: str | None = None) -> ImportResult:
        refuse_devices(self.paths, self.spools, self.stdin)
        self._outputs()  # no input is ever overwritten: checked before anything is sent
        labels = self._labels()
        step_id = self._target()
        # a link is downloaded once, first (pipeline/links.py): a dry run reads it too
        fetched = spool_links(self.paths, self.spools, self.state_dir, self.max_stream_bytes)
        if self.opts.dry_run:
            try:
                return self._dry_run(labels, step_id)
            finally:
                with Journal(self.state_dir) as journal:  # not a copy a resume may need
                    remove_spools(releasable(journal, fetched))
        spool_streams(self.paths, self.spools, self.state_dir, self.max_stream_bytes, self.stdin)
        part: dict[str, Any] = {"v": 2, "step": step_id, "options": self.opts.fingerprint_part()}
        if self.account:  # the same file for two accounts is two imports (their runs never mix)
            part["account"] = self.account
        fingerprint, self.inputs = fingerprint_inputs(self.paths, self.spools, part)
        with Journal(self.state_dir) as journal:
            self.journal = journal
            return self._journalled(labels, step_id, fingerprint, resume_run)

    def _journalled(
        self, labels: list[str], step_id: str | None, fingerprint: str, resume_run: str | None
    ) -> ImportResult:
        prior = self._journal().find(fingerprint)
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
        else:
            self._note_abandoned(step_id)
        with RunLock(lock_path(self.state_dir, fingerprint), self.run_id):
            return self._locked(labels, step_id, fingerprint, resume)

    def _locked(
        self, labels: list[str], step_id: str | None, fingerprint: str, resume: RunRecord | None
    ) -> ImportResult:
        journal = self._journal()
        if resume:
            current = journal.get(resume.id)  # it may have finished while we waited
            if current and current.outcome == "completed" and not self.opts.force:
                return self._already_imported(current)
            self._resume()
        else:
            options = self._stored_options()
            journal.create_run(
                self.run_id, fingerprint, options, self.result.files, step_id, os.getpid()
            )
        ensure_private_dir(self.run_dir)
        self.attempts = Attempts(journal, self.run_id, self.result.chunks_resent)
        prepared = self._prepare_journalled(labels, step_id)
        self._plan(prepared)
        self._send(prepared, step_id)
        self._finish(prepared)
        return self.result

    def _prepare_journalled(self, labels: list[str], step_id: str | None) -> Prepared:
        """Prepare what is to be sent; a run that stops here journals its end."""
        skip = self._skip_keys(step_id)
        changes = self._changes(self._journal(), step_id)
        try:
            return self._prepare(labels, step_id, skip, changes)
        except KeyboardInterrupt:
            self._record_end("interrupted")
            raise
        except BaseException:
            self._record_end("failed")
            raise

    def _send(self, prepared: Prepared, step_id: str | None) -> None:
        """Send and wait. A signal ends the run resumable; a failure before anything was
        sent is raised (``import_files`` gives its exit code: 2, 3), one after it is the
        result's error (3 or 4: resumable)."""
        try:
            self._send_and_wait(prepared, step_id)
        except KeyboardInterrupt as exc:
            self.result.exit_code = interrupt_exit_code(exc)
            accepted, total = len(self.result.request_ids), len(self.result.chunks)
            self.result.error = interrupted_error(accepted, total, self.run_id)
        except Exception as exc:
            self._attempts().broke(exc)
            if not self._anything_sent():
                self._record_end("failed")
                raise
            self.result.error = resumable_error(fault_message(exc, self.state_dir), self.run_id)
            self.result.exit_code = after_sending_code(exc)

    def _send_and_wait(self, prepared: Prepared, step_id: str | None) -> None:
        client = self._client()
        previous, client.on_wait = client.on_wait, self._budget_wait
        try:
            to_send = self._to_send()
            if to_send:
                self._submit(prepared, to_send, step_id)
            if self.result.error is None and self.opts.wait and self.result.request_ids:
                self._wait_and_report(prepared)
                if self.opts.update_existing and self.result.error is None:
                    self._update_existing(prepared, step_id)
        finally:
            client.on_wait = previous

    def _submit(self, prepared: Prepared, to_send: list[int], step_id: str | None) -> None:
        """Send the chunks; an API error stops it: raised when nothing was sent (its own
        exit code, 2, 3 or 4), else the result's error, with what is left unsent."""
        try:
            self._submit_chunks(prepared, to_send, step_id)
        except ApiError as exc:
            self._attempts().failed(exc)
            if not self._anything_sent():
                self._record_end("failed")
                raise
            unsent = sum(c.rows for c in self.result.chunks if c.state == "planned")
            self.result.error = unsent_error(str(exc), unsent, self.run_id)
            self.result.exit_code = after_sending_code(exc)

    def _submit_chunks(self, prepared: Prepared, to_send: list[int], step_id: str | None) -> None:
        client = self._client()
        self.listener(Phase("submitting", len(self.result.chunks)))
        results = {c.index: c for c in self.result.chunks}
        for earlier in self.result.chunks:  # accepted by an earlier attempt: oldest first
            if earlier.state == "accepted" and earlier.request_id:
                self._poller().add(earlier.request_id)
        chunks = [c for c in prepared.chunks if c.index in set(to_send)]
        attempts = self._attempts()
        keep_bodies = self.opts.update_existing
        with attempts.retries_heard(client):
            listener = attempts.hearing(self.listener)
            for sub in submit_chunks(client, chunks, listener=listener, idle=self._idle):
                chunk = sub.chunk
                attempts.accepted(
                    sub,
                    step_id,
                    prepared.chunk_keys(chunk),
                    hashes=prepared.chunk_hashes(chunk),
                    account=self.account,
                    keep_body=keep_bodies and chunk.endpoint == STEP,
                )
                self._accepted(sub, results[chunk.index])

    def _update_existing(self, prepared: Prepared, step_id: str | None) -> None:
        """``--update-existing``, once every step chunk's report is in: the rows they found
        already in the sequence, as late update chunks to the account-level import."""
        from shandy_cli.pipeline.present import late_chunks, present_rows  # numpy: only here

        res, journal = self.result, self._journal()
        if not all(c.state in DONE_STATES for c in res.chunks):
            return  # --timeout passed: the reports are not all in
        present = present_rows(r for r in journal.chunks(self.run_id) if r.updates != LATE)
        if not present:
            return
        late = late_chunks(prepared, present, self.opts, self.run_dir / "chunks")
        digests = [digest_file(c.path) for c in late if c.path is not None]
        plan = journal.merge_plan(self.run_id, late, digests, late=True)
        prepared.chunks.extend(late)
        prepared.digests.extend(digests)
        self._add_results(late, plan)
        rows = sum(c.rows for c in late)
        res.rows_updated += rows
        self.notice(
            f"{rows:,} row(s) were already in the sequence: sending them to the account's "
            "prospects to update their fields (--update-existing)",
            "info",
        )
        to_send = [c.index for c in res.chunks[-len(late) :] if c.state == "planned"]
        if to_send:
            self._submit(prepared, to_send, step_id)
        if res.error is None:
            self._wait_and_report(prepared)

    def _wait_and_report(self, prepared: Prepared) -> None:
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
            if chunk.index in self.reported or status is None:
                continue
            if status.completed and chunk.state == "completed":
                self._chunk_report(chunk, status, folder)
                self.reported.add(chunk.index)
        self._account(prepared)

    def _finish(self, prepared: Prepared) -> None:
        res = self.result
        res.reasons = top_reasons(prepared.reasons, self.failures)
        done = all(c.state in DONE_STATES for c in res.chunks)
        res.completed = not res.dry_run and not res.error and done
        not_updated = res.rows_already_present if self.not_updated is None else self.not_updated
        finished = finished_exit_code(
            rejected=res.rows_rejected,
            failed=res.rows_failed,
            already_present=not_updated,
            conflict=self.opts.conflict,
        )
        pending = bool(res.chunks) and not res.dry_run and self.opts.wait and not res.completed
        error_code = res.exit_code if res.error else None
        res.exit_code = ended_exit_code([finished], pending=pending, error_code=error_code)
        if res.exit_code == ExitCode.TIMEOUT:
            res.error = timeout_message(res.request_ids, run=True)
        self._close_journal_run()

    # -- what the layers share ---------------------------------------------------------------

    def _journal(self) -> Journal:
        assert self.journal is not None
        return self.journal

    def _client(self) -> SaleshandyClient:
        assert self.client is not None
        return self.client

    def _attempts(self) -> Attempts:
        assert self.attempts is not None
        return self.attempts

    def _anything_sent(self) -> bool:
        """True once any chunk may be at Saleshandy (``Attempts``)."""
        uncertain = self.attempts.uncertain if self.attempts else set()
        return bool(self.result.request_ids or uncertain or self.result.chunks_resent)

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

    def _budget_wait(self, endpoint: str, seconds: float, also: str = "") -> None:
        """A wait for the rate-limit budget is said, not silent (short ones are noise)."""
        if seconds >= 1:
            limits = self._client().budget.limits.describe()
            self.notice(
                f"waiting {seconds:.0f}s for the rate limit of {endpoint} "
                f"(pacing at {limits}){also}",
                "info",
            )

    def _dry_run(self, labels: list[str], step_id: str | None) -> ImportResult:
        ensure_private_dir(self.run_dir)
        try:
            changes = None
            if self.opts.only_changed:  # what landed, read from the journal: nothing written
                with Journal(self.state_dir) as journal:
                    changes = self._changes(journal, step_id)
            prepared = self._prepare(labels, step_id, set(), changes)
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

    def _stored_options(self) -> dict[str, Any]:
        options = self.opts.to_json()
        options["step_id"], options["sequence"] = self.result.step_id, None
        stored = run_options(self.paths, options, self.spools, __version__)
        stored["profile"] = self.profile
        return stored

    def _note_abandoned(self, step_id: str | None) -> None:
        """A run of the same target and inputs stopped while sending (a crash), and the
        inputs changed since (so this is a new run): say so, and skip what it landed."""
        journal = self._journal()
        record = journal.abandoned(step_id, self._stored_options()["paths"])
        if record is None:
            return
        landed, chunks = journal.landed_of(record)
        if not landed:
            return  # it sent nothing: nothing of it to account for
        self.abandoned = record
        self.notice(
            f"run {record.id} of the same step and file(s) did not finish "
            f"({journal.live_outcome(record)}: {len(landed)} of {len(chunks)} chunk(s), "
            f"{sum(c.rows for c in landed):,} row(s) accepted); the file(s) changed since, so "
            f"this is a new run, and rows that run imported are skipped"
        )

    def _already_imported(self, prior: RunRecord) -> ImportResult:
        journal = self._journal()
        self.result.take_completed(prior, journal.chunks(prior.id))
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(prior.ended or prior.started))
        self.notice(
            f"this import already completed in run {prior.id} ({when}); nothing sent "
            "(--force imports it again)"
        )
        # the copy just made to fingerprint stdin has served
        remove_spools(releasable(journal, self.spools.values()))
        return self.result

    def _resume(self) -> None:
        self.result.resumed = True
        drop_bodies(self.state_dir, self.run_id)  # an earlier attempt's: rebuilt below
        self._journal().update_run(self.run_id, outcome="running", pid=os.getpid(), ended=None)
        self.notice(f"resuming unfinished run {self.run_id}", "info")

    def _skip_keys(self, step_id: str | None) -> set[int]:
        """The ledger's rows not to send: imported by earlier runs (``--only-new``), or by
        the abandoned run this one replaces (its failures included)."""
        journal, account = self._journal(), self.account
        skip: set[int] = set()
        if self.opts.only_new:
            skip = journal.ledger_keys(step_id, exclude_run=self.run_id, account=account)
        if self.abandoned is not None:
            skip |= journal.ledger_keys(step_id, only_run=self.abandoned.id, account=account)
        return skip

    def _changes(self, journal: Journal, step_id: str | None) -> Changes | None:
        """``--only-changed``: what of the target landed in earlier runs, and as what."""
        if not self.opts.only_changed:
            return None
        return Changes(journal.ledger_state(step_id, self.account, exclude_run=self.run_id))

    def _prepare(
        self,
        labels: list[str],
        step_id: str | None,
        skip: set[int],
        changes: Changes | None = None,
    ) -> Prepared:
        ctx = PrepareContext(
            paths=self.paths,
            opts=self.opts,
            labels=labels,
            step_id=step_id,
            run_dir=self.run_dir,
            rejects_path=self._outputs().rejects,
            listener=self.listener,
            notice=self.notice,
            client=self.client,
            stdin=self.stdin,
            spools=self.spools,
            skip_keys=skip,
            changes=changes,
            max_stream_bytes=self.max_stream_bytes,
            field_types=self.field_types,
            **self.reading,
        )
        prepared = prepare(ctx)
        save_run(self.state_dir, self.run_dir, prepared, dry_run=self.opts.dry_run)
        self.result.take_prepared(prepared)
        if prepared.rows_skipped and self.abandoned and not self.opts.only_new:
            # every skip is one of the abandoned run's rows: the reason names it
            count = prepared.reasons.pop(SKIPPED_REASON, 0)
            prepared.reasons[f"imported by run {self.abandoned.id}"] += count
        self._say_skipped(prepared)
        return prepared

    def _say_skipped(self, prepared: Prepared) -> None:
        unchanged = sum(n for r, n in prepared.reasons.items() if r.startswith(UNCHANGED_SINCE))
        if prepared.rows_suppressed:
            self.notice(f"{prepared.rows_suppressed:,} row(s) skipped: suppressed", "info")
        if unchanged:
            self.notice(f"{unchanged:,} row(s) skipped: unchanged since they last landed", "info")
        already = prepared.rows_skipped - prepared.rows_suppressed - unchanged
        if already:
            self.notice(f"{already:,} row(s) skipped: already imported", "info")
        if prepared.rows_updated:
            self.notice(
                f"{prepared.rows_updated:,} row(s) changed since they last landed: sent as "
                "updates to the account's prospects",
                "info",
            )

    def _plan(self, prepared: Prepared) -> None:
        """Chunk results, merged with what the journal knows of a resumed run."""
        journal = self.journal
        plan = Plan()
        if journal is not None:
            plan = journal.merge_plan(self.run_id, prepared.chunks, prepared.digests)
        self._add_results(prepared.chunks, plan)
        if journal is not None:
            meta = journal_meta(prepared, self.result, self._outputs().failures, self.inputs)
            journal.update_run(self.run_id, meta=meta, step_id=self.result.step_id)

    def _add_results(self, chunks: list[Chunk], plan: Plan) -> None:
        for chunk in chunks:
            landed = plan.landed.get(chunk.index)
            self.result.chunks.append(
                ChunkResult.from_record(landed, self.result.step_id)
                if landed
                else ChunkResult(
                    chunk.index,
                    chunk.rows,
                    chunk.bytes,
                    endpoint=chunk.endpoint,
                    update=chunk.update,
                )
            )
        self.result.chunks_resent.extend(plan.resent)

    def _to_send(self) -> list[int]:
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

    def _accepted(self, sub: Submitted, chunk: ChunkResult) -> None:
        chunk.request_id, chunk.state = sub.request_id, "accepted"
        self.result.chunks_sent += 1
        self._poller().add(sub.request_id)

    def _poller(self) -> Poller:
        if self.poller is None:
            self.poller = Poller(
                self._client(), interval=self.opts.poll_interval, on_status=self._on_status
            )
        return self.poller

    def _idle(self, seconds: float, endpoint: str) -> None:
        """The import endpoint's budget makes the next POST wait: poll meanwhile. What is
        left of the wait (all of it, with nothing to poll) the client waits out, and says."""
        poller = self._poller()
        if not (self.opts.wait and poller.pending):
            return
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

    def _chunk_report(self, chunk: ChunkResult, status: ImportStatus, folder: Path) -> None:
        request_id = str(status.request_id)
        spare = self.run_dir / "reports"
        report = save_report(
            self._client(),
            status.report_url,
            request_id,
            folder=folder,
            inputs=self.paths,
            spare=spare,
        )
        journal = self._journal()
        # The journal's count of POSTs, not this process's: an earlier attempt's count too.
        record = journal.chunk(self.run_id, chunk.index)
        assert record is not None
        outcome, chunk.state = end_chunk(
            journal, record, report, request_id=request_id, report_url=status.report_url
        )
        chunk.failed_rows = len(outcome.failed)
        chunk.already_present_rows = len(outcome.already_present)

    def _account(self, prepared: Prepared) -> None:
        """Once every chunk is done: the failures file, and the ledger keeps only what landed."""
        res = self.result
        if not all(c.state in DONE_STATES for c in res.chunks):
            return
        outcome, path = write_run_failures(
            self._journal(),
            self.run_id,
            self.opts.conflict,
            path=self._outputs().failures,
            columns=prepared.columns,
            rejects=Path(res.rejects_file) if res.rejects_file else None,
            sent=prepared.sent or SentIndex.reader(self.run_dir / "sent.idx"),
            sources=prepared.sources,
            fetch=self._fetch_rows,
        )
        self.failures = outcome.listed
        self.not_updated = len(outcome.not_updated)
        res.rows_failed = len(outcome.failed)
        res.rows_already_present = len(outcome.already_present)
        res.failures_file = str(path) if path else None

    def _fetch_rows(self, wanted: dict[int, set[int]]) -> dict[tuple[int, int], list[str]]:
        return fetch_rows(self.paths, self.opts, self.spools, wanted, self.inputs, self.notice)

    def _close_journal_run(self) -> None:
        if self.journal is None:
            return
        res = self.result
        outcome = journal_outcome(
            exit_code=res.exit_code,
            error=bool(res.error),
            completed=res.completed,
            chunks=len(res.chunks),
        )
        if res.error:
            self._record_end(outcome)  # the run's own error is the one to report
        elif outcome == "completed":
            complete_run(self.journal, self.run_id, self.spools.values())
            keep_runs(self.journal, self.keep_days)  # at most once a day; never raises
        else:
            self.journal.update_run(self.run_id, outcome=outcome, ended=time.time())


def journal_meta(
    prepared: Prepared, result: ImportResult, failures: Path, inputs: list[dict[str, Any] | None]
) -> dict[str, Any]:
    """What a run's record keeps of its preparation (``runs.meta``): enough for ``status``
    to count its requests and write its failures file as the import would."""
    return {
        "columns": prepared.columns,
        "file_columns": prepared.file_columns,
        "sources": prepared.sources,
        "rejects_file": result.rejects_file,
        "failures_file": str(failures),
        "rows_read": prepared.rows_read,
        "rows_rejected": prepared.rows_rejected,
        "rows_skipped": prepared.rows_skipped,
        "rows_submitted": prepared.rows_submitted,
        "step_id": result.step_id,
        "inputs": inputs,
    }


__all__ = ["ChunkResult", "ImportOptions", "ImportResult", "import_files", "resume_import"]
