"""Dataset cards (`card:`): located errors for a bad licence or a misspelled key, and a valid card stored with the
version (named metadata `card`), read back by both supported SDKs, shown by `show`, diffed by `plan`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .helpers import Env, write_tree

CARD = """\
---
license: cc-by-4.0
pretty_name: Tiny shapes
task_categories: [image-classification]
source_datasets: [original]
responsible_ai:
  data_limitations: Synthetic shapes only.
  has_synthetic_data: true
---
# Tiny shapes

Made by a script.
"""

READ_CARD = """
import json, sys
from clearml import Dataset
ds = Dataset.get(dataset_project=sys.argv[1], dataset_name='carded', dataset_version='1.0.0')
print('@@' + json.dumps(ds.get_metadata(metadata_name='card')))
"""


def write_manifest(env: Env) -> None:
    write_tree(env.work / "data", {"a/1.txt": "one", "b/2.txt": "two"})
    (env.work / "manifests").mkdir(exist_ok=True)
    (env.work / "manifests" / "ds.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {env.project}
        name: carded
        card: README.md
        versions:
          - version: 1.0.0
            sources: [{{path: ../data}}]
        """))


def test_card_errors_are_located_in_the_card_file(tmp_path: Path) -> None:
    (tmp_path / "ds.yaml").write_text(textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: p
        name: carded
        card: README.md
        versions:
          - version: 1.0.0
        """))
    (tmp_path / "README.md").write_text("---\npretty_name: x\nlicense: apache-2.1\ntask_categoris: [a]\n---\ntext\n")
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", "ds.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "README.md:3:10: error: license: 'apache-2.1' is not an SPDX licence id (did you mean 'Apache-2.0'?); use "
        "'other' with license_name and license_link for any other licence",
        "README.md:4:1: error: unknown key 'task_categoris' (did you mean 'task_categories'?)",
    ]
    (tmp_path / "README.md").write_text("no front matter\n")
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", "ds.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("README.md:1:1: error: a dataset card starts with '---'")
    (tmp_path / "README.md").unlink()
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", "ds.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "ds.yaml:5:7: error: card: dataset card 'README.md' not found" in proc.stderr


@pytest.mark.integration
@pytest.mark.parametrize("sdk", ["oldest", "installed"])
def test_a_valid_card_round_trips_through_the_server_and_the_sdk(env: Env, sdk: str,
                                                                 request: pytest.FixtureRequest) -> None:
    write_manifest(env)
    (env.work / "manifests" / "README.md").write_text(CARD)
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    python = Path(sys.executable) if sdk == "installed" else request.getfixturevalue("oldest_sdk_python")
    proc = subprocess.run([str(python), "-c", READ_CARD, env.project], cwd=env.work,
                          env={**env.vars(), "PYTHONPATH": ""}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    assert card == {"format_version": 1, "text": "# Tiny shapes\n\nMade by a script.\n", "metadata": {
        "license": "CC-BY-4.0", "pretty_name": "Tiny shapes", "task_categories": ["image-classification"],
        "source_datasets": ["original"], "size_categories": ["n<1K"],
        "responsible_ai": {"data_limitations": "Synthetic shapes only.", "has_synthetic_data": True}}}
    if sdk == "oldest":
        return
    page = env.sdk("""
        from clearml import StorageManager
        from clearml.backend_api.session.client import APIClient
        ds = Dataset.get(dataset_project=PROJECT, dataset_name='carded', dataset_version='1.0.0')
        events = APIClient().events.get_task_events(task=ds.id, event_type='training_debug_image').events
        [url] = [e['url'] for e in events if (e['metric'], e['variant']) == ('Dataset Card', 'card.html')]
        result = open(StorageManager.get_local_copy(url), encoding='utf-8').read()
    """)
    assert isinstance(page, str) and "<h1>Tiny shapes</h1>" in page and "Made by a script." in page
    assert "<script" not in page
    shown = env.json("show", "manifests", "--format", "json")
    assert shown["datasets"][0]["versions"][0]["card"] == {
        "license": "CC-BY-4.0", "pretty_name": "Tiny shapes", "task_categories": ["image-classification"],
        "size_categories": ["n<1K"], "source_datasets": ["original"]}
    again = env.reconcile("plan", "manifests", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    (env.work / "manifests" / "README.md").write_text(CARD.replace("cc-by-4.0", "mit"))
    changed = env.reconcile("plan", "manifests", "--detailed-exitcode")
    assert changed.returncode == 2 and "card" in changed.stdout and "MIT" in changed.stdout, changed.stdout
