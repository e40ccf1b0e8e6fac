"""Stage 7b, ``--update-existing``: the rows a step import found already in the sequence,
sent again to the account-level import so that their fields are updated.

A step import never writes the fields of a prospect already in the sequence
(``../shared/saleshandy-api.md``, "Prospects already in the sequence"); the
account-level import does. Once every step chunk's report is in, the rows each
report names as already present are read back from that chunk's own body (kept
for this: its items' sizes, keys and digests are beside it) and packed into
*late* update chunks, numbered after the run's others. Their bodies depend only
on the bodies and the saved reports, so a resumed run builds the same ones, and
the journal says which of them landed.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from shandy_cli._arrays import members, sorted_keys
from shandy_cli._files import open_private
from shandy_cli.journal import ChunkRecord
from shandy_cli.pipeline.chunking import PREFIX, STEP, Chunk
from shandy_cli.pipeline.outcome import DONE_STATES, read_chunk_outcome, was_resent
from shandy_cli.pipeline.prepare import Prepared, update_chunker
from shandy_cli.pipeline.results import ImportOptions
from shandy_cli.pipeline.validation import email_key

_Keys = dict[int, np.ndarray]  # step chunk index -> email keys of its rows found present


def present_rows(records: Iterable[ChunkRecord]) -> _Keys:
    """Each finished step chunk's rows its report says were already in the sequence
    (a chunk sent twice finds its own rows there: those landed, and are not listed)."""
    found: _Keys = {}
    for record in records:
        if (record.endpoint or STEP) != STEP or record.state not in DONE_STATES:
            continue
        report = Path(record.report) if record.report else None
        outcome = read_chunk_outcome(report, record.request_id or "", resent=was_resent(record))
        keys = {email_key(f.email) for f in outcome.already_present if f.email}
        if keys:
            found[record.idx] = np.fromiter(keys, np.uint64, len(keys))
    return found


def late_chunks(
    prepared: Prepared, present: _Keys, opts: ImportOptions, spool_dir: Path
) -> list[Chunk]:
    """The update chunks of the ``present`` rows, read from their step chunks' bodies,
    numbered after ``prepared``'s chunks, with their keys and digests beside them."""
    chunker = update_chunker(opts, spool_dir, prefix="present")
    made: list[Chunk] = []
    keys: list[int] = []
    hashes: list[int] = []
    try:
        for source in (prepared.chunks[i] for i in sorted(present)):
            for key, digest, item in _items(prepared, source, present[source.index]):
                closed = chunker.add(item, file=source.first[0], row=source.first[1])
                if closed:
                    made.append(_late(prepared, closed, keys, hashes, len(made)))
                    keys, hashes = [], []
                keys.append(key)
                hashes.append(digest)
        last = chunker.finish()
    except BaseException:
        chunker.abort()
        raise
    if last:
        made.append(_late(prepared, last, keys, hashes, len(made)))
    return made


def _items(
    prepared: Prepared, chunk: Chunk, wanted: np.ndarray
) -> Iterable[tuple[int, int, bytes]]:
    """(key, digest, item bytes) of the rows of ``chunk`` whose keys are ``wanted``, in
    body order: each item is at its offset (the sizes before it, with their commas)."""
    assert chunk.path is not None
    keys = np.frombuffer(prepared.keys_path(chunk).read_bytes(), np.uint64)
    hashes = np.frombuffer(prepared.hashes_path(chunk).read_bytes(), np.uint64)
    sizes = np.frombuffer(prepared.sizes_path(chunk).read_bytes(), np.uint32).astype(np.int64)
    if not (len(keys) == len(hashes) == len(sizes) == chunk.rows):
        raise ValueError(f"chunk {chunk.index + 1}: its rows' records do not match its body")
    starts = len(PREFIX) + np.concatenate(([0], np.cumsum(sizes + 1)[:-1]))
    with chunk.path.open("rb") as body:
        for i in np.flatnonzero(members(keys, sorted_keys(wanted))).tolist():
            body.seek(int(starts[i]))
            yield int(keys[i]), int(hashes[i]), body.read(int(sizes[i]))


def _late(
    prepared: Prepared, chunk: Chunk, keys: Sequence[int], hashes: Sequence[int], number: int
) -> Chunk:
    chunk.index = len(prepared.chunks) + number
    for path, values in (
        (prepared.keys_path(chunk), keys),
        (prepared.hashes_path(chunk), hashes),
    ):
        with open_private(path, "wb") as fh:
            fh.write(array("Q", values).tobytes())
    return chunk
