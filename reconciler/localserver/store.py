"""Durable state of the embedded server: projects, tasks, events, queues and workers in one SQLite database.

Invariants:

* Every read-modify-write runs inside :meth:`Store.transaction` (``BEGIN IMMEDIATE`` ... ``COMMIT``), under a
  process-wide lock around the single connection, so concurrent requests never interleave half-done
  updates and a failed handler leaves the database untouched.
* Documents are stored as JSON text beside a few indexed columns that mirror document fields (``name``,
  ``project``); the JSON is the source of truth and the columns are rewritten on every put.
* URLs of this server's own file server are stored relative to a marker and rebased on load, so a data
  directory keeps working when the server comes back on other ports.
* Project names are unique (a ``UNIQUE`` column): creating a duplicate fails atomically even under
  concurrency.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Doc = dict[str, Any]

FILES_MARKER = "{{reconcile-files}}"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT NOT NULL UNIQUE,
    project TEXT,
    name    TEXT NOT NULL,
    doc     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_project ON tasks(project);
CREATE TABLE IF NOT EXISTS events (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    type TEXT NOT NULL,
    doc  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task_type ON events(task, type);
CREATE TABLE IF NOT EXISTS queues (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    id   TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    key     TEXT PRIMARY KEY,
    expires REAL NOT NULL,
    doc     TEXT NOT NULL
);
"""


class UrlRebaser:
    """Swaps the file server's base URL for :data:`FILES_MARKER` in stored JSON text and back on load."""

    def __init__(self, files_url: str) -> None:
        self.files_url = files_url.rstrip("/")
        self._outgoing = re.compile(re.escape(self.files_url) + r'(?=[/"?#\s]|$)')

    def dump(self, doc: Any) -> str:
        return self._outgoing.sub(lambda _m: FILES_MARKER, json.dumps(doc, separators=(",", ":")))

    def load(self, text: str) -> Any:
        return json.loads(text.replace(FILES_MARKER, self.files_url))


class Tx:
    """Document operations valid inside one transaction of a :class:`Store`."""

    def __init__(self, conn: sqlite3.Connection, rebaser: UrlRebaser) -> None:
        self._conn = conn
        self._rebaser = rebaser

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[Doc]:
        return [self._rebaser.load(row[0]) for row in self._conn.execute(sql, args)]

    # projects
    def get_project(self, project_id: str) -> Doc | None:
        rows = self._rows("SELECT doc FROM projects WHERE id = ?", (project_id,))
        return rows[0] if rows else None

    def project_by_name(self, name: str) -> Doc | None:
        rows = self._rows("SELECT doc FROM projects WHERE name = ?", (name,))
        return rows[0] if rows else None

    def all_projects(self) -> list[Doc]:
        return self._rows("SELECT doc FROM projects ORDER BY rowid")

    def insert_project(self, doc: Doc) -> None:
        """Raises ``sqlite3.IntegrityError`` if the id or the name is taken."""
        self._conn.execute(
            "INSERT INTO projects (id, name, doc) VALUES (?, ?, ?)",
            (doc["id"], doc["name"], self._rebaser.dump(doc)),
        )

    def update_project(self, doc: Doc) -> None:
        self._conn.execute(
            "UPDATE projects SET name = ?, doc = ? WHERE id = ?",
            (doc["name"], self._rebaser.dump(doc), doc["id"]),
        )

    def delete_project(self, project_id: str) -> None:
        self._conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))

    # tasks
    def get_task(self, task_id: str) -> Doc | None:
        rows = self._rows("SELECT doc FROM tasks WHERE id = ?", (task_id,))
        return rows[0] if rows else None

    def tasks(self, ids: Sequence[str] | None = None, projects: Sequence[str] | None = None) -> list[Doc]:
        """Tasks in creation order, narrowed to ``ids`` and/or ``projects`` when given (non-empty)."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, values in (("id", ids), ("project", projects)):
            if values:
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                args.extend(values)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._rows(f"SELECT doc FROM tasks{where} ORDER BY seq", args)

    def count_tasks(self, projects: Sequence[str]) -> int:
        if not projects:
            return 0
        sql = f"SELECT COUNT(*) FROM tasks WHERE project IN ({','.join('?' * len(projects))})"
        return int(self._conn.execute(sql, list(projects)).fetchone()[0])

    def put_task(self, doc: Doc) -> None:
        """Inserts or replaces the task ``doc["id"]`` (keeping its creation order)."""
        text = self._rebaser.dump(doc)
        updated = self._conn.execute(
            "UPDATE tasks SET project = ?, name = ?, doc = ? WHERE id = ?",
            (doc.get("project"), doc["name"], text, doc["id"]),
        ).rowcount
        if not updated:
            self._conn.execute(
                "INSERT INTO tasks (id, project, name, doc) VALUES (?, ?, ?, ?)",
                (doc["id"], doc.get("project"), doc["name"], text),
            )

    def delete_task(self, task_id: str) -> None:
        self._conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
        self._conn.execute("DELETE FROM events WHERE task = ?", (task_id,))

    # events
    def add_events(self, events: Sequence[Doc]) -> None:
        self._conn.executemany(
            "INSERT INTO events (task, type, doc) VALUES (?, ?, ?)",
            [(e["task"], e["type"], self._rebaser.dump(e)) for e in events],
        )

    def events(self, tasks: Sequence[str], types: Sequence[str] | None = None) -> list[Doc]:
        """Events of ``tasks`` (optionally of ``types``) in the order they were added."""
        if not tasks:
            return []
        sql = f"SELECT doc FROM events WHERE task IN ({','.join('?' * len(tasks))})"
        args = list(tasks)
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args.extend(types)
        return self._rows(sql + " ORDER BY seq", args)

    def delete_events(self, task_id: str) -> int:
        return self._conn.execute("DELETE FROM events WHERE task = ?", (task_id,)).rowcount

    # queues (names unique, as the real server's ``unique_with="company"``)
    def get_queue(self, queue_id: str) -> Doc | None:
        rows = self._rows("SELECT doc FROM queues WHERE id = ?", (queue_id,))
        return rows[0] if rows else None

    def queues(self) -> list[Doc]:
        return self._rows("SELECT doc FROM queues ORDER BY seq")

    def insert_queue(self, doc: Doc) -> None:
        """Raises ``sqlite3.IntegrityError`` if the id or the name is taken."""
        self._conn.execute("INSERT INTO queues (id, name, doc) VALUES (?, ?, ?)",
                           (doc["id"], doc["name"], self._rebaser.dump(doc)))

    def update_queue(self, doc: Doc) -> None:
        """Raises ``sqlite3.IntegrityError`` if the new name is taken."""
        self._conn.execute("UPDATE queues SET name = ?, doc = ? WHERE id = ?",
                           (doc["name"], self._rebaser.dump(doc), doc["id"]))

    def delete_queue(self, queue_id: str) -> None:
        self._conn.execute("DELETE FROM queues WHERE id = ?", (queue_id,))

    # workers: registrations that expire (the real server keeps them in Redis with a time to live)
    def workers(self, now: float) -> list[Doc]:
        self._conn.execute("DELETE FROM workers WHERE expires <= ?", (now,))
        return self._rows("SELECT doc FROM workers ORDER BY key")

    def get_worker(self, key: str, now: float) -> Doc | None:
        rows = self._rows("SELECT doc FROM workers WHERE key = ? AND expires > ?", (key, now))
        return rows[0] if rows else None

    def put_worker(self, key: str, doc: Doc, expires: float) -> None:
        self._conn.execute("INSERT OR REPLACE INTO workers (key, expires, doc) VALUES (?, ?, ?)",
                           (key, expires, self._rebaser.dump(doc)))

    def delete_worker(self, key: str) -> int:
        return self._conn.execute("DELETE FROM workers WHERE key = ?", (key,)).rowcount


class DataDirError(ValueError):
    """A file of the server's data directory cannot be used; the message (one line, for the command line to
    print) names it and says what to do."""


class CorruptDatabase(DataDirError):
    """``server.sqlite3`` is not a sound SQLite database."""


def _open(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` with the schema in place, or :class:`CorruptDatabase`."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(problems[0] if problems else "integrity check failed")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CorruptDatabase(
            f"{path} is not a usable server database ({exc}); move it away to start with an empty server"
        ) from None
    return conn


class Store:
    """The SQLite database at ``path``; open until :meth:`close`. A file that is not a sound SQLite database
    raises :class:`CorruptDatabase` naming it."""

    def __init__(self, path: Path, files_url: str) -> None:
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = _open(path)
        self._rebaser = UrlRebaser(files_url)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One atomic unit of work: committed when the block ends normally, rolled back on any exception."""
        with self._lock:
            if self._conn is None:
                raise RuntimeError("store is closed")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn, self._rebaser)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
