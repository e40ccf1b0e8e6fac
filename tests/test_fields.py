"""The account's fields as the run sees them: typed (number, currency) values checked
before sending, and the LinkedIn label -- over real HTTP to the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shandy_cli import ImportResult, SaleshandyClient, import_files
from shandy_cli.errors import InputError
from shandy_cli.sandbox import Sandbox
from tests.test_import import read_rows, write_csv

IMPORTS = ("/v1/sequences/prospects/import-with-field-name", "/v1/prospects/import-with-field-name")
NOT_A_NUMBER = '"Deal Size" is a number field: is not a number'  # the reasons' group


def create_field(sandbox: Sandbox, label: str, field_type: str) -> None:
    """The account has a ``field_type`` field ``label``: created unless it is seeded."""
    with SaleshandyClient(sandbox.url, "k") as client:
        have = {f["label"]: f.get("fieldType") for f in client.list_fields(True)}
        if label not in have:
            currency = {"currencyCode": "USD"} if field_type == "currency" else None
            client.create_field(label, field_type, metadata=currency)
    assert have.get(label, field_type) == field_type


def run(sandbox: Sandbox, tmp_path: Path, files: list[Path], **options: Any) -> ImportResult:
    options.setdefault("poll_interval", 0.05)
    options.setdefault("timeout", 30)
    with SaleshandyClient(sandbox.url, "k") as client:
        return import_files(
            [str(f) for f in files], client=client, state_dir=tmp_path / "state", **options
        )


def landed(sandbox: Sandbox) -> dict[str, dict[str, str]]:
    """Every prospect the sandbox holds: email -> its attributes."""
    with SaleshandyClient(sandbox.url, "k") as client:
        items = client.list_prospects(page_size=100)
    return {p["email"]: {a["key"]: a["value"] for a in p["attributes"]} for p in items}


def imports_sent(sandbox: Sandbox) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] == "POST" and r["path"] in IMPORTS)


# ---------------------------------------------------------------- number and currency fields


DEALS = [
    ["good1@example.com", "12", "9.99"],
    ["bad1@example.com", "twelve", ""],
    ["good2@example.com", " -3.5 ", ""],
    ["bad2@example.com", "1,000", "1"],
    ["empty@example.com", "", ""],
    ["bad3@example.com", "7", "$5"],
    ["bad1@example.com", "13", ""],  # the same person, corrected: sent (row 2 was never sent)
]


def test_values_that_are_not_numbers_are_rejected_here_and_never_sent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    create_field(sandbox, "Deal Size", "number")
    create_field(sandbox, "Price", "currency")
    src = write_csv(tmp_path / "deals.csv", ["Email", "Deal Size", "Price"], DEALS)
    result = run(sandbox, tmp_path, [src], step_id="StepA1", rejects=tmp_path / "rej.csv")

    assert result.completed and result.exit_code == 1
    assert (result.rows_read, result.rows_submitted, result.rows_rejected) == (7, 4, 3)
    assert result.rows_read == result.rows_submitted + result.rows_rejected + result.rows_skipped
    rejects = read_rows(tmp_path / "rej.csv")
    assert [(r["_row"], r["Email"], r["_reason"]) for r in rejects] == [
        ("2", "bad1@example.com", "\"Deal Size\" is a number field: 'twelve' is not a number"),
        ("4", "bad2@example.com", "\"Deal Size\" is a number field: '1,000' is not a number"),
        ("6", "bad3@example.com", "\"Price\" is a currency field: '$5' is not a number"),
    ]
    assert all(r["_file"].endswith("deals.csv") for r in rejects)
    assert dict(result.reasons) == {
        NOT_A_NUMBER: 2,
        '"Price" is a currency field: is not a number': 1,
    }
    prospects = landed(sandbox)
    assert set(prospects) == {
        "good1@example.com", "good2@example.com", "empty@example.com", "bad1@example.com"
    }  # fmt: skip
    assert prospects["good1@example.com"] == {
        "Email": "good1@example.com", "Deal Size": "12", "Price": "9.99"
    }  # fmt: skip
    assert prospects["good2@example.com"]["Deal Size"] == "-3.5"  # trimmed, as sent
    assert "Deal Size" not in prospects["empty@example.com"]  # empty: left out, not refused
    assert prospects["bad1@example.com"]["Deal Size"] == "13"


def test_a_text_field_takes_any_value(sandbox: Sandbox, tmp_path: Path) -> None:
    create_field(sandbox, "Deal Notes", "text")
    src = write_csv(tmp_path / "t.csv", ["Email", "Deal Notes"], [["a@example.com", "twelve"]])
    result = run(sandbox, tmp_path, [src], step_id="StepA1")
    assert result.exit_code == 0 and result.rows_submitted == 1


def test_a_number_constant_that_is_not_a_number_stops_before_sending(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    create_field(sandbox, "Deal Size", "number")
    src = write_csv(tmp_path / "c.csv", ["Email"], [["a@example.com"]])
    with pytest.raises(InputError) as err:
        run(sandbox, tmp_path, [src], step_id="StepA1", constants={"Deal Size": "abc"})
    assert err.value.exit_code == 2
    assert "\"Deal Size\" is a number field: 'abc' is not a number" in str(err.value)
    assert imports_sent(sandbox) == 0
    ok = run(sandbox, tmp_path, [src], step_id="StepA1", constants={"Deal Size": "40"})
    assert ok.exit_code == 0 and landed(sandbox)["a@example.com"]["Deal Size"] == "40"


def test_cli_set_of_a_number_field_is_exit_2(sandbox: Sandbox, tmp_path: Path) -> None:
    create_field(sandbox, "Deal Size", "number")
    src = write_csv(tmp_path / "c.csv", ["Email"], [["a@example.com"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(
        SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY="k",
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "shandy_cli", "import", str(src), "--step", "StepA1",
         "--set", "Deal Size=abc"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "is not a number" in result.stderr and "Traceback" not in result.stderr
    assert imports_sent(sandbox) == 0


# ---------------------------------------------------------------- LinkedIn


def test_a_linkedin_url_column_lands_in_the_accounts_linkedin_field(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Holds whichever the account has: the live system "LinkedIn" (the header is its
    alias) or a field literally named "LinkedIn URL" (the header is its name)."""
    with SaleshandyClient(sandbox.url, "k") as client:
        labels = {f["label"] for f in client.list_fields(True)}
    expected = "LinkedIn URL" if "LinkedIn URL" in labels else "LinkedIn"
    assert expected in labels
    src = write_csv(
        tmp_path / "li.csv", ["Email", "LinkedIn URL"],
        [["li@example.com", "https://www.linkedin.com/in/someone"]],
    )  # fmt: skip
    result = run(sandbox, tmp_path, [src], step_id="StepA1")
    assert result.exit_code == 0
    attributes = landed(sandbox)["li@example.com"]
    assert attributes[expected] == "https://www.linkedin.com/in/someone"
