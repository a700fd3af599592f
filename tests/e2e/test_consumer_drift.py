"""Drift is what consumers read: each property a version carries (description, tags, metadata artifacts, archive
state, the system tag the SDK finds versions by), edited through the API behind the tool's back, is reported as
drift and put back by the next apply (seen again through the SDK, as consumers see it)."""

from __future__ import annotations

import json

import pytest

from .helpers import Env, write_tree

pytestmark = pytest.mark.integration

# one version per edit: (version, the property the plan reports, SDK code run on `ds`, that version)
EDITS = [
    ("1.0.0", "description", "c.tasks.edit(task=ds.id, comment='edited behind its back', force=True)"),
    ("1.1.0", "tags", "c.tasks.edit(task=ds.id, tags=['a', 'b', 'edited'], force=True)"),
    ("1.2.0", "metadata", "put(ds, 'metadata', {'k': 2})"),
    ("1.3.0", "metadata", "drop(ds, 'metadata')"),
    ("1.4.0", "metadata_artifacts", "put(ds, 'info', {'rows': 9})"),
    ("1.5.0", "metadata_artifacts", "put(ds, 'extra', {'x': 1})"),
    ("1.6.0", "metadata_artifacts", "drop(ds, 'info')"),
    ("1.7.0", "archived", "c.tasks.archive_many(ids=[ds.id])"),
    ("1.8.0", "system_tags", "untag(ds, 'dataset')"),  # Dataset.get() no longer finds it
]

MANIFEST = """\
apiVersion: reconciler/v1
kind: Dataset
project: {project}
name: watched
description: as declared
tags: [a, b]
metadata: {{k: 1}}
metadata_artifacts: {{info: {{rows: 3}}}}
versions:
"""

READ_BACK = """
from clearml.backend_api.session.client import APIClient
c = APIClient()
result = {}
for v in VERSIONS:
    ds = Dataset.get(dataset_project=PROJECT, dataset_name="watched", dataset_version=v)
    task = c.tasks.get_by_id(task=ds.id)
    names = sorted(a.key for a in task.execution.artifacts if a.key not in ("state", "data"))
    result[v] = dict(description=task.comment, tags=sorted(task.tags), metadata=ds.get_metadata(),
                     info=ds.get_metadata(metadata_name="info"), artifacts=names,
                     archived="archived" in (task.system_tags or []))
"""

EDIT = """
from clearml.backend_api.session.client import APIClient
c = APIClient()

def drop(ds, key, add=()):  # a finalized version's artifacts change only by a forced edit of its execution
    task = c.tasks.get_by_id(task=ds.id)
    kept = [a.to_dict() for a in task.execution.artifacts if a.key != key]
    c.tasks.edit(task=ds.id, execution=dict(task.execution.to_dict(), artifacts=kept + list(add)), force=True)

def untag(ds, tag):
    tags = [t for t in c.tasks.get_by_id(task=ds.id).system_tags if t != tag]
    c.tasks.edit(task=ds.id, system_tags=tags, force=True)

def put(ds, key, value):  # a dict artifact as Task.upload_artifact stores it
    import hashlib, os, tempfile
    from clearml import StorageManager
    raw = json.dumps(value, sort_keys=True, indent=4).encode()
    local = os.path.join(tempfile.mkdtemp(), key + ".json")
    open(local, "wb").write(raw)
    base = ds._task.get_output_destination() or ds._task._get_default_report_storage_uri()
    uri = StorageManager.upload_file(local, f"{base}/edited/{ds.id}/{key}.json")
    drop(ds, key, [dict(key=key, type="dict", mode="output", uri=uri, hash=hashlib.sha256(raw).hexdigest(),
                        content_size=len(raw), timestamp=0, type_data=dict(content_type="application/json"))])

for version, code in EDITS:
    ds = Dataset.get(dataset_project=PROJECT, dataset_name="watched", dataset_version=version)
    exec(code)
result = True
"""


def _write(env: Env) -> None:
    versions = ""
    for i, (version, _, _) in enumerate(EDITS):
        write_tree(env.work / "data" / version, {f"f{i}.txt": f"file of {version}"})
        parent = f"    parent: {EDITS[i - 1][0]}\n" if i else ""
        versions += f"  - version: {version}\n{parent}    sources: [{{path: ../data/{version}}}]\n"
    (env.work / "manifests").mkdir(exist_ok=True)
    (env.work / "manifests" / "watched.yaml").write_text(MANIFEST.format(project=env.project) + versions)


def test_each_property_edited_behind_the_tools_back_is_drift_and_put_back(env: Env) -> None:
    _write(env)
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    versions = [v for v, _, _ in EDITS]
    declared = {"description": "as declared", "tags": ["a", "b"], "metadata": {"k": 1}, "info": {"rows": 3},
                "artifacts": ["info", "metadata"], "archived": False}
    read = env.sdk(f"VERSIONS = {versions!r}\n" + READ_BACK)
    assert read == {v: declared for v in versions}
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0

    env.sdk(f"EDITS = {[(v, code) for v, _, code in EDITS]!r}\n" + EDIT)
    plan = env.reconcile("plan", "--drift-only", "--format", "json", "manifests")
    drift = json.loads(plan.stdout)["drift"]
    reported = {(d["address"].rsplit("@", 1)[1], d["what"], *d["detail"].split(" changed ")[0].split(", "))
                for d in drift}
    for version, prop, _ in EDITS:
        assert any(r[0] == version and prop in r[1:] for r in reported), (version, prop, reported)
    assert len({r[0] for r in reported}) == len(EDITS), reported

    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert env.sdk(f"VERSIONS = {versions!r}\n" + READ_BACK) == {v: declared for v in versions}
    again = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert again.returncode == 0, again.stdout + again.stderr
