"""Retention that frees storage: a chain of versions with ``keep_last``, on the file server of the test's server.

The plan names what goes and what is kept (and why); after apply the storage listing shrank by exactly the
bytes the plan said, the deleted versions are gone from the server, and the kept versions download byte-equal
from an empty cache with the oldest supported SDK and the installed one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .helpers import Env, dataset_tasks, write_tree

pytestmark = pytest.mark.integration

VERSIONS = 10
FILES = 20  # 10% of them change in every version (the 1,000-file size is in benchmarks/)


def version_files(i: int) -> dict[str, bytes]:
    """What version 1.0.i adds on its parent: all files for the first, then two changed files."""
    if i == 0:
        return {f"f{n:02d}.txt": f"file {n} first content ".encode() * (40 + n) for n in range(FILES)}
    return {f"f{n:02d}.txt": f"file {n} as of version {i} ".encode() * (50 + i) for n in range(2)}


def content(i: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k in range(i + 1):
        out.update(version_files(k))
    return out


def write_chain(env: Env, name: str, count: int, extra: str = "", version_extra: dict[int, str] | None = None
                ) -> Path:
    for i in range(count):
        write_tree(env.work / "data" / name / f"v{i}", version_files(i))  # type: ignore[arg-type]
    lines = []
    for i in range(count):
        lines.append(f"  - version: 1.0.{i}")
        if i:
            lines.append(f"    parent: 1.0.{i - 1}")
        lines.append(f"    sources: [{{path: ../data/{name}/v{i}}}]")
        lines += [f"    {x}" for x in (version_extra or {}).get(i, "").splitlines() if x]
    (env.work / "manifests").mkdir(exist_ok=True)
    path = env.work / "manifests" / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {env.project}
        name: {name}
        """) + extra + "versions:\n" + "\n".join(lines) + "\n")
    return path


def storage_listing(env: Env, name: str) -> dict[str, int]:
    """Every stored object of the dataset's versions (path -> size), listed from the file server's folder."""
    if env.server.local is not None:
        root = env.server.local.data_dir / "files"
    else:
        home = os.environ.get("CLEARML_REFERENCE_HOME")
        root = (Path(home).expanduser() if home else Path.home() / ".cache" / "clearml-reference-server")
        root = root / "run" / "fileserver-data"
    base = root / env.project / ".datasets" / name
    return {str(p.relative_to(root)): p.stat().st_size for p in base.rglob("*") if p.is_file()}


def plan_json(env: Env, *args: str) -> dict:
    res = env.reconcile("plan", "--format", "json", *args, "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def usage(env: Env) -> dict:
    res = env.reconcile("usage", "--format", "json", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


READ_BACK = """
import hashlib, json, os, sys
from clearml import Dataset
project, name = sys.argv[1], sys.argv[2]
out = {}
for version in sys.argv[3:]:
    ds = Dataset.get(dataset_project=project, dataset_name=name, dataset_version=version)
    local = ds.get_local_copy()
    out[version] = {
        "id": ds.id,
        "sha256": {os.path.relpath(os.path.join(d, f), local): hashlib.sha256(open(os.path.join(d, f), "rb").read())
                   .hexdigest() for d, _, fs in os.walk(local) for f in fs},
        "verify": ds.verify_dataset_hash(),
    }
print("@@" + json.dumps(out))
"""


def read_back(env: Env, python: Path, name: str, versions: list[str]) -> dict:
    """The versions as ``python``'s clearml reads them, from an empty cache (a fresh HOME)."""
    home = env.work / f"home-{python.parent.parent.name}-{len(versions)}"
    home.mkdir()
    sdk_env = {**env.vars(), "PYTHONPATH": "", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    proc = subprocess.run([str(python), "-c", READ_BACK, env.project, name, *versions], cwd=env.work, env=sdk_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got: dict = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    for version, seen in got.items():
        verify = subprocess.run([str(python.with_name("clearml-data")), "verify", "--id", seen["id"]], cwd=env.work,
                                env=sdk_env, capture_output=True, text=True, timeout=300)
        assert verify.returncode == 0, version + verify.stdout[-2000:] + verify.stderr[-2000:]
    return got


def sha(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def test_keep_last_frees_what_the_plan_says_and_kept_versions_still_download(
        env: Env, oldest_sdk_python: Path) -> None:
    name = "chain"
    manifest = write_chain(env, name, VERSIONS, extra="upload: {chunk_size_mb: 1}\n")
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    before = storage_listing(env, name)
    ids = {t["version"]: t["id"] for t in dataset_tasks(env, env.project, name)}

    manifest.write_text(manifest.read_text().replace(
        "versions:\n", "retention: {keep_last: 3, grace: 0}\nversions:\n"))
    plan = plan_json(env)
    entries = {e["version"]["version"]: e for e in plan["retention"]}
    assert sorted(entries) == [f"1.0.{i}" for i in range(7)]  # the 7 versions out of the policy
    # 1.0.0 holds the 18 files no later version changed: the SDK downloads it whole for the kept versions; it
    # loads the file list of every ancestor, so 1.0.1 .. 1.0.6 keep their task and file list, and free their chunk
    assert entries["1.0.0"]["stage"] == "kept" and entries["1.0.0"]["freed_bytes"] == 0
    assert "1.0.7" in " ".join(entries["1.0.0"]["reasons"])
    for i in range(1, 7):
        assert entries[f"1.0.{i}"]["stage"] == "free" and entries[f"1.0.{i}"]["freed_bytes"] > 0
        assert entries[f"1.0.{i}"]["reasons"][0].startswith("its file list (the SDK loads it while reading")
    freed = plan["freed"]["freed_bytes"]
    assert freed == sum(entries[f"1.0.{i}"]["freed_bytes"] for i in range(7)) > 0
    deletes = {a["version"]["version"]: a["whole"] for a in plan["actions"] if a["type"] == "delete_version"}
    assert deletes == {f"1.0.{i}": False for i in range(1, 7)}
    used = usage(env)
    assert used["stored_bytes"] == sum(before.values())  # to the byte: what the storage listing shows
    assert used["policy_frees_bytes"] == freed and used["archived_bytes"] == 0
    (chain_usage,) = used["datasets"]
    first = next(v for v in chain_usage["versions"] if v["version"] == "1.0.0")
    last = next(v for v in chain_usage["versions"] if v["version"] == "1.0.9")
    assert first["inherited_bytes"] == 0 and first["own_bytes"] == sum(len(b) for b in content(0).values())
    assert last["own_bytes"] == sum(len(b) for b in version_files(9).values())
    assert last["own_bytes"] + last["inherited_bytes"] == sum(len(b) for b in content(9).values())
    text = env.reconcile("plan", "manifests").stdout
    assert "of storage to free" in text and "DELETE 1 stored object of version" in text
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 2

    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    after = storage_listing(env, name)
    assert set(after) < set(before)
    assert sum(before.values()) - sum(after.values()) == freed  # to the byte: what the plan said
    tasks = {t["version"]: t for t in dataset_tasks(env, env.project, name)}
    assert sorted(v for v, t in tasks.items() if "archived" in t["system_tags"]) == [f"1.0.{i}" for i in range(7)]
    again = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert again.returncode == 0, again.stdout + again.stderr  # converged
    used = usage(env)
    assert used["stored_bytes"] == sum(after.values()) and used["policy_frees_bytes"] == 0
    assert used["archived_bytes"] == sum(size for path, size in after.items()
                                         if any(ids[f"1.0.{i}"] in path for i in range(7)))
    for fmt in ("text", "markdown"):
        shown = env.reconcile("usage", "--format", fmt, "manifests")
        assert shown.returncode == 0 and "archived" in shown.stdout and name in shown.stdout, shown.stderr

    kept = ["1.0.7", "1.0.8", "1.0.9"]
    for python in (Path(sys.executable), oldest_sdk_python):
        got = read_back(env, python, name, kept)
        for version in kept:
            assert got[version]["sha256"] == sha(content(int(version.rsplit(".", 1)[1]))), (python, version)
            assert got[version]["verify"] == [], (python, version)

    # a revert of the policy brings back the archived version with its id; the freed ones stay as they are
    manifest.write_text(manifest.read_text().replace("retention: {keep_last: 3, grace: 0}\n", ""))
    plan = plan_json(env)
    restore = [a for a in plan["actions"] if a["type"] == "restore"]
    assert [(a["version"]["version"], a["version_id"]) for a in restore] == [("1.0.0", ids["1.0.0"])]
    assert [a for a in plan["actions"] if a["type"] != "restore"] == []  # the freed ones cannot come back
    assert plan["conflicts"] == []  # and the versions on them still stand


def test_aliased_published_and_task_used_versions_are_kept_with_their_reasons(env: Env) -> None:
    name = "guarded"
    manifest = write_chain(env, name, 5, extra="aliases: {production: 1.0.0}\n", version_extra={1: "publish: true"})
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    ids = {t["version"]: t["id"] for t in dataset_tasks(env, env.project, name)}
    used = env.sdk(f"""
        from clearml import Task
        task = Task.init(project_name=PROJECT + '/training', task_name='train on guarded',
                         auto_connect_arg_parser=False, auto_resource_monitoring=False, auto_connect_frameworks=False)
        Dataset.get(dataset_id={ids["1.0.2"]!r}, alias='train')
        task.close()
        result = task.id
    """)
    manifest.write_text(manifest.read_text().replace("versions:\n", "retention: {keep_last: 1, grace: 0}\nversions:\n"))
    plan = plan_json(env)
    entries = {e["version"]["version"]: e for e in plan["retention"]}
    assert {v: e["stage"] for v, e in entries.items()} == {
        "1.0.0": "kept", "1.0.1": "kept", "1.0.2": "kept", "1.0.3": "free"}
    assert entries["1.0.0"]["reasons"] == ["holds the alias production"]
    assert entries["1.0.1"]["reasons"][0].startswith("published (the policy keeps published versions")
    assert "'train on guarded'" in entries["1.0.2"]["reasons"][0] and used in entries["1.0.2"]["reasons"][0]
    assert [(t["id"], t["name"], t["project"]) for t in entries["1.0.2"]["tasks"]] == [
        (used, "train on guarded", f"{env.project}/training")]
    assert [a["version"]["version"] for a in plan["actions"] if a["type"] == "archive"] == ["1.0.3"]
    markdown = env.reconcile("plan", "--format", "markdown", "manifests").stdout
    assert "Retention" in markdown and "holds the alias production" in markdown and "train on guarded" in markdown

    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    archived = {t["version"] for t in dataset_tasks(env, env.project, name) if "archived" in t["system_tags"]}
    assert archived == {"1.0.3"}  # the kept ones are not even archived
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0
