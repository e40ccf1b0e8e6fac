"""`shandy import`: parse flags, call ``import_files``, render the result."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    handle_errors,
    print_json,
    sigterm_as_exception,
)
from shandy_cli.cli.render import conclude, progress_for
from shandy_cli.notify import after_import
from shandy_cli.pipeline.chunking import API_MAX_BYTES, API_MAX_ROWS
from shandy_cli.pipeline.events import Listener
from shandy_cli.pipeline.mapping import parse_pairs
from shandy_cli.pipeline.polling import FIRST_INTERVAL
from shandy_cli.pipeline.results import ImportResult, stopped_result
from shandy_cli.pipeline.run import ImportOptions, import_files

EPILOG = """\b
Examples:
  shandy import leads.csv --step StepA1
  shandy import leads.xlsx --sheet Leads --sequence "Outbound Q4" --tag webinar
  shandy import a.csv b.csv --map "Mail=Email" --set "Lead Source=Webinar" --json
  cat leads.csv | shandy import - --step StepA1 --no-wait
  shandy import leads.csv --dry-run
"""


@handle_errors
def import_(
    files: Annotated[
        list[str], typer.Argument(help="CSV/TSV/TXT/XLSX/XLS/ODS/JSONL files; - is stdin.")
    ],
    step: Annotated[str | None, typer.Option("--step", help="Sequence step id.")] = None,
    sequence: Annotated[
        str | None, typer.Option("--sequence", help="Sequence name or id (its first step).")
    ] = None,
    step_number: Annotated[int, typer.Option("--step-number", help="Step of --sequence.")] = 1,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    conflict: Annotated[
        str, typer.Option("--conflict", help="noUpdate | overwrite | addMissingFields | upsert.")
    ] = "noUpdate",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Verify emails.")] = False,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help='"Column=Field Label" (repeatable).')
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="TOML or JSON mapping file.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help='"Field Label=value" on every prospect.')
    ] = None,
    sheet: Annotated[str | None, typer.Option("--sheet", help="Workbook sheet.")] = None,
    member: Annotated[
        str | None, typer.Option("--member", help="The file to read inside a .zip input.")
    ] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Text encoding.")] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="CSV delimiter.")] = None,
    on_unknown_column: Annotated[
        str, typer.Option("--on-unknown-column", help="error | ignore | create.")
    ] = "error",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Everything but sending.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for completion.")] = True,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to wait for completion.")
    ] = None,
    max_rows: Annotated[
        int, typer.Option("--max-rows", help="Prospects per request.")
    ] = API_MAX_ROWS,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", help="Bytes per request.")
    ] = API_MAX_BYTES,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Rejects CSV path.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Where report CSVs are saved.")
    ] = None,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", hidden=True, help="First poll interval (s).")
    ] = FIRST_INTERVAL,
    only_new: Annotated[
        bool, typer.Option("--only-new", help="Skip rows earlier runs imported to this step.")
    ] = False,
    only_changed: Annotated[
        bool,
        typer.Option(
            "--only-changed",
            help="Send rows no earlier run landed in this step to it, rows whose mapped "
            "values or tags changed since they last landed as updates to the account's "
            "prospects (--conflict, overwrite under noUpdate); skip the unchanged.",
        ),
    ] = False,
    update_existing: Annotated[
        bool,
        typer.Option(
            "--update-existing",
            help="Once the step's reports are in, send the rows Saleshandy found already "
            "in the sequence to the account's prospects, so their fields are updated.",
        ),
    ] = False,
    suppress: Annotated[
        list[Path] | None,
        typer.Option(
            "--suppress",
            metavar="FILE",
            help="A suppression list: addresses, @domain entries, # comments, or a CSV "
            "with an email column; matching rows are skipped, never sent (repeatable). "
            "Added to the SHANDY_SUPPRESS lists, which always apply.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Import again what an earlier run completed.")
    ] = False,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            metavar="URL",
            help="Tell this URL when the import ends (repeatable): a Slack incoming webhook "
            "gets a message, any other URL the --json document (signed with "
            "SHANDY_WEBHOOK_SECRET when set). Never changes the exit code.",
        ),
    ] = None,
    notify_on: Annotated[
        str, typer.Option("--notify-on", help="always | failure (a non-zero exit).")
    ] = "always",
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Read, map, validate, chunk, submit and (by default) wait for the import.

    Exit codes: 0 all imported, 1 some rows rejected or failed (or already in the
    sequence, under a --conflict other than noUpdate), 2 bad input (nothing sent),
    3 authentication, 4 API/network failure (resumable), 5 --timeout passed.
    """
    with document_on_every_exit(json_out, files, dry_run):
        options = ImportOptions(
            step_id=step,
            sequence=sequence,
            step_number=step_number,
            tags=tag or [],
            conflict=conflict,
            verify=verify,
            column_map=parse_pairs(map_ or [], "--map"),
            mapping_file=mapping,
            constants=parse_pairs(set_ or [], "--set"),
            sheet=sheet,
            member=member,
            encoding=encoding,
            delimiter=delimiter,
            on_unknown_column=on_unknown_column,
            dry_run=dry_run,
            wait=wait,
            timeout=timeout,
            max_rows=max_rows,
            max_bytes=max_bytes,
            rejects=rejects,
            report_dir=report_dir,
            poll_interval=poll_interval,
            only_new=only_new,
            only_changed=only_changed,
            update_existing=update_existing,
            suppress=tuple(suppress or ()),
            force=force,
            notify=tuple(notify or ()),
            notify_on=notify_on,
        )
        execute_import(
            files,
            options,
            json_out=json_out,
            api_key=api_key,
            base_url=base_url,
            state_dir=state_dir,
            sandbox=sandbox,
            profile=profile,
        )


def execute_import(
    files: Sequence[str],
    options: ImportOptions,
    *,
    json_out: bool,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: Path | None = None,
    sandbox: bool = False,
    profile: str | None = None,
) -> None:
    """Run an import the way ``shandy import`` does (``shandy run JOB`` too): progress,
    signals, the rendered result and its exit code."""
    options.check()

    def call(listener: Listener) -> ImportResult:
        # A dry run needs no key: without one (and no --sandbox) the client is None.
        with api_session(
            api_key, base_url, state_dir, sandbox, key_optional=options.dry_run, profile=profile
        ) as (client, conn):
            return import_files(
                files,
                options,
                client=client,
                state_dir=conn.settings.state_dir,
                listener=listener,
                profile=conn.settings.profile,
            )

    try:
        run_and_render(call, json_out)
    except (typer.Exit, typer.Abort):
        raise  # the import's own end, told by import_files
    except (Exception, KeyboardInterrupt) as exc:
        # A stop before import_files ran (no key, a refused profile) is told too; one
        # import_files raised it has told already.
        if not getattr(exc, "notified", False):
            result = stopped_result(exc, files, dry_run=options.dry_run, step_id=options.step_id)
            after_import(options, result, None)
        raise


@contextmanager
def document_on_every_exit(
    json_out: bool, files: Sequence[str], dry_run: bool = False
) -> Iterator[None]:
    """With --json, one document on every exit: a run that stopped early (a flag, the key,
    a full disk, a signal while reading) prints what it had done, with ``error`` set."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise  # the document of a finished run is printed already
    except (Exception, KeyboardInterrupt) as exc:
        if json_out:
            print_json(stopped_result(exc, files, dry_run=dry_run).to_dict())
        raise


def run_and_render(call: Callable[[Listener], ImportResult], json_out: bool) -> None:
    """Run an import with progress and signals handled, render its result, exit its code."""
    with progress_for(json_out) as listener, sigterm_as_exception():
        result = call(listener)
    conclude(result, json_out)
