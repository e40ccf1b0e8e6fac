"""``shandy status``: the state of earlier requests, their failed rows, and the failures file.

When a request id belongs to a run made on this machine (its ``run.json`` is
in the state dir) and every request of that run has completed, Saleshandy's
failed rows are joined back to that run's source rows, as ``import`` does.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shandy_cli._files import safe_filename
from shandy_cli.client import ImportStatus, SaleshandyClient
from shandy_cli.config import ensure_private_dir, resolve_settings
from shandy_cli.errors import InputError
from shandy_cli.journal import Journal, RunRecord
from shandy_cli.pipeline.events import ChunkEvent, Listener, ignore
from shandy_cli.pipeline.polling import FIRST_INTERVAL, poll_until_done
from shandy_cli.pipeline.prepare import fetch_rows
from shandy_cli.pipeline.reporting import SentIndex, parse_report, write_failures
from shandy_cli.pipeline.results import ImportOptions
from shandy_cli.pipeline.run import landed_failures, refuse_in_ledger, stored_spools


@dataclass
class RequestStatus:
    request_id: str
    completed: bool
    report_url: str | None
    failed_rows: int | None
    report_file: str | None = None
    failures_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
) -> list[RequestStatus]:
    """Ask Saleshandy about each request id (optionally waiting for completion)."""
    if not request_ids:
        raise InputError("give at least one request id")
    settings = resolve_settings(api_key=api_key, base_url=base_url, state_dir=state_dir)
    own = client is None
    client = client or SaleshandyClient(
        settings.base_url, settings.api_key, rate_limits=settings.rate_limits
    )
    try:
        statuses = _statuses(client, request_ids, wait, timeout, poll_interval, listener)
        folder = ensure_private_dir(Path(report_dir or settings.state_dir / "reports"))
        results = [_report(client, statuses[rid], folder) for rid in request_ids]
        _join_runs(settings.state_dir, results)
        return results
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
) -> dict[str, ImportStatus]:
    if not wait:
        return {rid: client.import_status(rid) for rid in dict.fromkeys(ids)}

    def on_status(status: ImportStatus) -> None:
        state = "completed" if status.completed else "accepted"
        listener(ChunkEvent(ids.index(status.request_id), state, 0, 0, status.request_id))

    return poll_until_done(
        client, ids, timeout=timeout, first_interval=interval, on_status=on_status
    )


def _report(client: SaleshandyClient, status: ImportStatus, folder: Path) -> RequestStatus:
    result = RequestStatus(status.request_id, status.completed, status.report_url, None)
    if not status.completed:
        return result
    if not status.report_url:
        result.failed_rows = 0
        return result
    name = safe_filename(status.request_id, "report") + ".csv"  # the id is not a path
    path = client.download_report(status.report_url, folder / name)
    result.report_file = str(path)
    result.failed_rows = len(parse_report(path, status.request_id))
    return result


def _join_runs(state_dir: Path, results: list[RequestStatus]) -> None:
    """Write the failures file of each journalled run whose requests have all completed."""
    if not (Path(state_dir) / "journal.sqlite3").exists():
        return
    by_id = {r.request_id: r for r in results}
    with Journal(Path(state_dir)) as journal:
        runs = {}
        for rid in by_id:
            record = journal.run_for_request(rid)
            if record is not None:
                runs[record.id] = record
        for record in runs.values():
            _join_run(journal, record, by_id)


def _join_run(journal: Journal, record: RunRecord, by_id: dict[str, RequestStatus]) -> None:
    chunks = journal.chunks(record.id)
    for chunk in chunks:
        status = by_id.get(chunk.request_id or "")
        if status and status.completed and chunk.state == "accepted":
            state = (
                "failed" if chunk.rows and (status.failed_rows or 0) >= chunk.rows else "completed"
            )
            journal.mark(
                record.id, chunk.idx, state, report=status.report_file,
                report_url=status.report_url, failed_rows=status.failed_rows,
            )  # fmt: skip
    chunks = journal.chunks(record.id)
    if not chunks or any(c.state not in ("completed", "failed") for c in chunks):
        return
    failures = landed_failures(journal, record.id)
    refuse_in_ledger(journal, record.id, failures)
    meta = record.meta
    rejects = Path(meta["rejects_file"]) if meta.get("rejects_file") else None
    run_dir = journal_run_dir(journal, record.id)
    stored = record.options
    opts = ImportOptions.from_json(stored["options"])
    spools = stored_spools(stored)
    path = write_failures(
        Path(meta["failures_file"]), meta["columns"], rejects, failures,
        SentIndex.reader(run_dir / "sent.idx"), [tuple(s) for s in meta["sources"]],
        lambda wanted: fetch_rows(stored["paths"], opts, spools, wanted),
    )  # fmt: skip
    for chunk in chunks:
        if chunk.request_id in by_id:
            by_id[chunk.request_id].failures_file = str(path) if path else None
    if record.outcome == "processing":
        journal.update_run(record.id, outcome="completed", ended=time.time())
        # Completed: the chunk bodies, the sent index and any copy of stdin have served.
        shutil.rmtree(run_dir / "chunks", ignore_errors=True)
        (run_dir / "sent.idx").unlink(missing_ok=True)
        for spool in spools.values():
            spool.unlink(missing_ok=True)


def journal_run_dir(journal: Journal, run_id: str) -> Path:
    return journal.state_dir / "runs" / run_id
