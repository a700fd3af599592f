"""Walking a local file or folder into the regular files a path source contributes.

What is taken, on purpose:

* Regular files, including files reached through a symlink (the link is followed: the dataset gets the
  target's bytes under the link's name).
* Folders, including symlinked folders outside the source, recursively: a symlink to a folder elsewhere is
  walked under the link's name (how data kept on another disk is brought in).
* A symlink to a folder of the source itself is an error naming it: back to an ancestor it is a loop, and to
  any other folder of the source its files would be in the dataset twice. ``exclude`` it to go on.
* Special files (FIFOs, sockets, device nodes) are skipped: they have no stable content to version.
* A dangling symlink, an unreadable file or an unreadable folder is an error naming it, unless ``exclude``
  drops it first. Names that are not valid UTF-8 are an error (dataset paths are text).
* ``include``/``exclude`` are globs (:mod:`reconciler.globs`) over the POSIX path relative to the
  source root; a file is taken when it matches some ``include`` (or there is none) and no ``exclude``. An
  ``exclude`` matching a folder prunes it without reading it. For a single-file source the globs see its
  base name.
* Hidden files are not special: ``exclude: ['.*']`` drops them.

The result is sorted by relative path, so the order never depends on the file system.
"""

from __future__ import annotations

import os
import stat
from array import array
from collections.abc import Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import overload

from ..gcpause import gc_paused
from ..globs import GlobSet
from .errors import SourceError
from .hashcache import _INT64, SIZE, stat_key
from .hashing import LocalFile

DirId = tuple[int, int]
_Open = tuple[Iterator[os.DirEntry[str]], str, frozenset[DirId]]  # a folder's entries left, its prefix, ancestors
_NAME = attrgetter("name")


def stat_source_root(path: Path) -> os.stat_result:
    """``stat`` of a source root (symlinks followed), with user-facing errors."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise SourceError(f"{path} is a dangling symlink (to {os.readlink(path)})") from None
        raise SourceError(f"{path} does not exist") from None
    except OSError as exc:
        raise SourceError(f"cannot access {path}: {exc.strerror or exc}") from exc


def _check_name(rel: str, full: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceError(f"file name is not valid UTF-8: {full!r}") from None


class Walked(Sequence[LocalFile]):
    """The regular files of one walk, sorted by relative path, held compactly: the relative paths in one list and
    their stat keys in one flat array of int64 (five a file), the absolute path being ``base + rel``. A walk of a
    million files then holds a string and 40 bytes a file instead of a tuple, a second path and five integers
    (about a fifth of the memory). Items are :class:`LocalFile` values, built when read."""

    __slots__ = ("base", "keys", "rels")

    def __init__(self, base: str, rels: list[str], keys: array[int]) -> None:
        self.base, self.rels, self.keys = base, rels, keys

    def __len__(self) -> int:
        return len(self.rels)

    @overload
    def __getitem__(self, index: int) -> LocalFile: ...
    @overload
    def __getitem__(self, index: slice) -> list[LocalFile]: ...

    def __getitem__(self, index: int | slice) -> LocalFile | list[LocalFile]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self.rels)))]
        rel = self.rels[index]
        at = 5 * (index % len(self.rels) if index < 0 else index)
        return LocalFile(rel, self.base + rel, tuple(self.keys[at : at + 5]))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[LocalFile]:
        base, keys, new_file = self.base, self.keys, tuple.__new__
        for i, rel in enumerate(self.rels):
            at = 5 * i
            yield new_file(LocalFile, (rel, base + rel, tuple(keys[at : at + 5])))

    def sizes(self) -> Iterator[int]:
        """The size of each file, in order."""
        return iter(self.keys[SIZE::5])


def _order(entry: os.DirEntry[str]) -> str:
    """Where an entry goes among its siblings so that a depth-first walk yields relative paths in sorted order: a
    folder sorts as its name followed by ``/``, the character that joins it to its files."""
    try:
        return entry.name + "/" if entry.is_dir() else entry.name
    except OSError:
        return entry.name  # unreadable: reported when it is visited


class _Walker:
    """Depth-first walk of one source root in sorted order; see the module docstring for the rules."""

    def __init__(self, include: GlobSet, exclude: GlobSet) -> None:
        self.include = include
        self.exclude = exclude
        self.rels: list[str] = []
        self.keys: array[int] = array("q")
        self.root_real = ""

    def take(self, rel: str, full: str, st: os.stat_result) -> None:
        if self.include and not self.include.matches(rel):
            return
        self.rels.append(rel)
        self.keys.extend(stat_key(st))

    def _open(self, folder: str, rel_folder: str, ancestors: frozenset[DirId]) -> _Open:
        """The entries of ``folder`` in walk order, with what the walk needs to go on below them."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=_NAME)
        except OSError as exc:
            raise SourceError(f"cannot read folder {folder}: {exc.strerror or exc}") from exc
        if any(not e.is_file(follow_symlinks=False) for e in entries):  # a folder or a link: the exact order
            entries.sort(key=_order)
        return iter(entries), rel_folder + "/" if rel_folder else "", ancestors

    def walk(self, root: str, root_id: DirId) -> None:
        # Hot loop (one iteration per file): attribute look-ups hoisted, plain regular files handled inline
        # (readability is checked when a file is read: hashing, or the upload). Each folder's entries come
        # sorted (see _order) and a sub-folder is walked where it sorts, so files are found in sorted order.
        self.root_real = os.path.realpath(root)
        exclude = self.exclude if self.exclude else None
        include = self.include if self.include else None
        append, extend = self.rels.append, self.keys.extend
        stack = [self._open(root, "", frozenset({root_id}))]
        while stack:
            entries, prefix, ancestors = stack[-1]
            for entry in entries:
                rel = prefix + entry.name
                if exclude is not None and exclude.matches(rel):
                    continue
                if not rel.isascii():
                    _check_name(rel, entry.path)
                if entry.is_file(follow_symlinks=False):
                    if include is not None and not include.matches(rel):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    dev, ino = st.st_dev, st.st_ino
                    append(rel)
                    if dev >= _INT64 or ino >= _INT64:
                        extend(stat_key(st))
                    else:
                        extend((dev, ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
                    continue
                sub = self._visit(entry, rel, ancestors)
                if sub is not None:
                    stack.append(self._open(*sub))
                    break
            else:
                stack.pop()

    def _visit(
        self, entry: os.DirEntry[str], rel: str, ancestors: frozenset[DirId]
    ) -> tuple[str, str, frozenset[DirId]] | None:
        """Take a file, or return the folder to walk next (None when there is none)."""
        try:
            st = entry.stat(follow_symlinks=True)
        except FileNotFoundError:
            if entry.is_symlink():
                raise SourceError(f"{entry.path} is a dangling symlink (to {os.readlink(entry.path)})") from None
            return None  # removed while walking
        except OSError as exc:
            raise SourceError(f"cannot access {entry.path}: {exc.strerror or exc}") from exc
        if stat.S_ISREG(st.st_mode):
            self.take(rel, entry.path, st)
            return None
        if stat.S_ISDIR(st.st_mode):
            dir_id = (st.st_dev, st.st_ino)
            if entry.is_symlink():
                self._check_folder_link(entry.path, rel, dir_id in ancestors)
            elif dir_id in ancestors:
                return None  # a bind mount of an ancestor: nothing new below it
            return (entry.path, rel, ancestors | {dir_id})
        return None  # FIFO, socket, device: skipped


    def _check_folder_link(self, path: str, rel: str, loop: bool) -> None:
        """A symlinked folder must lead out of the source (see the module docstring)."""
        target = os.path.realpath(path)
        inside = target == self.root_real or target.startswith(self.root_real.rstrip(os.sep) + os.sep)
        if not (loop or inside):
            return
        where = os.path.relpath(target, self.root_real)
        why = (f"a symlink loop (back to {'the source folder' if where == '.' else where})" if loop else
               f"a symlink to {where}, a folder of the same source: its files would be in the dataset twice")
        raise SourceError(f"{rel} is {why}; exclude it (exclude: [{rel}]) or remove the link")


def walk_source(path: Path, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> Walked:
    """The regular files of a file or folder source, sorted by relative path. ``path`` is absolute."""
    with gc_paused():
        return _walk_source(path, include, exclude)


def _walk_source(path: Path, include: tuple[str, ...], exclude: tuple[str, ...]) -> Walked:
    walker = _Walker(GlobSet.compile(include), GlobSet.compile(exclude))
    st = stat_source_root(path)
    full = os.path.abspath(path)
    if stat.S_ISDIR(st.st_mode):
        walker.walk(full, (st.st_dev, st.st_ino))
    elif stat.S_ISREG(st.st_mode):
        if not (walker.exclude and walker.exclude.matches(path.name)):
            walker.take(path.name, full, st)
    else:
        raise SourceError(f"{path} is neither a file nor a folder")
    if stat.S_ISDIR(st.st_mode):
        return Walked(full.rstrip("/") + "/", walker.rels, walker.keys)
    return Walked(full[: len(full) - len(path.name)], walker.rels, walker.keys)
