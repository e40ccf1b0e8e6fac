"""The ``shandy`` command line: one module per command over ``common``.

Commands only parse flags, call the library and render its result.
"""

from __future__ import annotations

from typing import Annotated

import typer

from shandy_cli._version import __version__
from shandy_cli.cli import (
    auth_cmd,
    catalog_cmds,
    import_cmd,
    jobs_cmd,
    preview_cmd,
    runs_cmd,
    sandbox_cmd,
    status_cmd,
    trace_cmd,
)
from shandy_cli.cli.common import ProfileOpt, start_invocation
from shandy_cli.exits import ExitCode

app = typer.Typer(
    name="shandy",
    help="Bulk-import prospects from CSV/XLSX/JSONL files into Saleshandy sequences.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"shandy {__version__}")
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


app.command("import", epilog=import_cmd.EPILOG)(import_cmd.import_)
app.command("status")(status_cmd.status)
app.command("preview")(preview_cmd.preview)
app.command("sequences")(catalog_cmds.sequences)
app.command("fields")(catalog_cmds.fields)
app.command("sandbox")(sandbox_cmd.sandbox)
app.command("runs")(runs_cmd.runs)
app.command("resume")(runs_cmd.resume)
app.command("trace")(trace_cmd.trace)
app.command("run", epilog=jobs_cmd.RUN_EPILOG)(jobs_cmd.run)
app.command("jobs")(jobs_cmd.jobs)
app.add_typer(auth_cmd.app, name="auth")


def main() -> None:
    app()
