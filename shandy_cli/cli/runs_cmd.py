"""`shandy runs` and `shandy resume`: the journal of imports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shandy_cli.cli.common import (
    ApiKeyOpt,
    BaseUrlOpt,
    JsonOpt,
    ProfileOpt,
    SandboxOpt,
    StateDirOpt,
    api_session,
    chosen_profile,
    handle_errors,
    settings_from,
)
from shandy_cli.cli.import_cmd import document_on_every_exit, run_and_render
from shandy_cli.cli.render import conclude
from shandy_cli.journal import Journal
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
    settings = settings_from(None, None, state_dir, need_key=False)
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
    profile: ProfileOpt = None,
) -> None:
    """Continue an unfinished import: send what was not accepted, then wait.

    It continues with the account profile the run was made with, unless --profile
    names another (a key from --api-key, SALESHANDY_API_KEY or .env still wins).

    \b
    Examples:
      shandy resume --last
      shandy resume 20261126T030001-a1b2c3 --timeout 600
    """
    if not run_id and not last:
        last = True

    def call(listener: Listener) -> ImportResult:
        chosen = chosen_profile(profile) or _recorded_profile(run_id, last, state_dir)
        with api_session(api_key, base_url, state_dir, sandbox, profile=chosen) as (client, conn):
            return resume_import(
                run_id,
                last=last,
                profile=chosen,
                client=client,
                state_dir=conn.settings.state_dir,
                listener=listener,
                wait=wait,
                timeout=timeout,
                poll_interval=poll_interval,
            )

    with document_on_every_exit(json_out, []):
        run_and_render(call, json_out)


def _recorded_profile(run_id: str | None, last: bool, state_dir: Path | None) -> str | None:
    """The profile the journal says the run was made with: its account's key resumes it."""
    settings = settings_from(None, None, state_dir, need_key=False)
    with Journal(settings.state_dir) as journal:
        record = journal.last() if last or not run_id else journal.get(run_id)
    found = record.options.get("profile") if record is not None else None
    return found if isinstance(found, str) and found else None
