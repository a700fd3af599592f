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
  their own there (each one checked against its size and sha256 before it is written), then moved into DEST: a
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
import io
import json
import os
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .clearml_backend import BackendError, ServerReader
from .diagnostics import ReconcileError
from .globs import GlobSet
from .model import LinkEntry, ObservedVersion, StoredFile, VersionKey, normalize_dataset_path
from .sources.hashcache import HashCache, StatKey, stat_key
from .sources.progress import Progress

STAGING = ".reconcile-pull"  # chunks being downloaded, under DEST
LOCK_NAME = ".reconcile-pull.lock"  # held by the pull writing DEST
PART_SUFFIX = ".reconcile-part"  # files being written
HASH_DB_NAME = "hashes.sqlite3"
_BLOCK = 1 << 20
IN_MEMORY = 16 << 20  # chunks up to this size are extracted from memory
SMALL_FILE = 1 << 20  # files up to this size are read whole from their chunk, checked, then written


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


def select(files: Iterable[StoredFile], globs: Sequence[Sequence[str]]) -> list[StoredFile]:
    """The files matching every group of ``globs`` (a file matches a group when it matches any of its globs)."""
    sets = [GlobSet.compile(group) for group in globs]
    return [f for f in files if all(s.matches(f.path) for s in sets)]


def check_paths(paths: Iterable[str], version: str) -> None:
    """Refuse a version whose paths would land outside DEST (absolute, ``..``, empty, not normalised) or on the
    names a pull keeps for itself (its staging folder, its temporary files)."""
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if not path or path.startswith("/") or normalize_dataset_path(path) != path or ".." in path.split("/") or (
                path.split("/")[0] in (STAGING, LOCK_NAME) or (name.startswith(".") and name.endswith(PART_SUFFIX))):
            raise ReconcileError(f"{version} holds the unsafe path {path!r}; nothing was written")


def plan_chunks(missing: Iterable[StoredFile]) -> dict[tuple[str, str], list[StoredFile]]:
    """The chunks to download, each with the missing files it holds; keyed (owner version id, chunk name)."""
    out: dict[tuple[str, str], list[StoredFile]] = {}
    for f in missing:
        out.setdefault((f.owner_id, f.chunk), []).append(f)
    return dict(sorted(out.items()))


# --- what DEST holds ---------------------------------------------------------------------------------------------


def walk(dest: Path) -> dict[str, tuple[str, StatKey]]:
    """Every regular file under ``dest``: relative POSIX path -> (absolute path, stat key). Leftover temporary
    files of a killed pull are removed; the staging folder is skipped; symlinks are not followed."""
    out: dict[str, tuple[str, StatKey]] = {}
    stack = [(str(dest), "")]
    while stack:
        folder, rel = stack.pop()
        try:
            it = os.scandir(folder)
        except FileNotFoundError:
            continue
        with it:
            for entry in it:
                name = entry.name
                sub = f"{rel}{name}"
                if rel == "" and name in (STAGING, LOCK_NAME):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, sub + "/"))
                elif name.endswith(PART_SUFFIX) and name.startswith("."):
                    _unlink(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    out[sub] = (entry.path, stat_key(entry.stat(follow_symlinks=False)))
    return out


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
    from .report import resolve_version

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


class _Writer:
    """Writes extracted files atomically and remembers each one's stat with its hash."""

    def __init__(self, dest: Path, progress: Progress) -> None:
        self.dest = dest
        self.real_dest = os.path.realpath(dest)
        self.progress = progress
        self.safe_dirs: set[str] = set()
        self.written: list[tuple[str, StatKey, str]] = []
        self._placing = threading.Lock()  # one staged tree moves into DEST at a time

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

    def stage(self, f: StoredFile, data: bytes, where: str, root: str, made: set[str]
              ) -> tuple[str, StatKey, str]:
        """Write a small file already in memory under the staging tree ``root``, checked before anything is
        written; (its path in DEST, its stat, its sha256). ``made``: the folders of ``root`` already made."""
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != f.size or digest != f.sha256:
            raise BackendError(f"{f.path} in {where} does not match the version's file list "
                               f"({len(data)} bytes, sha256 {digest[:12]}; recorded {f.size} bytes, "
                               f"sha256 {f.sha256[:12]})")
        path = os.path.join(root, f.path)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            key = stat_key(os.fstat(fd))
        finally:
            os.close(fd)
        self.progress.advance(1, f.size)
        return os.path.join(self.dest, f.path), key, f.sha256

    def place(self, root: str, staged: Sequence[tuple[str, StatKey, str]]) -> None:
        """Move the staging tree ``root`` (its files all checked, listed in ``staged``) into DEST."""
        with self._placing:
            moved: set[str] = set()  # files renamed one by one: their stat changed
            self._merge(root, str(self.dest), moved)
            for target, key, sha in staged:
                self.written.append((target, stat_key(os.stat(target)) if target in moved else key, sha))

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
        self.written.append((target, stat_key(os.stat(target)), f.sha256))
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


def _memo(dest: Path, version_id: str, groups: Sequence[Sequence[str]], delete: bool,
          local: Mapping[str, tuple[str, StatKey]]) -> str:
    """What identifies "DEST, with exactly these files and stats, holds this selection of this version"."""
    listing = HashCache.listing_digest(sorted((rel, path, key) for rel, (path, key) in local.items()))
    what = json.dumps(["pull-1", str(dest), version_id, [list(g) for g in groups], delete, listing])
    return hashlib.sha256(what.encode("utf-8", "surrogatepass")).hexdigest()


def _pull(reader: ServerReader, version: ObservedVersion, groups: Sequence[Sequence[str]],
          dest: Path, local: dict[str, tuple[str, StatKey]], cache: HashCache, options: PullOptions,
          cache_root: Path) -> PullResult:
    from .observe import state_cache_dir

    label = str(version.key)
    files, links = reader.files_of(version, state_cache_dir(reader.api_host, cache_root))
    check_paths((f.path for f in files), label)
    check_paths((link.path for link in links), label)
    chosen = select(files, groups) if groups else files
    chosen_links = [link for link in links if all(GlobSet.compile(g).matches(link.path) for g in groups)]
    total_bytes = sum(f.size for f in chosen)
    progress = Progress(f"pull {label}", len(chosen), total_bytes, enabled=options.progress)
    writer = _Writer(dest, progress)
    try:
        missing, present, hashed = _compare(chosen, local, dest, cache, options.workers, progress)
        writer.written.extend(hashed)
        chunks, downloaded = _fetch(reader, missing, dest / STAGING, writer, options.workers)
        n_links = _fetch_links(reader, chosen_links, local, writer, dest / STAGING)
    finally:  # what was verified is remembered, also when the pull stops early
        progress.close()
        cache.store(writer.written)
    deleted = 0
    if options.delete:
        keep = {f.path for f in chosen} | {link.path for link in chosen_links}
        for rel, (path, _) in sorted(local.items()):
            if rel not in keep:
                _unlink(path)
                del local[rel]
                deleted += 1
    if not n_links:  # DEST as this pull left it (links are not hashed, so never remembered)
        prefix = len(str(dest)) + 1
        for path, key, _ in writer.written:
            local[path[prefix:].replace(os.sep, "/")] = (path, key)
        after = _memo(dest, version.id, groups, options.delete, local)
        cache.store_contents([(after, hashlib.sha256(version.id.encode()).hexdigest(), len(chosen), total_bytes)])
    return PullResult(dest, version.key, version.id, len(chosen), total_bytes, present, len(missing), chunks,
                      downloaded, deleted, n_links)


def declared_splits(version: ObservedVersion) -> Mapping[str, Sequence[str]]:
    """The splits a version declares (name -> globs); empty when it declares none."""
    splits: Mapping[str, Sequence[str]] = getattr(version.properties, "splits", None) or {}
    return splits


def _compare(chosen: Sequence[StoredFile], local: Mapping[str, tuple[str, StatKey]], dest: Path,
             cache: HashCache, workers: int, progress: Progress
             ) -> tuple[list[StoredFile], int, list[tuple[str, StatKey, str]]]:
    """(files to fetch, files already right, newly hashed rows to remember); ``progress`` counts the files found
    right (by their stat at once, the hashed ones one by one)."""
    rows = cache.lookup_tree(str(dest)) if local else {}
    missing: list[StoredFile] = []
    to_hash: list[tuple[StoredFile, str]] = []
    present = 0
    for f in chosen:
        found = local.get(f.path)
        if found is None:
            missing.append(f)
            continue
        path, key = found
        row = rows.get(path)
        if row is not None and row[6] == f.sha256 and row[1:6] == key:
            present += 1
        elif key[2] != f.size:
            missing.append(f)
        else:
            to_hash.append((f, path))
    progress.advance(present, sum(f.size for f in chosen) - sum(f.size for f in missing)
                     - sum(f.size for f, _ in to_hash))
    hashed: list[tuple[str, StatKey, str]] = []
    if to_hash:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for (f, path), got in zip(to_hash, pool.map(lambda item: _hash(item[1]), to_hash), strict=True):
                if got is not None and got[0] == f.sha256:
                    present += 1
                    hashed.append((path, got[1], got[0]))
                    progress.advance(1, f.size)
                else:
                    missing.append(f)
    return missing, present, hashed


def _fetch(reader: ServerReader, missing: Sequence[StoredFile], staging: Path, writer: _Writer, workers: int
           ) -> tuple[int, int]:
    """Download the chunks holding ``missing`` and write those files; (chunks, bytes downloaded)."""
    plan = plan_chunks(missing)
    if not plan:
        return 0, 0
    uris = reader.chunk_uris(plan)
    staging.mkdir(exist_ok=True)

    def one(key: tuple[str, str], items: list[StoredFile]) -> int:
        owner, chunk = key
        where = f"chunk {chunk} of version {owner}"
        local_zip = staging / f"{owner}.{chunk}.zip"
        tree = str(staging / f"{owner}.{chunk}.tree")
        try:
            size = reader.download(uris[key], local_zip)
            # a small chunk is read whole: its members are then opened without a seek and a read each
            source: Path | io.BytesIO = io.BytesIO(local_zip.read_bytes()) if size <= IN_MEMORY else local_zip
            staged: list[tuple[str, StatKey, str]] = []
            made: set[str] = set()
            with zipfile.ZipFile(source) as zf:
                names = set(zf.namelist())
                for f in items:
                    if f.path not in names:
                        raise BackendError(f"{where} lacks {f.path}")
                    if f.size <= SMALL_FILE:  # into the chunk's staging tree, moved into DEST below
                        staged.append(writer.stage(f, zf.read(f.path), where, tree, made))
                        continue
                    with zf.open(f.path) as src:
                        writer.write(f, src, where)
            if staged:
                writer.place(tree, staged)
        except zipfile.BadZipFile:
            raise BackendError(f"{where} ({uris[key]}) is not a valid zip file") from None
        finally:
            local_zip.unlink(missing_ok=True)
            shutil.rmtree(tree, ignore_errors=True)
        return size

    pool = ThreadPoolExecutor(max(1, min(workers, len(plan))), thread_name_prefix="pull")
    try:
        futures = [pool.submit(one, key, items) for key, items in plan.items()]
        sizes = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return len(plan), sum(sizes)


def _fetch_links(reader: ServerReader, links: Sequence[LinkEntry], local: Mapping[str, tuple[str, StatKey]],
                 writer: _Writer, staging: Path) -> int:
    """Download the links not already there at their recorded size (a link records no sha256 to verify)."""
    n = 0
    for link in links:
        found = local.get(link.path)
        if found is not None and link.size is not None and found[1][2] == link.size:
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
