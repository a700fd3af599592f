"""Statistics of real image files (written with the project's deterministic PNG encoder) and their cache."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.model import Content, FileEntry, LinkEntry
from reconciler.sources.png import encode_png
from reconciler.statistics import (
    NONE,
    ROOT,
    StatisticsCache,
    cached_statistics,
    compute_statistics,
    extension,
    split_and_class,
    statistics_from_json,
    statistics_to_json,
    top_folder,
    ui_histograms,
    ui_tables,
)


@pytest.mark.parametrize("path,expected", [
    ("MNIST/train/3/12.png", ("train", "3")),
    ("train/cat/a.png", ("train", "cat")),
    ("data/VAL/dog/x/y.jpg", ("VAL", "dog")),
    ("circle/c0.png", (NONE, "circle")),
    ("a.png", (NONE, NONE)),
    ("test/a.png", ("test", NONE)),
    ("validation/train-like/a.png", ("validation", "train-like")),
])
def test_split_and_class(path: str, expected: tuple[str, str]) -> None:
    assert split_and_class(path) == expected


def test_extension_and_folder() -> None:
    assert extension("a/B.PNG") == ".png" and extension("a/.hidden") == NONE and extension("README") == NONE
    assert top_folder("a/b/c") == "a" and top_folder("c.txt") == ROOT


def _write(root: Path, rel: str, data: bytes) -> FileEntry:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return FileEntry(rel, len(data), hashlib.sha256(data).hexdigest(), str(p))


def _content(files: list[FileEntry], links: tuple[LinkEntry, ...] = ()) -> Content:
    return Content(MappingProxyType({f.path: f for f in files}), MappingProxyType({lnk.path: lnk for lnk in links}))


def test_counts_sizes_and_exact_channel_moments(tmp_path: Path) -> None:
    gray = [bytes(range(i, i + 16)) for i in (0, 100)]  # two 4x4 L images
    rgb = bytes((x * 7) % 256 for x in range(6 * 2 * 3))  # one 6x2 RGB image
    files = [
        _write(tmp_path, "train/zero/0.png", encode_png(4, 4, "L", gray[0])),
        _write(tmp_path, "train/one/1.png", encode_png(4, 4, "L", gray[1])),
        _write(tmp_path, "test/zero/2.png", encode_png(6, 2, "RGB", rgb)),
        _write(tmp_path, "README.txt", b"hello"),
        _write(tmp_path, "train/broken.png", b"not a png"),
    ]
    link = LinkEntry("extra/remote.jpg", "s3://b/remote.jpg", 10, "e")
    stats = compute_statistics(_content(files, (link,)), workers=2)
    assert stats.file_count == 6 and stats.links == 1
    assert stats.total_size == sum(f.size for f in files) + 10
    assert dict(stats.extensions) == {".jpg": 1, ".png": 4, ".txt": 1}
    assert dict(stats.folders) == {ROOT: 1, "extra": 1, "test": 1, "train": 3}
    img = stats.images
    assert img is not None and img.images == 3 and img.unreadable == 1
    assert {s: dict(c) for s, c in img.classes.items()} == {"test": {"zero": 1}, "train": {"one": 1, "zero": 1}}
    assert dict(img.sizes) == {"4x4": 2, "6x2": 1}
    by_mode = {c.mode: c for c in img.channels}
    values = list(gray[0] + gray[1])
    assert by_mode["L"].pixels == 32 and by_mode["L"].sums == (sum(values),)
    mean = sum(values) / len(values)
    assert by_mode["L"].mean[0] == pytest.approx(mean / 255, abs=0)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) / 255
    assert by_mode["L"].std[0] == pytest.approx(std, rel=1e-12)
    red = list(rgb[0::3])
    assert by_mode["RGB"].sums[0] == sum(red) and by_mode["RGB"].pixels == 12
    assert statistics_from_json(statistics_to_json(stats)) == stats
    assert {t.series for t in ui_tables(stats)} >= {"summary", "samples per class", "channels"}
    assert [(h.title, h.series) for h in ui_histograms(stats)] == [
        ("Class distribution", "test"), ("Class distribution", "train"), ("Image sizes", "images")]


def test_result_does_not_depend_on_workers_and_is_cached_by_content(tmp_path: Path) -> None:
    files = [_write(tmp_path, f"val/c{i % 3}/{i}.png", encode_png(3, 3, "RGB", bytes(range(i, i + 27))))
             for i in range(9)]
    content = _content(files)
    one, many = compute_statistics(content, workers=1), compute_statistics(content, workers=4)
    assert statistics_to_json(one) == statistics_to_json(many)
    cache = StatisticsCache(tmp_path / "cache")
    first = cached_statistics(content, cache)
    for f in files:  # a second run must not read the images again
        Path(str(f.local)).unlink()
    assert cached_statistics(content, cache) == first
    assert (tmp_path / "cache" / "v1" / f"{content.digest()}.json").is_file()


def test_no_images_means_no_image_statistics(tmp_path: Path) -> None:
    stats = compute_statistics(_content([_write(tmp_path, "a/b.csv", b"1,2")]))
    assert stats.images is None and statistics_to_json(stats)["images"] is None
