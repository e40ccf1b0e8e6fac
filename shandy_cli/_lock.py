"""One run of an import at a time: a lock on a file named after the import's fingerprint.

The lock is ``filelock.FileLock``, which is the kernel's lock where there is one: ``flock``
on Linux and macOS, ``msvcrt.locking`` on Windows. The kernel drops either when its
process dies, however it dies, so a crashed or ``kill -9``-ed run's lock is taken over
with no cleanup. Where no kernel lock exists (``fcntl`` missing, as on some embedded or
sandboxed Pythons) ``FileLock`` is filelock's soft lock: a marker file holding the
holder's pid, host and process start time, which the next taker breaks when that
process is gone -- so a dead holder never blocks a run for ever there either.

Who holds the lock (pid, start, run) is kept beside it in ``<fingerprint>.holder``:
the lock file itself is the library's (the soft lock's marker is its owner record).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from shandy_cli._files import ensure_private_dir, open_private
from shandy_cli.errors import InputError

if TYPE_CHECKING:
    import filelock


@functools.cache
def _filelock() -> ModuleType:
    """filelock, imported on first use: it costs ~10-30 ms that ``shandy --version``,
    ``--help`` and ``status`` never need. Without ``fcntl`` it warns at import that only
    its soft lock is available: that is the fallback chosen here, not news for the user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "only soft file lock", UserWarning)
        import filelock

    return filelock


def lock_path(state_dir: Path, fingerprint: str) -> Path:
    return Path(state_dir) / "locks" / f"{fingerprint}.lock"


def _holder_path(path: Path) -> Path:
    return path.with_suffix(".holder")


# The soft lock breaks a marker it cannot read (a damaged disk, a torn write) only once
# it has watched it unchanged for 2 s; a kernel lock needs no wait at all.
SOFT_WAIT = 2.5


def _file_lock(path: Path, *, wait: bool = False) -> filelock.BaseFileLock:
    # Not a singleton and not thread-local: each RunLock is its own claim, as an
    # flock on a fresh descriptor was; 0600 like every file shandy writes.
    module = _filelock()
    soft = module.FileLock is module.SoftFileLock
    lock: filelock.BaseFileLock = module.FileLock(
        path,
        timeout=SOFT_WAIT if wait and soft else 0,
        mode=0o600,
        thread_local=False,
        is_singleton=False,
    )
    return lock


def is_held(path: Path) -> bool:
    """Is a live process running the import of this lock? Asked of the lock itself (the
    kernel's, or the soft lock's liveness check), not of a pid, which a crashed run's may
    have passed on to another process."""
    if not path.parent.is_dir():
        return False  # never made: nobody holds it
    probe = _file_lock(path)
    try:
        probe.acquire()
    except _filelock().Timeout:
        return True
    except OSError:
        return False  # unreadable or gone: nobody we can see holds it
    probe.release()
    return False


class RunLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._lock: filelock.BaseFileLock | None = None

    def __enter__(self) -> RunLock:
        ensure_private_dir(self.path.parent)
        lock = _file_lock(self.path, wait=True)
        try:
            try:
                lock.acquire()
            except _filelock().Timeout:
                if not _break_torn_marker(self.path):
                    raise
                lock.acquire()
        except _filelock().Timeout:
            holder = _read_holder(_holder_path(self.path))
            raise InputError(
                f"this import is already running ({holder or 'another process'}); "
                "nothing was sent. Wait for it, or stop it and run the command again to resume"
            ) from None
        self._lock = lock
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        with open_private(_holder_path(self.path), "w", encoding="utf-8", newline="\n") as f:
            f.write(f"pid {os.getpid()}, started {started}, run {self.run_id}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            # The holder note first: once released, the next run writes its own.
            _holder_path(self.path).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None


# An empty soft-lock marker this old is a holder that died between creating it and
# writing its record (filelock 4 writes the record at once): the soft lock never breaks
# an empty marker itself, so without this it would block the import for ever.
TORN_MARKER_AGE = 60.0


def _break_torn_marker(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    module = _filelock()
    torn = st.st_size == 0 and time.time() - st.st_mtime > TORN_MARKER_AGE
    if module.FileLock is not module.SoftFileLock or not torn:
        return False
    if _holder_path(path).exists():
        return False  # a holder wrote its note: not torn
    path.unlink(missing_ok=True)
    return True


def _read_holder(path: Path) -> str:
    try:
        return path.read_bytes()[:4096].decode("utf-8", "replace").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Wait for, then hold, a lock on ``path``: one writer at a time of a small shared
    file (the profiles index). The same portable lock as ``RunLock``, but blocking."""
    lock = _filelock().FileLock(path, mode=0o600, thread_local=False, is_singleton=False)
    with lock:
        yield
