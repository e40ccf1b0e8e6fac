"""Issue 4: faults, crashes, interrupts, concurrent and repeated runs — nothing lost, nothing twice.

Crashes are real: `shandy` runs as a subprocess and is killed with SIGKILL, SIGINT
or SIGTERM while the sandbox (in this test process) records what reached it.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shandy_cli import SaleshandyClient, import_files
from shandy_cli.journal import Journal
from shandy_cli.sandbox import Sandbox

IMPORT_PATH = "/v1/sequences/prospects/import-with-field-name"
KEY = "reliability-key"


def write_leads(path: Path, n: int, start: int = 0) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["First Name", "Email"])
        w.writerows([f"P{i}", f"p{i}@example.com"] for i in range(start, start + n))
    return path


def accepted_posts(sandbox: Sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["path"] == IMPORT_PATH and r["status"] == 201]


def landed(sandbox: Sandbox, step: str = "StepA1") -> set[str]:
    """Every prospect email in the step, read back through the API (after imports complete)."""
    emails: set[str] = set()
    page = 1
    with httpx.Client(base_url=sandbox.url, headers={"x-api-key": KEY}) as http:
        while True:
            data = http.get("/v1/prospects", params={"page": page, "pageSize": 100}).json()
            batch = data["payload"]  # a bare array, as live
            emails.update(p["email"] for p in batch if step in p.get("steps", [step]))
            if len(batch) < 100:
                return emails
            page += 1


def shandy_proc(
    sandbox: Sandbox, tmp_path: Path, *args: str, **popen: object
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(
        SALESHANDY_BASE_URL=sandbox.url,
        SALESHANDY_API_KEY=KEY,
        SHANDY_STATE_DIR=str(tmp_path / "state"),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "shandy_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        **popen,  # type: ignore[arg-type]
    )


def import_args(src: Path, *extra: str) -> list[str]:
    return ["import", str(src), "--step", "StepA1", "--max-rows", "10", "--json",
            "--poll-interval", "0.05", *extra]  # fmt: skip


def run_shandy(sandbox: Sandbox, tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    proc = shandy_proc(sandbox, tmp_path, *args)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, json.loads(out) if out.strip() else {}, err


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_transient_faults_are_retried_and_every_row_lands_once(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 50)
    sandbox.set_faults(["429", "502", "drop-before", "503", "ok", "500"], match=IMPORT_PATH)
    code, _doc, err = run_shandy(sandbox, tmp_path, *import_args(src))
    assert code == 0, err
    assert err.count("retry") == 5  # each retry is one line on stderr
    assert len(accepted_posts(sandbox)) == 5  # 5 chunks, each accepted exactly once
    assert landed(sandbox) == {f"p{i}@example.com" for i in range(50)}


def test_status_polling_survives_faults(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 5)
    sandbox.set_faults(["502", "drop-before", "429"], match="/v1/prospects/import-status")
    code, doc, err = run_shandy(sandbox, tmp_path, *import_args(src))
    assert code == 0, err
    assert doc["completed"] is True


def test_answer_lost_after_body_taken_arrives_at_most_once_more(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 30)
    sandbox.set_faults(["ok", "drop-after"], match=IMPORT_PATH)
    code, _doc, err = run_shandy(sandbox, tmp_path, *import_args(src))
    assert code == 0, err  # the repeat finds its own rows in the step: not a failure
    posts = [r for r in sandbox.requests() if r["path"] == IMPORT_PATH]
    assert len(posts) == 4  # 3 chunks + the one repeat of the chunk whose answer was lost
    assert landed(sandbox) == {f"p{i}@example.com" for i in range(30)}


def test_kill_9_mid_run_then_same_command_resumes(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 100)
    sandbox.set_faults([*["slow:0.3"] * 10], match=IMPORT_PATH)
    proc = shandy_proc(sandbox, tmp_path, *import_args(src))
    wait_for(lambda: len(accepted_posts(sandbox)) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    before = len(accepted_posts(sandbox))
    sandbox.set_faults()
    code, doc, err = run_shandy(sandbox, tmp_path, *import_args(src))
    assert code in (0, 1), err
    assert doc["resumed"] is True and doc["completed"] is True
    total = len(accepted_posts(sandbox))
    # Chunks accepted before the kill are never sent again; the one in flight at most once more.
    assert 10 <= total <= 11
    assert doc["chunks_sent"] == 10 - before or doc["chunks_sent"] == 10 - before + 1
    assert landed(sandbox) == {f"p{i}@example.com" for i in range(100)}


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_interrupt_saves_journal_and_resume_continues(
    sandbox: Sandbox, tmp_path: Path, sig: int, code: int
) -> None:
    src = write_leads(tmp_path / "l.csv", 60)
    sandbox.set_faults(["slow:0.3"] * 6, match=IMPORT_PATH)
    proc = shandy_proc(sandbox, tmp_path, *import_args(src))
    wait_for(lambda: len(accepted_posts(sandbox)) >= 2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "shandy resume" in err
    doc = json.loads(out)
    # The server may have taken one more body than the client saw answered before the signal.
    assert doc["exit_code"] == code and len([c for c in doc["chunks"] if c["request_id"]]) >= 1
    with Journal(tmp_path / "state") as journal:
        run = journal.get(doc["run_id"])
        assert run is not None and run.outcome == "interrupted"
        states = [c.state for c in journal.chunks(run.id)]
    assert "accepted" in states
    sandbox.set_faults()
    rc, resumed, err = run_shandy(sandbox, tmp_path, "resume", "--last", "--json",
                                  "--poll-interval", "0.05")  # fmt: skip
    assert rc == 0, err
    assert resumed["run_id"] == doc["run_id"] and resumed["completed"]
    assert len(accepted_posts(sandbox)) <= 7
    assert landed(sandbox) == {f"p{i}@example.com" for i in range(60)}


def test_sighup_ignored_at_start_is_left_ignored(sandbox: Sandbox, tmp_path: Path) -> None:
    """`nohup shandy import ...` asked to outlive the terminal: a hangup must not stop it."""
    src = write_leads(tmp_path / "l.csv", 30)
    sandbox.set_faults(["slow:0.3"] * 3, match=IMPORT_PATH)
    proc = shandy_proc(sandbox, tmp_path, *import_args(src),
                       preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # fmt: skip
    wait_for(lambda: len(accepted_posts(sandbox)) >= 1)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["completed"] is True


def test_second_run_of_same_import_while_first_runs_exits_2(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 30)
    sandbox.set_faults(["slow:1.0"] * 3, match=IMPORT_PATH)
    first = shandy_proc(sandbox, tmp_path, *import_args(src))
    wait_for(lambda: any(r["path"] == IMPORT_PATH for r in sandbox.requests()), timeout=30)
    # Held still (its first POST takes 1 s), the first run sends nothing more: every
    # POST from here on would be the second run's, however slowly it starts.
    first.send_signal(signal.SIGSTOP)
    try:
        posts_before = len([r for r in sandbox.requests() if r["path"] == IMPORT_PATH])
        code, _doc, err = run_shandy(sandbox, tmp_path, *import_args(src))
        assert code == 2
        assert f"pid {first.pid}" in err and "already running" in err
        assert len([r for r in sandbox.requests() if r["path"] == IMPORT_PATH]) == posts_before
    finally:
        first.send_signal(signal.SIGCONT)
    _out, _ = first.communicate(timeout=60)
    assert first.returncode == 0


def test_completed_import_rerun_sends_nothing_unless_forced(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 12)
    code, doc, err = run_shandy(sandbox, tmp_path, *import_args(src))
    assert code == 0 and len(accepted_posts(sandbox)) == 2
    code, again, err = run_shandy(sandbox, tmp_path, *import_args(src))
    assert code == 0 and again["already_imported"] is True
    assert "already completed" in err and again["run_id"] == doc["run_id"]
    assert len(accepted_posts(sandbox)) == 2
    code, forced, err = run_shandy(sandbox, tmp_path, *import_args(src, "--force"))
    assert len(accepted_posts(sandbox)) == 4 and forced["run_id"] != doc["run_id"]


def test_only_new_on_an_export_that_grew(sandbox: Sandbox, tmp_path: Path) -> None:
    write_leads(tmp_path / "export.csv", 20)
    code, first, err = run_shandy(sandbox, tmp_path, *import_args(tmp_path / "export.csv",
                                                                     "--only-new"))  # fmt: skip
    assert code == 0 and first["rows_submitted"] == 20
    write_leads(tmp_path / "export.csv", 27)  # yesterday's 20 plus 7 new leads
    code, second, err = run_shandy(sandbox, tmp_path, *import_args(tmp_path / "export.csv",
                                                                      "--only-new"))  # fmt: skip
    assert code == 0, err
    assert second["rows_read"] == 27 and second["rows_skipped"] == 20
    assert second["rows_submitted"] == 7
    assert {"reason": "already imported", "count": 20} in second["reasons"]
    assert landed(sandbox) == {f"p{i}@example.com" for i in range(27)}


def test_timeout_then_same_command_finishes_without_resending(tmp_path: Path) -> None:
    from shandy_cli.sandbox import SandboxConfig, start_sandbox

    with start_sandbox(SandboxConfig(state_dir=tmp_path / "sb", delay_base=1.5)) as slow:
        src = write_leads(tmp_path / "l.csv", 5)
        code, doc, err = run_shandy(slow, tmp_path, *import_args(src, "--timeout", "0.2"))
        assert code == 5 and f"shandy status {doc['chunks'][0]['request_id']}" in err
        code, again, err = run_shandy(slow, tmp_path, *import_args(src))
        assert code == 0, err
        assert again["resumed"] and again["chunks_sent"] == 0 and again["completed"]
        assert len(accepted_posts(slow)) == 1


def test_runs_lists_the_journal(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 3)
    run_shandy(sandbox, tmp_path, *import_args(src))
    proc = shandy_proc(sandbox, tmp_path, "runs", "--json")
    out, _err = proc.communicate(timeout=60)
    runs = json.loads(out)
    assert runs[0]["outcome"] == "completed" and runs[0]["chunks_accepted"] == 1
    assert runs[0]["files"] == [str(src)]


def test_journal_is_private_and_holds_no_key(sandbox: Sandbox, tmp_path: Path) -> None:
    src = write_leads(tmp_path / "l.csv", 3)
    with SaleshandyClient(sandbox.url, KEY) as client:
        import_files([str(src)], client=client, step_id="StepA1", state_dir=tmp_path / "st",
                     poll_interval=0.05)  # fmt: skip
    journal = tmp_path / "st" / "journal.sqlite3"
    assert journal.stat().st_mode & 0o077 == 0
    assert (tmp_path / "st").stat().st_mode & 0o077 == 0
    for path in (tmp_path / "st").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_ledger_of_an_older_key_kind_is_dropped_once(tmp_path: Path) -> None:
    """Keys of another hash can never match this version's: the ledger starts afresh."""
    from array import array

    from shandy_cli.journal import JOURNAL_VERSION

    with Journal(tmp_path / "state") as journal:
        journal.ledger_add("S1", array("Q", [11, 12]), "r1", 0)
        journal.ledger_refuse("r1", [12])
        journal.db.execute("PRAGMA user_version = 1")  # as an older shandy left it
    with Journal(tmp_path / "state") as journal:
        assert journal.ledger_keys("S1") == set()
        assert journal.db.execute("PRAGMA user_version").fetchone() == (JOURNAL_VERSION,)
        journal.ledger_add("S1", array("Q", [21]), "r2", 0)
    with Journal(tmp_path / "state") as journal:  # this version's keys stay
        assert journal.ledger_keys("S1") == {21}
