"""Sources: what each manifest source contributes to a dataset version, as files and links.

:class:`SourceResolver` turns a :data:`~reconciler.model.Source` into a :class:`SourceContent`:

* ``path`` sources (:mod:`.local`) and ``torchvision`` sources (:mod:`.torchvision`) give :class:`FileEntry`
  items whose sha256 comes from the persistent hash cache (:mod:`.hashcache`) or is computed in parallel
  threads (:mod:`.hashing`);
* ``url`` sources (:mod:`.remote`) give :class:`LinkEntry` items (size and ETag as the store reports them;
  ``file://`` links carry the file's sha256 as their ETag so a same-size edit still shows), or, with
  ``copy: true``, :class:`FileEntry` items for the downloaded bytes.

Invariants of every :class:`SourceContent`: entries are sorted by dataset path, paths are normalised and
already joined with the source's ``dest``, no path appears twice, and ``FileEntry.local`` is the absolute path
of the bytes on this machine. Every problem is a :class:`~reconciler.diagnostics.ReconcileError` with one line
naming the source's manifest span. This package never imports clearml.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from ..cachedir import default_cache_dir
from ..diagnostics import Diagnostic, ReconcileError
from ..gcpause import gc_paused
from ..model import (
    ContentSummary,
    DeferredTuple,
    FileEntry,
    LinkEntry,
    PathSource,
    Source,
    TorchvisionSource,
    UrlSource,
    join_dataset_path,
    normalize_dataset_path,
)
from .errors import SourceError
from .hashcache import SIZE, HashCache, listing_digest_of, stat_key
from .hashing import Digest, Hasher, LocalFile
from .local import walk_source

if TYPE_CHECKING:  # URL and torchvision sources load their modules (urllib.request, ...) when there is one
    from .remote import RemoteObject, S3Clients
    from .torchvision import TorchvisionEnv

__all__ = ["ResolveOptions", "SourceContent", "SourceResolver", "default_cache_dir", "forget_contents",
           "forget_hashes", "remember_contents", "remembered_contents"]

K = TypeVar("K", bound=Hashable)

HASH_DB_NAME = "hashes.sqlite3"


def forget_hashes(paths: Sequence[str]) -> None:
    """Make the next scan hash ``paths`` again (their bytes did not match the cached hash)."""
    cache = HashCache(default_cache_dir() / HASH_DB_NAME)
    try:
        cache.forget([os.path.abspath(p) for p in paths])
    finally:
        cache.close()


def forget_contents(memos: Sequence[str], cache_dir: Path | None = None) -> None:
    """Drop the content summaries remembered under ``memos`` (the files' hashes contradicted them)."""
    cache = HashCache((cache_dir or default_cache_dir()) / HASH_DB_NAME)
    try:
        cache.forget_contents(memos)
    finally:
        cache.close()


def remembered_contents(memos: Mapping[K, str], cache_dir: Path | None = None) -> dict[K, ContentSummary]:
    """The content summaries remembered under ``memos`` (see :func:`reconciler.plan.contents.content_memos`), by key."""
    if not memos:
        return {}
    cache = HashCache((cache_dir or default_cache_dir()) / HASH_DB_NAME)
    try:
        rows = cache.load_contents(memos.values())
    finally:
        cache.close()
    return {k: ContentSummary(*rows[m]) for k, m in memos.items() if m in rows}


def remember_contents(summaries: Mapping[str, ContentSummary], cache_dir: Path | None = None) -> None:
    """Remember content summaries by memo, for the next plans of the same sources."""
    if not summaries:
        return
    cache = HashCache((cache_dir or default_cache_dir()) / HASH_DB_NAME)
    try:
        cache.store_contents((m, s.digest, s.file_count, s.total_size) for m, s in summaries.items())
    finally:
        cache.close()


def _cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class SourceContent:
    """What one source contributes: files (hashed) and external links, each sorted by dataset path.

    ``memo``: a key that determines ``files`` and ``links`` (a folder whose listing and hashes are remembered);
    None when the source gives none. Files served from the remembered listing are built when first read.
    """

    files: Sequence[FileEntry] = ()
    links: Sequence[LinkEntry] = ()
    memo: str | None = None


@dataclass(frozen=True, slots=True)
class ResolveOptions:
    """How sources are resolved.

    ``cache_dir`` holds the hash cache, torchvision's default download root, materialised torchvision images
    and ``copy: true`` downloads; None means :func:`default_cache_dir`. ``workers`` is the number of hashing
    and downloading threads. ``progress`` draws a progress bar on stderr for long work. ``timeout`` (seconds)
    bounds each network connect and read.
    """

    cache_dir: Path | None = None
    workers: int = field(default_factory=_cpu_count)
    progress: bool = False
    timeout: float = 30.0


class SourceResolver:
    """Resolves sources against one hash cache. A context manager; use from one thread.

    ``hashed_files`` counts files whose bytes were actually hashed (cache misses, fresh downloads and newly
    written torchvision images), never files served from the cache.
    """

    def __init__(self, options: ResolveOptions | None = None) -> None:
        self.options = options or ResolveOptions()
        self.cache_dir = (self.options.cache_dir or default_cache_dir()).absolute()
        self._cache = HashCache(self.cache_dir / HASH_DB_NAME)
        self._pool: ThreadPoolExecutor | None = None
        self._s3_clients: S3Clients | None = None
        self._hasher = Hasher(self._cache, self._executor, progress=self.options.progress)

    @property
    def hashed_files(self) -> int:
        return self._hasher.hashed

    def _executor(self) -> Executor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.options.workers), thread_name_prefix="hash")
        return self._pool

    # --- public API --------------------------------------------------------------------------------------

    def resolve(self, source: Source) -> SourceContent:
        """The content of one source. Raises ReconcileError(message, span=source.span)."""
        try:
            dest = normalize_dataset_path(source.dest)
            if dest is None:
                raise SourceError(f"dest {source.dest!r} must be a relative path inside the dataset")
            if isinstance(source, PathSource):
                return self._path_content(source, dest)
            if isinstance(source, TorchvisionSource):
                from .torchvision import torchvision_files

                return self._files_content(torchvision_files(source, self._torchvision_env()), dest)
            if isinstance(source, UrlSource):
                return self._url_content(source, dest)
            raise SourceError(f"unsupported source {type(source).__name__}")
        except SourceError as exc:
            raise ReconcileError(f"{_kind(source)} source: {exc}", span=source.span) from exc

    def resolve_all(self, sources: Sequence[Source]) -> list[SourceContent]:
        """``resolve`` of each source, in order (hashing within each runs in parallel).

        Every source is tried; the ReconcileError raised at the end carries the diagnostics of all the sources
        that failed, one line each.
        """
        results: list[SourceContent] = []
        problems: list[Diagnostic] = []
        for source in sources:
            try:
                results.append(self.resolve(source))
            except ReconcileError as exc:
                problems.extend(exc.diagnostics)
        if problems:
            raise ReconcileError(problems)
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._cache.close()

    def __enter__(self) -> SourceResolver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- files -------------------------------------------------------------------------------------------

    def _digest(self, files: Sequence[LocalFile]) -> list[Digest]:
        """Digests of ``files`` via the cache: one range query when they share a folder, else IN queries."""
        if not files:
            return []
        if len(files) <= 64:
            return self._hasher.digest(files, self._cache.lookup([f.path for f in files]))
        return self._hasher.digest(files, self._cache.lookup_tree(_common_folder([f.path for f in files])))

    def _files_content(self, files: Sequence[LocalFile], dest: str) -> SourceContent:
        return self._entries(files, self._digest(files), dest)

    @staticmethod
    def _entries(files: Sequence[LocalFile], digests: Sequence[Digest], dest: str) -> SourceContent:
        prefix = dest + "/" if dest else ""  # join_dataset_path, inlined: one call per file adds up
        entries = tuple([FileEntry(prefix + f[0], d[0], d[1], f[1]) for f, d in zip(files, digests, strict=True)])
        return SourceContent(files=entries)

    def _path_content(self, source: PathSource, dest: str) -> SourceContent:
        files = walk_source(source.path, source.include, source.exclude)
        if not files:
            raise SourceError(
                f"{source.path} has no files"
                + (" matching include/exclude" if (source.include or source.exclude) else "")
            )
        key = "\0".join([os.path.abspath(source.path), *source.include, "\0", *source.exclude])
        listing = listing_digest_of(files.rels, files.keys)
        hit = self._cache.load_listing(key, listing)
        if hit is not None and len(hit[0]) == len(files):
            hashes, remembered = hit
            prefix = dest + "/" if dest else ""
            # only what the entries need is kept until they are built: the walk's stat keys (40 bytes a file) go
            base, rels, sizes = files.base, files.rels, files.keys[SIZE::5]

            def entries() -> tuple[FileEntry, ...]:
                with gc_paused():  # a tuple grown from a generator: no list of a million entries beside it
                    return tuple(FileEntry(prefix + rel if prefix else rel, size, sha, base + rel)
                                 for rel, size, sha in zip(rels, sizes, hashes, strict=True))

            return SourceContent(files=DeferredTuple(entries), memo=_memo(key, dest, listing, remembered))
        unstable = self._hasher.unstable
        content = self._files_content(files, dest)
        if self._hasher.unstable != unstable:  # a file changed while it was read: nothing to remember
            return content
        remembered = self._cache.store_listing(key, listing, [e.sha256 for e in content.files])
        return SourceContent(files=content.files, memo=_memo(key, dest, listing, remembered))

    def _torchvision_env(self) -> TorchvisionEnv:
        from .torchvision import TorchvisionEnv

        return TorchvisionEnv(self.cache_dir, self.options.progress, self._digest, self._hasher.record)

    # --- urls --------------------------------------------------------------------------------------------

    @property
    def _s3(self) -> S3Clients:
        if self._s3_clients is None:
            from .remote import S3Clients

            self._s3_clients = S3Clients(self.options.timeout)
        return self._s3_clients

    def _url_content(self, source: UrlSource, dest: str) -> SourceContent:
        from .remote import http_object, s3_objects

        scheme = source.url.split(":", 1)[0].lower()
        if scheme == "file":
            return self._file_url_content(source, dest)
        if scheme == "s3":
            objects = s3_objects(source.url, self._s3)
        elif scheme in ("http", "https"):
            objects = [http_object(source.url, self.options.timeout)]
        else:
            raise SourceError(f"unsupported URL scheme {scheme!r} in {source.url} (use s3, http, https or file)")
        if source.copy:
            return self._files_content(self._download(objects), dest)
        links = tuple(LinkEntry(join_dataset_path(dest, o.rel), o.url, o.size, o.etag) for o in objects)
        return SourceContent(links=links)

    def _download(self, objects: Sequence[RemoteObject]) -> list[LocalFile]:
        from .remote import download_cached

        downloads = self.cache_dir / "downloads"
        paths = list(self._executor().map(lambda o: download_cached(o, downloads, self._s3), objects))
        return [LocalFile(o.rel, str(p), stat_key(os.stat(p))) for o, p in zip(objects, paths, strict=True)]

    def _file_url_content(self, source: UrlSource, dest: str) -> SourceContent:
        from .remote import file_url_path

        root = file_url_path(source.url)
        files = walk_source(root)
        if not files:
            raise SourceError(f"{root} has no files")
        if source.copy:
            return self._files_content(files, dest)
        digests = self._digest(files)
        links = tuple(
            LinkEntry(join_dataset_path(dest, f.rel), "file://" + f.path, d[0], d[1])
            for f, d in zip(files, digests, strict=True)
        )
        return SourceContent(links=links)


def _memo(key: str, dest: str, listing: str, hashes: str) -> str:
    """What determines a folder source's files: the folder and globs, the dest, the listing and its hashes."""
    return hashlib.sha256("\0".join(("path-source-1", key, dest, listing, hashes)).encode()).hexdigest()


def _common_folder(paths: Sequence[str]) -> str:
    """The deepest folder containing every path (the common prefix of the extremes, cut at a ``/``)."""
    prefix = os.path.commonprefix([min(paths), max(paths)])
    return prefix[: prefix.rfind("/")] or "/"


def _kind(source: Source) -> str:
    if isinstance(source, PathSource):
        return "path"
    if isinstance(source, TorchvisionSource):
        return "torchvision"
    return "url"
