"""Progress events the pipeline emits; the CLI renders them, a library caller may ignore them.

Events are plain dataclasses passed to one callback, so a script, Airflow or
Dagster task can log them however it likes without knowing about rich.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str  # "reading" | "submitting" | "processing" | "reporting"
    total: int | None = None  # rows / chunks / chunks for the phase, when known


@dataclass(frozen=True)
class ReadProgress:
    file: str
    rows: int
    bytes_read: int
    bytes_total: int | None
    done: bool = False


@dataclass(frozen=True)
class ChunkEvent:
    index: int
    state: str  # planned | sending | accepted | completed | failed
    rows: int
    bytes: int
    request_id: str | None = None
    failed_rows: int | None = None


@dataclass(frozen=True)
class Notice:
    level: str  # "info" | "warning"
    text: str


Event = Phase | ReadProgress | ChunkEvent | Notice
Listener = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default listener: a library call is silent."""
