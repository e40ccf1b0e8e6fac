"""`shandy preview`: how a file will be read and mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shandy_cli.cli.common import (
    ApiKeyOpt,
    BaseUrlOpt,
    JsonOpt,
    SandboxOpt,
    StateDirOpt,
    api_session,
    handle_errors,
    print_json,
    safe_text,
    settings_from,
    stdout_console,
    warn,
)
from shandy_cli.cli.render import cell
from shandy_cli.pipeline.mapping import parse_pairs
from shandy_cli.pipeline.run import SYSTEM_LABELS
from shandy_cli.preview import preview_file


@handle_errors
def preview(
    file: Annotated[str, typer.Argument(help="The file to look at; - is stdin.")],
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.")] = 10,
    map_: Annotated[list[str] | None, typer.Option("--map", help='"Column=Field Label".')] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Mapping file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help='"Field Label=value".')] = None,
    sheet: Annotated[str | None, typer.Option("--sheet")] = None,
    encoding: Annotated[str | None, typer.Option("--encoding")] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter")] = None,
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
) -> None:
    """Show how FILE will be read (format, encoding, delimiter) and mapped to field labels.

    \b
    Examples:
      shandy preview leads.csv
      shandy preview leads.xlsx --sheet Leads --limit 3 --json
    """
    settings = settings_from(api_key, base_url, state_dir)
    if sandbox or settings.api_key:
        with api_session(api_key, base_url, state_dir, sandbox) as (client, _):
            labels = [str(f["label"]) for f in client.list_fields(True) if f.get("label")]
    else:
        warn("no API key: mapping against Saleshandy's system field labels only")
        labels = list(SYSTEM_LABELS)
    doc = preview_file(
        file,
        labels,
        limit=limit,
        encoding=encoding,
        delimiter=delimiter,
        sheet=sheet,
        column_map=parse_pairs(map_ or [], "--map"),
        mapping_file=mapping,
        constants=parse_pairs(set_ or [], "--set"),
    )
    if json_out:
        print_json(doc)
        return
    console = stdout_console()
    delim = {"\t": "tab"}.get(doc["delimiter"] or "", doc["delimiter"])
    console.print(
        cell(f"{doc['file']}: {doc['format']}, encoding {doc['encoding']}, delimiter {delim!r}")
    )
    table = Table("column", "field label")
    for column, label in doc["mapping"].items():
        table.add_row(cell(column), cell(label or "(not mapped)"))
    console.print(table)
    if doc["problem"]:
        warn(doc["problem"])
    if doc["prospects"]:
        labels_seen = list(dict.fromkeys(k for p in doc["prospects"] for k in p))
        rows = Table(
            *(escape(safe_text(x)) for x in labels_seen),
            title=f"first {len(doc['prospects'])} prospect(s)",
        )
        for p in doc["prospects"]:
            rows.add_row(*(cell(p.get(k, "")) for k in labels_seen))
        console.print(rows)
