"""Issue 12, items 2-4: exit codes that tell the truth under faults of the machine, a
failures file that names the rows that failed, a crashed run's rows accounted for.

Every test runs the real ``shandy`` against the sandbox over real HTTP; faults are
real too (a garbage journal, a lock path that is a directory, a state dir under a
file, a symlink loop, ``RLIMIT_FSIZE`` for a file that cannot grow).
"""

from __future__ import annotations

import csv
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shandy_cli.sandbox import Sandbox
from tests.test_import import HEADER, leads, write_csv


def shandy(
    *args: str,
    tmp_path: Path,
    sandbox: Sandbox | None = None,
    state: Path | None = None,
    fsize: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real command; ``fsize`` caps the size of any file it writes (EFBIG past it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env["SHANDY_STATE_DIR"] = str(state or tmp_path / "state")
    if sandbox is not None:
        env.update(SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY="test-key")

    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death by signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "shandy_cli", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, preexec_fn=limit,
    )  # fmt: skip


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("shandy: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def document(done: subprocess.CompletedProcess[str]) -> dict:
    data = json.loads(done.stdout)
    assert data["error"] and data["exit_code"] == done.returncode
    return data


IMPORT = ("import", "leads.csv", "--step", "StepA1", "--json", "--poll-interval", "0.05")


# -- item 2: exit codes that tell the truth -------------------------------------------------


def test_a_garbage_journal_is_exit_2_naming_it_and_left_alone(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Today: ``internal error: DatabaseError: file is not a database``, exit 1, no JSON."""
    write_csv(tmp_path / "leads.csv", HEADER, leads(5))
    state = tmp_path / "state"
    state.mkdir()
    garbage = os.urandom(8192)
    (state / "journal.sqlite3").write_bytes(garbage)
    done = shandy(*IMPORT, tmp_path=tmp_path, sandbox=sandbox)
    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    assert "journal.sqlite3 is damaged" in line and "move it aside" in line
    assert document(done)["rows_submitted"] == 0
    assert (state / "journal.sqlite3").read_bytes() == garbage  # the evidence is kept
    runs = shandy("runs", tmp_path=tmp_path)
    assert runs.returncode == 2 and "is damaged" in one_error_line(runs)


def _lock_is_a_directory(state: Path, tmp_path: Path, sandbox: Sandbox) -> None:
    """The lock file of this very import is a directory (its name is the fingerprint)."""
    probe = shandy(*IMPORT, tmp_path=tmp_path, sandbox=sandbox, state=tmp_path / "probe")
    assert probe.returncode == 0, probe.stderr
    from shandy_cli._lock import lock_path
    from shandy_cli.journal import Journal

    # from the journal, not from the probe's locks folder: a soft lock (no fcntl) leaves
    # no file there once released
    with Journal(tmp_path / "probe") as journal:
        [run] = journal.runs()
    lock_path(state, run.fingerprint).mkdir(parents=True)


@pytest.mark.parametrize("fault", ["lock is a directory", "state under a file", "symlink loop"])
def test_an_unusable_state_dir_is_exit_2_with_one_line_and_a_document(
    sandbox: Sandbox, tmp_path: Path, fault: str
) -> None:
    """Today: a lock path that is a directory is exit 1 (``internal error:
    IsADirectoryError``), and none of the three prints a JSON document."""
    write_csv(tmp_path / "leads.csv", HEADER, leads(5))
    state = tmp_path / "state"
    if fault == "lock is a directory":
        _lock_is_a_directory(state, tmp_path, sandbox)
    elif fault == "state under a file":
        (tmp_path / "afile").write_text("x")
        state = tmp_path / "afile" / "state"
    else:
        (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
        (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
        state = tmp_path / "loop1"
    done = shandy(*IMPORT, tmp_path=tmp_path, sandbox=sandbox, state=state)
    assert done.returncode == 2, done.stderr
    assert str(tmp_path.name) in one_error_line(done) or "loop" in one_error_line(done)
    assert document(done)["rows_submitted"] == 0


def test_a_file_that_cannot_grow_after_sending_is_exit_4_never_1(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE (EFBIG) once chunks were accepted: exit 4, resumable, the cause named,
    and the document printed. Today: ``internal error: OperationalError``, exit 1, so
    the README's cron recipe ``|| [ $? -eq 1 ]`` reports the failure as success."""
    write_csv(tmp_path / "leads.csv", HEADER, leads(20_000))
    done = shandy(*IMPORT, "--max-rows", "2000", tmp_path=tmp_path, sandbox=sandbox,
                  fsize=400_000)  # fmt: skip
    assert done.returncode == 4, done.stderr
    line = one_error_line(done)
    assert "journal" in line or "too large" in line, line
    data = document(done)
    assert data["completed"] is False and data["rows_read"] == 20_000


def test_a_file_that_cannot_grow_before_sending_is_exit_2(sandbox: Sandbox, tmp_path: Path) -> None:
    write_csv(tmp_path / "leads.csv", HEADER, leads(20_000))
    done = shandy(*IMPORT, tmp_path=tmp_path, sandbox=sandbox, fsize=40_000)
    assert done.returncode == 2, done.stderr
    one_error_line(done)
    assert document(done)["rows_submitted"] == 0


def test_sigterm_while_reading_prints_the_document(sandbox: Sandbox, tmp_path: Path) -> None:
    """A signal while the input is still being read: exit 143 and, with --json, the
    document (today: nothing on stdout)."""
    fifo = tmp_path / "leads.fifo"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(SHANDY_STATE_DIR=str(tmp_path / "state"), SALESHANDY_BASE_URL=sandbox.url,
               SALESHANDY_API_KEY="test-key")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "shandy_cli", "import", str(fifo), "--step", "StepA1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    with fifo.open("w") as writer:
        writer.write("Email\n" + "".join(f"p{i}@example.com\n" for i in range(100)))
        writer.flush()
        time.sleep(1.5)  # the import is blocked reading the rest
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["exit_code"] == 143 and "interrupted" in data["error"]


# -- item 3: the failures file names the rows that failed -----------------------------------


def _rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("change", ["new export", "same size and mtime", "vanished"])
def test_status_joins_failures_only_to_the_file_that_was_read(
    sandbox: Sandbox, tmp_path: Path, change: str
) -> None:
    """``import --no-wait``, a new export over the same path, ``status --wait``: the
    failures file lists the people who failed, from the report's values, and says so.
    Today it lists rows 1 and 3 of the new export: people who were never sent."""
    write_csv(tmp_path / "first.csv", HEADER, leads(5))
    seed = shandy("import", "first.csv", "--step", "StepA1", tmp_path=tmp_path, sandbox=sandbox)
    assert seed.returncode == 0, seed.stderr
    src = tmp_path / "leads.csv"
    # Under overwrite, rows already in the sequence are failures: person1 and person3.
    write_csv(src, HEADER, [leads(2)[1], ["New", "One", "new1@example.com", "N"], leads(4)[3]])
    sent = shandy("import", "leads.csv", "--step", "StepA1", "--conflict", "overwrite",
                  "--no-wait", "--json", tmp_path=tmp_path, sandbox=sandbox)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    ids = [c["request_id"] for c in json.loads(sent.stdout)["chunks"]]
    before = src.stat()
    if change == "vanished":
        src.unlink()
    else:
        others = [[f"Other{i}", "X", f"other{i}@example.com", "Z"] for i in range(3)]
        write_csv(src, HEADER, others)
        if change == "same size and mtime":  # a copy made with `cp -p` of a same-size file
            data = src.read_bytes()
            same = data.ljust(before.st_size, b"\n")[: before.st_size]
            src.write_bytes(same)
            os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    done = shandy("status", *ids, "--wait", "--json", "--poll-interval", "0.05",
                  tmp_path=tmp_path, sandbox=sandbox)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "leads.csv" in done.stderr and "written from Saleshandy's report" in done.stderr
    failures = _rows(json.loads(done.stdout)[0]["failures_file"])
    assert sorted(r["Email"] for r in failures) == ["person1@example.com", "person3@example.com"]
    assert sorted(r["_row"] for r in failures) == ["1", "3"]  # where they were when read
    assert all(r["_file"].endswith("leads.csv") for r in failures)


# -- item 4: a crashed run's rows stay accounted for ----------------------------------------


def test_a_crashed_run_is_shown_as_such_and_its_rows_are_not_sent_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """kill -9 after the first chunk was accepted, then a changed input (a new run):
    the rerun names the crashed run, skips the rows it landed, and ``shandy runs`` says
    ``crashed``. Today: ``running`` forever, and every row is sent again."""
    write_csv(tmp_path / "leads.csv", HEADER, leads(40))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(SHANDY_STATE_DIR=str(tmp_path / "state"), SALESHANDY_BASE_URL=sandbox.url,
               SALESHANDY_API_KEY="test-key")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "shandy_cli", "import", "leads.csv", "--step", "StepA1",
         "--max-rows", "10", "--poll-interval", "30"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "chunk 2: accepted" in line:  # so chunk 1 is journalled
            break
    proc.kill()
    proc.wait(timeout=30)
    runs = json.loads(shandy("runs", "--json", tmp_path=tmp_path).stdout)
    crashed = runs[0]
    assert crashed["outcome"] == "crashed" and crashed["chunks_accepted"] >= 1
    write_csv(tmp_path / "leads.csv", HEADER, leads(41))  # a new export: a new fingerprint
    again = shandy(*IMPORT, "--max-rows", "10", tmp_path=tmp_path, sandbox=sandbox)
    assert again.returncode == 0, again.stderr
    assert f"run {crashed['run_id']}" in again.stderr
    data = json.loads(again.stdout)
    landed = crashed["chunks_accepted"] * 10
    assert data["rows_skipped"] == landed and data["rows_submitted"] == 41 - landed
    assert data["rows_failed"] == 0
    assert data["reasons"] == [] or all("imported by run" in r["reason"] for r in data["reasons"])
