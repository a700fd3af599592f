"""The versions this tool writes are what ClearML expects: the oldest supported clearml SDK (1.16) and the installed
one read them back with their own code (``Dataset.get``, ``list_files``, ``get_local_copy``,
``verify_dataset_hash``, ``clearml-data compare``), several chunks and a parent's files included.

The oldest SDK lives in a virtualenv of its own (the ``oldest_sdk_python`` fixture, in conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .helpers import Env, write_tree

pytestmark = pytest.mark.integration

READ_BACK = """
import hashlib, json, os, sys
from clearml import Dataset
project, name = sys.argv[1], sys.argv[2]
out = {}
for version in ("1.0.0", "1.1.0"):
    ds = Dataset.get(dataset_project=project, dataset_name=name, dataset_version=version)
    local = ds.get_local_copy()
    files = sorted(ds.list_files())
    out[version] = {
        "id": ds.id,
        "files": files,
        "sha256": {f: hashlib.sha256(open(os.path.join(local, f), "rb").read()).hexdigest() for f in files},
        "on_disk": sorted(os.path.relpath(os.path.join(d, f), local) for d, _, fs in os.walk(local) for f in fs),
        "verify": ds.verify_dataset_hash(),
    }
print("@@" + json.dumps(out))
"""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("sdk", ["oldest", "installed"])
def test_the_supported_sdks_read_back_what_apply_wrote(env: Env, sdk: str, request: pytest.FixtureRequest) -> None:
    python = Path(sys.executable) if sdk == "installed" else request.getfixturevalue("oldest_sdk_python")
    rng = random.Random(15)
    v1 = {"a.txt": b"alpha", "sub/b.txt": b"bravo", "c.bin": b"\x00\x01" * 4000,
          "photos/one.jpg": rng.randbytes(700_000), "photos/two.jpg": rng.randbytes(700_000)}
    v2 = {"a.txt": b"alpha, edited", "d.txt": b"delta"}
    write_tree(env.work / "data" / "v1", v1)  # type: ignore[arg-type]
    write_tree(env.work / "data" / "v2", v2)  # type: ignore[arg-type]
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "ds.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {env.project}
        name: things
        upload: {{chunk_size_mb: 1}}
        versions:
          - version: 1.0.0
            sources: [{{path: ../data/v1}}]
          - version: 1.1.0
            parent: 1.0.0
            remove: [c.bin]
            sources: [{{path: ../data/v2}}]
        """))
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr

    sdk_env = {**env.vars(), "PYTHONPATH": ""}
    proc = subprocess.run([str(python), "-c", READ_BACK, env.project, "things"], cwd=env.work, env=sdk_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    want = {"1.0.0": v1, "1.1.0": {**{k: v for k, v in v1.items() if k != "c.bin"}, **v2}}
    for version, files in want.items():
        assert got[version]["files"] == sorted(files), version
        assert got[version]["on_disk"] == sorted(files), version
        assert got[version]["sha256"] == {k: _sha(v) for k, v in files.items()}, version
        assert got[version]["verify"] == [], version

    compare = subprocess.run([str(python.with_name("clearml-data")), "compare", "--source", got["1.0.0"]["id"],
                              "--target", got["1.1.0"]["id"], "--verbose"], cwd=env.work, env=sdk_env,
                             capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0, compare.stdout[-2000:] + compare.stderr[-3000:]
    assert "Comparison summary: 1 files removed, 1 files modified, 1 files added" in compare.stdout, compare.stdout
    removed, modified, added = (compare.stdout.split(f"{title} files:")[1].split("\n\n")[0].split()
                                for title in ("Removed", "Modified", "Added"))
    assert (removed, modified, added) == (["c.bin"], ["a.txt"], ["d.txt"])
