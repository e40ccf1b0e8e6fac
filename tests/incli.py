"""Run the ``shandy`` command in this process (typer's ``CliRunner``): flag parsing,
rendering, exit codes and stderr, without a subprocess's start-up. Subprocesses stay
for what needs a real process: signals, a wrapper's logging, umask, TLS settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from shandy_cli.cli import app

# Variables a test's environment decides: the rest of os.environ is left as it is.
OURS = ("SALESHANDY_", "SHANDY_", "SSL_CERT_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@dataclass(frozen=True)
class Ran:
    """What a run of the command left: as ``subprocess.CompletedProcess`` names it."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> Ran:
    """``shandy ARGS`` in ``cwd`` with exactly ``env``'s settings (ours unset otherwise)."""
    given = dict(env or {})
    settings: dict[str, str | None] = {k: None for k in os.environ if k.upper().startswith(OURS)}
    settings.update({k: v for k, v in given.items() if k.upper().startswith(OURS)})
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(
            app, list(args), input=stdin, env=settings, catch_exceptions=False
        )
    return Ran(result.exit_code, result.stdout, result.stderr)
