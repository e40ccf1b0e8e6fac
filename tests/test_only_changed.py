"""``--only-changed``: two nights of a CRM export against the sandbox, over real HTTP.

Night one lands the export in a step; night two's export grew, shrank and changed:
new rows go to the step, changed ones as updates to the account-level import, the
unchanged are skipped naming the run that landed them. Both reading paths (per row
and columnar) give the same answer; the per-row rule and its columnar twin are
proved equal directly too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shandy_cli import ImportResult, SaleshandyClient, import_files
from shandy_cli.client import IMPORT_TO_LIST, IMPORT_TO_STEP, RetryPolicy
from shandy_cli.errors import InputError
from shandy_cli.journal import Journal, LedgerState
from shandy_cli.pipeline.changes import CHANGED, NEW, UNCHANGED, Changes
from shandy_cli.pipeline.chunking import prospect_hash, prospect_salt
from shandy_cli.pipeline.columnar.encoder import _item_hashes
from shandy_cli.sandbox import Sandbox
from tests.test_import import HEADER, write_csv

KEY = "test-key"


def export(
    n: int, start: int = 0, changed: range = range(0), company: str = "Co"
) -> list[list[str]]:
    """Rows ``start..n-1`` of a CRM export; rows in ``changed`` have a new company."""
    return [
        [
            f"First{i}",
            f"Last{i}",
            f"person{i}@example.com",
            f"{company} {i}" + (" v2" if i in changed else ""),
        ]
        for i in range(start, n)
    ]


@pytest.fixture
def open_sandbox(sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    """No rate limits on the sandbox side: the tests read every prospect back."""
    return sandbox_factory(rate_per_endpoint=None, rate_total=None)


def night(sandbox: Sandbox, tmp_path: Path, path: Path, **options: Any) -> ImportResult:
    options = {
        "step_id": "StepA1",
        "only_changed": True,
        "poll_interval": 0.05,
        "timeout": 60,
    } | options
    retry = options.pop("retry", None)
    with SaleshandyClient(sandbox.url, KEY, retry=retry) as client:
        return import_files([str(path)], client=client, state_dir=tmp_path / "state", **options)


def prospects(sandbox: Sandbox, key: str = KEY) -> dict[str, dict[str, Any]]:
    """Every prospect of the account, read back page by page: email -> attrs and steps."""
    found: dict[str, dict[str, Any]] = {}
    page = 1
    with httpx.Client(base_url=sandbox.url, headers={"x-api-key": key}) as http:
        while True:
            batch = http.get("/v1/prospects", params={"page": page, "pageSize": 100}).json()[
                "payload"
            ]
            for p in batch:
                attrs = {a["key"]: a["value"] for a in p["attributes"]}
                found[p["email"]] = {"attrs": attrs, "steps": p["steps"]}
            if len(batch) < 100:
                return found
            page += 1


def import_posts(sandbox: Sandbox) -> list[str]:
    """The path of every accepted import POST, in order."""
    return [
        r["path"]
        for r in sandbox.requests()
        if r["method"] == "POST" and r["status"] == 201 and "import" in r["path"]
    ]


@pytest.mark.slow
@pytest.mark.parametrize("columnar", ["never", "always"])
def test_night_two_sends_new_rows_to_the_step_and_changed_ones_as_updates(
    open_sandbox: Sandbox, tmp_path: Path, columnar: str
) -> None:
    sandbox = open_sandbox
    one = night(
        sandbox, tmp_path, write_csv(tmp_path / "n1.csv", HEADER, export(10_000)), columnar=columnar
    )
    assert one.exit_code == 0, one.error
    assert (one.rows_submitted, one.rows_updated, one.rows_skipped) == (10_000, 0, 0)
    assert [c.endpoint for c in one.chunks] == ["step"]
    # Night two: rows 0-99 left the CRM, 300 changed their company, 500 are new.
    changed = range(1000, 1300)
    rows = export(10_500, start=100, changed=changed)
    two = night(sandbox, tmp_path, write_csv(tmp_path / "n2.csv", HEADER, rows), columnar=columnar)
    assert two.exit_code == 0, two.error
    assert two.rows_read == 10_400
    assert (two.rows_submitted, two.rows_updated, two.rows_skipped) == (800, 300, 9_600)
    assert two.rows_rejected == two.rows_failed == two.rows_already_present == 0
    assert dict(two.reasons) == {f"unchanged since {one.run_id}": 9_600}
    body = two.to_dict()
    assert [(c["endpoint"], c["update"], c["rows"]) for c in body["chunks"]] == [
        ("step", False, 500),
        ("prospects", True, 300),
    ]
    assert body["rows_updated"] == 300
    # Exactly the 500 new rows went to the step, the 300 changed ones to the account import.
    assert import_posts(sandbox)[1:] == [IMPORT_TO_STEP, IMPORT_TO_LIST]
    landed = prospects(sandbox)
    assert len(landed) == 10_500
    assert landed["person1000@example.com"]["attrs"]["Company"] == "Co 1000 v2"  # updated
    assert landed["person1000@example.com"]["steps"] == ["StepA1"]  # still in the step
    assert landed["person10499@example.com"]["steps"] == ["StepA1"]  # new: enrolled
    assert landed["person999@example.com"]["attrs"]["Company"] == "Co 999"
    assert all(landed[f"person{i}@example.com"]["attrs"]["Company"].endswith("v2") for i in changed)
    # Night three, the same export again but one more change: only that one goes.
    rows[5][3] = "Co 105 v3"
    three = night(
        sandbox, tmp_path, write_csv(tmp_path / "n3.csv", HEADER, rows), columnar=columnar
    )
    assert three.exit_code == 0, three.error
    assert (three.rows_submitted, three.rows_updated, three.rows_skipped) == (1, 1, 10_399)
    # the changed and new rows of night two are unchanged since night two, the rest since one
    assert dict(three.reasons) == {
        f"unchanged since {one.run_id}": 9_599,
        f"unchanged since {two.run_id}": 800,
    }


def test_tags_and_constants_are_part_of_the_prospect(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", HEADER, export(20))
    first = night(sandbox, tmp_path, path)
    assert first.exit_code == 0 and first.rows_submitted == 20
    tagged = night(sandbox, tmp_path, path, tags=["webinar"])  # a new tag: every row changed
    assert (tagged.rows_submitted, tagged.rows_updated) == (20, 20)
    again = night(sandbox, tmp_path, path, tags=[" webinar "], constants={"Job Title": "CTO"})
    assert (again.rows_submitted, again.rows_updated) == (20, 20)  # a constant changes them
    last = night(
        sandbox, tmp_path, path, tags=["webinar"], constants={"Job Title": "CTO"}, force=True
    )
    assert (last.rows_submitted, last.rows_skipped) == (0, 20)  # tags as a set, trimmed


def test_a_failed_row_did_not_land_and_goes_again(sandbox: Sandbox, tmp_path: Path) -> None:
    # The sandbox fails a row with a non-number in a number field ("Deal Size" is one).
    header = [*HEADER, "Annual Revenue"]
    rows = [[*r, "100"] for r in export(5)]
    rows[2][4] = "lots"
    first = night(
        sandbox, tmp_path, write_csv(tmp_path / "a.csv", header, rows), on_unknown_column="ignore"
    )
    assert first.rows_submitted + first.rows_rejected == 5
    failed = first.rows_failed + first.rows_rejected
    assert failed == 1, first
    rows[2][4] = "200"  # fixed in the CRM: the row is new to the ledger, not unchanged
    second = night(
        sandbox, tmp_path, write_csv(tmp_path / "b.csv", header, rows), on_unknown_column="ignore"
    )
    assert second.exit_code == 0, second.error
    assert (second.rows_submitted, second.rows_updated, second.rows_skipped) == (1, 0, 4)


def test_rows_already_in_the_sequence_count_as_changed_next_night(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A step import never writes an enrolled prospect's fields: those rows did not land
    as sent, so the next --only-changed night sends them as updates."""
    path = write_csv(tmp_path / "leads.csv", HEADER, export(6))
    plain = night(sandbox, tmp_path, path, only_changed=False)  # another tool's import, say
    assert plain.exit_code == 0
    with Journal(tmp_path / "state") as journal:  # forget it landed: a ledger of another machine
        journal.db.execute("DELETE FROM ledger_chunks")
    first = night(sandbox, tmp_path, path)
    assert (first.rows_submitted, first.rows_already_present) == (6, 6)
    second = night(sandbox, tmp_path, path, force=True)
    assert (second.rows_submitted, second.rows_updated, second.rows_skipped) == (6, 6, 0)
    third = night(sandbox, tmp_path, path, force=True)
    assert (third.rows_submitted, third.rows_skipped) == (0, 6)


def test_ledgers_of_two_accounts_never_mix(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "leads.csv", HEADER, export(8))
    assert night(sandbox, tmp_path, path).rows_submitted == 8
    with SaleshandyClient(sandbox.url, "other-client-key") as client:
        other = import_files(
            [str(path)], client=client, state_dir=tmp_path / "state", step_id="StepA1",
            only_changed=True, poll_interval=0.05, force=True,
        )  # fmt: skip
    assert (other.rows_submitted, other.rows_skipped, other.rows_updated) == (8, 0, 0)
    assert len(prospects(sandbox, "other-client-key")) == 8


def test_a_resumed_run_sends_only_the_updates_still_pending(
    open_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox = open_sandbox
    night(sandbox, tmp_path, write_csv(tmp_path / "n1.csv", HEADER, export(50)))
    path = write_csv(tmp_path / "n2.csv", HEADER, export(60, changed=range(10, 20)))
    sandbox.set_faults(["503"] * 4, match=IMPORT_TO_LIST)
    quick = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
    broken = night(sandbox, tmp_path, path, retry=quick)
    assert broken.exit_code == 4, broken
    assert [c.state for c in broken.chunks] == ["accepted", "planned"]
    sandbox.set_faults()
    resumed = night(sandbox, tmp_path, path)
    assert resumed.exit_code == 0, resumed.error
    assert resumed.resumed and resumed.run_id == broken.run_id
    assert (resumed.rows_submitted, resumed.rows_updated) == (20, 10)
    # night one's chunk, then night two's step chunk once and its update chunk once
    assert import_posts(sandbox) == [IMPORT_TO_STEP, IMPORT_TO_STEP, IMPORT_TO_LIST]
    assert [(c.endpoint, c.rows, c.state) for c in resumed.chunks] == [
        ("step", 10, "completed"),
        ("prospects", 10, "completed"),
    ]
    assert prospects(sandbox)["person15@example.com"]["attrs"]["Company"] == "Co 15 v2"


def test_a_dry_run_says_what_would_go_where_and_sends_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    night(sandbox, tmp_path, write_csv(tmp_path / "n1.csv", HEADER, export(30)))
    before = len(import_posts(sandbox))
    path = write_csv(tmp_path / "n2.csv", HEADER, export(35, changed=range(3)))
    dry = night(sandbox, tmp_path, path, dry_run=True)
    assert (dry.rows_submitted, dry.rows_updated, dry.rows_skipped) == (8, 3, 27)
    assert [(c.endpoint, c.rows) for c in dry.chunks] == [("step", 5), ("prospects", 3)]
    assert len(import_posts(sandbox)) == before


def test_only_new_and_only_changed_together_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--only-new or --only-changed"):
        import_files([str(tmp_path / "x.csv")], only_new=True, only_changed=True, dry_run=True)


def test_updates_overwrite_under_no_update_and_keep_another_conflict(
    open_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox = open_sandbox
    night(sandbox, tmp_path, write_csv(tmp_path / "n1.csv", HEADER, export(3)))
    # under noUpdate, updates overwrite; under addMissingFields a filled field stays
    two = night(
        sandbox, tmp_path, write_csv(tmp_path / "n2.csv", HEADER, export(3, changed=range(1)))
    )
    rows = export(3, changed=range(2))
    three = night(
        sandbox, tmp_path, write_csv(tmp_path / "n3.csv", HEADER, rows), conflict="addMissingFields"
    )
    assert (two.rows_updated, three.rows_updated) == (1, 1)
    landed = prospects(sandbox)
    assert landed["person0@example.com"]["attrs"]["Company"] == "Co 0 v2"
    assert landed["person1@example.com"]["attrs"]["Company"] == "Co 1"
    assert import_posts(sandbox) == [IMPORT_TO_STEP, IMPORT_TO_LIST, IMPORT_TO_LIST]


# -- the rules and their twins -----------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["Email", "First Name", "Co"]), texts, min_size=1),
        min_size=1,
        max_size=20,
    )
)
def test_prospect_hash_twin_equals_the_per_row_rule(prospects: list[dict[str, str]]) -> None:
    items = [orjson.dumps(p) for p in prospects]
    salt = prospect_salt(["a", "b"])
    per_row = [prospect_hash(item, salt) for item in items]
    series = pl.Series("out", [("," + item.decode()) for item in items])
    twin = (_item_hashes(series) ^ np.uint64(salt)).tolist()
    assert twin == per_row


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(st.integers(0, 2**64 - 1), st.integers(0, 3), max_size=30),
    st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 3)), max_size=30),
    st.data(),
)
def test_route_many_twin_equals_route(
    landed: dict[int, int], fresh: list[tuple[int, int]], data: st.DataObject
) -> None:
    known = list(landed.items())
    rows = (
        fresh + [data.draw(st.sampled_from(known)) for _ in range(len(known) and 10)]
        if known
        else fresh
    )
    state = LedgerState.latest(
        ["r0", "r1"],
        [np.array([k for k, _ in known], np.uint64)],
        [np.array([h for _, h in known], np.uint64)],
        [np.array([i % 2 for i in range(len(known))], np.int32)],
    )
    changes = Changes(state)
    keys = np.array([k for k, _ in rows], np.uint64)
    hashes = np.array([h for _, h in rows], np.uint64)
    routes, owners = changes.route_many(keys, hashes)
    assert [changes.route(k, h) for k, h in rows] == list(
        zip(routes.tolist(), owners.tolist(), strict=True)
    )
    assert set(routes.tolist()) <= {NEW, CHANGED, UNCHANGED}


def test_the_latest_landing_wins_and_refused_rows_fall_back(tmp_path: Path) -> None:
    from array import array

    with Journal(tmp_path) as journal:
        journal.ledger_add(
            "S",
            array("Q", [1, 2]),
            "20260101T000000-a",
            0,
            hashes=array("Q", [10, 20]),
            account="acct",
        )
        journal.ledger_add(
            "S",
            array("Q", [2, 3]),
            "20260102T000000-b",
            0,
            hashes=array("Q", [21, 30]),
            account="acct",
        )
        journal.ledger_add(
            "S", array("Q", [4]), "20260102T000000-b", 1, hashes=array("Q", [40]), account="other"
        )
        journal.ledger_refuse("20260102T000000-b", [3])
        journal.ledger_unwritten("20260101T000000-a", [1])
        state = journal.ledger_state("S", "acct")
    changes = Changes(state)
    assert changes.route(1, 10) == (CHANGED, 0)  # already present in run a: fields unknown
    assert changes.route(2, 21) == (UNCHANGED, 1)  # b's landing wins over a's
    assert changes.route(2, 20)[0] == CHANGED
    assert changes.route(3, 30) == (NEW, -1)  # refused in b, never landed before
    assert changes.route(4, 40) == (NEW, -1)  # another account's
    assert changes.reason(1) == "unchanged since 20260102T000000-b"


# -- --update-existing ---------------------------------------------------------------------------


def test_update_existing_updates_the_prospects_a_step_import_found_present(
    open_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox = open_sandbox
    first = night(
        sandbox, tmp_path, write_csv(tmp_path / "a.csv", HEADER, export(5)), only_changed=False
    )
    assert first.exit_code == 0
    # Another step of the same sequence: the five are already in it; two are new.
    rows = export(7, company="Newco")
    plain = night(
        sandbox, tmp_path, write_csv(tmp_path / "b.csv", HEADER, rows), step_id="StepA2",
        only_changed=False, conflict="overwrite",
    )  # fmt: skip
    assert plain.exit_code == 1 and plain.rows_already_present == 5  # not updated: failures
    assert prospects(sandbox)["person0@example.com"]["attrs"]["Company"] == "Co 0"
    fixed = night(
        sandbox, tmp_path, write_csv(tmp_path / "b.csv", HEADER, rows), step_id="StepA2",
        only_changed=False, conflict="overwrite", update_existing=True,
    )  # fmt: skip
    assert fixed.exit_code == 0, fixed.error
    assert (fixed.rows_already_present, fixed.rows_updated, fixed.rows_failed) == (7, 7, 0)
    assert fixed.failures_file is None
    assert [(c.endpoint, c.update, c.rows, c.state) for c in fixed.chunks] == [
        ("step", False, 7, "completed"),
        ("prospects", True, 7, "completed"),
    ]
    landed = prospects(sandbox)
    assert {landed[f"person{i}@example.com"]["attrs"]["Company"] for i in range(7)} == {
        f"Newco {i}" for i in range(7)
    }
    assert landed["person0@example.com"]["steps"] == ["StepA1"]  # memberships as they were


def test_update_existing_with_only_changed_and_no_update(
    open_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Rows another tool enrolled: new to the ledger, so they go to the step, are found
    present, and are updated; the next night they are unchanged."""
    sandbox = open_sandbox
    night(sandbox, tmp_path, write_csv(tmp_path / "a.csv", HEADER, export(4)), only_changed=False)
    with Journal(tmp_path / "state") as journal:
        journal.db.execute("DELETE FROM ledger_chunks")  # another machine's run, say
    path = write_csv(tmp_path / "b.csv", HEADER, export(6, changed=range(4)))
    one = night(sandbox, tmp_path, path, update_existing=True)
    assert one.exit_code == 0, one.error
    assert (one.rows_submitted, one.rows_already_present, one.rows_updated) == (6, 4, 4)
    assert prospects(sandbox)["person2@example.com"]["attrs"]["Company"] == "Co 2 v2"
    two = night(sandbox, tmp_path, path, update_existing=True, force=True)
    assert (two.rows_submitted, two.rows_skipped) == (0, 6)


def test_a_resumed_run_sends_its_late_updates_once(open_sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox = open_sandbox
    night(sandbox, tmp_path, write_csv(tmp_path / "a.csv", HEADER, export(5)), only_changed=False)
    path = write_csv(tmp_path / "b.csv", HEADER, export(8, company="Newco"))
    options = {"step_id": "StepA2", "only_changed": False, "update_existing": True}
    sandbox.set_faults(["503"] * 4, match=IMPORT_TO_LIST)
    broken = night(
        sandbox,
        tmp_path,
        path,
        retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02),
        **options,
    )
    assert broken.exit_code == 4, broken
    assert [(c.state, c.update) for c in broken.chunks] == [("completed", False), ("planned", True)]
    sandbox.set_faults()
    resumed = night(sandbox, tmp_path, path, **options)
    assert resumed.exit_code == 0, resumed.error
    assert resumed.resumed and resumed.run_id == broken.run_id
    assert (resumed.rows_already_present, resumed.rows_updated) == (5, 5)
    assert import_posts(sandbox) == [IMPORT_TO_STEP, IMPORT_TO_STEP, IMPORT_TO_LIST]
    assert prospects(sandbox)["person4@example.com"]["attrs"]["Company"] == "Newco 4"


def test_update_existing_needs_a_step_and_the_reports(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--update-existing needs --step"):
        import_files([str(tmp_path / "x.csv")], update_existing=True, dry_run=True)
    with pytest.raises(InputError, match="--no-wait"):
        import_files([str(tmp_path / "x.csv")], step_id="S", update_existing=True, wait=False)


def test_the_cli_on_the_built_in_sandbox_keeps_one_account_across_runs(tmp_path: Path) -> None:
    """--sandbox listens on a new port each run: its ledger must still be one account's."""
    import json

    from incli import run_cli

    env = {"SHANDY_STATE_DIR": str(tmp_path / "state"), "SHANDY_SANDBOX_DELAY": "0.05"}
    write_csv(tmp_path / "a.csv", HEADER, export(10))
    write_csv(tmp_path / "b.csv", HEADER, export(12, changed=range(3)))
    args = ("--sandbox", "--step", "StepA1", "--only-changed", "--json")
    one = run_cli("-q", "import", "a.csv", *args, cwd=tmp_path, env=env)
    assert one.returncode == 0, one.stderr
    two = run_cli("-q", "import", "b.csv", *args, cwd=tmp_path, env=env)
    assert two.returncode == 0, two.stderr
    doc = json.loads(two.stdout)
    assert (doc["rows_submitted"], doc["rows_updated"], doc["rows_skipped"]) == (5, 3, 7)
    assert [(c["endpoint"], c["rows"]) for c in doc["chunks"]] == [("step", 2), ("prospects", 3)]
    assert doc["reasons"] == [
        {"reason": f"unchanged since {json.loads(one.stdout)['run_id']}", "count": 7}
    ]
    write_csv(tmp_path / "c.csv", HEADER, export(13, changed=range(4)))
    plan = run_cli("-q", "import", "c.csv", *args[:-1], "--dry-run", cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr
    lines = [line for line in plan.stdout.splitlines() if "rows" in line and "#" in line]
    assert len(lines) == 2 and "#2: 1 rows (updates), planned" in lines[1], plan.stdout
    assert "\\n" not in plan.stdout  # one chunk a line, not an escaped newline


def test_a_damaged_digest_blob_counts_its_rows_as_changed(tmp_path: Path) -> None:
    from array import array

    with Journal(tmp_path) as journal:
        journal.ledger_add("S", array("Q", [1, 2]), "r1", 0, hashes=array("Q", [10, 20]))
        journal.db.execute("UPDATE ledger_chunks SET hashes = x'0102'")  # torn, 2 bytes
        changes = Changes(journal.ledger_state("S", "any"))
    assert changes.route(1, 10) == (CHANGED, 0)
    assert changes.route(3, 30) == (NEW, -1)


# -- shandy trace, across the nights ---------------------------------------------------------


def test_trace_shows_a_changed_address_in_both_nights_and_an_unchanged_one_skipped(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from shandy_cli import trace

    one = night(sandbox, tmp_path, write_csv(tmp_path / "n1.csv", HEADER, export(20)))
    two = night(
        sandbox, tmp_path, write_csv(tmp_path / "n2.csv", HEADER, export(25, changed=range(3)))
    )
    assert (two.rows_updated, two.rows_skipped) == (3, 17)
    got = trace(" Person1@Example.com ", state_dir=tmp_path / "state")
    seen = [(e.run_id, e.file, e.row, e.chunk, e.endpoint, e.outcome) for e in got.entries]
    assert seen == [
        (two.run_id, str(tmp_path / "n2.csv"), 2, 1, "prospects", "updated"),
        (one.run_id, str(tmp_path / "n1.csv"), 2, 0, "step", "imported"),
    ]
    assert got.entries[0].request_id == two.chunks[1].request_id
    still = trace("person10@example.com", state_dir=tmp_path / "state").entries
    assert [(e.run_id, e.outcome, e.reason) for e in still] == [
        (two.run_id, "skipped", f"unchanged since {one.run_id}"),
        (one.run_id, "imported", None),
    ]
    new = trace("person24@example.com", state_dir=tmp_path / "state").entries
    assert [(e.endpoint, e.outcome) for e in new] == [("step", "imported")]


def test_trace_shows_a_present_row_then_its_update(open_sandbox: Sandbox, tmp_path: Path) -> None:
    from shandy_cli import trace

    sandbox = open_sandbox
    night(sandbox, tmp_path, write_csv(tmp_path / "a.csv", HEADER, export(3)), only_changed=False)
    fixed = night(
        sandbox, tmp_path, write_csv(tmp_path / "b.csv", HEADER, export(3, company="Newco")),
        step_id="StepA2", only_changed=False, update_existing=True,
    )  # fmt: skip
    assert fixed.exit_code == 0 and fixed.rows_updated == 3
    entries = [
        e
        for e in trace("person1@example.com", state_dir=tmp_path / "state").entries
        if e.run_id == fixed.run_id
    ]
    assert [(e.chunk, e.endpoint, e.outcome) for e in entries] == [
        (0, "step", "already present"),
        (1, "prospects", "updated"),
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=40),
    st.lists(st.integers(0, 2**64 - 1), max_size=40),
)
def test_members_is_set_membership(values: list[int], table: list[int]) -> None:
    from shandy_cli._arrays import members, sorted_keys

    got = members(np.array(values, np.uint64), sorted_keys(np.array(table, np.uint64)))
    assert got.tolist() == [v in set(table) for v in values]


def test_a_small_import_loads_neither_numpy_nor_polars(sandbox: Sandbox, tmp_path: Path) -> None:
    """The ledger's digests are compared with numpy only under --only-changed: a plain small
    import (and the CLI's modules) stay without it, as before."""
    import os
    import subprocess
    import sys

    write_csv(tmp_path / "a.csv", HEADER, export(30))
    code = f"""
import sys
import shandy_cli.cli
from shandy_cli import SaleshandyClient, import_files
with SaleshandyClient({sandbox.url!r}, "test-key") as client:
    result = import_files(["a.csv"], client=client, step_id="StepA1", state_dir="state",
                          poll_interval=0.05)
print(result.exit_code, "numpy" in sys.modules, "polars" in sys.modules, file=sys.stderr)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHANDY_", "SALESHANDY_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.stderr.split()[-3:] == ["0", "False", "False"], done.stderr
