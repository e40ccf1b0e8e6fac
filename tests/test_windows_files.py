"""Where Windows (and FAT/exFAT drives) differ from Linux in how files are put in place
(issue 16, item 4): a target another program holds open cannot be replaced, and some
file systems have no hard links.

These cannot happen on Linux, so each test makes ``os.replace`` or ``os.link`` answer
as those systems do -- the standard library's call, never shandy's own code -- and the
rest runs for real: real files, and the sandbox over loopback.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shandy_cli import _files, import_files
from shandy_cli._files import private_output, replace_file
from shandy_cli.faults import fault_message
from shandy_cli.pipeline import trace
from shandy_cli.pipeline.spool import spool_copy
from shandy_cli.sandbox import Sandbox
from tests.test_reliability import accepted_posts

REAL_REPLACE = os.replace


def held_open(targets: set[str], times: int | None) -> Callable[..., None]:
    """``os.replace`` as Windows answers while ``targets`` are open in another program:
    PermissionError (WinError 5/32), ``times`` times (None: until the test ends)."""
    left = {"n": times}

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.path.basename(os.fspath(dst)) in targets and (left["n"] is None or left["n"] > 0):
            if left["n"] is not None:
                left["n"] -= 1
            raise PermissionError(errno.EACCES, "Access is denied", os.fspath(src))
        REAL_REPLACE(src, dst, **kwargs)

    return replace


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_files, "REPLACE_WAITS", (0.0, 0.0, 0.0))


def test_a_target_held_for_a_moment_is_replaced_after_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_waits: None
) -> None:
    """A virus scanner holds a fresh file for a moment: the retries wait it out."""
    monkeypatch.setattr(os, "replace", held_open({"out.csv"}, times=2))
    with private_output(tmp_path / "out.csv", newline="") as fh:
        fh.write("email\r\na@example.com\r\n")
    assert (tmp_path / "out.csv").read_bytes() == b"email\r\na@example.com\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp left


@pytest.mark.parametrize(("windows", "words"), [(True, "open in another program"),
                                                (False, "permission denied replacing it")])  # fmt: skip
def test_a_target_held_open_is_one_line_naming_it_and_the_old_file_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_waits: None, windows: bool, words: str
) -> None:
    """Excel keeps the failures CSV it shows open: the error names that file (not the
    temp beside it), says why on Windows, and the file the user has open is untouched."""
    target = tmp_path / "leads.failures.csv"
    target.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(_files, "_WINDOWS", windows)
    monkeypatch.setattr(os, "replace", held_open({target.name}, times=None))
    with pytest.raises(PermissionError) as caught, private_output(target) as fh:
        fh.write("new\n")
    line = fault_message(caught.value)
    assert line.startswith(f"{target}: {'is ' if windows else ''}{words}")
    assert ".part" not in line
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_replace_file_retries_only_a_refusal(tmp_path: Path) -> None:
    """Any other error (the temp is gone) is raised at once, as os.replace's."""
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "missing.part", tmp_path / "out.csv")


def test_a_spool_of_bytes_already_spooled_keeps_the_open_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs fed the same stdin: the second's copy is the first's file, which the first
    may hold open (on Windows it could not be replaced); no replace is tried."""
    first = spool_copy(tmp_path, lambda out: out.write(b"email\na@example.com\n"))
    inode = first.stat().st_ino
    monkeypatch.setattr(os, "replace", held_open({first.name}, times=None))
    with first.open("rb"):
        again = spool_copy(tmp_path, lambda out: out.write(b"email\na@example.com\n"))
    assert again == first and again.stat().st_ino == inode
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]


def no_hard_links(src: Any, dst: Any, **kwargs: Any) -> None:
    """``os.link`` on a FAT/exFAT drive or a share without hard links."""
    raise OSError(errno.EPERM, "Operation not permitted", os.fspath(src))


def test_without_hard_links_the_trace_key_is_made_once_and_every_run_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight runs start at once on a drive with no hard links: one key wins, all use it,
    and it is 0600 with no temp or lock leftovers but the lock's own file."""
    monkeypatch.setattr(os, "link", no_hard_links)
    keys: list[tuple[int, int] | None] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        keys.append(trace.load_secret(tmp_path, create=True))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and keys[0] is not None
    key_file = trace.secret_path(tmp_path)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert trace.load_secret(tmp_path, create=False) == keys[0]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_an_import_whose_failures_file_is_held_open_says_so_and_resumes(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_waits: None
) -> None:
    """The failures file of the last run is open in Excel when the next run ends: exit 4
    (rows were sent), one line naming the file; once it is closed, resuming writes it and
    sends nothing again."""
    leads = tmp_path / "leads.csv"
    leads.write_text("email,first_name\na@example.com,Ann\nbad@b\u00fccher.de,Bob\n", "utf-8")
    kwargs: dict[str, Any] = dict(
        api_key="test-key",
        base_url=sandbox.url,
        step_id="StepA1",
        state_dir=tmp_path / "state",
        poll_interval=0.05,
    )
    failures = "leads.failures.csv"
    monkeypatch.setattr(_files, "_WINDOWS", True)
    monkeypatch.setattr(os, "replace", held_open({failures}, times=None))
    ended = import_files([leads], **kwargs)
    assert ended.exit_code == 4 and ended.error
    assert f"{failures}: is open in another program: close it and run again" in ended.error
    assert "shandy resume" in ended.error
    posts = len(accepted_posts(sandbox))
    monkeypatch.setattr(os, "replace", REAL_REPLACE)
    result = import_files([leads], **kwargs)
    assert result.rows_failed == 1 and result.failures_file
    assert Path(result.failures_file).name == failures
    assert len(accepted_posts(sandbox)) == posts  # nothing sent again
