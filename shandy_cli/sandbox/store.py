"""The sandbox's state in SQLite, so it outlives the process that served the import.

Prospects and imports belong to an *account*, as live: the account of an API key is a
digest of the key (``account_of``; the key itself is never stored), so two keys never
see each other's prospects, imports or reports' import ids. Within an account there is
one prospect per email (compared case-insensitively) holding its field values and tags,
plus its step memberships. The seeded fields and sequences, and created custom fields,
are shared by every account.

Two views of the prospects are kept:

* the *decided* state (``prospects``, ``step_members``) holds the effect of every
  accepted import, finished or not. A new import is judged against it at receipt,
  the way a queue that processes imports in order would judge it.
* the *visible* state (``v_*`` tables) is what ``GET /v1/prospects`` shows: the
  ``writes`` of imports whose completion time has passed, replayed ("settled")
  lazily, keyed by the prospect's id (``pos``, unique across accounts). Each value
  remembers the import (``seq``) that wrote it, so imports that finish out of order
  still end with the latest-accepted value.

Completion is a timestamp (``done_at``) fixed at receipt, so any process opening the
same database agrees on it. An account's imports are processed one after another, as
live: each starts when that account's previous accepted one is done. Connections are
short-lived (one per call) because the HTTP server runs every request on its own
thread; WAL lets readers and a writer in several processes share the file. A database
from an older sandbox (another ``SCHEMA_VERSION``) is emptied and rebuilt: sandbox
state is disposable.

The extra sequences of ``--sequences N`` are the server's, not the database's: each
server lists the ones its config asks for, so servers sharing a file never fight.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import string
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from shandy_cli._files import make_missing_dirs
from shandy_cli.sandbox import seed
from shandy_cli.sandbox.imports import (
    REASON_IN_SEQUENCE,
    Classified,
    ImportRequest,
    Rejected,
    classify,
    fields_to_write,
)
from shandy_cli.sandbox.seed import SeedSequence

DB_NAME = "sandbox.sqlite3"
SCHEMA_VERSION = 3  # PRAGMA user_version; bump when a table changes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fields (
    pos INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL UNIQUE COLLATE NOCASE, field_type TEXT NOT NULL,
    system INTEGER NOT NULL, seeded INTEGER NOT NULL, meta TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS sequences (
    pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, active INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, sequence_id TEXT NOT NULL,
    name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL, step_id TEXT,
    accepted_at REAL NOT NULL, done_at REAL NOT NULL, rows INTEGER NOT NULL,
    failed INTEGER NOT NULL, report_key TEXT UNIQUE, conflict_action TEXT NOT NULL,
    verify INTEGER NOT NULL, tags TEXT NOT NULL, settled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failures (
    request_id TEXT NOT NULL, idx INTEGER NOT NULL, data TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (request_id, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS imports_by_account ON imports (account, done_at);
CREATE TABLE IF NOT EXISTS prospects (
    account TEXT NOT NULL, email TEXT NOT NULL, pos INTEGER NOT NULL, fields TEXT NOT NULL,
    PRIMARY KEY (account, email)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS step_members (
    account TEXT NOT NULL, step_id TEXT NOT NULL, email TEXT NOT NULL,
    PRIMARY KEY (account, step_id, email)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writes (
    request_id TEXT NOT NULL, email TEXT NOT NULL, pos INTEGER NOT NULL, fields TEXT NOT NULL,
    joins INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS writes_by_request ON writes (request_id);
CREATE TABLE IF NOT EXISTS v_prospects (
    pos INTEGER PRIMARY KEY, account TEXT NOT NULL, email TEXT NOT NULL,
    UNIQUE (account, email));
CREATE INDEX IF NOT EXISTS v_prospects_by_account ON v_prospects (account, pos);
CREATE TABLE IF NOT EXISTS v_values (
    pos INTEGER NOT NULL, label TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (pos, label)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS v_steps (
    pos INTEGER NOT NULL, step_id TEXT NOT NULL, PRIMARY KEY (pos, step_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS v_tags (
    pos INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (pos, tag)) WITHOUT ROWID;
"""

# Tables holding prospects and imports, decided and visible; ``reset`` empties them
# and keeps the seed.
_DECIDED_TABLES = ("imports", "failures", "prospects", "step_members", "writes")
_VISIBLE_TABLES = ("v_prospects", "v_values", "v_steps", "v_tags")

_ID_ALPHABET = string.ascii_letters + string.digits


def _random_id(length: int = 10) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def account_of(key: str) -> str:
    """The account an API key opens: a digest, so the database never holds the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _insert(table: str, columns: Iterable[str]) -> str:
    """``INSERT INTO table (a, b) VALUES (:a, :b)``: each column named once, by its value."""
    names = list(columns)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES (:{', :'.join(names)})"


def _create_private(path: Path) -> None:
    """Make sure the database file exists and is 0600 before SQLite opens it.

    SQLite creates a missing file with the umask's mode (0644), and gives its ``-wal``
    and ``-shm`` files the database's: created 0600 here, all three hold only the user's.
    A file an older sandbox left 0644 is tightened too: it is the sandbox's own.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)  # O_CREAT's mode passes through the umask
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ImportState:
    request_id: str
    done_at: float
    failed: int
    report_key: str | None


@dataclass(frozen=True)
class Prospect:
    id: str
    email: str
    attributes: list[tuple[str, str]]
    steps: list[str]
    tags: list[str]


class Store:
    """All reads and writes of the sandbox database."""

    def __init__(self, state_dir: Path, extra_sequences: tuple[SeedSequence, ...] = ()) -> None:
        self.state_dir = Path(state_dir)
        # The db holds imported contact data: private to the user. The dirs made are
        # 0700; one that already exists keeps the mode its owner gave it.
        make_missing_dirs(self.state_dir)
        self.path = self.state_dir / DB_NAME
        _create_private(self.path)
        self.extra_sequences = extra_sequences
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            with _transaction(db):  # one process migrates; the others wait, then see it done
                _migrate(db)
                self._seed(db)

    # -- connections -------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: we issue BEGIN ourselves, so a write takes the lock up front.
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            db.create_function("sb_contains", 2, _contains, deterministic=True)
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db, _transaction(db):
            yield db

    # -- seed --------------------------------------------------------------------------

    @staticmethod
    def _seed(db: sqlite3.Connection) -> None:
        insert_field = (
            "INSERT OR IGNORE INTO fields (id, label, field_type, system, seeded, meta)"
            " VALUES (?,?,?,?,1,'{}')"
        )
        db.executemany(
            insert_field, [(i, lbl, seed.SYSTEM_FIELD_TYPE, 1) for i, lbl in seed.SYSTEM_FIELDS]
        )
        db.executemany(insert_field, [(i, lbl, t, 0) for i, lbl, t in seed.CUSTOM_FIELDS])
        for pos, sequence in enumerate(seed.SEQUENCES):
            db.execute(
                "INSERT OR IGNORE INTO sequences (pos, id, title, active) VALUES (?,?,?,?)",
                (pos, sequence.id, sequence.title, int(sequence.active)),
            )
            db.executemany(
                "INSERT OR IGNORE INTO steps (pos, id, sequence_id, name) VALUES (?,?,?,?)",
                [
                    (pos * 100 + n, sid, sequence.id, name)
                    for n, (sid, name) in enumerate(sequence.steps)
                ],
            )

    def reset(self) -> None:
        """Forget every account's prospects and imports and every created field; keep the seed."""
        with self._write() as db:
            for table in (*_DECIDED_TABLES, *_VISIBLE_TABLES):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM fields WHERE seeded = 0")

    # -- fields, sequences -------------------------------------------------------------

    def fields(self, *, system: bool) -> list[dict[str, str]]:
        sql = "SELECT id, label, field_type FROM fields WHERE system = 0 OR ? ORDER BY pos"
        with self._connect() as db:
            rows = db.execute(sql, (int(system),)).fetchall()
        return [{"id": i, "label": label, "fieldType": t} for i, label, t in rows]

    def field_types(self) -> dict[str, str]:
        """Every label of the account (system and custom) and its fieldType."""
        with self._connect() as db:
            return dict(db.execute("SELECT label, field_type FROM fields").fetchall())

    def create_field(self, label: str, field_type: str, meta: dict[str, Any]) -> dict[str, str]:
        """A new custom field; ``meta`` (fallbackText, metadata) is kept but not shown."""
        with self._write() as db:
            clash = db.execute(
                "SELECT label, system FROM fields WHERE label = ?", (label,)
            ).fetchone()
            if clash and clash[1]:
                raise Rejected(400, "Default fields cannot be added as custom fields")
            if clash:
                raise Rejected(400, f"Field with label {clash[0]!r} already exists")
            field_id = _random_id()
            db.execute(
                "INSERT INTO fields (id, label, field_type, system, seeded, meta)"
                " VALUES (?,?,?,0,0,?)",
                (field_id, label, field_type, _dumps(meta)),
            )
        return {"id": field_id, "label": label, "fieldType": field_type}

    def sequences(self) -> list[dict[str, Any]]:
        """Every sequence in listing order: this server's extra ones, then the seeded ones."""
        with self._connect() as db:
            seqs = db.execute("SELECT id, title, active FROM sequences ORDER BY pos").fetchall()
            steps = db.execute("SELECT sequence_id, id, name FROM steps ORDER BY pos").fetchall()
        extra = [_sequence_json(s.id, s.title, s.active, s.steps) for s in self.extra_sequences]
        return extra + [
            _sequence_json(sid, title, bool(active), [(i, n) for o, i, n in steps if o == sid])
            for sid, title, active in seqs
        ]

    def steps(self, sequence_id: str) -> list[dict[str, str]] | None:
        """The steps of one sequence, or ``None`` when there is no such sequence."""
        for sequence in self.sequences():
            if sequence["id"] == sequence_id:
                return sequence["steps"]
        return None

    def step_ids(self) -> set[str]:
        return {step["id"] for sequence in self.sequences() for step in sequence["steps"]}

    def sibling_steps(self, step_id: str) -> list[str]:
        """Every step of the sequence ``step_id`` belongs to, itself included."""
        for sequence in self.sequences():
            ids = [step["id"] for step in sequence["steps"]]
            if step_id in ids:
                return ids
        return [step_id]

    # -- imports -----------------------------------------------------------------------

    def accept_import(
        self, request: ImportRequest, *, account: str, now: float, duration: float
    ) -> str:
        """Decide every row of an import into ``account`` now, store it, return its request id.

        It completes ``duration`` seconds after the account's previous accepted import
        does (or after ``now`` when its queue is idle): imports run one after another.
        """
        rows = classify(request.prospects, request.numeric_labels)
        siblings = self.sibling_steps(request.step_id) if request.step_id else []
        request_id = secrets.token_hex(6)
        with self._write() as db:
            sql = "SELECT MAX(done_at) FROM imports WHERE account = ?"
            (queue_end,) = db.execute(sql, (account,)).fetchone()
            done_at = max(now, queue_end or now) + duration
            plan = _plan(db, account, request, rows, siblings)
            failures = sorted(plan.failures, key=_first)
            sql = "INSERT INTO prospects (account, email, pos, fields) VALUES (?,?,?,?)"
            db.executemany(sql, ((account, *new) for new in plan.new))
            # json_patch merges the written fields into the stored ones, all inside SQLite.
            sql = (
                "UPDATE prospects SET fields = json_patch(fields, ?)"
                " WHERE account = ? AND email = ?"
            )
            db.executemany(sql, ((text, account, email) for text, email in plan.patches))
            sql = "INSERT INTO step_members (account, step_id, email) VALUES (?,?,?)"
            db.executemany(sql, ((account, *member) for member in plan.members))
            sql = "INSERT INTO writes (request_id, email, pos, fields, joins) VALUES (?,?,?,?,?)"
            db.executemany(sql, ((request_id, *w) for w in plan.writes))
            sql = "INSERT INTO failures (request_id, idx, data, reason) VALUES (?,?,?,?)"
            db.executemany(sql, ((request_id, i, _dumps(row), why) for i, row, why in failures))
            accepted = {
                "request_id": request_id,
                "account": account,
                "step_id": request.step_id,
                "accepted_at": now,
                "done_at": done_at,
                "rows": len(request.prospects),
                "failed": len(failures),
                "report_key": secrets.token_urlsafe(24) if failures else None,
                "conflict_action": request.conflict_action,
                "verify": int(request.verify),
                "tags": _dumps(request.tags),
            }
            db.execute(_insert("imports", accepted), accepted)
        return request_id

    def import_state(self, request_id: str, account: str) -> ImportState | None:
        """The import ``request_id`` of ``account``; another account's is not found."""
        sql = (
            "SELECT request_id, done_at, failed, report_key FROM imports"
            " WHERE request_id = ? AND account = ?"
        )
        with self._connect() as db:
            row = db.execute(sql, (request_id, account)).fetchone()
        return ImportState(*row) if row else None

    def report(self, key: str) -> tuple[ImportState, list[tuple[dict[str, str], str]]] | None:
        """The failed rows (and why) of the import whose report link carries ``key``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT request_id, done_at, failed, report_key FROM imports WHERE report_key = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            failures = db.execute(
                "SELECT data, reason FROM failures WHERE request_id = ? ORDER BY idx", (row[0],)
            ).fetchall()
        return ImportState(*row), [(orjson.loads(data), reason) for data, reason in failures]

    # -- visible prospects -------------------------------------------------------------

    def settle(self, now: float) -> None:
        """Make every import completed by ``now`` visible. Idempotent; safe across processes."""
        with self._connect() as db:
            pending = "SELECT 1 FROM imports WHERE settled = 0 AND done_at <= ? LIMIT 1"
            if db.execute(pending, (now,)).fetchone() is None:
                return  # the common case: nothing to do, and no write lock taken
            with _transaction(db):
                due = db.execute(
                    "SELECT seq, request_id, account, step_id, tags FROM imports"
                    " WHERE settled = 0 AND done_at <= ? ORDER BY seq",
                    (now,),
                ).fetchall()
                for seq, request_id, account, step_id, tags in due:
                    _settle_one(db, seq, request_id, account, step_id, tags)

    def prospects(
        self, *, account: str, search: str, page: int, page_size: int, now: float
    ) -> list[Prospect]:
        """One page of ``account``'s visible prospects (oldest first).

        ``search``: only those whose email or a field value contains it (case-insensitive).
        """
        self.settle(now)
        params = {
            "a": account,
            "s": search.casefold(),
            "limit": page_size,
            "offset": (page - 1) * page_size,
        }
        where = "WHERE p.account = :a"
        if search:
            where += (
                " AND (sb_contains(p.email, :s) OR EXISTS (SELECT 1 FROM v_values v"
                " WHERE v.pos = p.pos AND sb_contains(v.value, :s)))"
            )
        with self._connect() as db:
            page_rows = db.execute(
                f"SELECT p.pos, p.email FROM v_prospects p {where}"
                " ORDER BY p.pos LIMIT :limit OFFSET :offset",
                params,
            ).fetchall()
            return [_load_prospect(db, pos, email) for pos, email in page_rows]


def _migrate(db: sqlite3.Connection) -> None:
    """Give the file this version's tables, dropping an older sandbox's (inside a transaction)."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    tables = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for (table,) in tables:
        db.execute(f'DROP TABLE "{table}"')
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _sequence_json(
    sequence_id: str, title: str, active: bool, steps: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "id": sequence_id,
        "title": title,
        "active": active,
        "steps": [{"id": i, "name": n} for i, n in steps],
    }


def _first(item: tuple[Any, ...]) -> Any:
    return item[0]


def _contains(haystack: str | None, needle: str) -> bool:
    return haystack is not None and needle in haystack.casefold()


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE: take the write lock before reading, so decisions can't race another writer.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@dataclass
class _Plan:
    """The rows one import adds to each table (``writes`` lacks the request id)."""

    new: list[tuple[str, int, str]] = field(default_factory=list)
    patches: list[tuple[str, str]] = field(default_factory=list)
    members: list[tuple[str, str]] = field(default_factory=list)
    writes: list[tuple[str, int, str, int]] = field(default_factory=list)  # last: joins step
    failures: list[tuple[int, dict[str, str], str]] = field(default_factory=list)


def _plan(
    db: sqlite3.Connection,
    account: str,
    request: ImportRequest,
    rows: Classified,
    siblings: list[str],
) -> _Plan:
    """Judge each accepted row against ``account``'s decided state: new, known, enrolled.

    ``siblings``: the steps of the target step's sequence. A prospect in any of them
    is *enrolled*: the sequence import fails its row and writes nothing, not even its
    tags (live, whatever ``conflictAction`` says); the account-level import updates it
    per ``conflictAction`` but leaves it in the step it is in. A prospect the account
    knows but that is in none of them is enrolled in the step and gets
    ``conflictAction`` applied to its fields, by either import: the API notes record
    nothing live about this case, so it follows the docs, where ``conflictAction``
    decides what happens to an existing prospect's fields. New prospects are created
    (and enrolled when there is a ``stepId``). Without a ``stepId`` (the account import)
    no membership changes. Ids (``pos``) count up across accounts.
    """
    action, step_id = request.conflict_action, request.step_id
    existing = _existing(db, account, rows.accepted, with_fields=action == "addMissingFields")
    enrolled = _in_steps(db, account, siblings) if existing and step_id else set()
    next_pos = db.execute("SELECT COALESCE(MAX(pos), 0) + 1 FROM prospects").fetchone()[0]
    plan = _Plan(failures=list(rows.failures))
    for email, (index, given) in rows.accepted.items():
        if request.to_step and email in enrolled:
            plan.failures.append((index, given, REASON_IN_SEQUENCE))
            continue
        old = existing.get(email)
        if old is None:
            pos, text = next_pos, _dumps(given)
            next_pos += 1
            plan.new.append((email, pos, text))
        else:
            pos, written = old[0], fields_to_write(given, action, old[1])
            text = _dumps(written)
            if written:
                plan.patches.append((text, email))
        joins = step_id is not None and email not in enrolled
        plan.writes.append((email, pos, text, int(joins)))
        if joins and step_id is not None:
            plan.members.append((step_id, email))
    return plan


def _existing(
    db: sqlite3.Connection, account: str, emails: dict[str, Any], *, with_fields: bool
) -> dict[str, tuple[int, dict[str, str]]]:
    """``account``'s decided prospects among ``emails``; fields are parsed only ``with_fields``.

    One scan of the account's range of the table beats 100k indexed lookups (or a
    temp-table join) by far at the sizes a sandbox holds, and costs nothing while the
    account is empty.
    """
    if with_fields:
        rows = db.execute("SELECT email, pos, fields FROM prospects WHERE account = ?", (account,))
        return {e: (pos, orjson.loads(f)) for e, pos, f in rows if e in emails}
    no_fields: dict[str, str] = {}  # shared and never mutated: callers only read it
    rows = db.execute("SELECT email, pos FROM prospects WHERE account = ?", (account,))
    return {e: (pos, no_fields) for e, pos in rows if e in emails}


def _in_steps(db: sqlite3.Connection, account: str, step_ids: list[str]) -> set[str]:
    """Every email of ``account`` already in one of ``step_ids`` (each a primary-key range)."""
    marks = ",".join("?" * len(step_ids))
    sql = f"SELECT email FROM step_members WHERE account = ? AND step_id IN ({marks})"
    return {email for (email,) in db.execute(sql, [account, *step_ids])}


def _settle_one(
    db: sqlite3.Connection,
    seq: int,
    request_id: str,
    account: str,
    step_id: str | None,
    tags: str,
) -> None:
    db.execute(
        "INSERT OR IGNORE INTO v_prospects (pos, account, email)"
        " SELECT pos, ?, email FROM writes WHERE request_id = ?",
        (account, request_id),
    )
    # A value is replaced only by a later-accepted import's, whatever order they finish in.
    db.execute(
        "INSERT INTO v_values (pos, label, value, seq)"
        " SELECT w.pos, j.key, j.value, ? FROM writes w, json_each(w.fields) j"
        " WHERE w.request_id = ?"
        " ON CONFLICT (pos, label) DO UPDATE SET value = excluded.value, seq = excluded.seq"
        " WHERE excluded.seq > v_values.seq",
        (seq, request_id),
    )
    if step_id is not None:
        db.execute(
            "INSERT OR IGNORE INTO v_steps (pos, step_id)"
            " SELECT pos, ? FROM writes WHERE request_id = ? AND joins = 1",
            (step_id, request_id),
        )
    db.execute(
        "INSERT OR IGNORE INTO v_tags (pos, tag)"
        " SELECT w.pos, t.value FROM writes w, json_each(?) t WHERE w.request_id = ?",
        (tags, request_id),
    )
    db.execute("UPDATE imports SET settled = 1 WHERE seq = ?", (seq,))
    db.execute("DELETE FROM writes WHERE request_id = ?", (request_id,))  # replayed: not needed


def _load_prospect(db: sqlite3.Connection, pos: int, email: str) -> Prospect:
    values = db.execute(
        "SELECT v.label, v.value FROM v_values v LEFT JOIN fields f ON f.label = v.label"
        " WHERE v.pos = ? ORDER BY f.pos, v.label",
        (pos,),
    ).fetchall()
    steps = db.execute(
        "SELECT v.step_id FROM v_steps v LEFT JOIN steps s ON s.id = v.step_id"
        " WHERE v.pos = ? ORDER BY s.pos",
        (pos,),
    ).fetchall()
    tags = db.execute("SELECT tag FROM v_tags WHERE pos = ? ORDER BY tag", (pos,)).fetchall()
    shown_email = dict(values).get(seed.EMAIL_LABEL, email)
    return Prospect(str(pos), shown_email, values, [s for (s,) in steps], [t for (t,) in tags])
