"""kill -9 at every step boundary of an apply, then the next apply converges: one version per manifest version,
bytes equal to the sources, nothing more to do. The kill comes from a proxy after the server applied the request
and before the client heard the answer (the most awkward moment), so it works the same on any server."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys

import pytest

from .helpers import Env, dataset_tasks, manifest, write_tree
from .proxy import Proxies, Rule

pytestmark = pytest.mark.integration


V1 = {f"big/part{i}.bin": random.Random(i).randbytes(700_000) for i in range(4)}  # 3+ chunks of 1 MiB
V1 |= {"small/a.txt": "alpha", "small/b.txt": "bravo"}
V2 = {"small/a.txt": "ALPHA", "new/c.txt": "charlie"}
VERSIONS = """\
- version: 1.0.0
  sources:
    - path: ../data/v1
- version: 1.1.0
  parent: 1.0.0
  sources:
    - path: ../data/v2
  publish: true
"""

# (endpoint, body substring, n-th match): the writes of an apply, in order
KILL_POINTS = [
    ("tasks.create", '"name": "things"', 1),  # the draft exists; its id never reached the client
    ("tasks.edit", '"orig_dataset_id"', 1),  # runtime of the new draft
    ("tasks.add_or_update_artifacts", '"key": "data"', 1),  # first chunk registered
    ("tasks.add_or_update_artifacts", '"key": "data_001"', 1),  # between chunks
    ("events.add_batch", "", 1),  # statistics plots
    ("tasks.add_or_update_artifacts", '"key": "statistics"', 1),
    ("tasks.edit", '"tags"', 1),  # properties
    ("tasks.add_or_update_artifacts", '"key": "metadata"', 1),
    ("tasks.add_or_update_artifacts", '"key": "state"', 1),  # the file list, before the status changes
    ("tasks.started", "", 1),
    ("tasks.completed", "", 1),  # the first version is final; the second not begun
    ("tasks.create", '"name": "things"', 2),  # the child draft
    ("tasks.publish", "", 1),
    ("projects.delete", "", 1),  # everything done, the lock not released (only the lock is a project deleted)
]


def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _setup(env: Env) -> None:
    write_tree(env.work / "data" / "v1", V1)
    write_tree(env.work / "data" / "v2", V2)
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir(exist_ok=True)
    text = manifest(env.project, "things", VERSIONS).replace(
        "versions:\n", "statistics: true\nupload: {chunk_size_mb: 1}\nversions:\n")
    m.write_text(text)


@pytest.mark.parametrize("endpoint,body,nth", KILL_POINTS, ids=[f"{e}-{b or 'any'}-{n}" for e, b, n in KILL_POINTS])
def test_kill_at_a_step_boundary_then_apply_converges(env: Env, proxies: Proxies, endpoint: str, body: str,
                                                      nth: int) -> None:
    _setup(env)
    api, vars_ = proxies.api, proxies.vars()
    proc: subprocess.Popen[str] | None = None
    api.rules.append(Rule(endpoint, "kill", body=body, nth=nth, pid=lambda: proc.pid if proc else None))
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "--auto-approve", "manifests"],
                            cwd=env.work, env=vars_, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, f"the kill point was never reached\n{out}\n{err}"
    api.rules.clear()

    assert env.reconcile("unlock", "manifests", env=vars_).returncode == 0
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 0, res.stdout + res.stderr
    live = [t for t in dataset_tasks(env, env.project, "things") if "archived" not in t["system_tags"]]
    assert sorted(t["version"] for t in live) == ["1.0.0", "1.1.0"], live  # nothing duplicated
    assert {t["version"]: t["status"] for t in live} == {"1.0.0": "completed", "1.1.0": "published"}
    got = env.sdk("""
        import hashlib, os
        result = {}
        for v in ("1.0.0", "1.1.0"):
            ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version=v)
            root = ds.get_local_copy()
            result[v] = {os.path.relpath(os.path.join(d, n), root):
                         hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest()
                         for d, _, names in os.walk(root) for n in names}
            assert ds.verify_dataset_hash() == [], v
    """, env=vars_)
    assert got == {"1.0.0": {k: _sha(v) for k, v in V1.items()},
                   "1.1.0": {k: _sha(v) for k, v in {**V1, **V2}.items()}}
    plan = env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_)
    assert plan.returncode == 0, plan.stdout + plan.stderr


def test_every_finalize_refused_means_exit_1_and_nothing_published(env: Env, proxies: Proxies) -> None:
    _setup(env)
    vars_ = proxies.vars()
    proxies.api.rules.append(Rule("tasks.completed", "fail", times=0))
    res = env.reconcile("--timeout", "3", "apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Apply complete" not in res.stdout and "Traceback" not in res.stderr
    assert f"finalize {env.project}/things@1.0.0" in res.stderr
    tasks = dataset_tasks(env, env.project, "things")
    assert tasks and all(t["status"] not in ("completed", "published") for t in tasks)
    proxies.api.rules.clear()
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 0, res.stdout + res.stderr
    assert env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_).returncode == 0


def test_failing_uploads_then_a_healthy_file_server_converge_without_manual_steps(env: Env,
                                                                                  proxies: Proxies) -> None:
    _setup(env)
    files, vars_ = proxies.files, proxies.vars()
    files.rules.append(Rule("/", "fail", method="POST", times=0))
    res = env.reconcile("--timeout", "3", "apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 1 and "stays a draft" in res.stderr, res.stdout + res.stderr
    assert "did not answer within 3s" in res.stderr or "HTTP 500" in res.stderr
    files.rules.clear()
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "discarded" in res.stdout or "resume" in res.stdout
    assert env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_).returncode == 0


def test_drafts_are_listed_and_discarded_by_the_tool(env: Env, proxies: Proxies) -> None:
    _setup(env)
    api, vars_ = proxies.api, proxies.vars()
    proc: subprocess.Popen[str] | None = None
    api.rules.append(Rule("tasks.add_or_update_artifacts", "kill", body='"key": "data"',
                          pid=lambda: proc.pid if proc else None))
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "--auto-approve", "manifests"],
                            cwd=env.work, env=vars_, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.communicate(timeout=300)
    assert proc.returncode == -9
    assert env.reconcile("unlock", "manifests", env=vars_).returncode == 0
    listed = env.reconcile("drafts", "manifests", env=vars_)
    assert listed.returncode == 0 and f"{env.project}/things@1.0.0" in listed.stdout and "1 draft;" in listed.stdout
    refused = env.reconcile("drafts", "--discard", "manifests", env=vars_)
    assert refused.returncode == 1 and refused.stderr == (  # not a terminal: no silent delete
        "error: refusing to discard 1 draft without confirmation: not a terminal; pass --auto-approve\n")
    gone = env.reconcile("drafts", "--discard", "--auto-approve", "manifests", env=vars_)
    assert gone.returncode == 0 and "Discarded 1 draft." in gone.stdout, gone.stdout + gone.stderr
    assert dataset_tasks(env, env.project, "things") == []
    assert "No drafts" in env.reconcile("drafts", "manifests", env=vars_).stdout


# the writes of an apply that adds a version and moves the alias ``production`` to it: the draft is created, its
# own properties written, it is finalized, published, then the alias is added to it (and taken off the old holder)
ALIAS_KILL_POINTS = [
    ("tasks.create", '"name": "things"', 1),
    ("tasks.edit", '"tags"', 1),
    ("tasks.add_or_update_artifacts", '"key": "state"', 1),  # the file list, before the status changes
    ("tasks.started", "", 1),
    ("tasks.completed", "", 1),
    ("tasks.publish", "", 1),
    ("tasks.edit", '"production"', 1),  # the new holder has it, the old one still too
]


def _aliased_manifest(env: Env, newest: int) -> None:
    versions = ""
    for i in range(newest + 1):
        write_tree(env.work / "data" / f"v{i}", {f"f{i}.txt": f"file {i}"})
        versions += f"- version: 1.{i}.0\n" + (f"  parent: 1.{i - 1}.0\n" if i else "") + \
            f"  publish: true\n  sources:\n    - path: ../data/v{i}\n"
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir(exist_ok=True)
    m.write_text(manifest(env.project, "things", versions).replace(
        "versions:\n", f'aliases: {{production: "1.{newest}.0"}}\nversions:\n'))


def test_a_kill_while_an_alias_moves_leaves_it_on_a_readable_version(env: Env, proxies: Proxies) -> None:
    """One dataset history for every kill point: each point adds a version that takes the alias."""
    api, vars_ = proxies.api, proxies.vars()
    _aliased_manifest(env, 0)
    assert env.reconcile("apply", "--auto-approve", "manifests", env=vars_).returncode == 0
    for n, (endpoint, body, nth) in enumerate(ALIAS_KILL_POINTS, 1):
        _aliased_manifest(env, n)
        running: list[subprocess.Popen[str]] = []
        api.rules[:] = [Rule(endpoint, "kill", body=body, nth=nth, pid=lambda r=running: r[0].pid if r else None)]
        proc = proxies.start("apply", "--auto-approve", "manifests")
        running.append(proc)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -9, f"{endpoint} {body}: the kill point was never reached\n{out}\n{err}"
        api.rules.clear()
        got = env.sdk("""
            import os
            ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_tags=["production"])
            root = ds.get_local_copy()
            result = [ds.version, sorted(os.listdir(root))]
        """, env=vars_)
        assert got in ([f"1.{n - 1}.0", [f"f{i}.txt" for i in range(n)]],
                       [f"1.{n}.0", [f"f{i}.txt" for i in range(n + 1)]]), (endpoint, body, got)
        assert env.reconcile("unlock", "manifests", env=vars_).returncode == 0
        res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
        assert res.returncode == 0, res.stdout + res.stderr
        # nothing left to do: the alias is on 1.n.0 alone (a plan shows any other holder), which is published
        plan = env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_)
        assert plan.returncode == 0, (endpoint, body, plan.stdout + plan.stderr)
    tasks = dataset_tasks(env, env.project, "things")
    holders = {t["version"]: t["status"] for t in tasks if "production" in t["tags"]}
    assert holders == {f"1.{len(ALIAS_KILL_POINTS)}.0": "published"}, holders
