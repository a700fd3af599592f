"""The shipped ``manifests/torchvision/*.yaml``: every version's content, laid out as a download of it would be, is
a ``root`` the torchvision class loads, both splits.

The files torchvision reads are written in their real formats (no network) where the manifests expect them, the
default download root under the user cache directory; the manifests are loaded and their sources resolved by the
tool's own code; each version's content is then copied out path by path, as ``get_local_copy()`` lays it out
(the round trip through a server is in ``tests/e2e/test_readme_torchvision.py``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torchvision
import torchvision.datasets.cifar
from test_sources_torchvision import (
    CIFAR10_NAMES,
    SAMPLES,
    write_cifar10,
    write_cifar100,
    write_mnist_family,
)

from reconciler.engine import desired_contents
from reconciler.sources import default_cache_dir

pytestmark = pytest.mark.torchvision
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "torchvision"
CLASSES = {"mnist.yaml": "MNIST", "fashion-mnist.yaml": "FashionMNIST", "kmnist.yaml": "KMNIST",
           "cifar10.yaml": "CIFAR10", "cifar100.yaml": "CIFAR100"}


def test_every_torchvision_manifest_is_covered():
    assert sorted(p.name for p in MANIFESTS.glob("*.yaml")) == sorted(CLASSES)


@pytest.mark.parametrize("manifest", sorted(CLASSES))
def test_each_version_is_a_torchvision_root_with_both_splits(
    manifest: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CIFAR checks the published md5 of each file; only that check becomes an existence check
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    name = CLASSES[manifest]
    root = default_cache_dir() / "torchvision" / "data"  # where the manifests' sources look (no root: set)
    if name == "CIFAR10":
        write_cifar10(root)
    elif name == "CIFAR100":
        write_cifar100(root)
    else:
        write_mnist_family(root, name)
    originals = {split: getattr(torchvision.datasets, name)(root=str(root), train=split == "train")
                 for split in ("train", "test")}

    contents = desired_contents([MANIFESTS / manifest], workers=1, progress=False)
    assert contents, "no versions"
    for key, content in contents.items():
        copy = tmp_path / "copies" / key.version
        for path, entry in content.files.items():
            (copy / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry.local or "", copy / path)
        for split, original in originals.items():
            loaded = getattr(torchvision.datasets, name)(root=str(copy), train=split == "train")
            assert len(loaded) == SAMPLES[split], (key, split)
            assert np.array_equal(np.asarray(loaded.data), np.asarray(original.data)), (key, split)
            assert list(loaded.targets) == list(original.targets), (key, split)
        if name == "CIFAR10":
            assert loaded.classes == CIFAR10_NAMES
