"""Validation: plausible emails, case-insensitive dedupe (first wins), row problems first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shandy_cli.pipeline.validation import (
    FAST_EMAIL,
    MAX_EMAIL,
    MAX_LOCAL,
    Validator,
    Verdict,
    email_key,
    field_value_problem,
    is_number,
    is_plausible_email,
)

VALID = [
    "a@b.co",
    "jon@example.com",
    "Jon.Smith@Example.COM",
    "john.doe+tag@sub.example.co.uk",
    "o'brien@example.ie",
    "x_y-z%1@my-domain.io",
    "user@xn--80ak6aa92e.xn--p1ai",  # punycode IDN
    "用户@例子.广告",  # unicode IDN
    "josé@correo.españa.es",
    "a@" + "b" * 63 + ".com",  # longest domain label
    "l" * 64 + "@example.com",  # longest local part
    "a@1example.com",
]

INVALID = [
    "",
    "plainaddress",
    "@example.com",
    "jon@",
    "jon@example",  # no dot
    "jon@example.c",  # one-letter TLD
    "jon@example.c0m",  # digits in TLD
    "jon@@example.com",
    "jon@ex@ample.com",
    "jon smith@example.com",
    "jon@exa mple.com",
    " jon@example.com",  # the validator trims; the predicate does not
    "Jon <jon@example.com>",
    "<jon@example.com>",
    "jon@example.com,ann@example.com",
    "jon@example.com;ann@example.com",
    ".jon@example.com",
    "jon.@example.com",
    "jo..n@example.com",
    "jon@-example.com",
    "jon@example-.com",
    "jon@exa_mple.com",
    "jon@example..com",
    "jon@example.com.",
    "jon@.example.com",
    "jon@[192.168.0.1]",
    "jon@192.168.0.1",
    '"jon"@example.com',
    "jon@example.com\n",
    "jon\x00@example.com",
    "mailto:jon@example.com",
    "a@" + "b" * 64 + ".com",  # domain label too long
    "l" * 65 + "@example.com",  # local part too long
    "a" * 64 + "@" + ("b" * 60 + ".") * 3 + "c" * 10 + ".com",  # over 254 in all
]


@pytest.mark.parametrize("email", VALID)
def test_plausible_emails(email: str) -> None:
    assert is_plausible_email(email)


@pytest.mark.parametrize("email", INVALID)
def test_implausible_emails(email: str) -> None:
    assert not is_plausible_email(email)


def fast_says(emails: list[str]) -> list[bool]:
    """The columnar twin of is_plausible_email, as the block encoder asks it (polars)."""
    import polars as pl

    email = pl.col("e")
    fast = (
        email.str.contains(FAST_EMAIL)
        & (email.str.len_bytes() <= MAX_EMAIL)
        & (email.str.find("@", literal=True) <= MAX_LOCAL)
    )
    frame = pl.DataFrame({"e": emails}, schema={"e": pl.String})
    return frame.select(fast.fill_null(False)).to_series().to_list()


ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=80)
ADDRESSY = st.builds(
    "{}@{}.{}".format,
    st.text(alphabet=st.sampled_from("aZ9._-+'\"@ ,"), min_size=0, max_size=6),
    st.text(alphabet=st.sampled_from("aZ9.-_"), min_size=0, max_size=6),
    st.text(alphabet=st.sampled_from("aZ9-xn"), min_size=0, max_size=5),
)


def test_the_columnar_email_pattern_agrees_on_the_examples() -> None:
    examples = [e for e in VALID + INVALID if e.isascii()]
    assert fast_says(examples) == [is_plausible_email(e) for e in examples]


@settings(max_examples=200, deadline=None)
@given(st.lists(ASCII | ADDRESSY, min_size=1, max_size=50))
def test_the_columnar_email_pattern_is_is_plausible_email_for_ascii(emails: list[str]) -> None:
    assert fast_says(emails) == [is_plausible_email(e) for e in emails]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_predicate_never_raises_and_caps_length(text: str) -> None:
    if is_plausible_email(text):
        assert len(text) <= 254 and text.count("@") == 1 and not any(c.isspace() for c in text)


def test_missing_and_invalid_email_reasons() -> None:
    v = Validator()
    assert v.check({"First Name": "Jo"}, file="f.csv", row=1) == "missing email"
    assert v.check({"Email": "   "}, file="f.csv", row=2) == "missing email"
    assert v.check({"Email": "nope"}, file="f.csv", row=3) == "invalid email 'nope'"
    assert v.seen() == 0


def test_long_invalid_email_is_shortened_in_the_reason() -> None:
    reason = Validator().check({"Email": "x" * 5000}, file="f", row=1)
    assert reason is not None and reason.startswith("invalid email 'xxx") and len(reason) < 120


def test_duplicates_are_case_insensitive_and_the_first_wins() -> None:
    v = Validator()
    assert v.check({"Email": "Jon@Example.com"}, file="a.csv", row=3) is None
    assert v.check({"Email": "ann@example.com"}, file="a.csv", row=4) is None
    assert v.check({"Email": "jon@example.COM"}, file="b.csv", row=9) == (
        "duplicate email 'jon@example.COM' (first seen in a.csv row 3)"
    )
    assert v.check({"Email": " ANN@EXAMPLE.COM "}, file="b.csv", row=10) == (
        "duplicate email 'ANN@EXAMPLE.COM' (first seen in a.csv row 4)"
    )
    assert v.seen() == 2


def test_row_problem_takes_precedence_and_does_not_claim_the_email() -> None:
    v = Validator()
    problem = "row has 5 values but the header has 3 columns"
    assert v.check({"Email": "jon@example.com"}, file="f", row=1, problem=problem) == problem
    assert v.check({}, file="f", row=2, problem="unreadable") == "unreadable"
    # The refused row did not register its address: the next one is the first.
    assert v.check({"Email": "jon@example.com"}, file="f", row=3) is None
    assert v.check({"Email": "jon@example.com"}, file="f", row=4, problem="bad") == "bad"


def test_invalid_rows_do_not_register_for_dedupe() -> None:
    v = Validator()
    assert v.check({"Email": "jon@example"}, file="f", row=1) is not None
    assert v.check({"Email": "jon@example.com"}, file="f", row=2) is None


def test_custom_email_label_and_verdict() -> None:
    v = Validator(email_label="E-Mail")
    assert v.verdict({"E-Mail": "a@b.co"}, file="f", row=1) == Verdict(ok=True, reason=None)
    assert v.verdict({"Email": "a@b.co"}, file="f", row=2) == Verdict(False, "missing email")


def test_many_addresses_across_files_remember_where_they_were_first_seen() -> None:
    # Enough entries to grow the table several times.
    v = Validator()
    count = 30_000
    for n in range(count):
        assert v.check({"Email": f"p{n}@example.com"}, file=f"f{n % 7}.csv", row=n + 1) is None
    assert v.seen() == count
    for n in range(0, count, 997):
        reason = v.check({"Email": f"P{n}@EXAMPLE.COM"}, file="late.csv", row=1)
        assert reason is not None and reason.endswith(f"(first seen in f{n % 7}.csv row {n + 1})")
    assert v.seen() == count


def test_email_key_ignores_case_and_surrounding_space() -> None:
    assert email_key(" Jon@Example.COM ") == email_key("jon@example.com") != 0
    assert email_key("jon@example.com") != email_key("jon@example.co")


local_parts = st.sampled_from(["jon", "Jon", "JON", "ann", "a.b", "x+y", "bad..x", ""])
domains = st.sampled_from(["example.com", "EXAMPLE.com", "ex.io", "nodot", "b.c"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(local_parts, domains, st.booleans()), max_size=40))
def test_accepted_equals_distinct_valid_lowercased_emails(
    rows: list[tuple[str, str, bool]],
) -> None:
    v = Validator()
    accepted = []
    for n, (local, domain, problem) in enumerate(rows, 1):
        email = f"{local}@{domain}"
        reason = v.check({"Email": email}, file="f", row=n, problem="bad row" if problem else None)
        if reason is None:
            accepted.append(email)
    expected = {
        f"{local}@{domain}".lower()
        for local, domain, problem in rows
        if not problem and is_plausible_email(f"{local}@{domain}")
    }
    assert len(accepted) == len(expected) == v.seen()
    assert {e.lower() for e in accepted} == expected


_WHERE = st.one_of(
    st.integers(min_value=1, max_value=1000),  # fits the table's 32-bit values
    st.builds(
        lambda f, r: (f << 40) | r,
        st.integers(min_value=0, max_value=300),  # file indexes past 255 ...
        st.integers(min_value=1, max_value=1 << 26),  # ... and rows past 2**24 widen it
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(
        st.tuples(
            st.booleans(),  # vectorised or one by one
            st.lists(st.tuples(st.integers(min_value=1, max_value=60), _WHERE), max_size=40),
        ),
        max_size=8,
    )
)
def test_digest_table_is_a_first_wins_dict(
    batches: list[tuple[bool, list[tuple[int, int]]]],
) -> None:
    """Per-row and vectorised calls, narrow and widened values: the same as a dict."""
    import numpy as np

    from shandy_cli.pipeline.validation import _DigestTable

    table, reference = _DigestTable(capacity=8), {}
    for vectorised, pairs in batches:
        want = []
        for key, where in pairs:
            want.append(reference.get(key))
            reference.setdefault(key, where)
        if vectorised:
            keys = np.array([k for k, _ in pairs], np.uint64)
            values = np.array([w for _, w in pairs], np.uint64)
            got = [int(v) or None for v in table.setdefault_many(keys, values)]
        else:
            got = [table.setdefault(key, where) for key, where in pairs]
        assert got == want
    assert table.size == len(reference)


# ---------------------------------------------------------------- number and currency fields

NUMBERS = ["0", "12", "-7", "3.25", "-0.5", "007", " 42 ", "12345678901234567890.0001"]
NOT_NUMBERS = [
    "",
    "twelve",
    "1,000",
    "1 000",
    "$12",
    "12€",
    "1e5",
    "+5",
    ".5",
    "5.",
    "1.2.3",
    "--1",
    "0x1F",
    "NaN",
    "inf",
    "١٢",
    "\uff11\uff12",
    "12\n3",
    "- 1",
]


@pytest.mark.parametrize("value", NUMBERS)
def test_numbers_are_accepted(value: str) -> None:
    assert is_number(value)


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_anything_else_is_not_a_number(value: str) -> None:
    assert not is_number(value)


@given(st.integers(), st.integers(min_value=0, max_value=10**6), st.booleans())
def test_plain_decimals_are_numbers(whole: int, frac: int, dotted: bool) -> None:
    text = f"{whole}.{frac}" if dotted else str(whole)
    assert is_number(text)


@given(st.text(max_size=12))
def test_a_number_is_ascii_digits_an_optional_minus_and_one_inner_dot(text: str) -> None:
    if is_number(text):
        core = text.strip().removeprefix("-")
        whole, _, frac = core.partition(".")
        assert whole and whole.isascii() and whole.isdigit()
        assert frac == "" or (frac.isascii() and frac.isdigit())
        assert "." not in frac
        float(text)  # whatever reads it as a number agrees


def test_a_value_that_is_not_a_number_is_refused_before_dedupe() -> None:
    v = Validator()
    typed = {"Deal Size": "number", "Price": "currency"}
    assert v.check({"Email": "a@b.co", "Deal Size": "twelve"}, file="f", row=1, typed=typed) == (
        "\"Deal Size\" is a number field: 'twelve' is not a number"
    )
    assert v.check({"Email": "a@b.co", "Price": "$5"}, file="f", row=2, typed=typed) == (
        "\"Price\" is a currency field: '$5' is not a number"
    )
    # The email problem comes first; a refused row does not claim its address.
    assert v.check({"Deal Size": "x"}, file="f", row=3, typed=typed) == "missing email"
    assert v.check({"Email": "a@b.co", "Deal Size": "12"}, file="f", row=4, typed=typed) is None
    assert v.check({"Email": "A@b.co"}, file="f", row=5, typed=typed).startswith("duplicate")


def test_other_field_types_are_not_checked() -> None:
    assert field_value_problem("Notes", "text", "twelve") is None
    assert field_value_problem("Notes", None, "twelve") is None
    assert field_value_problem("Deal Size", "number", "12.5") is None
