"""Descriptive statistics of a dataset version's content, computed from the bytes on this machine.

For every version: file count, total size, counts per extension and per top-level folder (external links
count here too; their bytes are never read). For image files (``.png``, ``.jpg``, ``.jpeg``, decoded with
Pillow): samples per split and class, the distribution of image sizes, and per-channel mean and std.

Invariants:
- the result depends only on the content (paths, sizes, bytes), never on the order files are read, the number
  of workers or the machine: channel sums are exact integers and mean/std are derived from them with
  correctly rounded operations;
- ``split`` is the last path segment (folders only) named train/test/val/validation; ``class`` is the folder
  right under the split, or the parent folder when there is no split; :data:`NONE` stands for "no such
  folder". A version that declares ``splits:`` takes the split from them instead: the first split (by name)
  whose globs match the path, else :data:`NONE`;
- ``content_digest`` of the statistics is :func:`~reconciler.model.statistics_key` of the content and the
  declared splits (the content digest itself when none are declared);
- results are cached by :meth:`Content.digest` (format-versioned), so the same content is decoded once.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .diagnostics import ReconcileError
from .globs import GlobSet
from .model import Content, FileEntry, statistics_key

STATISTICS_FORMAT = 1  # bump when what is computed (or how) changes: old cache entries are then ignored
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
SPLIT_NAMES = frozenset({"train", "test", "val", "validation"})
NONE = "(none)"
ROOT = "(root)"
_KEPT_MODES = frozenset({"L", "LA", "RGB", "RGBA"})


def _frozen_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(counts.items())))


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Exact per-channel pixel sums of every image decoded in one Pillow ``mode`` (values 0..255)."""

    mode: str
    pixels: int
    sums: tuple[int, ...]
    squares: tuple[int, ...]

    @property
    def mean(self) -> tuple[float, ...]:
        """Per channel, scaled to [0, 1] (what torchvision's ``Normalize`` expects)."""
        return tuple(s / (self.pixels * 255) for s in self.sums) if self.pixels else ()

    @property
    def std(self) -> tuple[float, ...]:
        """Population standard deviation per channel, scaled to [0, 1]."""
        if not self.pixels:
            return ()
        n = self.pixels
        return tuple(math.sqrt((n * q - s * s) / (n * n * 255 * 255)) for s, q in zip(self.sums, self.squares,
                                                                                        strict=True))


@dataclass(frozen=True, slots=True)
class ImageStatistics:
    images: int
    unreadable: int  # image files Pillow could not decode (counted nowhere else in this object)
    classes: Mapping[str, Mapping[str, int]] = field(hash=False)  # split -> class -> samples
    sizes: Mapping[str, int] = field(hash=False)  # "WxH" -> images
    channels: tuple[ChannelStats, ...] = ()  # one per mode, sorted by mode

    def split_totals(self) -> dict[str, int]:
        return {split: sum(per_class.values()) for split, per_class in self.classes.items()}


@dataclass(frozen=True, slots=True)
class Statistics:
    content_digest: str
    file_count: int
    total_size: int
    links: int
    extensions: Mapping[str, int] = field(hash=False)
    folders: Mapping[str, int] = field(hash=False)
    images: ImageStatistics | None = None  # None: the version holds no image file


# --- path classification (pure) --------------------------------------------------------------------------


def extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else NONE


def top_folder(path: str) -> str:
    return path.split("/", 1)[0] if "/" in path else ROOT


def is_image(path: str) -> bool:
    return extension(path) in IMAGE_EXTENSIONS


def split_and_class(path: str) -> tuple[str, str]:
    """``(split, class)`` of a dataset path, :data:`NONE` for what the path does not have."""
    folders = path.split("/")[:-1]
    for i in range(len(folders) - 1, -1, -1):
        if folders[i].lower() in SPLIT_NAMES:
            return folders[i], folders[i + 1] if i + 1 < len(folders) else NONE
    return NONE, folders[-1] if folders else NONE


# --- decoding --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """What one decoded image contributes. ``mode`` None: the file could not be decoded."""

    width: int = 0
    height: int = 0
    mode: str | None = None
    sums: tuple[int, ...] = ()
    squares: tuple[int, ...] = ()


def require_pillow() -> Any:
    """The ``PIL.Image`` module, or a one-line error saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise ReconcileError(
            "statistics: true needs Pillow to read images; install it with: pip install pillow"
        ) from None
    return Image


def _normalised(img: Any) -> Any:
    """The image in one of L, LA, RGB, RGBA (palette and bilevel images are expanded, others become RGB)."""
    if img.mode in _KEPT_MODES:
        return img
    if img.mode == "1":
        return img.convert("L")
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    return img.convert("RGB")


def read_image(local: str) -> ImageRecord:
    """Size, mode and exact per-channel sums of one image file (from its 8-bit histogram)."""
    image_mod = require_pillow()
    try:
        with image_mod.open(local) as raw:
            img = _normalised(raw)
            hist = img.histogram()
            width, height, mode = img.width, img.height, img.mode
    except (OSError, ValueError, SyntaxError):
        return ImageRecord()
    bands = len(hist) // 256
    sums = tuple(sum(i * hist[b * 256 + i] for i in range(256)) for b in range(bands))
    squares = tuple(sum(i * i * hist[b * 256 + i] for i in range(256)) for b in range(bands))
    return ImageRecord(width, height, mode, sums, squares)


# --- aggregation (pure) ----------------------------------------------------------------------------------


def declared_split(splits: Mapping[str, GlobSet], path: str) -> str:
    """The first declared split (by name) whose globs match ``path``; :data:`NONE` when none does."""
    return next((name for name, globs in sorted(splits.items()) if globs.matches(path)), NONE)


def aggregate_images(records: Iterable[tuple[str, ImageRecord]],
                     splits: Mapping[str, Iterable[str]] | None = None) -> ImageStatistics | None:
    """Statistics of ``(dataset path, record)`` pairs; None when there are none. ``splits``: the declared
    splits (name -> globs), which then decide each image's split."""
    declared = {name: GlobSet.compile(globs) for name, globs in (splits or {}).items()}
    classes: dict[str, Counter[str]] = {}
    sizes: Counter[str] = Counter()
    channels: dict[str, tuple[int, list[int], list[int]]] = {}
    images = unreadable = 0
    for path, rec in records:
        if rec.mode is None:
            unreadable += 1
            continue
        images += 1
        split, cls = split_and_class(path)
        if declared:
            split = declared_split(declared, path)
        classes.setdefault(split, Counter())[cls] += 1
        sizes[f"{rec.width}x{rec.height}"] += 1
        pixels, sums, squares = channels.get(rec.mode, (0, [0] * len(rec.sums), [0] * len(rec.sums)))
        channels[rec.mode] = (pixels + rec.width * rec.height, [a + b for a, b in zip(sums, rec.sums, strict=True)],
                              [a + b for a, b in zip(squares, rec.squares, strict=True)])
    if not images and not unreadable:
        return None
    return ImageStatistics(
        images=images,
        unreadable=unreadable,
        classes=MappingProxyType({s: _frozen_counts(c) for s, c in sorted(classes.items())}),
        sizes=_frozen_counts(sizes),
        channels=tuple(ChannelStats(m, p, tuple(s), tuple(q)) for m, (p, s, q) in sorted(channels.items())),
    )


def file_statistics(content: Content, images: ImageStatistics | None,
                    splits: Mapping[str, tuple[str, ...]] | None = None) -> Statistics:
    paths = list(content.files) + list(content.links)
    return Statistics(
        content_digest=statistics_key(content.digest(), splits or {}),
        file_count=content.file_count,
        total_size=content.total_size,
        links=len(content.links),
        extensions=_frozen_counts(Counter(extension(p) for p in paths)),
        folders=_frozen_counts(Counter(top_folder(p) for p in paths)),
        images=images,
    )


ReadImage = Callable[[str], ImageRecord]


def compute_statistics(content: Content, *, workers: int = 4, read: ReadImage = read_image,
                       splits: Mapping[str, tuple[str, ...]] | None = None) -> Statistics:
    """Statistics of ``content`` (with its declared ``splits``); image files are read from ``FileEntry.local``,
    which must be set."""
    image_files = [f for f in content.files.values() if is_image(f.path)]
    missing = [f.path for f in image_files if not f.local]
    if missing:
        raise ReconcileError(f"statistics: no local copy of {missing[0]} (and {len(missing) - 1} more)"
                             if len(missing) > 1 else f"statistics: no local copy of {missing[0]}")
    if image_files:
        require_pillow()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stats") as pool:
        records = list(pool.map(lambda f: read(str(f.local)), image_files))
    return file_statistics(content, aggregate_images(zip((f.path for f in image_files), records, strict=True),
                                                     splits), splits)


# --- JSON form -------------------------------------------------------------------------------------------


def statistics_to_json(stats: Statistics) -> dict[str, Any]:
    """Plain JSON (stored as the version's ``statistics`` metadata); means/stds are included for readers."""
    out: dict[str, Any] = {
        "format": STATISTICS_FORMAT,
        "content_digest": stats.content_digest,
        "file_count": stats.file_count,
        "total_size": stats.total_size,
        "links": stats.links,
        "extensions": dict(stats.extensions),
        "folders": dict(stats.folders),
        "images": None,
    }
    img = stats.images
    if img is not None:
        out["images"] = {
            "images": img.images,
            "unreadable": img.unreadable,
            "splits": img.split_totals(),
            "classes": {s: dict(c) for s, c in img.classes.items()},
            "sizes": dict(img.sizes),
            "channels": [
                {"mode": c.mode, "pixels": c.pixels, "sums": list(c.sums), "squares": list(c.squares),
                 "mean": list(c.mean), "std": list(c.std)}
                for c in img.channels
            ],
        }
    return out


def statistics_from_json(data: Mapping[str, Any]) -> Statistics:
    """The inverse of :func:`statistics_to_json`; ValueError when ``data`` is not of this format."""
    if not isinstance(data, Mapping) or data.get("format") != STATISTICS_FORMAT:
        raise ValueError(f"not statistics of format {STATISTICS_FORMAT}")
    try:
        img = data.get("images")
        images = None
        if img is not None:
            images = ImageStatistics(
                images=int(img["images"]),
                unreadable=int(img.get("unreadable", 0)),
                classes=MappingProxyType({str(s): _frozen_counts({str(k): int(v) for k, v in c.items()})
                                          for s, c in sorted(img["classes"].items())}),
                sizes=_frozen_counts({str(k): int(v) for k, v in img["sizes"].items()}),
                channels=tuple(ChannelStats(str(c["mode"]), int(c["pixels"]), tuple(int(x) for x in c["sums"]),
                                            tuple(int(x) for x in c["squares"])) for c in img["channels"]),
            )
        return Statistics(
            content_digest=str(data["content_digest"]),
            file_count=int(data["file_count"]),
            total_size=int(data["total_size"]),
            links=int(data.get("links", 0)),
            extensions=_frozen_counts({str(k): int(v) for k, v in data["extensions"].items()}),
            folders=_frozen_counts({str(k): int(v) for k, v in data["folders"].items()}),
            images=images,
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"malformed statistics ({type(err).__name__}: {err})") from None


# --- cache -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatisticsCache:
    """Statistics by content digest, one JSON file each under ``root``; writes are atomic renames."""

    root: Path

    def _path(self, digest: str) -> Path:
        return self.root / f"v{STATISTICS_FORMAT}" / f"{digest}.json"

    def get(self, digest: str) -> Statistics | None:
        try:
            stats = statistics_from_json(json.loads(self._path(digest).read_text()))
        except (OSError, ValueError):
            return None
        return stats if stats.content_digest == digest else None

    def put(self, stats: Statistics) -> None:
        target = self._path(stats.content_digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".stats.", dir=target.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(statistics_to_json(stats), f, sort_keys=True)
        os.replace(tmp, target)


def default_statistics_cache() -> StatisticsCache:
    from .sources import default_cache_dir

    return StatisticsCache(default_cache_dir() / "statistics")


Fetch = Callable[[Sequence[str], Path], Mapping[str, Path]]  # paths of a version -> their copies fetched under a folder


def statistics_for(content: Content, splits: Mapping[str, tuple[str, ...]], *, cache: StatisticsCache,
                   fetch: Fetch, workers: int = 4, fetching: Callable[[int], None] | None = None) -> Statistics:
    """Statistics of ``content`` (with its declared ``splits``): from ``cache``, else computed (and cached) from
    the files' local copies, the image files without one on this machine (none recorded, or no longer there)
    first fetched with ``fetch`` into a temporary folder (``fetching`` is told how many)."""
    digest = statistics_key(content.digest(), splits)
    hit = cache.get(digest)
    if hit is not None:
        return hit
    missing = [p for p, f in content.files.items() if is_image(p) and not (f.local and Path(f.local).is_file())]
    with tempfile.TemporaryDirectory(prefix="reconcile-stats-") as tmp:
        files = dict(content.files)
        if missing:
            if fetching is not None:
                fetching(len(missing))
            for p, local in fetch(missing, Path(tmp)).items():
                f = files[p]
                files[p] = FileEntry(f.path, f.size, f.sha256, str(local))
        stats = compute_statistics(Content(files, content.links), workers=workers, splits=splits)
    cache.put(stats)
    return stats


def cached_statistics(content: Content, cache: StatisticsCache, *, workers: int = 4,
                      splits: Mapping[str, tuple[str, ...]] | None = None) -> Statistics:
    """Statistics of ``content`` (with its declared ``splits``) from ``cache``, computing (and storing) them on
    a miss."""
    digest = statistics_key(content.digest(), splits or {})
    hit = cache.get(digest)
    if hit is not None:
        return hit
    stats = compute_statistics(content, workers=workers, splits=splits)
    cache.put(stats)
    return stats


# --- what the ClearML UI shows (neutral descriptions; the backend reports them) ---------------------------


@dataclass(frozen=True, slots=True)
class UiTable:
    title: str
    series: str
    rows: tuple[tuple[str | int | float, ...], ...]  # first row: the header


@dataclass(frozen=True, slots=True)
class UiHistogram:
    title: str
    series: str
    labels: tuple[str, ...]
    values: tuple[int, ...]
    xaxis: str
    yaxis: str


def ui_tables(stats: Statistics) -> tuple[UiTable, ...]:
    """Tables for the version's Plots page: summary, extensions, folders, classes, channels."""
    tables = [
        UiTable("Statistics", "summary", (("statistic", "value"), ("files", stats.file_count),
                                          ("total size (bytes)", stats.total_size), ("external links", stats.links))),
        UiTable("Statistics", "extensions", (("extension", "files"), *stats.extensions.items())),
        UiTable("Statistics", "top-level folders", (("folder", "files"), *stats.folders.items())),
    ]
    img = stats.images
    if img is not None:
        rows = [(s, c, n) for s, per in img.classes.items() for c, n in per.items()]
        tables.append(UiTable("Statistics", "samples per class", (("split", "class", "samples"), *rows)))
        chan = [(c.mode, i, round(c.mean[i], 6), round(c.std[i], 6)) for c in img.channels
                for i in range(len(c.sums))]
        tables.append(UiTable("Statistics", "channels", (("mode", "channel", "mean", "std"), *chan)))
    return tuple(tables)


def ui_histograms(stats: Statistics) -> tuple[UiHistogram, ...]:
    """Histograms: class distribution (one series per split) and image sizes."""
    img = stats.images
    if img is None:
        return ()
    out = [UiHistogram("Class distribution", split, tuple(per), tuple(per.values()), "class", "samples")
           for split, per in img.classes.items()]
    out.append(UiHistogram("Image sizes", "images", tuple(img.sizes), tuple(img.sizes.values()), "WxH", "images"))
    return tuple(out)
