"""Which field labels a file is mapped against: the account's, or the system ones.

One rule, used by an import (``_Run._labels``) and by ``preview``: with a client, the
account's fields from ``GET /v1/fields`` (system and custom, with their types); with
none (a dry run or a preview without a key), Saleshandy's system field labels only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shandy_cli.client import SaleshandyClient

# Used only without a key: the system fields live clients see in every account (the
# API notes' confirmed list; Website, State and the rest may be custom).
SYSTEM_LABELS = [
    "First Name",
    "Last Name",
    "Email",
    "Company",
    "Phone Number",
    "Job Title",
    "City",
    "Country",
    "LinkedIn",
]


@dataclass(frozen=True)
class FieldLabels:
    """The labels to map against, where they came from, and each label's type."""

    source: str  # "account" (GET /v1/fields) | "system" (SYSTEM_LABELS: no client)
    labels: list[str]
    types: dict[str, str] = field(default_factory=dict)  # label -> fieldType (account only)


def field_labels(client: SaleshandyClient | None) -> FieldLabels:
    """The account's field labels through ``client``, or the system labels without one."""
    if client is None:
        return FieldLabels("system", list(SYSTEM_LABELS))
    fields = [f for f in client.list_fields(True) if f.get("label")]
    # The types travel beside the labels: number and currency values are checked
    # before sending (a text value there fails the whole row at Saleshandy).
    types = {str(f["label"]): field_type(f) for f in fields}
    return FieldLabels("account", [str(f["label"]) for f in fields], types)


def field_type(field: dict[str, Any]) -> str:
    """A field's type as ``GET /v1/fields`` gives it (``fieldType``; ``type`` tolerated)."""
    return str(field.get("fieldType") or field.get("type") or "").strip().lower()


def field_record(field: dict[str, Any]) -> dict[str, Any]:
    """One field as ``shandy fields --json`` lists it."""
    return {"id": field.get("id"), "label": field.get("label"), "fieldType": field.get("fieldType")}
