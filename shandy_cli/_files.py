"""Private files: prospects' data is written 0600, to a temp file renamed into place."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shandy_cli.errors import ConfigError

# Windows refuses to replace a file another program holds open: Excel keeps the failures
# CSV it shows open, and a virus scanner holds a new file for a moment. The waits cover
# the scanner; a file left open gets one line saying so, naming the file, not the temp.
REPLACE_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)
_WINDOWS = os.name == "nt"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_NAME_MAX = 100  # characters kept from the text; well under every file system's limit


@contextmanager
def private_output(path: Path, mode: str = "w", **kwargs: object) -> Iterator[IO]:
    """Write ``path`` atomically and 0600: readers never see half a file."""
    make_missing_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(tmp, 0o600)
        with os.fdopen(fd, mode, **kwargs) as fh:  # type: ignore[call-overload]
            yield fh
        replace_file(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``os.replace(src, dst)``, the one way shandy puts a finished file in place: retried
    for a moment where the target is held open (Windows), then an error naming ``dst``."""
    for wait in (*REPLACE_WAITS, None):
        try:
            os.replace(src, dst)
            return
        except PermissionError as exc:
            if wait is None:
                words = "is open in another program: close it and run again"
                why = words if _WINDOWS else "permission denied replacing it"
                raise PermissionError(exc.errno, why, os.fspath(dst)) from None
            time.sleep(wait)


def open_private(path: Path, mode: str = "w", **kwargs: object) -> IO:
    """Open a new file 0600 (for spools that live only inside the private state dir)."""
    make_missing_dirs(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    if os.name == "posix":
        os.fchmod(fd, 0o600)  # O_CREAT's mode only applies to a file it creates
    return os.fdopen(fd, mode, **kwargs)  # type: ignore[call-overload]


def make_missing_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700 whatever the umask.

    A directory that already exists is left exactly as it is: it is someone's
    (a team's 2775 folder, a sticky 1777 ``/tmp``), and its mode is their choice.
    The files shandy writes inside are 0600 on their own.
    """
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made by someone else meanwhile: theirs, not ours to chmod
        if os.name == "posix":
            folder.chmod(0o700)  # mkdir's mode passes through the umask


def safe_filename(text: str, default: str = "file") -> str:
    """One harmless path component made from untrusted text (a server's request id).

    Only letters, digits, ``.``, ``_`` and ``-`` are kept (others become ``_``), no
    leading dot (no hidden files, no ``..``), at most 100 characters. When anything
    had to change, a short hash of the original keeps distinct texts distinct.
    """
    cleaned = _UNSAFE.sub("_", text)[:_NAME_MAX].lstrip(".")
    if cleaned == text and cleaned:
        return cleaned
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{cleaned or default}-{digest}"


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """One file under two names (symlinks followed, hard links seen); False if either is
    missing or unreadable: a file that does not exist yet cannot be an input."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def writable_dir(folder: Path) -> bool:
    """Can we create a file in ``folder``? Probed for real: ``os.access`` says yes to root
    on a read-only mount, and /dev/fd (``<(zcat leads.gz)``) takes no files at all."""
    if not folder.is_dir():
        return False
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".shandy-probe-")
    except OSError:
        return False
    os.close(fd)
    Path(name).unlink(missing_ok=True)
    return True


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700 if missing: it holds prospects' data.

    An existing directory keeps its mode (see ``make_missing_dirs``).
    """
    try:
        make_missing_dirs(path)
        if not path.is_dir():
            raise FileExistsError(path)
    except FileExistsError:
        raise ConfigError(f"{path} exists and is not a directory") from None
    except PermissionError:
        raise ConfigError(
            f"cannot create the directory {path}: permission "
            "denied; choose another (--state-dir, --report-dir)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot use the directory {path}: {exc.strerror or exc}") from None
    return path
