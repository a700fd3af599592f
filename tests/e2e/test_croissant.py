"""`reconcile export --croissant`: Croissant 1.0 JSON-LD that mlcroissant validates, whose file hashes are those of
the files `get_local_copy()` returns, for the sample (with a card) and for a torchvision-sourced version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import Env, copy_sample
from .test_diff_statistics import write_mnist

pytestmark = pytest.mark.integration

CARD = """\
---
license: apache-2.0
pretty_name: Shapes
task_categories: [image-classification]
citation: "Shapes, a sample dataset"
responsible_ai:
  data_collection: Drawn by a script.
  data_limitations: Four synthetic shapes only.
  has_synthetic_data: true
---
# Shapes
"""

LOCAL_HASHES = """
import hashlib, os
ds = Dataset.get(dataset_project=PROJECT, dataset_name=NAME, dataset_version=VERSION)
root = ds.get_local_copy()
result = {os.path.relpath(os.path.join(d, f), root).replace(os.sep, '/'):
          hashlib.sha256(open(os.path.join(d, f), 'rb').read()).hexdigest()
          for d, _, fs in os.walk(root) for f in fs}
"""


VALIDATE = """
import sys, mlcroissant as mlc
ds = mlc.Dataset(sys.argv[1])
issues = ds.metadata.ctx.issues
print('@@', sorted(issues.errors), sorted(issues.warnings))
"""


def validated(env: Env, ref: str, *, warnings: str = "[]") -> dict:
    """The export of ``ref``, checked by mlcroissant (no error; ``warnings`` as printed) in a process of its own."""
    out = env.work / "croissant.json"
    res = env.reconcile("export", "--croissant", ref, "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    check = subprocess.run([sys.executable, "-c", VALIDATE, str(out)], capture_output=True, text=True,
                           timeout=300, cwd=env.work)
    assert check.returncode == 0, check.stderr[-6000:]
    assert f"@@ [] {warnings}" in check.stdout, check.stdout + check.stderr[-2000:]
    assert "not standard" not in check.stderr  # the standard @context
    return json.loads(out.read_text())




def file_hashes(doc: dict) -> dict[str, str]:
    return {d["name"]: d["sha256"] for d in doc["distribution"]
            if d["@type"] == "cr:FileObject" and "containedIn" in d}


def test_the_sample_with_its_card_exports_valid_croissant(env: Env) -> None:
    copy_sample(env)
    shapes = env.work / "manifests" / "shapes.yaml"
    (env.work / "manifests" / "CARD.md").write_text(CARD)
    shapes.write_text(shapes.read_text().replace("statistics: true\n", "statistics: true\ncard: CARD.md\n"))
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = validated(env, f"{env.project}/Shapes@1.1.0")
    assert doc["conformsTo"] == ["http://mlcommons.org/croissant/1.0", "http://mlcommons.org/croissant/RAI/1.0"]
    assert doc["license"] == "https://spdx.org/licenses/Apache-2.0.html" and doc["name"] == "Shapes"
    assert doc["rai:dataLimitations"] == "Four synthetic shapes only." and doc["rai:hasSyntheticData"] is True
    assert doc["citeAs"] == "Shapes, a sample dataset" and doc["version"] == "1.1.0"
    local = env.sdk(f"NAME, VERSION = 'Shapes', '1.1.0'\n{LOCAL_HASHES}")
    assert file_hashes(doc) == local and len(local) == 47
    chunks = [d for d in doc["distribution"] if d["@type"] == "cr:FileObject" and "containedIn" not in d]
    assert len(chunks) == 2 and all(len(c["sha256"]) == 64 and c["contentUrl"].startswith("http") for c in chunks)
    sets = {r["@id"]: r for r in doc["recordSet"]}
    assert [d["splits/name"] for d in sets["splits"]["data"]] == ["train"]
    assert [d["classes/name"] for d in sets["classes"]["data"]] == ["circle", "cross", "square", "triangle"]
    assert [f["name"] for f in sets["images"]["field"]] == ["image", "split", "label"]


@pytest.mark.torchvision
def test_a_torchvision_sourced_version_exports_valid_croissant(env: Env) -> None:
    root = env.work / "tv"
    write_mnist(root / "MNIST" / "raw", "train", [3, 1, 4, 1, 5], 11)
    write_mnist(root / "MNIST" / "raw", "t10k", [2, 7], 17)
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "mnist.yaml").write_text(f"""\
apiVersion: reconciler/v1
kind: Dataset
project: {env.project}
name: mnist
versions:
  - version: 1.0.0
    sources:
      - {{torchvision: MNIST, split: train, layout: images, root: {root}}}
      - {{torchvision: MNIST, split: test, layout: images, root: {root}}}
""")
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = validated(env, f"{env.project}/mnist@1.0.0", warnings="""['[Metadata(mnist)] Property "https://schema.org/license" is recommended, but does not exist.']""")  # noqa: E501 - no card
    local = env.sdk(f"NAME, VERSION = 'mnist', '1.0.0'\n{LOCAL_HASHES}")
    assert file_hashes(doc) == local and len(local) == 7
    sets = {r["@id"]: r for r in doc["recordSet"]}
    assert [d["splits/name"] for d in sets["splits"]["data"]] == ["test", "train"]
    assert len(sets["classes"]["data"]) == 6  # digits 1, 2, 3, 4, 5, 7
    assert "license" not in doc  # no card: no licence is claimed
    missing = env.reconcile("export", "--croissant", f"{env.project}/mnist@9.9.9")
    assert missing.returncode == 1 and "has no version or alias '9.9.9'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_export_needs_a_format(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "reconciler.cli", "export", "p/n@1.0.0"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "--croissant" in res.stderr
