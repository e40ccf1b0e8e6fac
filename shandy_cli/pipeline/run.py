"""The whole import, stage after stage: the library call the CLI itself makes.

    sources -> mapping -> validation -> chunking -> submission -> polling -> reporting

Everything is read, validated and spooled to chunk files *before* the first
request, so a problem with a file as a whole (found anywhere in it) sends
nothing. Memory stays flat: rows stream through, chunk bodies live on disk.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from shandy_cli._files import private_output, writable_dir
from shandy_cli.client import ImportStatus, SaleshandyClient
from shandy_cli.config import ensure_private_dir, resolve_settings
from shandy_cli.errors import ApiError, InputError, ShandyError
from shandy_cli.pipeline.chunking import (
    API_MAX_BYTES,
    API_MAX_ROWS,
    Chunk,
    Chunker,
    body_suffix,
    encode_prospect,
)
from shandy_cli.pipeline.events import ChunkEvent, Listener, Notice, Phase, ReadProgress, ignore
from shandy_cli.pipeline.mapping import (
    Mapping,
    build_mapping,
    clean_header,
    load_mapping_file,
    normalize_header,
)
from shandy_cli.pipeline.polling import FIRST_INTERVAL, poll_until_done
from shandy_cli.pipeline.reporting import (
    RowsWriter,
    SentIndex,
    ServerFailure,
    parse_report,
    reason_kind,
    union_columns,
    write_failures,
)
from shandy_cli.pipeline.sources import Row, Source, open_source
from shandy_cli.pipeline.submission import resolve_step, submit_chunks
from shandy_cli.pipeline.validation import Validator

CONFLICT_ACTIONS = ("noUpdate", "overwrite", "addMissingFields")
UNKNOWN_COLUMN_POLICIES = ("error", "ignore", "create")
# Used only by a --dry-run with no key: Saleshandy's system fields, which every account has.
SYSTEM_LABELS = [
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Company",
    "Job Title",
    "Website",
    "LinkedIn URL",
    "City",
    "State",
    "Country",
]
PROGRESS_EVERY = 2000  # rows between read-progress events: cheap, still smooth


@dataclass
class ImportOptions:
    """Every knob of ``shandy import``; the defaults are the contract's."""

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
        if self.timeout is not None and self.timeout < 0:
            raise InputError("--timeout must be zero or more seconds")
        if not 1 <= self.max_rows <= API_MAX_ROWS:
            raise InputError(f"--max-rows must be between 1 and {API_MAX_ROWS}")
        if self.max_bytes > API_MAX_BYTES:
            raise InputError(f"--max-bytes may only lower the API limit of {API_MAX_BYTES}")
        if any(not isinstance(t, str) or not t.strip() for t in self.tags):
            raise InputError("--tag must not be empty")


@dataclass
class ChunkResult:
    index: int
    rows: int
    bytes: int
    request_id: str | None = None
    state: str = "planned"  # planned | accepted | completed | failed
    report_url: str | None = None
    failed_rows: int = 0


@dataclass
class ImportResult:
    """What happened to every row. ``to_dict()`` is the contract's ``--json`` document."""

    run_id: str
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
    exit_code: int = 0
    rows_failed: int = 0
    reasons: list[tuple[str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    labels_source: str = "account"

    @property
    def request_ids(self) -> list[str]:
        return [c.request_id for c in self.chunks if c.request_id]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = [{"reason": r, "count": n} for r, n in self.reasons]
        return data


@dataclass
class _Prepared:
    sources: list[Source]
    mappings: list[Mapping | None]
    columns: list[str]
    chunks: list[Chunk] = field(default_factory=list)
    rejects: RowsWriter | None = None
    sent: SentIndex | None = None


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
    **option_kwargs: Any,
) -> ImportResult:
    """Import lead files into a Saleshandy step (or the prospect list) and account for every row.

    ``options`` or keyword arguments of ``ImportOptions`` (``step_id=...``,
    ``tags=[...]``, ``dry_run=True``, ...). Without ``client`` one is made from
    ``api_key``/``base_url`` or the environment. Raises ``ShandyError``
    subclasses for problems that stop the run before anything is sent;
    otherwise returns an ``ImportResult`` whose ``exit_code`` follows the contract.
    """
    opts = options or ImportOptions(**option_kwargs)
    opts.check()
    settings = resolve_settings(api_key=api_key, base_url=base_url, state_dir=state_dir)
    own_client = client is None
    if client is None and (settings.api_key or not opts.dry_run):
        client = SaleshandyClient(settings.base_url, settings.api_key)
    try:
        runner = _Run([str(p) for p in paths], opts, client, settings.state_dir, listener, stdin)
        return runner.run()
    finally:
        if own_client and client is not None:
            client.close()


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
        self.listener = listener
        self.stdin = stdin
        self.run_id = new_run_id()
        self.run_dir = ensure_private_dir(state_dir / "runs" / self.run_id)
        names = ["<stdin>" if p == "-" else p for p in paths]
        self.result = ImportResult(self.run_id, opts.dry_run, opts.step_id, names)
        self.failures: list[ServerFailure] = []

    def notice(self, text: str, level: str = "warning") -> None:
        if level == "warning":
            self.result.warnings.append(text)
        self.listener(Notice(level, text))

    # -- the stages ------------------------------------------------------------------------

    def run(self) -> ImportResult:
        try:
            labels = self._labels()
            step_id = self._target()
            prepared = self._prepare(labels, step_id)
        except BaseException:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        if not self.opts.dry_run and prepared.chunks:
            self._save_meta(prepared)
            self._submit(prepared, step_id)
            if self.result.error is None and self.opts.wait:
                self._wait_and_report(prepared)
        self._finish(prepared)
        return self.result

    def _labels(self) -> list[str]:
        if self.client is None:
            self.result.labels_source = "system"
            self.notice(
                "no API key: mapping against Saleshandy's system field labels only "
                "(set SALESHANDY_API_KEY or use --sandbox to map against your account)",
                "info",
            )
            return list(SYSTEM_LABELS)
        return [str(f["label"]) for f in self.client.list_fields(True) if f.get("label")]

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

    def _open_sources(self) -> list[Source]:
        sources: list[Source] = []
        try:
            for path in self.paths:
                sources.append(
                    open_source(
                        path,
                        encoding=self.opts.encoding,
                        delimiter=self.opts.delimiter,
                        sheet=self.opts.sheet,
                        stdin=self.stdin,
                    )
                )
        except BaseException:
            for src in sources:
                src.close()
            raise
        return sources

    def _mappings(self, sources: list[Source], labels: list[str]) -> list[Mapping | None]:
        explicit = dict(self.opts.column_map)
        constants = dict(self.opts.constants)
        if self.opts.mapping_file:
            file_map, file_set = load_mapping_file(Path(self.opts.mapping_file))
            explicit = {**file_map, **explicit}  # flags win over the file
            constants = {**file_set, **constants}
        mappings: list[Mapping | None] = []
        used: set[str] = set()
        for src in sources:
            if not src.info.columns:  # an empty file: nothing to map, nothing to send
                mappings.append(None)
                continue
            # One mapping file serves many exports: apply the entries each file has.
            mine = _entries_for(src.info.columns, explicit)
            used.update(mine)
            mapping = build_mapping(
                src.info.columns,
                labels,
                explicit=mine,
                constants=constants,
                on_unknown=self.opts.on_unknown_column,
                file=src.info.name,
            )
            if mapping.unknown:
                self.notice(
                    f"{src.info.name}: ignoring column(s) {', '.join(map(repr, mapping.unknown))}"
                )
            mappings.append(mapping)
        missing = [key for key in explicit if key not in used]
        if missing and any(m is not None for m in mappings):
            names = ", ".join(repr(k) for k in missing)
            raise InputError(f"the mapping names column(s) {names}, which no input file has")
        self._create_fields(mappings, labels)
        return mappings

    def _create_fields(self, mappings: list[Mapping | None], labels: list[str]) -> None:
        known = {label.casefold() for label in labels}
        wanted = dict.fromkeys(label for m in mappings if m for label in m.to_create)
        for label in wanted:
            if label.casefold() in known:
                continue
            if self.opts.dry_run or self.client is None:
                self.notice(f"would create custom field {label!r} (text)", "info")
            else:
                self.client.create_field(label, "text")
                self.notice(f"created custom field {label!r} (text)", "info")
            known.add(label.casefold())

    def _suffix(self, step_id: str | None) -> bytes:
        options: dict[str, object] = {}
        if step_id:
            options["stepId"] = step_id
        options["verifyProspects"] = self.opts.verify
        options["conflictAction"] = self.opts.conflict
        options["tags"] = [t.strip() for t in self.opts.tags]
        return body_suffix(options)

    def _rejects_path(self) -> Path:
        if self.opts.rejects:
            return Path(self.opts.rejects)
        first = self.paths[0]
        if first == "-":
            folder, stem = Path.cwd(), "stdin"
        else:
            folder, stem = Path(first).resolve().parent, Path(first).stem
        if not writable_dir(folder):
            folder = self.run_dir
        return folder / f"{stem}.rejects.csv"

    def _prepare(self, labels: list[str], step_id: str | None) -> _Prepared:
        sources = self._open_sources()
        try:
            mappings = self._mappings(sources, labels)
            columns = union_columns(s.info.columns for s in sources)
            prepared = _Prepared(sources, mappings, columns)
            prepared.rejects = RowsWriter(self._rejects_path(), columns)
            prepared.sent = SentIndex(self.run_dir / "sent.jsonl")
            chunker = Chunker(
                self._suffix(step_id),
                max_rows=self.opts.max_rows,
                max_bytes=self.opts.max_bytes,
                spool_dir=self.run_dir / "chunks",
            )
            self.listener(Phase("reading"))
            validator = Validator()
            for src, mapping in zip(sources, mappings, strict=True):
                self._read_source(src, mapping, validator, chunker, prepared)
            last = chunker.finish()
            if last:
                self._planned(last, prepared)
            prepared.sent.close()
            self.result.rejects_file = _str(prepared.rejects.close())
            return prepared
        except BaseException:
            if "prepared" in locals() and prepared.rejects:
                prepared.rejects.close(ok=False)
            raise
        finally:
            for src in sources:
                src.close()

    def _planned(self, chunk: Chunk, prepared: _Prepared) -> None:
        prepared.chunks.append(chunk)
        self.result.chunks.append(ChunkResult(chunk.index, chunk.rows, chunk.bytes))
        self.listener(ChunkEvent(chunk.index, "planned", chunk.rows, chunk.bytes))

    def _read_source(
        self,
        src: Source,
        mapping: Mapping | None,
        validator: Validator,
        chunker: Chunker,
        prepared: _Prepared,
    ) -> None:
        info, res = src.info, self.result
        assert prepared.rejects is not None and prepared.sent is not None
        ncols = len(info.columns)
        count = 0
        for row in src.rows():
            count += 1
            res.rows_read += 1
            if count % PROGRESS_EVERY == 0:
                self.listener(ReadProgress(info.name, count, src.bytes_read, info.size))
            if mapping is None:
                continue
            prospect, item, reason = self._judge(row, ncols, mapping, validator, chunker)
            if reason is not None:
                prepared.rejects.add(info.name, row.number, info.columns, row.values, reason)
                res.rows_rejected += 1
                continue
            closed = chunker.add(item, file=info.name, row=row.number)
            if closed:
                self._planned(closed, prepared)
            prepared.sent.add(prospect.get("Email", ""), info.name, row.number, row.values)
            res.rows_submitted += 1
        self.listener(ReadProgress(info.name, count, src.bytes_read, info.size, done=True))

    @staticmethod
    def _judge(
        row: Row, ncols: int, mapping: Mapping, validator: Validator, chunker: Chunker
    ) -> tuple[dict[str, str], bytes, str | None]:
        """The prospect a row becomes, its encoded bytes, and why it must be rejected (or None)."""
        problem = row.problem
        if (
            problem is None
            and len(row.values) > ncols
            and any(v.strip() for v in row.values[ncols:])
        ):
            problem = f"row has {len(row.values)} values but the header has {ncols} columns"
        prospect = mapping.prospect(row.values)
        reason = validator.check(prospect, file=row.file, row=row.number, problem=problem)
        if reason is not None:
            return prospect, b"", reason
        try:
            item = encode_prospect(prospect)
        except ValueError:  # text that is not valid Unicode (a lone surrogate)
            return prospect, b"", "a value is not valid text"
        if not chunker.fits_alone(item):
            return prospect, b"", chunker.oversize_reason(item)
        return prospect, item, None

    def _save_meta(self, prepared: _Prepared) -> None:
        """What ``shandy status`` needs later to join reports back to this run's rows."""
        meta = {
            "run_id": self.run_id,
            "files": self.result.files,
            "columns": prepared.columns,
            "file_columns": {s.info.name: s.info.columns for s in prepared.sources},
            "rejects_file": self.result.rejects_file,
            "failures_file": str(self._failures_path()),
            "request_ids": [],
        }
        write_meta(self.run_dir, meta)

    def _submit(self, prepared: _Prepared, step_id: str | None) -> None:
        self.listener(Phase("submitting", len(prepared.chunks)))
        results = {c.index: c for c in self.result.chunks}
        accepted: list[str] = []
        try:
            for sub in submit_chunks(
                self.client,  # type: ignore[arg-type]
                prepared.chunks,
                to_step=step_id is not None,
                listener=self.listener,
            ):
                results[sub.chunk.index].request_id = sub.request_id
                results[sub.chunk.index].state = "accepted"
                accepted.append(sub.request_id)
                sub.chunk.path.unlink(missing_ok=True)  # sent: the body is no longer needed
                update_meta(self.run_dir, request_ids=accepted)
        except ApiError as exc:
            if not accepted:
                raise  # nothing was sent: the error's own exit code (2, 3 or 4)
            unsent = sum(c.rows for c in self.result.chunks if c.state == "planned")
            self.result.error = f"{exc.message}; {unsent} row(s) in unsent chunks"
            self.result.exit_code = 3 if exc.exit_code == 3 else 4

    def _wait_and_report(self, prepared: _Prepared) -> None:
        assert self.client is not None
        ids = self.result.request_ids
        self.listener(Phase("processing", len(ids)))
        by_id = {c.request_id: c for c in self.result.chunks if c.request_id}

        def on_status(status: ImportStatus) -> None:
            chunk = by_id[status.request_id]
            if not status.completed:
                return  # still processing: already said when it was accepted
            chunk.state = "completed"
            chunk.report_url = status.report_url
            self.listener(
                ChunkEvent(chunk.index, chunk.state, chunk.rows, chunk.bytes, chunk.request_id)
            )

        statuses = poll_until_done(
            self.client,
            ids,
            timeout=self.opts.timeout,
            first_interval=self.opts.poll_interval,
            on_status=on_status,
        )
        self.listener(Phase("reporting"))
        failures = fetch_failures(
            self.client, statuses.values(), self._report_dir(), self.listener, by_id
        )
        self._account(prepared, failures)

    def _report_dir(self) -> Path:
        if self.opts.report_dir:
            return ensure_private_dir(Path(self.opts.report_dir))
        return ensure_private_dir(self.run_dir / "reports")

    def _failures_path(self) -> Path:
        rejects = self._rejects_path()
        return rejects.with_name(rejects.name.replace(".rejects.csv", "") + ".failures.csv")

    def _account(self, prepared: _Prepared, failures: list[ServerFailure]) -> None:
        assert prepared.sent is not None
        self.failures = failures
        self.result.rows_failed = len(failures)
        file_columns = {s.info.name: s.info.columns for s in prepared.sources}
        rejects = Path(self.result.rejects_file) if self.result.rejects_file else None
        path, _ = write_failures(
            self._failures_path(), prepared.columns, rejects, failures, prepared.sent, file_columns
        )
        self.result.failures_file = _str(path)

    def _finish(self, prepared: _Prepared) -> None:
        res = self.result
        if res.rejects_file and res.failures_file is None and (self.opts.dry_run or not res.chunks):
            res.failures_file = None  # nothing was sent: the rejects file is the whole story
        local = prepared.rejects.reasons if prepared.rejects else Counter()
        for chunk in res.chunks:
            if chunk.state == "completed" and chunk.rows and chunk.failed_rows >= chunk.rows:
                chunk.state = "failed"
        res.reasons = top_reasons(local, self.failures)
        res.completed = bool(res.chunks) and all(
            c.state in ("completed", "failed") for c in res.chunks
        )
        if not res.chunks:
            res.completed = not res.error
        res.exit_code = self._exit_code()
        if res.exit_code == 5:
            ids = " ".join(res.request_ids)
            res.error = (
                f"--timeout passed while Saleshandy was still processing; "
                f"continue with: shandy status {ids} --wait"
            )
        if res.completed or self.opts.dry_run or not res.chunks:
            shutil.rmtree(self.run_dir / "chunks", ignore_errors=True)
        if self.opts.dry_run or not res.chunks:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _exit_code(self) -> int:
        res = self.result
        if res.error:
            return res.exit_code or 4
        if res.chunks and not res.dry_run and self.opts.wait and not res.completed:
            return 5
        if res.rows_rejected or res.rows_failed:
            return 1
        return 0


def fetch_failures(
    client: SaleshandyClient,
    statuses: Any,
    report_dir: Path,
    listener: Listener,
    chunks: dict[str | None, ChunkResult] | None = None,
) -> list[ServerFailure]:
    """Download and parse the report of every completed request that has one."""
    failures: list[ServerFailure] = []
    for status in statuses:
        if not status.completed or not status.report_url:
            continue
        path = client.download_report(status.report_url, report_dir / f"{status.request_id}.csv")
        found = parse_report(path, status.request_id)
        failures.extend(found)
        if chunks and status.request_id in chunks:
            chunks[status.request_id].failed_rows = len(found)
        listener(
            Notice("info", f"request {status.request_id}: {len(found)} failed row(s) ({path})")
        )
    return failures


def top_reasons(rejects: Counter[str], failures: list[ServerFailure]) -> list[tuple[str, int]]:
    counts = Counter(rejects)
    counts.update(reason_kind(f"Saleshandy: {f.reason}") for f in failures)
    return counts.most_common()


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    with private_output(run_dir / "run.json", "wb") as fh:
        fh.write(orjson.dumps(meta))


def read_meta(run_dir: Path) -> dict[str, Any]:
    return orjson.loads((run_dir / "run.json").read_bytes())


def update_meta(run_dir: Path, **changes: Any) -> None:
    meta = read_meta(run_dir)
    meta.update(changes)
    write_meta(run_dir, meta)


def _entries_for(columns: list[str], explicit: dict[str, str]) -> dict[str, str]:
    """The explicit mapping entries that name a column of this file (exactly or loosely)."""
    exact = {clean_header(c) for c in columns}
    loose = {normalize_header(c) for c in columns}
    return {
        key: label
        for key, label in explicit.items()
        if clean_header(key) in exact or normalize_header(key) in loose
    }


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


__all__ = [
    "ChunkResult",
    "ImportOptions",
    "ImportResult",
    "ShandyError",
    "import_files",
]
