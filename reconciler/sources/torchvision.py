"""``torchvision:`` sources: the real torchvision dataset classes, as their own files or as PNG folders.

Layouts (dataset paths are relative to the source's ``dest``):

* ``raw``: exactly the files torchvision's loader reads for the split, at their paths relative to the
  torchvision ``root``, so a downloaded copy of the dataset *is* a torchvision root:

  - MNIST, FashionMNIST, KMNIST: ``<Class>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the unpacked
    idx files; the ``.gz`` archives torchvision downloads are not part of the dataset).
  - CIFAR10: ``cifar-10-batches-py/`` ``data_batch_1`` .. ``data_batch_5`` (train) or ``test_batch`` (test),
    plus ``batches.meta``. CIFAR100: ``cifar-100-python/`` ``train`` or ``test``, plus ``meta``.

* ``images``: one PNG per sample at ``<split>/<class name>/<index>.png``; ``index`` is the sample's index in
  the split, class names come from the dataset's ``classes`` attribute with ``/`` replaced by ``_``
  (FashionMNIST's ``T-shirt/top`` becomes ``T-shirt_top``). Pixels come from the dataset's own
  ``__getitem__``; the PNG bytes are deterministic (:mod:`reconciler.sources.png`).

The loader always runs (for ``raw`` too), so files torchvision would reject are rejected here.
Materialised images are cached under ``<cache_dir>/torchvision/images/<key>``, where the key names the class,
split, layout, torchvision version, PNG format version and a digest of the input files: a second resolve
reuses the folder without writing anything, and different input data never reuses stale images. A cached
folder with the wrong number of files (edited by hand) is written again. A folder is
published by an atomic rename, so an interrupted run leaves no half-written cache entry, and two processes
materialising at once both end with the same complete folder.

The default ``root`` (download cache) is ``<cache_dir>/torchvision/data``. Without data and without network,
the error says which files to put in which folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import TORCHVISION_SPLITS, TorchvisionSource
from .errors import SourceError
from .hashcache import StatKey, stat_key
from .hashing import Digest, LocalFile
from .local import walk_source
from .png import PNG_FORMAT_VERSION, encode_png
from .progress import Progress

DigestFn = Callable[[Sequence[LocalFile]], list[Digest]]
RecordFn = Callable[[Sequence[tuple[str, StatKey, str]]], None]

_MNIST_FAMILY = ("MNIST", "FashionMNIST", "KMNIST")


@dataclass(frozen=True, slots=True)
class TorchvisionEnv:
    """What a torchvision source needs from the resolver."""

    cache_dir: Path
    progress: bool
    digest: DigestFn
    record: RecordFn


def _import_torchvision() -> Any:
    try:
        # imported lazily: torch takes seconds to import
        import torchvision as tv
        import torchvision.datasets  # noqa: F401
    except ImportError as exc:
        raise SourceError(
            f"torchvision is not installed ({exc}); install it with "
            "pip install 'clearml-dataset-reconciler[torchvision]'"
        ) from exc
    return tv


def _dataset_class(tv: Any, name: str) -> Any:
    if name not in TORCHVISION_SPLITS:
        raise SourceError(f"unknown torchvision dataset {name!r} (supported: {', '.join(sorted(TORCHVISION_SPLITS))})")
    return getattr(tv.datasets, name)


def _split_files(cls: Any, name: str, split: str) -> list[str]:
    """Paths, relative to the torchvision root, of the files the loader reads for ``split``."""
    if name in _MNIST_FAMILY:
        prefix = "train" if split == "train" else "t10k"
        return [f"{name}/raw/{prefix}-images-idx3-ubyte", f"{name}/raw/{prefix}-labels-idx1-ubyte"]
    batches = cls.train_list if split == "train" else cls.test_list
    return [f"{cls.base_folder}/{b[0]}" for b in batches] + [f"{cls.base_folder}/{cls.meta['filename']}"]


def _missing_data_hint(cls: Any, name: str, root: Path) -> str:
    """Where the files go, and what to download, for an offline machine."""
    if name in _MNIST_FAMILY:
        names = ", ".join(os.path.splitext(r[0])[0] for r in cls.resources)
        return (
            f"put the unpacked idx files ({names}) in {root / name / 'raw'}, "
            f"or set download: true where {cls.mirrors[0]} is reachable"
        )
    folder = root / cls.base_folder
    if not folder.is_dir():
        return (f"download {cls.url} and put it in {root} (then set download: true to unpack it), "
                f"or unpack it so that {folder} exists")
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    missing = [f for f, _ in files if not (folder / f).is_file()]
    if missing:
        return f"{folder} lacks {', '.join(missing)}: unpack the whole archive ({cls.url}) there"
    differ = [f for f, md5 in files if _md5(folder / f) != md5]
    if differ:
        return (f"torchvision checks each file against the MD5 of the official release, and "
                f"{', '.join(differ)} in {folder} differ{'s' if len(differ) == 1 else ''}: put the original "
                f"files there ({cls.url})")
    return f"the files in {folder} match the official release; see the error above"


def _md5(path: Path) -> str:
    import hashlib

    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed, cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _load(cls: Any, name: str, source: TorchvisionSource, root: Path) -> Any:
    """The real torchvision dataset object, or a SourceError saying how to provide the data."""
    if source.split not in TORCHVISION_SPLITS[name]:
        raise SourceError(f"{name} has no split {source.split!r} (splits: {', '.join(TORCHVISION_SPLITS[name])})")
    try:
        root.mkdir(parents=True, exist_ok=True)
        return cls(root=str(root), train=source.split == "train", download=source.download)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, pickle and parse errors
        reason = _one_line(str(exc)) or type(exc).__name__
        reason = reason.split(". You can use download=True")[0]  # torchvision's Python-API advice
        what = "could not download" if source.download else "no usable data for"
        raise SourceError(
            f"{what} {name} ({source.split}) in {root}: {reason}; {_missing_data_hint(cls, name, root)}"
        ) from exc


def _raw_files(cls: Any, name: str, split: str, root: Path) -> list[LocalFile]:
    files: list[LocalFile] = []
    for rel in _split_files(cls, name, split):
        full = root / rel
        try:
            st = os.stat(full)
        except OSError as exc:
            raise SourceError(f"cannot read torchvision file {full}: {exc.strerror or exc}") from exc
        files.append(LocalFile(rel, str(full), stat_key(st)))
    return files


def class_folder(name: str) -> str:
    """A class name as one path segment."""
    cleaned = name.replace("/", "_").replace("\\", "_").strip()
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned}_"


def _write_images(dataset: Any, split: str, target: Path, progress: bool) -> dict[str, str]:
    """Write every sample of ``dataset`` below ``target``; the sha256 of each file by relative path."""
    classes = [class_folder(c) for c in dataset.classes]
    hashes: dict[str, str] = {}
    for folder in sorted(set(classes)):
        (target / split / folder).mkdir(parents=True, exist_ok=True)
    with Progress(f"writing {type(dataset).__name__} {split} images", len(dataset), enabled=progress) as bar:
        for index in range(len(dataset)):
            image, label = dataset[index]
            data = encode_png(image.width, image.height, image.mode, image.tobytes())
            rel = f"{split}/{classes[int(label)]}/{index}.png"
            with open(target / rel, "wb") as f:
                f.write(data)
            hashes[rel] = hashlib.sha256(data).hexdigest()
            bar.advance()
    return hashes


def _images_key(name: str, split: str, tv_version: str, inputs: Sequence[Digest]) -> str:
    h = hashlib.sha256()
    for d in inputs:
        h.update(f"{d[0]}:{d[1]}\n".encode())
    return f"{name}-{split}-images-tv{tv_version}-png{PNG_FORMAT_VERSION}-{h.hexdigest()[:16]}"


def _materialise(dataset: Any, split: str, final: Path, env: TorchvisionEnv) -> None:
    """Create ``final`` (atomically) with the images, and seed the hash cache with their hashes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        hashes = _write_images(dataset, split, tmp, env.progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            return  # another process published the same folder first
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    env.record([(f.path, f.key, hashes[f.rel]) for f in walk_source(final) if f.rel in hashes])


def torchvision_files(source: TorchvisionSource, env: TorchvisionEnv) -> Sequence[LocalFile]:
    """The files of a torchvision source, ``rel`` relative to its ``dest``, sorted."""
    tv = _import_torchvision()
    cls = _dataset_class(tv, source.dataset)
    root = (source.root or env.cache_dir / "torchvision" / "data").absolute()
    dataset = _load(cls, source.dataset, source, root)
    raw = _raw_files(cls, source.dataset, source.split, root)
    if source.layout == "raw":
        return sorted(raw, key=lambda f: f.rel)
    if source.layout != "images":
        raise SourceError(f"unknown torchvision layout {source.layout!r} (layouts: raw, images)")
    key = _images_key(source.dataset, source.split, str(tv.__version__), env.digest(raw))
    final = env.cache_dir / "torchvision" / "images" / key
    if final.is_dir():
        files = walk_source(final)
        if len(files) == len(dataset):
            return files
        shutil.rmtree(final)  # a damaged cache entry (files deleted by hand): write it again
    _materialise(dataset, source.split, final, env)
    return walk_source(final)
