"""The house rules a reviewer would otherwise check by hand: ruff clean, formatted, typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args",
    [
        ("ruff", "check", "."),
        ("ruff", "format", "--check", "."),
        ("mypy",),  # files and options in pyproject.toml
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_tree_is_clean(args: tuple[str, ...]) -> None:
    if tool(args[0], "--version").returncode != 0:
        pytest.fail(f"{args[0]} is not installed: pip install -e '.[test]'")
    done = tool(*args)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
