"""What the real clearml-server accepts, on whichever server the suite runs against: everything a version
carries is on it after apply (read back through the SDK), changes to finalized versions really happen, and a
refused write is an error that leaves the change pending."""

from __future__ import annotations

import pytest

from .helpers import Env, copy_sample, manifest, write_tree
from .proxy import Proxies, Rule

pytestmark = pytest.mark.integration



def test_the_sample_manifests_carry_everything_they_declare(env: Env) -> None:
    copy_sample(env)
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    got = env.sdk("""
        from clearml import Task
        result = {}
        for v in ("1.0.0", "1.1.0"):
            ds = Dataset.get(dataset_project=PROJECT, dataset_name="Shapes", dataset_version=v)
            plots = Task.get_task(task_id=ds.id).get_reported_plots()
            result[v] = dict(meta=ds.get_metadata(), stats=ds.get_metadata("statistics"), tags=sorted(ds.tags),
                             status=ds._task.get_status(), plots=sorted({p["metric"] for p in plots}),
                             verify=ds.verify_dataset_hash())
    """)
    for v, files in (("1.0.0", 36), ("1.1.0", 47)):
        info = got[v]
        assert info["meta"]["classes"] == ["circle", "square", "triangle", "cross"]
        assert info["stats"]["file_count"] == files and info["stats"]["images"]["images"] == files
        assert info["tags"] == ["classification", "example", "image", "small"] and info["verify"] == []
        assert {"Statistics", "Class distribution", "Image sizes"} <= set(info["plots"])
    assert got["1.0.0"]["status"] == "completed" and got["1.1.0"]["status"] == "published"
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0


VERSIONS = """\
- version: 1.0.0
  sources: [{path: ../data/v1}]
- version: 1.1.0
  parent: 1.0.0
  sources: [{path: ../data/v2}]
  publish: true
"""


def _write(env: Env, **kw: str) -> None:
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir(exist_ok=True)
    m.write_text(manifest(env.project, "things", VERSIONS, **kw))


def test_metadata_of_finalized_and_published_versions_changes_for_real(env: Env) -> None:
    write_tree(env.work / "data" / "v1", {"a.txt": "alpha"})
    write_tree(env.work / "data" / "v2", {"b.txt": "bravo"})
    _write(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    _write(env, metadata="{k: 2, added: [1, 2]}", tags="[a, z]", description="changed")
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    got = env.sdk("""
        result = {}
        for v in ("1.0.0", "1.1.0"):
            ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version=v)
            result[v] = [ds.get_metadata(), sorted(ds.tags), ds._task.comment, ds._task.get_status()]
    """)
    assert got == {"1.0.0": [{"k": 2, "added": [1, 2]}, ["a", "z"], "changed", "completed"],
                   "1.1.0": [{"k": 2, "added": [1, 2]}, ["a", "z"], "changed", "published"]}
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0


def test_statistics_switched_on_after_publishing_are_stored_and_plots_only_where_allowed(env: Env) -> None:
    write_tree(env.work / "data" / "v1", {"a.txt": "alpha", "train/cat/c.png": b"not really a png"})
    write_tree(env.work / "data" / "v2", {"b.txt": "bravo"})
    _write(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    m = env.work / "manifests" / "ds.yaml"
    m.write_text(m.read_text().replace("versions:\n", "statistics: true\nversions:\n"))
    plan = env.reconcile("plan", "manifests")
    assert "no plots on a published version" in plan.stdout, plan.stdout
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    got = env.sdk("""
        from clearml import Task
        result = {}
        for v in ("1.0.0", "1.1.0"):
            ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version=v)
            plots = Task.get_task(task_id=ds.id).get_reported_plots()
            result[v] = [ds.get_metadata("statistics")["file_count"], len(plots) > 0]
    """)
    assert got == {"1.0.0": [2, True], "1.1.0": [3, False]}  # a published version takes no plots
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0


def test_a_refused_artifact_write_is_an_error_and_the_change_stays_pending(env: Env, proxies: Proxies) -> None:
    write_tree(env.work / "data" / "v1", {"a.txt": "alpha"})
    write_tree(env.work / "data" / "v2", {"b.txt": "bravo"})
    _write(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    _write(env, metadata="{k: 3}")
    proxies.api.rules.append(Rule("tasks.edit", "refuse", body='"execution"', times=0))
    res = env.reconcile("apply", "--auto-approve", "manifests", env=proxies.vars())
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "Apply complete" not in res.stdout
    assert f"set metadata of {env.project}/things@1.0.0" in res.stderr and "400/110" in res.stderr
    plan = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert plan.returncode == 2 and "metadata['k']: 1 -> 3" in plan.stdout, plan.stdout
