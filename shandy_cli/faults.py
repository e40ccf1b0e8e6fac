"""Faults of the machine (a full disk, a damaged journal, an unusable state dir): their one
line for people and their exit code, in one place for the library and the CLI alike.

The exit code rule: 2 if nothing was sent, 4 once anything was — never 1, which says
the run finished with some rows rejected, and which cron scripts accept as success.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from shandy_cli.errors import FaultError, JournalDamaged, ShandyError, interrupt_exit_code
from shandy_cli.exits import ExitCode

JOURNAL_NAME = "journal.sqlite3"

# Words a person knows, for the errors a full or odd file system gives.
_OS_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or its size limit",
    errno.EROFS: "read-only file system",
    errno.ELOOP: "a loop of symbolic links",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EISDIR: "is a directory, not a file",
    errno.EEXIST: "exists and is not a directory",
}
# What SQLite says when the journal file is not (or no longer) a database.
_DAMAGED = ("file is not a database", "malformed", "not a database")


def fault_message(exc: BaseException, state_dir: Path | None = None) -> str:
    """One line saying what went wrong and where."""
    if isinstance(exc, ShandyError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted before anything was sent"
    if isinstance(exc, OSError):
        return _os_message(exc, state_dir)
    if isinstance(exc, sqlite3.Error):
        return _journal_message(exc, state_dir)
    return f"internal error: {type(exc).__name__}: {exc} (run with -v for details)"


def stop_code(exc: BaseException, sent: bool) -> int:
    """The exit code of a run that stopped on ``exc``: the error's own, except that
    nothing but a signal, the key or an API failure may say less than "resumable" (4)
    once anything was sent."""
    if isinstance(exc, KeyboardInterrupt):
        return interrupt_exit_code(exc)  # 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
    code = exc.exit_code if isinstance(exc, ShandyError) else ExitCode.USAGE
    said_less = (ExitCode.OK, ExitCode.ROWS_FAILED, ExitCode.USAGE)  # "finished", "nothing sent"
    if code in said_less and sent:
        return ExitCode.API
    return ExitCode.USAGE if code in (ExitCode.OK, ExitCode.ROWS_FAILED) else code


def as_fault(exc: Exception, *, sent: bool, state_dir: Path | None = None) -> ShandyError:
    """``exc`` as the ``ShandyError`` the caller raises: ours pass through unless sending
    changes their exit code; anything else becomes a ``FaultError`` with its one line."""
    code = stop_code(exc, sent)
    if isinstance(exc, ShandyError) and exc.exit_code == code:
        return exc
    if isinstance(exc, sqlite3.DatabaseError) and _is_damaged(exc) and not sent:
        return JournalDamaged(fault_message(exc, state_dir))
    return FaultError(fault_message(exc, state_dir), sent=code == ExitCode.API)


def journal_fault(exc: sqlite3.Error, path: Path) -> FaultError:
    """The error opening the journal at ``path`` raises instead of SQLite's."""
    message = _journal_message(exc, path.parent)
    return JournalDamaged(message) if _is_damaged(exc) else FaultError(message)


def _is_damaged(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(words in text for words in _DAMAGED)


def _os_message(exc: OSError, state_dir: Path | None) -> str:
    words = _OS_WORDS.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    if exc.filename is not None:
        return f"{exc.filename}: {words}"
    # A write to an open file names no file: the run writes its files under the state dir.
    where = f" writing the run's files (STATE_DIR {state_dir})" if state_dir else ""
    return f"{words}{where}"


def _journal_message(exc: sqlite3.Error, state_dir: Path | None) -> str:
    path = (state_dir / JOURNAL_NAME) if state_dir else Path(JOURNAL_NAME)
    text = str(exc)
    if _is_damaged(exc):
        return (
            f"journal {path} is damaged ({text}): move it aside (mv {path} {path}.damaged) and "
            "run again; the runs it recorded can then no longer be resumed"
        )
    if "full" in text.lower():
        return f"no space left on device for the journal {path} (STATE_DIR {path.parent})"
    return f"the journal {path} could not be used: {text} (a full disk or a read-only STATE_DIR?)"
