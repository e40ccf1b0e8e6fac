"""`shandy sequences` and `shandy fields`: what the account has."""

from __future__ import annotations

from typing import Any

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
    stdout_console,
)
from shandy_cli.cli.render import cell


def sequence_record(seq: dict[str, Any]) -> dict[str, Any]:
    steps = [{"id": s.get("id"), "name": s.get("name")} for s in seq.get("steps") or []]
    return {
        "id": seq.get("id"),
        "title": seq.get("title"),
        "active": seq.get("active"),
        "steps": steps,
    }


@handle_errors
def sequences(
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
) -> None:
    """List sequences and their step ids (what --step and --sequence take).

    Examples:\n
      shandy sequences\n
      shandy sequences --json | jq -r '.[].steps[].id'
    """
    with api_session(api_key, base_url, state_dir, sandbox) as (client, _):
        records = [sequence_record(s) for s in client.list_sequences()]
    if json_out:
        print_json(records)
        return
    table = Table("sequence", "id", "active", "step", "step id")
    for seq in records:
        steps = seq["steps"] or [{"id": "", "name": ""}]
        for n, step in enumerate(steps, 1):
            first = n == 1
            table.add_row(
                cell(seq["title"] if first else ""),
                cell(seq["id"] if first else ""),
                ("yes" if seq["active"] else "no") if first else "",
                cell(f"{n}. {step['name']}" if step["id"] else ""),
                cell(step["id"] or ""),
            )
    stdout_console().print(table)


@handle_errors
def fields(
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
) -> None:
    """List the field labels the account has (system and custom).

    Examples:\n
      shandy fields\n
      shandy fields --json
    """
    with api_session(api_key, base_url, state_dir, sandbox) as (client, _):
        records = [
            {"id": f.get("id"), "label": f.get("label"), "fieldType": f.get("fieldType")}
            for f in client.list_fields(system_fields=True)
        ]
    if json_out:
        print_json(records)
        return
    table = Table("label", "type", "id")
    for f in records:
        table.add_row(cell(f["label"]), cell(f["fieldType"]), cell(f["id"]))
    stdout_console().print(table)
