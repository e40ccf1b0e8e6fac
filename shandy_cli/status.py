"""``shandy status``: the state of earlier requests, their failed rows, and the failures file.

A request of a run made on this machine (its chunk is in the journal) is
counted exactly as that import counts it (``pipeline/outcome.py``): a chunk
sent twice does not count its own repeated rows. Once every request of such a
run has completed, Saleshandy's failed rows are joined back to that run's
source rows, as ``import`` does. How each request and the whole ends (its counts,
the journal, the failures file, the exit code) is decided in ``pipeline/outcome.py``,
the same functions ``import`` calls; ``check_status`` returns a ``StatusResult``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, overload

import orjson

from shandy_cli._files import ensure_private_dir, safe_filename
from shandy_cli.client import ImportStatus, SaleshandyClient
from shandy_cli.config import resolve_settings
from shandy_cli.errors import InputError
from shandy_cli.exits import ExitCode
from shandy_cli.journal import ChunkRecord, Journal, RunRecord
from shandy_cli.pipeline.events import ChunkEvent, Listener, ignore, notify
from shandy_cli.pipeline.housekeeping import run_dir
from shandy_cli.pipeline.outcome import (
    NO_UPDATE,
    ChunkOutcome,
    all_done,
    complete_run,
    end_chunk,
    ended_exit_code,
    finished_exit_code,
    timeout_message,
    write_run_failures,
)
from shandy_cli.pipeline.polling import FIRST_INTERVAL, poll_until_done
from shandy_cli.pipeline.results import ImportOptions
from shandy_cli.pipeline.spool import stored_spools


@dataclass
class RequestStatus:
    """Where one import request stands, as ``shandy status`` reports it."""

    request_id: str
    completed: bool
    report_url: str | None
    failed_rows: int | None  # None until completed
    already_present_rows: int | None = None
    report_file: str | None = None
    failures_file: str | None = None
    # The --conflict of the run that sent it (noUpdate for a request not journalled
    # here): whether its already-present rows count against the exit code. Not in --json.
    conflict: str = field(default=NO_UPDATE, repr=False)

    @property
    def exit_code(self) -> ExitCode:
        """0 or 1 by the rule ``import`` follows; a request still processing is neither."""
        if not self.completed:
            return ExitCode.OK
        return finished_exit_code(
            rejected=0,
            failed=self.failed_rows or 0,
            already_present=self.already_present_rows or 0,
            conflict=self.conflict,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["conflict"]
        return data


@dataclass
class StatusResult(Sequence[RequestStatus]):
    """What ``check_status`` found: each request in the order asked (the result is also a
    sequence of them), whether it waited, and the exit code the contract gives it:
    ``ended_exit_code``, as ``import``'s, so 1 when a request's rows failed, 5 when the wait
    ran out with requests still processing."""

    requests: list[RequestStatus]
    waited: bool = False

    @property
    def pending(self) -> list[str]:
        """The requests Saleshandy is still processing."""
        return [r.request_id for r in self.requests if not r.completed]

    @property
    def timed_out(self) -> bool:
        return self.waited and bool(self.pending)

    @property
    def exit_code(self) -> ExitCode:
        return ended_exit_code((r.exit_code for r in self.requests), pending=self.timed_out)

    @property
    def error(self) -> str | None:
        """The one line a timed-out wait says (``exit_code`` 5), else None."""
        return timeout_message(self.pending, run=False) if self.timed_out else None

    def to_dict(self) -> list[dict[str, Any]]:
        """The ``--json`` document: a list, one object per request."""
        return [r.to_dict() for r in self.requests]

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()

    @overload
    def __getitem__(self, index: int) -> RequestStatus: ...
    @overload
    def __getitem__(self, index: slice) -> list[RequestStatus]: ...
    def __getitem__(self, index: int | slice) -> RequestStatus | list[RequestStatus]:
        return self.requests[index]

    def __len__(self) -> int:
        return len(self.requests)

    def __iter__(self) -> Iterator[RequestStatus]:
        return iter(self.requests)


def check_status(
    request_ids: Sequence[str],
    *,
    client: SaleshandyClient | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    wait: bool = False,
    timeout: float | None = None,
    report_dir: Path | None = None,
    poll_interval: float = FIRST_INTERVAL,
    listener: Listener = ignore,
) -> StatusResult:
    """Ask Saleshandy about each request id (optionally waiting for completion).

    Returns a ``StatusResult``: the ``RequestStatus`` of each id, and the exit code."""
    if not request_ids:
        raise InputError("give at least one request id")
    if timeout is not None and not 0 <= timeout < math.inf:  # as import: nan would wait forever
        raise InputError("--timeout must be a finite number of seconds, zero or more")
    settings = resolve_settings(api_key=api_key, base_url=base_url, state_dir=state_dir)
    own = client is None
    client = client or SaleshandyClient(
        settings.base_url, settings.api_key, rate_limits=settings.rate_limits
    )
    try:
        sizes = _chunk_sizes(settings.state_dir, request_ids) if wait else {}
        statuses = _statuses(client, request_ids, wait, timeout, poll_interval, listener, sizes)
        folder = ensure_private_dir(Path(report_dir or settings.state_dir / "reports"))
        results = [_download(client, statuses[rid], folder) for rid in request_ids]
        _account(settings.state_dir, results, listener)
        return StatusResult(results, waited=wait)
    finally:
        if own:
            client.close()


def _statuses(
    client: SaleshandyClient,
    ids: Sequence[str],
    wait: bool,
    timeout: float | None,
    interval: float,
    listener: Listener,
    sizes: dict[str, tuple[int, int]],
) -> dict[str, ImportStatus]:
    if not wait:
        return {rid: client.import_status(rid) for rid in dict.fromkeys(ids)}

    def on_status(status: ImportStatus) -> None:
        state = "completed" if status.completed else "accepted"
        rows, size = sizes.get(status.request_id, (0, 0))  # 0: not a request of ours
        listener(ChunkEvent(ids.index(status.request_id), state, rows, size, status.request_id))

    # Requests of earlier imports: the first poll goes at once.
    return poll_until_done(
        client, ids, timeout=timeout, first_interval=interval, on_status=on_status, first_delay=0
    )


def _chunk_sizes(state_dir: Path, ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(rows, bytes) of each request an earlier ``shandy import`` here sent, from its journal."""
    if not (Path(state_dir) / "journal.sqlite3").exists():
        return {}
    with Journal(Path(state_dir)) as journal:
        chunks = {rid: journal.chunk_for_request(rid) for rid in dict.fromkeys(ids)}
    return {rid: (c.rows, c.bytes) for rid, c in chunks.items() if c is not None}


def _download(client: SaleshandyClient, status: ImportStatus, folder: Path) -> RequestStatus:
    result = RequestStatus(status.request_id, status.completed, status.report_url, None)
    if status.completed and status.report_url:
        name = safe_filename(status.request_id, "report") + ".csv"  # the id is not a path
        path = client.download_report(status.report_url, folder / name)
        result.report_file = str(path)
    return result


def _account(state_dir: Path, results: list[RequestStatus], listener: Listener) -> None:
    """Count each request; record the journalled ones and join their runs once all are done."""
    if not (Path(state_dir) / "journal.sqlite3").exists():
        for result in results:
            _count(result, None, None)
        return
    with Journal(Path(state_dir)) as journal:
        runs: dict[str, RunRecord] = {}
        for result in results:
            chunk = journal.chunk_for_request(result.request_id)
            record = journal.get(chunk.run_id) if chunk else None
            if record is not None:
                runs[record.id] = record
                result.conflict = _options(record).conflict
            _count(result, chunk, journal)
        by_id = {r.request_id: r for r in results}
        for record in runs.values():
            _join_run(journal, record, by_id, listener)


def _count(
    result: RequestStatus, chunk: ChunkRecord | None, journal: Journal | None
) -> ChunkOutcome | None:
    """A completed request's rows, counted (and its end journalled) as ``import`` does."""
    if not result.completed:
        return None
    report = Path(result.report_file) if result.report_file else None
    outcome, _state = end_chunk(
        journal, chunk, report, request_id=result.request_id, report_url=result.report_url
    )
    result.failed_rows = len(outcome.failed)
    result.already_present_rows = len(outcome.already_present)
    return outcome


def _join_run(
    journal: Journal, record: RunRecord, by_id: dict[str, RequestStatus], listener: Listener
) -> None:
    chunks = journal.chunks(record.id)
    if not all_done(chunks):
        return
    if record.outcome == "completed":
        path = _written_failures(record)  # joined already, and its sent index is gone
    else:
        path = _write_failures(journal, record, listener)
    for chunk in chunks:
        if chunk.request_id in by_id:
            by_id[chunk.request_id].failures_file = str(path) if path else None
    if record.outcome == "processing":
        complete_run(journal, record.id, stored_spools(record.options).values())


def _write_failures(journal: Journal, record: RunRecord, listener: Listener) -> Path | None:
    """The run's failures file, as ``import`` writes it once its last chunk is done."""
    # Here, not at the top: only the status call that completes a run joins its failures
    # to the input's rows, and the readers behind fetch_rows are most of the pipeline.
    from shandy_cli.pipeline.prepare import fetch_rows
    from shandy_cli.pipeline.reporting import SentIndex

    stored, meta = record.options, record.meta
    opts = _options(record)
    spools = stored_spools(stored)

    def warn(text: str) -> None:
        notify(listener, text)

    def fetch(wanted: dict[int, set[int]]) -> dict[tuple[int, int], list[str]]:
        return fetch_rows(stored["paths"], opts, spools, wanted, meta.get("inputs"), warn)

    _outcome, path = write_run_failures(
        journal,
        record.id,
        opts.conflict,
        path=Path(meta["failures_file"]),
        columns=meta["columns"],
        rejects=Path(meta["rejects_file"]) if meta.get("rejects_file") else None,
        sent=SentIndex.reader(run_dir(journal.state_dir, record.id) / "sent.idx"),
        sources=[(str(name), list(columns)) for name, columns in meta["sources"]],
        fetch=fetch,
    )
    return path


def _written_failures(record: RunRecord) -> Path | None:
    name = record.meta.get("failures_file")
    return Path(name) if name and Path(name).is_file() else None


def _options(record: RunRecord) -> ImportOptions:
    return ImportOptions.from_json(record.options["options"])
