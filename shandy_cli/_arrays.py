"""Set membership over arrays of 64-bit keys, the one way shandy asks it.

``np.isin`` sorts both arrays on every call (or builds a table as wide as the
keys' range, which for hashes is all of uint64); a ledger or skip set is
sorted once and each block of keys is then a binary search: O(n log m).
"""

from __future__ import annotations

import numpy as np


def sorted_keys(keys: np.ndarray) -> np.ndarray:
    """``keys`` as a sorted uint64 array, ready for ``members``."""
    return np.sort(np.asarray(keys, np.uint64))


def members(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in ``table`` (sorted, as ``sorted_keys`` makes it)."""
    if not len(table) or not len(values):
        return np.zeros(len(values), bool)
    at = np.searchsorted(table, values)
    at[at == len(table)] = 0
    return table[at] == values
