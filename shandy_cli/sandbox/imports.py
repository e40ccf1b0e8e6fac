"""What the import endpoints accept and what they do with each prospect, free of HTTP and SQL.

Validation mirrors the real API's (NestJS ``class-validator`` with ``whitelist`` and
``forbidNonWhitelisted``): the whole request is refused with 400 for a malformed body,
while a bad *row* is accepted and shows up later in the import's error report.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shandy_cli.sandbox.seed import EMAIL_LABEL, NUMERIC_TYPES

MAX_PROSPECTS = 100_000
MAX_BODY_BYTES = 90_000_000
CONFLICT_ACTIONS = ("overwrite", "noUpdate", "addMissingFields", "upsert")

REASON_MISSING_EMAIL = "Email is required"
REASON_INVALID_EMAIL = "Invalid email"
REASON_DUPLICATE = "Duplicate email in file"
REASON_IN_SEQUENCE = "Prospect already present in another step of same sequence"  # live text
REASON_TYPE_MISMATCH = "Mismatch in custom field type"  # live text

# Deliberately plain: one @, no spaces, a dotted domain ending in a 2+ letter TLD.
_EMAIL_RE = re.compile(r"[^@\s]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}")
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")  # what a number or currency field takes

_MAX_MESSAGES = 10  # a 400 names at most this many problems, like a readable API would


class Rejected(Exception):
    """The request is refused as a whole, answered in NestJS's validation shape.

    ``message`` is one text, or a list when there are several problems, as NestJS sends.
    """

    def __init__(self, status: int, message: str | list[str]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def rejected(problems: list[str]) -> Rejected:
    """A 400 naming ``problems`` (a lone one as text, several as a list)."""
    problems = problems[:_MAX_MESSAGES]
    return Rejected(400, problems[0] if len(problems) == 1 else problems)


@dataclass
class ImportRequest:
    prospects: list[dict[str, str]]
    step_id: str | None
    conflict_action: str
    verify: bool
    tags: list[str]
    to_step: bool = True  # the sequence import (only adds); False: the account-level upsert
    numeric_labels: frozenset[str] = frozenset()  # labels of number/currency fields


def parse_import(
    body: Any, *, to_step: bool, field_types: Mapping[str, str], step_ids: Collection[str]
) -> ImportRequest:
    """Validate an import body the way the API does, or raise ``Rejected`` naming the problem.

    ``to_step``: the sequence import, where ``stepId`` is required; the account-level
    import takes an optional one. ``field_types`` maps the account's labels to types.
    """
    if not isinstance(body, dict):
        raise Rejected(400, "Request body must be a JSON object")
    allowed = {"prospectList", "verifyProspects", "conflictAction", "tags", "stepId"}
    problems = [f"property {key} should not exist" for key in body if key not in allowed]
    problems += _top_level_problems(body, to_step, step_ids)
    if problems:
        raise rejected(problems)
    prospects = body["prospectList"]
    _check_prospects(prospects, field_types)
    return ImportRequest(
        prospects=prospects,
        step_id=body.get("stepId"),
        conflict_action=body["conflictAction"],
        verify=body["verifyProspects"],
        tags=body.get("tags", []),
        to_step=to_step,
        numeric_labels=frozenset(k for k, t in field_types.items() if t in NUMERIC_TYPES),
    )


def _top_level_problems(
    body: dict[str, Any], to_step: bool, step_ids: Collection[str]
) -> list[str]:
    problems = []
    prospects = body.get("prospectList")
    if not isinstance(prospects, list):
        problems.append("prospectList must be an array")
    elif not prospects:
        problems.append("prospectList should not be empty")
    elif len(prospects) > MAX_PROSPECTS:
        problems.append(f"prospectList must contain no more than {MAX_PROSPECTS} elements")
    if not isinstance(body.get("verifyProspects"), bool):
        problems.append("verifyProspects must be a boolean value")
    if body.get("conflictAction") not in CONFLICT_ACTIONS:
        problems.append(
            f"conflictAction must be one of the following values: {', '.join(CONFLICT_ACTIONS)}"
        )
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append("each value in tags must be a string")
    if to_step or "stepId" in body:
        step_id = body.get("stepId")
        if not isinstance(step_id, str) or not step_id:
            problems.append("stepId must be a string")
        elif step_id not in step_ids:
            problems.append(f"stepId {step_id} does not exist")
    return problems


def _check_prospects(prospects: list[Any], labels: Collection[str]) -> None:
    """Refuse the request at the first prospect that is not an object of known labels to strings."""
    for index, prospect in enumerate(prospects):
        if not isinstance(prospect, dict):
            raise Rejected(400, f"prospectList[{index}] must be an object")
        for label, value in prospect.items():
            if label not in labels:
                raise Rejected(
                    400, f"prospectList[{index}]: field {label!r} does not exist in this account"
                )
            if not isinstance(value, str):
                raise Rejected(400, f"prospectList[{index}].{label} must be a string")


@dataclass
class Classified:
    """The rows of one import: those to store (keyed by lowercased email) and those that fail."""

    accepted: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    failures: list[tuple[int, dict[str, str], str]] = field(default_factory=list)


def classify(
    prospects: Iterable[dict[str, str]], numeric_labels: Collection[str] = ()
) -> Classified:
    """Sort rows into accepted and failed; within one request the first good row of an email wins.

    A row with a non-number in a number or currency field fails whole ("Mismatch in
    custom field type"), as live: none of its values is stored.
    """
    result = Classified()
    for index, prospect in enumerate(prospects):
        email = prospect.get(EMAIL_LABEL, "")
        if not email:
            result.failures.append((index, prospect, REASON_MISSING_EMAIL))
        elif not _EMAIL_RE.fullmatch(email):
            result.failures.append((index, prospect, REASON_INVALID_EMAIL))
        elif _type_mismatch(prospect, numeric_labels):
            result.failures.append((index, prospect, REASON_TYPE_MISMATCH))
        elif (key := email.lower()) in result.accepted:
            result.failures.append((index, prospect, REASON_DUPLICATE))
        else:
            result.accepted[key] = (index, prospect)
    return result


def _type_mismatch(prospect: dict[str, str], numeric_labels: Collection[str]) -> bool:
    """Whether a number/currency field holds anything but a number (an empty value too)."""
    return any(
        not _NUMBER_RE.fullmatch(prospect[label].strip())
        for label in numeric_labels
        if label in prospect
    )


def fields_to_write(given: dict[str, str], action: str, existing: dict[str, str]) -> dict[str, str]:
    """What ``conflictAction`` writes to a prospect that already exists (``existing`` its fields).

    ``existing`` is only consulted by ``addMissingFields``; the others may pass ``{}``.
    """
    if action in ("overwrite", "upsert"):  # upsert: create or update, so it overwrites
        return given
    if action == "addMissingFields":
        return {k: v for k, v in given.items() if not existing.get(k)}
    return {}  # noUpdate: an existing prospect is left exactly as it was
