"""`shandy runs` and `shandy resume`: the journal of imports."""

from __future__ import annotations

from typing import Annotated

import typer

from shandy_cli.cli.common import (
    ApiKeyOpt,
    BaseUrlOpt,
    JsonOpt,
    SandboxOpt,
    StateDirOpt,
    api_session,
    handle_errors,
    settings_from,
)
from shandy_cli.cli.import_cmd import document_on_every_exit, run_and_render
from shandy_cli.cli.render import conclude
from shandy_cli.pipeline.events import Listener
from shandy_cli.pipeline.housekeeping import PRUNE_DAYS
from shandy_cli.pipeline.polling import FIRST_INTERVAL
from shandy_cli.pipeline.results import ImportResult
from shandy_cli.pipeline.run import resume_import
from shandy_cli.pipeline.runs import list_runs, prune


@handle_errors
def runs(
    limit: Annotated[int, typer.Option("--limit", help="How many runs.")] = 20,
    prune_: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Remove chunk bodies and stdin copies of failed, interrupted and crashed "
            "runs older than --older-than days (a pruned stdin run cannot be resumed), "
            "and finished runs older than that whole (journal records, run dirs).",
        ),
    ] = False,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            help=f"Days, for --prune (default: {PRUNE_DAYS:g} for leftovers, "
            "SHANDY_KEEP_DAYS (90) for finished runs).",
        ),
    ] = None,
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
    if prune_:
        conclude(prune(older_than, state_dir=settings.state_dir), json_out)
    conclude(list_runs(limit, state_dir=settings.state_dir), json_out)


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
                run_id,
                last=last,
                client=client,
                state_dir=conn.settings.state_dir,
                listener=listener,
                wait=wait,
                timeout=timeout,
                poll_interval=poll_interval,
            )

    with document_on_every_exit(json_out, []):
        run_and_render(call, json_out)
