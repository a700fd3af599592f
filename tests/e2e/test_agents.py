"""``reconcile apply --queue``: versions built by real clearml-agent daemons (from PyPI) on the test's server.

Every test runs against the embedded server and, with ``--server=reference``, against the real clearml-server.
The agents reuse this Python environment (no venv build); the command runs in a git repository whose remote is
a bare repository on disk, which the agents clone as they would clone a team's manifests repository.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .agents import AgentProcess
from .helpers import Env, dataset_tasks, manifest, write_tree
from .proxy import Proxy, Rule

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def repository(env: Env, remote: Path) -> None:
    """``env.work`` as a git repository with everything committed and pushed to ``remote``."""
    git(remote.parent, "init", "-q", "--bare", str(remote))
    git(env.work, "init", "-q", "-b", "main")
    git(env.work, "remote", "add", "origin", str(remote))
    git(env.work, "add", "-A")
    git(env.work, "commit", "-q", "-m", "manifests and data")
    git(env.work, "push", "-q", "origin", "main")


def blob(seed: str, size: int) -> bytes:
    out = b""
    while len(out) < size:
        out += hashlib.sha256(f"{seed}{len(out)}".encode()).digest()
    return out[:size]


def files_of(env: Env, project: str, wanted: list[tuple[str, str]]) -> dict[str, dict[str, object]]:
    """Every wanted version as the SDK reads it: id, parents, and each file's sha256 after a download."""
    return env.sdk(f"""
        import hashlib, os
        result = {{}}
        for name, version in {wanted!r}:
            d = Dataset.get(dataset_project={project!r}, dataset_name=name, dataset_version=version)
            root = d.get_local_copy()
            files = {{}}
            for folder, _, names in os.walk(root):
                for n in names:
                    path = os.path.join(folder, n)
                    files[os.path.relpath(path, root)] = hashlib.sha256(open(path, 'rb').read()).hexdigest()
            result[name + '@' + version] = dict(id=d.id, parents=d.get_dependency_graph().get(d.id, []),
                                                files=files, problems=d.verify_dataset_hash())
    """)  # type: ignore[return-value]


def expected(tree: dict[str, bytes], prefix: str, dest: str = "") -> dict[str, str]:
    return {os.path.join(dest, rel[len(prefix):]) if dest else rel[len(prefix):]: hashlib.sha256(data).hexdigest()
            for rel, data in tree.items() if rel.startswith(prefix)}


def test_three_datasets_built_by_an_agent_then_a_second_apply_changes_nothing(
        env: Env, agents: Callable[[str], AgentProcess], unique_name: Callable[[str], str], tmp_path: Path) -> None:
    queue = unique_name("reconcile-q")
    tree = {f"data/images/{c}/{i}.bin": blob(f"{c}{i}", 3000 + i) for c in ("cat", "dog") for i in range(4)}
    tree.update({f"data/more/{i}.bin": blob(f"more{i}", 1000) for i in range(3)})
    tree.update({f"data/texts/{i}.txt": f"line {i}\n".encode() for i in range(5)})
    tree.update({f"data/tables/t{i}.csv": f"a,b\n{i},{i * i}\n".encode() for i in range(3)})
    write_tree(env.work, dict(tree))
    p = env.project
    write_tree(env.work, {
        "manifests/images.yaml": manifest(p, "images", """\
            - version: 1.0.0
              sources: [{path: ../data/images}]
            - version: 1.1.0
              parent: 1.0.0
              remove: [dog/0.bin]
              sources: [{path: ../data/more, dest: extra}]
              publish: true
            """),
        "manifests/texts.yaml": manifest(p, "texts", """\
            - version: 1.0.0
              sources: [{path: ../data/texts}]
            """, tags="[text]"),
        "manifests/tables.yaml": manifest(p, "tables", """\
            - version: 1.0.0
              sources: [{path: ../data/tables}]
            """).replace("versions:\n", "checks:\n  - {name: columns, rule: annotations, glob: '*.csv', columns: "
                                       "[{name: a, type: int}, {name: b, type: int, min: 0}]}\n"
                                       "  - {name: rows, rule: annotations, glob: '*.csv', schema_file: row.json}\n"
                                       "versions:\n"),
        "manifests/row.json": '{"type": "object", "required": ["a", "b"]}',
    })
    repository(env, tmp_path / "remote.git")
    agent = agents(queue)

    proc = env.reconcile("apply", "--queue", queue, "--auto-approve", "manifests/", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\n--- agent\n" + agent.log_tail()
    assert "building 4 versions on queue" in proc.stdout
    assert proc.stdout.count("  built ") == 4, proc.stdout
    assert "Apply complete! " in proc.stdout

    versions = [("images", "1.0.0"), ("images", "1.1.0"), ("texts", "1.0.0"), ("tables", "1.0.0")]
    for name, version in versions:  # every version created once, each its own task run by the agent
        tasks = [t for t in dataset_tasks(env, p, name) if t["version"] == version]
        assert len(tasks) == 1, tasks
        assert tasks[0]["status"] == ("published" if version == "1.1.0" else "completed")
    ran = env.sdk(f"""
        from clearml.backend_api.session.client import APIClient
        c = APIClient()
        ids = [p.id for p in c.projects.get_all(name='^{p}/\\\\.datasets/', search_hidden=True)]
        tasks = c.tasks.get_all(project=ids, search_hidden=True, only_fields=['last_worker', 'script'])
        result = sorted({{(t.last_worker, t.script.repository, t.script.version_num, t.script.entry_point,
                           t.script.working_dir) for t in tasks}})
    """)
    head = git(env.work, "rev-parse", "HEAD").strip()  # each version's task ran this tool in the checkout
    assert ran == [[agent.worker_id, str(tmp_path / "remote.git"), head, "-m reconciler.cli agent-step", "."]]

    got = files_of(env, p, [list(v) for v in versions])  # type: ignore[arg-type]
    images = expected(tree, "data/images/")
    assert got["images@1.0.0"]["files"] == images
    assert got["images@1.1.0"]["files"] == {**{k: v for k, v in images.items() if k != "dog/0.bin"},
                                            **expected(tree, "data/more/", "extra")}
    assert got["texts@1.0.0"]["files"] == expected(tree, "data/texts/")
    assert got["tables@1.0.0"]["files"] == expected(tree, "data/tables/")
    assert got["images@1.1.0"]["parents"] == [got["images@1.0.0"]["id"]]
    assert got["images@1.0.0"]["parents"] == [] and got["texts@1.0.0"]["parents"] == []
    assert all(v["problems"] == [] for v in got.values()), got
    stored = env.sdk(f"""
        ds = Dataset.get(dataset_project={p!r}, dataset_name="tables", dataset_version="1.0.0")
        result = ds.get_metadata("checks")
    """)  # the agent's step evaluated the check again on the files it uploaded, and stored the results
    assert [(c["name"], c["status"]) for c in stored["checks"]] == [  # type: ignore[index]
        ("columns", "pass"), ("rows", "pass")]

    again = env.reconcile("apply", "--queue", queue, "--auto-approve", "manifests/")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout and "queued" not in again.stdout
    plan = env.reconcile("plan", "--detailed-exitcode", "manifests/")
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_a_source_changed_after_the_plan_fails_its_step_naming_the_file_and_the_next_apply_converges(
        env: Env, agents: Callable[[str], AgentProcess], unique_name: Callable[[str], str], tmp_path: Path) -> None:
    queue = unique_name("reconcile-q")
    shared = tmp_path / "shared"  # a folder the agents see at the same path
    write_tree(shared, {"a/1.txt": "one\n", "a/2.txt": "two\n", "b/1.txt": "uno\n"})
    p = env.project
    write_tree(env.work, {"manifests/alpha.yaml": manifest(p, "alpha", f"""\
        - version: 1.0.0
          sources: [{{path: {shared / 'a'}}}]
        - version: 1.1.0
          parent: 1.0.0
          sources: [{{path: {shared / 'b'}, dest: b}}]
        """)})
    agent = agents(queue)
    plan = env.reconcile("plan", "manifests/", "--queue", queue, "--shared-mount", str(shared), "--out", "plan.json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    (shared / "a" / "2.txt").write_text("two, edited after the plan\n")

    proc = env.reconcile("apply", "--queue", queue, "--shared-mount", str(shared), "plan.json", timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr + "\n--- agent\n" + agent.log_tail()
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert errors[0].startswith(f"error: {p}/alpha@1.0.0: the sources of {p}/alpha@1.0.0 changed since the plan: 2.txt "
                                "(planned 4 bytes"), proc.stderr
    assert f"not started because a step failed: {p}/alpha@1.1.0" in proc.stderr
    assert errors[-1].startswith("error: apply incomplete: 1 step(s) failed, 0 built")
    tasks = dataset_tasks(env, p, "alpha")
    assert [(t["version"], t["status"]) for t in tasks] == [("1.0.0", "failed")], tasks  # nothing finalized

    again = env.reconcile("apply", "--queue", queue, "--shared-mount", str(shared), "--auto-approve", "manifests/",
                          timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr + "\n--- agent\n" + agent.log_tail()
    assert f"queued {p}/alpha@1.0.0 on {queue!r} (version {tasks[0]['id']})" in again.stdout  # the draft, resumed
    after = sorted((t["version"], t["status"]) for t in dataset_tasks(env, p, "alpha"))
    assert after == [("1.0.0", "completed"), ("1.1.0", "completed")]
    got = files_of(env, p, [["alpha", "1.1.0"]])["alpha@1.1.0"]
    assert got["files"] == {"1.txt": hashlib.sha256(b"one\n").hexdigest(),
                            "2.txt": hashlib.sha256(b"two, edited after the plan\n").hexdigest(),
                            "b/1.txt": hashlib.sha256(b"uno\n").hexdigest()}
    assert env.reconcile("plan", "--detailed-exitcode", "manifests/").returncode == 0


@pytest.mark.parametrize("queue_exists", [True, False], ids=["queue-without-agent", "no-such-queue"])
def test_no_agent_on_the_queue_is_one_line_and_exit_1_within_10_seconds(
        env: Env, unique_name: Callable[[str], str], queue_exists: bool) -> None:
    queue = unique_name("reconcile-q")
    if queue_exists:
        env.sdk(f"""
            from clearml.backend_api.session.client import APIClient
            result = APIClient().queues.create(name={queue!r}).id
        """)
    write_tree(env.work, {"data/x.txt": "x\n", "manifests/xray.yaml": manifest(env.project, "xray", """\
        - version: 1.0.0
          sources: [{path: ../data}]
        """)})
    start = time.monotonic()
    proc = env.reconcile("apply", "--queue", queue, "--auto-approve", "manifests/")
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert took < 10, took
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"queue {queue!r}" in lines[0] and "start one: clearml-agent daemon --queue" in lines[0], lines
    assert dataset_tasks(env, env.project, "xray") == []  # nothing written


def test_sources_agents_cannot_see_are_refused_before_anything_is_queued(
        env: Env, agents: Callable[[str], AgentProcess], unique_name: Callable[[str], str], tmp_path: Path) -> None:
    queue = unique_name("reconcile-q")
    outside = tmp_path / "laptop-only"
    write_tree(outside, {"x.txt": "x\n"})
    write_tree(env.work, {"data/committed.txt": "c\n", "manifests/xray.yaml": manifest(env.project, "xray", f"""\
        - version: 1.0.0
          sources: [{{path: ../data}}, {{path: {outside}}}]
        """)})
    repository(env, tmp_path / "remote.git")
    write_tree(env.work, {"data/new.txt": "not committed\n"})
    agents(queue)
    proc = env.reconcile("apply", "--queue", queue, "--auto-approve", "manifests/")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 2, proc.stderr
    assert "new.txt is not committed, so agents on queue" in proc.stderr
    assert f"path source {outside}: agents on queue {queue!r} cannot see it" in proc.stderr
    assert all(line.startswith(str(Path("manifests") / "x.yaml")) or "manifests/xray.yaml" in line for line in errors)
    assert dataset_tasks(env, env.project, "xray") == []


def _two_datasets(env: Env, shared: Path) -> None:
    write_tree(shared, {"one/a.txt": "a\n", "two/b.txt": "b\n"})
    p = env.project
    write_tree(env.work, {
        "manifests/one.yaml": manifest(p, "one", f"- version: 1.0.0\n  sources: [{{path: {shared / 'one'}}}]\n"),
        "manifests/two.yaml": manifest(p, "two", f"- version: 1.0.0\n  sources: [{{path: {shared / 'two'}}}]\n"),
    })


def _the_next_apply_converges(env: Env, agents: Callable[..., AgentProcess], queue: str, shared: Path) -> None:
    """With a live agent, the next apply (the lock released: no waiting for it) builds both datasets."""
    fresh = agents(queue)
    again = env.reconcile("apply", "--queue", queue, "--shared-mount", str(shared), "--auto-approve", "manifests/",
                          "--lock-timeout", "0", timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr + "\n--- agent\n" + fresh.log_tail()
    statuses = sorted(t["status"] for n in ("one", "two") for t in dataset_tasks(env, env.project, n))
    assert statuses == ["completed", "completed"]


def _apply_until_a_step_runs(env: Env, agent: AgentProcess, *args: str
                             ) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """``apply ARGS`` started, returned once it says a step runs on an agent (its output lines keep coming)."""
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", *args], cwd=env.work, env=env.vars(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "running on agent" in line:
                running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert running.wait(120), "".join(lines) + "\n--- agent\n" + agent.log_tail()
    return proc, lines, reader


def test_ctrl_c_takes_queued_steps_off_the_queue_and_stops_running_ones(
        env: Env, agents: Callable[..., AgentProcess], unique_name: Callable[[str], str], tmp_path: Path) -> None:
    queue = unique_name("reconcile-q")
    shared = tmp_path / "shared"
    _two_datasets(env, shared)
    p = env.project
    # the agent's calls go through a proxy that holds its chunk registrations: its step stays running
    proxy = Proxy(env.server.api_url, [Rule("tasks.add_or_update_artifacts", "stall", seconds=15, times=0)]).start()
    agent = agents(queue, api_host=proxy.url)
    try:
        proc, lines, reader = _apply_until_a_step_runs(env, agent, "--queue", queue, "--shared-mount", str(shared),
                                                       "--auto-approve", "manifests/")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        reader.join(10)
        output = "".join(lines)
        assert proc.returncode == 130, output + stderr
        assert "interrupted by SIGINT; the lock is released" in stderr
        started = next(line.split(":")[0].strip() for line in lines if "running on agent" in line)
        statuses: dict[str, str] = {}
        for _ in range(60):  # the agent stops the running step: it polls the task's status
            statuses = {f"{p}/{name}@{t['version']}": t["status"]
                        for name in ("one", "two") for t in dataset_tasks(env, p, name)}
            if statuses.get(started) in ("stopped", "failed"):
                break
            time.sleep(1)
        # stopped by its agent; or, when the signal came while the agent was still setting the step up (the agent
        # marks it started again then), failed by the step itself at its first write, the lock being gone
        other = next(v for v in statuses if v != started)
        assert statuses[started] in ("stopped", "failed"), statuses
        assert statuses[other] == "created", statuses  # taken off the queue: it never started
    finally:
        agent.stop()
        proxy.stop()
    _the_next_apply_converges(env, agents, queue, shared)


def test_an_agent_killed_mid_step_fails_within_the_step_timeout_then_an_on_demand_agent_finishes_the_work(
        env: Env, agents: Callable[..., AgentProcess], unique_name: Callable[[str], str], tmp_path: Path) -> None:
    queue, on_demand = unique_name("reconcile-q"), unique_name("reconcile-od")
    shared = tmp_path / "shared"
    _two_datasets(env, shared)
    # the agent's chunk registrations never reach the server: its step is running when the agent is killed
    proxy = Proxy(env.server.api_url, [Rule("tasks.add_or_update_artifacts", "drop", times=0)]).start()
    agent = agents(queue, api_host=proxy.url)
    try:
        proc, lines, reader = _apply_until_a_step_runs(env, agent, "--queue", queue, "--shared-mount", str(shared),
                                                       "--step-timeout", "10", "--auto-approve", "manifests/")
        os.killpg(agent.proc.pid, signal.SIGKILL)  # the agent and its step die; its registration stays a while
        killed = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
        took = time.monotonic() - killed
        reader.join(10)
        assert proc.returncode == 1, "".join(lines) + stderr
        assert took < 10 + 15, took  # the step timeout, one poll, the lock release
        step = next(line.split(":")[0].strip() for line in lines if "running on agent" in line)
        assert f"{step}: the step on agent {agent.worker_id} stopped reporting" in stderr, stderr
        assert "Traceback" not in stderr
    finally:
        agent.stop()
        proxy.stop()

    # the next applies use a queue whose agents an autoscaler starts only once work is queued
    env.sdk(f"""
        from clearml.backend_api.session.client import APIClient
        result = APIClient().queues.create(name={on_demand!r}).id
    """)
    args = ("apply", "--queue", on_demand, "--shared-mount", str(shared), "--auto-approve", "--lock-timeout", "0")
    short = env.reconcile(*args, "--agent-wait", "2", "manifests/")  # the lock was released: no waiting for it
    assert short.returncode == 1, short.stdout + short.stderr
    assert f"no agent took it from queue {on_demand!r} within 2s (--agent-wait)" in short.stderr, short.stderr
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args, "--agent-wait", "300", "manifests/"],
                            cwd=env.work, env=env.vars(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(t["status"] == "queued" for n in ("one", "two") for t in dataset_tasks(env, env.project, n)):
            assert time.monotonic() < deadline and proc.poll() is None, "nothing was queued"
            time.sleep(1)
        agents(on_demand)  # the autoscaler's agent, started because work was queued
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert sorted(t["status"] for n in ("one", "two") for t in dataset_tasks(env, env.project, n)) == [
        "completed", "completed"]
