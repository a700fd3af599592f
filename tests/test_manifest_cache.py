"""Manifests remembered by their bytes: the same state and the same diagnostics as a fresh read, every time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.diagnostics import ReconcileError
from reconciler.manifest import ManifestCache, check_manifests, load_manifests

VALID = Path(__file__).parent / "manifests" / "valid"
REPO = Path(__file__).parent.parent

MANIFEST = """\
apiVersion: reconciler/v1
kind: Dataset
project: p
name: things
tags: [a, b]
metadata: {k: 1, nested: {x: [1, 2.5, true, null, "s"]}}
versions:
  - version: 1.0.0
    sources:
      - path: data
  - version: 1.1.0
    parent: 1.0.0
    sources:
      - {path: data, dest: copy}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / "data" / "a.txt").write_text("alpha")
    (tmp_path / "work" / "ds.yaml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.bin")) if cache.is_dir() else []


def test_a_valid_file_is_remembered_and_read_back_as_the_same_state(folder: Path) -> None:
    cache = ManifestCache(folder / "cache")
    fresh = load_manifests(["ds.yaml"], cache=ManifestCache(None))
    first = load_manifests(["ds.yaml"], cache=cache)
    assert len(_entries(folder / "cache")) == 1
    second = load_manifests(["ds.yaml"], cache=cache)
    assert first == fresh and second == fresh
    assert [v.span for v in second.all_versions()] == [v.span for v in fresh.all_versions()]
    assert len(_entries(folder / "cache")) == 1


def test_the_test_corpus_reads_the_same_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(VALID)
    cache = ManifestCache(tmp_path / "cache")
    fresh = load_manifests(["."], cache=ManifestCache(None))
    assert load_manifests(["."], cache=cache) == fresh
    assert _entries(tmp_path / "cache")
    assert load_manifests(["."], cache=cache) == fresh


def test_a_file_with_any_problem_is_never_remembered(folder: Path) -> None:
    cache = ManifestCache(folder / "cache")
    (folder / "work" / "ds.yaml").write_text(MANIFEST.replace("tags: [a, b]", "tags: [a, b]\ncolour: red"))
    for _ in range(2):
        with pytest.raises(ReconcileError, match="unknown key 'colour'"):
            load_manifests(["ds.yaml"], cache=cache)
    assert _entries(folder / "cache") == []


def test_an_edit_is_read_afresh_and_its_errors_reported(folder: Path) -> None:
    cache = ManifestCache(folder / "cache")
    load_manifests(["ds.yaml"], cache=cache)
    (folder / "work" / "ds.yaml").write_text(MANIFEST.replace("version: 1.1.0", "version: [1]"))
    _, diags = check_manifests(["ds.yaml"], cache=cache)
    assert [str(d) for d in diags] == [str(d) for d in check_manifests(["ds.yaml"], cache=ManifestCache(None))[1]]
    assert diags and "versions[1].version" in str(diags[0])


def test_the_semantic_checks_run_on_a_remembered_file(folder: Path) -> None:
    cache = ManifestCache(folder / "cache")
    load_manifests(["ds.yaml"], cache=cache)
    (folder / "work" / "data" / "a.txt").unlink()
    (folder / "work" / "data").rmdir()
    _, remembered = check_manifests(["ds.yaml"], cache=cache)
    _, fresh = check_manifests(["ds.yaml"], cache=ManifestCache(None))
    assert remembered and [str(d) for d in remembered] == [str(d) for d in fresh]


@pytest.mark.parametrize("damage", [b"", b"garbage", b"\xff" * 40, "marshal-of-another-shape"])
def test_a_damaged_entry_is_a_miss(folder: Path, damage: bytes | str) -> None:
    import marshal

    cache = ManifestCache(folder / "cache")
    expected = load_manifests(["ds.yaml"], cache=cache)
    [entry] = _entries(folder / "cache")
    entry.write_bytes(marshal.dumps([(0, {"a": object.__class__.__name__}, [], {})]) if isinstance(damage, str)
                      else damage)
    assert load_manifests(["ds.yaml"], cache=cache) == expected
    assert load_manifests(["ds.yaml"], cache=cache) == expected  # rewritten by the fresh read


def test_an_unwritable_cache_only_costs_time(folder: Path) -> None:
    (folder / "cache").write_text("a file where the folder should be")
    cache = ManifestCache(folder / "cache")
    assert load_manifests(["ds.yaml"], cache=cache) == load_manifests(["ds.yaml"], cache=ManifestCache(None))


PROBE = """
import json, sys
from pathlib import Path
from reconciler.manifest import load_manifests
state = load_manifests([sys.argv[1]])
print(json.dumps({"versions": len(state.all_versions()),
                  "parser": any(m.split(".")[0] in ("ruamel", "jsonschema") for m in sys.modules)}))
"""


def test_a_remembered_file_loads_neither_the_yaml_parser_nor_the_schema_validator(folder: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder / "home"), "XDG_CACHE_HOME": str(folder / "xdg"),
           "PYTHONPATH": str(REPO)}
    runs = [json.loads(subprocess.run([sys.executable, "-c", PROBE, "ds.yaml"], cwd=folder / "work", env=env,
                                      capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    assert runs == [{"versions": 2, "parser": True}, {"versions": 2, "parser": False}]
    off = subprocess.run([sys.executable, "-c", PROBE, "ds.yaml"], cwd=folder / "work", capture_output=True,
                         env={**env, "RECONCILE_MANIFEST_CACHE": "0"}, text=True, check=True)
    assert json.loads(off.stdout) == {"versions": 2, "parser": True}
