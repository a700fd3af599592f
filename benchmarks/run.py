"""Benchmarks of plan and apply, each reported as a ratio against a baseline measured in the same run.

    python benchmarks/run.py                 # all five, default sizes (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick         # small sizes, a smoke run
    python benchmarks/run.py --only B1,B5 --runs 5 --write-results

B1  no-op plan, warm cache, many files over several datasets   vs  walking + stat-ing the same tree
B2  cold hashing throughput                                    vs  sha256sum with the same parallelism
B3  apply of a new dataset                                     vs  a plain SDK create/add_files/upload/finalize
B4  apply of a new version with 1% of files changed            vs  the full upload of B3 (time and bytes)
B5  HTTP requests the server receives for a no-op plan          (flat in the number of datasets)

Everything runs against the embedded server on a free loopback port, in a temporary directory. Output:
``benchmarks/out/results.json`` and ``benchmarks/out/RESULTS.md`` (``--write-results`` also copies the
table to ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass
class Measure:
    key: str
    title: str
    goal: str
    values: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def stats(self, name: str) -> tuple[float, float, float]:
        v = self.values[name]
        return min(v), statistics.median(v), max(v)


# --- data ----------------------------------------------------------------------------------------------------


def make_tree(root: Path, n_files: int, *, size: int, seed: int, per_dir: int = 500) -> None:
    """``n_files`` files of ``size`` random bytes in folders of ``per_dir``; deterministic for a seed."""
    rng = random.Random(seed)
    for i in range(n_files):
        d = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:07d}.bin").write_bytes(rng.randbytes(size))


def manifest(project: str, name: str, versions: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {project}
        name: {name}
        tags: [bench]
        versions:
        """) + textwrap.indent(textwrap.dedent(versions), "  ")


def walk_and_stat(root: Path) -> int:
    n = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(dirpath, name))
            n += 1
    return n


# --- harness -------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path, runs: int, workers: int):
        from reconciler.localserver import LocalServer

        self.work, self.runs, self.workers = work, runs, workers
        self.server = LocalServer(work / "server", port=0).start()
        self.home = work / "home"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARML_")}
        self.env.pop("CI", None)
        self.env.update(self.server.client_env())
        self.env.update(HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"), NO_COLOR="1")
        os.environ.update({k: self.env[k] for k in ("HOME", "XDG_CACHE_HOME", *self.server.client_env())})

    def close(self) -> None:
        self.server.stop()

    def run(self, args: list[str], *, cache: Path | None = None, check: bool = True) -> float:
        env = dict(self.env)
        if cache is not None:
            env["XDG_CACHE_HOME"] = str(cache)
        t0 = time.perf_counter()
        proc = subprocess.run(args, cwd=self.work, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if check and proc.returncode not in (0, 2):
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                               f"\n{proc.stderr[-3000:]}")
        return elapsed

    def reconcile(self, *args: str, cache: Path | None = None) -> float:
        return self.run([sys.executable, "-m", "reconciler.cli", *args], cache=cache)

    def apply(self, path: Path, cache: Path | None = None) -> float:
        return self.reconcile("apply", "--auto-approve", "--workers", str(self.workers), str(path), cache=cache)

    def plan_json(self, path: Path) -> dict:
        proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "plan", "--format", "json", str(path)],
                              cwd=self.work, env=self.env, capture_output=True, text=True)
        if proc.returncode not in (0, 2):
            raise RuntimeError(proc.stderr[-3000:])
        return json.loads(proc.stdout)


def in_process_plan(paths: list[Path], workers: int) -> dict:
    """What `reconcile plan` does, in this process: load manifests, connect, resolve sources and observe, plan."""
    from reconciler.connection import ConnectOptions, connect
    from reconciler.engine import plan_manifests
    from reconciler.manifest import load_manifests
    from reconciler.plan import PlanOptions

    t0 = time.perf_counter()
    state = load_manifests(paths)
    with connect(ConnectOptions(), lambda _m: None) as conn:
        desired, _obs, plan = plan_manifests(conn.backend, state, PlanOptions(), workers=workers, progress=False)
    return {"total": time.perf_counter() - t0, "actions": len(plan.actions),
            "kinds": sorted({type(a).__name__ for a in plan.actions}), "hashed": desired.hashed_files}


def b1(b: Bench, m: Measure, files: int, datasets: int) -> None:
    root = b.work / "b1"
    per = files // datasets
    mdir = b.work / "b1-manifests"
    mdir.mkdir()
    for i in range(datasets):
        make_tree(root / f"ds{i}", per, size=256, seed=100 + i)
        (mdir / f"ds{i}.yaml").write_text(manifest("bench_b1", f"ds{i:03d}", f"""\
            - version: 1.0.0
              sources:
                - path: {root / f'ds{i}'}
            """))
    m.notes.append(f"setup apply of {files} files: {b.apply(mdir):.1f}s")
    # Measured in a child process, so the plan does not share an interpreter with the server's threads.
    proc = subprocess.run([sys.executable, __file__, "--b1-child", str(mdir), str(root), str(b.runs),
                           str(b.workers)], cwd=REPO, env=b.env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"B1 child failed:\n{proc.stderr[-3000:]}")
    for r in json.loads(proc.stdout.splitlines()[-1]):
        if r["actions"] or r["hashed"] or r["files"] != per * datasets:
            raise RuntimeError(f"B1 plan is not a warm no-op: {r}")
        m.add("floor walk+stat (s)", r["floor"])
        m.add("no-op plan (s)", r["total"])
        m.add("ratio", r["total"] / r["floor"])


def b1_child(mdir: Path, root: Path, runs: int, workers: int) -> None:
    in_process_plan([mdir], workers)  # imports and the SDK session, once
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        n = walk_and_stat(root)
        floor = time.perf_counter() - t0
        out.append({**in_process_plan([mdir], workers), "floor": floor, "files": n})
    print(json.dumps(out))


def b2(b: Bench, m: Measure, files: int, size: int) -> None:
    from reconciler.model import PathSource
    from reconciler.sources import ResolveOptions, SourceResolver

    root = b.work / "b2"
    make_tree(root, files, size=size, seed=2)
    walk_and_stat(root)
    subprocess.run(["cat", *map(str, root.rglob("*.bin"))], stdout=subprocess.DEVNULL, check=True)  # page cache
    total = files * size
    for i in range(b.runs):
        t0 = time.perf_counter()
        subprocess.run(f"find {root} -type f -print0 | xargs -0 -P{b.workers} -n 64 sha256sum > /dev/null",
                       shell=True, check=True)
        base = time.perf_counter() - t0
        cache = b.work / f"b2-cache-{i}"
        with SourceResolver(ResolveOptions(cache_dir=cache, workers=b.workers)) as r:
            t0 = time.perf_counter()
            r.resolve(PathSource(root))
            ours = time.perf_counter() - t0
            assert r.hashed_files == files
        shutil.rmtree(cache)
        m.add("sha256sum (MB/s)", total / base / 1e6)
        m.add("reconciler cold hash (MB/s)", total / ours / 1e6)
        m.add("ratio", base / ours)


PLAIN_SDK = """
import sys
from clearml import Dataset
ds = Dataset.create(dataset_name=sys.argv[2], dataset_project=sys.argv[1])
ds.add_files(sys.argv[3])
ds.upload(show_progress=False)
ds.finalize()
"""


def b3_b4(b: Bench, m3: Measure, m4: Measure, files: int, size: int) -> None:
    root = b.work / "b3"
    make_tree(root, files, size=size, seed=3)
    script = b.work / "plain_sdk.py"
    script.write_text(PLAIN_SDK)
    changed = max(1, files // 100)
    for i in range(b.runs):
        sdk = b.run([sys.executable, str(script), "bench_b3_sdk", f"plain{i:02d}", str(root)])
        mdir = b.work / f"b3-manifests-{i}"
        mdir.mkdir()
        (mdir / "ds.yaml").write_text(manifest("bench_b3", f"recon{i:02d}", f"""\
            - version: 1.0.0
              sources:
                - path: {root}
            """))
        cold = b.work / f"b3-cache-{i}"
        ours = b.apply(mdir, cache=cold)
        m3.add("plain SDK script (s)", sdk)
        m3.add("reconcile apply, cold hash cache (s)", ours)
        m3.add("ratio", ours / sdk)

        # B4: 1% of the files change in a new version on top of the one just applied
        delta = b.work / f"b4-delta-{i}"
        for n, src in enumerate(sorted(root.rglob("*.bin"))[:changed]):
            dst = delta / src.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(random.Random(n + 1000 * i).randbytes(size))
        (mdir / "ds.yaml").write_text(manifest("bench_b3", f"recon{i:02d}", f"""\
            - version: 1.0.0
              sources:
                - path: {root}
            - version: 1.1.0
              parent: 1.0.0
              sources:
                - path: {delta}
            """))
        plan = b.plan_json(mdir)
        up = plan["summary"]["upload_bytes"]
        t = b.apply(mdir, cache=cold)
        m4.add("full apply (s)", ours)
        m4.add("1% version apply (s)", t)
        m4.add("time ratio", t / ours)
        m4.add("bytes ratio", up / (files * size))


def b5(b: Bench, m: Measure, sizes: list[int]) -> None:
    """Sizes share their first datasets (the 1,000-dataset manifests include the 100 already applied)."""
    data = b.work / "b5-data"
    make_tree(data, 1, size=64, seed=5)
    for n in sorted(sizes):
        mdir = b.work / f"b5-{n}"
        mdir.mkdir()
        docs = [manifest("bench_b5", f"ds{i:05d}", f"""\
            - version: 1.0.0
              sources:
                - path: {data}
            """) for i in range(n)]
        (mdir / "all.yaml").write_text("---\n".join(docs))
        t0 = time.perf_counter()
        b.apply(mdir)
        m.notes.append(f"setup apply up to {n} datasets: {time.perf_counter() - t0:.1f}s")
        for _ in range(b.runs):
            b.server.stats.reset()
            b.reconcile("plan", "--detailed-exitcode", str(mdir))
            counts = b.server.stats.snapshot()
            m.add(f"requests, {n} datasets", float(sum(counts.values())))
        m.notes.append(f"{n} datasets: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


# --- report --------------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import clearml

    cpu = ""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cores": str(os.cpu_count()), "clearml": clearml.__version__}


def to_markdown(measures: list[Measure], info: dict[str, str], command: str) -> str:
    out = ["# Benchmark results", "", f"Command: `{command}`", "",
           "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
           "| id | measure | goal | min | median | max |", "|---|---|---|---|---|---|"]
    for m in measures:
        for name in m.values:
            lo, med, hi = m.stats(name)
            goal = m.goal if name in ("ratio", "time ratio", "bytes ratio") or name.startswith("requests") else ""
            out.append(f"| {m.key} | {m.title}: {name} | {goal} | {lo:.3g} | {med:.3g} | {hi:.3g} |")
    out.append("")
    for m in measures:
        for note in m.notes:
            out.append(f"- {m.key}: {note}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--b1-child"]:
        sys.path.insert(0, str(REPO))
        b1_child(Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="B1,B2,B3,B4,B5")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--b1-files", type=int, default=100_000)
    ap.add_argument("--b1-datasets", type=int, default=10)
    ap.add_argument("--b2-files", type=int, default=400)
    ap.add_argument("--b2-size", type=int, default=1 << 20)
    ap.add_argument("--b3-files", type=int, default=10_000)
    ap.add_argument("--b3-size", type=int, default=4096)
    ap.add_argument("--b5-sizes", default="10,100,1000")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--write-results", action="store_true", help="also write benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.b1_files, args.b2_files, args.b3_files, args.b5_sizes, args.runs = 2000, 50, 500, "5,20", 2
    only = set(args.only.split(","))
    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    bench = Bench(work, args.runs, args.workers)
    measures: list[Measure] = []
    steps: list[tuple[str, Callable[[], None]]] = []
    m1 = Measure("B1", f"no-op plan, {args.b1_files} files / {args.b1_datasets} datasets", "<= 3 (and < 2 s)")
    m2 = Measure("B2", f"cold hashing, {args.b2_files} x {args.b2_size} B", ">= 0.8")
    m3 = Measure("B3", f"apply new {args.b3_files}-file dataset", "<= 1.0")
    m4 = Measure("B4", "apply version with 1% changed", "<= 0.1")
    m5 = Measure("B5", "requests for a no-op plan", "<= 10, flat")
    if "B1" in only:
        steps.append(("B1", lambda: b1(bench, m1, args.b1_files, args.b1_datasets)))
        measures.append(m1)
    if "B2" in only:
        steps.append(("B2", lambda: b2(bench, m2, args.b2_files, args.b2_size)))
        measures.append(m2)
    if only & {"B3", "B4"}:
        steps.append(("B3/B4", lambda: b3_b4(bench, m3, m4, args.b3_files, args.b3_size)))
        measures += [m3, m4]
    if "B5" in only:
        steps.append(("B5", lambda: b5(bench, m5, [int(x) for x in args.b5_sizes.split(",")])))
        measures.append(m5)
    try:
        for name, step in steps:
            t0 = time.perf_counter()
            print(f"== {name} ...", file=sys.stderr, flush=True)
            step()
            print(f"== {name} done in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    info = machine()
    command = "python benchmarks/run.py " + " ".join(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"machine": info, "command": command,
         "measures": [{"id": m.key, "title": m.title, "goal": m.goal, "values": m.values, "notes": m.notes}
                      for m in measures]}, indent=2))
    table = to_markdown(measures, info, command.strip())
    (args.out / "RESULTS.md").write_text(table)
    if args.write_results:
        (HERE / "RESULTS.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
