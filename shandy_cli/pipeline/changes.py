"""Stage 4b, ``--only-changed``: each valid row against the ledger's last landing of it.

A row whose address never landed in the target is *new* (it goes to the step);
one whose prospect digest (``chunking.prospect_hash``: the item exactly as sent,
with the tags) differs from the one that last landed is *changed* (it goes, as
an update, to the account-level import, the only call that updates a prospect
already in a sequence); the rest are *unchanged* and skipped with the run that
landed them named. The ledger's side is ``journal.LedgerState``.

``Changes.route`` is the rule for one row (the per-row path); ``route_many`` is its
columnar twin, beside it (``tests/test_only_changed.py`` proves them equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shandy_cli.journal import LedgerState

if TYPE_CHECKING:  # numpy loads with the ledger's state (Journal.ledger_state), not here
    import numpy as np

NEW, CHANGED, UNCHANGED = 0, 1, 2
UNCHANGED_SINCE = "unchanged since"  # + the run that landed it: the skip's reason


def update_conflict(conflict: str) -> str:
    """The conflict action updates are sent with: ``noUpdate`` would change nothing."""
    return "overwrite" if conflict == "noUpdate" else conflict


@dataclass
class Changes:
    """The ledger's last landings for the run's account and target."""

    state: LedgerState

    def route(self, key: int, digest: int) -> tuple[int, int]:
        """NEW, CHANGED or UNCHANGED for one row, and the index of the run that last
        landed it (-1 for a new one)."""
        import numpy as np

        keys = self.state.keys
        at = int(np.searchsorted(keys, np.uint64(key)))
        if at == len(keys) or int(keys[at]) != key:
            return NEW, -1
        same = int(self.state.hashes[at]) == digest
        return (UNCHANGED if same else CHANGED), int(self.state.owner[at])

    def route_many(self, keys: np.ndarray, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``route``'s twin for arrays of keys and digests: the routes (uint8) and runs
        (int32, -1 for new rows)."""
        import numpy as np

        known = self.state.keys
        at = np.searchsorted(known, keys)
        inside = at < len(known)
        at = np.where(inside, at, 0)
        found = inside & (known[at] == keys) if len(known) else np.zeros(len(keys), bool)
        routes = np.full(len(keys), NEW, np.uint8)
        if len(known):
            same = found & (self.state.hashes[at] == digests)
            routes[found] = CHANGED
            routes[same] = UNCHANGED
            owners = np.where(found, self.state.owner[at], -1).astype(np.int32)
        else:
            owners = np.full(len(keys), -1, np.int32)
        return routes, owners

    def reason(self, owner: int) -> str:
        """Why an unchanged row is skipped: the run whose landing it matches."""
        return f"{UNCHANGED_SINCE} {self.state.runs[owner]}"
