"""Archived versions come back with their children in one apply: the lineage check counts what the plan itself
restores, whether the archive was someone's click in the UI or this tool's own prune (which is no drift)."""

from __future__ import annotations

import pytest

from .helpers import Env, dataset_tasks, manifest, write_tree

pytestmark = pytest.mark.integration

CHAIN = """\
- version: 1.0.0
  sources: [{path: ../data/v1}]
- version: 1.1.0
  parent: 1.0.0
  sources: [{path: ../data/v2}]
- version: 1.2.0
  parent: 1.1.0
  sources: [{path: ../data/v3}]
"""

READ = """
import os
ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version="1.2.0")
root = ds.get_local_copy()
result = sorted(os.path.relpath(os.path.join(d, n), root) for d, _, ns in os.walk(root) for n in ns)
"""


def _chain(env: Env) -> dict[str, dict]:
    for i, name in enumerate(("v1", "v2", "v3")):
        write_tree(env.work / "data" / name, {f"{name}.txt": f"file {i}"})
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "things.yaml").write_text(manifest(env.project, "things", CHAIN))
    (env.work / "manifests" / "keep.yaml").write_text(
        manifest(env.project, "kept", "- version: 1.0.0\n  sources: [{path: ../data/v1}]\n"))
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    return {t["version"]: t for t in dataset_tasks(env, env.project, "things")}


def _restores_in_one_apply(env: Env, before: dict[str, dict], archived: list[str], drift: bool) -> None:
    plan = env.json("plan", "--format", "json", "manifests")
    assert plan["conflicts"] == [], plan["conflicts"]
    restored = sorted(a["address"].rsplit("@", 1)[1] for a in plan["actions"] if a["type"] == "restore")
    assert restored == archived and len(plan["actions"]) == len(archived), plan["actions"]
    assert sorted(d["address"].rsplit("@", 1)[1] for d in plan["drift"]) == (archived if drift else [])
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    after = {t["version"]: t for t in dataset_tasks(env, env.project, "things")}
    assert {v: t["id"] for v, t in after.items()} == {v: t["id"] for v, t in before.items()}  # the same ids
    assert not any("archived" in t["system_tags"] for t in after.values())
    again = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert again.returncode == 0, again.stdout + again.stderr
    assert env.sdk(READ) == ["v1.txt", "v2.txt", "v3.txt"]


def test_prune_then_revert_restores_three_versions_with_their_ids_in_one_apply(env: Env) -> None:
    before = _chain(env)
    text = (env.work / "manifests" / "things.yaml").read_text()
    (env.work / "manifests" / "things.yaml").unlink()
    res = env.reconcile("apply", "--prune", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert all("archived" in t["system_tags"] for t in dataset_tasks(env, env.project, "things"))
    (env.work / "manifests" / "things.yaml").write_text(text)  # git revert
    _restores_in_one_apply(env, before, ["1.0.0", "1.1.0", "1.2.0"], drift=False)


def test_a_parent_archived_in_the_ui_is_restored_with_its_child_in_one_apply(env: Env) -> None:
    before = _chain(env)
    env.sdk(f"""
        from clearml.backend_api.session.client import APIClient
        APIClient().tasks.archive_many(ids=[{before["1.0.0"]["id"]!r}])
        result = True
    """)
    _restores_in_one_apply(env, before, ["1.0.0"], drift=True)
