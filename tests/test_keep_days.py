"""Issue 14, item 4 (the keeping half): finished runs are kept ``SHANDY_KEEP_DAYS`` (default
90) and then pruned whole -- after a completed import, at most once a day, never failing it --
and ``shandy runs --prune`` applies the same rule.

Real imports run in this process (``incli``) against the sandbox over real HTTP; runs are
aged by setting their timestamps in the journal, the marker by ``os.utime``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from incli import Ran, run_cli

from shandy_cli.config import resolve_settings
from shandy_cli.errors import ConfigError
from shandy_cli.sandbox import Sandbox

DAY = 86_400
KEY = "keep-test-key-123456"
IMPORT_PATH = "/v1/sequences/prospects/import-with-field-name"


def shandy(
    sandbox: Sandbox, tmp_path: Path, *args: str, stdin: bytes | None = None, **extra: str
) -> Ran:
    env = {
        "SALESHANDY_BASE_URL": sandbox.url,
        "SALESHANDY_API_KEY": KEY,
        "SHANDY_STATE_DIR": str(tmp_path / "state"),
        **extra,
    }
    return run_cli(*args, cwd=tmp_path, env=env, stdin=stdin)


def leads(n: int, start: int = 0) -> str:
    rows = "".join(f"P{i},p{i}@example.com\n" for i in range(start, start + n))
    return "First Name,Email\n" + rows


def imported(
    sandbox: Sandbox, tmp_path: Path, name: str, *args: str, start: int = 0, **extra: str
) -> str:
    """Import a new file of 3 rows (``start`` on) into StepA1; the completed run's id."""
    src = tmp_path / name
    src.write_text(leads(3, start))
    ran = shandy(
        sandbox,
        tmp_path,
        "import",
        str(src),
        "--step",
        "StepA1",
        "--json",
        "--poll-interval",
        "0.05",
        *args,
        **extra,
    )
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["completed"] is True
    return str(doc["run_id"])


def journal(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "state" / "journal.sqlite3", isolation_level=None)


def age(tmp_path: Path, run_id: str, days: float) -> None:
    """Make ``run_id`` have started and ended ``days`` ago."""
    when = time.time() - days * DAY
    with journal(tmp_path) as db:
        db.execute("UPDATE runs SET started = ?, ended = ? WHERE id = ?", (when - 60, when, run_id))


def run_ids(tmp_path: Path) -> set[str]:
    with journal(tmp_path) as db:
        return {r[0] for r in db.execute("SELECT id FROM runs")}


def counts(tmp_path: Path, run_id: str) -> tuple[int, int]:
    """The run's chunk records and its ledger records."""
    with journal(tmp_path) as db:
        chunks = db.execute("SELECT COUNT(*) FROM chunks WHERE run_id = ?", (run_id,)).fetchone()
        ledger = db.execute(
            "SELECT COUNT(*) FROM ledger_chunks WHERE run_id = ?", (run_id,)
        ).fetchone()
    return chunks[0], ledger[0]


def run_dir(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / "state" / "runs" / run_id


def marker(tmp_path: Path) -> Path:
    return tmp_path / "state" / ".kept"


def test_an_old_completed_run_goes_when_a_run_completes_and_a_recent_one_stays(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    old = imported(sandbox, tmp_path, "a.csv")
    recent = imported(sandbox, tmp_path, "b.csv", start=10)
    age(tmp_path, old, 91)
    age(tmp_path, recent, 89)
    (run_dir(tmp_path, old) / "report.csv").parent.mkdir(parents=True, exist_ok=True)
    (run_dir(tmp_path, old) / "report.csv").write_text("what Saleshandy said\n")
    os.utime(marker(tmp_path), (time.time() - 2 * DAY,) * 2)  # the last prune: two days ago
    assert counts(tmp_path, old) == (1, 1)

    new = imported(sandbox, tmp_path, "c.csv", start=20)

    assert run_ids(tmp_path) == {recent, new}
    assert counts(tmp_path, old) == (0, 1)  # its chunks went; the --only-new ledger stays
    assert not run_dir(tmp_path, old).exists()
    assert counts(tmp_path, recent) == (1, 1)
    assert stat.S_IMODE(marker(tmp_path).stat().st_mode) == 0o600
    assert time.time() - marker(tmp_path).stat().st_mtime < 60
    ran = shandy(sandbox, tmp_path, "runs", "--json")
    assert [r["run_id"] for r in json.loads(ran.stdout)] == [new, recent]
    # The ledger still says the old run's rows landed: --only-new skips them.
    src = tmp_path / "again.csv"
    src.write_text(leads(3))
    ran = shandy(
        sandbox,
        tmp_path,
        "import",
        str(src),
        "--step",
        "StepA1",
        "--only-new",
        "--json",
        "--poll-interval",
        "0.05",
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["rows_skipped"] == 3


def test_the_marker_limits_it_to_once_a_day(sandbox: Sandbox, tmp_path: Path) -> None:
    old = imported(sandbox, tmp_path, "a.csv")  # the first: it prunes, and marks the time
    assert marker(tmp_path).is_file()
    age(tmp_path, old, 100)
    os.utime(marker(tmp_path), (time.time() - 3600,) * 2)  # pruned an hour ago
    second = imported(sandbox, tmp_path, "b.csv", start=10)
    assert old in run_ids(tmp_path)  # not scanned again within the day
    assert time.time() - marker(tmp_path).stat().st_mtime > 3000
    os.utime(marker(tmp_path), (time.time() - DAY - 60,) * 2)  # a day and a minute ago
    third = imported(sandbox, tmp_path, "c.csv", start=20)
    assert run_ids(tmp_path) == {second, third}


def test_an_unfinished_run_stays_while_it_can_be_resumed(sandbox: Sandbox, tmp_path: Path) -> None:
    """A stdin run stopped before it completed keeps its copy: it is kept past keep_days
    (until ``--prune`` takes its copy); one that read a file goes at keep_days."""
    args = ("--step", "StepA1", "--no-wait", "--json")
    ran = shandy(sandbox, tmp_path, "import", "-", *args, stdin=leads(3).encode())
    assert ran.returncode == 0, ran.stderr
    piped = json.loads(ran.stdout)["run_id"]
    src = tmp_path / "f.csv"
    src.write_text(leads(3, start=40))
    ran = shandy(sandbox, tmp_path, "import", str(src), *args)
    assert ran.returncode == 0, ran.stderr
    from_file = json.loads(ran.stdout)["run_id"]
    with journal(tmp_path) as db:  # as a Ctrl-C would have left them
        db.execute("UPDATE runs SET outcome = 'interrupted' WHERE id IN (?, ?)", (piped, from_file))
        [options] = db.execute("SELECT options FROM runs WHERE id = ?", (piped,)).fetchone()
    [copy] = [Path(p) for p in json.loads(options)["spools"].values()]
    assert copy.is_file()
    age(tmp_path, piped, 200)
    age(tmp_path, from_file, 200)
    marker(tmp_path).unlink(missing_ok=True)

    new = imported(sandbox, tmp_path, "new.csv", start=80)

    assert run_ids(tmp_path) == {piped, new}
    assert copy.is_file()
    # --prune: its copy is older than a week, so it goes; the run cannot be resumed now
    # (it says so), and the next prune removes it: it is older than keep_days.
    ran = shandy(sandbox, tmp_path, "runs", "--prune", "--json")
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["pruned_runs"] == [piped] and doc["removed_runs"] == []
    assert run_ids(tmp_path) == {piped, new} and not copy.exists()
    ran = shandy(sandbox, tmp_path, "resume", piped)
    assert ran.returncode == 2 and "saved copy is gone" in ran.stderr
    ran = shandy(sandbox, tmp_path, "runs", "--prune", "--json")
    doc = json.loads(ran.stdout)
    assert doc["pruned_runs"] == [] and doc["removed_runs"] == [piped]
    assert run_ids(tmp_path) == {new}
    assert counts(tmp_path, piped) == (0, 1)


def test_keep_days_comes_from_dotenv(sandbox: Sandbox, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SHANDY_KEEP_DAYS=5\n")
    env.chmod(0o600)
    assert resolve_settings(environ={}, dotenv_path=env).keep_days == 5
    assert resolve_settings(environ={}, dotenv_path=tmp_path / "none").keep_days == 90
    first = imported(sandbox, tmp_path, "a.csv")
    second = imported(sandbox, tmp_path, "b.csv", start=10)
    age(tmp_path, first, 6)
    age(tmp_path, second, 4)
    marker(tmp_path).unlink()
    third = imported(sandbox, tmp_path, "c.csv", start=20)
    assert run_ids(tmp_path) == {second, third}
    # `runs --prune` takes the setting as its default, and --older-than over it.
    age(tmp_path, second, 5.5)
    ran = shandy(sandbox, tmp_path, "runs", "--prune", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["removed_runs"] == [second]
    ran = shandy(sandbox, tmp_path, "runs", "--prune", "--older-than", "0")
    assert ran.returncode == 0, ran.stderr
    assert "removed 1 finished run(s) older than 0 day(s)" in ran.stdout
    assert run_ids(tmp_path) == set()


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "ninety", "٣", " ", ""])
def test_a_bad_keep_days_stops_before_anything_is_sent(
    sandbox: Sandbox, tmp_path: Path, value: str
) -> None:
    if value:
        with pytest.raises(ConfigError, match="SHANDY_KEEP_DAYS"):
            resolve_settings(environ={"SHANDY_KEEP_DAYS": value})
    src = tmp_path / "a.csv"
    src.write_text(leads(3))
    bad = {"SHANDY_KEEP_DAYS": value}
    ran = shandy(sandbox, tmp_path, "import", str(src), "--step", "StepA1", **bad)
    runs = shandy(sandbox, tmp_path, "runs", "--prune", **bad)
    if not value:  # empty is unset, as for every setting: the default
        assert ran.returncode == 0 and runs.returncode == 0, ran.stderr + runs.stderr
        return
    assert ran.returncode == 2 and runs.returncode == 2
    for err in (ran.stderr, runs.stderr):
        assert "SHANDY_KEEP_DAYS must be a whole number of days, 1 or more" in err
        assert err.count("\n") == 1
    assert [r for r in sandbox.requests() if r["path"] == IMPORT_PATH] == []


def test_a_failure_while_pruning_only_warns(sandbox: Sandbox, tmp_path: Path) -> None:
    old = imported(sandbox, tmp_path, "a.csv")
    gone = imported(sandbox, tmp_path, "b.csv", start=10)
    age(tmp_path, old, 100)
    age(tmp_path, gone, 100)
    folder = run_dir(tmp_path, old)
    elsewhere = tmp_path / "not-ours"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("someone's\n")
    if folder.exists():
        folder.rename(tmp_path / "moved")
    folder.symlink_to(elsewhere)  # rmtree refuses a symlink: the run dir cannot be removed
    marker(tmp_path).unlink()

    src = tmp_path / "c.csv"
    src.write_text(leads(3, start=20))
    ran = shandy(
        sandbox,
        tmp_path,
        "import",
        str(src),
        "--step",
        "StepA1",
        "--json",
        "--poll-interval",
        "0.05",
    )

    assert ran.returncode == 0, ran.stderr
    new = json.loads(ran.stdout)["run_id"]
    said = " ".join(ran.stderr.split())  # one line, wrapped on a narrow terminal
    why = "(Cannot call rmtree on a symbolic link)"
    assert f"shandy: warning: run {old} is kept: cannot remove {folder} {why}" in said
    assert said.count("is kept") == 1
    assert run_ids(tmp_path) == {old, new}  # the other old run went all the same
    assert (elsewhere / "keep.txt").read_text() == "someone's\n"
    ran = shandy(sandbox, tmp_path, "runs", "--prune", "--json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["removed_runs"] == []
    assert f"run {old} is kept" in ran.stderr


def test_a_failure_before_pruning_only_warns(sandbox: Sandbox, tmp_path: Path) -> None:
    """The marker cannot be written (a directory is in its place): the run still exits 0."""
    old = imported(sandbox, tmp_path, "a.csv")
    age(tmp_path, old, 100)
    marker(tmp_path).unlink()
    marker(tmp_path).mkdir()
    os.utime(marker(tmp_path), (time.time() - 2 * DAY,) * 2)
    src = tmp_path / "b.csv"
    src.write_text(leads(3, start=10))
    ran = shandy(sandbox, tmp_path, "import", str(src), "--step", "StepA1", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["completed"] is True
    said = " ".join(ran.stderr.split())
    assert (
        "shandy: warning: pruning runs older than 90 days failed: [Errno 21] Is a directory" in said
    )
    assert old in run_ids(tmp_path)


def test_a_superseded_run_goes_with_its_copy(sandbox: Sandbox, tmp_path: Path) -> None:
    """An old stdin run stopped part way, then a later stdin import into the same step
    completed: it was abandoned for that one, so it is finished, and goes with its copy."""
    args = ("import", "-", "--step", "StepA1", "--json", "--poll-interval", "0.05")
    ran = shandy(sandbox, tmp_path, *args, "--no-wait", stdin=leads(3).encode())
    assert ran.returncode == 0, ran.stderr
    stopped = json.loads(ran.stdout)["run_id"]
    with journal(tmp_path) as db:
        db.execute("UPDATE runs SET outcome = 'interrupted' WHERE id = ?", (stopped,))
        [options] = db.execute("SELECT options FROM runs WHERE id = ?", (stopped,)).fetchone()
    [copy] = [Path(p) for p in json.loads(options)["spools"].values()]
    age(tmp_path, stopped, 100)
    assert not marker(tmp_path).exists()  # a run that did not complete does not prune
    ran = shandy(sandbox, tmp_path, *args, stdin=leads(3, start=50).encode())
    assert ran.returncode == 0, ran.stderr
    assert run_ids(tmp_path) == {json.loads(ran.stdout)["run_id"]}
    assert not copy.exists() and list(copy.parent.iterdir()) == []
