"""torchvision sources through the real loaders, on tiny files written in each dataset's on-disk format.

torchvision cannot download here, so the tests write the files the loaders read: idx files for the MNIST
family (``<root>/<Class>/raw/*-ubyte``) and pickled batches for CIFAR (``cifar-10-batches-py/``,
``cifar-100-python/``). CIFAR's loader verifies the published md5 of every file; the
``cifar_checksums_bypassed`` fixture replaces only that check (``torchvision.datasets.cifar.check_integrity``)
with an existence check. Everything else, parsing and ``__getitem__`` included, is torchvision's own code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torchvision  # a hard requirement of these tests: missing torchvision must fail, not skip
import torchvision.datasets.cifar
from PIL import Image

from reconciler.diagnostics import ReconcileError, SourceSpan
from reconciler.model import TorchvisionSource
from reconciler.sources import SourceResolver
from reconciler.sources.torchvision import class_folder

MakeResolver = Callable[..., SourceResolver]
pytestmark = pytest.mark.torchvision

MNIST_FAMILY = ("MNIST", "FashionMNIST", "KMNIST")
SAMPLES = {"train": 12, "test": 6}
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_NAMES = [f"fine_{i:02d}" for i in range(100)]


def labels_for(split: str, n: int, classes: int) -> list[int]:
    return [(i * 7 + (3 if split == "test" else 0)) % classes for i in range(n)]


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_family(root: Path, name: str) -> None:
    rng = np.random.default_rng(len(name))
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n = SAMPLES[split]
        write_idx(root / name / "raw" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / name / "raw" / f"{prefix}-labels-idx1-ubyte", np.array(labels_for(split, n, 10)))


def write_pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar_batch(rng: np.random.Generator, labels: list[int], label_key: str) -> dict[str, object]:
    n = len(labels)
    return {
        "batch_label": "synthetic",
        "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
        label_key: labels,
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def write_cifar10(root: Path) -> None:
    rng = np.random.default_rng(10)
    folder = root / "cifar-10-batches-py"
    train = labels_for("train", SAMPLES["train"], 10)
    for b in range(5):  # five train batches, as torchvision expects; samples split across them
        write_pickle(folder / f"data_batch_{b + 1}", cifar_batch(rng, train[b::5], "labels"))
    write_pickle(folder / "test_batch", cifar_batch(rng, labels_for("test", SAMPLES["test"], 10), "labels"))
    write_pickle(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 3})


def write_cifar100(root: Path) -> None:
    rng = np.random.default_rng(100)
    folder = root / "cifar-100-python"
    for split in ("train", "test"):
        batch = cifar_batch(rng, labels_for(split, SAMPLES[split], 100), "fine_labels")
        batch["coarse_labels"] = [label // 5 for label in batch["fine_labels"]]  # type: ignore[attr-defined]
        write_pickle(folder / split, batch)
    write_pickle(folder / "meta", {"fine_label_names": CIFAR100_NAMES, "coarse_label_names": list("abcdefghij")})


@pytest.fixture
def cifar_checksums_bypassed(monkeypatch: pytest.MonkeyPatch) -> None:
    """CIFAR checks each file's published md5; only that check is replaced (by an existence check)."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def tv_root(tmp_path: Path, cifar_checksums_bypassed: None) -> Path:
    root = tmp_path / "torchvision-root"
    for name in MNIST_FAMILY:
        write_mnist_family(root, name)
    write_cifar10(root)
    write_cifar100(root)
    return root


RAW_FILES = {
    ("MNIST", "train"): ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte"],
    ("FashionMNIST", "test"): [
        "FashionMNIST/raw/t10k-images-idx3-ubyte",
        "FashionMNIST/raw/t10k-labels-idx1-ubyte",
    ],
    ("KMNIST", "train"): ["KMNIST/raw/train-images-idx3-ubyte", "KMNIST/raw/train-labels-idx1-ubyte"],
    ("CIFAR10", "train"): [
        f"cifar-10-batches-py/{n}" for n in ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)))
    ],
    ("CIFAR10", "test"): ["cifar-10-batches-py/batches.meta", "cifar-10-batches-py/test_batch"],
    ("CIFAR100", "train"): ["cifar-100-python/meta", "cifar-100-python/train"],
    ("CIFAR100", "test"): ["cifar-100-python/meta", "cifar-100-python/test"],
}


@pytest.mark.parametrize(("name", "split"), sorted(RAW_FILES))
def test_raw_layout_is_the_files_torchvision_reads(
    name: str, split: str, tv_root: Path, make_resolver: MakeResolver
) -> None:
    source = TorchvisionSource(name, split, layout="raw", dest="data", root=tv_root)
    content = make_resolver().resolve(source)
    assert [f.path for f in content.files] == [f"data/{rel}" for rel in RAW_FILES[(name, split)]]
    for entry, rel in zip(content.files, RAW_FILES[(name, split)], strict=True):
        data = (tv_root / rel).read_bytes()
        assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert entry.local == str(tv_root / rel)


def load(name: str, split: str, root: Path) -> torchvision.datasets.VisionDataset:
    return getattr(torchvision.datasets, name)(root=str(root), train=split == "train")


@pytest.mark.parametrize("name", [*MNIST_FAMILY, "CIFAR10", "CIFAR100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_images_layout_has_one_png_per_sample_in_class_folders(
    name: str, split: str, tv_root: Path, make_resolver: MakeResolver
) -> None:
    dataset = load(name, split, tv_root)
    content = make_resolver().resolve(TorchvisionSource(name, split, layout="images", root=tv_root))
    expected = sorted(f"{split}/{class_folder(dataset.classes[label])}/{i}.png" for i, (_, label) in enumerate(dataset))
    assert [f.path for f in content.files] == expected
    assert len(content.files) == SAMPLES[split]
    for entry in content.files:
        index = int(entry.path.rsplit("/", 1)[1].removesuffix(".png"))
        data = Path(entry.local or "").read_bytes()
        assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        decoded = Image.open(io.BytesIO(data))
        original, _ = dataset[index]
        assert decoded.mode == original.mode and decoded.size == original.size
        assert decoded.tobytes() == original.tobytes()


def test_class_folders_come_from_the_dataset_classes(tv_root: Path, make_resolver: MakeResolver) -> None:
    resolver = make_resolver()
    fashion = resolver.resolve(TorchvisionSource("FashionMNIST", "train", layout="images", root=tv_root))
    folders = {f.path.split("/")[1] for f in fashion.files}
    assert "T-shirt_top" in folders  # "T-shirt/top" cannot be one path segment
    assert folders <= {class_folder(c) for c in torchvision.datasets.FashionMNIST.classes}
    mnist = resolver.resolve(TorchvisionSource("MNIST", "test", layout="images", root=tv_root))
    assert {f.path.split("/")[1] for f in mnist.files} <= set(torchvision.datasets.MNIST.classes)
    cifar = resolver.resolve(TorchvisionSource("CIFAR10", "train", layout="images", root=tv_root))
    assert {f.path.split("/")[1] for f in cifar.files} == set(CIFAR10_NAMES)


@pytest.mark.parametrize("name", [*MNIST_FAMILY, "CIFAR10", "CIFAR100"])
def test_images_are_deterministic_and_cached(
    name: str, tv_root: Path, tmp_path: Path, make_resolver: MakeResolver
) -> None:
    source = TorchvisionSource(name, "train", layout="images", dest="img", root=tv_root)
    first_resolver = make_resolver(tmp_path / "cache-a")
    first = first_resolver.resolve(source)
    assert first_resolver.hashed_files >= len(first.files)
    other = make_resolver(tmp_path / "cache-b").resolve(source)
    assert first.files == other.files  # same paths, sizes and sha256 from a separate materialisation
    assert {f.local for f in first.files}.isdisjoint({f.local for f in other.files})

    mtimes = {f.local: os.stat(f.local or "").st_mtime_ns for f in first.files}
    again_resolver = make_resolver(tmp_path / "cache-a")
    again = again_resolver.resolve(source)
    assert again.files == first.files
    assert again_resolver.hashed_files == 0  # nothing rewritten, nothing rehashed
    assert {f.local: os.stat(f.local or "").st_mtime_ns for f in again.files} == mtimes


def test_new_input_data_is_not_served_stale_images(tv_root: Path, make_resolver: MakeResolver) -> None:
    resolver = make_resolver()
    source = TorchvisionSource("KMNIST", "test", layout="images", root=tv_root)
    before = resolver.resolve(source)
    images = tv_root / "KMNIST" / "raw" / "t10k-images-idx3-ubyte"
    write_idx(images, np.zeros((SAMPLES["test"], 28, 28)))
    after = resolver.resolve(source)
    assert [f.path for f in after.files] == [f.path for f in before.files]
    assert {f.sha256 for f in after.files}.isdisjoint({f.sha256 for f in before.files})


def test_unknown_class_is_one_error_line(make_resolver: MakeResolver, span: SourceSpan) -> None:
    with pytest.raises(ReconcileError) as info:
        make_resolver().resolve(TorchvisionSource("ImageNet", "train", span=span))
    assert str(info.value).startswith(
        "manifests/example.yaml:12:7: error: torchvision source: unknown torchvision dataset 'ImageNet'"
    )
    assert "\n" not in str(info.value)


def test_offline_without_data_says_where_the_files_go(
    tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan
) -> None:
    resolver = make_resolver(tmp_path / "cache")
    with pytest.raises(ReconcileError) as info:
        resolver.resolve(TorchvisionSource("MNIST", "train", span=span))  # default root, under cache_dir
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("manifests/example.yaml:12:7: error: torchvision source: no usable data for")
    raw_folder = tmp_path / "cache" / "torchvision" / "data" / "MNIST" / "raw"
    assert "put the unpacked idx files (train-images-idx3-ubyte, " in message
    assert str(raw_folder) in message

    with pytest.raises(ReconcileError) as info:
        resolver.resolve(TorchvisionSource("CIFAR100", "test", root=tmp_path / "empty", span=span))
    assert "cifar-100-python.tar.gz" in str(info.value)
    assert str(tmp_path / "empty" / "cifar-100-python") in str(info.value)


def test_cifar_files_in_place_but_not_the_release_say_so(
    tmp_path: Path, make_resolver: MakeResolver, span: SourceSpan
) -> None:
    """torchvision refuses CIFAR files whose MD5 is not the official release's: the hint names them, rather than
    asking to unpack files that are there."""
    root = tmp_path / "tv"
    write_cifar10(root)  # the real on-disk format, other samples: not the release's bytes
    with pytest.raises(ReconcileError) as info:
        make_resolver().resolve(TorchvisionSource("CIFAR10", "test", root=root, span=span))
    message = str(info.value)
    assert "unpack it so that" not in message
    assert "torchvision checks each file against the MD5 of the official release, and data_batch_1, " in message
    assert f"in {root / 'cifar-10-batches-py'} differ: put the original files there" in message
    (root / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(ReconcileError) as info:
        make_resolver().resolve(TorchvisionSource("CIFAR10", "test", root=root, span=span))
    assert f"{root / 'cifar-10-batches-py'} lacks test_batch: unpack the whole archive" in str(info.value)


def test_damaged_image_cache_is_written_again(tv_root: Path, make_resolver: MakeResolver) -> None:
    source = TorchvisionSource("CIFAR10", "test", layout="images", root=tv_root)
    first = make_resolver().resolve(source)
    Path(first.files[0].local or "").unlink()
    resolver = make_resolver()
    assert resolver.resolve(source) == first
    assert resolver.hashed_files == len(first.files)
