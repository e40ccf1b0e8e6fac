"""The library never prints: it logs (``shandy_cli`` loggers, a NullHandler on the package's
as httpx does), and the CLI installs the one handler that renders the records, once per
invocation, removed when the command ends."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
from incli import run_cli

from shandy_cli import import_files
from shandy_cli.cli.common import StderrHandler
from shandy_cli.config import forget_warnings
from shandy_cli.pipeline.events import NOTICE, Event, Notice
from shandy_cli.sandbox import Sandbox

SECRET = "sk-live-LOGGINGSECRET-42ab"


def leads(path: Path, n: int = 3) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Email", "Nickname"])
        w.writerows([f"log{i}@example.com", f"n{i}"] for i in range(n))
    return path


def test_the_package_logger_is_silent_until_configured() -> None:
    handlers = logging.getLogger("shandy_cli").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_the_library_logs_retries_dotenv_and_notices_and_prints_nothing(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    dotenv = tmp_path / ".env"
    dotenv.write_text("SHANDY_RATE_TOTAL=300\n")
    dotenv.chmod(0o644)
    forget_warnings()
    src = leads(tmp_path / "l.csv").name  # said as given
    sandbox.set_faults(["502"], match="/v1/fields")
    heard: list[Event] = []
    with caplog.at_level(logging.DEBUG, logger="shandy_cli"):
        with_key = import_files(
            [src],
            dry_run=True,
            on_unknown_column="ignore",
            api_key=SECRET,
            base_url=sandbox.url,
            state_dir=tmp_path / "state",
            listener=heard.append,
        )
        keyless = import_files(
            [src], dry_run=True, on_unknown_column="ignore", state_dir=tmp_path / "state"
        )
    assert with_key.rows_read == keyless.rows_read == 3
    assert capsys.readouterr() == ("", "")
    said = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert said[0] == (
        "shandy_cli.config",
        "WARNING",
        ".env is readable by group or others; run: chmod 600 .env",
    )
    retries = [s for s in said if s[0] == "shandy_cli.client"]
    assert len(retries) == 1 and retries[0][1] == "INFO"
    assert retries[0][2].startswith("GET /v1/fields") and "; retry 1 in " in retries[0][2]
    notices = [r for r in caplog.records if getattr(r, NOTICE, False)]
    ignoring = ("shandy_cli.pipeline", "WARNING", "l.csv: ignoring column(s) 'Nickname'")
    no_key = (
        "shandy_cli.pipeline",
        "INFO",
        "no API key: mapping against Saleshandy's system field labels only "
        "(set SALESHANDY_API_KEY or use --sandbox to map against your account)",
    )
    assert [(r.name, r.levelname, r.getMessage()) for r in notices] == [ignoring, no_key, ignoring]
    # the listener hears the same notice, once, as an event
    assert [e for e in heard if isinstance(e, Notice)] == [
        Notice("warning", "l.csv: ignoring column(s) 'Nickname'")
    ]
    assert with_key.warnings == ["l.csv: ignoring column(s) 'Nickname'"]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_the_cli_handler_is_installed_once_per_invocation_and_removed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    logger = logging.getLogger("shandy_cli")
    before = (list(logger.handlers), logger.level, logger.propagate)
    env = {"SALESHANDY_BASE_URL": sandbox.url, "SALESHANDY_API_KEY": SECRET}
    for _ in range(3):
        sandbox.set_faults(["502"], match="/v1/fields")
        result = run_cli("fields", "--json", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        # one retry line, said once: not once per invocation so far
        assert result.stderr.count("; retry 1 in ") == 1, result.stderr
        assert result.stderr.startswith("shandy: GET /v1/fields")
    assert (list(logger.handlers), logger.level, logger.propagate) == before
    assert not any(isinstance(h, StderrHandler) for h in logger.handlers)
