"""Import round-trips what a script can set (named metadata, tags, description, publish state) and nothing the SDK
made up; `import --update` brings in versions scripts add later, keeping the manifest's comments."""

from __future__ import annotations

import pytest

from .helpers import Env, write_tree

pytestmark = pytest.mark.integration

SCRIPT = """
import os, tempfile
from clearml.backend_api.session.client import APIClient
root = tempfile.mkdtemp()

def folder(name, files):
    path = os.path.join(root, name)
    os.makedirs(path)
    for rel, text in files.items():
        open(os.path.join(path, rel), "w").write(text)
    return path

ds = Dataset.create(dataset_project=PROJECT, dataset_name="shapes", dataset_version="1.0.0")
ds.add_files(folder("a", {"circle.txt": "o", "square.txt": "[]"}))
ds.add_tags(["from-script"])
ds.set_metadata({"classes": 2}, ui_visible=False)
ds.set_metadata({"rows": 2, "split": "train"}, metadata_name="info", ui_visible=False)
ds.set_metadata({"names": ["circle", "square"]}, metadata_name="labels", ui_visible=False)
ds.upload()
ds.finalize()
ds.publish()
auto = APIClient().tasks.get_by_id(task=ds.id).comment
draft = Dataset.create(dataset_project=PROJECT, dataset_name="shapes", dataset_version="1.1.0",
                       parent_datasets=[ds.id])
draft.add_files(folder("b", {"wip.txt": "unfinished"}))
only_draft = Dataset.create(dataset_project=PROJECT, dataset_name="drafty", dataset_version="1.0.0")
gone = Dataset.create(dataset_project=PROJECT, dataset_name="gone", dataset_version="1.0.0")
gone.add_files(folder("c", {"x.txt": "x"}))
gone.upload()
gone.finalize()
APIClient().tasks.archive_many(ids=[gone.id])
result = dict(v1=ds.id, draft=draft.id, auto=auto)
"""

LATER = """
ds = Dataset.get(dataset_project=PROJECT, dataset_name="shapes", dataset_version="1.0.0")
import os, tempfile
path = tempfile.mkdtemp()
open(os.path.join(path, "triangle.txt"), "w").write("/\\\\")
child = Dataset.create(dataset_project=PROJECT, dataset_name="shapes", dataset_version="1.2.0", parent_datasets=[ds.id])
child.add_files(path)
child.add_tags(["from-script"])
child.set_metadata({"classes": 3}, ui_visible=False)
child.set_metadata({"rows": 3, "split": "train"}, metadata_name="info", ui_visible=False)
child.upload()
child.finalize()
result = child.id
"""

READ = """
from clearml.backend_api.session.client import APIClient
ds = Dataset.get(dataset_project=PROJECT, dataset_name="shapes", dataset_version="1.3.0")
result = dict(description=APIClient().tasks.get_by_id(task=ds.id).comment, metadata=ds.get_metadata(),
              info=ds.get_metadata(metadata_name="info"), labels=ds.get_metadata(metadata_name="labels"))
"""


def test_import_round_trips_named_metadata_and_update_adds_later_versions(env: Env) -> None:
    made = env.sdk(SCRIPT)
    assert isinstance(made, dict) and str(made["auto"]).startswith("Auto-generated")
    res = env.reconcile("import", env.project, "--out", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note: ")]
    assert any("shapes@1.1.0: a draft" in n and made["draft"] in n for n in notes), res.stderr
    assert any("drafty: not imported: no finalized live version on the server (1 draft (1.0.0))" in n
               for n in notes), res.stderr
    assert any("gone: not imported: no finalized live version on the server (1 archived version)" in n
               for n in notes), res.stderr
    assert "reconcile-import-" not in res.stdout + res.stderr
    path = env.work / "manifests" / env.project / "shapes.yaml"
    text = path.read_text()
    assert not (env.work / "manifests" / env.project / "drafty.yaml").exists()
    assert 'metadata_artifacts: {"info": {"rows": 2, "split": "train"}, "labels": {"names": ["circle", "square"]}}' \
        in text, text
    assert 'description: ""' in text and "Auto-generated" not in text and "publish: true" in text
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0

    later = env.sdk(LATER)
    path.write_text(text.replace("versions:\n", "# kept by --update\nversions:\n"))
    res = env.reconcile("import", env.project, "--out", "manifests", "--update")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"updated {path.relative_to(env.work)}: added 1.2.0" in res.stdout, res.stdout
    updated = path.read_text()
    assert "# kept by --update" in updated and f"id: {later}" in updated
    # 1.2.0 has no labels: it gives its own named metadata
    assert 'metadata_artifacts: {"info": {"rows": 3, "split": "train"}}' in updated.split("1.2.0")[1], updated
    plan = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    again = env.reconcile("import", env.project, "--out", "manifests", "--update")
    assert again.returncode == 0 and "already hold every finalized version" in again.stdout, again.stdout

    write_tree(env.work / "data", {"hexagon.txt": "<>"})
    path.write_text(updated + '  - version: "1.3.0"\n    parent: "1.0.0"\n    sources: [{path: ../../data}]\n')
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert env.sdk(READ) == {"description": "", "metadata": {"classes": 2}, "info": {"rows": 2, "split": "train"},
                             "labels": {"names": ["circle", "square"]}}


def test_import_of_a_dataset_with_only_a_draft_says_so_in_one_line(env: Env) -> None:
    env.sdk("""
        Dataset.create(dataset_project=PROJECT, dataset_name="drafty", dataset_version="1.0.0")
        result = True
    """)
    res = env.reconcile("import", f"{env.project}/drafty")
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"note: {env.project}/drafty: not imported: no finalized live version on the server (1 draft (1.0.0))",
        "error: nothing to import: no dataset named has a finalized live version (see the notes above)"]
