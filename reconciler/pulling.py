"""``reconcile pull``: a version's files (or a split, or globs of them) into a folder, verified, resumable.

Invariants:

* Only finalized versions are pulled. Every path is checked before anything is written: an absolute path, a
  ``..`` segment, or a path through a symlink that leaves DEST is refused (one line, nothing written).
* A file larger than 1 MiB is written under a temporary name in its final folder (``.NAME.<pid>.reconcile-part``),
  hashed while it is written, and renamed to its name only when its size and sha256 equal the version's file list.
  So after a kill -9, every file in DEST under a name of the version holds exactly the bytes the version records;
  the next pull removes the leftover temporary files.
* Chunks are downloaded into ``DEST/.reconcile-pull/`` and deleted once extracted; a chunk left by a killed pull is
  never read again (the next pull clears the folder first). A chunk's smaller files are extracted into a tree of
  their own there (each one checked against its size and sha256 before it is written; by forked helpers, one a
  core, when two or more chunks are needed: :mod:`reconciler.unpack`), then moved into DEST: a
  folder DEST lacks is renamed into place whole (one rename for all its files), the files of a folder DEST has are
  renamed one by one. A kill before the move leaves them only in the staging folder, which is never trusted.
  ``DEST/.reconcile-pull.lock`` is held (``flock``) while a pull writes DEST: a second pull into the same folder
  stops with one line.
* What is already in DEST is recognised by its stat, through the hash cache shared with manifest sources
  (:mod:`reconciler.sources.hashcache`): a file whose (device, inode, size, mtime, ctime) was recorded with the
  wanted sha256 is kept without reading it; any other file of the right size is hashed (and remembered); a file
  of another size is fetched again. After a pull, the whole listing of DEST (every path with its stat) is
  remembered with the version and selection it holds: a later pull that walks the identical listing is done
  without reading the version's file list. A warm pull therefore costs one walk of DEST and one cache query.
* Only the chunks that hold a missing file are downloaded (from whichever version uploaded them: the version
  itself, a parent, any ancestor of a merge), in parallel with ``workers`` threads.
* Files in DEST that the selection does not hold are left alone, unless ``delete`` is set (like rsync's
  ``--delete``): then they are removed, within DEST only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import zipfile
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import filterfalse
from pathlib import Path
from typing import IO, Any

from .clearml_backend import BackendError, ServerReader
from .destwalk import LOCK_NAME, PART_SUFFIX, STAGING, Listing, cores, key_at, walk
from .diagnostics import ReconcileError
from .globs import GlobSet
from .model import LinkEntry, ObservedVersion, StoredFile, StoredFiles, VersionKey, normalize_dataset_path
from .sources.hashcache import SIZE, CachedRow, HashCache, StatKey, stat_key
from .sources.progress import Progress
from .unpack import Helpers, member, unpack

HASH_DB_NAME = "hashes.sqlite3"
_BLOCK = 1 << 20
SMALL_FILE = 1 << 20  # files up to this size are read whole from their chunk, checked, then written
REMEMBER_EVERY = 8192  # files written or verified are remembered in the hash cache this many at a time
MEMBERS_IN_FLIGHT = 1 << 17  # files of the chunks being extracted at once, at most (unless one chunk has more)


# --- choosing: pure ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """Which files of a version a pull takes: a declared split, and/or globs (both: files matching both)."""

    split: str | None = None
    include: tuple[str, ...] = ()


def split_globs(splits: Mapping[str, Sequence[str]], name: str, version: str) -> tuple[str, ...]:
    """The globs of split ``name`` of a version that declares ``splits``; a one-line error otherwise."""
    if name not in splits:
        known = ", ".join(sorted(splits)) or "none declared"
        raise ReconcileError(f"{version} has no split {name!r} (splits: {known})")
    return tuple(splits[name])


def file_paths(files: Sequence[StoredFile]) -> Sequence[str]:
    """The path of each file, in order (a compact file list has them as a list already)."""
    return files.paths if isinstance(files, StoredFiles) else [f.path for f in files]


def select(files: Sequence[StoredFile], globs: Sequence[Sequence[str]]) -> list[int]:
    """The indices of the files matching every group of ``globs`` (a file matches a group when it matches any of
    its globs)."""
    sets = [GlobSet.compile(group) for group in globs]
    return [i for i, path in enumerate(file_paths(files)) if all(s.matches(path) for s in sets)]


# A path whose every segment is non-empty and starts with neither "." nor "/", without a backslash, a NUL or a drive
# ("C:"): normal (see normalize_dataset_path) and none of the pull's own names. Most paths are, and are let through
# in C; the others are checked one by one below.
_PLAIN = re.compile(r"(?!.:)(?:[^./\\\0][^/\\\0]*/)*[^./\\\0][^/\\\0]*", re.DOTALL)


def check_paths(paths: Iterable[str], version: str) -> None:
    """Refuse a version whose paths would land outside DEST (absolute, ``..``, empty, not normalised) or on the
    names a pull keeps for itself (its staging folder, its temporary files)."""
    for path in filterfalse(_PLAIN.fullmatch, paths):
        if unsafe(path):
            raise ReconcileError(f"{version} holds the unsafe path {path!r}; nothing was written")


def unsafe(path: str) -> bool:
    """True when a pull must not write ``path`` (see :func:`check_paths`)."""
    name = path.rsplit("/", 1)[-1]
    return not path or path.startswith("/") or normalize_dataset_path(path) != path or ".." in path.split("/") or (
        path.split("/")[0] in (STAGING, LOCK_NAME) or (name.startswith(".") and name.endswith(PART_SUFFIX)))


def plan_chunks(files: Sequence[StoredFile], missing: Iterable[int]) -> dict[tuple[str, str], array[int]]:
    """The chunks to download, each with the indices of the missing files it holds; keyed (owner version id, chunk
    name)."""
    out: dict[tuple[str, str], array[int]] = {}
    for i in missing:
        f = files[i]
        out.setdefault((f.owner_id, f.chunk), array("q")).append(i)
    return dict(sorted(out.items()))


# --- what DEST holds ---------------------------------------------------------------------------------------------


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _hash(path: str) -> tuple[str, StatKey] | None:
    """(sha256, stat after reading) of ``path``; None when it cannot be read or changed while read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as f:
            before = stat_key(os.fstat(f.fileno()))
            while block := f.read(_BLOCK):
                h.update(block)
            after = stat_key(os.fstat(f.fileno()))
    except OSError:
        return None
    return (h.hexdigest(), after) if before == after else None


# --- the result --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullResult:
    folder: Path
    version: VersionKey
    version_id: str
    files: int  # files selected
    total_bytes: int
    present: int  # already in DEST, verified
    fetched: int  # written by this pull
    chunks: int  # chunks downloaded
    downloaded_bytes: int
    deleted: int = 0
    links: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "version": str(self.version), "version_id": self.version_id,
                "files": self.files, "bytes": self.total_bytes, "present": self.present, "fetched": self.fetched,
                "chunks": self.chunks, "downloaded_bytes": self.downloaded_bytes, "deleted": self.deleted,
                "links": self.links}

    def summary(self) -> str:
        parts = [f"{self.files} files ({_human(self.total_bytes)}) of {self.version} in {self.folder}:",
                 f"{self.present} already there, {self.fetched} fetched "
                 f"({self.chunks} chunks, {_human(self.downloaded_bytes)} downloaded)"]
        if self.links:
            parts.append(f", {self.links} links")
        if self.deleted:
            parts.append(f", {self.deleted} extra files deleted")
        return " ".join(parts[:1]) + " " + "".join(parts[1:])


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# --- resolving the version -----------------------------------------------------------------------------------


def resolve(reader: ServerReader, ref: str) -> ObservedVersion:
    """The live finalized version ``ref`` names (``PROJECT/NAME@VERSION``, ``PROJECT/NAME@ALIAS`` or an id)."""
    from .observe import resolve_version

    version = resolve_version(reader, ref)
    if not version.finalized:
        raise ReconcileError(f"{version.key} is a draft ({version.status}); only finalized versions can be pulled")
    return version


# --- pulling -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullOptions:
    selection: Selection = Selection()
    delete: bool = False
    workers: int = 4
    progress: bool = False
    cache_dir: Path | None = None  # hashes and file lists; None: the user cache
    notice: Callable[[str], None] = field(default=lambda _m: None)


Row = tuple[str, StatKey, str]  # a file written or verified: (absolute path, stat key, sha256)


class _Writer:
    """Writes extracted files atomically and remembers each one's stat with its hash: ``written`` holds the rows
    not yet handed to ``remember`` (given a few thousand at a time, and by :meth:`flush`); ``placed`` lists every
    file written or verified, compactly, for the listing of DEST after the pull."""

    def __init__(self, dest: Path, progress: Progress, remember: Callable[[list[Row]], None] = lambda _rows: None
                 ) -> None:
        self.dest = dest
        self.real_dest = os.path.realpath(dest)
        self.progress = progress
        self.safe_dirs: set[str] = set()
        self.written: list[Row] = []
        self.placed = Listing(str(dest))  # not sorted: in the order written
        self._remember = remember
        self._recording = threading.Lock()
        self._placing = threading.Lock()  # one staged tree moves into DEST at a time

    def record(self, rows: Iterable[tuple[str, Row]]) -> None:
        """Note (relative path, row) of files now in DEST with the bytes the version records."""
        with self._recording:
            for rel, row in rows:
                self.placed.rels.append(rel)
                self.placed.keys.extend(row[1])
                self.written.append(row)
            if len(self.written) >= REMEMBER_EVERY:
                self._flush()

    def flush(self) -> None:
        with self._recording:
            self._flush()

    def _flush(self) -> None:
        rows, self.written = self.written, []
        self._remember(rows)

    def folder(self, rel: str) -> str:
        """The folder of ``rel`` under DEST, made if needed; refused when a symlink leads it outside DEST."""
        parent = os.path.dirname(os.path.join(self.dest, rel))
        if parent not in self.safe_dirs:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as err:
                raise ReconcileError(f"cannot make the folder {parent}: {err.strerror or err}") from None
            real = os.path.realpath(parent)
            if real != self.real_dest and not real.startswith(self.real_dest + os.sep):
                raise ReconcileError(f"{parent} leads outside {self.dest} (a symlink); refusing to write {rel}")
            self.safe_dirs.add(parent)
        return parent

    def place(self, root: str, staged: Iterable[tuple[StoredFile, StatKey]]) -> None:
        """Move the staging tree ``root`` (its files all checked, given in ``staged`` with their stats) into
        DEST."""
        dest = str(self.dest)
        with self._placing:
            moved: set[str] = set()  # files renamed one by one: their stat changed
            self._merge(root, dest, moved)
            self.record((f.path, (target, stat_key(os.stat(target)) if target in moved else key, f.sha256))
                        for f, key in staged for target in (os.path.join(dest, f.path),))

    def _merge(self, src: str, dst: str, moved: set[str]) -> None:
        with os.scandir(src) as it:
            entries = list(it)
        for entry in entries:
            target = os.path.join(dst, entry.name)
            if entry.is_dir(follow_symlinks=False):
                if not os.path.lexists(target):
                    os.rename(entry.path, target)  # the whole folder, its files' stats unchanged
                    continue
                real = os.path.realpath(target)
                if not os.path.isdir(target):
                    raise ReconcileError(f"{target} is a file; the version has a folder there")
                if real != self.real_dest and not real.startswith(self.real_dest + os.sep):
                    raise ReconcileError(f"{target} leads outside {self.dest} (a symlink); refusing to write there")
                self._merge(entry.path, target, moved)
            else:
                try:
                    os.replace(entry.path, target)
                except IsADirectoryError:
                    raise ReconcileError(f"{target} is a folder; the version has a file there") from None
                moved.add(target)

    def write(self, f: StoredFile, src: IO[bytes], where: str) -> None:
        parent = self.folder(f.path)
        target = os.path.join(self.dest, f.path)
        tmp = os.path.join(parent, f".{os.path.basename(f.path)}.{os.getpid()}{PART_SUFFIX}")
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                while (block := src.read(_BLOCK)) and size <= f.size:  # never more than the recorded size
                    h.update(block)
                    out.write(block)
                    size += len(block)
            if size != f.size or h.hexdigest() != f.sha256:
                raise BackendError(f"{f.path} in {where} does not match the version's file list "
                                   f"({size} bytes, sha256 {h.hexdigest()[:12]}; recorded {f.size} bytes, "
                                   f"sha256 {f.sha256[:12]})")
            try:
                os.replace(tmp, target)
            except IsADirectoryError:
                raise ReconcileError(f"{target} is a folder; the version has a file there") from None
        except BaseException:
            _unlink(tmp)
            raise
        self.record([(f.path, (target, stat_key(os.stat(target)), f.sha256))])
        self.progress.advance(1, f.size)


def pull(reader: ServerReader, ref: str, dest: Path, options: PullOptions = PullOptions()) -> PullResult:
    """Make ``dest`` hold the selected files of the version ``ref`` names, byte for byte (see the module)."""
    from .cachedir import default_cache_dir

    version = resolve(reader, ref)
    cache_root = options.cache_dir or default_cache_dir()
    label = str(version.key)
    groups: list[tuple[str, ...]] = []
    if options.selection.split is not None:
        groups.append(split_globs(declared_splits(version), options.selection.split, label))
    if options.selection.include:
        groups.append(options.selection.include)

    dest = dest.absolute()
    try:
        if dest.exists() and not dest.is_dir():
            raise ReconcileError(f"{dest} exists and is not a folder")
        dest.mkdir(parents=True, exist_ok=True)
        with _locked(dest):
            staging = dest / STAGING
            shutil.rmtree(staging, ignore_errors=True)  # whatever a killed pull left is never trusted
            local = walk(dest)
            cache = HashCache(cache_root / HASH_DB_NAME)
            try:
                memo = _memo(dest, version.id, groups, options.delete, local)
                known = cache.load_contents([memo]).get(memo)
                if known is not None:  # this very listing of DEST was verified for this selection: nothing to do
                    _, count, size = known
                    return PullResult(dest, version.key, version.id, count, size, count, 0, 0, 0)
                return _pull(reader, version, groups, dest, local, cache, options, cache_root)
            finally:
                cache.close()
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as err:  # a full disk, a folder without write permission, ...
        where = f" ({err.filename})" if err.filename else ""
        raise ReconcileError(f"pull into {dest}: {err.strerror or err}{where}") from None


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold DEST for this pull: a second pull into the same folder stops with one line instead of removing the
    first one's temporary files. The lock file is removed when the pull ends (DEST keeps only the version's
    files); a lock taken on a file another pull has just removed is taken again on the new one."""
    import fcntl

    path = dest / LOCK_NAME
    while True:
        lock = open(path, "a+")  # noqa: SIM115 - closed below, after the unlink
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ReconcileError(f"another pull is writing {dest}; wait for it to finish") from None
        try:
            same = os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        lock.close()
    try:
        yield
    finally:
        _unlink(str(path))
        lock.close()


def _memo(dest: Path, version_id: str, groups: Sequence[Sequence[str]], delete: bool, local: Listing) -> str:
    """What identifies "DEST, with exactly these files and stats, holds this selection of this version"."""
    what = json.dumps(["pull-1", str(dest), version_id, [list(g) for g in groups], delete, local.digest()])
    return hashlib.sha256(what.encode("utf-8", "surrogatepass")).hexdigest()


def _after(local: Listing, placed: Listing, gone: Collection[str]) -> Listing:
    """DEST as a pull left it: ``local`` (as walked before) without ``gone``, with the files ``placed`` (in any
    order; a file placed over one walked before has the placed stat)."""
    order = sorted(range(len(placed.rels)), key=placed.rels.__getitem__)
    out = Listing(local.base)
    rels, keys = out.rels, out.keys
    i, n = 0, len(local.rels)
    for j in order:
        rel = placed.rels[j]
        while i < n and local.rels[i] <= rel:
            if local.rels[i] != rel and local.rels[i] not in gone:
                rels.append(local.rels[i])
                keys.extend(local.keys[5 * i : 5 * i + 5])
            i += 1
        if rels and rels[-1] == rel:  # placed twice (a hashed file fetched again): the later stat
            keys[-5:] = placed.keys[5 * j : 5 * j + 5]
            continue
        rels.append(rel)
        keys.extend(placed.keys[5 * j : 5 * j + 5])
    for k in range(i, n):
        if local.rels[k] not in gone:
            rels.append(local.rels[k])
            keys.extend(local.keys[5 * k : 5 * k + 5])
    return out


def _pull(reader: ServerReader, version: ObservedVersion, groups: Sequence[Sequence[str]],
          dest: Path, local: Listing, cache: HashCache, options: PullOptions, cache_root: Path) -> PullResult:
    from .observe import state_cache_dir

    label = str(version.key)
    files, links = reader.files_of(version, state_cache_dir(reader.api_host, cache_root))
    paths = file_paths(files)
    check_paths(paths, label)
    check_paths((link.path for link in links), label)
    chosen: Sequence[int] = select(files, groups) if groups else range(len(files))
    chosen_links = [link for link in links if all(GlobSet.compile(g).matches(link.path) for g in groups)]
    sizes = files.sizes if isinstance(files, StoredFiles) else [f.size for f in files]
    total_bytes = sum(sizes) if not groups else sum(sizes[i] for i in chosen)
    progress = Progress(f"pull {label}", len(chosen), total_bytes, enabled=options.progress)
    writer = _Writer(dest, progress, cache.store)
    try:
        missing, present = _compare(files, chosen, local, cache, options.workers, writer)
        chunks, downloaded = _fetch(reader, files, missing, dest / STAGING, writer, options.workers)
        n_links = _fetch_links(reader, chosen_links, local, writer, dest / STAGING)
    finally:  # what was verified is remembered, also when the pull stops early
        progress.close()
        writer.flush()
    gone: set[str] = set()
    if options.delete:
        keep = {paths[i] for i in chosen} | {link.path for link in chosen_links}
        for rel in local:
            if rel not in keep:
                _unlink(local.base + rel)
                gone.add(rel)
    if not n_links:  # DEST as this pull left it (links are not hashed, so never remembered)
        after = _memo(dest, version.id, groups, options.delete, _after(local, writer.placed, gone))
        cache.store_contents([(after, hashlib.sha256(version.id.encode()).hexdigest(), len(chosen), total_bytes)])
    return PullResult(dest, version.key, version.id, len(chosen), total_bytes, present, len(missing), chunks,
                      downloaded, len(gone), n_links)


def declared_splits(version: ObservedVersion) -> Mapping[str, Sequence[str]]:
    """The splits a version declares (name -> globs); empty when it declares none."""
    splits: Mapping[str, Sequence[str]] = getattr(version.properties, "splits", None) or {}
    return splits


class _Ahead:
    """Rows sorted by their first item, looked up by keys in increasing order (one pass over both)."""

    def __init__(self, rows: Iterable[CachedRow]) -> None:
        self._rows = iter(rows)
        self._row = next(self._rows, None)

    def get(self, key: str) -> CachedRow | None:
        row = self._row
        while row is not None and row[0] < key:
            row = next(self._rows, None)
        self._row = row
        return row if row is not None and row[0] == key else None


def _compare(files: Sequence[StoredFile], chosen: Sequence[int], local: Listing, cache: HashCache, workers: int,
             writer: _Writer) -> tuple[Sequence[int], int]:
    """(indices of the files to fetch, number of files already right); files found right by hashing them are
    recorded with ``writer``, whose progress counts the files found right (by their stat at once, the hashed ones
    one by one)."""
    if not local:
        return chosen, 0
    paths = file_paths(files)
    if any(paths[a] > paths[b] for a, b in zip(chosen, chosen[1:], strict=False)):
        chosen = sorted(chosen, key=paths.__getitem__)  # in path order, as the cache's rows come
    rows = _Ahead(cache.rows_below(str(writer.dest)))
    missing: list[int] = []
    to_hash: list[tuple[int, str]] = []
    present = present_bytes = 0
    for i in chosen:
        f = files[i]
        at = local.index(f.path)
        if at is None:
            missing.append(i)
            continue
        path, key = local.base + f.path, local.key(at)
        row = rows.get(path)
        if row is not None and row[6] == f.sha256 and row[1:6] == key:
            present += 1
            present_bytes += f.size
        elif key[2] != f.size:
            missing.append(i)
        else:
            to_hash.append((i, path))
    writer.progress.advance(present, present_bytes)
    if to_hash:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for (i, path), got in zip(to_hash, pool.map(lambda item: _hash(item[1]), to_hash), strict=True):
                f = files[i]
                if got is not None and got[0] == f.sha256:
                    present += 1
                    writer.record([(f.path, (path, got[1], got[0]))])
                    writer.progress.advance(1, f.size)
                else:
                    missing.append(i)
    return missing, present


class _Budget:
    """At most ``limit`` units in use at once (a larger request waits until nothing else is in use). Opening a zip
    chunk makes an object per member (about 500 bytes): chunks of many small files are extracted a few at a time,
    so that the memory of a pull does not grow with its workers times the files a chunk holds."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, units: int) -> Iterator[None]:
        units = min(units, self._limit)
        with self._changed:
            self._changed.wait_for(lambda: self._used + units <= self._limit)
            self._used += units
        try:
            yield
        finally:
            with self._changed:
                self._used -= units
                self._changed.notify_all()


def _fetch(reader: ServerReader, files: Sequence[StoredFile], missing: Sequence[int], staging: Path,
           writer: _Writer, workers: int) -> tuple[int, int]:
    """Download the chunks holding the ``missing`` files and write those files; (chunks, bytes downloaded)."""
    plan = plan_chunks(files, missing)
    if not plan:
        return 0, 0
    uris = reader.chunk_uris(plan)
    staging.mkdir(exist_ok=True)

    budget = _Budget(MEMBERS_IN_FLIGHT)
    sizes = files.sizes if isinstance(files, StoredFiles) else [f.size for f in files]
    advance = writer.progress.advance

    def one(key: tuple[str, str], indices: array[int]) -> int:
        owner, chunk = key
        where = f"chunk {chunk} of version {owner}"
        local_zip = staging / f"{owner}.{chunk}.zip"
        tree = str(staging / f"{owner}.{chunk}.tree")
        small = array("q", (i for i in indices if sizes[i] <= SMALL_FILE))  # unpacked into the chunk's tree
        try:
            size = reader.download(uris[key], local_zip)
            keys = helpers.unpack(local_zip, small, where, tree, advance) if small and helpers is not None else None
            if keys is None and small:  # no helper: here (an object per member of the chunk: see _Budget)
                shutil.rmtree(tree, ignore_errors=True)
                with budget.hold(len(indices)):
                    keys = unpack(local_zip, files, small, where, tree, advance)
            if len(small) < len(indices):  # the larger files, streamed into DEST one by one
                with budget.hold(len(indices)), zipfile.ZipFile(local_zip) as zf:
                    for i in indices:
                        if sizes[i] > SMALL_FILE:
                            with zf.open(member(zf, files[i].path, where)) as src:
                                writer.write(files[i], src, where)
            if keys is not None:
                writer.place(tree, ((files[i], key_at(keys, k)) for k, i in enumerate(small)))
        except zipfile.BadZipFile:
            raise BackendError(f"{where} ({uris[key]}) is not a valid zip file") from None
        finally:
            local_zip.unlink(missing_ok=True)
            shutil.rmtree(tree, ignore_errors=True)
        return size

    # helpers are forked before any thread of the pool starts (see reconciler.unpack)
    helpers = Helpers.start(files, min(len(plan), cores())) if len(plan) > 1 else None
    pool = ThreadPoolExecutor(max(1, min(workers, len(plan))), thread_name_prefix="pull")
    try:
        futures = [pool.submit(one, key, items) for key, items in plan.items()]
        sizes_downloaded = [f.result() for f in futures]
    finally:
        if helpers is not None:  # stopped before the threads using them are waited for
            helpers.close()
        pool.shutdown(wait=True, cancel_futures=True)
    return len(plan), sum(sizes_downloaded)




def _fetch_links(reader: ServerReader, links: Sequence[LinkEntry], local: Listing, writer: _Writer,
                 staging: Path) -> int:
    """Download the links not already there at their recorded size (a link records no sha256 to verify)."""
    n = 0
    for link in links:
        found = local.get(link.path)
        if found is not None and link.size is not None and found[1][SIZE] == link.size:
            continue
        staging.mkdir(exist_ok=True)
        tmp = staging / f"link.{n}"
        size = reader.download(link.url, tmp)
        if link.size is not None and size != link.size:
            raise BackendError(f"the link {link.path} ({link.url}) has {size} bytes; the version records "
                               f"{link.size}")
        writer.folder(link.path)
        os.replace(tmp, os.path.join(writer.dest, link.path))
        n += 1
    return n


def pull_folder(ref: str, dest: str | os.PathLike[str], *, split: str | None = None, include: Sequence[str] = (),
                delete: bool = False, workers: int = 8, progress: bool | None = None) -> Path:
    """:func:`reconciler.pull`: connect as the CLI does (the ClearML configuration of the environment), pull,
    print the summary line to stderr, and return the folder."""
    import sys

    from .connection import ConnectOptions, connect

    def notice(message: str) -> None:
        print(message, file=sys.stderr)

    show = sys.stderr.isatty() if progress is None else progress
    options = PullOptions(Selection(split, tuple(include)), delete=delete, workers=workers, progress=show)
    with connect(ConnectOptions(), notice) as conn:
        result = pull(conn.backend.reader, ref, Path(dest), options)
    if show:
        notice(result.summary())
    return result.folder
