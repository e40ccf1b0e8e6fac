"""What an import is asked to do (``ImportOptions``) and what it did (``ImportResult``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shandy_cli.config import columnar_mode
from shandy_cli.errors import (
    ApiError,
    AuthenticationError,
    FaultError,
    ImportTimeout,
    InputError,
    Interrupted,
    RowsFailed,
    ShandyError,
)
from shandy_cli.exits import INTERRUPT_CODES, ExitCode
from shandy_cli.faults import fault_message, stop_code
from shandy_cli.journal import ChunkRecord, RunRecord
from shandy_cli.pipeline.chunking import API_MAX_BYTES, API_MAX_ROWS, PROSPECTS, STEP
from shandy_cli.pipeline.outcome import already_present_fails
from shandy_cli.pipeline.polling import FIRST_INTERVAL

if TYPE_CHECKING:
    from shandy_cli.pipeline.prepare import Prepared

# "upsert" is in the official spec and used live; beyond "create or update" its
# exact meaning is unknown, so it is passed on as given.
CONFLICT_ACTIONS = ("noUpdate", "overwrite", "addMissingFields", "upsert")
UNKNOWN_COLUMN_POLICIES = ("error", "ignore", "create")
# Options that change nothing about what is sent: left out of the import's fingerprint.
NOT_FINGERPRINTED = frozenset(
    (
        *("dry_run", "wait", "timeout", "rejects", "report_dir", "poll_interval", "force"),
        *("sequence", "step_number", "columnar", "fastexcel", "notify", "notify_on"),
    )
)
NOTIFY_ON = ("always", "failure")


@dataclass
class ImportOptions:
    """Every knob of ``shandy import``; the defaults are the contract's.

    Attributes:
        step_id: the sequence step to import into (``--step``). With neither it nor
            ``sequence``, prospects go to the account's prospect list.
        sequence: a sequence's name or id (``--sequence``); its ``step_number``-th step
            is the target. A name matching several sequences is an ``InputError``.
        step_number: which step of ``sequence``, from 1 (``--step-number``).
        tags: tags put on every prospect (``--tag``, repeatable).
        conflict: what Saleshandy does with a prospect it already has: ``noUpdate``,
            ``overwrite``, ``addMissingFields`` or ``upsert`` (``--conflict``).
        verify: ask Saleshandy to verify the addresses (``--verify``).
        column_map: column name -> field label, winning over automatic matching (``--map``).
        mapping_file: a JSON or ``Column=Label`` file of the same (``--mapping``).
        constants: field label -> a value set on every prospect (``--set``).
        sheet: the workbook sheet to read (``--sheet``); the first one by default.
        member: the file to read inside a ``.zip`` input (``--member``): its name in
            the archive, or its base name when that is unique; needed only when the
            archive holds several lead files. Part of the fingerprint.
        encoding: the text encoding of CSV/TSV/JSONL inputs; detected when None.
        delimiter: the CSV delimiter; sniffed when None.
        on_unknown_column: a column that matches no field label: ``error`` (stop
            before sending), ``ignore`` it, or ``create`` a text field for it.
        dry_run: read, map, validate and chunk, and send nothing.
        wait: poll until Saleshandy has processed every chunk (``--wait/--no-wait``).
        timeout: seconds to wait for processing before stopping with exit 5; None waits
            as long as it takes.
        max_rows: prospects per request, at most the API's 100,000 (``--max-rows``).
        max_bytes: bytes per request body, at most the API's 90 MB (``--max-bytes``).
        rejects: where rows refused here are written; next to the first input by default.
        report_dir: where Saleshandy's reports and the failures file go.
        poll_interval: seconds before the first status poll; later polls slow down.
        only_new: skip addresses earlier runs already imported into this target.
        only_changed: send addresses no earlier run landed in this target to it, those
            whose prospect (mapped labels and values, constants, tags) changed since
            it last landed as updates to the account-level import (``conflict``, or
            ``overwrite`` under ``noUpdate``), and skip the unchanged ones.
        update_existing: once the step's reports are in, send the rows Saleshandy
            found already in the sequence to the account-level import, as
            ``only_changed`` sends changed rows, so their fields are updated.
        force: import again what an earlier run of this same import completed.
        columnar: how CSV/TSV inputs are read: ``auto`` (the columnar reader from
            2 MB up), ``always`` or ``never``; None takes ``SHANDY_COLUMNAR``.
        fastexcel: load text-only XLSX sheets with fastexcel; None takes
            ``SHANDY_FASTEXCEL``. Neither changes what is sent.
        notify: URLs told when the import ends (``--notify``, repeatable): a Slack
            incoming webhook gets a message, any other URL the ``--json`` document,
            signed with ``SHANDY_WEBHOOK_SECRET`` when it is set (``shandy_cli.notify``).
            A notification that cannot be delivered is a warning, never the import's
            failure.
        notify_on: ``always`` (the default) or ``failure`` (a non-zero exit code only).
        suppress: suppression lists (``--suppress``, repeatable): files of addresses,
            ``@domain`` / ``*@domain`` entries and ``#`` comments, or a CSV with an
            email column. A matching row is skipped and never sent. ``import_files``
            adds the ``SHANDY_SUPPRESS`` setting's lists before these. Their content
            is part of the fingerprint.
    """

    step_id: str | None = None
    sequence: str | None = None
    step_number: int = 1
    tags: Sequence[str] = ()
    conflict: str = "noUpdate"
    verify: bool = False
    column_map: dict[str, str] = field(default_factory=dict)
    mapping_file: Path | None = None
    constants: dict[str, str] = field(default_factory=dict)
    sheet: str | None = None
    member: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    on_unknown_column: str = "error"
    dry_run: bool = False
    wait: bool = True
    timeout: float | None = None
    max_rows: int = API_MAX_ROWS
    max_bytes: int = API_MAX_BYTES
    rejects: Path | None = None
    report_dir: Path | None = None
    poll_interval: float = FIRST_INTERVAL
    only_new: bool = False
    only_changed: bool = False
    update_existing: bool = False
    force: bool = False
    columnar: str | None = None
    fastexcel: bool | None = None
    suppress: Sequence[Path] = ()
    notify: Sequence[str] = ()
    notify_on: str = "always"

    def check(self) -> None:
        if self.conflict not in CONFLICT_ACTIONS:
            raise InputError(
                f"--conflict must be one of {', '.join(CONFLICT_ACTIONS)}, not {self.conflict!r}"
            )
        if self.on_unknown_column not in UNKNOWN_COLUMN_POLICIES:
            raise InputError(
                "--on-unknown-column must be one of "
                f"{', '.join(UNKNOWN_COLUMN_POLICIES)}, not {self.on_unknown_column!r}"
            )
        if self.step_id and self.sequence:
            raise InputError("give --step or --sequence, not both")
        if self.timeout is not None and not (0 <= self.timeout < math.inf):
            raise InputError("--timeout must be a finite number of seconds, zero or more")
        if not 0 < self.poll_interval < math.inf:
            raise InputError("the poll interval must be a positive number of seconds")
        if not 1 <= self.max_rows <= API_MAX_ROWS:
            raise InputError(f"--max-rows must be between 1 and {API_MAX_ROWS}")
        if self.max_bytes > API_MAX_BYTES:
            raise InputError(f"--max-bytes may only lower the API limit of {API_MAX_BYTES}")
        if any(not isinstance(t, str) or not t.strip() for t in self.tags):
            raise InputError("--tag must not be empty")
        if self.columnar is not None:
            self.columnar = columnar_mode(self.columnar)
        if self.notify_on not in NOTIFY_ON:
            raise InputError(
                f"--notify-on must be one of {', '.join(NOTIFY_ON)}, not {self.notify_on!r}"
            )
        if self.only_new and self.only_changed:
            raise InputError(
                "give --only-new or --only-changed, not both (--only-changed skips the "
                "unchanged rows --only-new would, and updates the changed ones)"
            )
        if self.update_existing and not self.wait and not self.dry_run:
            raise InputError(
                "--update-existing needs the step's reports: it cannot be used with --no-wait"
            )
        if self.update_existing and not (self.step_id or self.sequence):
            raise InputError(
                "--update-existing needs --step or --sequence: an import to the prospect "
                "list updates prospects itself (--conflict)"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe copy, stored in the journal so ``shandy resume`` can run it again."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("mapping_file", "rejects", "report_dir"):
            if data[key] is not None:
                data[key] = str(Path(data[key]).resolve())
        data["tags"] = list(self.tags)
        data["notify"] = list(self.notify)
        data["suppress"] = [str(Path(p).resolve()) for p in self.suppress]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportOptions:
        known = {f.name for f in fields(cls)}
        opts = cls(**{k: v for k, v in data.items() if k in known})
        for key in ("mapping_file", "rejects", "report_dir"):
            value = getattr(opts, key)
            setattr(opts, key, Path(value) if value else None)
        opts.suppress = tuple(Path(p) for p in opts.suppress)
        return opts

    def fingerprint_part(self) -> dict[str, Any]:
        data = self.to_json()
        if self.mapping_file:
            data["mapping_file"] = _file_digest(Path(self.mapping_file))
        if self.suppress:  # what they say, not where they are
            data["suppress"] = [_file_digest(Path(p)) for p in self.suppress]
        else:  # fingerprints of runs from before --suppress stay as they were
            data.pop("suppress")
        # so do those from before these
        for later in ("only_changed", "update_existing", "member"):
            if not data[later]:
                data.pop(later)
        return {k: v for k, v in data.items() if k not in NOT_FINGERPRINTED}


def _file_digest(path: Path) -> str:
    import hashlib

    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return str(path)


@dataclass
class ChunkResult:
    """One chunk of a run: its rows, its request and what Saleshandy made of it."""

    index: int
    rows: int
    bytes: int
    request_id: str | None = None
    state: str = "planned"  # planned | accepted | completed | failed
    report_url: str | None = None
    failed_rows: int = 0  # Saleshandy's report: not imported
    already_present_rows: int = 0  # ... already in the sequence: not added, not updated
    endpoint: str = STEP  # "step" (the step import) or "prospects" (the account-level one)
    update: bool = False  # its rows update prospects (--only-changed, --update-existing)

    @classmethod
    def from_record(cls, record: ChunkRecord, step_id: str | None = None) -> ChunkResult:
        """A chunk as the journal recorded it (``step_id``: its run's target, where the
        journal did not record its endpoint)."""
        return cls(
            record.idx,
            record.rows,
            record.bytes,
            record.request_id,
            record.state,
            record.report_url,
            record.failed_rows or 0,
            record.already_present_rows or 0,
            record.endpoint or (STEP if step_id else PROSPECTS),
            bool(record.updates),
        )


@dataclass
class ImportResult:
    """What happened to every row. ``to_dict()`` is the contract's ``--json`` document."""

    run_id: str | None  # None: stopped before a run began
    dry_run: bool
    step_id: str | None
    files: list[str]
    rows_read: int = 0
    rows_submitted: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0
    rejects_file: str | None = None
    failures_file: str | None = None
    chunks: list[ChunkResult] = field(default_factory=list)
    completed: bool = False
    exit_code: int = ExitCode.OK
    # Of rows_submitted: failed at Saleshandy, and already in the sequence (disjoint).
    rows_failed: int = 0
    rows_already_present: int = 0
    rows_updated: int = 0  # rows sent to the account-level import to update them
    conflict: str = "noUpdate"
    reasons: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    labels_source: str = "account"
    resumed: bool = False
    already_imported: bool = False
    chunks_sent: int = 0
    chunks_resent: list[int] = field(default_factory=list)
    # The exception a run that stopped early stopped on (``stop``): not in ``--json``.
    cause: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def request_ids(self) -> list[str]:
        return [c.request_id for c in self.chunks if c.request_id]

    def stop(self, exc: BaseException, *, sent: bool, state_dir: Path | None = None) -> None:
        """The run stopped early on ``exc``: its error and exit code, by the contract's rule."""
        self.error = fault_message(exc, state_dir)
        self.exit_code = stop_code(exc, sent)
        self.completed = False
        self.cause = exc

    def take_prepared(self, prepared: Prepared) -> None:
        """What preparing the inputs found: the files, and every row's count before sending."""
        self.files = prepared.names
        self.rows_read = prepared.rows_read
        self.rows_submitted = prepared.rows_submitted
        self.rows_rejected = prepared.rows_rejected
        self.rows_skipped = prepared.rows_skipped
        self.rows_updated = prepared.rows_updated
        self.rejects_file = str(prepared.rejects_file) if prepared.rejects_file else None

    def take_completed(self, prior: RunRecord, chunks: list[ChunkRecord]) -> None:
        """This import already completed in ``prior``: its counts, as the journal kept them."""
        meta = prior.meta
        self.run_id, self.already_imported, self.completed = prior.id, True, True
        self.step_id = prior.step_id
        self.rows_read = meta.get("rows_read", 0)
        self.rows_submitted = meta.get("rows_submitted", 0)
        self.rows_rejected = meta.get("rows_rejected", 0)
        self.rows_skipped = meta.get("rows_skipped", 0)
        self.rejects_file = meta.get("rejects_file")
        self.chunks.extend(ChunkResult.from_record(rec, prior.step_id) for rec in chunks)
        self.rows_updated = sum(c.rows for c in self.chunks if c.update)
        self.rows_failed = sum(c.failed_rows for c in self.chunks)
        self.rows_already_present = sum(c.already_present_rows for c in self.chunks)
        self.exit_code = ExitCode.OK

    def raise_for_status(self) -> ImportResult:
        """Raise the exception that matches a non-zero ``exit_code``; return ``self`` at 0.

        As httpx's ``Response.raise_for_status``, for a caller of ``import_files`` who
        wants exceptions rather than codes. The exception carries this result as
        ``exc.result`` (what the run did, every count) and its own ``exit_code``:

        ==========  ==========================================================
        exit code   raised
        ==========  ==========================================================
        1           ``RowsFailed``: rows rejected here, failed at Saleshandy, or
                    already present under a ``conflict`` other than noUpdate
                    (the counts: ``rows_rejected``, ``rows_failed``,
                    ``rows_already_present``)
        2           the ``InputError``/``FaultError`` the run stopped on
        3           ``AuthenticationError``: the key was refused
        4           ``ApiError`` (or the error the run stopped on): resumable
        5           ``ImportTimeout``: ``timeout`` passed, still processing
        129/130/143 ``Interrupted``, whose ``exit_code`` is the signal's
        ==========  ==========================================================

        ``import_files`` itself still raises for what stops a run before anything
        is sent (``InputError``, ``AuthenticationError``, ...); the result attached to
        such an error (``exc.import_result``) raises the same one again.
        """
        if self.exit_code == ExitCode.OK:
            return self
        error = status_error(self)
        error.result = self
        if error is self.cause:
            raise error  # the very error the run stopped on
        raise error from self.cause

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, cause=None))
        del data["cause"]
        data["reasons"] = [{"reason": r, "count": n} for r, n in self.reasons]
        return data


def stopped_result(
    exc: BaseException, files: Sequence[str], *, dry_run: bool = False, step_id: str | None = None
) -> ImportResult:
    """The ``ImportResult`` of an import that stopped on ``exc``: the one ``import_files``
    attached to it (what the run had done so far), or, for an error before any run began
    (a flag, the key), an empty one. ``--json`` prints it on every exit."""
    attached = getattr(exc, "import_result", None)
    if isinstance(attached, ImportResult):
        return attached
    names = ["<stdin>" if f == "-" else str(f) for f in files]
    result = ImportResult(None, dry_run, step_id, names)
    result.stop(exc, sent=False)
    return result


def attach_result(exc: BaseException, result: ImportResult) -> None:
    """Hand what a stopped run had done to whoever catches ``exc`` (``stopped_result``):
    as ``exc.import_result``, and for a ``ShandyError`` as ``exc.result`` too."""
    exc.import_result = result  # type: ignore[attr-defined]
    if isinstance(exc, ShandyError):
        exc.result = result


def status_error(result: ImportResult) -> ShandyError:
    """The exception of a result's non-zero exit code (``ImportResult.raise_for_status``)."""
    code, words = result.exit_code, result.error or ""
    cause = result.cause
    if isinstance(cause, ShandyError) and cause.exit_code == code:
        return cause  # the run stopped on it: it says best what happened
    if code == ExitCode.ROWS_FAILED:
        return rows_failed(result)
    if code in INTERRUPT_CODES:
        return Interrupted(words or "interrupted", exit_code=code)
    if code == ExitCode.TIMEOUT:
        return ImportTimeout(words or "--timeout passed while Saleshandy was still processing")
    if code == ExitCode.AUTH:
        return AuthenticationError(words or "the API key was refused")
    if code == ExitCode.API:
        return ApiError(words or "the API failed; the run can be resumed")
    return FaultError(words or f"the import stopped (exit {code})", sent=False)


def rows_failed(result: ImportResult) -> RowsFailed:
    """Exit 1 in words: how many rows did not go in as asked, and where they are listed."""
    counts = {
        "rejected here": result.rows_rejected,
        "failed at Saleshandy": result.rows_failed,
        f"already in the sequence, not updated (--conflict {result.conflict})": (
            result.rows_already_present if already_present_fails(result.conflict) else 0
        ),
    }
    said = ", ".join(f"{n:,} {what}" for what, n in counts.items() if n)
    where = [f for f in (result.rejects_file, result.failures_file) if f]
    listed = f" (listed in {' and '.join(where)})" if where else ""
    return RowsFailed(
        f"{said or 'rows did not go in as asked'} of {result.rows_read:,} row(s) read{listed}",
        rejected=result.rows_rejected,
        failed=result.rows_failed,
        already_present=result.rows_already_present,
    )
