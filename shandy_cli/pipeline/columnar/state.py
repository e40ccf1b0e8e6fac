"""What the columnar reader shares with the run: the handover, the counts, the run's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shandy_cli.pipeline.trace import RunTrace

if TYPE_CHECKING:
    from collections import Counter

    import numpy as np

    from shandy_cli.pipeline.changes import Changes
    from shandy_cli.pipeline.chunking import Chunker
    from shandy_cli.pipeline.columnar.arrow import Items, Sizes
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

    ``feed(update, sizes, items, keys, hashes, rows, file)`` adds rows to the chunks
    of the step (or prospect list) or, with ``update``, of the updates
    (``--only-changed``), exactly as the per-row path adds them one by one;
    ``progress`` (rows, bytes) after each block. ``chunker`` is the first stream's:
    whether bodies are written; ``suffix_len`` the longest body suffix of the
    streams, which the oversize rule uses. ``suppression``: the run's lists
    (``suppression.Suppression.match_many``, before dedupe), or None.
    ``changes``: the ledger's last landings (``--only-changed``), or None; ``salt``
    the run's ``chunking.prospect_salt``. ``trace`` takes the rows the reader
    rejects and skips (``trace.RunTrace``).
    """

    validator: Validator
    chunker: Chunker
    rejects: RowsWriter
    sent: SentIndex
    file_index: int
    skip_keys: set[int]
    suppression: Suppression | None
    counts: Counts
    feed: Callable[[bool, np.ndarray, Items | Sizes, np.ndarray, np.ndarray, np.ndarray, str], None]
    progress: Callable[[int, int], None]
    suffix_len: int
    changes: Changes | None = None
    salt: int = 0
    trace: RunTrace = field(default_factory=RunTrace)  # the run's records for `shandy trace`

    @property
    def encodes(self) -> bool:
        """Whether the items' bytes are built: for bodies, or to compare their digests."""
        return self.chunker.writes or self.changes is not None
