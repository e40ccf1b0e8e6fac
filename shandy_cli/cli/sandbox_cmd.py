"""`shandy sandbox`: run the Saleshandy emulator in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shandy_cli._files import ensure_private_dir
from shandy_cli.cli.common import GLOBALS, StateDirOpt, fail, handle_errors, say, settings_from


@handle_errors
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8787,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Accept only this key (default: any).")
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option(
            help="Seconds before an import completes [env: SHANDY_SANDBOX_DELAY; default: 1].",
            show_default=False,
        ),
    ] = None,
    delay_per_row: Annotated[float, typer.Option(help="Extra seconds per prospect.")] = 0.00002,
    fault_rate: Annotated[float, typer.Option(help="Probability of a random fault.")] = 0.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Fault kind for --fault-rate: 429, 500, 502, 503, drop-before, ..."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for random faults.")] = None,
    rate_per_endpoint: Annotated[
        int, typer.Option(min=1, help="Calls per key and endpoint in the window (live: ~20).")
    ] = 20,
    rate_total: Annotated[
        int, typer.Option(min=1, help="Calls per key in the window, all endpoints (live: ~300).")
    ] = 300,
    rate_window: Annotated[
        float, typer.Option(min=0.001, help="Rate-limit sliding window, in seconds.")
    ] = 60.0,
    rate_status: Annotated[
        int, typer.Option(help="Status of a rate-limited answer: 400 (as live) or 429.")
    ] = 400,
    rate_reset_format: Annotated[
        str, typer.Option(help="x-ratelimit-reset as: seconds, epoch, http-date or iso.")
    ] = "seconds",
    no_rate_limit: Annotated[
        bool, typer.Option("--no-rate-limit", help="Turn the rate limits off.")
    ] = False,
    sequences: Annotated[
        int,
        typer.Option(
            "--sequences", min=0, help="Extra generated sequences, listed before the seeded ones."
        ),
    ] = 0,
    sequence_title: Annotated[
        list[str] | None,
        typer.Option(help="An extra sequence with this title, listed first (repeatable)."),
    ] = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Serve the built-in Saleshandy emulator on loopback until Ctrl-C.

    Point shandy at it with SALESHANDY_BASE_URL=http://127.0.0.1:8787 and any key.
    Rate limits are on, as on the live API (20 calls a minute per endpoint, 300 in
    total, per key, answered 400 "Rate Limit exceeded").

    Examples:\n
      shandy sandbox --port 8787\n
      shandy sandbox --fault-rate 0.2 --fault 429 --fault 502 --seed 1\n
      shandy sandbox --rate-status 429 --rate-window 10 --sequences 150
    """
    from shandy_cli.sandbox import Sandbox, SandboxConfig, serve_forever
    from shandy_cli.sandbox.ratelimit import check_rate_status, check_reset_format

    try:
        check_rate_status(rate_status)
        check_reset_format(rate_reset_format)
    except ValueError as exc:
        raise fail(str(exc)) from None  # a usage error: ExitCode.USAGE

    settings = settings_from(None, None, state_dir, need_key=False)
    config = SandboxConfig(
        state_dir=ensure_private_dir(Path(settings.state_dir) / "sandbox"),
        host=host,
        port=port,
        api_key=api_key,
        delay_base=settings.sandbox_delay if delay is None else delay,
        delay_per_row=delay_per_row,
        fault_rate=fault_rate,
        fault_kinds=tuple(fault or ("429", "502")),
        fault_seed=seed,
        quiet=GLOBALS.quiet,  # -q: no request log either
        rate_per_endpoint=None if no_rate_limit else rate_per_endpoint,
        rate_total=None if no_rate_limit else rate_total,
        rate_window=rate_window,
        rate_status=rate_status,
        rate_reset_format=rate_reset_format,
        extra_sequences=sequences,
        extra_sequence_titles=tuple(sequence_title or ()),
    )

    def ready(sandbox: Sandbox) -> None:
        say(
            f"shandy sandbox listening on {sandbox.url} (state in {config.state_dir}); "
            "Ctrl-C to stop"
        )
        say(
            f"webhooks: --notify {sandbox.url}/webhooks/NAME (GET it to see what arrived), "
            f"and a Slack stand-in at {sandbox.url}/services/TEAM/BOT/TOKEN (any three path "
            "parts, as a Slack incoming-webhook URL has)"
        )

    serve_forever(config, on_ready=ready)
