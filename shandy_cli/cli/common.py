"""What every command shares: connection options, the API session, errors, output.

Commands stay thin: parse flags, call the library, render. Everything that can
go wrong surfaces as a ``ShandyError`` and becomes one line on stderr and the
contract's exit code here, never a traceback (unless ``--verbose``).
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer

from shandy_cli.errors import Hangup, ShandyError, Terminated, interrupt_exit_code
from shandy_cli.exits import ExitCode
from shandy_cli.pipeline.events import NOTICE
from shandy_cli.redaction import (
    account_id,
    mask_secret,
    printable,
    redact,
    redact_tree,
    register_secret,
)

# The client, config and profiles (httpx, dotenv, keyring behind them) load when a command
# first needs a connection, not when the root group is built: `shandy --help` and a
# command's own --help stay near the cost of typer and rich (issue 16, start-up).
if TYPE_CHECKING:
    from rich.console import Console

    from shandy_cli.client import SaleshandyClient
    from shandy_cli.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

SANDBOX_KEY = "sandbox-key"


@dataclass
class Globals:
    verbose: bool = False
    quiet: bool = False
    profile: str | None = None  # the root `shandy --profile NAME`: a command's own wins


GLOBALS = Globals()
LIBRARY_LOGGER = "shandy_cli"


def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def safe_text(text: str) -> str:
    """What may reach the terminal: no API key, no control characters from hostile input."""
    return printable(redact(text))


class StderrHandler(logging.Handler):
    """Where the library's log records reach the terminal: each becomes one
    ``shandy: ...`` (info) or ``shandy: warning: ...`` line on stderr, the key hidden and
    control characters shown; ``--quiet`` keeps errors only. A run's notices (records
    marked ``notice``) are skipped: the progress listener renders their ``Notice``
    events, timestamped off a terminal and above the bars on one."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, NOTICE, False):
            return
        if GLOBALS.quiet and record.levelno < logging.ERROR:
            return
        if record.levelno < logging.INFO and not GLOBALS.verbose:
            return
        try:
            text = safe_text(record.getMessage())
        except Exception:  # a bad format string of ours must not kill a run
            self.handleError(record)
            return
        warning = record.levelno >= logging.WARNING
        line = f"shandy: warning: {text}" if warning else f"shandy: {text}"
        print(line, file=sys.stderr, flush=True)


def start_invocation(verbose: bool, quiet: bool, profile: str | None = None) -> Callable[[], None]:
    """Set up one run of the command: fresh global state (an in-process caller, such as a
    test's ``CliRunner``, runs many), and the one handler that renders the library's log
    records. Returns the function that undoes it, called when the command ends."""
    GLOBALS.verbose, GLOBALS.quiet, GLOBALS.profile = verbose, quiet, profile
    _PS_WARNED.clear()
    _forget_warnings()
    logger = logging.getLogger(LIBRARY_LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(old)
    handler = StderrHandler()
    logger.addHandler(handler)
    saved = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False  # the CLI renders them; a root handler would print them again

    def finish() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    return finish


def _forget_warnings() -> None:
    """Forget the once-per-invocation warnings of config and profiles. A module not yet
    imported has warned nothing, so it is not imported just to be told to forget."""
    for name in ("shandy_cli.config", "shandy_cli.profiles"):
        module = sys.modules.get(name)
        if module is not None:
            module.forget_warnings()


def say(message: str) -> None:
    """The CLI's own progress or info line on stderr, as given (silenced by --quiet)."""
    if not GLOBALS.quiet:
        print(safe_text(message), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """The CLI's own ``shandy: warning: ...`` on stderr (silenced by --quiet)."""
    if not GLOBALS.quiet:
        print(f"shandy: warning: {safe_text(message)}", file=sys.stderr, flush=True)


def wait_line(endpoint: str, seconds: float) -> None:
    """A wait for the rate-limit budget outside an import (which says it in its progress)."""
    if seconds >= 1:
        say(f"shandy: waiting {seconds:.0f}s for the rate limit of {endpoint}")


def print_json(data: Any) -> None:
    """One JSON document on stdout, with the key hidden in every string (a server's
    error words can quote it, and they end up in ``error``)."""
    sys.stdout.write(orjson.dumps(redact_tree(data), option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = ExitCode.USAGE) -> typer.Exit:
    print(f"shandy: error: {safe_text(message)}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def print_traceback() -> None:
    """``--verbose`` details of an error, with the key hidden like everything else."""
    sys.stderr.write(safe_text(traceback.format_exc()))
    sys.stderr.flush()


def handle_errors(func: F) -> F:
    """Turn our errors into one line and an exit code; hide the key in anything printed."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ShandyError as exc:
            if GLOBALS.verbose:
                print_traceback()
            raise fail(exc.message, exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise fail("interrupted; nothing more was sent", interrupt_exit_code(exc)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a fault of the machine or a bug of ours: one line, -v more
            from shandy_cli.faults import fault_message, stop_code

            if GLOBALS.verbose:
                print_traceback()
            # Never 1 ("finished, some rows rejected"): an import that sent anything turned
            # its own faults into a ShandyError above, so here nothing was sent.
            raise fail(fault_message(exc), stop_code(exc, sent=False)) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` and SIGHUP ``Hangup`` (KeyboardInterrupts both), so a
    run stops at a safe point, journalled, instead of dying mid-write. A SIGHUP ignored
    when we started (``nohup shandy import ...``) stays ignored: that user asked to go on."""

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    def raise_hangup(signum: int, frame: object) -> None:
        raise Hangup()

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, raise_terminated)}
    hup = getattr(signal, "SIGHUP", None)  # Windows has no SIGHUP
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        previous[hup] = signal.signal(hup, raise_hangup)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- connection options, shared by every command that talks to the API -----------------------

ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="API key (discouraged: visible in `ps`; prefer SALESHANDY_API_KEY).",
        show_default=False,
    ),
]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="API base URL [env: SALESHANDY_BASE_URL].")
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Journal, locks, reports [env: SHANDY_STATE_DIR]."),
]
SandboxOpt = Annotated[
    bool, typer.Option("--sandbox", help="Use the built-in Saleshandy emulator (no key needed).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Account profile stored by `shandy auth login` [env: SHANDY_PROFILE; default: "
        "default]; --api-key, SALESHANDY_API_KEY and .env win over it.",
        show_default=False,
    ),
]


@dataclass
class Connection:
    settings: Settings
    sandbox: bool


_PS_WARNED: list[bool] = []


def settings_from(
    api_key: str | None,
    base_url: str | None,
    state_dir: Path | None,
    profile: str | None = None,
    *,
    need_key: bool = True,
) -> Settings:
    """The command's settings (``resolve_settings``); ``need_key`` False for commands that
    never call the API, which then read no profile's key from the keychain."""
    if api_key:
        register_secret(api_key)
        if not _PS_WARNED:  # once, however many times a command resolves its settings
            _PS_WARNED.append(True)
            warn("--api-key is visible to other users in `ps`; prefer SALESHANDY_API_KEY")
    from shandy_cli.config import resolve_settings

    settings = resolve_settings(
        api_key=api_key,
        base_url=base_url,
        state_dir=state_dir,
        profile=chosen_profile(profile),
        need_key=need_key,
    )
    if settings.api_key:
        register_secret(settings.api_key)  # a profile's key too: never in any output
    return settings


def chosen_profile(profile: str | None) -> str | None:
    """The command's own ``--profile``, else the root's (``shandy --profile NAME import``);
    None lets ``SHANDY_PROFILE`` and then ``default`` decide (``resolve_settings``)."""
    return profile or GLOBALS.profile


def open_client(settings: Settings) -> SaleshandyClient:
    """The client every command uses: retries said through logging (``client``'s default
    hook, rendered by ``StderrHandler``), budget waits too."""
    from shandy_cli.client import SaleshandyClient

    client = SaleshandyClient(
        settings.base_url, settings.api_key, on_wait=wait_line, rate_limits=settings.rate_limits
    )
    client.key_source = settings.key_source  # a refused key's error says where it came from
    return client


@contextmanager
def api_session(
    api_key: str | None,
    base_url: str | None,
    state_dir: Path | None,
    sandbox: bool,
    *,
    key_optional: bool = False,
    profile: str | None = None,
) -> Iterator[tuple[SaleshandyClient | None, Connection]]:
    """Resolve settings, start the in-process sandbox if asked, and open a client: the one
    way every command gets its client. ``key_optional`` (a dry run, a preview): with no
    key and no ``--sandbox`` the client is None and the library works without the API.
    ``profile``: ``--profile`` (``SHANDY_PROFILE``), whose stored key and base URL apply
    when no flag, variable or ``.env`` gives them."""
    settings = settings_from(api_key, base_url, state_dir, profile)
    if not sandbox:
        if key_optional and not settings.api_key:
            yield None, Connection(settings, False)
            return
        with open_client(settings) as client:
            yield client, Connection(settings, False)
        return
    from shandy_cli._files import ensure_private_dir
    from shandy_cli.sandbox import SandboxConfig, start_sandbox

    sandbox_dir = ensure_private_dir(settings.state_dir / "sandbox")
    config = SandboxConfig(state_dir=sandbox_dir, delay_base=settings.sandbox_delay)
    server = start_sandbox(config)
    try:
        # The emulator accepts any key: never hand it the real one from the environment.
        local = replace(settings, api_key=SANDBOX_KEY, base_url=server.url)
        if GLOBALS.verbose:
            say(f"sandbox listening on {server.url} (key {mask_secret(SANDBOX_KEY)})")
        with open_client(local) as client:
            # one account however its port changes: the sandbox's data is its state dir's
            client.account = account_id(f"sandbox:{sandbox_dir.resolve()}", SANDBOX_KEY)
            yield client, Connection(local, True)
    finally:
        server.stop()


@contextmanager
def client_session(
    api_key: str | None,
    base_url: str | None,
    state_dir: Path | None,
    sandbox: bool,
    profile: str | None = None,
) -> Iterator[tuple[SaleshandyClient, Connection]]:
    """``api_session`` for commands that need the API (a key or ``--sandbox``)."""
    with api_session(api_key, base_url, state_dir, sandbox, profile=profile) as (client, conn):
        assert client is not None  # only a key_optional session has none
        yield client, conn
