"""Files for people are safe to open in a spreadsheet, and still byte-exact to import again.

Rejects and failures files are opened in Excel, LibreOffice or Sheets to be fixed.
A cell that starts with ``=``, ``@``, a tab or a CR, or with ``+``/``-`` that is not
the start of a number, is run there as a formula (``=HYPERLINK(...)``,
``-2+3+cmd|' /C calc'!A0``): such values are written with the usual leading ``'``,
which spreadsheets show as "this is text" and hide. Reading a file shandy wrote
(known by its trailing ``_file``, ``_row``, ``_reason`` columns) takes the guard off
again, so fix-and-import sends exactly the values that were refused.

A value that itself starts with ``'`` is guarded too: then every guarded value starts
with ``'`` and every value that does is guarded, so ``unguard(guard(v)) == v`` for
every string, and a spreadsheet still shows the value as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

META_COLUMNS = ["_file", "_row", "_reason"]

_TRIGGERS = frozenset("=@\t\r'+-")
# A signed number or phone number (+14155550100, -3.5, +1 (415) 555-0100): shown as is.
# Anything else after a sign (-2+3+cmd|..., +A1) is an expression and is guarded.
_SIGNED_NUMBER = re.compile(r"[+-]\.?[0-9][0-9 .,()/-]*")


def needs_guard(value: str) -> bool:
    if not value or value[0] not in _TRIGGERS:
        return False
    return value[0] not in "+-" or _SIGNED_NUMBER.fullmatch(value) is None


def guard(value: str) -> str:
    """The value as a cell of a file for people: ``'`` before anything a spreadsheet runs."""
    return "'" + value if needs_guard(value) else value


def unguard(value: str) -> str:
    """The value ``guard`` was given: the inverse, for files shandy wrote."""
    return value[1:] if value[:1] == "'" and needs_guard(value[1:]) else value


def written_by_shandy(columns: Sequence[str]) -> bool:
    """A rejects or failures file: its header ends with shandy's own three columns."""
    return len(columns) >= len(META_COLUMNS) and list(columns[-3:]) == META_COLUMNS
