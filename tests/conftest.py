"""Shared pytest fixtures. Fixtures only: helpers for one test file live in that file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shandy_cli.sandbox import Sandbox, SandboxConfig, start_sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A running sandbox on a free port; imports complete 0.05 s after they are accepted."""
    config = SandboxConfig(state_dir=tmp_path / "sandbox", delay_base=0.05, delay_per_row=0.0)
    with start_sandbox(config) as running:
        yield running


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with any ``SandboxConfig`` settings; all are stopped after the test.

    Defaults match the ``sandbox`` fixture (same state dir, 0.05 s imports), so two
    sandboxes started from one factory share their database unless told otherwise.
    """
    started: list[Sandbox] = []

    def start(**settings: Any) -> Sandbox:
        settings.setdefault("state_dir", tmp_path / "sandbox")
        settings.setdefault("delay_base", 0.05)
        settings.setdefault("delay_per_row", 0.0)
        running = start_sandbox(SandboxConfig(**settings))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
