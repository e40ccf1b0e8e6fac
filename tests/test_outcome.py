"""Issue 11, item 8: prospects already in the sequence, and one decision of how a run ends.

`import` and `status` count a request with the same code (pipeline/outcome.py); these
tests run both for real (subprocesses, HTTP to the sandbox) and check they agree.
They hold whichever way the sandbox words a repeat ("Prospect already exists in this
step" or the live "Prospect already present in another step of same sequence"): every
repeat here is a re-import into the same step.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from shandy_cli import SaleshandyClient, import_files
from shandy_cli.journal import JOURNAL_VERSION, Journal
from shandy_cli.pipeline.outcome import (
    RunOutcome,
    already_present_fails,
    chunk_outcome,
    finished_exit_code,
    is_already_present,
    refuse_in_ledger,
)
from shandy_cli.pipeline.reporting import ServerFailure
from shandy_cli.pipeline.results import CONFLICT_ACTIONS
from shandy_cli.pipeline.validation import email_key
from shandy_cli.sandbox import Sandbox

IMPORT_PATH = "/v1/sequences/prospects/import-with-field-name"
LIVE = "Prospect already present in another step of same sequence"
SANDBOX_OLD = "Prospect already exists in this step"
# Whatever CONFLICT_ACTIONS holds besides noUpdate (upsert once it is added).
UPDATING = [c for c in CONFLICT_ACTIONS if c != "noUpdate"]


def write_leads(path: Path, n: int, bad: int = 0) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Email", "First Name"])
        w.writerows([f"p{i}@example.com", f"P{i}"] for i in range(n))
        w.writerows([f"broken{i}", "Bo"] for i in range(bad))
    return path


def shandy(sandbox: Sandbox, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(
        SALESHANDY_BASE_URL=sandbox.url,
        SALESHANDY_API_KEY="outcome-key",
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )
    return subprocess.run(
        [sys.executable, "-m", "shandy_cli", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def import_json(sandbox: Sandbox, tmp_path: Path, src: Path, *extra: str) -> tuple[int, dict]:
    done = shandy(sandbox, tmp_path, "import", str(src), "--step", "StepA1", "--json",
                  "--poll-interval", "0.05", *extra)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def status_json(sandbox: Sandbox, tmp_path: Path, *args: str) -> tuple[int, list[dict]]:
    done = shandy(sandbox, tmp_path, "status", *args, "--json", "--poll-interval", "0.05")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def read_rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_adds_up(doc: dict) -> None:
    assert doc["rows_read"] == doc["rows_submitted"] + doc["rows_rejected"] + doc["rows_skipped"]
    assert doc["rows_failed"] + doc["rows_already_present"] <= doc["rows_submitted"]
    chunks = doc["chunks"]
    assert doc["rows_failed"] == sum(c["failed_rows"] for c in chunks)
    assert doc["rows_already_present"] == sum(c["already_present_rows"] for c in chunks)


# -- the decision, unit by unit ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "present"),
    [(LIVE, True), (SANDBOX_OLD, True), ("Prospect already exist", True),
     ("PROSPECT ALREADY PRESENT IN ANOTHER STEP OF SAME SEQUENCE", True),
     ("Mismatch in custom field type", False), ("Invalid email", False),
     ("Duplicate email in file", False), ("failed at Saleshandy", False)],
)  # fmt: skip
def test_already_present_is_told_by_either_wording(reason: str, present: bool) -> None:
    assert is_already_present(reason) is present


def failure(email: str, reason: str) -> ServerFailure:
    return ServerFailure(email, reason, "r1")


@pytest.mark.parametrize("wording", [LIVE, SANDBOX_OLD])
def test_a_chunk_report_sorts_failed_from_already_present(wording: str) -> None:
    found = [failure("a@x.io", wording), failure("b@x.io", "Invalid email"),
             failure("c@x.io", wording)]  # fmt: skip
    first = chunk_outcome(found, resent=False)
    assert [f.email for f in first.failed] == ["b@x.io"]
    assert [f.email for f in first.already_present] == ["a@x.io", "c@x.io"]
    # Sent again after a lost answer: its already-present rows are its own first copy.
    again = chunk_outcome(found, resent=True)
    assert [f.email for f in again.failed] == ["b@x.io"]
    assert again.already_present == [] and again.own_repeats == 2


def test_a_chunk_failed_only_when_no_row_landed() -> None:
    present = chunk_outcome([failure("a@x.io", LIVE), failure("b@x.io", LIVE)], resent=False)
    assert present.state(2) == "completed"  # they are in the sequence
    failed = chunk_outcome([failure("a@x.io", "bad"), failure("b@x.io", "bad")], resent=False)
    assert failed.state(2) == "failed" and failed.state(3) == "completed"


@pytest.mark.parametrize("conflict", CONFLICT_ACTIONS)
def test_already_present_fails_the_exit_code_unless_no_update(conflict: str) -> None:
    fails = conflict != "noUpdate"
    assert already_present_fails(conflict) is fails
    assert finished_exit_code(rejected=0, failed=0, already_present=3, conflict=conflict) == fails
    assert finished_exit_code(rejected=0, failed=0, already_present=0, conflict=conflict) == 0
    assert finished_exit_code(rejected=1, failed=0, already_present=0, conflict=conflict) == 1
    assert finished_exit_code(rejected=0, failed=1, already_present=0, conflict=conflict) == 1
    present = RunOutcome(conflict, [failure("b@x.io", "bad")], [failure("a@x.io", LIVE)])
    assert [f.email for f in present.listed] == (["b@x.io", "a@x.io"] if fails else ["b@x.io"])


def test_ledger_refuses_failed_rows_but_keeps_already_present_ones(tmp_path: Path) -> None:
    """--only-new sends failed rows again; rows already in the sequence landed there."""
    keys = [email_key("a@x.io"), email_key("b@x.io")]
    with Journal(tmp_path / "state") as journal:
        journal.ledger_add("StepA1", array("Q", keys), "r1", 0)
        outcome = RunOutcome("overwrite", [failure("b@x.io", "bad")], [failure("a@x.io", LIVE)])
        refuse_in_ledger(journal, "r1", outcome)
        assert journal.ledger_keys("StepA1") == {email_key("a@x.io")}


def test_a_version_2_journal_opens_and_keeps_its_runs_and_ledger(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "journal.sqlite3")
    db.executescript(  # the chunks table as shandy wrote it before version 3
        """CREATE TABLE chunks (run_id TEXT NOT NULL, idx INTEGER NOT NULL, first_file TEXT,
        first_row INTEGER, last_file TEXT, last_row INTEGER, rows INTEGER NOT NULL,
        bytes INTEGER NOT NULL, hash TEXT NOT NULL, state TEXT NOT NULL, request_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0, report TEXT, report_url TEXT, failed_rows INTEGER,
        updated REAL, PRIMARY KEY (run_id, idx));
        CREATE TABLE ledger_chunks (step TEXT NOT NULL, run_id TEXT NOT NULL, idx INTEGER NOT
        NULL, keys BLOB NOT NULL, PRIMARY KEY (run_id, idx));
        INSERT INTO chunks (run_id, idx, rows, bytes, hash, state, request_id, attempts,
        failed_rows) VALUES ('r1', 0, 5, 100, 'h', 'completed', 'req1', 1, 2);
        PRAGMA user_version = 2;"""
    )
    db.execute("INSERT INTO ledger_chunks VALUES ('S1', 'r1', 0, ?)", (array("Q", [7]).tobytes(),))
    db.commit()
    db.close()
    with Journal(state) as journal:
        [chunk] = journal.chunks("r1")
        assert (chunk.failed_rows, chunk.already_present_rows) == (2, None)
        assert journal.ledger_keys("S1") == {7}  # XXH3 keys since version 2: kept
        # version 4: a row from before accounts and digests counts for any account, and its
        # prospect as changed (digest 0: unknown)
        assert journal.ledger_keys("S1", account="acct") == {7}
        state_ = journal.ledger_state("S1", "acct")
        assert (state_.keys.tolist(), state_.hashes.tolist(), state_.runs) == ([7], [0], ["r1"])
        [chunk] = journal.chunks("r1")
        assert (chunk.endpoint, chunk.updates) == (None, None)
        journal.mark("r1", 0, "completed", already_present_rows=3)
        assert journal.db.execute("PRAGMA user_version").fetchone() == (JOURNAL_VERSION,)
    with Journal(state) as journal:
        found = journal.chunk_for_request("req1")
        assert found is not None and found.already_present_rows == 3


# -- re-importing into the same step -----------------------------------------------------------


def test_reimport_under_no_update_is_already_present_and_exit_0(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 6)
    code, first = import_json(sandbox, tmp_path, src)
    assert code == 0 and first["rows_already_present"] == 0
    code, again = import_json(sandbox, tmp_path, src, "--force")
    assert code == again["exit_code"] == 0, again
    assert again["completed"] and again["rows_submitted"] == 6
    assert again["rows_already_present"] == 6 and again["rows_failed"] == 0
    assert again["rows_updated"] == 0 and again["conflict"] == "noUpdate"
    assert [c["already_present_rows"] for c in again["chunks"]] == [6]
    assert again["failures_file"] is None  # they landed: in the sequence already
    assert again["reasons"] == []
    assert_adds_up(again)
    # status of that request counts it exactly as the import did
    rid = again["chunks"][0]["request_id"]
    code, [item] = status_json(sandbox, tmp_path, rid)
    assert code == 0
    assert (item["failed_rows"], item["already_present_rows"]) == (0, 6)
    assert item["report_url"] and item["failures_file"] is None


def test_reimport_under_no_update_with_a_reject_lists_only_the_reject(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 4, bad=1)
    import_json(sandbox, tmp_path, src)
    code, again = import_json(sandbox, tmp_path, src, "--force")
    assert code == 1  # the reject, not the rows already in the sequence
    assert again["rows_rejected"] == 1 and again["rows_already_present"] == 4
    assert_adds_up(again)
    rows = read_rows(again["failures_file"])
    assert [(r["Email"], r["_row"]) for r in rows] == [("broken0", "5")]


@pytest.mark.parametrize("conflict", UPDATING)
def test_reimport_under_an_updating_conflict_is_exit_1_with_the_rows_listed(
    sandbox: Sandbox, tmp_path: Path, conflict: str
) -> None:
    src = write_leads(tmp_path / "l.csv", 5, bad=1)
    import_json(sandbox, tmp_path, src)
    code, again = import_json(sandbox, tmp_path, src, "--conflict", conflict)
    assert code == again["exit_code"] == 1
    assert again["rows_already_present"] == 5 and again["rows_failed"] == 0
    assert again["rows_rejected"] == 1 and again["conflict"] == conflict
    assert_adds_up(again)
    rows = read_rows(again["failures_file"])
    assert [r["_row"] for r in rows] == ["6", "1", "2", "3", "4", "5"]  # the reject first
    assert rows[0]["_reason"] and "Saleshandy" not in rows[0]["_reason"]
    for row in rows[1:]:
        assert row["_reason"].startswith("Saleshandy: Prospect already")
        assert row["_file"].endswith("l.csv") and row["First Name"].startswith("P")
    assert sum(r["count"] for r in again["reasons"] if "already" in r["reason"]) == 5
    rid = again["chunks"][0]["request_id"]
    code, [item] = status_json(sandbox, tmp_path, rid)
    assert code == 1  # the same decision: their update did not happen
    assert (item["failed_rows"], item["already_present_rows"]) == (0, 5)


def test_the_summary_says_why_and_what_to_do(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 3)
    import_json(sandbox, tmp_path, src)
    args = ("import", str(src), "--step", "StepA1", "--poll-interval", "0.05")
    over = shandy(sandbox, tmp_path, *args, "--conflict", "overwrite")
    assert over.returncode == 1, over.stderr
    assert "already in the sequence" in over.stdout
    note = " ".join(over.stdout.split())
    assert "3 row(s) were already in the sequence: a step import never updates them" in note
    assert "--update-existing" in note and "account-level import" in note
    kept = shandy(sandbox, tmp_path, *args, "--force")
    assert kept.returncode == 0, kept.stderr
    assert "3 row(s) were already in the sequence" in " ".join(kept.stdout.split())
    assert "account-level" not in kept.stdout


# -- a chunk whose answer was lost: import and status agree -------------------------------------


def test_a_resent_chunk_is_0_failed_for_import_and_status_alike(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The POST is processed, its answer lost; the retry finds its own rows already there.

    Before outcome.py, import said 0 failed while status counted every row of the
    retry's report as failed, marked the chunk failed and exited 1.
    """
    src = write_leads(tmp_path / "l.csv", 5)
    sandbox.set_faults(["drop-after"], match=IMPORT_PATH)
    code, sent = import_json(sandbox, tmp_path, src, "--no-wait")
    assert code == 0 and sent["chunks_resent"] == [0], sent
    rid = sent["chunks"][0]["request_id"]
    code, [item] = status_json(sandbox, tmp_path, rid, "--wait", "--timeout", "30")
    assert item["report_url"], item  # the report does list the repeated rows ...
    assert (item["failed_rows"], item["already_present_rows"]) == (0, 0)  # ... as imported
    assert code == 0 and item["failures_file"] is None
    with Journal(tmp_path / "state") as journal:
        [chunk] = journal.chunks(sent["run_id"])
        assert (chunk.state, chunk.failed_rows, chunk.already_present_rows) == ("completed", 0, 0)
        assert journal.get(sent["run_id"]).outcome == "completed"  # type: ignore[union-attr]
    # The same run finished by import itself counts it the same way.
    code, again = import_json(sandbox, tmp_path, src)
    assert code == 0 and again["already_imported"]
    assert again["rows_failed"] == again["rows_already_present"] == 0


def test_a_resent_chunk_waited_for_by_import_counts_its_rows_imported(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 4)
    sandbox.set_faults(["drop-after"], match=IMPORT_PATH)
    with SaleshandyClient(sandbox.url, "k") as client:
        result = import_files([str(src)], client=client, step_id="StepA1",
                              state_dir=tmp_path / "state", poll_interval=0.05,
                              conflict="overwrite")  # fmt: skip
    assert result.chunks_resent == [0] and result.chunks[0].report_url
    assert (result.rows_failed, result.rows_already_present, result.exit_code) == (0, 0, 0)
    assert result.failures_file is None
