"""`shandy trace EMAIL`: every kept run that saw an address, and what became of it."""

from __future__ import annotations

from typing import Annotated

import typer

from shandy_cli.cli.common import JsonOpt, StateDirOpt, handle_errors, settings_from
from shandy_cli.cli.render import conclude
from shandy_cli.pipeline.trace import trace as trace_address


@handle_errors
def trace(
    email: Annotated[str, typer.Argument(help="The address (case and spaces aside).")],
    json_out: JsonOpt = False,
    state_dir: StateDirOpt = None,
) -> None:
    """Every kept run that saw EMAIL: when, file, row, chunk, request, endpoint and outcome.

    Exit 0 when a run saw it, 1 when none of the kept runs did (runs are kept
    SHANDY_KEEP_DAYS, default 90, after they end).

    \b
    Examples:
      shandy trace ann@example.com
      shandy trace ann@example.com --json | jq '.entries[] | select(.outcome == "failed")'
    """
    settings = settings_from(None, None, state_dir, need_key=False)
    conclude(trace_address(email, state_dir=settings.state_dir), json_out)
