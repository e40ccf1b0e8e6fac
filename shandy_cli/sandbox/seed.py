"""The account every sandbox starts with: its fields and sequences.

Ids are fixed so tests, docs and examples can name them (``--step StepA1``). Two
sequence titles share the prefix "Outbound Q4" on purpose: a lookup by name must
prefer the exact title and call a mere prefix match ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM_FIELD_TYPE = "text"

# (id, label) of the fields every Saleshandy account has; the import calls them by label.
SYSTEM_FIELDS: tuple[tuple[str, str], ...] = (
    ("fldFirstName", "First Name"),
    ("fldLastName", "Last Name"),
    ("fldEmail", "Email"),
    ("fldPhone", "Phone Number"),
    ("fldCompany", "Company"),
    ("fldJobTitle", "Job Title"),
    ("fldWebsite", "Website"),
    ("fldLinkedIn", "LinkedIn URL"),
    ("fldCity", "City"),
    ("fldState", "State"),
    ("fldCountry", "Country"),
)

# (id, label, fieldType) of the custom fields the seeded account already has.
CUSTOM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("fldLeadSource", "Lead Source", "text"),
    ("fldIndustry", "Industry", "dropdown"),
)

FIELD_TYPES = frozenset({"text", "number", "date", "long-text", "dropdown", "currency"})

EMAIL_LABEL = "Email"


@dataclass(frozen=True)
class SeedSequence:
    id: str
    title: str
    active: bool
    steps: tuple[tuple[str, str], ...]  # (step id, step name)


SEQUENCES: tuple[SeedSequence, ...] = (
    SeedSequence(
        "seqOutQ4", "Outbound Q4", True, (("StepA1", "Intro email"), ("StepA2", "Follow-up"))
    ),
    SeedSequence("seqWebinar", "Webinar Follow-up", False, (("StepW1", "Thanks for attending"),)),
    SeedSequence("seqOutQ4E", "Outbound Q4 EMEA", True, (("StepE1", "Intro email (EMEA)"),)),
)
