"""What the account has: its sequences (with their steps) and its field labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shandy_cli.client import SaleshandyClient
from shandy_cli.exits import ExitCode
from shandy_cli.pipeline.labels import field_record


@dataclass(frozen=True)
class SequencesResult:
    """The account's sequences (``shandy sequences --json``), each with its steps."""

    sequences: list[dict[str, Any]]
    exit_code: ExitCode = ExitCode.OK

    def to_json(self) -> list[dict[str, Any]]:
        return self.sequences


@dataclass(frozen=True)
class FieldsResult:
    """The account's fields, system and custom (``shandy fields --json``)."""

    fields: list[dict[str, Any]]
    exit_code: ExitCode = ExitCode.OK

    def to_json(self) -> list[dict[str, Any]]:
        return self.fields


def list_sequences(client: SaleshandyClient) -> SequencesResult:
    """Every sequence of the account, with its steps' ids and names."""
    return SequencesResult([sequence_record(s) for s in client.list_sequences()])


def list_fields(client: SaleshandyClient) -> FieldsResult:
    """Every field of the account, system and custom."""
    return FieldsResult([field_record(f) for f in client.list_fields(system_fields=True)])


def sequence_record(seq: dict[str, Any]) -> dict[str, Any]:
    """One sequence as ``shandy sequences --json`` lists it."""
    steps = [{"id": s.get("id"), "name": s.get("name")} for s in seq.get("steps") or []]
    return {
        "id": seq.get("id"),
        "title": seq.get("title"),
        "active": seq.get("active"),
        "steps": steps,
    }
