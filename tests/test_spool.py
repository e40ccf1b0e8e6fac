"""Issue 12, item 6: stream inputs are copied aside within a cap, devices are refused, and
no copy (partial or whole) or chunk body outlives its use.

Every test runs the real `shandy` subprocess against the sandbox over real HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shandy_cli.sandbox import Sandbox

IMPORT_PATH = "/v1/sequences/prospects/import-with-field-name"
KEY = "spool-test-key-123456"


def env_for(sandbox: Sandbox, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    env.update(
        SALESHANDY_BASE_URL=sandbox.url,
        SALESHANDY_API_KEY=KEY,
        SHANDY_STATE_DIR=str(tmp_path / "state"),
        **extra,
    )
    return env


def popen(
    sandbox: Sandbox, tmp_path: Path, *args: str, env: dict[str, str] | None = None, **kw: object
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shandy_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or env_for(sandbox, tmp_path),
        cwd=tmp_path,
        **kw,  # type: ignore[arg-type]
    )


def run(
    sandbox: Sandbox, tmp_path: Path, *args: str, stdin: object = None, **extra: str
) -> tuple[int, str, str]:
    """`shandy import ARGS --step StepA1 --json`; ``stdin`` bytes or an open file."""
    argv = ["import", *args, "--step", "StepA1", "--json", "--poll-interval", "0.05"]
    feed = stdin if isinstance(stdin, bytes) else None
    proc = popen(sandbox, tmp_path, *argv, env=env_for(sandbox, tmp_path, **extra),
                 stdin=subprocess.PIPE if feed is not None else stdin)  # fmt: skip
    out, err = proc.communicate(feed, timeout=60)
    return proc.returncode, out.decode(), err.decode()


def leads(n: int, start: int = 0) -> bytes:
    rows = "".join(f"P{i},p{i}@example.com\n" for i in range(start, start + n))
    return ("First Name,Email\n" + rows).encode()


def posts(sandbox: Sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["path"] == IMPORT_PATH]


def leftovers(tmp_path: Path, pattern: str) -> list[Path]:
    """Stream copies (``STATE_DIR/stdin``) matching ``pattern``."""
    return sorted((tmp_path / "state" / "stdin").glob(pattern))


# -- (b) devices are refused, at once -------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "extra"), [("/dev/zero", ()), ("/dev/urandom", ()), ("/dev/urandom", ("--dry-run",))]
)
def test_a_character_device_is_refused_at_once(
    sandbox: Sandbox, tmp_path: Path, device: str, extra: tuple[str, ...]
) -> None:
    started = time.monotonic()
    code, _out, err = run(sandbox, tmp_path, device, *extra)
    assert code == 2, err
    assert time.monotonic() - started < 20  # today: copies until the disk is full
    assert device in err and "not a file or a pipe" in err and "Traceback" not in err
    assert posts(sandbox) == [] and leftovers(tmp_path, "*.part") == []


def test_stdin_from_a_device_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    with open("/dev/zero", "rb") as zero:
        code, _out, err = run(sandbox, tmp_path, "-", stdin=zero)
    assert code == 2, err
    assert "<stdin>" in err and "not a file or a pipe" in err
    assert leftovers(tmp_path, "*.part") == []


# -- (a) the cap --------------------------------------------------------------------------


def test_stdin_past_the_cap_stops_naming_input_and_setting(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    data = leads(200)
    code, _out, err = run(sandbox, tmp_path, "-", stdin=data, SHANDY_MAX_STREAM_BYTES="1KB")
    assert code == 2, err
    assert "<stdin>" in err and "SHANDY_MAX_STREAM_BYTES" in err and "1,000 bytes" in err
    assert posts(sandbox) == []
    assert leftovers(tmp_path, "*.part") == [] and leftovers(tmp_path, "*.bin") == []


def test_a_stream_of_exactly_the_cap_is_imported(sandbox: Sandbox, tmp_path: Path) -> None:
    data = leads(20)
    code, out, err = run(sandbox, tmp_path, "-", stdin=data,
                         SHANDY_MAX_STREAM_BYTES=str(len(data)))  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["rows_submitted"] == 20
    code, _out, err = run(sandbox, tmp_path, "-", stdin=data + b"P,x@example.com\n",
                          SHANDY_MAX_STREAM_BYTES=str(len(data)))  # fmt: skip
    assert code == 2 and "SHANDY_MAX_STREAM_BYTES" in err


def test_a_fifo_past_the_cap_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    fifo = tmp_path / "leads.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: _write_and_close(fifo, leads(500)), daemon=True)
    writer.start()
    code, _out, err = run(sandbox, tmp_path, str(fifo), SHANDY_MAX_STREAM_BYTES="2kb")
    assert code == 2, err
    assert str(fifo) in err and "SHANDY_MAX_STREAM_BYTES" in err
    assert posts(sandbox) == [] and leftovers(tmp_path, "*.part") == []


def _write_and_close(fifo: Path, data: bytes) -> None:
    try:
        with open(fifo, "wb") as fh:
            fh.write(data)
    except BrokenPipeError:
        pass  # the reader stopped at the cap, as it should


def test_a_bad_cap_is_a_usage_error(sandbox: Sandbox, tmp_path: Path) -> None:
    code, _out, err = run(sandbox, tmp_path, "-", stdin=leads(2), SHANDY_MAX_STREAM_BYTES="lots")
    assert code == 2 and "SHANDY_MAX_STREAM_BYTES" in err and "lots" in err


def test_the_cap_is_read_from_dotenv(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SHANDY_MAX_STREAM_BYTES=100\n")
    (tmp_path / ".env").chmod(0o600)
    code, _out, err = run(sandbox, tmp_path, "-", stdin=leads(20))
    assert code == 2 and "SHANDY_MAX_STREAM_BYTES" in err


# -- (c) a partial copy never outlives a signal ---------------------------------------------


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_signal_during_a_long_stdin_copy_leaves_no_part(
    sandbox: Sandbox, tmp_path: Path, sig: int, code: int
) -> None:
    proc = popen(sandbox, tmp_path, "import", "-", "--step", "StepA1", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    stop = threading.Event()

    def keep_writing() -> None:
        block = leads(2000)
        assert proc.stdin is not None
        try:
            proc.stdin.write(block[: block.index(b"\n") + 1])  # the header once
            while not stop.is_set():
                proc.stdin.write(block[block.index(b"\n") + 1 :])
        except (BrokenPipeError, ValueError, OSError):
            pass  # the process is gone

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 1 << 20 for p in leftovers(tmp_path, "*.part")):
        assert time.monotonic() < deadline, "no spool was being written"
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        stop.set()
    assert proc.returncode == code, err
    assert leftovers(tmp_path, "*.part") == [] and leftovers(tmp_path, "*.bin") == []
    assert posts(sandbox) == [] and b"Traceback" not in err


# -- (d) an input found already imported leaves no copy ---------------------------------------


def test_stdin_already_imported_leaves_no_copy(sandbox: Sandbox, tmp_path: Path) -> None:
    data = leads(5)
    code, _first, err = run(sandbox, tmp_path, "-", stdin=data)
    assert code == 0, err
    assert leftovers(tmp_path, "*.bin") == []  # a completed run's copy has served
    code, again, err = run(sandbox, tmp_path, "-", stdin=data)
    assert code == 0 and json.loads(again)["already_imported"] is True, err
    assert leftovers(tmp_path, "*.bin") == []  # today: a fresh copy is left each time
    assert len(posts(sandbox)) == 1


def test_a_copy_shared_with_an_unfinished_run_is_kept(sandbox: Sandbox, tmp_path: Path) -> None:
    """Copies are named by content: the same stdin sent to two imports is one file, and the
    one that finishes first must not take it from the other (which still joins failures)."""
    data = leads(5) + b"Bad,not-an-email\n"
    code, out, err = run(sandbox, tmp_path, "-", "--no-wait", stdin=data)
    assert code == 1, err  # accepted (one row rejected), still processing: its copy is kept
    first = json.loads(out)
    [copy] = leftovers(tmp_path, "*.bin")
    code, _out, err = run(sandbox, tmp_path, "-", "--tag", "again", stdin=data)
    assert code == 1, err  # the other import (a tag makes it another) completed
    assert copy.exists()  # today: removed under the first run's feet
    request_id = first["chunks"][0]["request_id"]
    proc = popen(sandbox, tmp_path, "status", request_id, "--wait", "--json")
    out_b, err_b = proc.communicate(timeout=60)
    assert proc.returncode in (0, 1), err_b
    assert json.loads(out_b)[0]["completed"] is True
    assert not copy.exists()  # now every run that read it is done


# -- (e) chunk bodies of abandoned runs -----------------------------------------------------


def slow_import(sandbox: Sandbox, tmp_path: Path, src: str, **kw: object) -> subprocess.Popen:
    sandbox.set_faults(["slow:0.3"] * 30, match=IMPORT_PATH)
    return popen(sandbox, tmp_path, "import", src, "--step", "StepA1", "--max-rows", "10",
                 "--json", "--poll-interval", "0.05", **kw)  # fmt: skip


def kill_after(sandbox: Sandbox, proc: subprocess.Popen, accepted: int, sig: int) -> None:
    deadline = time.monotonic() + 30
    while len([r for r in posts(sandbox) if r["status"] == 201]) < accepted:
        assert time.monotonic() < deadline and proc.poll() is None, "the import did not start"
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.communicate(timeout=30)


def bodies(tmp_path: Path) -> dict[str, set[str]]:
    """Chunk body file names (mkstemp's: unique to each attempt), by run id."""
    runs = tmp_path / "state" / "runs"
    return {d.name: {p.name for p in (d / "chunks").glob("chunk-*")} for d in runs.iterdir()
            if (d / "chunks").is_dir()}  # fmt: skip


def test_an_attempt_again_drops_the_bodies_of_the_last(sandbox: Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "l.csv"
    src.write_bytes(leads(100))
    kill_after(sandbox, slow_import(sandbox, tmp_path, str(src)), 2, signal.SIGKILL)
    [(run_id, first)] = bodies(tmp_path).items()
    assert first  # kill -9 left the unsent chunks' bodies
    again = slow_import(sandbox, tmp_path, str(src))
    deadline = time.monotonic() + 30
    while len(bodies(tmp_path).get(run_id, set()) - first) < 10:  # all ten bodies rebuilt
        assert time.monotonic() < deadline and again.poll() is None, "no second attempt"
        time.sleep(0.01)
    again.send_signal(signal.SIGKILL)
    again.communicate(timeout=30)
    second = bodies(tmp_path)[run_id]
    assert second and not (first & second)  # today: both attempts' bodies pile up
    assert len(second) <= 10


def test_a_superseded_run_loses_its_bodies(sandbox: Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_bytes(leads(100))
    kill_after(sandbox, slow_import(sandbox, tmp_path, str(src)), 2, signal.SIGKILL)
    [old] = bodies(tmp_path)
    src.write_bytes(leads(30, start=1000))  # tomorrow's export over the same path
    sandbox.set_faults()
    code, out, err = run(sandbox, tmp_path, str(src))
    assert code == 0, err
    assert json.loads(out)["run_id"] != old
    assert old not in bodies(tmp_path)  # today: the abandoned run's bodies stay for ever


def test_a_stdin_run_resumes_from_its_copy_with_a_terminal_on_stdin(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """`shandy resume` is typed at a terminal: stdin is a device then, and is not read."""
    proc = slow_import(sandbox, tmp_path, "-", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(leads(40))  # four chunks: the polls stay within the status budget
    proc.stdin.close()
    proc.stdin = None
    kill_after(sandbox, proc, 2, signal.SIGHUP)
    assert proc.returncode == 129
    sandbox.set_faults()
    again = popen(
        sandbox,
        tmp_path,
        "resume",
        "--last",
        "--json",
        "--poll-interval",
        "0.05",
        stdin=subprocess.DEVNULL,
    )  # /dev/null: a character device, as a tty is
    try:
        out, err = again.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        again.kill()
        raise AssertionError(again.communicate()[1].decode()[-3000:]) from None
    assert again.returncode == 0, err
    assert json.loads(out)["completed"] is True
    assert leftovers(tmp_path, "*") == []  # the copy has served


def test_prune_takes_old_leftovers_and_nothing_else(sandbox: Sandbox, tmp_path: Path) -> None:
    proc = slow_import(sandbox, tmp_path, "-", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(leads(100))
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() has nothing more to send
    kill_after(sandbox, proc, 2, signal.SIGTERM)
    assert proc.returncode == 143
    [interrupted] = bodies(tmp_path)
    [copy] = leftovers(tmp_path, "*.bin")
    sandbox.set_faults()
    code, _out, err = run(sandbox, tmp_path, "-", "--no-wait", stdin=leads(5, start=500))
    assert code == 0, err
    waiting = [p for p in leftovers(tmp_path, "*.bin") if p != copy]
    spools = tmp_path / "state" / "stdin"
    stale, fresh = spools / ".0123456789abcdef.part", spools / ".fedcba9876543210.part"
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    os.utime(stale, (time.time() - 10 * 86400,) * 2)

    def prune(*args: str) -> dict:
        proc = popen(sandbox, tmp_path, "runs", "--prune", "--json", *args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        return json.loads(out)

    week = prune()  # default: a week; only the kill -9 leftover is that old
    assert week["pruned_runs"] == [] and week["files_removed"] == 1
    assert not stale.exists() and fresh.exists() and copy.exists()
    now = prune("--older-than", "0")
    assert now["pruned_runs"] == [interrupted] and now["bytes_freed"] > 0
    assert not copy.exists() and interrupted not in bodies(tmp_path)
    assert not (tmp_path / "state" / "runs" / interrupted / "sent.idx").exists()
    assert all(p.exists() for p in waiting)  # --no-wait's run awaits `shandy status`
    proc = popen(sandbox, tmp_path, "resume", interrupted)
    _out, err_b = proc.communicate(timeout=60)
    assert proc.returncode == 2 and b"saved copy is gone" in err_b


def test_the_library_caps_an_in_memory_stdin(sandbox: Sandbox, tmp_path: Path) -> None:
    import io

    from shandy_cli import SaleshandyClient, import_files
    from shandy_cli.errors import InputError

    with SaleshandyClient(sandbox.url, KEY) as client, pytest.raises(InputError) as caught:
        import_files(["-"], client=client, stdin=io.BytesIO(leads(100)), step_id="StepA1",
                     state_dir=tmp_path / "state", max_stream_bytes="1KB")  # fmt: skip
    assert caught.value.exit_code == 2 and "<stdin>" in caught.value.message
    assert posts(sandbox) == [] and leftovers(tmp_path, "*") == []
