"""The in-order commit: each parsed block, in file order, into the run's shared state."""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from shandy_cli._arrays import members, sorted_keys
from shandy_cli.pipeline._readers.base import drop_empty_extras
from shandy_cli.pipeline.changes import CHANGED, UNCHANGED
from shandy_cli.pipeline.chunking import PREFIX
from shandy_cli.pipeline.columnar.state import Handover, RunState
from shandy_cli.pipeline.reporting import reason_kind
from shandy_cli.pipeline.suppression import SUPPRESSED
from shandy_cli.pipeline.validation import (
    INVALID_EMAIL,
    MISSING_EMAIL,
    ROW_BITS,
    SKIPPED_REASON,
    invalid_email_reason,
)

if TYPE_CHECKING:
    from shandy_cli.pipeline.columnar.encoder import _Columnar, _Parsed
    from shandy_cli.pipeline.sources import SourceInfo

_Rows = tuple[np.ndarray, np.ndarray]  # some of a block's rows, and a value for each
_NONE = np.zeros(0, np.int64)
WORKERS = 2  # parsing threads; the commit (in order) runs on the caller's thread


def _pipeline(
    jobs: Iterator[Callable[[], _Parsed]],
    commit: _Commit,
    expect: int,
    progress: Callable[[int, int], None],
) -> int:
    """Parse blocks on WORKERS threads and commit them in order on this one."""
    pending: deque[Future[_Parsed]] = deque()
    with ThreadPoolExecutor(WORKERS) as pool:
        try:
            for job in jobs:
                pending.append(pool.submit(job))
                if len(pending) > WORKERS:
                    commit(pending.popleft().result(), expect)
                    progress(commit.done, commit.nbytes)
            while pending:
                commit(pending.popleft().result(), expect)
                progress(commit.done, commit.nbytes)
        except Handover as exc:
            for future in pending:
                future.cancel()
            exc.done = commit.last
            raise
    return commit.done


class _Commit:
    """Stage B: each block in order, on the caller's thread, into the shared state."""

    def __init__(self, reader: _Columnar, info: SourceInfo, state: RunState) -> None:
        self.reader, self.info = reader, info
        self.validator, self.chunker = state.validator, state.chunker
        self.rejects, self.sent = state.rejects, state.sent
        self.file_index = state.file_index
        self.skip = sorted_keys(np.fromiter(state.skip_keys, np.uint64, len(state.skip_keys)))
        self.suppression = state.suppression
        self._suppressed: dict[str, str] = {}  # list name -> its rows' reason kind
        self.counts, self.feed = state.counts, state.feed
        self.suffix_len, self.changes = state.suffix_len, state.changes
        self.salt = np.uint64(state.salt)
        self.trace = state.trace
        self.done = 0  # rows committed
        self.last = 0  # the number of the last one
        self.nbytes = 0

    def __call__(self, p: _Parsed, expect: int) -> None:
        name, counts = self.info.name, self.counts
        n = p.rows
        if self.done == 0 and p.nbytes:  # rows to expect, from the first block's density
            self.validator.reserve(int(n * expect / p.nbytes))
        if p.numbers is None:
            numbers = np.arange(self.done + 1, self.done + n + 1, dtype=np.int64)
        else:
            numbers = p.numbers.astype(np.int64)
        vidx, keys = np.flatnonzero(p.valid), p.keys
        # -- suppression lists, before dedupe: a suppressed row never claims its address
        # (the per-row Validator.check's order; Suppression.match_many is match's twin)
        sups: _Rows = (_NONE, _NONE)
        if self.suppression is not None and len(vidx):
            hit = self.suppression.match_many(keys, p.dkeys)
            suppressed = hit >= 0
            if suppressed.any():
                sups = (vidx[suppressed], hit[suppressed])
                vidx, keys = vidx[~suppressed], keys[~suppressed]
        # -- dedupe, first one wins, in the run's table (shared with the per-row path)
        first = self.validator.check_many(keys, numbers[vidx], file=name)
        dup = first != 0
        keep, kept_keys = vidx[~dup], keys[~dup]
        items = p.items.take(keep)
        sizes = items.size - 1  # without the leading comma
        chunker = self.chunker
        # The per-row order: validator, then encoding and size (a row too big for any
        # request is rejected, its address stays seen), then --only-new, --only-changed.
        oversize = len(PREFIX) + sizes + self.suffix_len > chunker.max_bytes
        skipped = np.zeros(len(keep), bool)
        if len(self.skip):
            skipped = members(kept_keys, self.skip) & ~oversize
        written = self.reject(
            p, numbers, (vidx[dup], first[dup]), (keep[oversize], sizes[oversize]), sups
        )
        nsup = len(sups[0])
        counts.rows_read += n
        counts.rows_rejected += written - nsup
        counts.rows_suppressed += nsup
        nskip = int(skipped.sum())
        counts.rows_skipped += nskip + nsup
        if nskip:
            counts.reasons[SKIPPED_REASON] += nskip
            self.trace.skipped_many(kept_keys[skipped], numbers[keep[skipped]], self.file_index)
        send = ~oversize & ~skipped
        if not send.all():
            sel = np.flatnonzero(send)
            items, kept_keys, keep, sizes = items.take(sel), kept_keys[sel], keep[sel], sizes[sel]
        hashes = np.zeros(len(keep), np.uint64) if p.hashes is None else p.hashes[keep] ^ self.salt
        rownums = numbers[keep]
        assert not len(sizes) or sizes.min() >= 12, "an item to send is inline"
        update = np.zeros(len(keep), bool)
        if self.changes is not None:
            routes, owners = self.changes.route_many(kept_keys, hashes)
            same = routes == UNCHANGED
            if same.any():
                self.unchanged(owners[same], kept_keys[same], rownums[same])
                sel = np.flatnonzero(~same)
                items, kept_keys, sizes = items.take(sel), kept_keys[sel], sizes[sel]
                hashes, rownums, routes = hashes[sel], rownums[sel], routes[sel]
            update = routes == CHANGED
        if update.any():  # each stream's rows, in order
            for to_update in (False, True):
                sel = np.flatnonzero(update == to_update)
                self.feed(
                    to_update,
                    sizes[sel],
                    items.take(sel),
                    kept_keys[sel],
                    hashes[sel],
                    rownums[sel],
                    name,
                )
        else:
            self.feed(False, sizes, items, kept_keys, hashes, rownums, name)
        packed = np.empty((len(kept_keys), 2), np.uint64)
        packed[:, 0] = kept_keys
        packed[:, 1] = (np.uint64(self.file_index) << np.uint64(ROW_BITS)) | rownums.astype(
            np.uint64
        )
        self.sent.add_many(packed.tobytes())
        counts.rows_submitted += len(kept_keys)
        self.done += n
        self.nbytes += p.nbytes
        if n:
            self.last = int(numbers[-1])

    def unchanged(self, owners: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> None:
        """Rows skipped as unchanged (``--only-changed``), counted (and traced) under the
        run that landed each (``Changes.reason``)."""
        assert self.changes is not None
        self.counts.rows_skipped += len(owners)
        for run in np.unique(owners).tolist():
            mine = owners == run
            reason = self.changes.reason(run)
            self.counts.reasons[reason] += int(mine.sum())
            self.trace.skipped_many(keys[mine], rows[mine], self.file_index, reason)

    def reject(self, p: _Parsed, numbers: np.ndarray, dups: _Rows, bigs: _Rows, sups: _Rows) -> int:
        """Write the block's rejected and suppressed rows, in row order, with the per-row
        path's reasons; returns how many.

        ``dups``: the duplicates' rows in the block and the packed position of each
        address's first row; ``bigs``: the oversize rows and their items' sizes;
        ``sups``: the suppressed rows and the index of the entry each matched.

        Their values are read again from the block (``raw_rows``), a duplicate's
        address too: a polars call on this thread would wait, holding the GIL,
        for the thread pool the workers keep busy.
        """
        (dup_rows, first), (big_rows, big_sizes), (sup_rows, entries) = dups, bigs, sups
        missing = np.flatnonzero(p.missing)
        order = np.union1d(np.union1d(missing, p.bad), np.union1d(dup_rows, big_rows))
        if len(sup_rows):
            order = np.union1d(order, sup_rows)
        order = order.tolist()
        if not order:
            return 0
        rows = dict(zip(order, self.raw_rows(p, order), strict=True))
        reasons: dict[int, tuple[str, str]] = {}
        for i in missing.tolist():
            reasons[i] = (MISSING_EMAIL, MISSING_EMAIL)
        for i, value in zip(p.bad.tolist(), p.bad_values, strict=True):
            reason = invalid_email_reason(value)
            reasons[i] = (reason, _kind(reason, value, INVALID_EMAIL))
        at = self.reader.email_index
        for i, f in zip(dup_rows.tolist(), first.tolist(), strict=True):
            assert at is not None  # a duplicate has an address
            reason = self.validator.duplicate_reason(rows[i][at].strip(), f)
            # the file name is in the reason too: it may hold quotes or parentheses
            reasons[i] = (reason, reason_kind(reason))
        for i, entry in zip(sup_rows.tolist(), entries.tolist(), strict=True):
            reasons[i] = self.suppressed_reason(entry)
        for i, size in zip(big_rows.tolist(), big_sizes.tolist(), strict=True):
            reason = self.chunker.oversize_reason(size)
            reasons[i] = (reason, reason_kind(reason))
        self.trace.refused_block(self.file_index, numbers, order, rows, reasons, at)
        self.rejects.add_many(
            self.info.name,
            self.info.columns,
            [(int(numbers[i]), rows[i], *reasons[i]) for i in order],
        )
        return len(order)

    def suppressed_reason(self, entry: int) -> tuple[str, str]:
        """The reason and its kind (``reason_kind``'s, as the per-row rejects writer
        finds it) for a row suppressed by ``entry``.

        The kind drops the parenthesised line and entry: it is the list's, computed
        once per list, unless a quote or parenthesis in the name or entry could make
        ``reason_kind`` read it otherwise.
        """
        assert self.suppression is not None
        reason = self.suppression.reason(entry)
        name, _, text = self.suppression.entries[entry]
        if any(c in name or c in text for c in "'\"()"):
            return reason, reason_kind(reason)
        kind = self._suppressed.get(name)
        if kind is None:
            kind = self._suppressed[name] = reason_kind(f"{SUPPRESSED} {name}")
        return reason, kind

    def raw_rows(self, p: _Parsed, order: list[int]) -> list[list[str]]:
        """The values of rows ``order`` as the per-row path reads them (``csv``, untrimmed).

        Only rejected rows need them (a few per block): their records are read
        again from the block's bytes, off polars (whose thread pool the workers keep busy).
        """
        width = len(self.info.columns)
        if p.raw is not None:  # a sheet's cells
            return p.raw[p.records[order]].fill_null("").rows()  # type: ignore[return-value]
        assert p.starts is not None and p.ends is not None
        text = "".join(
            p.block[p.starts[i] : p.ends[i]].decode("utf-8").rstrip("\r\n") + "\n" for i in order
        )
        assert self.info.delimiter is not None
        reader = csv.reader(
            io.StringIO(text, newline=""),
            delimiter=self.info.delimiter,
            quotechar='"',
            doublequote=True,
            skipinitialspace=False,
            strict=False,
        )
        rows = []
        for values in reader:
            values = drop_empty_extras(values, width)
            rows.append(values + [""] * (width - len(values)))
        if len(rows) != len(order):
            raise AssertionError("a rejected record read back as several")
        return rows


def _kind(reason: str, value: str, template_kind: str) -> str:
    # reason_kind() drops quoted values and parenthesised details; it can only
    # come out differently from the template's when the value holds quotes or parens.
    return reason_kind(reason) if any(c in value for c in "'\"()") else template_kind
