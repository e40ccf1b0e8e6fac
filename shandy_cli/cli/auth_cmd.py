"""`shandy auth login|status|logout`: account profiles, their keys in the OS keychain."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from shandy_cli import profiles
from shandy_cli.cli.common import (
    GLOBALS,
    SANDBOX_KEY,
    BaseUrlOpt,
    JsonOpt,
    handle_errors,
    print_json,
    safe_text,
    settings_from,
    stdout_console,
    warn,
)
from shandy_cli.cli.render import cell, conclude, renders
from shandy_cli.errors import ConfigError, ShandyError
from shandy_cli.profiles import AuthStatus, LoginResult, LogoutResult, profile_name
from shandy_cli.redaction import one_line

app = typer.Typer(
    help="Account profiles: API keys kept in the OS keychain (or a 0600 file).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SANDBOX_URL = "http://127.0.0.1:8787"  # where `shandy sandbox` listens by default
KEY_MAX = 4096  # bytes read from stdin for a key: a key is ~40; a pasted file is not one

NameOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="The profile [env: SHANDY_PROFILE; default: default].",
        show_default=False,
    ),
]


@app.command("login")
@handle_errors
def login(
    profile: NameOpt = None,
    with_key: Annotated[
        bool, typer.Option("--with-key", help="Read the key from stdin (for scripts).")
    ] = False,
    base_url: BaseUrlOpt = None,
    store: Annotated[
        str,
        typer.Option(
            "--store",
            help="auto (the keychain where one works, else a 0600 file) | keychain | file.",
        ),
    ] = "auto",
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help=f"A profile for the emulator `shandy sandbox` runs ({SANDBOX_URL}; no key).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check an API key with one call and keep it for a profile.

    The key is asked for without echo, or read from stdin with --with-key. It
    is kept in the OS keychain; where none works (a headless server, cron) in a
    0600 file in the user config directory, as the command says. Nothing is
    stored if the key is refused (exit 3) or the API cannot be reached (exit 4).

    \b
    Examples:
      shandy auth login --profile acme
      printf '%s' "$ACME_KEY" | shandy auth login --profile acme --with-key
      shandy auth login --profile demo --sandbox
    """
    name = profile_name(profile or GLOBALS.profile)
    if sandbox:
        key, base_url = SANDBOX_KEY, base_url or SANDBOX_URL
    else:
        key = _read_key(with_key)
    result = profiles.login(name, key, base_url=base_url, store=store)
    conclude(result, json_out)


def _read_key(with_key: bool) -> str:
    """The key from stdin (``--with-key``) or a hidden prompt on a terminal; never echoed."""
    if with_key:
        data = sys.stdin.read(KEY_MAX + 1)
        if len(data) > KEY_MAX:
            raise ConfigError(f"stdin holds more than {KEY_MAX} characters: that is not a key")
        lines = data.strip().splitlines()
        if len(lines) > 1:
            raise ConfigError("stdin holds more than one line: give the key alone")
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the key on: pipe it in with --with-key")
    return str(typer.prompt("Saleshandy API key", hide_input=True, default="", show_default=False))


@app.command("status")
@handle_errors
def status(
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="Only this profile.", show_default=False),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not check the keys (no API calls).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the profiles: where each key is kept (masked), its base URL, whether it
    works (one call each); the profile in use, and whether a key from --api-key,
    SALESHANDY_API_KEY or .env wins over it.

    Exit 0 if every checked key works, 3 if one is refused, 4 if one could not be
    checked (the network), 2 if a key cannot be read.

    \b
    Examples:
      shandy auth status
      shandy auth status --json | jq '.profiles[] | select(.works != true) | .name'
    """
    in_use, source = _in_use()
    result = profiles.auth_status(only=profile, in_use=in_use, key_source=source, check=not offline)
    conclude(result, json_out)


def _in_use() -> tuple[str, str | None]:
    """The profile the other commands would use now, and where their key would come from."""
    try:
        settings = settings_from(None, None, None)
    except ShandyError as exc:  # the profile in use cannot give its key: status says why
        warn(exc.message)
        return profile_name(GLOBALS.profile), None
    return settings.profile, settings.key_source


@app.command("logout")
@handle_errors
def logout(profile: NameOpt = None, json_out: JsonOpt = False) -> None:
    """Remove a profile: its key from the keychain or the file, and its entry.

    A profile that does not exist is exit 2.

    \b
    Examples:
      shandy auth logout --profile acme
    """
    conclude(profiles.logout(profile_name(profile or GLOBALS.profile)), json_out)


# -- rendering (registered with cli/render.py's renders) ------------------------


@renders(LoginResult)
def _login(result: LoginResult, json_out: bool) -> None:
    if result.note:
        warn(result.note)
    if json_out:
        print_json(result.to_dict())
        return
    url = f", base URL {result.base_url}" if result.base_url else ""
    print(safe_text(f"profile {result.profile}: key {result.key} kept in {result.where}{url}"))


@renders(LogoutResult)
def _logout(result: LogoutResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_dict())
        return
    where = ", ".join(result.removed) or "the index only (no key was stored)"
    print(safe_text(f"profile {result.profile} removed: key taken from {where}"))


@renders(AuthStatus)
def _auth_status(result: AuthStatus, json_out: bool) -> None:
    if json_out:
        print_json(result.to_dict())
        return
    if not result.profiles:
        print(f"no profiles in {safe_text(result.config_dir)}; run: shandy auth login")
    elif sys.stdout.isatty():
        table = Table(*STATUS_COLUMNS)
        for values in _status_rows(result):
            table.add_row(*map(cell, values))
        stdout_console().print(table)
    else:  # off a terminal, whole values a line, tab-separated: a table cuts paths short
        for values in [list(STATUS_COLUMNS), *_status_rows(result)]:
            print("\t".join(safe_text(one_line(v)) for v in values))
    print(safe_text(_precedence_line(result)))


STATUS_COLUMNS = ("in use", "profile", "key", "kept in", "base URL", "works")


def _status_rows(result: AuthStatus) -> list[list[str]]:
    rows = []
    for p in result.profiles:
        works = {True: "yes", False: "refused"}.get(p.works, "not checked")  # type: ignore[arg-type]
        if p.problem and p.works is not False:
            works = f"? {p.problem}"
        mark = "*" if p.name == result.in_use else ""
        base = p.base_url or "(default)"
        rows.append([mark, p.name, p.key or "-", p.where, base, works])
    return rows


def _precedence_line(result: AuthStatus) -> str:
    if result.overridden:
        return (
            f"in use: the key from {result.key_source}, which wins over profile "
            f"{result.in_use} (order: --api-key > SALESHANDY_API_KEY > .env > profile)"
        )
    if result.key_source:
        return f"in use: profile {result.in_use} (SHANDY_PROFILE or --profile picks another)"
    return f"in use: profile {result.in_use}, which has no key: run shandy auth login"
