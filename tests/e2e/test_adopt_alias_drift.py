"""From scripts to manifests: import what a plain SDK script made, move an alias, see drift made in the UI."""

from __future__ import annotations

import pytest

from .helpers import Env, dataset_tasks, manifest, write_tree

pytestmark = pytest.mark.integration


SCRIPT = """
import json, os, tempfile
from clearml import Dataset
root = tempfile.mkdtemp()
made = {}
for name, n in (("mnist", 3), ("cifar", 2), ("fashion", 4)):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    for i in range(n):
        open(os.path.join(folder, f"f{i}.txt"), "w").write(f"{name} {i}")
    ds = Dataset.create(dataset_project=PROJECT, dataset_name=name, dataset_version="1.0.0")
    ds.add_files(folder)
    ds.add_tags(["from-script", name])
    ds.set_metadata({"source": "script", "name": name}, ui_visible=False)
    ds.upload()
    ds.finalize()
    child_dir = os.path.join(root, name + "2")
    os.makedirs(child_dir)
    open(os.path.join(child_dir, "extra.txt"), "w").write(name + " extra")
    child = Dataset.create(dataset_project=PROJECT, dataset_name=name, dataset_version="1.1.0",
                           parent_datasets=[ds.id])
    child.add_files(child_dir)
    child.add_tags(["from-script"])
    child.set_metadata({"source": "script", "name": name, "child": True}, ui_visible=False)
    child.upload()
    child.finalize()
    if name == "mnist":
        child.publish()
    made[name] = [ds.id, child.id]
result = made
"""


def test_import_adopts_script_made_datasets_then_a_new_version_uploads_only_its_delta(env: Env) -> None:
    made = env.sdk(SCRIPT)
    res = env.reconcile("import", env.project, "--out", "imported")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Imported 3 datasets, 6 versions" in res.stdout
    text = (env.work / "imported" / env.project / "mnist.yaml").read_text()
    assert f"id: {made['mnist'][0]}" in text and "publish: true" in text and 'parent: "1.0.0"' in text
    again = env.reconcile("import", env.project, "--dry-run")
    assert again.returncode == 0 and f"# file: manifests/{env.project}/cifar.yaml" in again.stdout
    assert again.stdout.split("\n---\n")[0].split("\n", 1)[1] == (env.work / "imported" / env.project /
                                                                   "cifar.yaml").read_text()
    plan = env.reconcile("plan", "--detailed-exitcode", "imported")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # adopting changes nothing

    write_tree(env.work / "data" / "new", {"new.txt": "new in 1.2.0"})
    (env.work / "imported" / env.project / "mnist.yaml").write_text(
        text + '  - version: "1.2.0"\n    parent: "1.1.0"\n    sources: [{path: ../../data/new}]\n')
    res = env.reconcile("apply", "--auto-approve", "imported")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 version created, 1 file uploaded" in res.stdout
    files = env.sdk("""
        import os
        ds = Dataset.get(dataset_project=PROJECT, dataset_name="mnist", dataset_version="1.2.0")
        root = ds.get_local_copy()
        result = sorted(os.path.relpath(os.path.join(d, n), root) for d, _, ns in os.walk(root) for n in ns)
        assert ds.verify_dataset_hash() == []
    """)
    assert files == ["extra.txt", "f0.txt", "f1.txt", "f2.txt", "new.txt"]
    assert env.reconcile("plan", "--detailed-exitcode", "imported").returncode == 0


ALIASED = """\
- version: 1.0.0
  sources: [{path: ../data/v1}]
- version: 1.1.0
  parent: 1.0.0
  sources: [{path: ../data/v2}]
"""


def _aliased(env: Env, target: str) -> None:
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir(exist_ok=True)
    m.write_text(manifest(env.project, "things", ALIASED).replace("versions:\n", f"aliases: {{production: {target}}}\n"
                                                                            "versions:\n"))


def _holders(env: Env) -> list[str]:
    return sorted(t["version"] for t in dataset_tasks(env, env.project, "things") if "production" in t["tags"])


def test_an_alias_moves_to_exactly_one_version(env: Env) -> None:
    write_tree(env.work / "data" / "v1", {"a.txt": "alpha"})
    write_tree(env.work / "data" / "v2", {"b.txt": "bravo"})
    _aliased(env, "1.0.0")
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    assert _holders(env) == ["1.0.0"]
    _aliased(env, "1.1.0")
    plan = env.reconcile("plan", "manifests")
    assert f"{env.project}/things production: 1.0.0 -> 1.1.0" in plan.stdout, plan.stdout
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _holders(env) == ["1.1.0"]
    got = env.sdk("""
        ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_tags=["production"])
        result = ds.version
    """)
    assert got == "1.1.0"
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0
    m = env.work / "manifests" / "ds.yaml"  # the alias dropped from the manifests: listed, and taken off
    m.write_text(manifest(env.project, "things", ALIASED))
    plan = env.reconcile("plan", "manifests")
    assert f"{env.project}/things production: 1.1.0 -> none (dropped from the manifests)" in plan.stdout, plan.stdout
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _holders(env) == []
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0


def test_changes_made_behind_the_tools_back_are_drift(env: Env) -> None:
    write_tree(env.work / "data" / "v1", {"a.txt": "alpha"})
    write_tree(env.work / "data" / "v2", {"b.txt": "bravo"})
    _aliased(env, "1.1.0")
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    clean = env.reconcile("plan", "--drift-only", "--detailed-exitcode", "manifests")
    assert clean.returncode == 0 and "No drift" in clean.stdout, clean.stdout + clean.stderr
    env.sdk("""
        from clearml.backend_api.session.client import APIClient
        v1 = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version="1.0.0")
        v1.add_tags(["edited-in-ui"])
        v2 = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version="1.1.0")
        APIClient().tasks.archive_many(ids=[v2.id])
        result = True
    """)
    drift = env.reconcile("plan", "--drift-only", "--detailed-exitcode", "manifests")
    assert drift.returncode == 2, drift.stdout + drift.stderr
    assert f"{env.project}/things@1.0.0" in drift.stdout and "edited-in-ui" in drift.stdout
    assert f"{env.project}/things@1.1.0" in drift.stdout and "archived" in drift.stdout
    as_json = env.json("plan", "--drift-only", "--format", "json", "manifests")
    assert as_json["has_drift"] and {d["what"] for d in as_json["drift"]} == {"properties", "archived"}
    res = env.reconcile("apply", "--auto-approve", "manifests")  # puts the manifests back
    assert res.returncode == 0, res.stdout + res.stderr
    assert env.reconcile("plan", "--drift-only", "--detailed-exitcode", "manifests").returncode == 0
