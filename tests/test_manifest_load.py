"""Loading manifests into DesiredState: values, spans, order, discovery, safety, errors across files."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.diagnostics import ReconcileError, SourceSpan
from reconciler.manifest import check_manifests, load_manifests
from reconciler.model import (
    DAY,
    DatasetKey,
    PathSource,
    Retention,
    TorchvisionSource,
    UrlSource,
    VersionKey,
)

VALID = Path(__file__).parent / "manifests" / "valid"
REPO = Path(__file__).parent.parent

HEADER = "apiVersion: reconciler/v1\nkind: Dataset\nproject: p\n"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def valid(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(VALID)
    return load_manifests(["."])


def test_datasets_sorted_by_key_and_versions_in_manifest_order(valid) -> None:
    keys = [ds.key for ds in valid.datasets]
    assert keys == sorted(keys)
    assert [str(k) for k in keys] == [
        "tests/Anchored",
        "tests/Cleaned",
        "tests/Merged",
        "tests/Minimal",
        "tests/Split",
        "tests/Train",
        "tests/Upstream",
        "tests/full/Everything",
        "tests/sub project/deeper/Nested name",
    ]
    everything = valid.dataset(DatasetKey("tests/full", "Everything"))
    assert [v.key.version for v in everything.versions] == ["1.0.0", "1.1.0-rc.1", "2.0.0"]


def test_merges_keep_their_parents_in_order_and_any_version_string(valid) -> None:
    merged = valid.dataset(DatasetKey("tests", "Merged"))
    train = [VersionKey("tests", "Train", v) for v in ("v1", "2024.06.01")]
    assert [v.parents for v in merged.versions] == [tuple(train), (merged.versions[0].key, train[0])]
    assert merged.versions[1].parent == merged.versions[0].key and merged.versions[1].remove == ("more/*",)
    lineage = [s.key for s in valid.lineage(merged.versions[1].key)]
    assert lineage == [train[0], train[1], merged.versions[0].key, merged.versions[1].key]


def test_every_field_of_full_manifest(valid) -> None:
    ds = valid.dataset(DatasetKey("tests/full", "Everything"))
    assert ds.properties.description == "Every field the format has"
    assert all(v.properties == ds.properties for v in ds.versions)
    assert ds.properties.tags == frozenset({"classification", "example", "image", "small"})
    assert isinstance(ds.properties.metadata, MappingProxyType)
    assert dict(ds.properties.metadata) == {
        "homepage": "https://example.com/everything",
        "classes": ("cat", "dog"),
        "sizes": MappingProxyType({"train": 6, "test": 0}),
        "released": "2020-01-31",
        "score": 0.5,
        "reviewed": True,
        "notes": None,
    }
    assert ds.statistics is True and ds.storage == "s3://bucket/datasets"
    assert ds.chunk_size_mb == 64 and ds.compression == "store"
    assert ds.retention == Retention(keep_last=3, max_age=90 * DAY, grace=14 * DAY, delete_published=False,
                                     used_within=30 * DAY, rehome=True)
    assert ds.span == SourceSpan("full.yaml", 2, 1)
    v1, v2, v3 = ds.versions
    assert v1.parent is None and v1.publish is False and v1.remove == ()
    path_src, tv_src, url_src, prefix_src = v1.sources
    assert path_src == PathSource(VALID / "data" / "animals", "images/train", ("*.txt",), ("dog/dog_3.txt",))
    assert path_src.path.is_absolute()
    assert tv_src == TorchvisionSource("MNIST", "train", "images", "mnist", VALID / "cache", True)
    assert url_src == UrlSource("https://example.com/files/readme.md", "docs", True)
    assert prefix_src == UrlSource("s3://bucket/prefix/")
    assert [s.span for s in v1.sources] == [SourceSpan("full.yaml", line, 9) for line in (23, 27, 33, 36)]
    assert v2.parent == VersionKey("tests/full", "Everything", "1.0.0")
    assert v2.remove == ("images/train/cat/*", "mnist/**") and v2.publish is True
    assert v2.span == SourceSpan("full.yaml", 37, 5)
    assert v3.parent == VersionKey("tests/full", "Everything", "1.1.0-rc.1") and v3.sources == ()


def test_parents_across_datasets_files_and_subprojects(valid) -> None:
    cleaned = valid.dataset(DatasetKey("tests", "Cleaned"))
    assert cleaned.versions[0].parent == VersionKey("tests", "Upstream", "1.0.0")
    nested = valid.version(VersionKey("tests/sub project/deeper", "Nested name", "3.2.1"))
    assert nested.parent == VersionKey("tests/full", "Everything", "2.0.0")
    lineage = [str(v.key) for v in valid.lineage(nested.key)]
    assert lineage == [
        "tests/full/Everything@1.0.0",
        "tests/full/Everything@1.1.0-rc.1",
        "tests/full/Everything@2.0.0",
        "tests/sub project/deeper/Nested name@3.2.1",
    ]


def test_dataset_spread_over_files_merges_fields_and_versions(valid) -> None:
    split = valid.dataset(DatasetKey("tests", "Split"))
    assert split.properties.description == "versions in two files"
    assert split.properties.tags == frozenset({"a", "b"})
    assert [(v.key.version, v.span.file) for v in split.versions] == [
        ("1.0.0", "split/part-1.yaml"),
        ("1.1.0", "split/part-2.yaml"),
    ]


def test_anchors_and_merge_keys(valid) -> None:
    anchored = valid.dataset(DatasetKey("tests", "Anchored"))
    first, second = anchored.versions
    train = TorchvisionSource("MNIST", "train", "raw", "mnist/train", None, True)
    assert first.sources == (train,)
    assert second.sources == (train, TorchvisionSource("MNIST", "test", "raw", "mnist/test", None, True))


def test_hidden_folders_are_not_searched(valid) -> None:
    assert all(".hidden" not in v.span.file for v in valid.all_versions())


def test_spans_are_relative_to_cwd_when_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    state = load_manifests([REPO / "manifests" / "sample"])
    (shapes,) = state.datasets
    assert shapes.span == SourceSpan("manifests/sample/shapes.yaml", 3, 1)
    assert shapes.versions[0].sources[0].path == REPO / "manifests" / "sample" / "data" / "v1"


def test_sample_manifest_builds_v2_on_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    (shapes,) = load_manifests(["manifests/sample"]).datasets
    v1, v2 = shapes.versions
    assert v2.parent == v1.key and v2.remove == ("train/triangle/triangle_011.png",) and v2.publish
    v1_files = {p.relative_to(v1.sources[0].path).as_posix() for p in v1.sources[0].path.rglob("*.png")}
    v2_files = {p.relative_to(v2.sources[0].path).as_posix() for p in v2.sources[0].path.rglob("*.png")}
    assert len(v1_files) == 36 and "triangle/triangle_011.png" in v1_files
    assert v1_files & v2_files == {"circle/circle_000.png"}  # modified in 1.1.0
    assert {f.split("/")[0] for f in v2_files - v1_files} == {"cross"}  # added in 1.1.0


def test_sample_images_are_reproducible(tmp_path: Path) -> None:
    import runpy

    script = REPO / "manifests" / "sample" / "make_sample_data.py"
    main = runpy.run_path(str(script))["main"]
    assert main(["--out", str(tmp_path)]) == 0
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    shipped = sorted(p.relative_to(script.parent) for p in (script.parent / "data").rglob("*.png"))
    assert made == shipped and len(made) == 49
    assert all((tmp_path / p).read_bytes() == (script.parent / p).read_bytes() for p in made)
    assert main(["--check"]) == 0


def test_five_errors_in_two_files_reported_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(
        tmp_path,
        "b.yaml",
        HEADER + "name: Second\nversions:\n  - version: 1.0.0\n    parent: p/First@9.9.9\n"
        "    sources:\n      - torchvision: CIFAR10\n        split: valid\n",
    )
    _write(
        tmp_path,
        "a.yaml",
        HEADER + "name: First\nstatistcs: true\nversions:\n  - version: '1.0 '\n"
        "    sources:\n      - url: ftp://host/file\n",
    )
    with pytest.raises(ReconcileError) as caught:
        load_manifests([tmp_path])
    assert str(caught.value).splitlines() == [
        "a.yaml:5:1: error: unknown key 'statistcs' (did you mean 'statistics'?)",
        "a.yaml:7:14: error: versions[0].version: '1.0 ' is not a version: not empty, no leading or trailing "
        "space, no control character or '@'",
        "a.yaml:9:14: error: versions[0].sources[0].url: 'ftp://host/file' has scheme 'ftp'; "
        "supported: s3://, http://, https://, file://",
        "b.yaml:7:13: error: versions[0].parent: '9.9.9' is not a version of p/First (its versions: 1.0 )",
        "b.yaml:10:16: error: versions[0].sources[0].split: CIFAR10 has no split 'valid' "
        "(supported: train, test)",
    ]


def test_object_tags_are_never_constructed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "constructed"
    _write(
        tmp_path,
        "evil.yaml",
        HEADER + f"name: !!python/object/apply:os.system ['touch {marker}']\n"
        f'description: !!python/object/apply:builtins.exec [\'open("{marker}", "w")\']\nversions: []\n',
    )
    _, diags = check_manifests(["evil.yaml"])
    assert [d.span.line for d in diags] == [4, 5]
    assert all("is not allowed" in d.message for d in diags)
    assert not marker.exists()


def test_local_paths_checked_only_on_request(tmp_path: Path) -> None:
    manifest = _write(
        tmp_path / "m",
        "x.yaml",
        HEADER + "name: Local\nversions:\n  - version: 1.0.0\n    sources:\n      - path: ../not-yet\n",
    )
    with pytest.raises(ReconcileError, match="does not exist"):
        load_manifests([manifest])
    state = load_manifests([manifest], check_local_paths=False)
    assert state.all_versions()[0].sources[0].path == tmp_path / "not-yet"


def test_missing_and_empty_arguments_are_diagnostics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReconcileError) as caught:
        load_manifests(["nope.yaml", "empty"])
    assert str(caught.value).splitlines() == [
        "empty: error: no manifest files (*.yaml, *.yml) in this directory",
        "nope.yaml: error: no such file or directory",
    ]
    with pytest.raises(ReconcileError, match="no manifest files or directories given"):
        load_manifests([])


def test_same_file_through_two_arguments_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(VALID)
    state = load_manifests(["minimal.yaml", ".", str(VALID / "minimal.yaml")])
    assert [str(v.key) for v in state.dataset(DatasetKey("tests", "Minimal")).versions] == [
        "tests/Minimal@0.1.0"
    ]


def test_alias_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    _write(
        tmp_path,
        "bomb.yaml",
        HEADER
        + "name: Bomb\nmetadata:\n"
        + "".join(f"  {ln}\n" for ln in lines)
        + "versions: [{version: 1.0.0}]\n",
    )
    _, diags = check_manifests(["bomb.yaml"])
    assert [d.message for d in diags] == [
        "document too large (more than 200000 values after expanding aliases)"
    ]


@pytest.mark.parametrize(("versions", "expected"), [
    ("  - version: 1.0.0\n  - version: 1.1.0\n    parent: 1.0.0\n    parents: [1.0.0]\n",
     "m.yaml:9:5: error: versions[1].parents: give either parent or parents, not both (parent: X is parents: [X])"),
    ("  - version: 1.0.0\n  - version: 1.1.0\n    parents: [1.0.0, 9.0.0]\n",
     "m.yaml:8:22: error: versions[1].parents[1]: '9.0.0' is not a version of p/First (its versions: 1.0.0, 1.1.0)"),
    ("  - version: 1.0.0\n    parents: [1.1.0]\n  - version: 1.1.0\n    parents: [x, 1.0.0]\n  - version: x\n",
     "m.yaml:7:15: error: versions[0].parents[0]: parent cycle: p/First@1.0.0 -> p/First@1.1.0 -> p/First@1.0.0"),
])
def test_parents_errors_point_at_the_reference(tmp_path: Path, versions: str, expected: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "m.yaml", HEADER + "name: First\nversions:\n" + versions)
    with pytest.raises(ReconcileError) as caught:
        load_manifests(["m.yaml"])
    assert str(caught.value).splitlines() == [expected]
