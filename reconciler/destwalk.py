"""What a pull's destination folder holds: every regular file under it, sorted by relative path, with its stat.

A warm pull is one walk of DEST and one cache query (see :mod:`reconciler.pulling`), so the walk is its cost. Each
folder is listed by name and its entries stat'ed relative to the folder's descriptor (no path look-up in the
kernel, no ``DirEntry`` in Python); what is left is the kernel's own ``lstat``, which one process cannot spread
over cores (threads only take turns holding the interpreter). So a large walk is shared with one forked helper:
where the tree first branches, once the walk has met a few hundred files in its first sub-folder, the helper walks
the later half of the sub-folders that remain, and its listing is read back (one file, ``marshal``) where it sorts.
The helper only lists and stats, writes its listing, and leaves with ``os._exit``: nothing of the pull runs in it.
The walk forks only from a process that runs no other thread (so never from a training script's threads); if the
helper fails, its folders are walked here.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import tempfile
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISDIR, S_ISREG

from .sources.hashcache import _INT64, StatKey, listing_digest_of, stat_key

STAGING = ".reconcile-pull"  # chunks being downloaded, under DEST
LOCK_NAME = ".reconcile-pull.lock"  # held by the pull writing DEST
PART_SUFFIX = ".reconcile-part"  # files being written
SHARE_AFTER = 256  # files the walk meets before it shares the rest with a helper


def key_at(keys: array[int], i: int) -> StatKey:
    """The ``i``-th stat key of five int64 a file laid out flat."""
    return tuple(keys[5 * i : 5 * i + 5])  # type: ignore[return-value]


class Listing:
    """Regular files under a folder, sorted by relative POSIX path, held compactly: the paths in one list, their
    stat keys in one int64 array (five a file). ``in`` and :meth:`get` look a path up by bisection."""

    __slots__ = ("base", "keys", "rels")

    def __init__(self, base: str, rels: list[str] | None = None, keys: array[int] | None = None) -> None:
        self.base = base.rstrip("/") + "/"
        self.rels: list[str] = rels if rels is not None else []
        self.keys: array[int] = keys if keys is not None else array("q")

    def __len__(self) -> int:
        return len(self.rels)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rels)

    def __contains__(self, rel: object) -> bool:
        return isinstance(rel, str) and self.index(rel) is not None

    def index(self, rel: str) -> int | None:
        i = bisect_left(self.rels, rel)
        return i if i < len(self.rels) and self.rels[i] == rel else None

    def key(self, i: int) -> StatKey:
        return key_at(self.keys, i)

    def get(self, rel: str) -> tuple[str, StatKey] | None:
        """(absolute path, stat key) of ``rel``, or None."""
        i = self.index(rel)
        return None if i is None else (self.base + rel, self.key(i))

    def digest(self) -> str:
        return listing_digest_of(self.rels, self.keys)


def walk(dest: Path, *, share: bool = True) -> Listing:
    """Every regular file under ``dest``, sorted by relative path. Leftover temporary files of a killed pull are
    removed; the staging folder and the lock file are skipped; symlinks are not followed. ``share``: a large walk
    may be shared with a helper process (see the module)."""
    out = Listing(str(dest))
    _walk([_Folder(str(dest), "", top=True)], out, share and can_fork())
    return out


class _Folder:
    """One folder of a walk: its regular files (names, relative paths, stat keys) and its sub-folders in walk order
    (a folder sorts as its name and ``/``), with how far the walk has got through each; ``helper`` and ``shared``:
    the helper walking ``folders[shared:]``, if any."""

    __slots__ = ("files", "folders", "helper", "keys", "next_file", "next_folder", "path", "rel", "rels", "shared")

    def __init__(self, path: str, rel: str, top: bool) -> None:
        self.path, self.rel = path, rel
        self.files: list[str] = []
        self.rels: list[str] = []
        self.keys: array[int] = array("q")
        self.folders: list[str] = []
        self.next_file = self.next_folder = 0
        self.helper: _Helper | None = None
        self.shared = 0
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # removed while walking
            return
        try:
            self._list(fd, top)
        finally:
            os.close(fd)
        self.folders.sort(key=lambda name: name + "/")

    def _list(self, fd: int, top: bool) -> None:
        # Hot loop (one iteration per file).
        names = os.listdir(fd)
        names.sort()
        lstat, rel = os.lstat, self.rel
        take, append, extend = self.files.append, self.rels.append, self.keys.extend
        for name in names:
            try:
                st = lstat(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            if S_ISREG(st.st_mode):
                if name[0] == ".":
                    if name.endswith(PART_SUFFIX):  # a killed pull's temporary file
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(name, dir_fd=fd)
                        continue
                    if top and name == LOCK_NAME:
                        continue
                take(name)
                append(rel + name)
                dev, ino = st.st_dev, st.st_ino
                if dev >= _INT64 or ino >= _INT64:
                    extend(stat_key(st))
                else:
                    extend((dev, ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
            elif S_ISDIR(st.st_mode) and not (top and name == STAGING):
                self.folders.append(name)

    def child(self, name: str) -> _Folder:
        return _Folder(f"{self.path}/{name}", f"{self.rel}{name}/", top=False)


def _walk(stack: list[_Folder], out: Listing, share: bool) -> None:
    """Depth first from the folders on ``stack``: each folder's files that sort before its next sub-folder, then
    that sub-folder (walked here, or read back from the helper), then the files after the last one."""
    rels, keys = out.rels, out.keys
    try:
        while stack:
            here = stack[-1]
            i = here.next_file
            if here.next_folder < len(here.folders):
                at = here.next_folder
                name = here.folders[at]
                here.next_folder += 1
                j = bisect_left(here.files, name + "/", i)
                rels += here.rels[i:j]
                keys += here.keys[5 * i : 5 * j]
                here.next_file = j
                if share and at == 1 and len(rels) >= SHARE_AFTER and len(here.folders) >= 3:
                    share = False  # once, where the tree first branches
                    here.shared = 1 + (len(here.folders) - 1) // 2
                    here.helper = _Helper.start(here, here.folders[here.shared :])
                if here.helper is not None and at >= here.shared:
                    got = here.helper.listing(at - here.shared)
                    if got is not None:
                        rels += got[0]
                        keys.frombytes(got[1])
                        continue
                stack.append(here.child(name))
            else:
                j = len(here.files)
                rels += here.rels[i:j]
                keys += here.keys[5 * i : 5 * j]
                if here.helper is not None:
                    here.helper.close()
                stack.pop()
    finally:
        for folder in stack:
            if folder.helper is not None:
                folder.helper.close()


def cores() -> int:
    """The cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def can_fork() -> bool:
    """True in a process that runs no other thread (forking one that does may copy a lock another thread holds),
    with more than one core to share work with a forked helper."""
    return hasattr(os, "fork") and threading.active_count() == 1 and cores() > 1


class _Helper:
    """A forked process walking some sub-folders of one folder; :meth:`listing` reads its listing of each (None
    for all of them when it failed: they are walked here)."""

    def __init__(self, pid: int, out: int) -> None:
        self._pid, self._out = pid, out
        self._listings: list[tuple[list[str], bytes]] | None = None
        self._done = False

    @classmethod
    def start(cls, parent: _Folder, names: list[str]) -> _Helper | None:
        try:
            out, path = tempfile.mkstemp(prefix="reconcile-walk-")  # unlinked at once: nothing is left behind
        except OSError:  # no writable temporary folder: walked here
            return None
        os.unlink(path)
        try:
            pid = os.fork()
        except OSError:
            os.close(out)
            return None
        if pid == 0:  # the helper: walk, write, leave (never returns into the caller's code)
            code = 1
            try:
                listings = []
                for name in names:
                    part = Listing(parent.path)
                    _walk([parent.child(name)], part, share=False)
                    listings.append((part.rels, part.keys.tobytes()))
                with os.fdopen(out, "wb") as f:
                    marshal.dump(listings, f)
                code = 0
            finally:
                os._exit(code)
        return cls(pid, out)

    def listing(self, k: int) -> tuple[list[str], bytes] | None:
        if not self._done:
            self._done = True
            _, status = os.waitpid(self._pid, 0)
            if os.waitstatus_to_exitcode(status) == 0:
                with contextlib.suppress(OSError, EOFError, ValueError, TypeError):
                    os.lseek(self._out, 0, os.SEEK_SET)
                    with os.fdopen(os.dup(self._out), "rb") as f:
                        self._listings = marshal.load(f)
            os.close(self._out)
        listings = self._listings
        return listings[k] if listings is not None and k < len(listings) else None

    def close(self) -> None:
        """Stop the helper if it still runs (the walk ended early) and forget it."""
        if not self._done:
            self._done = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, 9)
            os.waitpid(self._pid, 0)
            os.close(self._out)
        self._listings = None
