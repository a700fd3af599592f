"""sha256 of local files, in parallel threads, through the persistent :class:`HashCache`.

hashlib releases the GIL while hashing large buffers, so threads scale on multi-core machines for big files;
small files are grouped into batches so the per-task overhead stays low. Files are read in 1 MiB chunks into
one reused buffer per task.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import NamedTuple

from .errors import SourceError
from .hashcache import SIZE, CachedRow, HashCache, StatKey, stat_key
from .progress import Progress

CHUNK_SIZE = 1 << 20
_BATCH_FILES = 256
_BATCH_BYTES = 16 << 20


class LocalFile(NamedTuple):
    """A regular file found on disk. ``rel`` is its POSIX path relative to the source root."""

    rel: str
    path: str
    key: StatKey

    @property
    def size(self) -> int:
        return self.key[SIZE]


Digest = tuple[int, str]
"""(size, sha256) of a file's bytes; a plain tuple because one is built per file on every scan."""


def sha256_file(path: str, buf: bytearray | None = None) -> tuple[Digest, StatKey]:
    """The digest of ``path`` and its stat after reading (for the caller's before/after comparison)."""
    buf = buf if buf is not None else bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
                size += n
            after = stat_key(os.fstat(f.fileno()))
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return (size, h.hexdigest()), after


def _batches(files: Sequence[LocalFile]) -> list[list[LocalFile]]:
    """Consecutive groups of at most _BATCH_FILES files or about _BATCH_BYTES bytes."""
    out: list[list[LocalFile]] = []
    cur: list[LocalFile] = []
    cur_bytes = 0
    for f in files:
        if cur and (len(cur) >= _BATCH_FILES or cur_bytes + f.size > _BATCH_BYTES):
            out.append(cur)
            cur, cur_bytes = [], 0
        cur.append(f)
        cur_bytes += f.size
    if cur:
        out.append(cur)
    return out


class Hasher:
    """Digests files, serving unchanged ones from the cache. ``hashed`` counts files actually read."""

    def __init__(self, cache: HashCache, executor: Callable[[], Executor], *, progress: bool) -> None:
        self._cache = cache
        self._executor = executor
        self._progress = progress
        self.hashed = 0
        self.unstable = 0  # files whose stat changed while they were read (their hash is not cached)

    def digest(self, files: Sequence[LocalFile], cached: Mapping[str, CachedRow]) -> list[Digest]:
        """One digest per file, in order. Cache hits need an identical stat; misses are hashed and stored."""
        result: list[Digest | None] = [None] * len(files)
        missing: list[int] = []
        for i, f in enumerate(files):
            hit = cached.get(f.path)
            if hit is not None and hit[1:6] == f.key:  # see CachedRow for the layout
                result[i] = (f.size, hit[6])
            else:
                missing.append(i)
        if missing:
            todo = [files[i] for i in missing]
            for i, digest in zip(missing, self._hash_all(todo), strict=True):
                result[i] = digest
        return [d for d in result if d is not None]

    def _hash_all(self, files: list[LocalFile]) -> list[Digest]:
        total_bytes = sum(f.size for f in files)
        with Progress("hashing", len(files), total_bytes, enabled=self._progress) as bar:

            def run(batch: list[LocalFile]) -> list[tuple[Digest, StatKey]]:
                buf = bytearray(CHUNK_SIZE)
                out = []
                for f in batch:
                    out.append(sha256_file(f.path, buf))
                    bar.advance(1, f.size)
                return out

            done = [r for batch in self._executor().map(run, _batches(files)) for r in batch]
        self.hashed += len(files)
        stable = [(f.path, f.key, digest[1]) for f, (digest, after) in zip(files, done, strict=True) if after == f.key]
        self.unstable += len(files) - len(stable)
        self._cache.store(stable)
        return [digest for digest, _ in done]

    def record(self, rows: Sequence[tuple[str, StatKey, str]]) -> None:
        """Seed the cache with hashes computed from bytes just written (each counted as hashed)."""
        self.hashed += len(rows)
        self._cache.store(rows)
