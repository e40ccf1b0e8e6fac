"""`shandy sandbox`: run the Saleshandy emulator in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shandy_cli.cli.common import StateDirOpt, handle_errors, say, settings_from
from shandy_cli.config import ensure_private_dir


@handle_errors
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8787,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Accept only this key (default: any).")
    ] = None,
    delay: Annotated[float, typer.Option(help="Seconds before an import completes.")] = 1.0,
    delay_per_row: Annotated[float, typer.Option(help="Extra seconds per prospect.")] = 0.00002,
    fault_rate: Annotated[float, typer.Option(help="Probability of a random fault.")] = 0.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Fault kind for --fault-rate: 429, 500, 502, 503, drop-before, ..."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for random faults.")] = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Serve the built-in Saleshandy emulator on loopback until Ctrl-C.

    Point shandy at it with SALESHANDY_BASE_URL=http://127.0.0.1:8787 and any key.

    Examples:\n
      shandy sandbox --port 8787\n
      shandy sandbox --fault-rate 0.2 --fault 429 --fault 502 --seed 1
    """
    from shandy_cli.sandbox import SandboxConfig, serve_forever

    settings = settings_from(None, None, state_dir)
    config = SandboxConfig(
        state_dir=ensure_private_dir(Path(settings.state_dir) / "sandbox"),
        host=host,
        port=port,
        api_key=api_key,
        delay_base=delay,
        delay_per_row=delay_per_row,
        fault_rate=fault_rate,
        fault_kinds=tuple(fault or ("429", "502")),
        fault_seed=seed,
        quiet=False,
    )
    say(f"shandy sandbox on http://{host}:{port} (state in {config.state_dir}); Ctrl-C stops")
    serve_forever(config)
