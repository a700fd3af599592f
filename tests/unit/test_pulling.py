"""The pure parts of `reconcile pull`: which files, which chunks, which paths are refused; splits as a property."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from reconciler.destwalk import PART_SUFFIX, STAGING, walk
from reconciler.diagnostics import ReconcileError
from reconciler.model import Properties, StoredFile, StoredFiles
from reconciler.pulling import check_paths, plan_chunks, select, split_globs
from reconciler.sources.hashcache import stat_key

FILES = [
    StoredFile("README.txt", 4, "r" * 64, "v1", "data"),
    StoredFile("test/a.png", 10, "a" * 64, "v1", "data"),
    StoredFile("test/b.png", 10, "b" * 64, "v1", "data_001"),
    StoredFile("train/x/1.png", 10, "c" * 64, "v1", "data_001"),
    StoredFile("train/y/2.png", 10, "d" * 64, "v2", "data"),
    StoredFile("train/y/3.txt", 10, "e" * 64, "v2", "data"),
]


def paths(files: list[StoredFile]) -> list[str]:
    return [f.path for f in files]


@pytest.mark.parametrize(("globs", "expected"), [
    ([], [f.path for f in FILES]),
    ([("train/**",)], ["train/x/1.png", "train/y/2.png", "train/y/3.txt"]),
    ([("test/**", "README.txt")], ["README.txt", "test/a.png", "test/b.png"]),
    ([("train/**",), ("*.png",)], ["train/x/1.png", "train/y/2.png"]),  # a split and --include: both
    ([("train/y",)], ["train/y/2.png", "train/y/3.txt"]),  # a folder is everything below it
    ([("nothing/**",)], []),
])
def test_select(globs: list[tuple[str, ...]], expected: list[str]) -> None:
    assert paths([FILES[i] for i in select(FILES, globs)]) == expected


def test_only_the_chunks_holding_the_selection_are_planned() -> None:
    plan = plan_chunks(FILES, select(FILES, [("train/**",)]))
    assert list(plan) == [("v1", "data_001"), ("v2", "data")]
    assert paths([FILES[i] for i in plan[("v2", "data")]]) == ["train/y/2.png", "train/y/3.txt"]
    assert plan_chunks(FILES, []) == {}


def test_a_compact_file_list_reads_as_the_files_it_holds() -> None:
    files = StoredFiles()
    for f in [*FILES, StoredFile("odd.bin", 1, "not-a-sha256", "v3", "data")]:
        files.append(*f)
    assert list(files) == [*FILES, StoredFile("odd.bin", 1, "not-a-sha256", "v3", "data")]
    assert files[-1].sha256 == "not-a-sha256" and files[1:3] == FILES[1:3]
    assert select(files, [("train/**",)]) == select(FILES, [("train/**",)])
    with pytest.raises(IndexError):
        files[len(files)]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "a/./b", "", "a//b", f"{STAGING}/x",
                                 f"a/.b.txt.1{PART_SUFFIX}"])
def test_unsafe_paths_are_refused(bad: str) -> None:
    with pytest.raises(ReconcileError, match="unsafe path"):
        check_paths(["ok.txt", bad], "p/n@1.0.0")


def test_safe_paths_pass() -> None:
    check_paths(["a.txt", "x/y/z.bin", "..hidden", "a..b/c"], "p/n@1.0.0")


def test_paths_let_through_at_once_are_all_safe() -> None:
    """The fast pass over most paths (one regular expression) lets through only what the full check accepts."""
    import itertools

    from reconciler.pulling import _PLAIN, unsafe

    segments = ["a", "b.txt", "", ".", "..", "..x", ".h", "x\\y", "n\0", "C:", "c:d", "é ü", STAGING,
                f".x{PART_SUFFIX}", PART_SUFFIX, "x:", ":"]
    let_through = 0
    for n in (1, 2, 3):
        for parts in itertools.product(segments, repeat=n):
            path = "/".join(parts)
            if _PLAIN.fullmatch(path):
                let_through += 1
                assert not unsafe(path), path
    assert let_through > 100


def test_an_unknown_split_names_the_declared_ones() -> None:
    splits = {"train": ("train/**",), "test": ("test/**",)}
    assert split_globs(splits, "train", "p/n@1") == ("train/**",)
    with pytest.raises(ReconcileError, match=r"p/n@1 has no split 'val' \(splits: test, train\)"):
        split_globs(splits, "val", "p/n@1")
    with pytest.raises(ReconcileError, match=r"\(splits: none declared\)"):
        split_globs({}, "val", "p/n@1")


def test_walk_skips_staging_and_removes_leftover_parts(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    (tmp_path / "a" / f".f.txt.123{PART_SUFFIX}").write_text("half")
    (tmp_path / STAGING).mkdir()
    (tmp_path / STAGING / "chunk.zip").write_text("half a chunk")
    (tmp_path / "link").symlink_to(tmp_path / "a" / "f.txt")
    (tmp_path / "a-b").write_text("y")
    (tmp_path / "a" / "g").mkdir()
    (tmp_path / "a" / "g" / "h.txt").write_text("z")
    found = walk(tmp_path)
    assert list(found) == sorted(found) == ["a-b", "a/f.txt", "a/g/h.txt"]  # sorted as it is walked
    assert found.get("a/f.txt") == (str(tmp_path / "a" / "f.txt"), stat_key(os.stat(tmp_path / "a" / "f.txt")))
    assert not (tmp_path / "a" / f".f.txt.123{PART_SUFFIX}").exists()


def test_splits_are_a_property() -> None:
    p = Properties(splits={"train": "train/**", "test": ["test/**", "README.txt"]})
    assert dict(p.splits) == {"test": ("test/**", "README.txt"), "train": ("train/**",)}
    assert p.to_json()["splits"] == {"test": ["test/**", "README.txt"], "train": ["train/**"]}
    assert "splits" not in Properties().to_json()  # versions without splits look as they did
    assert Properties.from_json(p.to_json()) == p and p != Properties()
    assert Properties(splits={"train": ["a"]}) != Properties(splits={"train": ["b"]})


def test_manifest_splits_dataset_level_overridden_per_version(tmp_path: Path) -> None:
    from reconciler.manifest import load_manifests

    (tmp_path / "d.yaml").write_text(textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: p
        name: things
        splits: {train: "train/**", test: "test/**"}
        versions:
          - version: 1.0.0
          - version: 1.1.0
            parent: 1.0.0
            splits: {train: ["train/**", "extra/**"]}
        """))
    ds = load_manifests([tmp_path]).datasets[0]
    assert dict(ds.versions[0].properties.splits) == {"test": ("test/**",), "train": ("train/**",)}
    assert dict(ds.versions[1].properties.splits) == {"train": ("train/**", "extra/**")}


def test_manifest_splits_schema_errors(tmp_path: Path) -> None:
    from reconciler.manifest import load_manifests

    (tmp_path / "d.yaml").write_text(textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: p
        name: things
        splits: {train: [], "bad name": "x/**"}
        versions:
          - version: 1.0.0
        """))
    with pytest.raises(ReconcileError) as err:
        load_manifests([tmp_path])
    text = str(err.value) + "".join(str(d) for d in getattr(err.value, "diagnostics", ()))
    assert "d.yaml:5" in text and "splits" in text


def test_declared_splits_decide_each_images_split() -> None:
    from reconciler.statistics import NONE, ImageRecord, aggregate_images

    rec = ImageRecord(2, 2, "L", (0,), (0,))
    records = [("images/a/cat/1.png", rec), ("images/b/dog/2.png", rec), ("train/dog/3.png", rec)]
    inferred = aggregate_images(records)
    declared = aggregate_images(records, {"fit": ("images/a/**",), "holdout": ("images/b/**",)})
    assert inferred is not None and declared is not None
    assert {s: dict(c) for s, c in inferred.classes.items()} == {NONE: {"cat": 1, "dog": 1}, "train": {"dog": 1}}
    assert {s: dict(c) for s, c in declared.classes.items()} == {
        NONE: {"dog": 1}, "fit": {"cat": 1}, "holdout": {"dog": 1}}


def test_a_change_of_splits_alone_recomputes_statistics() -> None:
    from dataclasses import replace

    from reconciler.model import (
        DatasetKey,
        DatasetSpec,
        DesiredState,
        ObservedState,
        ObservedVersion,
        VersionKey,
        VersionSpec,
        statistics_key,
    )
    from reconciler.plan.actions import SetStatistics
    from reconciler.plan.contents import SourceFiles, compute_contents
    from reconciler.plan.planner import compute_plan
    from reconciler.plancodec import plan_from_json, plan_to_json

    key = VersionKey("proj", "things", "1.0.0")
    props = Properties(splits={"train": "train/**"})
    spec = VersionSpec(key, properties=props)
    desired = DesiredState((DatasetSpec(DatasetKey("proj", "things"), (spec,), properties=props, statistics=True),))
    contents = compute_contents(desired, {key: SourceFiles(files=())})
    digest = contents[key].digest()
    assert statistics_key(digest, {}) == digest and statistics_key(digest, props.splits) != digest
    live = ObservedVersion(key, "id0", "completed", props, files=(), links=(), managed=True, content_digest=digest,
                           statistics_digest=statistics_key(digest, props.splits))
    assert compute_plan(desired, contents, ObservedState((live,))).actions == ()
    before = replace(live, properties=Properties(), statistics_digest=digest)  # stats made before the splits
    plan = compute_plan(desired, contents, ObservedState((before,)))
    stats = [a for a in plan.actions if isinstance(a, SetStatistics)]
    assert len(stats) == 1 and stats[0].after_digest == statistics_key(digest, props.splits)
    assert dict(stats[0].splits) == {"train": ("train/**",)}
    again = plan_from_json(plan_to_json(plan))
    assert [dict(a.splits) for a in again.actions if isinstance(a, SetStatistics)] == [{"train": ("train/**",)}]


def test_one_pull_at_a_time_writes_a_folder(tmp_path: Path) -> None:
    from reconciler.destwalk import LOCK_NAME
    from reconciler.pulling import _locked

    with _locked(tmp_path):
        assert (tmp_path / LOCK_NAME).exists() and LOCK_NAME not in walk(tmp_path)
        with pytest.raises(ReconcileError, match="another pull is writing"), _locked(tmp_path):
            pass
    assert not (tmp_path / LOCK_NAME).exists()
    with _locked(tmp_path):  # free again
        pass


def test_a_file_is_renamed_into_place_only_when_its_bytes_are_the_versions(tmp_path: Path) -> None:
    import hashlib
    import io

    from reconciler.clearml_backend import BackendError
    from reconciler.pulling import _Writer
    from reconciler.sources.progress import Progress

    def entry(path: str, data: bytes) -> StoredFile:
        return StoredFile(path, len(data), hashlib.sha256(data).hexdigest(), "v1", "data")

    writer = _Writer(tmp_path, Progress("pull", 3, enabled=False))
    writer.write(entry("a/b.txt", b"abc"), io.BytesIO(b"abc"), "chunk data of version v1")
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"abc" and len(writer.written) == 1
    for got in (b"abd", b"abcdef" * 100_000, b""):  # other bytes, more bytes, fewer bytes
        with pytest.raises(BackendError, match="does not match the version's file list"):
            writer.write(entry("a/c.txt", b"abc"), io.BytesIO(got), "chunk data of version v1")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.txt"]  # no temporary file, no c.txt
    (tmp_path / "d").mkdir()
    with pytest.raises(ReconcileError, match="is a folder"):
        writer.write(entry("d", b"x"), io.BytesIO(b"x"), "chunk")
    (tmp_path / "out").mkdir()
    escape = tmp_path / "dest"
    escape.mkdir()
    (escape / "up").symlink_to(tmp_path / "out")
    with pytest.raises(ReconcileError, match="leads outside"):
        _Writer(escape, Progress("pull", 1, enabled=False)).write(entry("up/x.txt", b"x"), io.BytesIO(b"x"), "c")
    assert not (tmp_path / "out" / "x.txt").exists()


def test_a_chunk_is_staged_then_moved_in_by_folders(tmp_path: Path) -> None:
    import hashlib
    import os
    import zipfile

    from reconciler.clearml_backend import BackendError
    from reconciler.pulling import _Writer
    from reconciler.sources.hashcache import stat_key
    from reconciler.sources.progress import Progress
    from reconciler.unpack import unpack

    def entry(path: str, data: bytes) -> StoredFile:
        return StoredFile(path, len(data), hashlib.sha256(data).hexdigest(), "v1", "data")

    def chunk(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as zf:
            for rel, data in members.items():
                zf.writestr(rel, data)
        return path

    dest = tmp_path / "dest"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "kept.txt").write_bytes(b"kept")
    writer = _Writer(dest, Progress("pull", 4, enabled=False))
    names = ("new/a/1.txt", "new/2.txt", "old/3.txt", "top.txt")
    files = [entry(p, p.encode()) for p in names]
    with pytest.raises(BackendError, match="does not match"):  # other bytes than recorded: nothing is written
        unpack(chunk("bad.zip", {"new/2.txt": b"abd"}), files, [1], "chunk", str(tmp_path / "bad"),
               writer.progress.advance)
    assert not (tmp_path / "bad" / "new" / "2.txt").exists()
    tree = str(tmp_path / "tree")
    keys = unpack(chunk("c.zip", {p: p.encode() for p in names}), files, range(4), "chunk", tree,
                  writer.progress.advance)
    staged = [(f, tuple(keys[5 * k : 5 * k + 5])) for k, f in enumerate(files)]
    assert not list(dest.rglob("1.txt"))  # nothing in DEST before the move
    writer.place(tree, staged)  # type: ignore[arg-type]
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == {
        "new/a/1.txt": b"new/a/1.txt", "new/2.txt": b"new/2.txt", "old/3.txt": b"old/3.txt", "top.txt": b"top.txt",
        "old/kept.txt": b"kept"}
    targets = [str(dest / f.path) for f, _ in staged]
    assert [(t, k) for t, k, _ in writer.written] == [(t, stat_key(os.stat(t))) for t in targets]
    assert writer.placed.rels == [f.path for f, _ in staged]
    out = tmp_path / "out"
    out.mkdir()
    (dest / "up").symlink_to(out)
    tree2 = str(tmp_path / "tree2")
    up = [entry("up/x.txt", b"x")]
    again = unpack(chunk("up.zip", {"up/x.txt": b"x"}), up, [0], "chunk", tree2, writer.progress.advance)
    with pytest.raises(ReconcileError, match="leads outside"):
        writer.place(tree2, [(up[0], tuple(again[0:5]))])  # type: ignore[list-item]
    assert not (out / "x.txt").exists()
