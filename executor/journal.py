"""The run journal: one SQLite database in the state folder recording every run, resource and event.

A resource is written the moment its id is known (before d2c waits on it), so that a controller
killed at any point leaves a journal from which ``d2c down`` and ``d2c run --resume`` can find
everything the run created. Each call opens its own short connection and commits before
returning, which keeps the file consistent under SIGKILL and usable from several threads.

Opening the journal writes nothing once its schema is there (``user_version`` already set), so
``d2c status`` and ``d2c down`` work on a full disk: ``read_only`` journals never write, and a
journal in ``best_effort`` mode (teardown after a failure, ``d2c down``) keeps going when a
write fails, collecting what it could not record in ``unsaved``. Any other failed write is a
:class:`JournalWriteError` naming the file. The file is the user's alone (0600).

Schema (``user_version`` 1)::

    runs(run_id PK, provider, region, state, descriptor, plans_file, plan_rank, budget_usd,
         deadline_s, hourly_usd, run_dir, created_at, started_at, finished_at, outcome, message,
         details JSON)
    resources(run_id, kind, resource_id, region, role, created_at, deleted_at, details JSON)
    events(id, run_id, at, kind, message)

``kind`` of a resource: ``instance``, ``key_pair``, ``security_group``, ``volume``, ``folder``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from d2c.errors import UsageError, WorkError
from d2c.state import PRIVATE_FILE_MODE, private_dir

SCHEMA_VERSION = 1
JOURNAL_NAME = "journal.sqlite"

RUN_STATES = (
    "created",
    "provisioning",
    "provisioned",
    "uploaded",
    "running",
    "fetching",
    "tearing_down",
    "finished",
)
"""The orchestrator's states in the order a run passes through them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    region TEXT NOT NULL,
    state TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    plans_file TEXT NOT NULL,
    plan_rank INTEGER NOT NULL,
    budget_usd REAL NOT NULL,
    deadline_s REAL,
    hourly_usd REAL NOT NULL,
    run_dir TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    outcome TEXT,
    message TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS resources (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    region TEXT NOT NULL,
    role TEXT,
    created_at REAL NOT NULL,
    deleted_at REAL,
    details TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, kind, resource_id)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class RunRecord:
    """One run as the journal knows it."""

    run_id: str
    provider: str
    region: str
    state: str
    descriptor: str
    plans_file: str
    plan_rank: int
    budget_usd: float
    deadline_s: float | None
    hourly_usd: float
    run_dir: Path
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """True while the run may still hold cloud resources."""
        return self.state != "finished"


@dataclass(frozen=True)
class Resource:
    """A cloud (or rehearsal) resource a run created."""

    run_id: str
    kind: str
    resource_id: str
    region: str
    role: str | None
    created_at: float
    _: KW_ONLY
    deleted_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """True until the resource is recorded as deleted."""
        return self.deleted_at is None


@dataclass(frozen=True)
class Event:
    """Something that happened in a run, in words a user can read."""

    run_id: str
    at: float
    kind: str
    message: str


class JournalWriteError(WorkError):
    """The journal could not be written (a full disk, a read-only folder)."""


class Journal:
    """The SQLite journal at ``path`` (created with its schema on first use unless ``read_only``)."""

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.best_effort = False
        self.unsaved: list[str] = []
        if read_only:
            return
        private_dir(self.path.parent)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE_MODE))
        elif self.path.stat().st_mode & 0o777 != PRIVATE_FILE_MODE:
            self.path.chmod(PRIVATE_FILE_MODE)
        with self._read() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(f"{self.path}: written by a newer d2c (journal version {version}, this one reads {SCHEMA_VERSION}); upgrade d2c")
        if version < SCHEMA_VERSION:
            with self._connect() as db:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection for queries; a read-only journal that does not exist yet reads as empty."""
        if self.read_only:
            if self.path.exists():
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                with closing(sqlite3.connect(uri, uri=True, timeout=30.0)) as db:
                    db.row_factory = sqlite3.Row
                    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                        yield db
                        return
            # No journal yet (or one being created this instant): no runs.
            with closing(sqlite3.connect(":memory:")) as db:
                db.row_factory = sqlite3.Row
                db.executescript(_SCHEMA)
                yield db
            return
        with closing(sqlite3.connect(self.path, timeout=30.0)) as db:
            db.row_factory = sqlite3.Row
            yield db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one write transaction (committed on leaving, rolled back on an error)."""
        if self.read_only:
            raise JournalWriteError(f"{self.path}: opened read-only; this command does not change the journal")
        try:
            with closing(sqlite3.connect(self.path, timeout=30.0)) as db:
                db.row_factory = sqlite3.Row
                with db:
                    yield db
        except sqlite3.OperationalError as exc:
            raise JournalWriteError(f"cannot write the journal {self.path}: {exc}; free space in {self.path.parent} and run 'd2c down' or 'd2c run --resume'") from None

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection | None]:
        """``_connect`` for a write that a ``best_effort`` journal may lose (noted in ``unsaved``)."""
        try:
            with self._connect() as db:
                yield db
        except JournalWriteError as exc:
            if not self.best_effort:
                raise
            self.unsaved.append(f"{what} ({exc})")

    def create_run(self, record: RunRecord) -> None:
        """Record a new run."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, provider, region, state, descriptor, plans_file, plan_rank, budget_usd,"
                " deadline_s, hourly_usd, run_dir, created_at, details) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.run_id,
                    record.provider,
                    record.region,
                    record.state,
                    record.descriptor,
                    record.plans_file,
                    record.plan_rank,
                    record.budget_usd,
                    record.deadline_s,
                    record.hourly_usd,
                    str(record.run_dir),
                    record.created_at,
                    json.dumps(record.details),
                ),
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Change some of a run's columns (``details`` is merged, not replaced)."""
        allowed = {"state", "started_at", "finished_at", "outcome", "message", "details"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update run columns {sorted(unknown)}")
        if "details" in fields:
            merged = dict(self.run(run_id).details)
            merged.update(fields["details"])
            fields["details"] = json.dumps(merged)
        if not fields:
            return
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write(f"run {run_id}: {', '.join(fields)}") as db:
            db.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", (*fields.values(), run_id))

    def run(self, run_id: str) -> RunRecord:
        """The run ``run_id``; UsageError naming the known runs when there is none."""
        with self._read() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            known = [r.run_id for r in self.runs()][-5:]
            hint = f" (recent runs: {', '.join(known)})" if known else " (no runs yet)"
            raise UsageError(f"{self.path}: no run {run_id!r}{hint}; see 'd2c status'")
        return _run_from_row(row)

    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM runs ORDER BY created_at, run_id").fetchall()
        return [_run_from_row(row) for row in rows]

    def add_resource(self, resource: Resource) -> None:
        """Record a resource as soon as its id is known (idempotent)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO resources (run_id, kind, resource_id, region, role, created_at, details)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    resource.run_id,
                    resource.kind,
                    resource.resource_id,
                    resource.region,
                    resource.role,
                    resource.created_at,
                    json.dumps(resource.details),
                ),
            )

    def update_resource(self, run_id: str, kind: str, resource_id: str, details: dict[str, Any]) -> None:
        """Merge ``details`` into a resource's details (addresses, host keys, launch time)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT details FROM resources WHERE run_id = ? AND kind = ? AND resource_id = ?",
                (run_id, kind, resource_id),
            ).fetchone()
            if row is None:
                return
            merged = json.loads(row["details"])
            merged.update(details)
            db.execute(
                "UPDATE resources SET details = ? WHERE run_id = ? AND kind = ? AND resource_id = ?",
                (json.dumps(merged), run_id, kind, resource_id),
            )

    def mark_deleted(self, run_id: str, kind: str, resource_id: str, at: float | None = None) -> None:
        """Record that a resource no longer exists."""
        with self._write(f"{kind} {resource_id} deleted") as db:
            db.execute(
                "UPDATE resources SET deleted_at = COALESCE(deleted_at, ?) WHERE run_id = ? AND kind = ? AND resource_id = ?",
                (at if at is not None else time.time(), run_id, kind, resource_id),
            )

    def resources(self, run_id: str, kind: str | None = None, *, live_only: bool = False) -> list[Resource]:
        """The resources of a run, optionally of one kind and only those not deleted."""
        query = "SELECT * FROM resources WHERE run_id = ?"
        params: list[Any] = [run_id]
        if kind is not None:
            query += " AND kind = ?"
            params.append(kind)
        if live_only:
            query += " AND deleted_at IS NULL"
        with self._read() as db:
            rows = db.execute(query + " ORDER BY created_at, resource_id", params).fetchall()
        return [
            Resource(
                run_id=row["run_id"],
                kind=row["kind"],
                resource_id=row["resource_id"],
                region=row["region"],
                role=row["role"],
                created_at=row["created_at"],
                deleted_at=row["deleted_at"],
                details=json.loads(row["details"]),
            )
            for row in rows
        ]

    def event(self, run_id: str, kind: str, message: str, at: float | None = None) -> None:
        """Append an event to the run's history."""
        with self._write(f"event {kind}: {message}") as db:
            db.execute(
                "INSERT INTO events (run_id, at, kind, message) VALUES (?,?,?,?)",
                (run_id, at if at is not None else time.time(), kind, message),
            )

    def events(self, run_id: str) -> list[Event]:
        """The run's events in the order they happened."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
        return [Event(row["run_id"], row["at"], row["kind"], row["message"]) for row in rows]


def _run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        provider=row["provider"],
        region=row["region"],
        state=row["state"],
        descriptor=row["descriptor"],
        plans_file=row["plans_file"],
        plan_rank=row["plan_rank"],
        budget_usd=row["budget_usd"],
        deadline_s=row["deadline_s"],
        hourly_usd=row["hourly_usd"],
        run_dir=Path(row["run_dir"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        outcome=row["outcome"],
        message=row["message"],
        details=json.loads(row["details"]),
    )


def open_journal(*, read_only: bool = False) -> Journal:
    """The journal of the current project (``<state folder>/journal.sqlite``); ``read_only``
    creates nothing (not even the state folder) and never writes."""
    from d2c.state import state_dir

    return Journal(state_dir(create=not read_only) / JOURNAL_NAME, read_only=read_only)
