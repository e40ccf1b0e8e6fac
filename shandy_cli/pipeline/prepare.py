"""Stages 1-4 wired together: files -> rows -> prospects -> valid -> chunk files on disk.

Everything is read, validated and spooled *before* the first request, so a
problem with a file as a whole (found anywhere in it) sends nothing. Memory
stays flat: rows stream through; chunk bodies and the sent-rows index are on disk.
"""

from __future__ import annotations

import os
import weakref
from array import array
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from shandy_cli._files import open_private
from shandy_cli.client import SaleshandyClient
from shandy_cli.config import columnar_mode
from shandy_cli.errors import InputError, ShandyError
from shandy_cli.pipeline._readers.columnar_files import ColumnarFileSource
from shandy_cli.pipeline._readers.compressed import PACKED_RATIO
from shandy_cli.pipeline._readers.spreadsheet import WorkbookSource
from shandy_cli.pipeline.changes import CHANGED, UNCHANGED, Changes, update_conflict
from shandy_cli.pipeline.chunking import (
    PROSPECTS,
    STEP,
    Chunk,
    Chunker,
    body_suffix,
    encode_prospect,
    prospect_hash,
    prospect_salt,
)
from shandy_cli.pipeline.events import ChunkEvent, Listener, Phase, ReadProgress
from shandy_cli.pipeline.mapping import (
    Mapping,
    build_mapping,
    clean_header,
    listing,
    load_mapping_file,
    normalize_header,
)
from shandy_cli.pipeline.reporting import RowsWriter, SentIndex, union_columns
from shandy_cli.pipeline.results import ImportOptions
from shandy_cli.pipeline.sources import Row, Source, SourceInfo, open_source
from shandy_cli.pipeline.spool import digest_file as _digest
from shandy_cli.pipeline.spool import input_change
from shandy_cli.pipeline.suppression import Suppressed, Suppression, check_list, load_suppression
from shandy_cli.pipeline.trace import RunTrace
from shandy_cli.pipeline.validation import SKIPPED_REASON, Validator
from shandy_cli.redaction import one_line

if TYPE_CHECKING:
    import numpy as np

    from shandy_cli.config import Settings
    from shandy_cli.pipeline import columnar
    from shandy_cli.pipeline.columnar.arrow import Items, Sizes

# When "auto" takes the columnar reader (pipeline/columnar/): decided here, before
# anything imports polars, so small files never load it.
COLUMNAR_MIN_SIZE = 2 << 20  # a CSV below this is as fast row by row as starting workers
COLUMNAR_MIN_ROWS = 5000  # a sheet this small is read as fast row by row
PROGRESS_EVERY = 2000  # rows between read-progress events: cheap, still smooth


@dataclass
class Prepared:
    names: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    file_columns: dict[str, list[str]] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_submitted: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0
    rows_suppressed: int = 0  # of rows_skipped: on a suppression list (--suppress)
    rejects_file: Path | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    sent: SentIndex | None = None
    # Data rows the columnar fast path committed (the rest went per row): a
    # diagnostic, and what the tests check to know the fast path was exercised.
    rows_columnar: int = 0
    trace: RunTrace = field(default_factory=RunTrace)  # for `shandy trace` (trace.py)

    @property
    def sources(self) -> list[tuple[str, list[str]]]:
        """(name, columns) of each input, in file-index order."""
        return [(name, self.file_columns.get(name, [])) for name in self.names]

    @property
    def rows_updated(self) -> int:
        """Rows in update chunks (``--only-changed``): sent to the account-level import."""
        return sum(c.rows for c in self.chunks if c.update)

    def keys_path(self, chunk: Chunk) -> Path:
        """The chunk's email keys (uint64, in body order), beside its body."""
        assert chunk.path is not None, "a planned chunk has no files"
        return chunk.path.with_name(f"keys-{chunk.path.stem}.bin")

    def hashes_path(self, chunk: Chunk) -> Path:
        """Its prospects' digests (``chunking.prospect_hash``), parallel to the keys."""
        assert chunk.path is not None, "a planned chunk has no files"
        return chunk.path.with_name(f"hashes-{chunk.path.stem}.bin")

    def sizes_path(self, chunk: Chunk) -> Path:
        """Its items' sizes (uint32, --update-existing), parallel to the keys."""
        assert chunk.path is not None, "a planned chunk has no files"
        return chunk.path.with_name(f"sizes-{chunk.path.stem}.bin")

    def chunk_keys(self, chunk: Chunk) -> array:
        return _packed(self.keys_path(chunk))

    def chunk_hashes(self, chunk: Chunk) -> array:
        return _packed(self.hashes_path(chunk))


def _packed(path: Path) -> array:
    values = array("Q")
    if path.exists():
        values.frombytes(path.read_bytes())
    return values


@dataclass
class PrepareContext:
    paths: list[str]
    opts: ImportOptions
    labels: list[str]
    step_id: str | None
    run_dir: Path
    rejects_path: Path
    listener: Listener
    notice: Callable[[str, str], None]
    client: SaleshandyClient | None = None
    stdin: BinaryIO | None = None
    spools: dict[int, Path] = field(default_factory=dict)
    skip_keys: set[int] = field(default_factory=set)
    # --only-changed: the ledger's last landings (None: every row goes to the target)
    changes: Changes | None = None
    # the most a compressed input may inflate to (Settings.max_stream_bytes; None: 4 GB)
    max_stream_bytes: int | None = None
    # Label -> fieldType of the account's fields (empty without a key): which
    # values must be numbers.
    field_types: dict[str, str] = field(default_factory=dict)
    # How sources are read (Settings.columnar / .fastexcel; see ``reading_choice``).
    # ``opts.columnar`` / ``opts.fastexcel``, when not None, win over these.
    columnar: str = "auto"
    fastexcel: bool = True

    @property
    def columnar_choice(self) -> str:
        """The reading choice, "auto", "always" or "never": the option, else the setting."""
        chosen = self.opts.columnar if self.opts.columnar is not None else self.columnar
        return columnar_mode(chosen)

    @property
    def fastexcel_choice(self) -> bool:
        return self.opts.fastexcel if self.opts.fastexcel is not None else self.fastexcel


def reading_choice(opts: ImportOptions, settings: Settings) -> dict[str, Any]:
    """``PrepareContext``'s reading keywords for an import: its options, else the settings
    (``SHANDY_COLUMNAR``, ``SHANDY_FASTEXCEL``, with ``.env``): ``PrepareContext(...,
    **reading_choice(opts, settings))``."""
    return {
        "columnar": columnar_mode(
            opts.columnar if opts.columnar is not None else settings.columnar
        ),
        "fastexcel": opts.fastexcel if opts.fastexcel is not None else settings.fastexcel,
    }


def suppress_lists(opts: ImportOptions, settings: Settings) -> tuple[Path, ...]:
    """The suppression lists an import applies: the ``suppress`` setting's
    (``SHANDY_SUPPRESS``, with ``.env``) always, then the import's own
    (``ImportOptions.suppress``), each file once."""
    lists: dict[Path, None] = {}
    for path in (*settings.suppress, *opts.suppress):
        given = Path(path).expanduser()
        check_list(given)  # before resolving: /dev/fd/63 resolves to no file at all
        lists.setdefault(given.resolve(), None)
    return tuple(lists)


def body_options(opts: ImportOptions, step_id: str | None, *, update: bool = False) -> bytes:
    """The request body's members after ``prospectList``, in the API's documented order.
    ``update``: an update chunk's, to the account-level import (no step), with the
    conflict action that updates (``changes.update_conflict``)."""
    options: dict[str, object] = {}
    if step_id and not update:
        options["stepId"] = step_id
    options["verifyProspects"] = opts.verify
    options["conflictAction"] = update_conflict(opts.conflict) if update else opts.conflict
    options["tags"] = [t.strip() for t in opts.tags]
    return body_suffix(options)


def _chunkers(ctx: PrepareContext) -> list[Chunker]:
    """The run's chunk streams: to the target, and (``--only-changed``) the updates."""
    spool = None if ctx.opts.dry_run else ctx.run_dir / "chunks"
    opts = ctx.opts
    target = Chunker(
        body_options(ctx.opts, ctx.step_id),
        spool_dir=spool,
        endpoint=STEP if ctx.step_id else PROSPECTS,
        max_rows=opts.max_rows,
        max_bytes=opts.max_bytes,
    )
    if ctx.changes is None:
        return [target]
    return [target, update_chunker(opts, spool)]


def update_chunker(opts: ImportOptions, spool_dir: Path | None, prefix: str = "update") -> Chunker:
    """The chunker of update chunks: to the account-level import, with the conflict action
    that updates (``--only-changed``'s changed rows, ``--update-existing``'s late ones)."""
    return Chunker(
        body_options(opts, None, update=True),
        spool_dir=spool_dir,
        endpoint=PROSPECTS,
        update=True,
        prefix=prefix,
        max_rows=opts.max_rows,
        max_bytes=opts.max_bytes,
    )


def prepare(ctx: PrepareContext) -> Prepared:
    suppression = load_suppression(ctx.opts.suppress)  # a bad line stops here (exit 2)
    sources = _open_sources(ctx)
    out = Prepared(names=[s.info.name for s in sources])
    chunkers: list[Chunker] = []
    rejects: RowsWriter | None = None
    try:
        mappings = _mappings(ctx, sources)
        out.columns = union_columns(s.info.columns for s in sources)
        out.file_columns = {s.info.name: s.info.columns for s in sources}
        rejects = RowsWriter(ctx.rejects_path, out.columns)
        out.sent = SentIndex(ctx.run_dir / "sent.idx")
        # A dry run plans the same chunks without writing their bodies.
        chunkers = _chunkers(ctx)
        ctx.listener(Phase("reading"))
        with _Reader(ctx, chunkers, rejects, out, suppression) as reader:
            for file_index, (src, mapping) in enumerate(zip(sources, mappings, strict=True)):
                reader.read(src, mapping, file_index)
            reader.finish()
        out.sent.close()
        out.rejects_file = rejects.close()
        out.reasons.update(rejects.reasons)
        return out
    except BaseException:
        for chunker in chunkers:
            chunker.abort()
        if rejects is not None:
            rejects.close(ok=False)
        if out.sent is not None:
            out.sent.close()
        raise
    finally:
        for src in sources:
            src.close()


def _open_sources(ctx: PrepareContext) -> list[Source]:
    sources: list[Source] = []
    try:
        for index, path in enumerate(ctx.paths):
            spool = ctx.spools.get(index)
            fastexcel = ctx.fastexcel_choice
            sources.append(
                open_input(
                    path,
                    ctx.opts,
                    spool,
                    ctx.stdin,
                    fastexcel=fastexcel,
                    max_bytes=ctx.max_stream_bytes,
                )
            )
    except BaseException:
        for src in sources:
            src.close()
        raise
    return sources


def open_input(
    path: str,
    opts: ImportOptions,
    spool: Path | None,
    stdin: BinaryIO | None = None,
    *,
    fastexcel: bool = True,
    max_bytes: int | None = None,
) -> Source:
    """Open one input, reading a private copy in place of stdin or a pipe when there is one.
    ``max_bytes`` bounds a compressed input's decompressed bytes (``SHANDY_MAX_STREAM_BYTES``;
    None: the default)."""
    how: dict[str, Any] = {
        "encoding": opts.encoding,
        "delimiter": opts.delimiter,
        "sheet": opts.sheet,
        "member": opts.member,
        "fastexcel": fastexcel,
        "max_bytes": max_bytes,
    }
    if spool is None:
        return open_source(path, stdin=stdin, **how)
    handle = spool.open("rb")
    try:
        shown = None if path == "-" else path
        src = open_source("-", stdin=handle, name=shown, **how)
    except BaseException:
        handle.close()
        raise
    weakref.finalize(src, handle.close)  # the Source does not own a stdin-like stream
    return src


def _mappings(ctx: PrepareContext, sources: list[Source]) -> list[Mapping | None]:
    explicit = dict(ctx.opts.column_map)
    constants = dict(ctx.opts.constants)
    if ctx.opts.mapping_file:
        file_map, file_set = load_mapping_file(Path(ctx.opts.mapping_file))
        explicit = {**file_map, **explicit}  # flags win over the file
        constants = {**file_set, **constants}
    mappings: list[Mapping | None] = []
    used: set[str] = set()
    for src in sources:
        if not src.info.columns:  # an empty file: nothing to map, nothing to send
            mappings.append(None)
            continue
        # One mapping file serves many exports: apply the entries each file has.
        mine = _entries_for(src.info.columns, explicit)
        used.update(mine)
        mapping = build_mapping(
            src.info.columns,
            ctx.labels,
            explicit=mine,
            constants=constants,
            on_unknown=ctx.opts.on_unknown_column,
            file=src.info.name,
            field_types=ctx.field_types,
        )
        if mapping.unknown:
            names = listing(mapping.unknown)
            ctx.notice(f"{one_line(src.info.name)}: ignoring column(s) {names}", "warning")
        if mapping.shadowed:
            names = listing(mapping.shadowed)
            ctx.notice(
                f"{one_line(src.info.name)}: column(s) {names} dropped: --map chose another",
                "warning",
            )
        mappings.append(mapping)
    missing = [key for key in explicit if key not in used]
    if missing and any(m is not None for m in mappings):
        names = ", ".join(repr(k) for k in missing)
        raise InputError(f"the mapping names column(s) {names}, which no input file has")
    _create_fields(ctx, mappings)
    return mappings


def _entries_for(columns: list[str], explicit: dict[str, str]) -> dict[str, str]:
    """The explicit mapping entries that name a column of this file (exactly or loosely)."""
    exact = {clean_header(c) for c in columns}
    loose = {normalize_header(c) for c in columns}
    return {
        key: label
        for key, label in explicit.items()
        if clean_header(key) in exact or normalize_header(key) in loose
    }


def _create_fields(ctx: PrepareContext, mappings: list[Mapping | None]) -> None:
    known = {label.casefold() for label in ctx.labels}
    wanted = dict.fromkeys(label for m in mappings if m for label in m.to_create)
    for label in wanted:
        if label.casefold() in known:
            continue
        if ctx.opts.dry_run or ctx.client is None:
            ctx.notice(f"would create custom field {label!r} (text)", "info")
        else:
            ctx.client.create_field(label, "text")
            ctx.notice(f"created custom field {label!r} (text)", "info")
        known.add(label.casefold())


class _Stream:
    """One stream of chunks: its chunker, and the email keys and prospect digests of the
    rows of the chunk it is building (written beside each body when it closes)."""

    def __init__(self, chunker: Chunker, sizes: bool = False) -> None:
        self.chunker = chunker
        self.keys = array("Q")
        self.hashes = array("Q")
        # the items' sizes, for --update-existing (its rows are read again from the body)
        self.sizes: array | None = array("I") if sizes else None
        self.chunks: list[Chunk] = []
        self.digests: list[Future[str]] = []


class _Reader:
    """The per-row loop: judge each row, then reject, skip, or add it to a chunk."""

    def __init__(
        self,
        ctx: PrepareContext,
        chunkers: list[Chunker],
        rejects: RowsWriter,
        out: Prepared,
        suppression: Suppression | None = None,
    ) -> None:
        self.ctx = ctx
        sizes = ctx.opts.update_existing and not ctx.opts.dry_run
        self.streams = [_Stream(c, sizes) for c in chunkers]  # the target's, then the updates'
        self.chunker = chunkers[0]
        self.rejects = rejects
        self.out = out
        self.suppression = suppression
        self.validator = Validator(suppression=suppression)
        self.columnar = ctx.columnar_choice
        self.changes = ctx.changes
        self.salt = prospect_salt(ctx.opts.tags)
        # Each closed chunk file is hashed on a thread of its own while reading goes
        # on: the body is never read back on this thread.
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="shandy-digest")

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._hasher.shutdown(wait=True, cancel_futures=True)

    def read(self, src: Source, mapping: Mapping | None, file_index: int) -> None:
        info, out = src.info, self.out
        assert out.sent is not None
        ncols = len(info.columns)
        done, nbytes = self._columnar(src, mapping, file_index)
        out.rows_columnar += done
        if nbytes is not None:  # the columnar path read it all
            self.ctx.listener(ReadProgress(info.name, done, nbytes, info.size, done=True))
            return
        count = done
        src.skip_first(done)
        for row in src.rows():
            if row.number <= done:  # committed by the columnar path before it handed over
                continue
            count += 1
            out.rows_read += 1
            if count % PROGRESS_EVERY == 0:
                self.ctx.listener(ReadProgress(info.name, count, src.progress_bytes(), info.size))
            if mapping is None:
                continue
            item, reason = self._judge(row, ncols, mapping)
            if reason is not None:
                self.out.trace.refused(self.prospect, file_index, row.number, reason)
                # a suppressed row is skipped, not rejected, and written with its reason
                self.rejects.add(info.name, row.number, info.columns, row.values, reason)
                if isinstance(reason, Suppressed):
                    out.rows_skipped += 1
                    out.rows_suppressed += 1
                else:
                    out.rows_rejected += 1
                continue
            key = self.validator.last_key
            if key in self.ctx.skip_keys:
                out.trace.skipped(key, file_index, row.number, SKIPPED_REASON)
                out.rows_skipped += 1
                out.reasons[SKIPPED_REASON] += 1
                continue
            digest = prospect_hash(item, self.salt)
            stream = self.streams[0]
            if self.changes is not None:
                route, owner = self.changes.route(key, digest)
                if route == UNCHANGED:
                    out.rows_skipped += 1
                    reason = self.changes.reason(owner)
                    out.reasons[reason] += 1
                    out.trace.skipped(key, file_index, row.number, reason)
                    continue
                if route == CHANGED:
                    stream = self.streams[1]
            closed = stream.chunker.add(item, file=info.name, row=row.number)
            if closed:
                self._planned(stream, closed)
            stream.keys.append(key)
            stream.hashes.append(digest)
            if stream.sizes is not None:
                stream.sizes.append(len(item))
            out.sent.add(key, file_index, row.number)
            out.rows_submitted += 1
        self.ctx.listener(
            ReadProgress(info.name, count, src.progress_bytes(done=True), info.size, done=True)
        )

    def _columnar(
        self, src: Source, mapping: Mapping | None, file_index: int
    ) -> tuple[int, int | None]:
        """Rows of ``src`` read the columnar way (pipeline/columnar/), and its byte size if that
        was all of them (None: none, or up to a handover).

        The columnar reader fills the same validator, chunker, rejects, sent
        index and chunk keys as the loop in ``read``, which goes on from there.
        """
        info = src.info
        if self.columnar == "never" or mapping is None:
            return 0, None
        if isinstance(src, WorkbookSource) and src.frame is not None:  # a text-only sheet
            return self._columnar_sheet(src, mapping, file_index)
        if isinstance(src, ColumnarFileSource):  # Parquet, IPC, JSON: as a text sheet
            return self._columnar_file(src, mapping, file_index)
        spool = self.ctx.spools.get(file_index)
        path = str(spool) if spool is not None else (None if info.path == "-" else info.path)
        if _cheap_no(info, path, self.columnar):
            return 0, None
        from shandy_cli.pipeline import columnar  # polars and numpy load only when needed

        if columnar.columnar_eligible(info, mapping, path) is not None:
            return 0, None
        assert path is not None
        try:
            rows = columnar.read_columnar(path, info, mapping, self._state(info, file_index))
        except columnar.Handover as exc:
            return exc.done, None
        return rows, os.path.getsize(path)

    def _columnar_sheet(
        self, src: WorkbookSource, mapping: Mapping, file_index: int
    ) -> tuple[int, int | None]:
        from shandy_cli.pipeline import columnar

        info, frame = src.info, src.frame
        small = len(frame) < COLUMNAR_MIN_ROWS and self.columnar != "always"
        if small or columnar.plan_problem(mapping) is not None:
            return 0, None
        state = self._state(info, file_index)
        try:
            rows = columnar.read_sheet(frame, src.header_index, info, mapping, state)
        except columnar.Handover as exc:
            return exc.done, None
        src.drop_frame()  # all read: let the memory go
        return rows, info.size or 0

    def _columnar_file(
        self, src: ColumnarFileSource, mapping: Mapping, file_index: int
    ) -> tuple[int, int | None]:
        """A Parquet / IPC / JSON input, its values cast to text a batch at a time
        (``ColumnarFileSource.text_batches``), through ``columnar.read_frames``: ~5x
        the per-row loop on 1M rows, holding a batch, not the file."""
        from shandy_cli.pipeline import columnar

        small = src.total < COLUMNAR_MIN_ROWS and self.columnar != "always"
        if small or columnar.plan_problem(mapping) is not None:
            return 0, None
        state = self._state(src.info, file_index)
        report = state.progress
        state.progress = lambda rows, _nbytes: report(rows, src.bytes_read)  # a share of the file
        # every row is a row here, an all-null one too: as ColumnarFileSource._rows reads it
        frames = src.text_batches()
        try:
            rows = columnar.read_frames(
                frames, src.info, mapping, state, rows=src.total, blanks=False
            )
        except columnar.Handover as exc:
            return exc.done, None
        return rows, src.info.size or 0

    def _state(self, info: SourceInfo, file_index: int) -> columnar.RunState:
        """The run's state the columnar readers commit into."""
        from shandy_cli.pipeline import columnar

        assert self.out.sent is not None

        def progress(rows: int, nbytes: int) -> None:
            self.ctx.listener(ReadProgress(info.name, rows, nbytes, info.size))

        return columnar.RunState(
            validator=self.validator,
            chunker=self.chunker,
            rejects=self.rejects,
            sent=self.out.sent,
            file_index=file_index,
            skip_keys=self.ctx.skip_keys,
            suppression=self.suppression,
            counts=self.out,
            feed=self._feed,
            progress=progress,
            suffix_len=max(len(s.chunker.suffix) for s in self.streams),
            changes=self.changes,
            salt=self.salt,
            trace=self.out.trace,
        )

    def _feed(
        self,
        update: bool,
        sizes: np.ndarray,
        items: Items | Sizes,
        keys: np.ndarray,
        hashes: np.ndarray,
        rows: np.ndarray,
        file: str,
    ) -> None:
        """Rows of a columnar block into a stream, packed as ``read`` packs them one by one."""
        stream = self.streams[1 if update else 0]
        closed = stream.chunker.add_many(sizes, items.write, file=file, rows=rows)
        start = 0
        lengths = sizes.astype("uint32") if stream.sizes is not None else None
        for chunk, stop in closed:
            self._extend(stream, keys[start:stop], hashes[start:stop], lengths, start, stop)
            self._planned(stream, chunk)
            start = stop
        self._extend(stream, keys[start:], hashes[start:], lengths, start, len(keys))

    @staticmethod
    def _extend(
        stream: _Stream,
        keys: np.ndarray,
        hashes: np.ndarray,
        lengths: np.ndarray | None,
        start: int,
        stop: int,
    ) -> None:
        stream.keys.frombytes(keys.tobytes())
        stream.hashes.frombytes(hashes.tobytes())
        if stream.sizes is not None and lengths is not None:
            stream.sizes.frombytes(lengths[start:stop].tobytes())

    def finish(self) -> None:
        for stream in self.streams:
            last = stream.chunker.finish()
            if last:
                self._planned(stream, last)
        # The update chunks follow the target's, numbered on from them: the same
        # numbers whichever path read which rows.
        first, *rest = self.streams
        for stream in rest:
            for chunk in stream.chunks:
                chunk.index = len(first.chunks)
                first.chunks.append(chunk)
                self.ctx.listener(ChunkEvent(chunk.index, "planned", chunk.rows, chunk.bytes))
            first.digests.extend(stream.digests)
        self.out.chunks = first.chunks
        self.out.digests = [future.result() for future in first.digests]

    def _planned(self, stream: _Stream, chunk: Chunk) -> None:
        # Called before the key of the row that closed ``chunk`` is appended:
        # every key collected so far belongs to ``chunk``.
        keys, stream.keys = stream.keys, array("Q")
        hashes, stream.hashes = stream.hashes, array("Q")
        sizes, stream.sizes = stream.sizes, None if stream.sizes is None else array("I")
        stream.chunks.append(chunk)
        if chunk.path is not None:  # None: a plan (dry run), nothing to hash or send
            stream.digests.append(self._hasher.submit(_digest, chunk.path))
            files = [(self.out.keys_path(chunk), keys), (self.out.hashes_path(chunk), hashes)]
            if sizes is not None:
                files.append((self.out.sizes_path(chunk), sizes))
            for path, values in files:
                with open_private(path, "wb") as fh:  # 0600, as the body
                    fh.write(values.tobytes())
        else:
            stream.digests.append(_done(""))
        if stream is self.streams[0]:  # the updates' are numbered, and said, at the end
            self.ctx.listener(ChunkEvent(chunk.index, "planned", chunk.rows, chunk.bytes))

    def _judge(self, row: Row, ncols: int, mapping: Mapping) -> tuple[bytes, str | None]:
        """The encoded prospect a row becomes, and why it must be rejected (or None)."""
        problem = row.problem
        if (
            problem is None
            and len(row.values) > ncols
            and any(v.strip() for v in row.values[ncols:])
        ):
            problem = f"row has {len(row.values)} values but the header has {ncols} columns"
        self.prospect = prospect = mapping.prospect(row.values)  # kept for the trace
        reason = self.validator.check(
            prospect, file=row.file, row=row.number, problem=problem, typed=mapping.typed
        )
        if reason is not None:
            return b"", reason
        try:
            item = encode_prospect(prospect)
        except ValueError:  # text that is not valid Unicode (a lone surrogate)
            return b"", "a value is not valid text"
        if not all(s.chunker.fits_alone(item) for s in self.streams):
            return b"", self.chunker.oversize_reason(item)
        return item, None


def _done(value: str) -> Future[str]:
    future: Future[str] = Future()
    future.set_result(value)
    return future


def _cheap_no(info: SourceInfo, path: str | None, choice: str) -> bool:
    """Sources the columnar path never takes, decided without importing polars:
    no file, not a delimited format, or (``choice`` "auto") a small one (a compressed
    one by its guessed size unpacked: ``PACKED_RATIO``)."""
    if path is None or info.format not in ("csv", "tsv", "txt"):
        return True
    if choice == "always":
        return False
    ratio = PACKED_RATIO if info.compression else 1
    try:
        return os.stat(path).st_size * ratio < COLUMNAR_MIN_SIZE
    except OSError:
        return True


def fetch_rows(
    paths: list[str],
    opts: ImportOptions,
    spools: dict[int, Path],
    wanted: dict[int, set[int]],
    read: list[dict[str, Any] | None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[tuple[int, int], list[str]]:
    """Read the values of the wanted (file index, row number) pairs again from the inputs.

    ``read`` is what each input was when the run read it (``input_identity``): one
    that changed or vanished since yields nothing, and ``warn`` says so, for row N of
    a new export is another person. The caller falls back to what Saleshandy's report
    said about those rows.
    """
    found: dict[tuple[int, int], list[str]] = {}
    for file_index, rows in wanted.items():
        target = spools.get(file_index) or Path(paths[file_index])
        identity = read[file_index] if read and file_index < len(read) else None
        if identity:
            change = input_change(target, identity)
            if change:
                if warn:
                    warn(
                        f"{paths[file_index]} {change} since the run read it: its failed rows "
                        "are written from Saleshandy's report, not from the file"
                    )
                continue
        try:
            with open_input(paths[file_index], opts, spools.get(file_index)) as src:
                left = set(rows)
                for row in src.rows():
                    if row.number in left:
                        found[(file_index, row.number)] = row.values
                        left.discard(row.number)
                        if not left:
                            break
        except (ShandyError, OSError):
            continue
    return found
