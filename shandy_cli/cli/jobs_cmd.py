"""`shandy run JOB` and `shandy jobs`: named imports from a ``shandy.toml`` (``jobs.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shandy_cli.cli.common import (
    ApiKeyOpt,
    BaseUrlOpt,
    JsonOpt,
    ProfileOpt,
    SandboxOpt,
    StateDirOpt,
    chosen_profile,
    handle_errors,
    print_json,
    safe_text,
    say,
    stdout_console,
)
from shandy_cli.cli.import_cmd import document_on_every_exit, execute_import
from shandy_cli.cli.render import cell, conclude, renders
from shandy_cli.jobs import JobsResult, list_jobs, prepare_job
from shandy_cli.pipeline.mapping import parse_pairs
from shandy_cli.redaction import one_line

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="The jobs file [env: SHANDY_CONFIG; default: shandy.toml here].",
        show_default=False,
    ),
]

RUN_EPILOG = """\b
Examples:
  shandy run nightly
  shandy run nightly --dry-run
  shandy run nightly --json --timeout 600 > last-import.json
  shandy run acme-weekly --config /srv/leads/shandy.toml --profile acme
"""


@handle_errors
def run(
    job: Annotated[str, typer.Argument(help="The NAME of a [jobs.NAME] of the jobs file.")],
    step: Annotated[str | None, typer.Option("--step", help="Sequence step id.")] = None,
    sequence: Annotated[
        str | None, typer.Option("--sequence", help="Sequence name or id (its first step).")
    ] = None,
    step_number: Annotated[
        int | None, typer.Option("--step-number", help="Step of --sequence.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag (repeatable; replaces the job's).")
    ] = None,
    conflict: Annotated[
        str | None,
        typer.Option("--conflict", help="noUpdate | overwrite | addMissingFields | upsert."),
    ] = None,
    verify: Annotated[
        bool | None, typer.Option("--verify/--no-verify", help="Verify emails.")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help='"Column=Field Label" (repeatable; wins per column).'),
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="TOML or JSON mapping file.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help='"Field Label=value" (repeatable; wins per label).'),
    ] = None,
    sheet: Annotated[str | None, typer.Option("--sheet", help="Workbook sheet.")] = None,
    member: Annotated[
        str | None, typer.Option("--member", help="The file to read inside a .zip input.")
    ] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Text encoding.")] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="CSV delimiter.")] = None,
    on_unknown_column: Annotated[
        str | None, typer.Option("--on-unknown-column", help="error | ignore | create.")
    ] = None,
    dry_run: Annotated[
        bool | None, typer.Option("--dry-run", help="Everything but sending.")
    ] = None,
    wait: Annotated[
        bool | None, typer.Option("--wait/--no-wait", help="Wait for completion.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to wait for completion.")
    ] = None,
    max_rows: Annotated[
        int | None, typer.Option("--max-rows", help="Prospects per request.")
    ] = None,
    max_bytes: Annotated[int | None, typer.Option("--max-bytes", help="Bytes per request.")] = None,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Rejects CSV path.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Where report CSVs are saved.")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option("--poll-interval", hidden=True, help="First poll interval.")
    ] = None,
    only_new: Annotated[
        bool | None, typer.Option("--only-new", help="Skip rows earlier runs imported.")
    ] = None,
    only_changed: Annotated[
        bool | None, typer.Option("--only-changed", help="Send new and changed rows only.")
    ] = None,
    update_existing: Annotated[
        bool | None,
        typer.Option("--update-existing", help="Update rows already in the sequence."),
    ] = None,
    suppress: Annotated[
        list[Path] | None,
        typer.Option("--suppress", metavar="FILE", help="Suppression list (replaces the job's)."),
    ] = None,
    force: Annotated[
        bool | None, typer.Option("--force", help="Import again what an earlier run completed.")
    ] = None,
    notify: Annotated[
        list[str] | None,
        typer.Option("--notify", metavar="URL", help="Tell this URL (replaces the job's)."),
    ] = None,
    notify_on: Annotated[str | None, typer.Option("--notify-on", help="always | failure.")] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Run the import a [jobs.NAME] table of shandy.toml describes; flags win over it.

    Same progress, output, --json document and exit codes as `shandy import`. The job
    is checked before anything is sent: a bad key or value, a glob matching no file, a
    missing mapping or suppression file is exit 2 naming the job and the key.
    """
    overrides: dict[str, Any] = {
        "step_id": step,
        "sequence": sequence,
        "step_number": step_number,
        "tags": tuple(tag) if tag else None,
        "conflict": conflict,
        "verify": verify,
        "column_map": parse_pairs(map_, "--map") if map_ else None,
        "mapping_file": mapping,
        "constants": parse_pairs(set_, "--set") if set_ else None,
        "sheet": sheet,
        "member": member,
        "encoding": encoding,
        "delimiter": delimiter,
        "on_unknown_column": on_unknown_column,
        "dry_run": dry_run,
        "wait": wait,
        "timeout": timeout,
        "max_rows": max_rows,
        "max_bytes": max_bytes,
        "rejects": rejects,
        "report_dir": report_dir,
        "poll_interval": poll_interval,
        "only_new": only_new,
        "only_changed": only_changed,
        "update_existing": update_existing,
        "suppress": tuple(suppress) if suppress else None,
        "force": force,
        "notify": tuple(notify) if notify else None,
        "notify_on": notify_on,
    }
    with document_on_every_exit(json_out, [], bool(dry_run)):
        chosen = prepare_job(job, config=config, overrides=overrides)
        say(
            f"shandy: job {one_line(chosen.name)!r}: {len(chosen.files)} file(s) to {chosen.target}"
        )
        execute_import(
            chosen.files,
            chosen.options,
            json_out=json_out,
            api_key=api_key,
            base_url=base_url,
            state_dir=state_dir,
            sandbox=sandbox,
            profile=chosen_profile(profile) or chosen.profile,  # the line's, root or own
        )


@handle_errors
def jobs(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """List the jobs of shandy.toml and check them all (nothing is sent).

    \b
    Examples:
      shandy jobs
      shandy jobs --config /srv/leads/shandy.toml --json
    """
    conclude(list_jobs(config), json_out)


@renders(JobsResult)
def _jobs(result: JobsResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_dict())
        return
    if not result.jobs:
        say(f"shandy: no jobs in {one_line(str(result.path))}")
        return
    if not sys.stdout.isatty():
        # Off a terminal, one tab-separated line a job, every value whole (as `runs`).
        for values in [["job", "target", "files", "profile", "options"], *map(_cells, result.jobs)]:
            print("\t".join(safe_text(one_line(v)) for v in values))
        return
    table = Table("job", "target", "files", "profile", "options", title=str(result.path))
    for job in result.jobs:
        table.add_row(*map(cell, _cells(job)))
    stdout_console().print(table)


def _cells(job: Any) -> list[str]:
    options = ", ".join(
        f"{k}={v}" for k, v in job.to_dict()["options"].items() if k not in ("step", "sequence")
    )
    return [job.name, job.target, " ".join(job.files), job.profile or "", options]
