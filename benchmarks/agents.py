"""Benchmark of ``apply --queue``: two independent datasets built by one agent, then by two agents on the queue.

    python benchmarks/agents.py                  # 2 datasets x 48 files x 1 MiB, 3 runs each
    python benchmarks/agents.py --quick          # small sizes, one run
    python benchmarks/agents.py --write-results  # also writes benchmarks/RESULTS-agents.md

Everything runs on this machine: the embedded server on a free loopback port, real ``clearml-agent`` daemons
(reusing this Python environment, as in the README's try-out), the sources in a temporary folder passed as a
shared mount. For each run it reads from the server when each version's task started and completed (the agent's
and the step's own timestamps) and reports how long the two steps overlapped: with two agents they run at the
same time. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from agents import AgentProcess, start_agent  # noqa: E402  (tests/e2e/agents.py: real clearml-agent daemons)

from reconciler.clearml_backend import load_server_config  # noqa: E402
from reconciler.clearml_backend.api import ApiClient  # noqa: E402
from reconciler.localserver import LocalServer  # noqa: E402


def make_data(root: Path, name: str, files: int, size: int) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"{i:04d}.bin").write_bytes(os.urandom(size))


def manifest(project: str, name: str, source: Path) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Dataset\nproject: {project}\nname: {name}\nversions:\n"
            f"  - version: 1.0.0\n    sources: [{{path: {source}}}]\n")


def stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def one_run(server: LocalServer, work: Path, shared: Path, *, agents_count: int, project: str) -> dict[str, object]:
    queue = f"bench-{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.update(server.client_env(), HOME=str(work / "home"), XDG_CACHE_HOME=str(work / "home" / ".cache"),
               PYTHONPATH=str(REPO), NO_COLOR="1")
    env.pop("CI", None)
    started: list[AgentProcess] = []
    try:
        for i in range(agents_count):
            started.append(start_agent(server.client_env(), queue, f"{queue}-agent{i}", work / f"agent{i}"))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "apply", "--queue", queue, "--shared-mount",
                               str(shared), "--auto-approve", str(work / "manifests")], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - t0
    finally:
        for agent in started:
            agent.stop()
    if proc.returncode != 0:
        raise SystemExit(f"apply failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    cfg = load_server_config(server.client_env())
    assert cfg is not None
    api = ApiClient(cfg)
    projects = api.call("projects.get_all", name=f"^{project}/\\.datasets/", search_hidden=True)["projects"]
    tasks = api.call("tasks.get_all", project=[p["id"] for p in projects], search_hidden=True,
                     only_fields=["name", "started", "completed", "last_worker", "status"])["tasks"]
    steps = sorted((stamp(t["started"]), stamp(t["completed"]), t["name"], t["last_worker"]) for t in tasks)
    overlap = max(0.0, min(s[1] for s in steps) - max(s[0] for s in steps))
    return {"agents": agents_count, "wall_s": round(wall, 2), "overlap_s": round(overlap, 2),
            "steps": [{"dataset": name, "agent": worker, "started": round(s - steps[0][0], 2),
                       "completed": round(c - steps[0][0], 2), "seconds": round(c - s, 2)}
                      for s, c, name, worker in steps]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    files = args.files or (8 if args.quick else 48)
    size = args.size if not args.quick else 1 << 16
    results: list[dict[str, object]] = []
    root = Path(tempfile.mkdtemp(prefix="reconcile-bench-agents-"))
    try:
        with LocalServer(root / "server") as server:
            for run in range(runs):
                for count in (1, 2):
                    work = root / f"run{run}-{count}"
                    shared = work / "shared"
                    project = f"bench-{secrets.token_hex(4)}"
                    (work / "manifests").mkdir(parents=True)
                    for name in ("left", "right"):
                        make_data(shared, name, files, size)
                        (work / "manifests" / f"{name}.yaml").write_text(manifest(project, name, shared / name))
                    result = one_run(server, work, shared, agents_count=count, project=project)
                    results.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = render(results, files=files, size=size, runs=runs)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "agents.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "RESULTS-agents.md").write_text(table)
    if args.write_results:
        (HERE / "RESULTS-agents.md").write_text(table)
    print(table)
    return 0


def render(results: list[dict[str, object]], *, files: int, size: int, runs: int) -> str:
    lines = [
        "# apply --queue: one agent vs two agents", "",
        f"Command: `python benchmarks/agents.py --write-results` ({runs} runs)", "",
        f"Machine: python {platform.python_version()}, {platform.platform()}, cores {os.cpu_count()}", "",
        f"Two independent datasets of {files} files x {size} bytes each, sources on a shared mount, the embedded "
        "server and the agents on this machine (agents reuse this environment: no venv build).", "",
        "Step times are the version tasks' `started` (the agent took it) and `completed` (the agent reported it "
        "done), from the server, relative to the first start; overlap is the time both steps ran at once.", "",
        "| agents | apply wall (s) | overlap (s) | step 1: agent, start-end (s) | step 2: agent, start-end (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        steps = r["steps"]
        assert isinstance(steps, list)
        cells = [f"{s['agent']}, {s['started']}-{s['completed']}" for s in steps]
        lines.append(f"| {r['agents']} | {r['wall_s']} | {r['overlap_s']} | {cells[0]} | {cells[1]} |")
    lines += ["", "On this one machine the agents, the server and the command share the CPU, so each step takes "
              "longer while they overlap and the apply's wall time drops less than the overlap suggests; agents on "
              "separate machines (the production shape) do not share it."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
