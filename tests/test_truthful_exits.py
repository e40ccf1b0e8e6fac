"""Issue 12, items 2-4: exit codes that tell the truth under faults of the machine, a
failures file that names the rows that failed, a crashed run's rows accounted for.

Every test runs the real ``shandy`` against the sandbox over real HTTP; faults are
real too (a garbage journal, a lock path that is a directory, a state dir under a
file, a symlink loop, ``RLIMIT_FSIZE`` for a file that cannot grow).
"""

from __future__ import annotations

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
    for lock in (tmp_path / "probe" / "locks").iterdir():
        (state / "locks" / lock.name).mkdir(parents=True)


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
