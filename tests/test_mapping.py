"""Mapping: headers to field labels, flags, mapping files, and the errors that say how to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shandy_cli.errors import InputError
from shandy_cli.pipeline.mapping import (
    ALIASES,
    build_mapping,
    load_mapping_file,
    normalize_header,
    parse_pairs,
)
from shandy_cli.pipeline.run import SYSTEM_LABELS

LABELS = [
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Company",
    "Job Title",
    "Website",
    "LinkedIn",
    "City",
    "State",
    "Country",
    "Lead Source",
]


def targets(columns: list[str], labels: list[str] = LABELS, **kw: object) -> list[str | None]:
    return build_mapping(columns, labels, **kw).targets  # type: ignore[arg-type]


def error(columns: list[str], labels: list[str] = LABELS, **kw: object) -> str:
    with pytest.raises(InputError) as err:
        build_mapping(columns, labels, **kw)  # type: ignore[arg-type]
    assert err.value.exit_code == 2
    return str(err.value)


# ---------------------------------------------------------------- normalize_header


@pytest.mark.parametrize(
    "header",
    ["First_Name", "first name", "FirstName", " FIRST-NAME ", "first.name:", "\ufeffFirst Name"],
)
def test_normalize_header_ignores_case_spaces_and_punctuation(header: str) -> None:
    assert normalize_header(header) == "firstname"


@given(st.text())
def test_normalize_header_is_idempotent_and_alphanumeric(text: str) -> None:
    once = normalize_header(text)
    assert normalize_header(once) == once
    assert all(ch.isalnum() for ch in once)


def test_aliases_are_normalized_keys() -> None:
    assert all(normalize_header(alias) == alias for alias in ALIASES)


# ---------------------------------------------------------------- automatic matching


@pytest.mark.parametrize(
    ("header", "label"),
    [
        ("first_name", "First Name"),
        ("FIRSTNAME", "First Name"),
        ("Last-Name", "Last Name"),
        ("e-mail", "Email"),
        ("Email Address", "Email"),
        ("Work Email", "Email"),
        ("mail", "Email"),
        ("Company Name", "Company"),
        ("Organization", "Company"),
        ("organisation", "Company"),
        ("Account Name", "Company"),
        ("Title", "Job Title"),
        ("Position", "Job Title"),
        ("role", "Job Title"),
        ("Phone", "Phone Number"),
        ("Mobile", "Phone Number"),
        ("Telephone", "Phone Number"),
        ("Given Name", "First Name"),
        ("fname", "First Name"),
        ("Surname", "Last Name"),
        ("Family Name", "Last Name"),
        ("URL", "Website"),
        ("Company Website", "Website"),
        ("Domain", "Website"),
        ("LinkedIn", "LinkedIn"),
        ("LinkedIn URL", "LinkedIn"),
        ("linkedin_url", "LinkedIn"),
        ("LINKEDIN-URL", "LinkedIn"),
        ("linkedin profile", "LinkedIn"),
        ("LinkedIn Profile URL", "LinkedIn"),
        ("linkedin link", "LinkedIn"),
        ("Person Linkedin Url", "LinkedIn"),
        ("Town", "City"),
        ("Province", "State"),
        ("Region", "State"),
        ("country", "Country"),
        ("lead_source", "Lead Source"),  # a custom label, matched by name
    ],
)
def test_headers_match_labels_by_name_then_alias(header: str, label: str) -> None:
    assert targets(["Email" if label != "Email" else "x", header], on_unknown="ignore")[1] == label


def test_headers_are_trimmed_of_whitespace_and_bom() -> None:
    assert targets(["\ufeff Email ", "  First Name\t"]) == ["Email", "First Name"]


def test_alias_applies_only_when_the_account_has_its_label() -> None:
    labels = [label for label in LABELS if label != "LinkedIn"]
    mapping = build_mapping(["Email", "LinkedIn URL"], labels, on_unknown="ignore")
    assert mapping.targets == ["Email", None]
    assert mapping.unknown == ["LinkedIn URL"]


@pytest.mark.parametrize(
    ("header", "label"),
    [
        ("LinkedIn URL", "LinkedIn URL"),  # the custom field, spelled exactly
        ("linkedin_url", "LinkedIn URL"),  # ... or normalized: still a name, not an alias
        ("LinkedIn", "LinkedIn"),
        ("linkedin profile", "LinkedIn"),  # no field has this name: the alias decides
    ],
)
def test_a_custom_field_named_like_an_alias_wins_over_the_alias(header: str, label: str) -> None:
    # The live system field is "LinkedIn"; an account may also have made "LinkedIn URL".
    labels = [*LABELS, "LinkedIn URL"]
    assert targets(["Email", header], labels)[1] == label


def test_system_labels_of_a_keyless_dry_run_are_the_confirmed_list() -> None:
    assert SYSTEM_LABELS == [
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
    # Exports that say "LinkedIn URL" still map without a key.
    assert targets(["Email", "LinkedIn URL"], SYSTEM_LABELS) == ["Email", "LinkedIn"]


def test_a_label_named_like_the_header_beats_an_alias() -> None:
    assert targets(["Email", "mobile"], [*LABELS, "Mobile"]) == ["Email", "Mobile"]


def test_labels_keep_the_accounts_spelling() -> None:
    assert targets(["EMAIL", "job title"], ["email", "Job title"]) == ["email", "Job title"]


# ---------------------------------------------------------------- explicit mapping


def test_explicit_mapping_wins_over_names_and_aliases() -> None:
    mapping = build_mapping(
        ["Email", "Title", "Org"],
        LABELS,
        explicit={"Title": "Lead Source", "Org": "company"},
    )
    assert mapping.targets == ["Email", "Lead Source", "Company"]


def test_explicit_mapping_matches_exact_name_before_normalized() -> None:
    columns = ["Email", "Full-Name", "full name"]
    exact = build_mapping(
        columns, LABELS, explicit={"full name": "First Name"}, on_unknown="ignore"
    )
    assert exact.targets == ["Email", None, "First Name"]
    # No column is called "fullname" exactly, so it names every column that normalizes so.
    loose = build_mapping(columns, LABELS, explicit={"fullname": "First Name"})
    assert loose.targets == ["Email", "First Name", "First Name"]


def test_explicit_dash_or_empty_drops_a_column() -> None:
    mapping = build_mapping(["Email", "Notes", "Junk"], LABELS, explicit={"Notes": "-", "Junk": ""})
    assert mapping.targets == ["Email", None, None]
    assert mapping.unknown == [] and mapping.to_create == []


def test_explicit_target_must_exist_and_the_error_suggests_labels() -> None:
    message = error(["Email", "Org"], explicit={"Org": "Compnay"}, file="leads.csv")
    assert message.startswith("leads.csv: ")
    assert "'Compnay'" in message and "closest: Company" in message


def test_explicit_column_missing_from_the_file_is_an_error() -> None:
    message = error(["Email", "Company Name"], explicit={"Company Nme": "Company"})
    assert "'Company Nme'" in message and "'Company Name'" in message


def test_one_column_mapped_two_ways_is_an_error() -> None:
    message = error(["Email", "Org Name"], explicit={"Org Name": "Company", "orgname": "City"})
    assert "column 'Org Name' is mapped twice" in message and "'orgname'" in message


def test_explicit_mapping_shadows_an_automatic_match() -> None:
    mapping = build_mapping(["Email", "Work Email"], LABELS, explicit={"Work Email": "Email"})
    assert mapping.targets == [None, "Email"]
    assert mapping.shadowed == ["Email"]
    assert mapping.email_index == 1


def test_columns_explicitly_mapped_to_one_label_coalesce_first_non_empty() -> None:
    mapping = build_mapping(
        ["Work Email", "Personal Email"],
        LABELS,
        explicit={"Work Email": "Email", "Personal Email": "Email"},
    )
    assert mapping.targets == ["Email", "Email"]
    assert mapping.prospect(["", "me@home.org"]) == {"Email": "me@home.org"}
    assert mapping.prospect(["me@work.com", "me@home.org"]) == {"Email": "me@work.com"}


# ---------------------------------------------------------------- conflicts and required columns


def test_two_columns_matching_one_label_name_both() -> None:
    message = error(["Email", "Company", "Organization"])
    assert "'Company' (column 2)" in message and "'Organization' (column 3)" in message
    assert "both map to 'Company'" in message and "--map" in message


def test_duplicate_headers_conflict_too() -> None:
    message = error(["Email", "City", "city"])
    assert "column 2" in message and "column 3" in message


def test_no_email_column_is_an_error_listing_the_columns() -> None:
    message = error(["First Name", "Company"])
    assert "no column maps to Email" in message
    assert "'First Name'" in message and "'Company'" in message


# ---------------------------------------------------------------- unknown columns


def test_unknown_columns_stop_with_one_error_naming_each_and_closest_labels() -> None:
    message = error(["Email", "Compny", "Lead Src", "xyzzy"], file="leads.csv")
    assert message.startswith("leads.csv: 3 column(s) match no field label")
    lines = message.splitlines()
    assert any("'Compny'" in line and "Company" in line for line in lines)
    assert any("'Lead Src'" in line and "Lead Source" in line for line in lines)
    assert any("'xyzzy'" in line and "no close label" in line for line in lines)
    assert '--map "Column=Field Label"' in message
    assert "--on-unknown-column ignore" in message and "create" in message


def test_blank_headers_are_named_by_position() -> None:
    assert "column 2 (blank header)" in error(["Email", ""])


def test_ignore_drops_unknown_columns_and_records_them() -> None:
    mapping = build_mapping(["Email", "Notes", "Score"], LABELS, on_unknown="ignore")
    assert mapping.targets == ["Email", None, None]
    assert mapping.unknown == ["Notes", "Score"]
    assert mapping.prospect(["a@b.co", "hello", "7"]) == {"Email": "a@b.co"}


def test_create_maps_unknown_columns_to_their_trimmed_names() -> None:
    mapping = build_mapping(["Email", " Deal Size "], LABELS, on_unknown="create")
    assert mapping.targets == ["Email", "Deal Size"]
    assert mapping.to_create == ["Deal Size"] and mapping.unknown == []
    assert mapping.prospect(["a@b.co", " 5k "]) == {"Email": "a@b.co", "Deal Size": "5k"}


def test_create_refuses_two_columns_that_would_be_one_field() -> None:
    assert "same field" in error(["Email", "Deal Size", "deal_size"], on_unknown="create")


def test_create_refuses_a_column_without_a_name() -> None:
    assert "no usable name" in error(["Email", " "], on_unknown="create")


def test_unknown_policy_must_be_known() -> None:
    assert "--on-unknown-column" in error(["Email"], on_unknown="maybe")


# ---------------------------------------------------------------- constants and prospects


def test_prospect_trims_drops_empties_and_pads_ragged_rows() -> None:
    mapping = build_mapping(["Email", "First Name", "Company"], LABELS)
    assert mapping.prospect([" a@b.co ", "  ", "Acme\t"]) == {"Email": "a@b.co", "Company": "Acme"}
    assert mapping.prospect(["a@b.co"]) == {"Email": "a@b.co"}
    assert mapping.prospect([]) == {}


def test_constants_use_the_accounts_spelling_and_override_row_values() -> None:
    mapping = build_mapping(
        ["Email", "Lead Source"], LABELS, constants={"lead source": " Webinar ", "City": "Oslo"}
    )
    assert mapping.constants == {"Lead Source": "Webinar", "City": "Oslo"}
    assert mapping.prospect(["a@b.co", "Referral"]) == {
        "Email": "a@b.co",
        "Lead Source": "Webinar",
        "City": "Oslo",
    }


@pytest.mark.parametrize(
    ("constants", "expected"),
    [
        ({"Leed Source": "x"}, "closest: Lead Source"),
        ({"Email": "a@b.co"}, "cannot set Email"),
        ({"City": "  "}, "empty value"),
    ],
)
def test_bad_constants(constants: dict[str, str], expected: str) -> None:
    assert expected in error(["Email"], constants=constants)


TYPES = {"Deal Size": "number", "Price": "currency", "Lead Source": "text"}


@pytest.mark.parametrize(
    ("constants", "expected"),
    [
        ({"Deal Size": "abc"}, "--set 'Deal Size': \"Deal Size\" is a number field: 'abc'"),
        ({"deal size": "1,000"}, "'1,000' is not a number"),
        ({"Price": "$5"}, "\"Price\" is a currency field: '$5' is not a number"),
    ],
)
def test_a_constant_for_a_number_field_must_be_a_number(
    constants: dict[str, str], expected: str
) -> None:
    labels = [*LABELS, "Deal Size", "Price"]
    message = error(["Email"], labels, constants=constants, field_types=TYPES)
    assert expected in message and "nothing was sent" in message


def test_number_constants_pass_and_columns_feeding_number_fields_are_typed() -> None:
    labels = [*LABELS, "Deal Size", "Price"]
    mapping = build_mapping(
        ["Email", "deal_size", "Lead Source"],
        labels,
        constants={"Price": " 9.99 "},
        field_types=TYPES,
    )
    assert mapping.constants == {"Price": "9.99"}
    # Only what columns feed is checked row by row; the constant was checked above.
    assert mapping.typed == {"Deal Size": "number"}
    assert build_mapping(["Email", "Deal Size"], labels).typed == {}  # no types known


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=6))
def test_prospect_never_has_empty_or_untrimmed_values(values: list[str]) -> None:
    mapping = build_mapping(["Email", "First Name", "City"], LABELS)
    prospect = mapping.prospect(values)
    assert all(v and v == v.strip() for v in prospect.values())
    assert set(prospect) <= {"Email", "First Name", "City"}


# ---------------------------------------------------------------- --map / --set parsing


def test_parse_pairs_splits_at_the_first_equals_and_trims() -> None:
    assert parse_pairs([" Org = Company", "Site=https://x.io/?a=b"], "--set") == {
        "Org": "Company",
        "Site": "https://x.io/?a=b",
    }
    assert parse_pairs(["Notes=-", "Junk="], "--map") == {"Notes": "-", "Junk": ""}


def test_parse_pairs_without_equals_names_flag_and_item() -> None:
    with pytest.raises(InputError) as err:
        parse_pairs(["Email=Email", "Company"], "--map")
    assert "--map" in str(err.value) and "'Company'" in str(err.value)


def test_parse_pairs_refuses_one_key_with_two_values() -> None:
    with pytest.raises(InputError, match="twice"):
        parse_pairs(["Org=Company", "Org=City"], "--map")
    assert parse_pairs(["Org=Company", "Org=Company"], "--map") == {"Org": "Company"}


# ---------------------------------------------------------------- mapping files


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_toml_mapping_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "map.toml",
        '[columns]\n"Org Name" = "Company"\nNotes = "-"\n\n[set]\n"Lead Source" = "Fair"\n',
    )
    assert load_mapping_file(path) == (
        {"Org Name": "Company", "Notes": "-"},
        {"Lead Source": "Fair"},
    )


def test_json_mapping_file_structured_and_flat(tmp_path: Path) -> None:
    structured = write(
        tmp_path, "a.json", '{"columns": {"Org": "Company"}, "set": {"City": "Rome"}}'
    )
    assert load_mapping_file(structured) == ({"Org": "Company"}, {"City": "Rome"})
    flat = write(tmp_path, "b.json", '\ufeff{"Org": "Company", "Notes": null, "columns": "City"}')
    assert load_mapping_file(flat) == ({"Org": "Company", "Notes": "-", "columns": "City"}, {})


def test_mapping_file_extension_is_sniffed_when_unknown(tmp_path: Path) -> None:
    assert load_mapping_file(write(tmp_path, "m.map", '{"Org": "Company"}'))[0] == {
        "Org": "Company"
    }
    assert load_mapping_file(write(tmp_path, "m.cfg", 'Org = "Company"'))[0] == {"Org": "Company"}


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("m.json", '{"Org": "Company",}', "not valid JSON"),
        ("m.toml", "[columns\nOrg = 1", "not valid TOML"),
        ("m.json", '["Org", "Company"]', "one object"),
        ("m.json", '{"columns": {"Org": ["Company"]}}', "must be a string"),
        ("m.json", '{"columns": {"Org": "Company"}, "constants": {}}', "'constants'"),
        ("m.toml", "[columns]\nOrg = true", "must be a string"),
        ("m.json", '{"columns": {"Org": "Company"}, "set": "City=Rome"}', "'set' must be a table"),
    ],
)
def test_bad_mapping_files_name_the_file_and_reason(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(InputError) as err:
        load_mapping_file(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


def test_missing_or_undecodable_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_mapping_file(tmp_path / "absent.toml")
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"Sociét\xe9": "Company"}'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        load_mapping_file(bad)


def test_mapping_file_feeds_build_mapping(tmp_path: Path) -> None:
    columns, constants = load_mapping_file(
        write(tmp_path, "m.toml", '[columns]\nOrg = "company"\n[set]\n"lead source" = "Fair"')
    )
    mapping = build_mapping(["Email", "Org"], LABELS, explicit=columns, constants=constants)
    assert mapping.prospect(["a@b.co", "Acme"]) == {
        "Email": "a@b.co",
        "Company": "Acme",
        "Lead Source": "Fair",
    }
