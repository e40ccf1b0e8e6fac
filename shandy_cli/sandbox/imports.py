"""What the import endpoints accept and what they do with each prospect, free of HTTP and SQL.

Validation mirrors the real API's (NestJS ``class-validator`` with ``whitelist`` and
``forbidNonWhitelisted``): the whole request is refused with 400 for a malformed body,
while a bad *row* is accepted and shows up later in the import's error report.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from shandy_cli.sandbox.seed import EMAIL_LABEL

MAX_PROSPECTS = 100_000
MAX_BODY_BYTES = 90_000_000
CONFLICT_ACTIONS = ("overwrite", "noUpdate", "addMissingFields")

REASON_MISSING_EMAIL = "Email is required"
REASON_INVALID_EMAIL = "Invalid email"
REASON_DUPLICATE = "Duplicate email in file"
REASON_IN_STEP = "Prospect already exists in this step"

# Deliberately plain: one @, no spaces, a dotted domain ending in a 2+ letter TLD.
_EMAIL_RE = re.compile(r"[^@\s]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}")

_MAX_MESSAGES = 10  # a 400 names at most this many problems, like a readable API would


class Rejected(Exception):
    """The request is refused as a whole; ``status`` and ``message`` are the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ImportRequest:
    prospects: list[dict[str, str]]
    step_id: str | None
    conflict_action: str
    verify: bool
    tags: list[str]


def parse_import(
    body: Any, *, with_step: bool, labels: Collection[str], step_ids: Collection[str]
) -> ImportRequest:
    """Validate an import body the way the API does, or raise ``Rejected`` naming the problem."""
    if not isinstance(body, dict):
        raise Rejected(400, "Request body must be a JSON object")
    allowed = {"prospectList", "verifyProspects", "conflictAction", "tags"}
    if with_step:
        allowed.add("stepId")
    problems = [f"property {key} should not exist" for key in body if key not in allowed]
    problems += _top_level_problems(body, with_step, step_ids)
    if problems:
        raise Rejected(400, "; ".join(problems[:_MAX_MESSAGES]))
    prospects = body["prospectList"]
    _check_prospects(prospects, labels)
    return ImportRequest(
        prospects=prospects,
        step_id=body.get("stepId"),
        conflict_action=body["conflictAction"],
        verify=body["verifyProspects"],
        tags=body.get("tags", []),
    )


def _top_level_problems(
    body: dict[str, Any], with_step: bool, step_ids: Collection[str]
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
    if with_step:
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


def classify(prospects: Iterable[dict[str, str]]) -> Classified:
    """Sort rows into accepted and failed; within one request the first row of an email wins."""
    result = Classified()
    for index, prospect in enumerate(prospects):
        email = prospect.get(EMAIL_LABEL, "")
        if not email:
            result.failures.append((index, prospect, REASON_MISSING_EMAIL))
        elif not _EMAIL_RE.fullmatch(email):
            result.failures.append((index, prospect, REASON_INVALID_EMAIL))
        elif (key := email.lower()) in result.accepted:
            result.failures.append((index, prospect, REASON_DUPLICATE))
        else:
            result.accepted[key] = (index, prospect)
    return result


def fields_to_write(given: dict[str, str], action: str, existing: dict[str, str]) -> dict[str, str]:
    """What ``conflictAction`` writes to a prospect that already exists (``existing`` its fields).

    ``existing`` is only consulted by ``addMissingFields``; the others may pass ``{}``.
    """
    if action == "overwrite":
        return given
    if action == "addMissingFields":
        return {k: v for k, v in given.items() if not existing.get(k)}
    return {}  # noUpdate: an existing prospect is left exactly as it was
