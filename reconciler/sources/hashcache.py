"""A persistent cache of file hashes in SQLite, so an unchanged file is never hashed twice.

Invariants:

* A row maps an absolute path (as walked, symlinks not resolved) to the sha256 of its bytes *together with*
  the stat identity seen when it was hashed: device, inode, size, mtime_ns and ctime_ns. A lookup is a hit
  only when the current stat equals the stored one, so a rewritten, replaced or merely touched file (new
  mtime or ctime) is hashed again. ctime cannot be set by users, which also catches content restored with an
  old mtime.
* A hash is stored only when the file's stat was the same before and after reading it, so a file written
  while it was being hashed is not cached.
* Lookups are batched: one range query per folder source (``lookup_tree``) or ``IN`` queries of a few hundred
  paths; writes go in one transaction per batch.
* The database runs in WAL mode with a busy timeout, so several processes can share one cache; the last
  writer of a path wins, and any row it writes is correct for the stat it records.
* A folder source's whole listing (every relative path with its stat) may also be remembered with the
  hashes it resolved to (``listings``): when a later walk yields the identical listing, every file would be a
  per-file hit anyway, so the hashes are taken in one read. Any changed stat changes the listing, and the
  per-file rows decide as usual. One listing is kept per (root, include, exclude).
* What a version's content came to (its digest, file count and size) may be remembered under a memo that
  determines the content (``contents``; see :func:`reconciler.plan.contents.content_memos`): a plan of unchanged
  sources then needs no per-file work beyond the walk. A summary that the files contradict (a corrupt row: a
  version the plan builds has its files hashed anyway) is dropped and the plan made again from the hashes.
* Rows of deleted files are left in place: they are never hits for a new file (inode/ctime differ) and cost
  only disk space; deleting the database file is always safe.
* A damaged cache never yields a malformed hash or a traceback: a row whose sha256 is not 64 hex digits, or
  a listing's hashes that do not check against the sha256 stored with them (they are kept as raw bytes, 32 a
  file, behind a format tag and that checksum), is a miss; an error of SQLite itself (a corrupt page, a
  truncated file, a table of another shape) is one :class:`ReconcileError` naming the file and saying it is
  safe to delete. Hashes are checked in bulk, so the check costs little when nothing is wrong.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar, overload

from ..diagnostics import ReconcileError

SCHEMA_VERSION = 1  # additive tables need no bump: CREATE TABLE IF NOT EXISTS
_IN_CHUNK = 500
_INT64 = 1 << 63


StatKey = tuple[int, int, int, int, int]
"""The identity of a file's content as far as ``stat`` can tell: (dev, ino, size, mtime_ns, ctime_ns).

A plain tuple on purpose: one is built per file on every scan. Device and inode numbers are folded into
SQLite's signed 64-bit range, so keys compare equal to what the database returns.
"""
SIZE = 2  # index of the size in a StatKey

CachedRow = tuple[str, int, int, int, int, int, str]
"""A database row as fetched: (path, dev, ino, size, mtime_ns, ctime_ns, sha256). Rows are used as fetched,
without building per-row objects, because a scan reads one per file."""


def _fold(value: int) -> int:
    return value - (1 << 64) if value >= _INT64 else value


def stat_key(st: os.stat_result) -> StatKey:
    dev, ino = st.st_dev, st.st_ino
    if dev >= _INT64 or ino >= _INT64:
        dev, ino = _fold(dev), _fold(ino)
    return (dev, ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS listings (
    source TEXT PRIMARY KEY,
    listing TEXT NOT NULL,
    hashes BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contents (
    memo TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    files INTEGER NOT NULL,
    size INTEGER NOT NULL
) WITHOUT ROWID;
"""
_ROWS = "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256 FROM file_hashes WHERE "
_REL, _KEY = itemgetter(0), itemgetter(2)  # of a walked file: (relative path, path, StatKey)


def _digests_ok(values: Sequence[Any]) -> bool:
    """Whether every value is a sha256 as 64 lower-case hex digits: a few passes in C over all of them at once
    (``fromhex`` skips whitespace, hence the length check)."""
    try:
        if set(map(len, values)) - {64}:
            return False
        joined = "".join(values)
        return len(bytes.fromhex(joined)) == 32 * len(values) and joined == joined.lower()
    except (TypeError, ValueError):
        return False


def _well_formed(rows: list[CachedRow]) -> list[CachedRow]:
    """``rows`` without those whose sha256 is malformed (checked in bulk; row by row only if one is)."""
    if _digests_ok([r[6] for r in rows]):
        return rows
    return [r for r in rows if _digests_ok([r[6]])]

_F = TypeVar("_F", bound=Callable[..., Any])

_HASHES_FORMAT = b"sha256-raw-1\0"  # a listing's hashes: this, the sha256 of the rest, then 32 bytes a file


def listing_digest_of(rels: Iterable[str], keys: array[int]) -> str:
    """:meth:`HashCache.listing_digest` of relative paths and their stat keys laid out flat (five a file)."""
    h = hashlib.sha256(b"listing-2\0")
    h.update("\0".join(rels).encode("utf-8", "surrogatepass"))
    h.update(b"\0\0")
    h.update(keys)
    return h.hexdigest()


class Hashes(Sequence[str]):
    """The sha256 of each file of a remembered listing, as hex, from one buffer of 32 bytes a file (a million
    hashes take 32 MB instead of 113 as strings); a hex string is made when read."""

    __slots__ = ("_blob", "_start")

    def __init__(self, blob: bytes, start: int) -> None:
        self._blob, self._start = blob, start

    def __len__(self) -> int:
        return (len(self._blob) - self._start) // 32

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(index)
        at = self._start + 32 * (index % n)
        return self._blob[at : at + 32].hex()

    def __iter__(self) -> Iterator[str]:
        blob = memoryview(self._blob)
        for at in range(self._start, len(self._blob), 32):
            yield blob[at : at + 32].hex()


def _guarded(method: _F) -> _F:
    """SQLite errors of a method (a corrupt page, a truncated file, a table of another shape) as one line."""

    @functools.wraps(method)
    def wrapper(self: HashCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise ReconcileError(
                f"the hash cache {self.path} is damaged: {exc} (it is safe to delete this file)"
            ) from exc

    return wrapper  # type: ignore[return-value]


class HashCache:
    """The cache database at ``path`` (created with its folder). Use from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except (OSError, sqlite3.Error) as exc:
            raise ReconcileError(f"cannot open the hash cache {path}: {exc} (it is safe to delete this file)") from exc

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {row[0]}, expected {SCHEMA_VERSION}")

    @_guarded
    def lookup_tree(self, root: str) -> dict[str, CachedRow]:
        """Every cached row for ``root`` itself and any path below it, by path (one range query)."""
        root = root.rstrip("/") or "/"
        low = root if root == "/" else root + "/"
        high = low[:-1] + chr(ord("/") + 1)
        rows = self._db.execute(_ROWS + "(path >= ? AND path < ?) OR path = ?", (low, high, root)).fetchall()
        return {r[0]: r for r in _well_formed(rows)}

    def rows_below(self, root: str) -> Iterator[CachedRow]:
        """The cached rows of every path below the folder ``root``, in path order, as the database reads them
        (none held: a million rows are never in memory at once). A row whose sha256 is malformed is left out."""
        low = root.rstrip("/") + "/"
        high = low[:-1] + chr(ord("/") + 1)
        try:
            cursor = self._db.execute(_ROWS + "path >= ? AND path < ? ORDER BY path", (low, high))
            while rows := cursor.fetchmany(4096):
                yield from _well_formed(rows)
        except sqlite3.Error as exc:
            raise ReconcileError(f"the hash cache {self.path} is damaged: {exc} (it is safe to delete this file)"
                                 ) from exc

    @_guarded
    def lookup(self, paths: Sequence[str]) -> dict[str, CachedRow]:
        """The cached rows for exactly these paths (batched ``IN`` queries)."""
        found: dict[str, CachedRow] = {}
        for start in range(0, len(paths), _IN_CHUNK):
            chunk = paths[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(_ROWS + f"path IN ({marks})", chunk).fetchall()
            found.update({r[0]: r for r in _well_formed(rows)})
        return found

    @_guarded
    def store(self, rows: Iterable[tuple[str, StatKey, str]]) -> None:
        """Record (path, stat, sha256) rows in one transaction, replacing older rows of the same paths."""
        values = [(path, *key, sha) for path, key, sha in rows]
        if not values:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?, ?)", values)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @staticmethod
    def listing_digest(files: Sequence[tuple[str, str, StatKey]]) -> str:
        """A digest of (relative path, stat) of every file, in order: equal digests, identical listings.

        Paths (NUL-separated, as UTF-8) and stats (five signed 64-bit integers each) are hashed as two flat
        buffers built in C, without an object per file.
        """
        return listing_digest_of(map(_REL, files), array("q", chain.from_iterable(map(_KEY, files))))

    @_guarded
    def load_listing(self, source: str, listing: str) -> tuple[Hashes, str] | None:
        """The hashes stored for ``source`` when its remembered listing is ``listing``, with a digest of them;
        else None (a miss, also when the stored value is not a list of hashes that checks against its digest)."""
        row = self._db.execute("SELECT listing, hashes FROM listings WHERE source = ?", (source,)).fetchone()
        if row is None or row[0] != listing or not isinstance(row[1], bytes):
            return None
        blob = row[1]
        head = len(_HASHES_FORMAT) + 32
        if not blob.startswith(_HASHES_FORMAT) or (len(blob) - head) % 32:
            return None
        raw = memoryview(blob)[head:]
        if hashlib.sha256(raw).digest() != blob[head - 32 : head]:
            return None
        return Hashes(blob, head), hashlib.sha256(blob).hexdigest()

    @_guarded
    def store_listing(self, source: str, listing: str, hashes: Sequence[str]) -> str:
        """Remember ``hashes`` for ``source`` with the listing they were computed for; a digest of them (the one
        :meth:`load_listing` gives back)."""
        raw = bytes.fromhex("".join(hashes))
        blob = _HASHES_FORMAT + hashlib.sha256(raw).digest() + raw
        self._db.execute("INSERT OR REPLACE INTO listings VALUES (?, ?, ?)", (source, listing, blob))
        return hashlib.sha256(blob).hexdigest()

    @_guarded
    def load_contents(self, memos: Iterable[str]) -> dict[str, tuple[str, int, int]]:
        """The (digest, file count, total size) remembered for each of ``memos`` that has one."""
        wanted = sorted(set(memos))
        found: dict[str, tuple[str, int, int]] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            rows = self._db.execute(
                f"SELECT memo, digest, files, size FROM contents WHERE memo IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            for memo, digest, files, size in rows:
                if _digests_ok([digest]) and type(files) is int and type(size) is int:
                    found[memo] = (digest, files, size)
        return found

    @_guarded
    def store_contents(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """Remember (memo, digest, file count, total size) rows."""
        values = list(rows)
        if values:
            self._db.executemany("INSERT OR REPLACE INTO contents VALUES (?, ?, ?, ?)", values)

    @_guarded
    def forget_contents(self, memos: Sequence[str]) -> None:
        """Drop the content summaries remembered under ``memos`` (one that the files' hashes contradicted)."""
        self._db.executemany("DELETE FROM contents WHERE memo = ?", [(m,) for m in memos])

    def forget(self, paths: Sequence[str]) -> None:
        """Drop what is remembered about ``paths``: their rows and every folder listing that holds them.

        Used when a file's bytes did not match its cached hash: the next scan hashes it again.
        """
        if not paths:
            return
        roots = [r[0] for r in self._db.execute("SELECT source FROM listings")]
        stale = [src for src in roots
                 if any(p == src.split("\0", 1)[0] or p.startswith(src.split("\0", 1)[0].rstrip("/") + "/")
                        for p in paths)]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("DELETE FROM file_hashes WHERE path = ?", [(p,) for p in paths])
            self._db.executemany("DELETE FROM listings WHERE source = ?", [(src,) for src in stale])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
