"""`shandy status`: where earlier imports stand, and what failed."""

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
    client_session,
    handle_errors,
)
from shandy_cli.cli.render import conclude, progress_for
from shandy_cli.pipeline.polling import FIRST_INTERVAL
from shandy_cli.status import check_status


@handle_errors
def status(
    request_ids: Annotated[list[str], typer.Argument(help="Request ids printed by import.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for completion.")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds to wait.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Where report CSVs are saved.")
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", hidden=True, help="First poll interval (s).")
    ] = FIRST_INTERVAL,
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Show whether Saleshandy finished each request, and how many rows failed.

    Exit 1 if rows failed, or were already in the sequence under a --conflict
    other than noUpdate (their update did not happen), as import exits.

    \b
    Examples:
      shandy status 129a184
      shandy status 129a184 7fe01c2 --wait --timeout 600 --json
    """
    with (
        progress_for(json_out) as listener,
        client_session(api_key, base_url, state_dir, sandbox, profile) as (client, conn),
    ):
        result = check_status(
            request_ids,
            client=client,
            state_dir=conn.settings.state_dir,
            wait=wait,
            timeout=timeout,
            report_dir=report_dir,
            poll_interval=poll_interval,
            listener=listener,
        )
    conclude(result, json_out)  # exits with the library's StatusResult.exit_code
