"""B10: the built-in checks against the statistics pass, and their image decoding against a bare Pillow loop.

    python benchmarks/checks.py --files 100000 --runs 3     # alone; run.py runs it as B10 (--only B10)

Data: ``files`` files, 10% PNG images (64x64 RGB noise, in train/test class folders), 5% JSON annotations, the
rest small binary files; hashed once while written (hashing is neither pass's work). Both passes run in this
process with the same ``workers``, on a warm page cache, alternating their order run by run:

- statistics: :func:`reconciler.statistics.compute_statistics` (what ``statistics: true`` computes);
- all checks: one check of every built-in rule (``command``: a shell one-liner that reads the file list), through
  :func:`reconciler.checks.evaluate_checks`;
- images: the ``images`` rule alone against a bare loop (``Image.open`` + ``load``) over the same images in a
  thread pool of the same size. The ratio is bare time / rule time (1.0: as fast as the bare loop).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GOALS = {"all checks / statistics": "<= 1.5", "images: bare Pillow / images rule": ">= 0.8"}


def make_version(root: Path, files: int, seed: int = 10) -> Any:
    """A content of ``files`` files under ``root`` (written once, reused across runs)."""
    from PIL import Image

    from reconciler.model import Content, FileEntry

    rng = random.Random(seed)
    entries: dict[str, FileEntry] = {}
    images = max(1, files // 10)
    annotations = max(1, files // 20)
    pngs = []
    for _ in range(16):  # 16 distinct pictures; each file gets its own text chunk, so its bytes are its own
        buf = io.BytesIO()
        Image.frombytes("RGB", (64, 64), rng.randbytes(64 * 64 * 3)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    for i in range(files):
        if i < images:
            split = "train" if i % 5 else "test"
            rel = f"{split}/class{i % 10}/img{i:06d}.png"
            data = pngs[i % len(pngs)]  # the first 16 files hold the pictures as they are
            if i >= len(pngs):
                img = Image.open(io.BytesIO(data))
                buf = io.BytesIO()
                img.save(buf, format="PNG", pnginfo=_info(i))
                data = buf.getvalue()
        elif i < images + annotations:
            rel = f"labels/l{i // 1000:03d}/a{i:06d}.json"
            data = json.dumps({"label": f"class{i % 10}", "box": [1, 2, 3, 4], "id": i}).encode()
        else:
            rel = f"blobs/b{i // 1000:03d}/f{i:06d}.bin"
            data = rng.randbytes(64)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        entries[rel] = FileEntry(rel, len(data), hashlib.sha256(data).hexdigest(), str(path))
    return Content(dict(sorted(entries.items())))


def _info(i: int) -> Any:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("n", str(i))  # distinct bytes, the same pixels
    return info


def all_checks() -> tuple[Any, ...]:
    from reconciler.model import CheckSpec, freeze_json

    def c(name: str, rule: str, error_if: str | None = None, **params: Any) -> CheckSpec:
        return CheckSpec(name, rule, "error", error_if, None, freeze_json(params))

    schema = {"type": "object", "required": ["label", "box"],
              "properties": {"label": {"type": "string"}, "box": {"type": "array", "maxItems": 4}}}
    return (
        c("files", "files", "<1"), c("bytes", "bytes", ">10GiB"), c("largest", "largest_file", ">10MiB"),
        c("empty", "empty_files"), c("ext", "extensions", allowed=[".png", ".json", ".bin"]),
        c("classes", "class_samples", min=1), c("imbalance", "class_imbalance", ">10"),
        c("images", "images", min_width=8, modes=["RGB"]), c("dupes", "duplicates", ">1000000"),
        c("leak", "leakage", ">1000000", splits={"train": "train/**", "test": "test/**"}),
        c("labels", "annotations", glob="labels/**/*.json", schema=schema),
        c("change", "change", ">50"),
        # the command rule's own cost (the file list as JSON, a process, its answer), with a program that starts
        # in milliseconds; a team's program costs what it costs on top
        c("command", "command", run=["sh", "-c", "cat > /dev/null; echo '{\"status\": \"pass\"}'"]),
    )


def bare_pillow(paths: list[str], workers: int) -> None:
    from PIL import Image

    def load(p: str) -> None:
        with Image.open(p) as img:
            img.load()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(load, paths, chunksize=32))


def run(files: int, runs: int, workers: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from reconciler.checks import CheckInput, evaluate_checks
    from reconciler.model import CheckSpec, freeze_json
    from reconciler.statistics import compute_statistics, is_image

    values: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        values.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="reconcile-bench-checks-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        content = make_version(root / "data", files)
        print(f"   B10 data: {files} files in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
        specs = all_checks()
        images_only = (CheckSpec("images", "images", "error", None, None, freeze_json({"min_width": 8})),)
        image_paths = [str(f.local) for f in content.files.values() if is_image(f.path)]
        data = CheckInput(_key(), content, content, {}, workers)
        for f in content.files.values():  # a warm page cache for every pass
            Path(str(f.local)).read_bytes()
        from reconciler.model import Content

        few = dict(list(content.files.items())[: max(1, files // 50)])  # imports and first uses, untimed
        warm = CheckInput(_key(), Content(few), Content(few), {}, workers)
        compute_statistics(Content(few), workers=workers)
        evaluate_checks(specs, warm)
        for i in range(runs):
            order = ["stats", "checks", "bare", "rule"]
            if i % 2:
                order.reverse()
            took: dict[str, float] = {}
            for what in order:
                t = time.perf_counter()
                if what == "stats":
                    compute_statistics(content, workers=workers)
                elif what == "checks":
                    results = evaluate_checks(specs, data)
                    assert not results.failed, [r.line() for r in results.failed]
                elif what == "bare":
                    bare_pillow(image_paths, workers)
                else:
                    evaluate_checks(images_only, data)
                took[what] = time.perf_counter() - t
            add("statistics (s)", took["stats"])
            add("all checks (s)", took["checks"])
            add("all checks / statistics", took["checks"] / took["stats"])
            add("images: bare Pillow (s)", took["bare"])
            add("images: images rule (s)", took["rule"])
            add("images: bare Pillow / images rule", took["bare"] / took["rule"])
    return values


def _key() -> Any:
    from reconciler.model import VersionKey

    return VersionKey("bench", "checks", "1.0.0")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    values = run(args.files, args.runs, args.workers)
    for name, vals in values.items():
        goal = GOALS.get(name, "")
        print(f"{name:40} median {sorted(vals)[len(vals) // 2]:.3f}  (min {min(vals):.3f}, max {max(vals):.3f}) {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
