"""The process exit codes of the contract, by name: the one place a number is given."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``shandy`` exits with (``../shared/contract.md``, "Exit codes")."""

    OK = 0  # every row read was imported (or, with --dry-run, would be)
    ROWS_FAILED = 1  # finished, but rows were rejected here or failed at Saleshandy
    USAGE = 2  # usage, input or machine error before anything was sent
    AUTH = 3  # the API key was refused
    API = 4  # the API or the network failed after retries: resumable
    TIMEOUT = 5  # --timeout passed while Saleshandy was still processing
    HANGUP = 129  # SIGHUP: 128 + 1
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT
    TERMINATED = 143  # SIGTERM: 128 + 15


# A stop by signal: the journal is saved and `shandy resume` continues.
INTERRUPT_CODES = (ExitCode.INTERRUPTED, ExitCode.HANGUP, ExitCode.TERMINATED)
