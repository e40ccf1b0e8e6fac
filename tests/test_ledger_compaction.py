"""The ledger folded (``Journal.compact_ledger``) answers what it answered before.

Every ``--only-new`` run reads the whole ledger of its step; without folding, a
nightly import of the same rows adds all of them again each night. Folding keeps,
for runs that can change no more, each address's last landing only, in the place of
the rows it replaces. What ``ledger_keys`` and ``ledger_state`` say must not move.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from incli import Ran, run_cli

import shandy_cli.journal as journal_module
from shandy_cli.journal import COMPACTED, Journal, LedgerState
from shandy_cli.sandbox import Sandbox

KEYS = st.integers(min_value=1, max_value=40) | st.sampled_from([2**63, 2**64 - 1])
UNFINISHED = ("failed", "processing")
OUTCOMES = st.sampled_from(["completed", "completed", "failed", "processing", "gone"])

# one run: its outcome, account, and chunks (step, keys, update?, refused, stale)
CHUNK = st.tuples(
    st.sampled_from(["S1", "S2"]),
    st.lists(KEYS, min_size=1, max_size=12, unique=True),
    st.booleans(),
)
RUN = st.tuples(
    OUTCOMES,
    st.sampled_from(["acct", "acct", "other", ""]),
    st.lists(CHUNK, min_size=1, max_size=3),
    st.lists(KEYS, max_size=4),  # refused
    st.lists(KEYS, max_size=4),  # found already present
)


def build(journal: Journal, runs: list[tuple], start: int = 0) -> None:
    """Runs ``r<start>``, ``r<start+1>``, ... as an import records them."""
    for n, (outcome, account, chunks, refused, stale) in enumerate(runs, start):
        run_id = f"r{n}"
        if outcome != "gone":  # "gone": expired from the journal, its ledger rows kept
            journal.create_run(run_id, f"fp{n}", {}, [], "S1", 1)
            journal.update_run(run_id, outcome=outcome)
        for idx, (step, keys, update) in enumerate(chunks):
            digests = array("Q", [(k * 7919 + n) % 2**64 for k in keys])
            journal.accept(
                run_id, idx, f"q{n}-{idx}", step, array("Q", keys),
                hashes=digests, account=account, update=update,
            )  # fmt: skip
        journal.ledger_refuse(run_id, refused)
        journal.ledger_unwritten(run_id, stale)


def answers(journal: Journal, runs: list[tuple]) -> list[object]:
    """Everything the ledger is asked, for every step and account, and leaving out each run
    that may be asking (``exclude_run`` names the importing run: an unfinished one)."""
    asking = [None, *(f"r{n}" for n, run in enumerate(runs) if run[0] in UNFINISHED)]
    said: list[object] = []
    for step in ("S1", "S2"):
        for account in (None, "acct", "other"):
            said.extend(journal.ledger_keys(step, exclude_run=r, account=account) for r in asking)
        for account in ("acct", "other"):
            said.extend(state_of(journal.ledger_state(step, account, r)) for r in asking)
    return said


def unfinished_answers(journal: Journal, runs: list[tuple]) -> list[object]:
    """What a resume of an unfinished run reads: that run's own keys."""
    return [
        journal.ledger_keys(step, only_run=f"r{n}", account=account)
        for n, run in enumerate(runs)
        if run[0] in UNFINISHED
        for step in ("S1", "S2")
        for account in (None, "acct")
    ]


def state_of(state: LedgerState) -> list[tuple[int, int, str]]:
    return [
        (int(k), int(h), state.runs[o])
        for k, h, o in zip(state.keys, state.hashes, state.owner, strict=True)
    ]


def ledger_rows(journal: Journal) -> int:
    return int(journal.db.execute("SELECT COUNT(*) FROM ledger_chunks").fetchone()[0])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(runs=st.lists(RUN, min_size=1, max_size=7), more=st.lists(RUN, max_size=2))
def test_folding_changes_no_answer(
    tmp_path_factory, monkeypatch, runs: list[tuple], more: list[tuple]
) -> None:
    monkeypatch.setattr(journal_module, "MERGE_KEYS", 7)  # merge part way through a stretch
    state = tmp_path_factory.mktemp("ledger")
    with Journal(state) as journal:
        build(journal, runs)
        before, resumes = answers(journal, runs), unfinished_answers(journal, runs)
        rows = ledger_rows(journal)
        done = journal.compact_ledger()
        assert answers(journal, runs) == before
        assert unfinished_answers(journal, runs) == resumes
        assert ledger_rows(journal) == rows - done.rows_before + done.rows_after <= rows
        assert done.keys_after <= done.keys_before
        # again: it may merge rows the first fold left side by side, but nothing moves
        again = journal.compact_ledger()
        assert again.rows_after <= again.rows_before
        assert answers(journal, runs) == before
        # later runs land after the folded rows, and a second fold still agrees
        build(journal, more, start=len(runs))
        later = answers(journal, runs + more)
        journal.compact_ledger()
        assert answers(journal, runs + more) == later


def test_nightly_reimports_fold_to_one_landing_an_address(tmp_path: Path) -> None:
    """Thirty nights of the same 1,000 addresses: 30,000 keys in 60 rows fold to 1,000."""
    with Journal(tmp_path / "state") as journal:
        for night in range(30):
            run_id = f"night{night}"
            journal.create_run(run_id, f"fp{night}", {}, [], "S1", 1)
            for idx in range(2):
                keys = array("Q", range(1 + idx * 500, 501 + idx * 500))
                journal.accept(run_id, idx, f"q{night}.{idx}", "S1", keys, account="acct")
            journal.ledger_refuse(run_id, [1000] if night == 29 else [])
            journal.update_run(run_id, outcome="completed")
        before = journal.ledger_keys("S1", account="acct")
        last = state_of(journal.ledger_state("S1", "acct"))
        done = journal.compact_ledger()
        assert (done.rows_before, done.keys_before) == (60, 30_000)
        assert done.keys_after == 1000  # key 1000: night 28's landing (night 29's was refused)
        assert journal.ledger_keys("S1", account="acct") == before == set(range(1, 1001))
        assert state_of(journal.ledger_state("S1", "acct")) == last
        assert dict((k, r) for k, _, r in last)[1000] == "night28"
        # night 29 and night 28 hold what they last landed; the refusal is folded in
        owners = journal.db.execute(
            "SELECT run_id, updates FROM ledger_chunks ORDER BY rowid"
        ).fetchall()
        assert owners == [("night28", COMPACTED), ("night29", COMPACTED)]
        assert journal.db.execute("SELECT COUNT(*) FROM ledger_refused").fetchone() == (0,)


def test_a_running_run_splits_the_fold_and_keeps_its_rows(tmp_path: Path) -> None:
    """Rows of a run still going stay as written (a resume and status read them by chunk),
    and what landed before and after it folds on either side of it."""
    with Journal(tmp_path / "state") as journal:
        for n, outcome in enumerate(
            ["completed", "completed", "running", "completed", "completed"]
        ):
            journal.create_run(f"r{n}", f"fp{n}", {}, [], "S1", 1)
            journal.accept(f"r{n}", 0, f"q{n}", "S1", array("Q", [1, 2, n + 10]), account="a")
            journal.update_run(f"r{n}", outcome=outcome)
        before = state_of(journal.ledger_state("S1", "a"))
        journal.compact_ledger()
        rows = journal.db.execute("SELECT run_id, idx FROM ledger_chunks ORDER BY rowid").fetchall()
        assert rows == [("r0", -1), ("r1", -1), ("r2", 0), ("r3", -1), ("r4", -1)]
        assert list(journal.ledger_chunk("r2", 0)) == [1, 2, 12]
        assert state_of(journal.ledger_state("S1", "a")) == before


def test_a_crash_mid_fold_leaves_the_ledger_as_it_was(tmp_path: Path, monkeypatch) -> None:
    with Journal(tmp_path / "state") as journal:
        for n in range(3):
            journal.create_run(f"r{n}", f"fp{n}", {}, [], "S1", 1)
            journal.accept(f"r{n}", 0, f"q{n}", "S1", array("Q", [1, 2, 3]), account="a")
            journal.update_run(f"r{n}", outcome="completed")
        rows = journal.db.execute("SELECT * FROM ledger_chunks ORDER BY rowid").fetchall()

        def crash(*_args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(journal_module, "_fold", crash)
        try:
            journal.compact_ledger()
        except sqlite3.OperationalError:
            pass
        else:
            raise AssertionError("the fold did not fail")
        assert journal.db.execute("SELECT * FROM ledger_chunks ORDER BY rowid").fetchall() == rows


def test_nightly_imports_fold_and_only_new_still_skips_what_landed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Real imports over HTTP: three nights of overlapping exports, `runs --prune` folds the
    two earlier landings of the rows sent every night, and `--only-new` skips the same rows
    (and sends the same new one) as it did before the fold."""
    for night in range(3):  # rows 0-3 every night, and one of its own: 4 + night
        imported(sandbox, tmp_path, f"night{night}.csv", rows=[0, 1, 2, 3, 4 + night])
    src = tmp_path / "tonight.csv"
    src.write_text(leads([0, 1, 2, 3, 4, 5, 6, 99]))

    ran = shandy(sandbox, tmp_path, "runs", "--prune", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["ledger_keys_folded"] == 8  # rows 0-3, twice each
    with Journal(tmp_path / "state") as journal:
        assert ledger_rows(journal) == 3  # one a night: what it last landed
        assert len(journal.ledger_keys("StepA1")) == 7

    ran = shandy(sandbox, tmp_path, "import", str(src), "--step", "StepA1", "--only-new",
                 "--json", "--poll-interval", "0.05")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert (doc["rows_skipped"], doc["rows_submitted"]) == (7, 1)


def leads(rows: list[int]) -> str:
    return "First Name,Email\n" + "".join(f"P{i},p{i}@example.com\n" for i in rows)


def shandy(sandbox: Sandbox, tmp_path: Path, *args: str) -> Ran:
    env = {
        "SALESHANDY_BASE_URL": sandbox.url,
        "SALESHANDY_API_KEY": "fold-test-key-123456",
        "SHANDY_STATE_DIR": str(tmp_path / "state"),
    }
    return run_cli(*args, cwd=tmp_path, env=env)


def imported(sandbox: Sandbox, tmp_path: Path, name: str, rows: list[int]) -> None:
    src = tmp_path / name
    src.write_text(leads(rows))
    ran = shandy(sandbox, tmp_path, "import", str(src), "--step", "StepA1", "--json",
                 "--poll-interval", "0.05")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["completed"] is True


def test_a_fold_that_fails_is_a_warning_and_the_prune_goes_on(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    """Keeping never fails a run: a full disk under the fold is said, and what was
    removed before it stays removed."""
    from shandy_cli.pipeline.housekeeping import expire_runs

    with Journal(tmp_path / "state") as journal:
        journal.create_run("old", "fp", {}, [], "S1", 1)
        journal.update_run("old", outcome="completed", ended=1.0)  # 1970: long expired

        def full(*_args: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(journal, "compact_ledger", full)
        result = expire_runs(journal, 90)
        assert result.removed_runs == ["old"]
        assert result.warnings == ["the ledger was not folded: database or disk is full"]
        assert "the ledger was not folded" in caplog.text
