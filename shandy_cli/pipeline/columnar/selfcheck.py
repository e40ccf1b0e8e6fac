"""The columnar encoder's self-check: its items against orjson's, once per process."""

from __future__ import annotations

import polars as pl

from shandy_cli.pipeline.chunking import ESCAPE_ALL, encode_prospect
from shandy_cli.pipeline.columnar.encoder import _Columnar
from shandy_cli.pipeline.columnar.state import Handover
from shandy_cli.pipeline.mapping import PY_WS, UNIT_SEPARATORS, build_mapping
from shandy_cli.pipeline.validation import email_key

_JSON_OK: list[bool] = []  # the check's result, once per process


def _check_json() -> None:
    """Build awkward items the columnar way and compare with orjson (once per process).

    Any difference (a polars upgrade changing an escape or a trim, say) sends
    sources down the per-row path instead of producing different bytes.
    """
    if not _JSON_OK:
        _JSON_OK.append(_json_matches())
    if not _JSON_OK[0]:
        raise Handover("columnar JSON differs from orjson on this polars")


def _json_matches() -> bool:
    samples = [
        "",
        " ",
        "plain",
        'a "quoted" word',
        "back\\slash",
        "tab\there",
        "line\nbreak",
        "\r\n",
        "\x00\x01\x1f\x7f",
        "é ü ß 🙂",
        "\u2028\u2029",
        "/ slash",
        "\x08\x0c",
        "  padded\t",
        "\x85nel\xa0",
        "\u3000wide\u3000",
        "\x1c\x1d\x1e\x1finfo",
        "\u200bzw\u180e",
        '"\\"',
    ]
    columns = ["Email", "First Name", "Note", "Città"]  # sizes count a label's bytes
    m = build_mapping(
        columns, ["Email", "First Name", "Note", "Città", "Tag"], constants={"Tag": 'x "ÿ"\n'}
    )
    reader = _Columnar(m)
    # Each mix of escapes the blocks use: all (sheets), one character, a few.
    for chars in (ESCAPE_ALL, '"', '\\"\t', ""):
        usable = [v for v in samples if all(ch in chars for ch in v if ch in ESCAPE_ALL)]
        rows = [[usable[(r + c) % len(usable)] for c in range(len(columns))] for r in range(64)]
        for row in rows:
            row[0] = "a@b.co"
        raw = pl.DataFrame({f"c{i}": [row[i] for row in rows] for i in range(len(columns))})
        trimmed = raw.select(reader._trim(chars))
        got = reader.items(trimmed, [True] * reader.ncols, chars)
        want = ["," + encode_prospect(m.prospect(row)).decode() for row in rows]
        if got.to_list() != want:
            return False
        if reader.sizes(trimmed, [True] * reader.ncols, chars).tolist() != [
            len(item.encode()) for item in want
        ]:
            return False
    addresses = ["a@b.co", "Mixed.Case@Example.ORG", "x" * 300 + "@y.io", "o'neil+tag@d-1.example"]
    lowered = pl.DataFrame({"lowered": [a.lower() for a in addresses]})
    keys = lowered.select(reader.key).to_series().to_list()
    if keys != [email_key(a) for a in addresses]:
        return False
    # The default trim is Python's for every whitespace character but U+001C..U+001F.
    padded = pl.Series([f"{ch}x{ch}" for ch in PY_WS if ch not in UNIT_SEPARATORS])
    return set(padded.str.strip_chars().to_list()) == {"x"}
