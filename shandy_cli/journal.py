"""The run journal: SQLite (WAL) in the state dir, telling the truth after any crash.

Each chunk moves ``planned -> sending -> accepted -> completed | failed``; every
move is committed (``synchronous=FULL``) before the next step is taken, so:

- a chunk marked ``sending`` before its POST starts, whose answer was lost, is
  sent again on resume (``conflictAction`` makes that harmless);
- a chunk marked ``accepted`` the moment its answer arrives is never sent again.

The ledger holds (account, step, email) triples Saleshandy accepted, for
``--only-new``, and with each the digest of the prospect as it landed, for
``--only-changed``. Emails are stored as their 64-bit dedupe key, never as text;
an account as a keyed digest of its API key and base URL (``redaction.account_id``).
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from shandy_cli._files import ensure_private_dir
from shandy_cli._lock import is_held, lock_path
from shandy_cli.faults import journal_fault

if TYPE_CHECKING:  # numpy loads only where the ledger's digests are compared (--only-changed)
    import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    options TEXT NOT NULL,          -- JSON: what `shandy resume` needs to run it again
    files TEXT NOT NULL,            -- JSON list of display names
    step_id TEXT,
    started REAL NOT NULL,
    ended REAL,
    outcome TEXT NOT NULL,          -- running | interrupted | failed | processing | completed
    pid INTEGER,
    meta TEXT NOT NULL DEFAULT '{}' -- JSON: columns, rejects/failures files, counts
);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs (fingerprint);
CREATE TABLE IF NOT EXISTS chunks (
    run_id TEXT NOT NULL REFERENCES runs (id),
    idx INTEGER NOT NULL,
    first_file TEXT, first_row INTEGER, last_file TEXT, last_row INTEGER,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    hash TEXT NOT NULL,
    state TEXT NOT NULL,            -- planned | sending | accepted | completed | failed
    request_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    report TEXT,
    report_url TEXT,
    failed_rows INTEGER,            -- rows Saleshandy's report says failed
    updated REAL,
    already_present_rows INTEGER,   -- rows it says were already in the sequence (version 3)
    endpoint TEXT,                  -- 'step' | 'prospects'; NULL: the run's target (version 4)
    updates INTEGER,                -- 1: its rows update landed prospects, 2: rows a step
                                    -- chunk found already present (late; version 4)
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX IF NOT EXISTS chunks_request ON chunks (request_id);
CREATE TABLE IF NOT EXISTS ledger_chunks (
    step TEXT NOT NULL,             -- '' for the prospect list
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    keys BLOB NOT NULL,             -- the chunk's email keys, packed uint64 (one write a chunk)
    account TEXT NOT NULL DEFAULT '', -- redaction.account_id; '' before version 4: any
    hashes BLOB,                    -- the prospects' digests, parallel to keys (version 4)
    updates INTEGER,                -- 1: an update chunk's, to the account-level import
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX IF NOT EXISTS ledger_chunks_step ON ledger_chunks (step);
CREATE TABLE IF NOT EXISTS ledger_refused (
    run_id TEXT NOT NULL,           -- rows of that run's chunks Saleshandy refused
    email_key INTEGER NOT NULL,
    PRIMARY KEY (run_id, email_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_stale (
    run_id TEXT NOT NULL,           -- rows of that run's step chunks Saleshandy found already
    email_key INTEGER NOT NULL,     -- in the sequence: in it, but their fields did not land
    PRIMARY KEY (run_id, email_key)
) WITHOUT ROWID;
"""

# The journal's version (PRAGMA user_version): 1 = ledger keys are BLAKE2b-64,
# 2 = they are XXH3-64, 3 = chunks also record ``already_present_rows``, 4 = chunks
# record their endpoint, the ledger its account and the prospects' digests.
JOURNAL_VERSION = 4
# Ledger keys of a version below this are of another kind and can never match this
# version's: they are dropped once. A new key function sets both to JOURNAL_VERSION + 1.
KEYS_VERSION = 2

# Columns later versions added to tables an older shandy created: (table, column, type).
_ADDED_COLUMNS = (
    ("chunks", "already_present_rows", "INTEGER"),
    ("chunks", "endpoint", "TEXT"),
    ("chunks", "updates", "INTEGER"),
    ("ledger_chunks", "account", "TEXT NOT NULL DEFAULT ''"),
    ("ledger_chunks", "hashes", "BLOB"),
    ("ledger_chunks", "updates", "INTEGER"),
)

LATE = 2  # chunks.updates of a late update chunk (--update-existing)
# ledger_chunks.updates of a row ``compact_ledger`` wrote: its run's refusals and
# already-present marks are applied in it already (an older shandy reads it as an
# update chunk's: its keys and digests as they are, which is what they are).
COMPACTED = 3

UNFINISHED = ("running", "interrupted", "failed", "processing")
# A chunk in one of these states reached Saleshandy: a resume never sends it again.
LANDED = ("accepted", "completed", "failed")


@dataclass
class RunRecord:
    id: str
    fingerprint: str
    options: dict[str, Any]
    files: list[str]
    step_id: str | None
    started: float
    ended: float | None
    outcome: str
    pid: int | None
    meta: dict[str, Any]


@dataclass
class ChunkRecord:
    run_id: str
    idx: int
    rows: int
    bytes: int
    hash: str
    state: str
    request_id: str | None
    attempts: int
    report: str | None
    report_url: str | None
    failed_rows: int | None
    already_present_rows: int | None = None
    endpoint: str | None = None  # None: the run's target (journals before version 4)
    updates: bool | None = None


class PlannedChunk(Protocol):
    """What the journal records of a prepared chunk (``pipeline.chunking.Chunk``)."""

    @property
    def index(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def first(self) -> tuple[str, int]: ...
    @property
    def last(self) -> tuple[str, int]: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def update(self) -> bool: ...


@dataclass
class Plan:
    """A (re-)prepared run's chunks merged with what the journal knew of them."""

    landed: dict[int, ChunkRecord] = field(default_factory=dict)  # same body, at Saleshandy
    resent: list[int] = field(default_factory=list)  # same body, its POST's answer was lost


def run_options(
    paths: Sequence[str], options: dict[str, Any], spools: dict[int, Path], version: str
) -> dict[str, Any]:
    """A run's record of what it was asked (``runs.options``): the inputs' paths resolved
    (``-`` for stdin), its options, the copies of its streams and shandy's version."""
    return {
        "paths": [p if p == "-" else str(Path(p).resolve()) for p in paths],
        "options": options,
        "spools": {str(i): str(p) for i, p in spools.items()},
        "version": version,
    }


def signed64(key: int) -> int:
    """SQLite integers are signed; email keys are unsigned 64-bit."""
    return key - (1 << 64) if key >= (1 << 63) else key


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = ensure_private_dir(Path(state_dir))
        path = self.state_dir / "journal.sqlite3"
        path.touch(mode=0o600, exist_ok=True)  # private before the first byte is written
        path.chmod(0o600)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # each state change survives a power cut
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.Error as exc:
            # A damaged journal stops the run (exit 2) rather than being replaced: it holds
            # which chunks were accepted, and another shandy may have it open right now.
            self.db.close()
            raise journal_fault(exc, path) from None

    def _migrate(self) -> None:
        """Bring a journal an older shandy wrote up to ``JOURNAL_VERSION``, keeping its runs.

        A newer shandy's journal (a higher version) is left as it is: it only adds.
        """
        if self._version() >= JOURNAL_VERSION:
            return
        with self._tx() as db:
            version = self._version()  # again, inside the lock: another process may have done it
            if version >= JOURNAL_VERSION:
                return
            if version < KEYS_VERSION:  # an older shandy's keys: they would never match again
                db.execute("DELETE FROM ledger_chunks")
                db.execute("DELETE FROM ledger_refused")
            # CREATE IF NOT EXISTS kept the old tables: add what they lack
            for table, column, kind in _ADDED_COLUMNS:
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            db.execute(f"PRAGMA user_version = {JOURNAL_VERSION}")

    def _version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # A signal (Ctrl-C, SIGTERM) may land anywhere, also between BEGIN and the body or
        # inside COMMIT: whatever was left open is rolled back, here or by the next
        # transaction, so recording the interruption never fails on "cannot start a
        # transaction within a transaction".
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    # -- runs --------------------------------------------------------------------------------

    def find(self, fingerprint: str) -> RunRecord | None:
        row = self.db.execute(
            "SELECT * FROM runs WHERE fingerprint = ? ORDER BY started DESC LIMIT 1",
            (fingerprint,),
        ).fetchone()
        return _run(row) if row else None

    def get(self, run_id: str) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def last(self) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs ORDER BY started DESC LIMIT 1").fetchone()
        return _run(row) if row else None

    def live_outcome(self, record: RunRecord) -> str:
        """``running`` only while a process holds the run's lock: else ``crashed`` (killed,
        the machine rebooted), whatever the journal last said."""
        if record.outcome == "running" and not is_held(
            lock_path(self.state_dir, record.fingerprint)
        ):
            return "crashed"
        return record.outcome

    def abandoned(self, step_id: str | None, paths: list[str]) -> RunRecord | None:
        """The latest run of the same target and inputs that stopped while sending (crashed,
        interrupted, failed): its accepted rows are at Saleshandy."""
        for row in self.db.execute(
            "SELECT * FROM runs WHERE outcome IN ('running', 'interrupted', 'failed')"
            " ORDER BY started DESC"
        ):
            record = _run(row)
            same = record.step_id == step_id and record.options.get("paths") == paths
            if same and self.live_outcome(record) != "running":
                return record
        return None

    def runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self.db.execute("SELECT * FROM runs ORDER BY started DESC LIMIT ?", (limit,))
        return [_run(r) for r in rows]

    def create_run(
        self,
        run_id: str,
        fingerprint: str,
        options: dict[str, Any],
        files: list[str],
        step_id: str | None,
        pid: int,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, fingerprint, options, files, step_id, started, outcome, pid)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                (run_id, fingerprint, _dumps(options), _dumps(files), step_id, time.time(), pid),
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        if "meta" in fields:
            fields["meta"] = _dumps(fields["meta"])
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as db:
            db.execute(f"UPDATE runs SET {names} WHERE id = ?", (*fields.values(), run_id))

    def forget_runs(self, run_ids: Iterable[str]) -> None:
        """Remove runs' records and their chunks (pruning). The ledger is kept: it says
        what landed, whichever run sent it."""
        ids = [(run_id,) for run_id in run_ids]
        with self._tx() as db:
            db.executemany("DELETE FROM chunks WHERE run_id = ?", ids)
            db.executemany("DELETE FROM runs WHERE id = ?", ids)

    def run_for_request(self, request_id: str) -> RunRecord | None:
        row = self.db.execute(
            "SELECT run_id FROM chunks WHERE request_id = ? LIMIT 1", (request_id,)
        ).fetchone()
        return self.get(row[0]) if row else None

    # -- chunks ------------------------------------------------------------------------------

    def chunks(self, run_id: str) -> list[ChunkRecord]:
        rows = self.db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE run_id = ? ORDER BY idx", (run_id,)
        )
        return [ChunkRecord(*r) for r in rows]

    def chunk(self, run_id: str, idx: int) -> ChunkRecord | None:
        row = self.db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE run_id = ? AND idx = ?", (run_id, idx)
        ).fetchone()
        return ChunkRecord(*row) if row else None

    def chunk_for_request(self, request_id: str) -> ChunkRecord | None:
        row = self.db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE request_id = ? LIMIT 1", (request_id,)
        ).fetchone()
        return ChunkRecord(*row) if row else None

    def plan_chunk(
        self,
        run_id: str,
        idx: int,
        *,
        rows: int,
        size: int,
        digest: str,
        first: tuple[str, int],
        last: tuple[str, int],
        endpoint: str | None = None,
        update: bool = False,
        late: bool = False,
    ) -> None:
        """Record a prepared chunk; one of an earlier attempt with other content is replanned.
        ``late``: an update chunk built from the run's reports (``--update-existing``)."""
        with self._tx() as db:
            old = db.execute(
                "SELECT hash, state FROM chunks WHERE run_id = ? AND idx = ?", (run_id, idx)
            ).fetchone()
            if old and old[0] == digest:
                return
            db.execute(
                "INSERT OR REPLACE INTO chunks (run_id, idx, first_file, first_row, last_file,"
                " last_row, rows, bytes, hash, state, updated, endpoint, updates)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?)",
                (
                    *(run_id, idx, *first, *last, rows, size, digest, time.time(), endpoint),
                    LATE if late else int(update),
                ),
            )

    def mark(self, run_id: str, idx: int, state: str, **fields: Any) -> None:
        sets = ["state = ?", "updated = ?"]
        values: list[Any] = [state, time.time()]
        if state == "sending":
            sets.append("attempts = attempts + 1")
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            values.append(value)
        with self._tx() as db:
            db.execute(
                f"UPDATE chunks SET {', '.join(sets)} WHERE run_id = ? AND idx = ?",
                (*values, run_id, idx),
            )

    def unsend(self, run_id: str, idx: int) -> None:
        """The POST attempt last marked ``sending`` was refused outright (a 4xx: the rate
        limit, the key, validation): it delivered nothing, so it is not counted. A chunk
        no earlier attempt may have delivered is ``planned`` again, not "answer lost"."""
        with self._tx() as db:
            db.execute(
                "UPDATE chunks SET attempts = MAX(attempts - 1, 0), updated = ?,"
                " state = CASE WHEN attempts <= 1 THEN 'planned' ELSE state END"
                " WHERE run_id = ? AND idx = ? AND state = 'sending'",
                (time.time(), run_id, idx),
            )

    def merge_plan(
        self,
        run_id: str,
        chunks: Sequence[PlannedChunk],
        digests: Sequence[str],
        *,
        late: bool = False,
    ) -> Plan:
        """Journal a prepared run's chunks, merged with what an earlier attempt of the run
        recorded: a chunk with the same body that landed is kept as it is (not sent
        again), one whose POST was under way is ``resent``, every other one is planned;
        chunks past the new end are forgotten, but for the late ones (``late``: these
        are those, built once the others' reports are in)."""
        known = {c.idx: c for c in self.chunks(run_id)}
        plan = Plan()
        for chunk, digest in zip(chunks, digests, strict=True):
            old = known.get(chunk.index)
            if old and old.hash == digest and old.state in LANDED:
                plan.landed[chunk.index] = old
                continue
            if old and old.hash == digest and old.state == "sending":
                plan.resent.append(chunk.index)
            self.plan_chunk(
                run_id,
                chunk.index,
                rows=chunk.rows,
                size=chunk.bytes,
                digest=digest,
                first=chunk.first,
                last=chunk.last,
                endpoint=chunk.endpoint,
                update=chunk.update,
                late=late,
            )
        end = chunks[-1].index + 1 if late and chunks else len(chunks)
        self.drop_chunks_from(run_id, end, late=late)
        return plan

    def landed_of(self, record: RunRecord) -> tuple[list[ChunkRecord], list[ChunkRecord]]:
        """A run's chunks that reached Saleshandy, and all its chunks."""
        chunks = self.chunks(record.id)
        return [c for c in chunks if c.state in LANDED], chunks

    def drop_chunks_from(self, run_id: str, idx: int, *, late: bool = False) -> None:
        """Forget chunks past the end of a re-prepared run: the late ones (``late``), or
        the others, which late ones follow (those wait for the reports to be built)."""
        kept = "=" if late else "!="
        with self._tx() as db:
            db.execute(
                "DELETE FROM chunks WHERE run_id = ? AND idx >= ?"
                f" AND COALESCE(updates, 0) {kept} ?",
                (run_id, idx, LATE),
            )

    # -- the ledger for --only-new and --only-changed -------------------------------------------

    def ledger_keys(
        self,
        step: str | None,
        exclude_run: str | None = None,
        only_run: str | None = None,
        account: str | None = None,
    ) -> set[int]:
        """Email keys Saleshandy accepted into ``step`` in earlier runs (or in ``only_run``),
        of ``account`` (None: any; the ledger's rows from before accounts were kept match
        every account).

        A run's refusals take its own rows' keys out, not an earlier run's: a row another
        run landed is in the sequence (``ledger_state`` counts it the same way)."""
        refused = self._ledger_marks("ledger_refused")
        keys: set[int] = set()
        for run_id, blob, _, updates in self._ledger_rows(step, exclude_run, account):
            if only_run is not None and run_id != only_run:
                continue
            packed = array("Q")
            packed.frombytes(_whole(blob))
            dropped = refused.get(run_id) if updates != COMPACTED else None
            keys.update(set(packed) - dropped if dropped else packed)
        return keys

    def ledger_state(
        self, step: str | None, account: str | None, exclude_run: str | None = None
    ) -> LedgerState:
        """Each address's prospect digest as it last landed in ``step`` for ``account``, and
        the run that landed it: the ``--only-changed`` comparison's other side.

        Rows Saleshandy refused did not land (an earlier landing counts); rows it found
        already in the sequence are in it with fields it did not write: digest 0, which no
        prospect has, so they count as changed.
        """
        import numpy as np

        refused = self._ledger_marks("ledger_refused")
        stale = self._ledger_marks("ledger_stale")
        runs: dict[str, int] = {}  # run id -> its index, in order of appearance
        keys: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        for run_id, blob, hblob, updates in self._ledger_rows(step, exclude_run, account):
            k, h = _landed(run_id, blob, hblob, updates, refused, stale)
            owner = runs.setdefault(run_id, len(runs))
            keys.append(k)
            hashes.append(h)
            owners.append(np.full(len(k), owner, np.int32))
        return LedgerState.latest(list(runs), keys, hashes, owners)

    def _ledger_rows(
        self, step: str | None, exclude_run: str | None, account: str | None
    ) -> Iterator[tuple[str, bytes, bytes | None, int | None]]:
        """(run, keys, digests, updates) of the ledger's chunks for ``step``, in the order
        they were accepted (each accepted chunk is a new row: rowids only grow)."""
        sql = (
            "SELECT run_id, keys, hashes, updates FROM ledger_chunks WHERE step = ? AND run_id != ?"
        )
        args: list[str] = [step or "", exclude_run or ""]
        if account is not None:
            sql += " AND account IN (?, '')"
            args.append(account)
        yield from self.db.execute(sql + " ORDER BY rowid", args)

    def _ledger_marks(self, table: str) -> dict[str, set[int]]:
        marks: dict[str, set[int]] = {}
        for run_id, key in self.db.execute(f"SELECT run_id, email_key FROM {table}"):
            marks.setdefault(run_id, set()).add(key + (1 << 64) if key < 0 else key)
        return marks

    def accept(
        self,
        run_id: str,
        idx: int,
        request_id: str,
        step: str | None,
        keys: array,
        *,
        hashes: array | None = None,
        account: str = "",
        update: bool = False,
    ) -> None:
        """A chunk was accepted: its request id and its email keys (and the prospects'
        digests; ``update``: an update chunk's), in one transaction, so a crash between
        the two cannot leave an accepted chunk whose rows the ledger lacks (they would be
        sent again by --only-new, or by a rerun after a crash)."""
        with self._tx() as db:
            db.execute(
                "UPDATE chunks SET state = 'accepted', updated = ?, request_id = ?"
                " WHERE run_id = ? AND idx = ?",
                (time.time(), request_id, run_id, idx),
            )
            _ledger_insert(db, step, run_id, idx, keys, hashes, account, update)

    def ledger_add(
        self,
        step: str | None,
        keys: array,
        run_id: str,
        idx: int,
        *,
        hashes: array | None = None,
        account: str = "",
    ) -> None:
        """Record an accepted chunk's email keys: one row a chunk, not one a prospect."""
        with self._tx() as db:
            _ledger_insert(db, step, run_id, idx, keys, hashes, account)

    def ledger_chunk(self, run_id: str, idx: int) -> array:
        """The email keys an accepted chunk put in the ledger (empty: none)."""
        row = self.db.execute(
            "SELECT keys FROM ledger_chunks WHERE run_id = ? AND idx = ?", (run_id, idx)
        ).fetchone()
        keys = array("Q")
        if row:
            keys.frombytes(row[0])
        return keys

    def ledger_refuse(self, run_id: str, keys: Iterable[int]) -> None:
        """Rows of ``run_id`` that Saleshandy refused: not imported after all."""
        self._ledger_mark("ledger_refused", run_id, keys)

    def ledger_unwritten(self, run_id: str, keys: Iterable[int]) -> None:
        """Rows of ``run_id`` that Saleshandy found already in the sequence: in it, but
        their fields are not what was sent (``ledger_state`` counts them as changed)."""
        self._ledger_mark("ledger_stale", run_id, keys)

    def _ledger_mark(self, table: str, run_id: str, keys: Iterable[int]) -> None:
        with self._tx() as db:
            db.executemany(
                f"INSERT OR IGNORE INTO {table} (run_id, email_key) VALUES (?, ?)",
                ((run_id, signed64(k)) for k in keys),
            )

    # -- compaction ----------------------------------------------------------------------------

    def compact_ledger(self) -> LedgerCompaction:
        """Fold the ledger's rows of runs that can change no more into one row a run holding
        each address's last landing: ``ledger_keys`` and ``ledger_state`` answer the same
        before and after, but a nightly import of the same million rows no longer adds
        16 MB a night to what every ``--only-new`` run reads.

        Only a completed run, or one gone from the journal (expired), is folded: a
        resumable run's rows stay as they are (a resume reads ``ledger_keys(only_run=)``;
        ``status`` completing it marks its refusals). The rows' order is kept: each
        stretch of consecutive rows of one step (in the order they were accepted) from
        such runs and one account becomes rows in that stretch's place, so a later
        landing still comes after it. A transaction a stretch: a crash leaves each as it
        was or folded, and an import running beside it waits for one stretch at most.
        """
        result = LedgerCompaction()
        with self._tx() as db:  # one view of which runs are finished and of their rows
            unfinished = {
                r for (r,) in db.execute("SELECT id FROM runs WHERE outcome != ?", ("completed",))
            }
            marks = (self._ledger_marks("ledger_refused"), self._ledger_marks("ledger_stale"))
            rows = db.execute(  # no blobs here: a stretch's are read a row at a time
                "SELECT rowid, run_id, account, step FROM ledger_chunks ORDER BY step, rowid"
            ).fetchall()
        for step, in_step in itertools.groupby(rows, key=lambda row: row[3]):
            for stretch in _stretches([row[:3] for row in in_step], unfinished):
                with self._tx() as db:
                    _fold(db, step, stretch, marks, result)
        with self._tx() as db:
            for table in ("ledger_refused", "ledger_stale"):
                # the marks of finished runs none of whose rows is left unfolded: applied
                db.execute(
                    f"DELETE FROM {table} WHERE run_id NOT IN (SELECT run_id FROM"
                    " ledger_chunks WHERE COALESCE(updates, 0) != ?) AND run_id NOT IN"
                    " (SELECT id FROM runs WHERE outcome != 'completed')",
                    (COMPACTED,),
                )
        return result


@dataclass
class LedgerState:
    """Addresses' last landed prospect digests, sorted by email key (``Journal.ledger_state``).

    ``runs[owner[i]]`` landed ``keys[i]`` with digest ``hashes[i]`` (0: unknown).
    """

    keys: np.ndarray  # uint64, sorted, unique
    hashes: np.ndarray  # uint64
    owner: np.ndarray  # int32: index into runs
    runs: list[str]

    @classmethod
    def latest(
        cls,
        runs: list[str],
        keys: list[np.ndarray],
        hashes: list[np.ndarray],
        owners: list[np.ndarray],
    ) -> LedgerState:
        """The last entry of each key in the given (oldest first) order."""
        import numpy as np

        if not keys:
            empty = np.zeros(0, np.uint64)
            return cls(empty, empty, np.zeros(0, np.int32), runs)
        k, h, o = np.concatenate(keys), np.concatenate(hashes), np.concatenate(owners)
        order = np.argsort(k, kind="stable")  # stable: a key's entries stay oldest first
        k, h, o = k[order], h[order], o[order]
        last = np.ones(len(k), bool)
        last[:-1] = k[:-1] != k[1:]
        return cls(k[last], h[last], o[last], runs)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class LedgerCompaction:
    """What ``Journal.compact_ledger`` folded: ledger rows and the email keys they held."""

    rows_before: int = 0
    rows_after: int = 0
    keys_before: int = 0
    keys_after: int = 0

    @property
    def keys_removed(self) -> int:
        return self.keys_before - self.keys_after


_LedgerRow = tuple[int, str, str]  # rowid, run, account
MERGE_KEYS = 1 << 21  # keys read before they are merged into a stretch's last landings


def _stretches(rows: list[_LedgerRow], unfinished: set[str]) -> Iterator[list[_LedgerRow]]:
    """Runs of consecutive rows of finished runs and one account, two rows or more."""
    stretch: list[_LedgerRow] = []
    for row in rows:
        if row[1] in unfinished or (stretch and row[2] != stretch[0][2]):
            if len(stretch) > 1:
                yield stretch
            stretch = [] if row[1] in unfinished else [row]
            continue
        stretch.append(row)
    if len(stretch) > 1:
        yield stretch


def _fold(
    db: sqlite3.Connection,
    step: str,
    stretch: list[_LedgerRow],
    marks: tuple[dict[str, set[int]], dict[str, set[int]]],
    result: LedgerCompaction,
) -> None:
    """One stretch of rows as one row a run: each key's last landing, in its place."""
    landings = _last_landings(db, stretch, marks)
    if landings is None:
        return
    state, held, runs = landings
    if len(runs) == len(stretch) and len(state) == held:
        return  # nothing to gain: every row a run of its own, no key twice, none refused
    rowids = [row[0] for row in stretch]
    db.executemany("DELETE FROM ledger_chunks WHERE rowid = ?", [(r,) for r in rowids])
    for owner, run_id in enumerate(state.runs):
        mine = state.owner == owner
        if not mine.any():
            continue  # every key it landed landed again later
        (lowest,) = db.execute(
            "SELECT MIN(idx) FROM ledger_chunks WHERE run_id = ?", (run_id,)
        ).fetchone()
        db.execute(
            "INSERT INTO ledger_chunks (rowid, step, run_id, idx, keys, account, hashes, updates)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rowids[owner],  # the stretch's first rowids: its place in the order
                step,
                run_id,
                min(-1, (lowest or 0) - 1),  # below every chunk index: never a chunk's
                state.keys[mine].tobytes(),
                stretch[0][2],
                state.hashes[mine].tobytes(),
                COMPACTED,
            ),
        )
        result.rows_after += 1
    result.rows_before += len(stretch)
    result.keys_before += held
    result.keys_after += len(state)


def _last_landings(
    db: sqlite3.Connection,
    stretch: list[_LedgerRow],
    marks: tuple[dict[str, set[int]], dict[str, set[int]]],
) -> tuple[LedgerState, int, dict[str, int]] | None:
    """A stretch's last landing of each key, the keys its rows held, and its runs (in order);
    None if one of its rows has gone since the stretch was read.

    Rows are read one at a time and merged every ``MERGE_KEYS`` keys, so memory holds
    the distinct addresses, not every night's copy of them."""
    import numpy as np

    runs: dict[str, int] = {}
    state = LedgerState.latest([], [], [], [])
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    held = pending = 0
    for rowid, run_id, _ in stretch:
        found = db.execute(
            "SELECT keys, hashes, updates FROM ledger_chunks WHERE rowid = ? AND run_id = ?",
            (rowid, run_id),
        ).fetchone()
        if found is None:  # another shandy folded it since: this stretch is not ours now
            return None
        blob, hblob, updates = found
        k, h = _landed(run_id, blob, hblob, updates, *marks)
        held += len(blob) // 8
        for part, values in zip(
            parts,
            (k, h, np.full(len(k), runs.setdefault(run_id, len(runs)), np.int32)),
            strict=True,
        ):
            part.append(values)
        pending += len(k)
        if pending >= MERGE_KEYS:
            state, parts, pending = _merged(state, parts, runs), ([], [], []), 0
    return _merged(state, parts, runs), held, runs


def _merged(
    state: LedgerState,
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]],
    runs: dict[str, int],
) -> LedgerState:
    keys, hashes, owners = parts
    return LedgerState.latest(
        list(runs), [state.keys, *keys], [state.hashes, *hashes], [state.owner, *owners]
    )


def _whole(blob: bytes) -> bytes:
    """A packed uint64 blob without a torn tail (a damaged journal's): the whole keys."""
    return blob[: len(blob) - len(blob) % 8]


def _landed(
    run_id: str,
    blob: bytes,
    hblob: bytes | None,
    updates: int | None,
    refused: dict[str, set[int]],
    stale: dict[str, set[int]],
) -> tuple[np.ndarray, np.ndarray]:
    """A ledger row's keys that landed and their digests: its run's refusals out, the rows
    Saleshandy found already present digest 0 (an update chunk's rows were written)."""
    import numpy as np

    from shandy_cli._arrays import members

    k = np.frombuffer(_whole(blob), np.uint64)
    if hblob and len(hblob) == 8 * len(k):
        h = np.frombuffer(hblob, np.uint64)
    else:  # none (an older shandy's), or damaged: its digests are unknown
        h = np.zeros(len(k), np.uint64)
    if updates == COMPACTED:
        return k, h
    if run_id in stale and not updates:
        h = np.where(members(k, _marks(stale[run_id])), np.uint64(0), h)
    if run_id in refused:
        kept = ~members(k, _marks(refused[run_id]))
        k, h = k[kept], h[kept]
    return k, h


def _marks(keys: set[int]) -> np.ndarray:
    import numpy as np

    from shandy_cli._arrays import sorted_keys

    return sorted_keys(np.fromiter(keys, np.uint64, len(keys)))


def _ledger_insert(
    db: sqlite3.Connection,
    step: str | None,
    run_id: str,
    idx: int,
    keys: array,
    hashes: array | None,
    account: str,
    update: bool = False,
) -> None:
    packed = None if hashes is None else hashes.tobytes()
    db.execute(
        "INSERT OR REPLACE INTO ledger_chunks"
        " (step, run_id, idx, keys, account, hashes, updates) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (step or "", run_id, idx, keys.tobytes(), account, packed, int(update)),
    )


_CHUNK_COLUMNS = (
    "run_id, idx, rows, bytes, hash, state, request_id, attempts, report, report_url,"
    " failed_rows, already_present_rows, endpoint, updates"
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _run(row: tuple[Any, ...]) -> RunRecord:
    rid, fp, options, files, step, started, ended, outcome, pid, meta = row
    return RunRecord(
        id=rid,
        fingerprint=fp,
        options=orjson.loads(options),
        files=orjson.loads(files),
        step_id=step,
        started=started,
        ended=ended,
        outcome=outcome,
        pid=pid,
        meta=orjson.loads(meta),
    )
