"""`shandy preview`: how a file will be read and mapped."""

from __future__ import annotations

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
)
from shandy_cli.cli.render import conclude
from shandy_cli.pipeline.mapping import parse_pairs
from shandy_cli.preview import preview as preview_source


@handle_errors
def preview(
    file: Annotated[str, typer.Argument(help="The file to look at; - is stdin.")],
    limit: Annotated[int, typer.Option("--limit", help="Rows to show.")] = 10,
    map_: Annotated[list[str] | None, typer.Option("--map", help='"Column=Field Label".')] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Mapping file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help='"Field Label=value".')] = None,
    sheet: Annotated[str | None, typer.Option("--sheet")] = None,
    member: Annotated[
        str | None, typer.Option("--member", help="The file to read inside a .zip input.")
    ] = None,
    encoding: Annotated[str | None, typer.Option("--encoding")] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter")] = None,
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Show how FILE will be read (format, encoding, delimiter) and mapped to field labels.

    \b
    Examples:
      shandy preview leads.csv
      shandy preview leads.xlsx --sheet Leads --limit 3 --json
    """
    session = api_session(api_key, base_url, state_dir, sandbox, key_optional=True, profile=profile)
    with session as (client, _):
        result = preview_source(
            file,
            client,
            limit=limit,
            encoding=encoding,
            delimiter=delimiter,
            sheet=sheet,
            member=member,
            column_map=parse_pairs(map_ or [], "--map"),
            mapping_file=mapping,
            constants=parse_pairs(set_ or [], "--set"),
        )
    conclude(result, json_out)
