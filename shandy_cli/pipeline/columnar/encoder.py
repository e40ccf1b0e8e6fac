"""The block encoder: polars expressions that trim, check and JSON-encode a block's rows.

Each expression is the columnar twin of a per-row rule, imported from that rule's
home: the trim (``mapping.PY_WS``), the email pattern (``validation.FAST_EMAIL``),
the dedupe key (``validation.email_key``), the escapes (``chunking.ESCAPES``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import polars as pl
import polars_hash as plh

from shandy_cli.pipeline.chunking import ESCAPE_ALL, ESCAPED, ESCAPES
from shandy_cli.pipeline.columnar.arrow import Items, Sizes
from shandy_cli.pipeline.columnar.framing import (
    _Bytes,
    _escape_chars,
    _records,
    _structure_ok,
)
from shandy_cli.pipeline.columnar.state import Handover
from shandy_cli.pipeline.mapping import PY_WS, UNIT_SEPARATORS, Mapping
from shandy_cli.pipeline.suppression import domain_key
from shandy_cli.pipeline.validation import (
    EMAIL_LABEL,
    FAST_EMAIL,
    MAX_EMAIL,
    MAX_LOCAL,
    email_key,
    is_plausible_email,
)


@dataclass
class _Parsed:
    """One block after the parallel stage (polars and numpy, mostly off the GIL)."""

    rows: int
    records: np.ndarray  # each row's record index in the block (blank records are not rows)
    valid: np.ndarray  # bool: a plausible address
    missing: np.ndarray  # bool
    keys: np.ndarray  # email keys of the ``valid`` rows, in order (the ledger's, 0 folded)
    bad: np.ndarray  # rows with an implausible address, and the addresses
    bad_values: list[str]
    items: Items | Sizes  # every row's JSON item with a leading comma (rejected rows' too)
    numbers: np.ndarray | None = None  # row numbers, when not the next ones (a sheet's gaps)
    raw: pl.DataFrame | None = None  # a sheet block's untrimmed cells, for rejects
    nbytes: int = 0
    block: bytes = b""  # a CSV block's records, for rejects: see _Commit.raw_rows
    starts: np.ndarray | None = None  # byte offsets of each row's record in ``block``
    ends: np.ndarray | None = None
    # the domain keys of the ``valid`` rows (suppression.domain_key), when the run's
    # suppression lists name domains
    dkeys: np.ndarray | None = None
    # every row's ``chunking.prospect_hash`` before the run's salt (uint64, parallel to
    # ``items``), when items are built
    hashes: np.ndarray | None = None


class _Columnar:
    """One source through the columnar stages, committing into the run's shared state."""

    def __init__(self, mapping: Mapping, encode: bool = True, domains: bool = False) -> None:
        self.mapping = mapping
        self.encode = encode  # False: the items' sizes only (a plan writes no bodies)
        self.domains = domains  # compute each address's domain key (suppressed domains)
        self.ncols = len(mapping.columns)
        self.names = [f"c{i}" for i in range(self.ncols)]
        self.schema = dict.fromkeys(self.names, pl.String)
        m = mapping
        self.mapped = [i for i, label in enumerate(m.targets) if label is not None]
        self.keys_json = {i: orjson.dumps(m.targets[i]).decode() for i in self.mapped}
        self.tail = "".join(
            "," + orjson.dumps(label).decode() + ":" + orjson.dumps(value).decode()
            for label, value in m.constants.items()
        )
        email_cols = [i for i in self.mapped if m.targets[i] == EMAIL_LABEL]
        self.email_index = email_cols[0] if email_cols else None
        self.email_col = f"t{email_cols[0]}" if email_cols else None
        # All-empty records are skipped and not numbered (short rows read as null).
        self.blank = pl.sum_horizontal([pl.col(n).str.len_bytes() for n in self.names]) == 0
        # The longest record that can be blank: every field "" (``parse`` skips the
        # filter for blocks without a record this short).
        self.blank_bytes = 3 * self.ncols + 1
        self.key = plh.col("lowered").nchash.xxh3_64().alias("key")
        # A plausible address has one "@": its domain is what follows, as in
        # Suppression.match (``rpartition``); lowercased as the key's is.
        self.domain = (
            pl.col("lowered").str.splitn("@", 2).struct.field("field_1").fill_null("")
        ).alias("domain")
        self.dkey = plh.col("domain").nchash.xxh3_64().alias("dkey")
        # Columns found to need JSON escapes stay escaped: no need to ask again.
        self.sticky: frozenset[int] = frozenset()
        self._item_exprs: dict[tuple[tuple[bool, ...], str], pl.Expr] = {}
        # (trim, checks, output) for the sticky columns and a block's characters
        self._check_exprs: dict[
            tuple[frozenset[int], str], tuple[list[pl.Expr], list[pl.Expr], pl.Expr]
        ] = {}

    # -- what Mapping.prospect + orjson do, as column expressions

    def _trim(self, chars: str) -> list[pl.Expr]:
        """Trimmed values, null when empty (a null drops out of the JSON join).

        Exactly ``str.strip()``: polars' default trim is Rust's (Unicode
        White_Space), which is Python's but for U+001C..U+001F -- spelled out
        (slower) only for blocks that hold one (``chars`` lists them).
        """
        full = any(ch in chars for ch in UNIT_SEPARATORS)
        return [
            pl.col(f"c{i}")
            .str.strip_chars(PY_WS if full else None)
            .replace("", None)
            .alias(f"t{i}")
            for i in self.mapped
        ]

    def items(
        self, trimmed: pl.DataFrame, escape: list[bool], chars: str = ESCAPE_ALL
    ) -> pl.Series:
        return trimmed.select(self._item_expr(escape, chars)).to_series()

    def _item_expr(self, escape: list[bool], chars: str) -> pl.Expr:
        key = (tuple(escape), chars)
        if key not in self._item_exprs:
            if len(self._item_exprs) > 256:  # many mixes of characters: build afresh
                self._item_exprs.clear()
            frags = []
            for i in self.mapped:
                value = pl.col(f"t{i}")
                if escape[i] and len(chars) == 1:
                    value = value.str.replace_all(
                        chars, ESCAPED[ESCAPES.index(chars)], literal=True
                    )
                elif escape[i] and chars:  # only the ones present: fewer patterns, faster
                    value = value.str.replace_many(
                        list(chars), [ESCAPED[ESCAPES.index(ch)] for ch in chars]
                    )
                frags.append(pl.concat_str([pl.lit(self.keys_json[i] + ':"'), value, pl.lit('"')]))
            body = pl.concat_str(frags, separator=",", ignore_nulls=True)
            item = pl.concat_str([pl.lit(",{"), body, pl.lit(self.tail + "}")])
            self._item_exprs[key] = item.alias("item")
        return self._item_exprs[key]

    def _output(self, escape: list[bool], chars: str) -> pl.Expr:
        """The items, or only their sizes when no body is written, as column "out"."""
        if self.encode:
            return self._item_expr(escape, chars).alias("out")
        return self._size_expr(escape, chars).alias("out")

    def sizes(self, trimmed: pl.DataFrame, escape: list[bool], chars: str) -> np.ndarray:
        """``len`` of each row's item, without building it (rows with a value at least:
        an item without one is never written)."""
        return trimmed.select(self._size_expr(escape, chars)).to_series().to_numpy()

    def _size_expr(self, escape: list[bool], chars: str) -> pl.Expr:
        # ,{ + the fragments '"Label":"value"' joined by commas + tail + }
        parts = []
        for i in self.mapped:
            value = pl.col(f"t{i}")
            n = value.str.len_bytes().cast(pl.Int64) + (len(self.keys_json[i].encode()) + 4)
            if escape[i]:
                n = n + _escape_growth(value, chars)
            parts.append(n)
        fixed = 2 + len(self.tail.encode())
        return (pl.sum_horizontal(parts) + fixed).alias("size")

    def _checks(self, sticky: frozenset[int], chars: str) -> list[pl.Expr]:
        email = pl.col(self.email_col).fill_null("") if self.email_col else pl.lit("")
        exprs = [
            email.alias("email"),
            (
                email.str.contains(FAST_EMAIL)
                & (email.str.len_bytes() <= MAX_EMAIL)
                & (email.str.find("@", literal=True) <= MAX_LOCAL)
            ).alias("fast"),
            (email.str.len_bytes() == 0).alias("missing"),
            email.str.to_lowercase().alias("lowered"),
        ]
        others = [pl.col(f"t{i}") for i in self.mapped if i not in sticky]
        if chars and others:
            # One question for all the columns not yet known to need escapes (asking
            # each costs ~2x); ``_new_escapes`` asks which only when one does.
            joined = pl.concat_str(others, ignore_nulls=True)
            exprs.append(_holds(joined, chars).any().alias("escapes"))
        return exprs

    def _new_escapes(
        self, frame: pl.DataFrame, chars: str, sticky: frozenset[int]
    ) -> frozenset[int]:
        """The columns not in ``sticky`` that hold a character of ``chars``."""
        cols = [i for i in self.mapped if i not in sticky]
        found = frame.select([_holds(pl.col(f"t{i}"), chars).any() for i in cols]).row(0)
        return frozenset(i for i, yes in zip(cols, found, strict=True) if yes)

    # -- stage A: one block, in a worker thread

    def parse(self, block: bytes, delimiter: str, codec: str | None = None) -> _Parsed:
        """A block of whole CSV records, in UTF-8 or in the single-byte ``codec``."""
        size = len(block)  # the file's bytes, for progress
        if codec is not None:  # strict: a byte the codec lacks is the per-row path's to report
            try:
                block = block.decode(codec).encode("utf-8")
            except UnicodeDecodeError:
                raise Handover(f"bytes that are not {codec}") from None
        found = _Bytes.scan(block)
        problem = _structure_ok(found, ord(delimiter), final=not block.endswith(b"\n"))
        if problem:
            raise Handover(problem)
        starts, ends = _records(found)
        try:
            raw = pl.read_csv(
                block,
                has_header=False,
                schema=self.schema,
                separator=delimiter,
                empty_string_is_null=False,
                quote_char='"',
                encoding="utf8",
            )
        except Exception as exc:  # any parser complaint: the per-row path decides
            raise Handover(f"polars: {str(exc).splitlines()[0]}") from None
        if raw.height != len(starts):  # records as polars counts them: they must agree
            raise Handover(f"polars read {raw.height} records, not {len(starts)}")
        chars = _escape_chars(block, found, len(ends), ord(delimiter))
        blanks = bool(len(ends)) and int((ends - starts).min()) <= self.blank_bytes
        p = self._stages(raw, chars, blanks)
        p.nbytes, p.block = size, block
        p.starts, p.ends = starts[p.records], ends[p.records]
        return p

    def parse_frame(
        self, raw: pl.DataFrame, first: int, chars: str = ESCAPE_ALL, blanks: bool = True
    ) -> _Parsed:
        """A block of a text frame's rows (columns c0..), numbered from ``first``;
        ``chars``: the characters JSON escapes that its cells may hold; ``blanks``:
        whether all-empty rows are skipped (a sheet's), or rows like any other."""
        p = self._stages(raw, chars, blanks)
        p.numbers = first + p.records
        p.raw = raw
        return p

    def _stages(self, raw: pl.DataFrame, chars: str, blanks: bool) -> _Parsed:
        """The stages after parsing.  ``chars``: the characters JSON escapes that
        the block may hold (see ``_escape_chars``); ``blanks``: whether it may
        hold an all-empty record."""
        sticky = self.sticky
        if (sticky, chars) not in self._check_exprs:
            if len(self._check_exprs) > 256:
                self._check_exprs.clear()
            self._check_exprs[sticky, chars] = (
                self._trim(chars),
                self._checks(sticky, chars),
                self._output([i in sticky and bool(chars) for i in range(self.ncols)], chars),
            )
        trim, checks, output = self._check_exprs[sticky, chars]
        query = raw.lazy().with_row_index("record")
        if blanks:
            query = query.filter(~self.blank)
        # The items (or their sizes) in the same query, escaped as the columns known
        # to need it are; built again below in the rare block where another does.
        query = query.with_columns(trim).with_columns(checks)
        if self.domains:
            query = query.with_columns(self.domain).with_columns(self.key, self.dkey, output)
        else:
            query = query.with_columns(self.key, output)
        frame = query.collect(engine="in-memory")
        out = frame.get_column("out")
        if frame.height and "escapes" in frame.columns and frame["escapes"][0]:
            sticky = sticky | self._new_escapes(frame, chars, sticky)
            self.sticky = self.sticky | sticky  # another worker's may be lost: asked again
            escape = [i in sticky and bool(chars) for i in range(self.ncols)]
            out = frame.select(self._output(escape, chars)).to_series()
        try:
            items: Items | Sizes = Items.from_series(out) if self.encode else Sizes(out.to_numpy())
        except ValueError as exc:  # not the string-view layout this polars was checked with
            raise Handover(str(exc)) from None
        missing = frame.get_column("missing").to_numpy()
        email = frame.get_column("email")
        fast = frame.get_column("fast").to_numpy()
        valid, keys, bad, bad_values = _judge(fast, missing, email, frame.get_column("key"))
        records = frame.get_column("record").to_numpy()
        p = _Parsed(frame.height, records, valid, missing, keys, bad, bad_values, items)
        if self.encode:
            p.hashes = _item_hashes(out)
        if self.domains:
            p.dkeys = _domain_keys(fast, valid, email, frame.get_column("dkey"))
        return p


def _item_hashes(out: pl.Series) -> np.ndarray:
    """``chunking.prospect_hash``'s twin before the salt: XXH3-64 of each item as it is
    here, with its leading comma (a null, a row with nothing to send, hashes as 0)."""
    frame = out.to_frame("item")
    hashed = frame.select(plh.col("item").nchash.xxh3_64().fill_null(0)).to_series()
    return hashed.to_numpy().astype(np.uint64, copy=False)


def _judge(
    fast: np.ndarray, missing: np.ndarray, email: pl.Series, key: pl.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Which rows hold a plausible address, their ledger keys, and the rest's addresses.

    The vector regex decides ASCII addresses (``fast``); the few others are
    judged by ``is_plausible_email`` itself.  The key is validation.email_key's:
    for ASCII polars' lowercase is Python's, others get theirs from email_key.
    Done here, in a worker, so the in-order commit has less to do.
    """
    odd = np.flatnonzero(~fast & ~missing)
    values = email.gather(odd).to_list() if len(odd) else []
    ok = np.array([not v.isascii() and is_plausible_email(v) for v in values], bool)
    valid = fast.copy()
    valid[odd] = ok
    keys = key.to_numpy()
    if ok.any():
        keys = keys.copy()
        keys[odd[ok]] = [email_key(v) for v, good in zip(values, ok, strict=True) if good]
    keys = keys[valid]
    keys[keys == 0] = 1  # as email_key folds it
    bad_values = [v for v, good in zip(values, ok, strict=True) if not good]
    return valid, keys, odd[~ok], bad_values


def _domain_keys(
    fast: np.ndarray, valid: np.ndarray, email: pl.Series, dkey: pl.Series
) -> np.ndarray:
    """The domain keys of the ``valid`` rows: polars' for the ASCII (``fast``) ones, whose
    lowercase is Python's, ``suppression.domain_key``'s for the few others."""
    vidx = np.flatnonzero(valid)
    dkeys = dkey.to_numpy()[vidx].copy()
    odd = np.flatnonzero(~fast[vidx])
    if len(odd):
        values = email.gather(vidx[odd]).to_list()
        dkeys[odd] = [domain_key(v.rpartition("@")[2]) for v in values]
    dkeys[dkeys == 0] = 1  # as email_key folds it
    return dkeys


def _escape_growth(text: pl.Expr, chars: str) -> pl.Expr:
    """How many bytes JSON escaping adds to each value, which may hold only ``chars``."""
    by_extra: dict[int, list[str]] = {}
    for ch in chars:  # \" is 1 byte more, \u001f 5: one count for each
        by_extra.setdefault(len(ESCAPED[ESCAPES.index(ch)]) - 1, []).append(ch)
    growth: pl.Expr = pl.lit(0, pl.Int64)
    for extra, group in by_extra.items():
        if len(group) == 1:
            count = text.str.count_matches(group[0], literal=True)
        else:
            count = text.str.count_matches("[" + "".join(f"\\x{ord(c):02x}" for c in group) + "]")
        growth = growth + count.cast(pl.Int64) * extra
    return growth


def _holds(text: pl.Expr, chars: str) -> pl.Expr:
    """Whether each value holds one of ``chars``."""
    if len(chars) == 1:
        return text.str.contains(chars, literal=True)
    return text.str.contains_any(list(chars))
