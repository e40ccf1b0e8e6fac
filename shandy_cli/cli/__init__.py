"""The ``shandy`` command line: one module per command over ``common``.

Commands only parse flags, call the library and render its result.
"""

from __future__ import annotations

from importlib import import_module
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from shandy_cli._version import version_line
from shandy_cli.cli.common import ProfileOpt, start_invocation
from shandy_cli.exits import ExitCode

# Each command's module, imported only when that command runs (or its own --help is
# asked for): most of the library lies behind them. Name -> (module in shandy_cli.cli,
# its callback or Typer app, epilog attribute, the command's first help line). The
# first lines are what `shandy --help` lists without importing anything;
# tests/test_startup.py checks each against its docstring.
COMMANDS: dict[str, tuple[str, str, str | None, str]] = {
    "import": (
        "import_cmd",
        "import_",
        "EPILOG",
        "Read, map, validate, chunk, submit and (by default) wait for the import.",
    ),
    "status": (
        "status_cmd",
        "status",
        None,
        "Show whether Saleshandy finished each request, and how many rows failed.",
    ),
    "preview": (
        "preview_cmd",
        "preview",
        None,
        "Show how FILE will be read (format, encoding, delimiter) and mapped to field labels.",
    ),
    "sequences": (
        "catalog_cmds",
        "sequences",
        None,
        "List sequences and their step ids (what --step and --sequence take).",
    ),
    "fields": (
        "catalog_cmds",
        "fields",
        None,
        "List the field labels the account has (system and custom).",
    ),
    "sandbox": (
        "sandbox_cmd",
        "sandbox",
        None,
        "Serve the built-in Saleshandy emulator on loopback until Ctrl-C.",
    ),
    "runs": (
        "runs_cmd",
        "runs",
        None,
        "List recent import runs from the journal, newest first; or prune old leftovers.",
    ),
    "resume": (
        "runs_cmd",
        "resume",
        None,
        "Continue an unfinished import: send what was not accepted, then wait.",
    ),
    "trace": (
        "trace_cmd",
        "trace",
        None,
        "Every kept run that saw EMAIL: when, file, row, chunk, request, endpoint and outcome.",
    ),
    "run": (
        "jobs_cmd",
        "run",
        "RUN_EPILOG",
        "Run the import a [jobs.NAME] table of shandy.toml describes; flags win over it.",
    ),
    "jobs": (
        "jobs_cmd",
        "jobs",
        None,
        "List the jobs of shandy.toml and check them all (nothing is sent).",
    ),
    "auth": (
        "auth_cmd",
        "app",
        None,
        "Account profiles: API keys kept in the OS keychain (or a 0600 file).",
    ),
}


def load_command(name: str) -> Any:
    """Import ``name``'s module and build its click command as ``app.command`` would."""
    module_name, attribute, epilog, _ = COMMANDS[name]
    module = import_module(f"shandy_cli.cli.{module_name}")
    target = getattr(module, attribute)
    if isinstance(target, typer.Typer):  # a group of its own (auth)
        group = typer.main.get_group(target)
        group.name = name
        return group
    holder = typer.Typer(
        pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None
    )
    holder.command(name, epilog=getattr(module, epilog) if epilog else None)(target)
    return typer.main.get_command(holder)


class LazyCommands(TyperGroup):
    """The root group: lists every command, imports one only when it is looked up."""

    def list_commands(self, ctx: Any) -> list[str]:
        # commands registered the usual way (app.command) still count, after COMMANDS
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """`shandy --help`'s list, from COMMANDS' first lines: no command is imported."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        summaries = [
            TyperCommand(name, help=COMMANDS[name][3]) if name in COMMANDS else self.commands[name]
            for name in names
        ]
        rows = [
            (name, cmd.get_short_help_str(limit))
            for name, cmd in zip(names, summaries, strict=True)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="shandy",
    cls=LazyCommands,
    help="Bulk-import prospects from CSV/XLSX/JSONL files into Saleshandy sequences.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(version_line())
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="More detail on stderr.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only on stderr.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    profile: ProfileOpt = None,
) -> None:
    """Bulk-import prospects into Saleshandy sequences.

    Examples:\n
      shandy import leads.csv --step StepA1\n
      shandy import leads.xlsx --sequence "Outbound Q4" --tag webinar --json\n
      shandy status 129a184 --wait\n
      shandy --profile acme import leads.csv --step StepA1
    """
    ctx.call_on_close(start_invocation(verbose=verbose, quiet=quiet, profile=profile))


def main() -> None:
    app()
