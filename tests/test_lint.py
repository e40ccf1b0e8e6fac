"""The house rules a reviewer would otherwise check by hand: ruff clean, formatted, typed,
and the formatter never turned off."""

from __future__ import annotations

import re
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


FORMATTER_OFF = re.compile(r"#\s*fmt:\s*(skip|off)\b")


def formatter_escapes(root: Path) -> list[str]:
    """``path:line`` of every comment that turns the formatter off, under ``root``."""
    return [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted(root.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FORMATTER_OFF.search(line)
    ]


def test_the_formatter_is_never_turned_off() -> None:
    """No ``# fmt: skip`` or ``# fmt: off`` in the package: reshape what needs one."""
    assert formatter_escapes(ROOT / "shandy_cli") == []


def test_the_formatter_check_finds_what_it_looks_for() -> None:
    assert formatter_escapes(ROOT / "shandy_cli" / "sandbox") == []  # fixed: stays fixed
    assert FORMATTER_OFF.search("x = (1,)  # fmt: skip") and FORMATTER_OFF.search("#fmt:off")
    assert not FORMATTER_OFF.search("# fmt: on") and not FORMATTER_OFF.search("fmt: skipped")
