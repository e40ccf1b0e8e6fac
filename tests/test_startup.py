"""Start-up: which modules a command imports before it answers (issue 16, item 5).

Timings belong to ``benchmarks/startup.py``; what is asserted here is the cause of
them, the modules loaded, which does not flake on a busy machine. Each probe is a fresh
interpreter running the console script's own entry point (``shandy_cli.__main__``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.core import TyperCommand

from shandy_cli import import_files
from shandy_cli._version import __version__
from shandy_cli.cli import COMMANDS, load_command
from shandy_cli.sandbox import Sandbox
from tests.incli import run_cli

HEAVY = (
    "httpx",
    "polars",
    "numpy",
    "rich",
    "rich.progress",
    "typer",
    "orjson",
    "xxhash",
    "zstandard",
    "keyring",
    "dotenv",
    "rich.console",
    "shandy_cli.config",
    "shandy_cli.profiles",
    "shandy_cli.journal",
    "shandy_cli.pipeline.prepare",
    "shandy_cli.pipeline.sources",
    "shandy_cli.pipeline.trace",
    "shandy_cli.preview",
    "shandy_cli.sandbox",
    "shandy_cli.client",
    "shandy_cli.pipeline",
    "shandy_cli.cli.render",
    "shandy_cli.cli.import_cmd",
)

# Runs ``shandy ARGV`` as the console script does, then reports which HEAVY modules
# the process holds. ``code`` replaces the run when given (``import shandy_cli``).
PROBE = """
import json, sys
heavy, argv, code, out = json.loads(sys.argv[1])
if code:
    exec(code)
else:
    sys.argv = ["shandy", *argv]
    from shandy_cli.__main__ import main
    try:
        main()
    except SystemExit as stop:
        if stop.code not in (None, 0):
            raise
with open(out, "w") as f:
    json.dump([m for m in heavy if m in sys.modules], f)
"""


def loaded(
    tmp_path: Path, *argv: str, code: str = "", env: dict[str, str] | None = None
) -> tuple[set[str], str]:
    """The HEAVY modules ``shandy ARGV`` (or ``code``) left loaded, and its stdout."""
    out = tmp_path / "modules.json"
    given = {k: v for k, v in os.environ.items() if not k.startswith(("SHANDY_", "SALESHANDY_"))}
    given.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([HEAVY, argv, code, str(out)])],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=given,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text())), done.stdout


def test_version_imports_no_command_line_and_no_library(tmp_path: Path) -> None:
    modules, out = loaded(tmp_path, "--version")
    assert out == f"shandy {__version__}\n"
    assert modules == set()


def test_version_among_other_flags_goes_through_typer_and_says_the_same(tmp_path: Path) -> None:
    """Only a bare ``--version`` takes the short cut; with ``-v`` typer answers, alike."""
    modules, out = loaded(tmp_path, "-v", "--version")
    assert out == f"shandy {__version__}\n"
    assert "typer" in modules  # the probe sees what a command line loads


def test_python_dash_m_takes_the_same_short_cut(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shandy_cli", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, f"shandy {__version__}\n")


def test_importing_the_package_stays_light(tmp_path: Path) -> None:
    modules, _ = loaded(tmp_path, code="import shandy_cli")
    assert modules == set()


def test_a_public_name_loads_its_module_on_first_use(tmp_path: Path) -> None:
    """The lazy names are the real objects, and asking for one imports what it needs."""
    code = (
        "import shandy_cli\n"
        "from shandy_cli.client import SaleshandyClient as real\n"
        "assert shandy_cli.SaleshandyClient is real\n"
    )
    modules, _ = loaded(tmp_path, code=code)
    assert {"httpx", "shandy_cli.client"} <= modules


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import shandy_cli

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = shandy_cli.no_such_name  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        exec("from shandy_cli import no_such_name", {})


@pytest.mark.parametrize("argv", [("--help",), ("status", "--help"), ("import", "--help")])
def test_help_loads_neither_polars_nor_numpy(tmp_path: Path, argv: tuple[str, ...]) -> None:
    modules, out = loaded(tmp_path, *argv)
    assert "Usage: shandy" in out
    assert not {"polars", "numpy", "shandy_cli.sandbox"} & modules


@pytest.fixture
def imported(sandbox: Sandbox, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A request id of a one-row import into the sandbox, and the environment to ask it."""
    (tmp_path / "a.csv").write_text("email,first_name\na@example.com,Ann\n", encoding="utf-8")
    result = import_files(
        [tmp_path / "a.csv"],
        api_key="test-key",
        base_url=sandbox.url,
        step_id="StepA1",
        state_dir=tmp_path / "state",
        poll_interval=0.05,
    )
    [request_id] = result.request_ids
    env = {"SALESHANDY_API_KEY": "test-key", "SALESHANDY_BASE_URL": sandbox.url}
    env["SHANDY_STATE_DIR"] = str(tmp_path / "state")
    return request_id, env


def test_status_loads_neither_polars_nor_numpy(
    imported: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    request_id, env = imported
    modules, out = loaded(tmp_path, "status", request_id, "--json", env=env)
    assert request_id in out
    assert "httpx" in modules  # it did talk to the sandbox
    assert not {"polars", "numpy", "shandy_cli.sandbox"} & modules


def test_the_root_help_imports_no_command_module(tmp_path: Path) -> None:
    modules, out = loaded(tmp_path, "--help")
    assert all(name in out for name in COMMANDS)
    assert not {"shandy_cli.cli.render", "shandy_cli.cli.import_cmd"} & modules


def test_the_root_help_imports_no_client_settings_or_keychain(tmp_path: Path) -> None:
    """The root options (--profile, -v, -q) need none of what a connection needs: httpx,
    the settings (dotenv), the profiles (keyring), the journal, rich's console."""
    modules, _ = loaded(tmp_path, "--help")
    connection = {"httpx", "dotenv", "keyring", "rich.console", "shandy_cli.client"}
    assert not (connection | {"shandy_cli.config", "shandy_cli.profiles"}) & modules
    assert not {"shandy_cli.journal", "xxhash", "zstandard"} & modules


def test_status_renders_its_table_without_the_readers_or_the_trace_store(
    imported: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """A human `shandy status` needs the client, the journal and a table: not the
    import's readers (prepare, sources), the preview or the trace store."""
    request_id, env = imported
    modules, out = loaded(tmp_path, "status", request_id, env=env)
    assert request_id in out and "completed" in out  # the table, not JSON
    assert {"httpx", "shandy_cli.journal", "rich.console"} <= modules
    light = {"shandy_cli.pipeline.prepare", "shandy_cli.pipeline.sources"}
    assert not (light | {"shandy_cli.pipeline.trace", "shandy_cli.preview"}) & modules


def test_every_renderer_names_a_real_result_class_and_every_result_has_one() -> None:
    """Renderers are found by their result's class name (so that render.py imports no
    result module): a renamed or moved class must not leave its results unrendered."""
    from importlib import import_module

    from shandy_cli.cli import render

    for name in COMMANDS:
        load_command(name)  # each command module registers its own renderers
    for type_name in render.RENDERERS:
        module, _, cls = type_name.rpartition(".")
        assert isinstance(getattr(import_module(module), cls), type), type_name
    results = {
        "shandy_cli.pipeline.results.ImportResult",
        "shandy_cli.status.StatusResult",
        "shandy_cli.preview.PreviewResult",
        "shandy_cli.catalog.SequencesResult",
        "shandy_cli.catalog.FieldsResult",
        "shandy_cli.pipeline.runs.RunsResult",
        "shandy_cli.pipeline.housekeeping.PruneResult",
        "shandy_cli.pipeline.trace.TraceResult",
    }
    assert results <= set(render.RENDERERS)
    with pytest.raises(TypeError, match="no renderer for object"):
        render.render_result(object(), False)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_root_help_lists_each_command_as_its_own_help_says(name: str) -> None:
    """COMMANDS' first lines are the commands' docstrings': `shandy --help` shows them
    without importing the commands, so they must not drift apart."""
    real = load_command(name)
    listed = TyperCommand(name, help=COMMANDS[name][3])
    for limit in (30, 60, 1000):
        assert listed.get_short_help_str(limit) == real.get_short_help_str(limit)


def test_an_unknown_command_is_still_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    ran = run_cli("imprt", "a.csv", cwd=tmp_path)
    assert ran.returncode == 2 and "No such command 'imprt'" in ran.stderr


def test_the_auth_group_loads_and_lists_its_commands(tmp_path: Path) -> None:
    ran = run_cli("auth", "--help", cwd=tmp_path)
    assert ran.returncode == 0
    assert all(word in ran.stdout for word in ("login", "status", "logout"))
    assert "Usage: shandy auth" in ran.stdout


def test_a_command_registered_the_usual_way_is_still_listed_and_runs(tmp_path: Path) -> None:
    """A command added with ``app.command`` (not through COMMANDS) is not lost."""
    from shandy_cli.cli import app

    def hello() -> None:
        """Say hello."""
        print("hello")

    app.command("hello")(hello)
    try:
        listed = run_cli("--help", cwd=tmp_path)
        ran = run_cli("hello", cwd=tmp_path)
    finally:
        app.registered_commands.pop()
    assert "hello      Say hello." in listed.stdout and "import" in listed.stdout
    assert (ran.returncode, ran.stdout) == (0, "hello\n")
