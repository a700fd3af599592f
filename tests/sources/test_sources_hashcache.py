"""The persistent hash cache: unchanged files are never hashed twice, changed ones always are."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

from reconciler.model import PathSource
from reconciler.sources import ResolveOptions, SourceResolver

MakeResolver = Callable[..., SourceResolver]

N_FILES = 10_000


def make_tree(root: Path, n: int) -> None:
    """``n`` small files in 100 folders; the content of file i is ``b"file i"``."""
    for i in range(n):
        folder = root / f"d{i % 100:03d}"
        if i < 100:
            folder.mkdir(parents=True)
        (folder / f"f{i:05d}.txt").write_bytes(b"file %d" % i)


def bump_mtime(path: Path) -> None:
    """A strictly later mtime, whatever the file system's timestamp granularity."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_unchanged_files_are_never_hashed_twice(tmp_path: Path, make_resolver: MakeResolver) -> None:
    root = tmp_path / "tree"
    make_tree(root, N_FILES)
    source = PathSource(root, dest="t")

    with make_resolver() as first:
        cold = first.resolve(source)
        assert first.hashed_files == N_FILES

    warm_resolver = make_resolver()
    warm = warm_resolver.resolve(source)
    assert warm_resolver.hashed_files == 0
    assert warm == cold
    assert [f.local for f in warm.files] == [f.local for f in cold.files]

    # rewrite one file (same size, different bytes): exactly that one is hashed again
    changed = root / "d007" / "f00007.txt"
    changed.write_bytes(b"FILE 7")
    bump_mtime(changed)
    again = make_resolver()
    after = {f.path: f.sha256 for f in again.resolve(source).files}
    assert again.hashed_files == 1
    assert after["t/d007/f00007.txt"] == hashlib.sha256(b"FILE 7").hexdigest()

    # touch another one without changing it: hashed again, same digest
    touched = root / "d042" / "f00042.txt"
    bump_mtime(touched)
    third = make_resolver()
    assert {f.path: f.sha256 for f in third.resolve(source).files} == after
    assert third.hashed_files == 1


def test_replaced_file_with_restored_mtime_is_rehashed(tmp_path: Path, make_resolver: MakeResolver) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    resolver = make_resolver()
    resolver.resolve(PathSource(f))
    st = f.stat()
    tmp = tmp_path / "a.new"
    tmp.write_bytes(b"two")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime, new inode
    tmp.replace(f)
    entry = resolver.resolve(PathSource(f)).files[0]
    assert entry.sha256 == hashlib.sha256(b"two").hexdigest()
    assert resolver.hashed_files == 2


def _resolve_in_process(root: str, cache_dir: str) -> tuple[int, list[str]]:
    with SourceResolver(ResolveOptions(cache_dir=Path(cache_dir), workers=2)) as resolver:
        content = resolver.resolve(PathSource(Path(root)))
        return resolver.hashed_files, [f.sha256 for f in content.files]


def test_two_processes_share_one_cache(tmp_path: Path, make_resolver: MakeResolver) -> None:
    root = tmp_path / "tree"
    make_tree(root, 2000)
    cache = tmp_path / "shared-cache"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_resolve_in_process, [(str(root), str(cache))] * 2)
    assert results[0][1] == results[1][1]
    resolver = make_resolver(cache)
    assert [f.sha256 for f in resolver.resolve(PathSource(root)).files] == results[0][1]
    assert resolver.hashed_files == 0


def test_a_remembered_listing_gives_the_same_content_without_per_file_lookups(
    tmp_path: Path, make_resolver: MakeResolver
) -> None:
    root = tmp_path / "tree"
    make_tree(root, 300)
    source = PathSource(root, dest="t", exclude=("d001/*",))
    with make_resolver() as first:
        cold = first.resolve(source)
    with make_resolver() as warm_resolver:
        cache = warm_resolver._cache
        calls: list[str] = []
        original = cache.lookup_tree
        cache.lookup_tree = lambda root_: calls.append(root_) or original(root_)  # type: ignore[method-assign]
        warm = warm_resolver.resolve(source)
        assert warm == cold and warm_resolver.hashed_files == 0
        assert calls == []  # served from the listing
        other = warm_resolver.resolve(PathSource(root, dest="t"))  # other globs: another listing
        assert calls and len(other.files) == 300 and warm_resolver.hashed_files == 3
    changed = root / "d005" / "f00005.txt"
    changed.write_bytes(b"FILE 5")
    bump_mtime(changed)
    with make_resolver() as after:
        content = {f.path: f.sha256 for f in after.resolve(source).files}
        assert after.hashed_files == 1
        assert content["t/d005/f00005.txt"] == hashlib.sha256(b"FILE 5").hexdigest()
