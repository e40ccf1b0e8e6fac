"""One run of an import at a time: an flock on a file named after the import's fingerprint.

The kernel drops an flock when its process dies, however it dies, so a lock
left by a crashed or ``kill -9``-ed run is taken over without any cleanup.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from shandy_cli.errors import InputError


def lock_path(state_dir: Path, fingerprint: str) -> Path:
    return Path(state_dir) / "locks" / f"{fingerprint}.lock"


def is_held(path: Path) -> bool:
    """Is a live process running the import of this lock? Asked of the kernel's flock,
    not of a pid, which a crashed run's may have passed on to another process."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # never made, or gone: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock taken to ask
    return False


class RunLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise InputError(
                f"this import is already running ({holder or 'another process'}); "
                "nothing was sent. Wait for it, or stop it and run the command again to resume"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}, run {self.run_id}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
