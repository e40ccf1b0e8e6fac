"""Progress events the pipeline emits; the CLI renders them, a library caller may ignore them.

Events are plain dataclasses passed to one callback, so a script, Airflow or
Dagster task can log them however it likes without knowing about rich.

A run's *notices* (what it decided and warns about, in words) are ``Notice`` events,
which the CLI's progress renders in their place among the progress lines; ``notify``
also logs them (the ``shandy_cli.pipeline`` logger, records marked ``notice=True``) for
a caller that follows the library through ``logging``. The CLI's log handler skips
those records: each notice is printed once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

NOTICE = "notice"  # the attribute that marks a log record as a run's notice
log = logging.getLogger("shandy_cli.pipeline")


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


def notify(listener: Listener, text: str, level: str = "warning") -> None:
    """Say a run's notice: logged (``level`` "warning" or "info"), and heard by ``listener``."""
    log.log(logging.WARNING if level == "warning" else logging.INFO, text, extra={NOTICE: True})
    listener(Notice(level, text))
