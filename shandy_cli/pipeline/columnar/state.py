"""What the columnar reader shares with the run: the handover, the counts, the run's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shandy_cli.pipeline.trace import RunTrace

if TYPE_CHECKING:
    from collections import Counter

    from shandy_cli.pipeline.chunking import Chunk, Chunker
    from shandy_cli.pipeline.reporting import RowsWriter, SentIndex
    from shandy_cli.pipeline.suppression import Suppression
    from shandy_cli.pipeline.validation import Validator


class Handover(Exception):
    """The columnar path stops here; the per-row path resumes at data row ``done + 1``."""

    def __init__(self, reason: str, done: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.done = done  # data rows (non-blank records) already committed


class Counts(Protocol):
    """What the run counts (``prepare.Prepared`` is one)."""

    rows_read: int
    rows_submitted: int
    rows_rejected: int
    rows_skipped: int
    rows_suppressed: int
    reasons: Counter[str]


@dataclass
class RunState:
    """The run's state the columnar readers commit into, shared with the per-row path.

    ``add_keys`` takes the email keys of rows added to the open chunk (native
    uint64s), ``planned`` each chunk closed (after the keys that belong to it),
    ``progress`` (rows, bytes) after each block. ``suppression``: the run's lists
    (``suppression.Suppression.match_many``, before dedupe), or None. ``trace``
    takes the rows the reader rejects and skips (``trace.RunTrace``).
    """

    validator: Validator
    chunker: Chunker
    rejects: RowsWriter
    sent: SentIndex
    file_index: int
    skip_keys: set[int]
    suppression: Suppression | None
    counts: Counts
    add_keys: Callable[[bytes], None]
    planned: Callable[[Chunk], None]
    progress: Callable[[int, int], None]
    trace: RunTrace = field(default_factory=RunTrace)  # the run's records for `shandy trace`
