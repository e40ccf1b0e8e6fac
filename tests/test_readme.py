"""The README's promises: CI runs its test command, and its demo command is the one tested."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)[:2]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert quickstart_commands()[1] == ci[-1]


def test_demo_command_imports_the_example_into_the_sandbox() -> None:
    demo = quickstart_commands()[0]
    assert demo.endswith("shandy import examples/leads.csv --step StepA1 --sandbox")
    assert (ROOT / "examples" / "leads.csv").is_file()


def test_env_example_names_every_contract_variable() -> None:
    env = (ROOT / ".env.example").read_text()
    for name in ("SALESHANDY_API_KEY", "SALESHANDY_BASE_URL", "SHANDY_STATE_DIR", "NO_COLOR"):
        assert name in env
