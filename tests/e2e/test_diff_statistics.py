"""Issue acceptance for statistics and diff reports: the real CLI, SDK and Chromium against the test's server.

Golden files live in tests/golden/diff/; regenerate them on purpose with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections import Counter
from pathlib import Path

from reconciler.sources.png import encode_png

from .browser import dom as browser_dom
from .browser import screenshot
from .helpers import Env, manifest, write_tree

GOLDEN = Path(__file__).parent.parent / "golden" / "diff"


def image(width: int, height: int, seed: int) -> bytes:
    """A deterministic RGB PNG (same bytes on every machine)."""
    return encode_png(width, height, "RGB", bytes((seed * 31 + i * 7) % 256 for i in range(width * height * 3)))


V1 = {
    "train/cat/c0.png": image(4, 4, 1), "train/cat/c1.png": image(4, 4, 2), "train/cat/c2.png": image(4, 4, 3),
    "train/dog/d0.png": image(4, 4, 4), "train/dog/d1.png": image(4, 4, 5),
    "test/cat/t0.png": image(4, 4, 6), "notes.txt": "hello",
}
V2 = {"train/bird/b0.png": image(6, 4, 7), "train/bird/b1.png": image(6, 4, 8), "notes.txt": "hello, world"}
VERSIONS = """\
- version: 1.0.0
  sources:
    - path: ../data/v1
- version: 1.1.0
  parent: 1.0.0
  sources:
    - path: ../data/v2
  remove: [train/dog/d1.png]
"""
V3 = """\
- version: 1.2.0
  parent: 1.1.0
  sources:
    - path: ../data/v3
"""


def stats_manifest(env: Env, versions: str, **kw: str) -> str:
    return manifest(env.project, "pets", versions, **kw).replace("versions:\n", "statistics: true\nversions:\n", 1)


def setup(env: Env) -> Path:
    write_tree(env.work / "data" / "v1", V1)
    write_tree(env.work / "data" / "v2", V2)
    m = env.work / "manifests" / "pets.yaml"
    m.parent.mkdir(exist_ok=True)
    m.write_text(stats_manifest(env, VERSIONS))
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    return m


def set_tags(env: Env, version: str, tags: list[str]) -> None:
    """Edit a version's tags behind the reconciler's back (drift a diff must report)."""
    env.sdk(f"""
        from clearml.backend_api.session.client import APIClient
        ds = Dataset.get(dataset_project='{env.project}', dataset_name='pets', dataset_version='{version}')
        APIClient().tasks.edit(task=ds.id, tags={tags!r}, force=True)
        result = ds.id
    """)


def normalise(text: str, env: Env) -> str:
    text = text.replace(f"{env.project}/", "proj/")
    text = re.sub(r"\b[0-9a-f]{64}\b", "<digest>", text)
    return re.sub(r"\b[0-9a-f]{32}\b", "<id>", text).replace(str(env.work), "<work>")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates it)"


def by_path(items: list[dict]) -> dict[str, dict]:
    return {i["path"]: i for i in items}


def classes(split: dict) -> dict[str, tuple[int, int]]:
    return {c["key"]: (c["before"], c["after"]) for c in split["classes"]}


def test_live_versions_differ_by_exactly_the_known_files_and_classes(env: Env):
    pets = f"{env.project}/pets"
    setup(env)
    set_tags(env, "1.0.0", ["a", "b", "old"])
    res = env.reconcile("diff", "--format", "json", f"{pets}@1.0.0", f"{pets}@1.1.0")
    assert res.returncode == 2, res.stderr
    data = json.loads(res.stdout)
    assert data["format_version"] == 1 and data["mode"] == "live-vs-live" and data["identical"] is False
    (v,) = data["versions"]
    assert (v["before"], v["after"]) == (f"{pets}@1.0.0", f"{pets}@1.1.0")
    files = by_path(v["files"])
    assert {p: f["change"] for p, f in files.items()} == {
        "train/bird/b0.png": "added", "train/bird/b1.png": "added", "train/dog/d1.png": "removed",
        "notes.txt": "modified"}
    assert files["notes.txt"]["before_size"] == 5 and files["notes.txt"]["after_size"] == 12
    assert files["train/bird/b0.png"]["after_size"] == len(V2["train/bird/b0.png"])
    assert files["train/dog/d1.png"]["before_size"] == len(V1["train/dog/d1.png"])
    assert v["file_count"] == {"key": "files", "before": 7, "after": 8, "delta": 1}
    size1 = sum(len(x if isinstance(x, bytes) else x.encode()) for x in V1.values())
    size2 = size1 - len(V1["train/dog/d1.png"]) + len(V2["train/bird/b0.png"]) * 2 + 7
    assert (v["total_size"]["before"], v["total_size"]["after"]) == (size1, size2)
    assert v["properties"] == [{"field": "tags", "path": "tags", "change": "removed", "before": "old",
                                "after": None}]
    stats = v["statistics"]
    assert stats["changed"] and stats["before_available"] and stats["after_available"]
    splits = {s["split"]: classes(s) for s in stats["splits"]}
    assert splits == {"test": {"cat": (1, 1)}, "train": {"bird": (0, 2), "cat": (3, 3), "dog": (2, 1)}}
    assert {c["key"]: (c["before"], c["after"]) for c in stats["sizes"]} == {"4x4": (6, 5), "6x4": (0, 2)}
    summary = {c["key"]: (c["before"], c["after"]) for c in stats["summary"]}
    assert summary["files"] == (7, 8) and summary["images"] == (6, 7)
    assert {c["key"]: c["delta"] for c in stats["extensions"]} == {".png": 1}
    assert {c["key"]: c["delta"] for c in stats["folders"]} == {"train": 1}

    text = env.reconcile("diff", f"{pets}@1.0.0", f"{pets}@1.1.0")
    assert text.returncode == 2, text.stderr
    check_golden("live.txt", normalise(text.stdout, env))
    md = env.reconcile("diff", "--format", "markdown", f"{pets}@1.0.0", f"{pets}@1.1.0")
    assert md.returncode == 2, md.stderr
    check_golden("live.md", normalise(md.stdout, env))

    html = env.reconcile("diff", "--format", "html", "--out", "diff.html", v["before_id"], f"{pets}@1.1.0")
    assert html.returncode == 2, html.stderr
    check_html_in_chromium(env.work / "diff.html", splits=["test", "train"])


def check_html_in_chromium(page: Path, *, splits: list[str]) -> None:
    source = page.read_text()
    assert "<script" not in source and not re.search(r"""(src|href)=["']?(https?:|//)""", source)
    screenshot(page.as_uri(), page.with_suffix(".png"))
    dom = browser_dom(page.as_uri())
    assert re.search(r"<h1>Dataset diff</h1>", dom)
    assert "<h3>Files</h3>" in dom and "<h3>Statistics</h3>" in dom and "<h3>Class distribution</h3>" in dom
    charts = re.findall(r'<figure data-split="([^"]*)"><svg[^>]*class="chart class-chart"', dom)
    assert charts == splits
    assert dom.count('class="chart size-chart"') == 1


def test_manifests_against_live_report_what_apply_would_change(env: Env):
    pets = f"{env.project}/pets"
    m = setup(env)
    set_tags(env, "1.0.0", ["a", "b", "old"])
    write_tree(env.work / "data" / "v3", {"train/fish/f0.png": image(4, 4, 9), "val/fish/f1.png": image(2, 2, 10)})
    m.write_text(stats_manifest(env, VERSIONS + V3, description="pets, described", metadata="{k: 2, extra: true}"))
    res = env.reconcile("diff", "--format", "json", "manifests")
    assert res.returncode == 2, res.stderr
    data = json.loads(res.stdout)
    assert data["mode"] == "desired-vs-live"
    v1, v2, v3 = data["versions"]
    assert [v["after"] for v in data["versions"]] == [
        f"{pets}@1.0.0 (manifests)", f"{pets}@1.1.0 (manifests)", f"{pets}@1.2.0 (manifests)"]
    assert v1["files"] == [] and v1["statistics"] is None
    props = {(p["path"], p["change"]): (p["before"], p["after"]) for p in v1["properties"]}
    assert props == {
        ("description", "changed"): ("test data", "pets, described"),
        ("metadata['k']", "changed"): (1, 2),
        ("metadata['extra']", "added"): (None, True),
        ("tags", "removed"): ("old", None),
    }
    assert {(p["path"], p["change"]) for p in v2["properties"]} == {
        ("description", "changed"), ("metadata['k']", "changed"), ("metadata['extra']", "added")}
    # a new version is compared with its parent, as plan shows it: only its own files, class counts from there
    assert v3["before"] == f"{pets}@1.1.0 (parent)" and v3["before_id"] == v2["before_id"]
    assert v3["note"] == "not on the server: apply creates it on top of its parent"
    assert {p: f["change"] for p, f in by_path(v3["files"]).items()} == {
        "train/fish/f0.png": "added", "val/fish/f1.png": "added"}
    splits = {s["split"]: classes(s) for s in v3["statistics"]["splits"]}
    assert splits == {"test": {"cat": (1, 1)}, "train": {"bird": (2, 2), "cat": (3, 3), "dog": (1, 1),
                                                         "fish": (0, 1)}, "val": {"fish": (0, 1)}}
    text = env.reconcile("diff", "manifests")
    assert text.returncode == 2, text.stderr
    check_golden("desired.txt", normalise(text.stdout, env))
    md = env.reconcile("diff", "--format", "markdown", "manifests")
    check_golden("desired.md", normalise(md.stdout, env))
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    same = env.reconcile("diff", "manifests")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "No differences: the server matches the manifests (3 versions compared)." in same.stdout


def test_self_diff_is_identical_and_unknown_versions_are_one_line_errors(env: Env):
    pets, nothing = f"{env.project}/pets", f"{env.project}/nothing"
    setup(env)
    res = env.reconcile("diff", f"{pets}@1.1.0", f"{pets}@1.1.0")
    assert res.returncode == 0, res.stderr
    assert f"No differences: {pets}@1.1.0 and {pets}@1.1.0 are identical." in res.stdout
    for args, message in [
        ((f"{pets}@9.9.9", f"{pets}@1.0.0"), f"{pets} has no version or alias '9.9.9' (versions: 1.0.0, 1.1.0)"),
        ((f"{nothing}@1.0.0", f"{pets}@1.0.0"), f"unknown dataset {nothing}"),
        (("0123456789abcdef0123456789abcdef", f"{pets}@1.0.0"), "no dataset version has the id"),
        ((f"{pets}@1.0.0",), "exactly two versions"),
    ]:
        res = env.reconcile("diff", *args)
        assert res.returncode == 1, (args, res.stdout)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, res.stderr)
        assert res.stdout == ""


# --- torchvision `images` layout: statistics against counts computed here --------------------------------------


def write_mnist(raw: Path, prefix: str, labels: list[int], seed: int) -> list[bytes]:
    """idx files in torchvision's on-disk MNIST format; returns each image's 28x28 pixel bytes."""
    raw.mkdir(parents=True, exist_ok=True)
    images = [bytes((seed + n * 13 + i * (label + 1)) % 256 for i in range(28 * 28)) for n, label in enumerate(labels)]
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, len(labels), 28, 28)
                                                     + b"".join(images))
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(labels)) + bytes(labels))
    return images


def test_statistics_of_a_torchvision_images_dataset_are_stored_and_reported(env: Env):
    root = env.work / "tv"
    train_labels, test_labels = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], [2, 7, 1, 8]
    pixels = write_mnist(root / "MNIST" / "raw", "train", train_labels, 11)
    pixels += write_mnist(root / "MNIST" / "raw", "t10k", test_labels, 17)
    versions = f"""\
        - version: 1.0.0
          sources:
            - {{torchvision: MNIST, split: train, layout: images, root: {root}, dest: digits}}
            - {{torchvision: MNIST, split: test, layout: images, root: {root}, dest: digits}}
        """
    m = env.work / "manifests" / "mnist.yaml"
    m.parent.mkdir()
    m.write_text(stats_manifest(env, versions).replace("name: pets", "name: mnist"))
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"compute statistics of {env.project}/mnist@1.0.0" in res.stdout
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0

    got = env.sdk(f"""
        from clearml import Task
        ds = Dataset.get(dataset_project='{env.project}', dataset_name='mnist', dataset_version='1.0.0')
        plots = Task.get_task(task_id=ds.id).get_reported_plots()
        result = dict(stats=ds.get_metadata('statistics'),
                      plots=sorted({{(p['metric'], p['variant']) for p in plots}}))
    """)
    stats = got["stats"]
    names = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
             "8 - eight", "9 - nine"]
    assert stats["images"]["classes"] == {
        "train": {names[k]: n for k, n in Counter(train_labels).items()},
        "test": {names[k]: n for k, n in Counter(test_labels).items()}}
    assert stats["images"]["splits"] == {"train": len(train_labels), "test": len(test_labels)}
    assert stats["images"]["sizes"] == {"28x28": len(pixels)}
    assert stats["file_count"] == len(pixels) and stats["extensions"] == {".png": len(pixels)}
    assert stats["folders"] == {"digits": len(pixels)}
    (channel,) = stats["images"]["channels"]
    values = b"".join(pixels)
    assert channel["mode"] == "L" and channel["pixels"] == len(values)
    assert channel["sums"] == [sum(values)] and channel["squares"] == [sum(v * v for v in values)]
    assert channel["mean"][0] == sum(values) / (len(values) * 255)
    plots = {tuple(p) for p in got["plots"]}
    assert {("Class distribution", "train"), ("Class distribution", "test"), ("Image sizes", "images"),
            ("Statistics", "samples per class"), ("Statistics", "extensions")} <= plots


def test_live_diff_computes_statistics_from_a_download_when_none_are_stored(env: Env):
    pets = f"{env.project}/pets"
    write_tree(env.work / "data" / "v1", V1)
    write_tree(env.work / "data" / "v2", V2)
    m = env.work / "manifests" / "pets.yaml"
    m.parent.mkdir()
    m.write_text(manifest(env.project, "pets", VERSIONS))  # statistics: false -> nothing stored on the server
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    got = env.sdk(f"""
        ds = Dataset.get(dataset_project='{env.project}', dataset_name='pets', dataset_version='1.1.0')
        result = ds.get_metadata('statistics')
    """)
    assert got is None
    res = env.reconcile("diff", "--format", "json", f"{pets}@1.0.0", f"{pets}@1.1.0")
    assert res.returncode == 2, res.stderr
    stats = json.loads(res.stdout)["versions"][0]["statistics"]
    assert {s["split"]: classes(s) for s in stats["splits"]} == {
        "test": {"cat": (1, 1)}, "train": {"bird": (0, 2), "cat": (3, 3), "dog": (2, 1)}}
