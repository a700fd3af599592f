"""The README's torchvision example, as written: its manifest applied with the CLI against the embedded server,
then its consumer code run with the clearml SDK, and both splits loaded by torchvision from ``get_local_copy()``.

No network: small idx files in MNIST's real format are put where the source looks for them (the default
download root under the user cache directory), so ``download: true`` finds them and downloads nothing, and any
attempt to leave loopback goes to a dead proxy.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from reconciler.sources import default_cache_dir

from .helpers import Env

pytestmark = [pytest.mark.integration, pytest.mark.torchvision]
README = Path(__file__).resolve().parents[2] / "README.md"
SAMPLES = {"train": 12, "test": 6}


def readme_example() -> tuple[str, str]:
    """The manifest (yaml) and the consumer code (python) of the README's Manifests section."""
    section = README.read_text(encoding="utf-8").split("\n## Manifests\n", 1)[1].split("\n## ", 1)[0]
    manifest = re.search(r"```yaml\n(.*?)```", section, re.S)
    consumer = re.search(r"```python\n(.*?)```", section, re.S)
    assert manifest and consumer, "the README's Manifests section lost its example"
    return manifest.group(1), consumer.group(1)


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_readme_torchvision_example_loads_with_torchvision(env: Env, monkeypatch: pytest.MonkeyPatch):
    manifest, consumer = (text.replace("clearml_datasets", env.project) for text in readme_example())  # own project
    document = yaml.safe_load(manifest)
    sources = [s for v in document["versions"] for s in v["sources"]]
    assert {s["torchvision"] for s in sources} == {"MNIST"} and {s["split"] for s in sources} == {"train", "test"}

    variables = env.vars()
    variables.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CACHE_HOME", variables["XDG_CACHE_HOME"])
    raw = default_cache_dir() / "torchvision" / "data" / "MNIST" / "raw"  # where the source looks (no root: set)
    rng = np.random.default_rng(28)
    expected = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = rng.integers(0, 256, (SAMPLES[split], 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, SAMPLES[split], dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        expected[split] = {"n": SAMPLES[split], "pixels": hashlib.sha256(images.tobytes()).hexdigest(),
                           "labels": labels.tolist()}

    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "mnist.yaml").write_text(manifest)
    applied = env.reconcile("apply", "--auto-approve", "manifests/", env=variables)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    n = len(document["versions"])
    assert f"{n} version{'' if n == 1 else 's'} created" in applied.stdout

    loaded = env.sdk(consumer + """
import hashlib
result = {name: {"n": len(ds), "pixels": hashlib.sha256(ds.data.numpy().tobytes()).hexdigest(),
                 "labels": ds.targets.tolist()} for name, ds in (("train", train), ("test", test))}
""", env=variables)
    assert loaded == expected

    again = env.reconcile("plan", "--detailed-exitcode", "manifests/", env=variables)
    assert again.returncode == 0, again.stdout + again.stderr
