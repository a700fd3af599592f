"""The walk of a pull's destination: sorted, with stats, the same whether or not a helper process shares it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler import destwalk
from reconciler.destwalk import LOCK_NAME, PART_SUFFIX, SHARE_AFTER, STAGING, walk
from reconciler.sources.hashcache import stat_key


def _tree(root: Path) -> list[str]:
    """A tree that branches under ``data/`` into folders whose names sort around ``/`` (``b``, ``b-x``, ``b.txt``,
    ``b0``), with files between them, nested folders and leftovers of a killed pull on both sides of the split;
    the relative paths of its regular files, sorted."""
    expected = []
    for folder in ("a", "b", "b-x", "b0", "c", "d", "e"):
        for i in range(SHARE_AFTER + 10 if folder == "a" else 7):
            rel = f"data/{folder}/f{i:04d}.bin"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x" * i)
            expected.append(rel)
        (root / "data" / folder / f".f0001.bin.99{PART_SUFFIX}").write_bytes(b"half")
        (root / "data" / folder / "deep" / "er").mkdir(parents=True)
        (root / "data" / folder / "deep" / "er" / "z.txt").write_text(folder)
        expected.append(f"data/{folder}/deep/er/z.txt")
    for rel in ("data/b.txt", "data/b-", "data/c.d", "top.txt"):
        (root / rel).write_text(rel)
        expected.append(rel)
    (root / "data" / "e" / "link").symlink_to(root / "top.txt")
    (root / STAGING).mkdir()
    (root / STAGING / "chunk.zip").write_text("half a chunk")
    (root / LOCK_NAME).write_text("")
    return sorted(expected)


def test_walk_shared_with_a_helper_equals_the_walk_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _tree(tmp_path)
    alone = walk(tmp_path, share=False)
    assert alone.rels == expected
    assert not list(tmp_path.rglob(f"*{PART_SUFFIX}"))  # removed by the walk
    forks = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(destwalk, "can_fork", lambda: True)
    monkeypatch.setattr(os, "fork", fork)
    for rel in expected[-40:]:  # leftovers again, in the helper's half too
        if rel.startswith("data/e/f"):
            (tmp_path / rel).with_name(f".x{PART_SUFFIX}").write_bytes(b"half")
    shared = walk(tmp_path)
    assert len(forks) == 1
    assert shared.rels == alone.rels
    assert shared.keys == alone.keys
    assert shared.get("data/d/f0003.bin") == (str(tmp_path / "data/d/f0003.bin"),
                                              stat_key(os.stat(tmp_path / "data/d/f0003.bin")))
    assert not list(tmp_path.rglob(f"*{PART_SUFFIX}"))


def test_a_failed_helper_leaves_its_folders_to_the_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _tree(tmp_path)

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(destwalk, "can_fork", lambda: True)
    monkeypatch.setattr(destwalk.marshal, "dump", broken)  # in the helper, which then leaves with 1
    assert walk(tmp_path).rels == expected


def test_a_small_tree_is_walked_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in "abcd":
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "f.txt").write_text(folder)

    def no_fork() -> int:
        raise AssertionError("a walk of 4 files forked")

    monkeypatch.setattr(destwalk, "can_fork", lambda: True)
    monkeypatch.setattr(os, "fork", no_fork)
    assert walk(tmp_path).rels == ["a/f.txt", "b/f.txt", "c/f.txt", "d/f.txt"]
