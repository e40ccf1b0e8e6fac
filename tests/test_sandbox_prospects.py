"""The sandbox keeps prospects per account and per sequence, as the live API does.

Every rule over real HTTP on loopback: one prospect per (account, email), compared
case-insensitively; the step import only adds prospects new to the sequence; the
account import updates fields per ``conflictAction`` and leaves memberships alone;
two keys never see each other's prospects. What a prospect holds is read back through
``GET /v1/prospects`` (``attributes``, ``steps``, ``tags``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from shandy_cli.sandbox import Sandbox
from tests.test_sandbox import (
    LIST_IMPORT,
    NO_LIMITS,
    REASON_IN_SEQUENCE,
    STATUS,
    import_and_wait,
    import_body,
    prospects_by_email,
    report_rows,
    submit,
    wait_done,
)

ANN = "ann@example.com"


@pytest.fixture
def start(sandbox_factory: Callable[..., Sandbox]) -> Callable[..., Sandbox]:
    """conftest's factory (0.05 s imports), with the rate limits off: these tests poll fast."""

    def started(**settings: Any) -> Sandbox:
        return sandbox_factory(**(NO_LIMITS | settings))

    return started


@pytest.fixture
def sandbox(start: Callable[..., Sandbox]) -> Sandbox:
    return start()


def client(sandbox: Sandbox, key: str = "key-one") -> httpx.Client:
    return httpx.Client(base_url=sandbox.url, headers={"x-api-key": key}, timeout=10)


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with client(sandbox) as one:
        yield one


def account_import(api: httpx.Client, prospects: list[dict[str, str]], **options: Any) -> dict:
    """``POST /v1/prospects/import-with-field-name`` (``step=...`` adds a stepId), completed."""
    response = api.post(LIST_IMPORT, json=import_body(prospects, **({"step": None} | options)))
    assert response.status_code == 201, response.text
    return wait_done(api, response.json()["payload"]["requestId"])


# -- the step import -------------------------------------------------------------------------


def test_a_step_import_creates_new_prospects_and_enrols_them(api: httpx.Client) -> None:
    rows = [{"Email": f"p{i}@example.com", "First Name": f"P{i}"} for i in range(3)]
    assert import_and_wait(api, rows, tags=["q4", "cold"])["reportURL"] is None
    assert prospects_by_email(api) == {
        f"p{i}@example.com": {
            "attrs": {"Email": f"p{i}@example.com", "First Name": f"P{i}"},
            "steps": ["StepA1"],
            "tags": ["cold", "q4"],
        }
        for i in range(3)
    }


@pytest.mark.parametrize("action", ["noUpdate", "overwrite", "upsert", "addMissingFields"])
def test_enrolled_rows_fail_and_keep_everything_while_new_rows_land(
    api: httpx.Client, action: str
) -> None:
    first = [{"Email": ANN, "First Name": "Ann"}, {"Email": "bob@example.com"}]
    import_and_wait(api, first, step="StepA2", tags=["q4"])
    again = [
        {"Email": "new@example.com", "First Name": "New"},
        {"Email": "Bob@Example.com", "First Name": "Bob", "City": "Oslo"},
        {"Email": ANN, "First Name": "Anna", "Job Title": "CTO"},
    ]
    status = import_and_wait(api, again, step="StepA1", conflictAction=action, tags=["vip"])
    assert report_rows(status) == [
        {"Email": "Bob@Example.com", "First Name": "Bob", "City": "Oslo", "Job Title": "",
         "Reason": REASON_IN_SEQUENCE},
        {"Email": ANN, "First Name": "Anna", "City": "", "Job Title": "CTO",
         "Reason": REASON_IN_SEQUENCE},
    ]  # fmt: skip
    assert prospects_by_email(api) == {
        ANN: {"attrs": {"Email": ANN, "First Name": "Ann"}, "steps": ["StepA2"], "tags": ["q4"]},
        "bob@example.com": {
            "attrs": {"Email": "bob@example.com"}, "steps": ["StepA2"], "tags": ["q4"]
        },
        "new@example.com": {
            "attrs": {"Email": "new@example.com", "First Name": "New"}, "steps": ["StepA1"],
            "tags": ["vip"],
        },
    }  # fmt: skip


KNOWN = {"Email": ANN, "First Name": "Ann", "Job Title": ""}
UPDATE = {"Email": ANN, "First Name": "Anna", "Job Title": "CTO", "City": "Oslo"}
AFTER = {
    "noUpdate": KNOWN,
    "overwrite": UPDATE,
    "upsert": UPDATE,
    "addMissingFields": {"Email": ANN, "First Name": "Ann", "Job Title": "CTO", "City": "Oslo"},
}


@pytest.mark.parametrize("action", list(AFTER))
def test_a_step_import_enrols_a_known_prospect_and_applies_the_conflict_action(
    api: httpx.Client, action: str
) -> None:
    account_import(api, [KNOWN], tags=["crm"])  # known to the account, in no sequence
    assert prospects_by_email(api)[ANN]["steps"] == []
    status = import_and_wait(api, [UPDATE], step="StepA1", conflictAction=action, tags=["q4"])
    assert status["reportURL"] is None
    assert prospects_by_email(api) == {
        ANN: {"attrs": AFTER[action], "steps": ["StepA1"], "tags": ["crm", "q4"]}
    }


@pytest.mark.parametrize("action", list(AFTER))
def test_a_prospect_in_another_sequence_joins_this_one_per_the_conflict_action(
    api: httpx.Client, action: str
) -> None:
    import_and_wait(api, [KNOWN], step="StepE1")
    status = import_and_wait(api, [UPDATE], step="StepA2", conflictAction=action)
    assert status["reportURL"] is None
    assert prospects_by_email(api)[ANN] == {
        "attrs": AFTER[action], "steps": ["StepA2", "StepE1"], "tags": []
    }  # fmt: skip


def test_one_prospect_per_email_whatever_its_case(api: httpx.Client) -> None:
    import_and_wait(api, [{"Email": "Ann@Example.COM", "First Name": "Ann"}])
    account_import(api, [{"Email": "ANN@EXAMPLE.COM", "City": "Oslo"}], conflictAction="overwrite")
    status = import_and_wait(api, [{"Email": ANN}], step="StepA2")
    assert [row["Email"] for row in report_rows(status)] == [ANN]
    found = api.get("/v1/prospects", params={"pageSize": 100}).json()["payload"]
    assert len(found) == 1
    assert found[0]["email"] == "ANN@EXAMPLE.COM"  # the Email value as last written
    assert found[0]["steps"] == ["StepA1"]
    assert {a["key"]: a["value"] for a in found[0]["attributes"]} == {
        "First Name": "Ann", "Email": "ANN@EXAMPLE.COM", "City": "Oslo"
    }  # fmt: skip


# -- the account import ----------------------------------------------------------------------


@pytest.mark.parametrize("action", list(AFTER))
def test_the_account_import_updates_per_the_conflict_action_and_keeps_memberships(
    api: httpx.Client, action: str
) -> None:
    import_and_wait(api, [KNOWN], step="StepA1", tags=["q4"])
    import_and_wait(api, [{"Email": ANN}], step="StepE1")
    rows = [UPDATE, {"Email": "new@example.com", "Company": "Acme"}]
    assert account_import(api, rows, conflictAction=action, tags=["crm"])["reportURL"] is None
    assert prospects_by_email(api) == {
        ANN: {"attrs": AFTER[action], "steps": ["StepA1", "StepE1"], "tags": ["crm", "q4"]},
        "new@example.com": {
            "attrs": {"Email": "new@example.com", "Company": "Acme"}, "steps": [],
            "tags": ["crm"],
        },
    }  # fmt: skip
    # Still enrolled: a step import of the same sequence fails it, the account import doesn't.
    status = import_and_wait(api, [{"Email": ANN}], step="StepA2")
    assert [row["Reason"] for row in report_rows(status)] == [REASON_IN_SEQUENCE]


def test_the_account_import_with_a_step_enrols_only_those_outside_its_sequence(
    api: httpx.Client,
) -> None:
    import_and_wait(api, [{"Email": ANN}], step="StepA1")
    account_import(api, [{"Email": "bob@example.com"}])  # known, in no sequence
    rows = [{"Email": ANN}, {"Email": "bob@example.com"}, {"Email": "cy@example.com"}]
    assert account_import(api, rows, step="StepA2", conflictAction="upsert")["reportURL"] is None
    steps = {email: p["steps"] for email, p in prospects_by_email(api).items()}
    assert steps == {ANN: ["StepA1"], "bob@example.com": ["StepA2"], "cy@example.com": ["StepA2"]}


# -- accounts --------------------------------------------------------------------------------


def test_two_keys_never_see_each_others_prospects(sandbox: Sandbox) -> None:
    with client(sandbox, "key-one") as one, client(sandbox, "key-two") as two:
        first = submit(one, [{"Email": ANN, "First Name": "Ann"}], tags=["one"])
        wait_done(one, first)
        assert prospects_by_email(two) == {}
        assert two.get("/v1/prospects", params={"search": "ann"}).json()["payload"] == []
        # Another account's import is not found, with the live answer.
        assert two.get(STATUS.format(first)).json()["message"] == (
            "40000: Prospect import request not found"
        )
        # The same address in the same step is new to the second account, and its own.
        status = import_and_wait(two, [{"Email": ANN, "First Name": "Anne"}], tags=["two"])
        assert status["reportURL"] is None
        account_import(two, [{"Email": ANN, "City": "Oslo"}], conflictAction="overwrite")
        assert prospects_by_email(one) == {
            ANN: {"attrs": {"Email": ANN, "First Name": "Ann"}, "steps": ["StepA1"],
                  "tags": ["one"]},
        }  # fmt: skip
        assert prospects_by_email(two) == {
            ANN: {"attrs": {"Email": ANN, "First Name": "Anne", "City": "Oslo"},
                  "steps": ["StepA1"], "tags": ["two"]},
        }  # fmt: skip
        ids = [c.get("/v1/prospects").json()["payload"][0]["id"] for c in (one, two)]
        assert len(set(ids)) == 2


def test_each_accounts_imports_queue_on_their_own(start: Callable[..., Sandbox]) -> None:
    slow = start(delay_base=1.0)
    with client(slow, "key-one") as one, client(slow, "key-two") as two:
        submit(one, [{"Email": "a1@example.com"}])  # done 1 s from now
        queued = submit(one, [{"Email": "a2@example.com"}])  # 2 s: after the first
        alone = submit(two, [{"Email": "b1@example.com"}])  # 1 s: its account is idle
        wait_done(two, alone)  # one queue for all would finish it after both of one's
        assert one.get(STATUS.format(queued)).json()["payload"]["isCompleted"] is False
        assert wait_done(one, queued)["isCompleted"] is True


def test_the_database_holds_no_key(start: Callable[..., Sandbox], tmp_path: Any) -> None:
    key = "sk-live-7f3a9c2e5b1d4068"
    strict = start(state_dir=tmp_path / "state", api_key=key)
    with client(strict, key) as api:
        import_and_wait(api, [{"Email": ANN}], tags=["q4"])
        assert list(prospects_by_email(api)) == [ANN]
    strict.stop()
    stored = b"".join(f.read_bytes() for f in (tmp_path / "state").iterdir() if f.is_file())
    assert ANN.encode() in stored  # what was looked for is there to be found ...
    assert key.encode() not in stored  # ... and the key is not


def test_reset_forgets_every_account(sandbox: Sandbox) -> None:
    with client(sandbox, "key-one") as one, client(sandbox, "key-two") as two:
        import_and_wait(one, [{"Email": ANN}])
        import_and_wait(two, [{"Email": "bob@example.com"}])
        assert httpx.post(f"{sandbox.url}/_sandbox/reset").status_code == 200
        assert (prospects_by_email(one), prospects_by_email(two)) == ({}, {})
        # Forgotten, not hidden: the same address is new to the step again.
        assert import_and_wait(one, [{"Email": ANN}])["reportURL"] is None
