"""Content summaries remembered by memo: a memo changes with anything that changes the content, and a content
built from a remembered summary is the content built from the files."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from reconciler.model import (
    Content,
    ContentSummary,
    DatasetKey,
    DatasetSpec,
    DeferredTuple,
    DesiredState,
    FileEntry,
    PathSource,
    VersionKey,
    VersionSpec,
)
from reconciler.plan.contents import SourceFiles, compute_contents, content_memos
from reconciler.sources import ResolveOptions, SourceResolver, remember_contents, remembered_contents

K1, K2, K3 = (VersionKey("p", "ds", v) for v in ("1.0.0", "1.1.0", "1.2.0"))


def _f(path: str, text: str) -> FileEntry:
    return FileEntry(path, len(text), hashlib.sha256(text.encode()).hexdigest(), f"/data/{path}")


def _state(*versions: VersionSpec) -> DesiredState:
    return DesiredState((DatasetSpec(DatasetKey("p", "ds"), versions),))


V1, V2, V3 = VersionSpec(K1), VersionSpec(K2, parents=(K1,), remove=("old/*",)), VersionSpec(K3, parents=(K2,))
OWN = {K1: SourceFiles((_f("a", "a"), _f("old/x", "x")), memo="m1"), K2: SourceFiles((_f("b", "b"),), memo="m2"),
       K3: SourceFiles((_f("a", "A"),), memo="m3")}


def test_a_memo_follows_the_parent_the_removals_and_the_sources() -> None:
    base = content_memos(_state(V1, V2, V3), OWN)
    assert set(base) == {K1, K2, K3} and len(set(base.values())) == 3
    assert content_memos(_state(V1, V2, V3), OWN) == base
    changed_parent = content_memos(_state(V1, V2, V3), {**OWN, K1: replace(OWN[K1], memo="other")})
    assert all(changed_parent[k] != base[k] for k in (K1, K2, K3))  # a parent's change reaches every descendant
    changed_remove = content_memos(_state(V1, replace(V2, remove=("old/**",)), V3), OWN)
    assert changed_remove[K1] == base[K1] and changed_remove[K2] != base[K2] and changed_remove[K3] != base[K3]
    changed_own = content_memos(_state(V1, V2, V3), {**OWN, K3: replace(OWN[K3], memo="m3'")})
    assert changed_own[K2] == base[K2] and changed_own[K3] != base[K3]


def test_no_memo_without_one_from_every_source_or_for_adopted_versions() -> None:
    unknown = content_memos(_state(V1, V2, V3), {**OWN, K2: replace(OWN[K2], memo=None)})
    assert set(unknown) == {K1}  # nor for the versions built on it
    adopted = content_memos(_state(replace(V1, adopt="abc"), V2, V3), OWN)
    assert adopted == {}


def test_a_remembered_summary_gives_the_same_content_built_only_when_read() -> None:
    eager = compute_contents(_state(V1, V2, V3), OWN)
    summaries = {k: c.summarize() for k, c in eager.items()}
    built: list[str] = []

    def files(key: VersionKey) -> DeferredTuple[FileEntry]:
        def build() -> tuple[FileEntry, ...]:
            built.append(str(key))
            return tuple(OWN[key].files)
        return DeferredTuple(build)

    lazy_own = {k: replace(v, files=files(k)) for k, v in OWN.items()}
    lazy = compute_contents(_state(V1, V2, V3), lazy_own, known=summaries)
    assert [lazy[k].digest() for k in (K1, K2, K3)] == [eager[k].digest() for k in (K1, K2, K3)]
    assert [lazy[k].file_count for k in (K1, K2, K3)] == [eager[k].file_count for k in (K1, K2, K3)]
    assert built == []
    assert lazy[K3] == eager[K3] and dict(lazy[K3].files) == dict(eager[K3].files)
    assert sorted(built) == sorted(map(str, (K1, K2, K3)))  # the parents' files were needed too
    assert lazy[K1] == eager[K1] and lazy[K2] == eager[K2]
    assert sorted(built) == sorted(map(str, (K1, K2, K3)))  # each built once


def test_the_digest_of_a_content_built_out_of_order_is_that_of_the_sorted_content() -> None:
    a, b = _f("a", "1"), _f("b", "2")
    assert Content({"b": b, "a": a}).digest() == Content({"a": a, "b": b}).digest()
    summary = ContentSummary("0" * 64, 7, 9)
    deferred = Content.deferred(lambda: Content({"a": a}), summary)
    assert (deferred.digest(), deferred.file_count, deferred.total_size) == ("0" * 64, 7, 9)


def _resolve(tmp_path: Path, root: Path, dest: str = "") -> tuple[tuple[FileEntry, ...], str | None, int]:
    with SourceResolver(ResolveOptions(cache_dir=tmp_path / "cache", workers=1)) as r:
        content = r.resolve(PathSource(root, dest=dest))
        return tuple(content.files), content.memo, r.hashed_files


def test_a_folder_source_gives_a_memo_that_changes_with_its_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.txt").write_text("bravo")
    cold = _resolve(tmp_path, root)
    warm = _resolve(tmp_path, root)
    assert cold[1] is not None and warm[1] == cold[1] and warm[0] == cold[0] and (cold[2], warm[2]) == (2, 0)
    assert _resolve(tmp_path, root, dest="x")[1] not in (None, cold[1])
    (root / "sub" / "b.txt").write_text("BRAVO")
    edited = _resolve(tmp_path, root)
    assert edited[1] not in (None, cold[1]) and edited[0] != cold[0]
    st = os.stat(root / "a.txt")
    os.utime(root / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a touch: same bytes, new stat
    touched = _resolve(tmp_path, root)
    assert touched[1] not in (None, edited[1]) and touched[0] == edited[0]


def test_summaries_are_remembered_and_damaged_ones_ignored(tmp_path: Path) -> None:
    import sqlite3

    good = ContentSummary("a" * 64, 3, 10)
    remember_contents({"m1": good, "m2": ContentSummary("b" * 64, 1, 1)}, cache_dir=tmp_path)
    assert remembered_contents({K1: "m1", K2: "m3"}, cache_dir=tmp_path) == {K1: good}
    db = sqlite3.connect(tmp_path / "hashes.sqlite3")
    db.execute("UPDATE contents SET digest = 'not a digest' WHERE memo = 'm2'")
    db.commit()
    db.close()
    assert remembered_contents({K1: "m1", K2: "m2"}, cache_dir=tmp_path) == {K1: good}
