"""`shandy sequences` and `shandy fields`: what the account has."""

from __future__ import annotations

from shandy_cli.catalog import list_fields, list_sequences
from shandy_cli.cli.common import (
    ApiKeyOpt,
    BaseUrlOpt,
    JsonOpt,
    ProfileOpt,
    SandboxOpt,
    StateDirOpt,
    client_session,
    handle_errors,
)
from shandy_cli.cli.render import conclude


@handle_errors
def sequences(
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """List sequences and their step ids (what --step and --sequence take).

    Examples:\n
      shandy sequences\n
      shandy sequences --json | jq -r '.[].steps[].id'
    """
    with client_session(api_key, base_url, state_dir, sandbox, profile) as (client, _):
        result = list_sequences(client)
    conclude(result, json_out)


@handle_errors
def fields(
    json_out: JsonOpt = False,
    api_key: ApiKeyOpt = None,
    base_url: BaseUrlOpt = None,
    state_dir: StateDirOpt = None,
    sandbox: SandboxOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """List the field labels the account has (system and custom).

    Examples:\n
      shandy fields\n
      shandy fields --json
    """
    with client_session(api_key, base_url, state_dir, sandbox, profile) as (client, _):
        result = list_fields(client)
    conclude(result, json_out)
