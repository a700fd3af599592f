"""Benchmarks of plan and apply, each a ratio against a baseline or a limit measured in the same run.

    python benchmarks/run.py --write-results   # all of them, default sizes (about 12 minutes on 2 cores)
    python benchmarks/run.py --quick           # small sizes: a smoke run (CI runs it)
    python benchmarks/run.py --only B1,B6 --runs 5

B1  warm no-op plan, fresh process, N files in D datasets   vs  walk+stat of the same tree; `dvc status` on it
B2  cold hashing throughput                                 vs  `openssl dgst -sha256`, same files and parallelism
B3  apply of a new dataset                                  vs  a plain clearml SDK script (what users did before)
B4  new version with 1% of a 100,000-file parent changed    vs  the full apply of that parent (time and bytes)
B5  HTTP requests the server receives for a no-op plan      (flat in the number of datasets)
B6  no-op plan of one small dataset, fresh process          vs  `clearml-data search` on the same server
B7  upload of incompressible data (random bytes in .jpg)    vs  a raw HTTP upload of the same bytes to the same server
B8  plan of 1,000,000 files in one dataset                  vs  walk+stat; peak memory; JSON plan linear in size;
    pull of that version: peak memory
B9  pull of a 100,000-file version: cold                    vs  the SDK's get_local_copy() into an empty cache
    warm (DEST already right)                               vs  walk+stat of DEST; get_local_copy(), all cached
    a declared 10% split                                    bytes downloaded vs the whole version's
B11 HTTP requests of a retention plan over N versions      (API calls <= 10, besides file-list reads; flat in N)
B10 all built-in checks on N files (10% images)             vs  the statistics pass alone; their image decoding vs
                                                                a bare Pillow loop, same parallelism (checks.py)

Every command runs as a user runs it: a fresh `reconcile` process (bytecode compiled first, as an installed package
has it) against the embedded server on a free loopback port, in a temporary directory. Medians of repeated runs;
each ratio is computed per run from values measured side by side. DVC (B1) is installed from PyPI into
``benchmarks/.venv-dvc`` when it is not there. Output: ``benchmarks/out/results.json`` and
``benchmarks/out/RESULTS.md`` (``--write-results`` also writes the tables into ``benchmarks/RESULTS.md``, keeping
its hand-written "Reading the results" section).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
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
sys.path.insert(0, str(HERE))
from checks import GOALS as CHECK_GOALS  # noqa: E402  (benchmarks/checks.py, beside this file)

READING = "## Reading the results"
REPO = HERE.parent
DVC_VENV = HERE / ".venv-dvc"
GIB = 1 << 30


@dataclass
class Measure:
    key: str
    title: str
    goals: dict[str, str] = field(default_factory=dict)  # value name -> goal
    values: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def stats(self, name: str) -> tuple[float, float, float]:
        v = self.values[name]
        return min(v), statistics.median(v), max(v)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])


# --- data ----------------------------------------------------------------------------------------------------


def make_tree(root: Path, n_files: int, *, size: int, seed: int, per_dir: int = 500, suffix: str = ".bin") -> None:
    """``n_files`` files of ``size`` random bytes in folders of ``per_dir``; deterministic for a seed."""
    rng = random.Random(seed)
    for i in range(n_files):
        d = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:07d}{suffix}").write_bytes(rng.randbytes(size))


def manifest(project: str, name: str, versions: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {project}
        name: {name}
        tags: [bench]
        """) + extra + "versions:\n" + textwrap.indent(textwrap.dedent(versions), "  ")


# Runs a command and writes [exit code, peak RSS in KiB, seconds] to a file. A small process of its own: a child
# started straight from this one would count this process's memory (the embedded server's) as its own peak, since
# Linux keeps the high-water mark of the memory a process had before exec.
MEASURE = """
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
seconds = time.perf_counter() - t
with open(sys.argv[1], "w") as f:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss, seconds], f)
"""

def one_version(folder: Path, project: str, name: str, source: Path | str) -> Path:
    """``folder`` with a manifest of one dataset whose one version is the folder ``source``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ds.yaml").write_text(manifest(project, name, f"- version: 1.0.0\n  sources:\n    - path: {source}\n"))
    return folder


FLOOR = """
import os, sys, time
t = time.perf_counter()
n = 0
for root in sys.argv[1:]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(dirpath, name))
            n += 1
print(n, time.perf_counter() - t)
"""


# --- harness -------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    seconds: float
    max_rss: int  # bytes
    code: int
    stdout: str
    stderr: str


class Bench:
    def __init__(self, work: Path, runs: int, workers: int):
        from reconciler.localserver import LocalServer

        self.work, self.runs, self.workers = work, runs, workers
        self.server = LocalServer(work / "server", port=0).start()
        self.home = work / "home"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
        for name in ("CI", "PYTHONDONTWRITEBYTECODE", "RECONCILE_MANIFEST_CACHE"):
            self.env.pop(name, None)
        self.env.update(self.server.client_env())
        self.env.update(HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"), NO_COLOR="1",
                        PYTHONPATH=str(REPO), CLEARML_LOG_LEVEL="WARNING")
        os.environ.update({k: self.env[k] for k in ("HOME", "XDG_CACHE_HOME", *self.server.client_env())})

    def close(self) -> None:
        self.server.stop()

    def proc(self, args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
             check: bool = True) -> Proc:
        """Run ``args`` to the end: its wall time, peak memory and output (measured by :data:`MEASURE`)."""
        out_path, err_path, measured = self.work / ".stdout", self.work / ".stderr", self.work / ".measured"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            subprocess.run([sys.executable, "-I", "-S", "-c", MEASURE, str(measured), *args], cwd=cwd or self.work,
                           env=env or self.env, stdout=out, stderr=err, check=True)
        code, max_rss, elapsed = json.loads(measured.read_text())
        result = Proc(elapsed, max_rss * 1024, code, out_path.read_text(errors="replace"),
                      err_path.read_text(errors="replace"))
        if check and result.code not in (0, 2):
            raise RuntimeError(f"{' '.join(args)} failed ({result.code}):\n{result.stdout[-2000:]}\n"
                               f"{result.stderr[-3000:]}")
        return result

    def reconcile(self, *args: str, cwd: Path | None = None, cache: Path | None = None) -> Proc:
        env = dict(self.env)
        if cache is not None:
            env["XDG_CACHE_HOME"] = str(cache)
        return self.proc([sys.executable, "-m", "reconciler.cli", *args], cwd=cwd, env=env)

    def apply(self, path: Path, cache: Path | None = None) -> float:
        return self.reconcile("apply", "--auto-approve", "--workers", str(self.workers), str(path),
                              cache=cache).seconds

    def plan_json(self, path: Path) -> dict:
        return json.loads(self.reconcile("plan", "--format", "json", str(path)).stdout)

    def floor(self, *roots: Path) -> tuple[int, float]:
        """Files under ``roots`` and the seconds a plain Python walk+stat of them takes (in a fresh process)."""
        n, seconds = self.proc([sys.executable, "-c", FLOOR, *map(str, roots)]).stdout.split()
        return int(n), float(seconds)


def ensure_dvc() -> Path:
    """``dvc`` from PyPI in its own virtualenv (installed on first use)."""
    exe = DVC_VENV / "bin" / "dvc"
    if not exe.exists():
        print("   installing dvc into benchmarks/.venv-dvc ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DVC_VENV)], check=True)
        subprocess.run([str(DVC_VENV / "bin" / "pip"), "install", "-q", "dvc"], check=True)
    return exe


# --- B1: warm no-op plan against walk+stat and dvc status ---------------------------------------------------


def b1(b: Bench, m: Measure, files: int, datasets: int, dvc: bool) -> None:
    base = b.work / "b1"
    root = base / "data"
    per = files // datasets
    big, small = base / "manifests", base / "manifests-small"
    big.mkdir(parents=True)
    small.mkdir()
    for i in range(datasets):
        make_tree(root / f"ds{i}", per, size=256, seed=100 + i)
        make_tree(base / "small" / f"ds{i}", 1, size=256, seed=200 + i)
        for folder, project, src in ((big, "bench_b1", root), (small, "bench_b1_small", base / "small")):
            (folder / f"ds{i}.yaml").write_text(manifest(project, f"ds{i:03d}", f"- version: 1.0.0\n  sources:\n"
                                                                                 f"    - path: {src / f'ds{i}'}\n"))
    t0 = time.perf_counter()
    b.apply(big)
    b.apply(small)
    m.notes.append(f"setup: apply of {files} files in {datasets} datasets and of {datasets} one-file datasets, "
                   f"{time.perf_counter() - t0:.1f}s")
    dvc_exe = None
    if dvc:
        dvc_exe = str(ensure_dvc())
        denv = {**b.env, "DVC_NO_ANALYTICS": "1"}
        t0 = time.perf_counter()
        b.proc([dvc_exe, "init", "--no-scm", "-q"], cwd=base, env=denv)
        # no update check: it starts a daemon per command (importing dvc again) that would run beside the plans
        b.proc([dvc_exe, "config", "core.check_update", "false"], cwd=base, env=denv)
        b.proc([dvc_exe, "add", "-q", *[f"data/ds{i}" for i in range(datasets)]], cwd=base, env=denv)
        status = b.proc([dvc_exe, "status"], cwd=base, env=denv)  # warms its state database, like our first plan
        version = b.proc([dvc_exe, "--version"], cwd=base, env=denv).stdout.strip()
        m.notes.append(f"setup: dvc {version} init + add of the same {datasets} folders, "
                       f"{time.perf_counter() - t0:.1f}s; `dvc status` says: {status.stdout.strip()[:80]}")
    for _ in range(2):  # warm: hash cache, remembered manifests, file lists
        b.reconcile("plan", str(big))
        b.reconcile("plan", str(small))
    for _ in range(b.runs):
        n, floor = b.floor(*(root / f"ds{i}" for i in range(datasets)))
        plan = b.reconcile("plan", "--detailed-exitcode", str(big))
        fixed = b.reconcile("plan", "--detailed-exitcode", str(small))
        if plan.code != 0 or fixed.code != 0 or n != files:
            raise RuntimeError(f"B1: the plans are not no-ops ({plan.code}, {fixed.code}) or the tree has {n} files")
        m.add("floor: walk+stat (s)", floor)
        m.add(f"plan, {files} files (s)", plan.seconds)
        m.add(f"plan, {datasets} one-file datasets (s)", fixed.seconds)
        m.add("per-file cost / floor", (plan.seconds - fixed.seconds) / floor)
        if dvc_exe:
            st = b.proc([dvc_exe, "status", "-q"], cwd=base, env={**b.env, "DVC_NO_ANALYTICS": "1"})
            m.add("dvc status (s)", st.seconds)
            m.add("plan / dvc status", plan.seconds / st.seconds)
    m.notes.append(f"peak memory of the {files}-file plan: {plan.max_rss / 2**20:.0f} MiB")


# --- B2: cold hashing against openssl ------------------------------------------------------------------------


def b2(b: Bench, m: Measure, files: int, size: int) -> None:
    from reconciler.model import PathSource
    from reconciler.sources import ResolveOptions, SourceResolver

    root = b.work / "b2"
    make_tree(root, files, size=size, seed=2)
    subprocess.run(["cat", *map(str, sorted(root.rglob("*.bin")))], stdout=subprocess.DEVNULL, check=True)
    total = files * size
    batch = max(1, files // (b.workers * 8))
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    m.notes.append(f"{version}, `find | xargs -0 -P{b.workers} -n {batch} openssl dgst -sha256` on page-cached files")
    for i in range(b.runs):
        t0 = time.perf_counter()
        subprocess.run(f"find {root} -type f -print0 | xargs -0 -P{b.workers} -n {batch} openssl dgst -sha256 "
                       "> /dev/null", shell=True, check=True)
        base = time.perf_counter() - t0
        cache = b.work / f"b2-cache-{i}"
        with SourceResolver(ResolveOptions(cache_dir=cache, workers=b.workers)) as r:
            t0 = time.perf_counter()
            r.resolve(PathSource(root))
            ours = time.perf_counter() - t0
            assert r.hashed_files == files
        shutil.rmtree(cache)
        m.add("openssl (MB/s)", total / base / 1e6)
        m.add("reconciler, cold hash cache (MB/s)", total / ours / 1e6)
        m.add("ratio", base / ours)


# --- B3/B4: apply of a new dataset; a 1%-changed version --------------------------------------------------------


PLAIN_SDK = """
import sys
from clearml import Dataset
ds = Dataset.create(dataset_name=sys.argv[2], dataset_project=sys.argv[1])
ds.add_files(sys.argv[3])
ds.upload(show_progress=False)
ds.finalize()
"""


def b3(b: Bench, m: Measure, files: int, size: int) -> None:
    root = b.work / "b3"
    make_tree(root, files, size=size, seed=3)
    script = b.work / "plain_sdk.py"
    script.write_text(PLAIN_SDK)
    for i in range(b.runs):
        sdk = b.proc([sys.executable, str(script), "bench_b3_sdk", f"plain{i:02d}", str(root)]).seconds
        mdir = one_version(b.work / f"b3-manifests-{i}", "bench_b3", f"recon{i:02d}", root)
        ours = b.apply(mdir, cache=b.work / f"b3-cache-{i}")
        m.add("plain SDK script (s)", sdk)
        m.add("reconcile apply, cold hash cache (s)", ours)
        m.add("ratio", ours / sdk)


def b4(b: Bench, m: Measure, files: int) -> None:
    """One dataset over ``files`` files (256 B, in folders of 500); version 1.1.0 replaces 1% of them.

    As a user runs them: the full apply on a cold hash cache (the first apply of the data), then the 1% version's
    apply on the cache that left (it hashes the changed files itself).
    """
    root = b.work / "b4"
    make_tree(root, files, size=256, seed=4)
    changed = max(1, files // 100)
    every = files // changed
    delta = b.work / "b4-delta"
    for n, src in enumerate(sorted(root.rglob("*.bin"))[::every][:changed]):
        dst = delta / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(random.Random(n).randbytes(256))
    v1 = f"- version: 1.0.0\n  sources:\n    - path: {root}\n"
    v2 = v1 + f"- version: 1.1.0\n  parent: 1.0.0\n  sources:\n    - path: {delta}\n"
    for i in range(b.runs):
        mdir = b.work / f"b4-manifests-{i}"
        mdir.mkdir()
        cache = b.work / f"b4-cache-{i}"
        (mdir / "ds.yaml").write_text(manifest("bench_b4", f"parent{i:02d}", v1))
        full = b.apply(mdir, cache=cache)
        (mdir / "ds.yaml").write_text(manifest("bench_b4", f"parent{i:02d}", v2))
        shutil.copytree(cache, b.work / "b4-cache-copy")  # the plan's bytes, without warming the apply's cache
        plan = json.loads(b.reconcile("plan", "--format", "json", str(mdir), cache=b.work / "b4-cache-copy").stdout)
        shutil.rmtree(b.work / "b4-cache-copy")
        t = b.apply(mdir, cache=cache)
        m.add(f"full apply of {files} files, cold hash cache (s)", full)
        m.add("1% version apply (s)", t)
        m.add("time ratio", t / full)
        m.add("bytes ratio", plan["summary"]["upload_bytes"] / (files * 256))


# --- B9: pull ------------------------------------------------------------------------------------------------


LOCAL_COPY = """
import sys
from clearml import Dataset
print(Dataset.get(dataset_id=sys.argv[1]).get_local_copy())
"""


def b9(b: Bench, m: Measure, files: int, size: int) -> None:
    """One version of ``files`` files (``size`` bytes, in folders of 500, 1 MiB chunks) that declares a split of 10% of
    them (the first tenth of the folders). Each run in fresh processes: a cold pull (empty DEST, empty caches)
    against the SDK's get_local_copy() into an empty cache; the warm pull of the same DEST against a bare
    walk+stat of it (per-file cost: minus the warm pull of a one-file version, as B1 does) and against
    get_local_copy() with everything cached; the split's pull, bytes downloaded against the cold pull's."""
    root = b.work / "b9"
    make_tree(root, files, size=size, seed=9, per_dir=max(1, files // 200))
    folders = sorted(p.name for p in root.iterdir())
    part = folders[: max(1, len(folders) // 10)]
    globs = ", ".join(f'"{f}/**"' for f in part)
    mdir = b.work / "b9-manifests"
    mdir.mkdir()
    one = b.work / "b9-one"
    make_tree(one, 1, size=256, seed=90)
    (mdir / "ds.yaml").write_text(manifest("bench_b9", "pulled", f"- version: 1.0.0\n  sources:\n    - path: {root}\n",
                                           extra=f"upload: {{chunk_size_mb: 1}}\nsplits: {{part: [{globs}]}}\n"))
    (mdir / "one.yaml").write_text(manifest("bench_b9", "single", f"- version: 1.0.0\n  sources:\n    - path: {one}\n"))
    b.apply(mdir, cache=b.work / "b9-apply-cache")
    script = b.work / "local_copy.py"
    script.write_text(LOCAL_COPY)
    version_id = json.loads(b.reconcile("pull", "bench_b9/pulled@1.0.0", str(b.work / "b9-probe"), "--include",
                                        "nothing", "--format", "json", cache=b.work / "b9-probe-cache").stdout)[
                                            "version_id"]

    def sdk_pull(home: Path) -> float:  # the SDK's cache is ~/.clearml/cache
        return b.proc([sys.executable, str(script), version_id], env={**b.env, "HOME": str(home)}).seconds

    def our_pull(dest: Path, cache: Path) -> Proc:
        return b.reconcile("pull", "bench_b9/pulled@1.0.0", str(dest), "--format", "json", cache=cache)

    for i in range(b.runs):
        dest, cache, home = b.work / f"b9-dest-{i}", b.work / f"b9-cache-{i}", b.work / f"b9-home-{i}"
        home.mkdir()
        if i % 2 == 0:  # which of the two creates its files first alternates run by run
            sdk_cold, cold = sdk_pull(home), our_pull(dest, cache)
        else:
            cold, sdk_cold = our_pull(dest, cache), sdk_pull(home)
        full = json.loads(cold.stdout)
        assert full["fetched"] == files, full
        sdk_warm = sdk_pull(home)
        warm = our_pull(dest, cache)
        assert json.loads(warm.stdout)["fetched"] == 0
        small = b.reconcile("pull", "bench_b9/single@1.0.0", str(b.work / f"b9-one-{i}"), cache=cache)
        small = b.reconcile("pull", "bench_b9/single@1.0.0", str(b.work / f"b9-one-{i}"), cache=cache)
        _, floor = b.floor(dest)
        split = json.loads(b.reconcile("pull", "bench_b9/pulled@1.0.0", str(b.work / f"b9-split-{i}"), "--split",
                                       "part", "--format", "json", cache=cache).stdout)
        m.add("get_local_copy(), empty cache (s)", sdk_cold)
        m.add("cold pull (s)", cold.seconds)
        m.add("cold: pull / get_local_copy()", cold.seconds / sdk_cold)
        m.add("floor: walk+stat of DEST (s)", floor)
        m.add("warm pull (s)", warm.seconds)
        m.add("warm pull, one-file version (s)", small.seconds)
        m.add("warm: per-file cost / floor", max(warm.seconds - small.seconds, 0.0) / floor)
        m.add("get_local_copy(), all cached (s)", sdk_warm)
        m.add("warm: pull / get_local_copy()", warm.seconds / sdk_warm)
        m.add("split: files / all files", split["files"] / files)
        m.add("split: bytes downloaded / all", split["downloaded_bytes"] / full["downloaded_bytes"])


# --- B5: requests of a no-op plan ----------------------------------------------------------------------------


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


# --- B11: requests of a retention plan ------------------------------------------------------------------------


def seed_chain(b: Bench, project: str, name: str, folders: list[Path]) -> float:
    """Versions 1.0.0 .. of a chain straight through the API, one per folder of ``folders`` (each folder holds the
    files its version changes): what ``apply`` stores for each (a zip chunk of its own files, the ``state`` file
    list with the owner and chunk of every file, runtime, bookkeeping with the content digest the plan compares,
    then started and completed), except that the ``Dataset Struct`` names only the version and its parent (the
    plan does not read it; building the whole ancestry is what makes an apply of a long chain quadratic). The
    seconds it took."""
    import hashlib
    import zipfile

    from reconciler.clearml_backend import Backend, codec, load_server_config
    from reconciler.model import FileEntry, VersionKey, content_digest

    t0 = time.perf_counter()
    cfg = load_server_config(b.env)
    assert cfg is not None
    backend = Backend.connect(cfg)
    api, writer, stores = backend.api, backend.writer, backend.writer.stores
    files: dict[str, FileEntry] = {}
    entries: dict[str, codec.StateEntry] = {}
    graph: dict[str, list[str]] = {}
    parent = ""
    for i, folder in enumerate(folders):
        key = VersionKey(project, name, f"1.0.{i}")
        book = codec.Bookkeeping(parent_ids=(parent,) if parent else ())
        vid = str(api.call("tasks.create", create=True, name=name, type=codec.TASK_TYPE,
                           project=writer.dataset_project(key), system_tags=[codec.DATASET_TAG, codec.MANAGED_TAG],
                           tags=["bench"], comment="", hyperparams=codec.hyperparams(book, key.version),
                           runtime={"version": key.version})["id"])
        prefix = codec.storage_prefix(cfg.files_host, key, vid)
        chunk = b.work / "b11-chunk.zip"
        with zipfile.ZipFile(chunk, "w", zipfile.ZIP_STORED) as zf:
            for f in sorted(folder.iterdir()):
                raw = f.read_bytes()
                zf.writestr(f.name, raw)
                files[f.name] = FileEntry(f.name, len(raw), hashlib.sha256(raw).hexdigest())
                entries[f.name] = codec.StateEntry(f.name, len(raw), files[f.name].sha256, vid, codec.DATA_KEY)
        chunk_uri = f"{prefix}/{codec.DATA_KEY}/dataset.{vid}.zip"
        stores.upload(chunk_uri, chunk, chunk.stat().st_size)
        graph = codec.lineage_graph(vid, [parent] if parent else [], graph, {e.owner_id for e in entries.values()})
        raw_state = codec.state_json(vid, list(entries.values()), [], graph, {k: 1 for k in graph})
        state = b.work / "b11-state.json"
        state.write_bytes(raw_state)
        state_uri = f"{prefix}/{codec.STATE_KEY}/{codec.STATE_KEY}.json"
        stores.upload(state_uri, state, len(raw_state))
        now = int(time.time())
        arts = [codec.artifact(codec.DATA_KEY, kind="custom", uri=chunk_uri, size=chunk.stat().st_size,
                               sha256=hashlib.sha256(chunk.read_bytes()).hexdigest(), stamp=now, preview="",
                               content_type="application/zip"),
                codec.artifact(codec.STATE_KEY, kind="dict", uri=state_uri, size=len(raw_state),
                               sha256=hashlib.sha256(raw_state).hexdigest(), stamp=now, preview="",
                               content_type="application/json")]
        total = sum(f.size for f in files.values())
        book = codec.Bookkeeping(parent_ids=book.parent_ids, content_digest=content_digest(files, {}))
        node = {"status": "completed", "last_update": now, "job_size": total, "name": name, "version": key.version}
        api.call("tasks.edit", write=True, task=vid, force=True, execution={"artifacts": arts},
                 hyperparams=codec.hyperparams(book, key.version),
                 runtime=codec.runtime(name, key.version, vid, file_count=len(files), link_count=0, total_size=total,
                                       compressed=chunk.stat().st_size, changes=codec.Changes()),
                 configuration=codec.dataset_struct({vid: [parent] if parent else []},
                                                    {vid: node, **({parent: {}} if parent else {})}))
        api.call("tasks.started", write=True, task=vid)
        api.call("tasks.completed", write=True, task=vid, status_reason="completed")
        parent = vid
    return time.perf_counter() - t0


def b11(b: Bench, m: Measure, versions: int, files: int) -> None:
    """A chain of ``versions`` versions (``files`` files, 10% changed per version), then ``keep_last: 3``: the
    requests of its plan, API calls apart from file-server reads (the kept versions' file lists). The chain is
    seeded through the API (:func:`seed_chain`); a plan without the policy first checks it is what the manifest
    says (no change)."""
    data = b.work / "b11-data"
    rng = random.Random(11)
    changed = max(1, files // 10)
    lines = []
    folders = []
    for i in range(versions):
        folder = data / f"v{i:05d}"
        folder.mkdir(parents=True)
        for j in range(files if i == 0 else changed):
            (folder / f"f{(j + i * changed) % files:06d}.bin").write_bytes(rng.randbytes(64))
        folders.append(folder)
        lines.append(f"- version: 1.0.{i}\n" + (f"  parent: 1.0.{i - 1}\n" if i else "") +
                     f"  sources:\n    - path: {folder}\n")
    mdir = b.work / "b11"
    mdir.mkdir()
    doc = mdir / "chain.yaml"
    doc.write_text(manifest("bench_b11", "chain", "".join(lines)))
    seconds = seed_chain(b, "bench_b11", "chain", folders)
    m.notes.append(f"setup: {versions} versions seeded through the API in {seconds:.1f}s")
    check = b.reconcile("plan", "--detailed-exitcode", str(mdir))
    if check.code != 0:
        raise RuntimeError(f"B11: the seeded chain is not what its manifest says:\n{check.stdout[-3000:]}")
    doc.write_text(manifest("bench_b11", "chain", "".join(lines), "retention: {keep_last: 3, grace: 0}\n"))
    for _ in range(b.runs):
        b.server.stats.reset()
        out = b.reconcile("plan", "--format", "json", str(mdir))
        counts = b.server.stats.snapshot()
        api = sum(v for k, v in counts.items() if not k.startswith("files."))
        m.add(f"API requests, {versions} versions", float(api))
        m.add(f"file-server reads, {versions} versions", float(sum(v for k, v in counts.items()
                                                                  if k.startswith("files."))))
    plan = json.loads(out.stdout)
    kinds = sorted({a["type"] for a in plan["actions"]})
    m.notes.append(f"{versions} versions: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
                   f"; {len(plan.get('retention', []))} versions out of the policy, "
                   f"{plan.get('freed', {}).get('freed_bytes', 0)} bytes to free; actions: {', '.join(kinds)}")


# --- B6: a small plan against clearml-data search ------------------------------------------------------------


def import_costs(b: Bench, cwd: Path, mdir: Path) -> str:
    """The top-level imports of a no-op plan with their cumulative cost (``python -X importtime``)."""
    proc = b.proc([sys.executable, "-X", "importtime", "-m", "reconciler.cli", "plan", str(mdir)], cwd=cwd)
    costs: list[tuple[float, str]] = []
    for line in proc.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # depth 0: no indent after '| '
        if found:
            costs.append((int(found.group(1)) / 1000, found.group(2)))
    top = sorted(costs, reverse=True)[:9]
    return ", ".join(f"{name} {ms:.0f}" for ms, name in top) + f" (ms; {sum(c for c, _ in costs):.0f} ms in all)"


def not_loaded(b: Bench) -> str:
    """What the libraries a warm plan no longer loads would cost to import."""
    out = []
    for mod in ("clearml", "deepdiff", "jsonschema", "ruamel.yaml"):
        proc = b.proc([sys.executable, "-X", "importtime", "-c", f"import {mod}"], check=False)
        last = [ln for ln in proc.stderr.splitlines() if re.search(rf"\| {re.escape(mod)}$", ln)]
        if last:
            out.append(f"{mod} {int(last[-1].split('|')[1]) / 1000:.0f}")
    return ", ".join(out) + " (ms)"


def b6(b: Bench, m: Measure) -> None:
    base = b.work / "b6"
    make_tree(base / "data", 1, size=64, seed=6)
    (base / "manifests").mkdir()
    (base / "manifests" / "ds.yaml").write_text(manifest("bench_b6", "small", """\
        - version: 1.0.0
          sources:
            - path: ../data
        """))
    b.apply(base / "manifests")
    search = [str(Path(sys.executable).with_name("clearml-data")), "search", "--project", "bench_b6"]
    if not Path(search[0]).exists():
        search = [sys.executable, "-m", "clearml.cli.data.__main__", *search[1:]]
    for _ in range(2):
        b.reconcile("plan", "manifests", cwd=base)
        b.proc(search, cwd=base)
    for _ in range(max(5, b.runs)):
        plan = b.reconcile("plan", "--detailed-exitcode", "manifests", cwd=base)
        if plan.code != 0:
            raise RuntimeError(f"B6: not a no-op plan:\n{plan.stdout}")
        found = b.proc(search, cwd=base)
        if "small" not in found.stdout:
            raise RuntimeError(f"B6: clearml-data search did not list the dataset:\n{found.stdout}\n{found.stderr}")
        m.add("reconcile plan (s)", plan.seconds)
        m.add("clearml-data search (s)", found.seconds)
        m.add("ratio", plan.seconds / found.seconds)
    m.notes.append("imports of the plan: " + import_costs(b, base, base / "manifests"))
    m.notes.append("not loaded by a warm no-op plan: " + not_loaded(b))


# --- B7: upload throughput against a raw HTTP upload ---------------------------------------------------------


RAW_UPLOAD = """
import http.client, json, os, sys, threading, time, urllib.parse, uuid
files_host, token, workers, paths = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
url = urllib.parse.urlsplit(files_host)
todo = list(enumerate(paths))
lock = threading.Lock()
def worker():
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    while True:
        with lock:
            if not todo:
                return
            i, path = todo.pop()
        name = f"bench_b7_raw/{uuid.uuid4().hex}/{os.path.basename(path)}"
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\\r\\nContent-Disposition: form-data; name=\\"{name}\\"; filename=\\"{name}\\"\\r\\n"
                "Content-Type: application/octet-stream\\r\\n\\r\\n").encode()
        tail = f"\\r\\n--{boundary}--\\r\\n".encode()
        size = os.path.getsize(path)
        def body():
            yield head
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    yield block
            yield tail
        conn.request("POST", "/", body=body(), headers={
            "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail))})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
t = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(workers)]
for th in threads: th.start()
for th in threads: th.join()
print(time.perf_counter() - t)
"""


def b7(b: Bench, m: Measure, files: int, size: int) -> None:
    from reconciler.clearml_backend import ServerConfig
    from reconciler.clearml_backend.api import ApiClient

    root = b.work / "b7"
    make_tree(root, files, size=size, seed=7, per_dir=files, suffix=".jpg")
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    total = files * size
    srv = b.server
    api = ApiClient(ServerConfig(srv.api_url, srv.files_url, srv.access_key, srv.secret_key))
    token = api.login()
    m.notes.append(f"{files} files x {size >> 20} MiB of random bytes ({total / GIB:.2f} GiB), {b.workers} workers "
                   "both; the raw upload is multipart POSTs from http.client, one connection per worker")
    for i in range(b.runs):
        raw = float(b.proc([sys.executable, "-c", RAW_UPLOAD, srv.files_url, token, str(b.workers), *paths]
                           ).stdout.split()[-1])
        mdir = one_version(b.work / f"b7-manifests-{i}", "bench_b7", f"photos{i:02d}", root)
        b.reconcile("plan", str(mdir))  # hashes are known, as they are after the plan a user reviews
        ours = b.apply(mdir)
        m.add("raw HTTP upload (MB/s)", total / raw / 1e6)
        m.add("reconcile apply (MB/s)", total / ours / 1e6)
        m.add("ratio", raw / ours)
        shutil.rmtree(srv.data_dir / "files" / "bench_b7_raw", ignore_errors=True)


# --- B8: a million files ------------------------------------------------------------------------------------


def b8(b: Bench, m: Measure, files: int) -> None:
    """One dataset of ``files`` files (and one of a tenth of them, and one of one file: the fixed cost), applied;
    then warm no-op plans, as B1. Also the JSON plan of a new version over the same files (``plan --out``), which
    lists every file to upload: written as it is produced, in bounded memory; and a pull of the applied version
    into an empty folder (every file fetched, written and verified)."""
    base = b.work / "b8"
    sizes = {"large": files, "tenth": files // 10, "one": 1}
    t0 = time.perf_counter()
    for name, n in sizes.items():
        make_tree(base / name, n, size=64, seed=8, per_dir=1000)
        for dataset in (name, f"{name}-new"):
            one_version(base / f"m-{dataset}", "bench_b8", dataset, base / name)
    m.notes.append(f"setup: {sum(sizes.values())} files written, {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    for name in sizes:
        b.apply(base / f"m-{name}")  # hashes every file, uploads them
    m.notes.append(f"setup: apply of the three datasets, {time.perf_counter() - t0:.1f}s")
    for name in sizes:
        b.reconcile("plan", str(base / f"m-{name}"))  # warm
    for run in range(b.runs):
        runs = {name: b.reconcile("plan", "--detailed-exitcode", str(base / f"m-{name}")) for name in sizes}
        if any(r.code != 0 for r in runs.values()):
            raise RuntimeError("B8: a plan is not a no-op")
        n, floor = b.floor(base / "large")
        assert n == files
        per_large = (runs["large"].seconds - runs["one"].seconds) / files
        per_tenth = (runs["tenth"].seconds - runs["one"].seconds) / sizes["tenth"]
        m.add("floor: walk+stat (s)", floor)
        m.add(f"no-op plan, {files} files (s)", runs["large"].seconds)
        m.add("per-file cost / floor", per_large * files / floor)
        m.add(f"per-file cost, {files} / {sizes['tenth']} files", per_large / per_tenth)
        m.add("no-op plan: peak memory (MiB)", runs["large"].max_rss / 2**20)
        out = base / "plan-new.json"
        new = b.reconcile("plan", "--out", str(out), str(base / "m-large-new"))
        m.add(f"plan --out of a new {files}-file version (s)", new.seconds)
        m.add("plan --out: peak memory (MiB)", new.max_rss / 2**20)
        if run == 0:  # once: writing every file is slow, and its memory does not vary from run to run
            dest = b.work / "b8-pull"
            pulled = b.reconcile("pull", "bench_b8/large@1.0.0", str(dest), "--format", "json")
            assert json.loads(pulled.stdout)["fetched"] == files, pulled.stdout
            m.add(f"pull of the {files}-file version, empty folder (s)", pulled.seconds)
            m.add("pull: peak memory (MiB)", pulled.max_rss / 2**20)
    with open(base / "plan-new.json", "rb") as f:
        head = f.read(200)
    m.notes.append(f"the JSON plan of a new {files}-file version: {out.stat().st_size / 2**20:.0f} MiB, "
                   f"starts {head[:60]!r}")


# --- report --------------------------------------------------------------------------------------------------


def b10(b: Bench, m: Measure, files: int) -> None:
    """In this process (the checks are a library call in plan and apply): see benchmarks/checks.py."""
    from checks import run as run_checks

    for name, values in run_checks(files, b.runs, b.workers).items():
        for value in values:
            m.add(name, value)
    m.notes.append("both passes in one process on a warm page cache after an untimed warm-up (imports), order "
                   "alternated run by run; the command check runs a shell one-liner: its cost is the rule's own")


def remove_later(path: Path) -> None:
    """Remove ``path`` in a process of its own, not waited for: deleting a million files takes minutes. Only once
    everything is measured: on ext4 without a journal (this machine's disk) the kernel skips inodes freed in the
    last 60 to 300 s when it allocates one, so creating files soon after deleting many is many times slower (100,000
    files of 256 B: 1.2 to 3.6 s on a quiet disk, 26 to 40 s of system time after an `rm -rf` of as many)."""
    subprocess.Popen(["rm", "-rf", str(path)], start_new_session=True, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def machine() -> dict[str, str]:
    import clearml

    cpu = ""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cores": str(os.cpu_count()), "clearml": clearml.__version__}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def to_markdown(measures: list[Measure], info: dict[str, str], command: str, loads: list[str],
                seconds: float) -> str:
    out = ["# Benchmark results", "", f"Command: `{command}` ({seconds / 60:.1f} minutes)", "",
           "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
           "Load average (1, 5, 15 min) before each benchmark: " + "; ".join(loads), "",
           "| id | measure | goal | min | median | max |", "|---|---|---|---|---|---|"]
    for m in measures:
        for name in m.values:
            lo, med, hi = m.stats(name)
            out.append(f"| {m.key} | {m.title}: {name} | {m.goals.get(name, '')} | {lo:.3g} | {med:.3g} | {hi:.3g} |")
    out.append("")
    for m in measures:
        for note in m.notes:
            out.append(f"- {m.key}: {note}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="B1,B2,B3,B4,B5,B6,B7,B8,B9,B10,B11")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--no-dvc", action="store_true", help="B1 without the dvc status baseline")
    ap.add_argument("--b1-files", type=int, default=100_000)
    ap.add_argument("--b1-datasets", type=int, default=10)
    ap.add_argument("--b2-files", type=int, default=400)
    ap.add_argument("--b2-size", type=int, default=1 << 20)
    ap.add_argument("--b3-files", type=int, default=10_000)
    ap.add_argument("--b3-size", type=int, default=4096)
    ap.add_argument("--b4-files", type=int, default=100_000)
    ap.add_argument("--b5-sizes", default="10,100,1000")
    ap.add_argument("--b7-files", type=int, default=100)
    ap.add_argument("--b7-size", type=int, default=10 << 20)
    ap.add_argument("--b8-files", type=int, default=1_000_000)
    ap.add_argument("--b9-files", type=int, default=100_000)
    ap.add_argument("--b9-size", type=int, default=256)
    ap.add_argument("--b10-files", type=int, default=100_000)
    ap.add_argument("--b11-versions", type=int, default=1000)
    ap.add_argument("--b11-files", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--write-results", action="store_true", help="also write benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.b1_files, args.b2_files, args.b3_files, args.b4_files = 2000, 40, 500, 2000
        args.b5_sizes, args.b7_files, args.b7_size, args.b8_files, args.runs = "5,20", 20, 1 << 20, 20_000, 2
        args.b9_files, args.b9_size = 2000, 4096
        args.b10_files = 2000
        args.b11_versions, args.b11_files = 30, 50
    only = set(args.only.split(","))
    sys.path.insert(0, str(REPO))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "reconciler")], check=True,
                   stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    bench = Bench(work, args.runs, args.workers)
    ratio = "per-file cost / floor"
    m1 = Measure("B1", f"warm no-op plan, {args.b1_files} files / {args.b1_datasets} datasets",
                 {ratio: "<= 2", "plan / dvc status": "<= 0.5"})
    m2 = Measure("B2", f"cold hashing, {args.b2_files} x {args.b2_size} B", {"ratio": ">= 0.8"})
    m3 = Measure("B3", f"apply new {args.b3_files}-file dataset", {"ratio": "<= 1.0"})
    m4 = Measure("B4", f"1%-changed version of a {args.b4_files}-file parent",
                 {"time ratio": "<= 0.1", "bytes ratio": "<= 0.1"})
    m5 = Measure("B5", "requests for a no-op plan",
                 {f"requests, {n} datasets": "<= 10, flat" for n in args.b5_sizes.split(",")})
    m6 = Measure("B6", "no-op plan of one small dataset", {"reconcile plan (s)": "<= 0.35", "ratio": "<= 0.5"})
    m7 = Measure("B7", f"upload of {args.b7_files} random .jpg files", {"ratio": ">= 0.85"})
    m8 = Measure("B8", f"{args.b8_files} files in one dataset",
                 {ratio: "<= 2", "no-op plan: peak memory (MiB)": "<= 512", "plan --out: peak memory (MiB)": "<= 512",
                  "pull: peak memory (MiB)": "<= 512",
                  f"per-file cost, {args.b8_files} / {args.b8_files // 10} files": "~1 (linear)"})
    m9 = Measure("B9", f"pull of a {args.b9_files}-file version",
                 {"cold: pull / get_local_copy()": "<= 0.5", "warm: per-file cost / floor": "<= 2",
                  "warm: pull / get_local_copy()": "<= 0.1", "split: bytes downloaded / all": "<= 0.15"})
    m10 = Measure("B10", f"all built-in checks on {args.b10_files} files (10% images)", dict(CHECK_GOALS))
    m11 = Measure("B11", f"retention plan over {args.b11_versions} versions of {args.b11_files} files",
                  {f"API requests, {args.b11_versions} versions": "<= 10"})
    steps: list[tuple[Measure, Callable[[], None]]] = [
        (m6, lambda: b6(bench, m6)),
        (m1, lambda: b1(bench, m1, args.b1_files, args.b1_datasets, not args.no_dvc)),
        (m2, lambda: b2(bench, m2, args.b2_files, args.b2_size)),
        (m3, lambda: b3(bench, m3, args.b3_files, args.b3_size)),
        (m4, lambda: b4(bench, m4, args.b4_files)),
        (m7, lambda: b7(bench, m7, args.b7_files, args.b7_size)),
        (m8, lambda: b8(bench, m8, args.b8_files)),
        (m5, lambda: b5(bench, m5, [int(x) for x in args.b5_sizes.split(",")])),
        (m9, lambda: b9(bench, m9, args.b9_files, args.b9_size)),
        (m10, lambda: b10(bench, m10, args.b10_files)),
        (m11, lambda: b11(bench, m11, args.b11_versions, args.b11_files)),
    ]
    steps = [(m, s) for m, s in steps if m.key in only]
    loads: list[str] = []
    start = time.perf_counter()
    try:
        for m, step in steps:
            t0 = time.perf_counter()
            loads.append(f"{m.key} {load_average()}")
            print(f"== {m.key} ... (load {load_average()})", file=sys.stderr, flush=True)
            step()
            print(f"== {m.key} done in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    finally:
        bench.close()
        remove_later(work)
    measures = sorted((m for m, _ in steps), key=lambda m: m.key)
    info = machine()
    command = ("python benchmarks/run.py " + " ".join(argv)).strip()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"machine": info, "command": command, "load": loads, "seconds": time.perf_counter() - start,
         "measures": [{"id": m.key, "title": m.title, "goals": m.goals, "values": m.values, "notes": m.notes}
                      for m in measures]}, indent=2))
    table = to_markdown(measures, info, command, loads, time.perf_counter() - start)
    (args.out / "RESULTS.md").write_text(table)
    if args.write_results:  # the measured part is replaced; the reading of it (written by hand) is kept
        results = HERE / "RESULTS.md"
        old = results.read_text() if results.exists() else ""
        reading = old[old.index(READING):] if READING in old else ""
        results.write_text(table + ("\n" + reading if reading else ""))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
