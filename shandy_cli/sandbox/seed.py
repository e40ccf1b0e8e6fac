"""The account every sandbox starts with: its fields and sequences.

Ids are fixed so tests, docs and examples can name them (``--step StepA1``). Two
sequence titles share the prefix "Outbound Q4" on purpose: a lookup by name must
prefer the exact title and call a mere prefix match ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM_FIELD_TYPE = "text"

# (id, label) of the fields every Saleshandy account has, as live clients list them; the
# import calls them by label. No "LinkedIn URL": the live system field is "LinkedIn".
SYSTEM_FIELDS: tuple[tuple[str, str], ...] = (
    ("fldFirstName", "First Name"),
    ("fldLastName", "Last Name"),
    ("fldEmail", "Email"),
    ("fldCompany", "Company"),
    ("fldPhone", "Phone Number"),
    ("fldJobTitle", "Job Title"),
    ("fldCity", "City"),
    ("fldCountry", "Country"),
    ("fldLinkedIn", "LinkedIn"),
)

# (id, label, fieldType) of the custom fields the seeded account already has. Website
# and State are custom here (examples/leads.csv has a Website column); Deal Size and
# Annual Revenue are typed, so a non-number in them fails its row.
CUSTOM_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("fldWebsite", "Website", "text"),
    ("fldState", "State", "text"),
    ("fldLeadSource", "Lead Source", "text"),
    ("fldIndustry", "Industry", "dropdown"),
    ("fldDealSize", "Deal Size", "number"),
    ("fldRevenue", "Annual Revenue", "currency"),
)

FIELD_TYPES = frozenset({"text", "number", "date", "long-text", "dropdown", "currency"})
NUMERIC_TYPES = frozenset({"number", "currency"})  # a row's value must parse as a number

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


def generated_sequences(count: int, titles: tuple[str, ...] = ()) -> tuple[SeedSequence, ...]:
    """Extra sequences for paging tests, in listing order: the named ones, then ``count`` more.

    Named: ``seqExtra01`` titled ``titles[0]`` (step ``StepX01``), ...; generated:
    ``seqGen001`` "Campaign 001" (step ``StepG001`` "Step 1"), ... All are listed
    before the fixed ``SEQUENCES``, so ``titles=("Outbound Q4",)`` with ``count=150``
    puts one "Outbound Q4" on page 1 and the seeded one on page 2 (of 100).
    """
    named = tuple(
        SeedSequence(f"seqExtra{n:02d}", title, True, ((f"StepX{n:02d}", "Step 1"),))
        for n, title in enumerate(titles, start=1)
    )
    numbered = tuple(
        SeedSequence(f"seqGen{n:03d}", f"Campaign {n:03d}", True, ((f"StepG{n:03d}", "Step 1"),))
        for n in range(1, count + 1)
    )
    return named + numbered
