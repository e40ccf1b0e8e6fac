"""Every desktop (issue 16, item 4): shandy imports and runs where ``fcntl`` does not exist.

Each test runs real processes with ``sys.modules["fcntl"] = None`` set before shandy_cli
is imported -- ``import fcntl`` then raises ImportError, as on Windows -- so the run lock is
filelock's soft lock (a pid + start-time marker), and the journal, the lock and an import
against the sandbox must still be right: one run at a time, and a killed holder's lock
taken over at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shandy_cli.sandbox import Sandbox
from tests.test_reliability import (
    IMPORT_PATH,
    KEY,
    accepted_posts,
    import_args,
    landed,
    wait_for,
    write_leads,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL/SIGSTOP")

# Hide fcntl, then run the rest of argv as `python -m shandy_cli ...` would, or a script.
NO_FCNTL = "import sys; sys.modules['fcntl'] = None; "
AS_SHANDY = NO_FCNTL + "import runpy; sys.argv[0] = 'shandy'; runpy.run_module('shandy_cli', run_name='__main__')"  # fmt: skip


def no_fcntl_proc(
    sandbox: Sandbox | None, tmp_path: Path, code: str, *args: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(SHANDY_STATE_DIR=str(tmp_path / "state"), PYTHONWARNINGS="error")
    if sandbox is not None:
        env.update(SALESHANDY_BASE_URL=sandbox.url, SALESHANDY_API_KEY=KEY)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def shandy_no_fcntl(sandbox: Sandbox, tmp_path: Path, *args: str) -> tuple[int, Any, str]:
    proc = no_fcntl_proc(sandbox, tmp_path, AS_SHANDY, *args)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, json.loads(out) if out.strip() else {}, err


def runs(sandbox: Sandbox, tmp_path: Path) -> list[dict]:
    code, doc, err = shandy_no_fcntl(sandbox, tmp_path, "runs", "--json")
    assert code == 0, err
    return list(doc)


# A process that takes the run lock without fcntl, says so, and holds it until killed.
HOLDER = (
    NO_FCNTL
    + """
import time
from pathlib import Path
from shandy_cli._lock import RunLock, _filelock, lock_path
filelock = _filelock()  # imported by shandy: its "soft lock only" warning is not shown
assert not filelock.has_fcntl and filelock.FileLock is filelock.SoftFileLock
with RunLock(lock_path(Path(sys.argv[1]), "fp"), "run-holder"):
    print("held", flush=True)
    time.sleep(600)
"""
)

# Try the same lock: prints is_held, then the lock's answer.
TAKER = (
    NO_FCNTL
    + """
from pathlib import Path
from shandy_cli._lock import RunLock, is_held, lock_path
from shandy_cli.errors import InputError
path = lock_path(Path(sys.argv[1]), "fp")
print(is_held(path))
try:
    with RunLock(path, "run-taker"):
        print("taken")
except InputError as exc:
    print(exc)
"""
)


def take(tmp_path: Path) -> list[str]:
    proc = no_fcntl_proc(None, tmp_path, TAKER, str(tmp_path / "state"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and not err, err
    return out.splitlines()


def test_without_fcntl_the_lock_excludes_a_live_holder_and_frees_a_killed_ones(
    tmp_path: Path,
) -> None:
    holder = no_fcntl_proc(None, tmp_path, HOLDER, str(tmp_path / "state"))
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        held, answer = take(tmp_path)
        assert held == "True"
        assert "already running" in answer and f"pid {holder.pid}" in answer
        assert "run-holder" in answer
    finally:
        holder.kill()  # SIGKILL: no __exit__, no cleanup; the marker stays behind
        holder.communicate(timeout=30)
    started = time.monotonic()
    assert take(tmp_path) == ["False", "taken"]
    assert time.monotonic() - started < 10  # taken over at once, not after an expiry
    assert take(tmp_path) == ["False", "taken"]  # and released again by the taker
    assert not list((tmp_path / "state" / "locks").glob("*.holder"))


def test_without_fcntl_an_import_runs_journals_and_lands_every_row(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 25)
    code, doc, err = shandy_no_fcntl(sandbox, tmp_path, *import_args(src))
    assert code == 0, err
    assert doc["completed"] is True and doc["chunks_sent"] == 3
    assert "Warning" not in err and "Traceback" not in err
    assert landed(sandbox) == {f"p{i}@example.com" for i in range(25)}
    assert [r["outcome"] for r in runs(sandbox, tmp_path)] == ["completed"]
    code, again, err = shandy_no_fcntl(sandbox, tmp_path, *import_args(src))
    assert code == 0, err
    assert again["chunks_sent"] == 0  # the journal knew every row had landed


def test_without_fcntl_a_second_run_is_refused_and_a_killed_run_resumes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    src = write_leads(tmp_path / "l.csv", 30)
    sandbox.set_faults(["slow:1.0"] * 3, match=IMPORT_PATH)
    first = no_fcntl_proc(sandbox, tmp_path, AS_SHANDY, *import_args(src))
    wait_for(lambda: any(r["path"] == IMPORT_PATH for r in sandbox.requests()), timeout=30)
    first.send_signal(signal.SIGSTOP)
    try:
        code, _doc, err = shandy_no_fcntl(sandbox, tmp_path, *import_args(src))
        assert code == 2, err
        assert f"pid {first.pid}" in err and "already running" in err
        assert "Traceback" not in err
        # its holder is alive (stopped): the journal, asked without fcntl, says so
        assert [r["outcome"] for r in runs(sandbox, tmp_path)] == ["running"]
    finally:
        first.kill()
        first.communicate(timeout=30)
    # the killed holder's soft lock is seen as dead: crashed, not "running" for ever
    assert [r["outcome"] for r in runs(sandbox, tmp_path)] == ["crashed"]
    code, doc, err = shandy_no_fcntl(sandbox, tmp_path, *import_args(src))
    assert code == 0, err
    assert doc["completed"] is True
    assert landed(sandbox) == {f"p{i}@example.com" for i in range(30)}
    assert len(accepted_posts(sandbox)) >= 3


# A damaged marker (garbage, or empty from a holder killed mid-creation) does not block
# an import for ever; a fresh empty one (a holder still writing it) is left alone.
DAMAGED = (
    NO_FCNTL
    + """
import os, time
from pathlib import Path
from shandy_cli._lock import RunLock, lock_path
from shandy_cli.errors import InputError
def attempt(name, content, age):
    path = lock_path(Path(sys.argv[1]), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (time.time() - age,) * 2)
    try:
        with RunLock(path, "run"):
            return "taken"
    except InputError as exc:
        return "refused" if "already running" in str(exc) else str(exc)
print(attempt("garbage", b"\\x00\\xffnot a record\\n", 0))
print(attempt("torn", b"", 3600))
print(attempt("fresh", b"", 0))
"""
)


def test_without_fcntl_a_damaged_lock_marker_is_taken_over(tmp_path: Path) -> None:
    proc = no_fcntl_proc(None, tmp_path, DAMAGED, str(tmp_path / "state"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and not err, err
    assert out.split() == ["taken", "taken", "refused"]


# -- shell completion and installs ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def completion_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(extra)
    return env


def test_shell_completion_completes_commands_and_prints_its_script(tmp_path: Path) -> None:
    shandy = Path(sys.executable).with_name("shandy")
    if not shandy.exists():
        pytest.skip("the shandy entry point is not installed in this environment")
    env = completion_env(_SHANDY_COMPLETE="complete_bash", COMP_WORDS="shandy imp", COMP_CWORD="1")
    done = subprocess.run([shandy], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["import"], done.stderr
    script = subprocess.run(
        [shandy, "--show-completion"],
        env=completion_env(SHELL="/bin/bash"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0 and "_SHANDY_COMPLETE" in script.stdout, script.stderr


def installed_shandy_runs(bin_dir: Path, tmp_path: Path) -> None:
    """The installed command: its version, and the README's demo import into the sandbox."""
    shandy = bin_dir / ("shandy.exe" if sys.platform == "win32" else "shandy")
    env = completion_env(SHANDY_STATE_DIR=str(tmp_path / "state"))
    version = subprocess.run([shandy, "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("shandy "), version.stderr
    demo = [shandy, "import", str(REPO / "examples" / "leads.csv"), "--step", "StepA1"]
    ran = subprocess.run([*demo, "--sandbox", "--json"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)  # fmt: skip
    assert ran.returncode == 1, ran.stderr  # the example holds invalid emails on purpose
    assert json.loads(ran.stdout)["completed"] is True


def tool(name: str) -> str | None:
    """``name`` from this venv (the test extra installs pipx and uv), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


@pytest.mark.timeout(900)
def test_pipx_install_gives_a_working_shandy(tmp_path: Path) -> None:
    pipx = tool("pipx")
    if pipx is None:
        pytest.skip("pipx is not installed (pip install pipx to run this)")
    home = tmp_path / "pipx"
    env = completion_env(PIPX_HOME=str(home), PIPX_BIN_DIR=str(home / "bin"),
                         PIPX_MAN_DIR=str(home / "man"))  # fmt: skip
    # pipx itself imports fcntl on POSIX: a suite run with fcntl hidden (PYTHONPATH's
    # sitecustomize) hides it from the installer, not from the shandy it installs
    tool_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    done = subprocess.run([pipx, "install", str(REPO)], env=tool_env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    installed_shandy_runs(home / "bin", tmp_path)


@pytest.mark.timeout(900)
def test_uv_tool_install_gives_a_working_shandy(tmp_path: Path) -> None:
    uv = tool("uv")
    if uv is None:
        pytest.skip("uv is not installed (pip install uv to run this)")
    home = tmp_path / "uv"
    env = completion_env(UV_TOOL_DIR=str(home / "tools"), UV_TOOL_BIN_DIR=str(home / "bin"))
    done = subprocess.run([uv, "tool", "install", "--native-tls", str(REPO)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    installed_shandy_runs(home / "bin", tmp_path)
