"""`shandy runs` and `shandy resume`: the journal of imports."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shandy_cli.cli.common import (
    ApiKeyOpt,
    BaseUrlOpt,
    JsonOpt,
    SandboxOpt,
    StateDirOpt,
    api_session,
    handle_errors,
    print_json,
    safe_text,
    settings_from,
    stdout_console,
)
from shandy_cli.cli.import_cmd import document_on_every_exit, run_and_render
from shandy_cli.cli.render import cell
from shandy_cli.journal import Journal, RunRecord
from shandy_cli.pipeline.events import Listener
from shandy_cli.pipeline.housekeeping import PRUNE_DAYS, prune_runs
from shandy_cli.pipeline.polling import FIRST_INTERVAL
from shandy_cli.pipeline.results import ImportResult
from shandy_cli.pipeline.run import resume_import
from shandy_cli.redaction import one_line


def run_record(journal: Journal, run: RunRecord) -> dict[str, Any]:
    chunks = journal.chunks(run.id)
    return {
        "run_id": run.id,
        "started": _iso(run.started),
        "ended": _iso(run.ended),
        "outcome": journal.live_outcome(run),
        "pid": run.pid,
        "step_id": run.step_id,
        "files": run.files,
        "rows_read": run.meta.get("rows_read"),
        "rows_submitted": run.meta.get("rows_submitted"),
        "chunks": len(chunks),
        "chunks_accepted": sum(c.state in ("accepted", "completed", "failed") for c in chunks),
        "request_ids": [c.request_id for c in chunks if c.request_id],
    }


def _iso(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) if ts else None


@handle_errors
def runs(
    limit: Annotated[int, typer.Option("--limit", help="How many runs.")] = 20,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Remove chunk bodies and stdin copies of failed, interrupted and crashed "
            "runs older than --older-than days (a pruned stdin run cannot be resumed).",
        ),
    ] = False,
    older_than: Annotated[
        float, typer.Option("--older-than", min=0, help="Days, for --prune.")
    ] = PRUNE_DAYS,
    json_out: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """List recent import runs from the journal, newest first; or prune old leftovers.

    \b
    Examples:
      shandy runs
      shandy runs --json | jq '.[] | select(.outcome != "completed")'
      shandy runs --prune --older-than 3
    """
    settings = settings_from(None, None, state_dir)
    if prune:
        _prune(settings.state_dir, older_than, json_out)
        return
    with Journal(settings.state_dir) as journal:
        records = [run_record(journal, r) for r in journal.runs(limit)]
    if json_out:
        print_json(records)
        return
    if not sys.stdout.isatty():
        _print_lines(records)
        return
    table = Table(*RUN_COLUMNS)
    for r in records:
        table.add_row(*map(cell, _cells(r)))
    stdout_console().print(table)


RUN_COLUMNS = ("run", "started", "outcome", "step", "files", "rows", "chunks")


def _cells(r: dict[str, Any]) -> list[str]:
    return [
        r["run_id"], r["started"] or "", r["outcome"], r["step_id"] or "list",
        ", ".join(r["files"]), str(r["rows_read"] or 0), f"{r['chunks_accepted']}/{r['chunks']}",
    ]  # fmt: skip


def _print_lines(records: list[dict[str, Any]]) -> None:
    """Off a terminal, one tab-separated line a run with every value whole: a table
    fitted to 80 columns cut run ids to ``20261201T2…``, which ``resume`` cannot take."""
    for values in [list(RUN_COLUMNS), *map(_cells, records)]:
        print("\t".join(safe_text(one_line(v)) for v in values))


def _prune(state_dir: Path, days: float, json_out: bool) -> None:
    with Journal(state_dir) as journal:
        done = prune_runs(journal, days)
    if json_out:
        print_json(
            {"pruned_runs": done.runs, "files_removed": done.files, "bytes_freed": done.bytes_freed}
        )
        return
    stdout_console().print(
        f"pruned {len(done.runs)} run(s) and {done.files} stray stdin copies older than "
        f"{days:g} day(s): {done.bytes_freed:,} bytes freed"
    )


@handle_errors
def resume(
    run_id: Annotated[str | None, typer.Argument(help="Run id (see `shandy runs`).")] = None,
    last: Annotated[bool, typer.Option("--last", help="The most recent run.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for completion.")] = True,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds to wait.")] = None,
    poll_interval: Annotated[float, typer.Option("--poll-interval", hidden=True)] = FIRST_INTERVAL,
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
) -> None:
    """Continue an unfinished import: send what was not accepted, then wait.

    \b
    Examples:
      shandy resume --last
      shandy resume 20261126T030001-a1b2c3 --timeout 600
    """
    if not run_id and not last:
        last = True

    def call(listener: Listener) -> ImportResult:
        with api_session(api_key, base_url, state_dir, sandbox) as (client, conn):
            return resume_import(
                run_id, last=last, client=client, state_dir=conn.settings.state_dir,
                listener=listener, wait=wait, timeout=timeout, poll_interval=poll_interval,
            )  # fmt: skip

    with document_on_every_exit(json_out, []):
        run_and_render(call, json_out)
