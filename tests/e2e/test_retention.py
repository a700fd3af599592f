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
from .proxy import Proxies, Rule

pytestmark = pytest.mark.integration

VERSIONS = 10
FILES = 1000
CHANGED = FILES // 10  # 10% of them change in every version


def version_files(i: int) -> dict[str, bytes]:
    """What version 1.0.i adds on its parent: all files for the first, then the same tenth of them changed."""
    if i == 0:
        return {f"f{n:04d}.txt": f"file {n} first content ".encode() * (4 + n % 8) for n in range(FILES)}
    return {f"f{n:04d}.txt": f"file {n} as of version {i} ".encode() * (5 + i) for n in range(CHANGED)}


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


def read_back(env: Env, python: Path, name: str, versions: list[str], vars_: dict[str, str] | None = None) -> dict:
    """The versions as ``python``'s clearml reads them, from an empty cache (a fresh HOME)."""
    home = env.work / f"home-{name}-{python.parent.parent.name}-{len(versions)}"
    home.mkdir()
    sdk_env = {**(vars_ or env.vars()), "PYTHONPATH": "", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    proc = subprocess.run([str(python), "-c", READ_BACK, env.project, name, *versions], cwd=env.work, env=sdk_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got: dict = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    for version, seen in sorted(got.items())[-1:]:  # clearml-data verify of the newest (the CLI, as users run it)
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
    # 1.0.0 holds the 900 files no later version changed: the SDK downloads it whole for the kept versions; it
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


# kill -9 points of retention applies, one per step of a shrinking keep_last over pairs of versions (an even one is
# a root, the odd one after it is built on it and changes all its files): retiring an even version frees its chunk
# (its child still loads its file list), retiring an odd one deletes it whole, and its freed parent with it
RETENTION_KILL_POINTS: list[tuple[str, str, str, int]] = [
    ("api", "tasks.edit", '"expired_at"', 1),  # the time recorded, not archived yet
    ("api", "tasks.archive", "", 1),
    ("files", "DELETE", "", 1),  # the first object gone
    ("files", "DELETE", "", 2),
    ("api", "tasks.edit", '"freed"', 1),  # the objects gone, the record not written
    ("api", "tasks.delete", "", 1),  # the objects gone, the task deleted, the answer lost
    ("files", "HEAD", "", 1),  # checking the objects are gone
    ("api", "tasks.delete", "", 2),
    ("api", "tasks.edit", '"expired_at"', 2),  # archiving (the record of this tool's archive)
    ("api", "projects.delete", "", 1),  # everything done, the lock not released
]
PAIRS = len(RETENTION_KILL_POINTS) + 1


def _pairs_manifest(env: Env, keep: int) -> None:
    lines = []
    for i in range(PAIRS):
        write_tree(env.work / "data" / "pairs" / f"v{i}", _pair_content(i))  # type: ignore[arg-type]
        lines += [f"  - version: 1.0.{i}", *([f"    parent: 1.0.{i - 1}"] if i % 2 else []),
                  f"    sources: [{{path: ../data/pairs/v{i}}}]"]
    (env.work / "manifests").mkdir(exist_ok=True)
    (env.work / "manifests" / "pairs.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {env.project}
        name: pairs
        """) + (f"retention: {{keep_last: {keep}, grace: 0}}\n" if keep < PAIRS else "")
        + "versions:\n" + "\n".join(lines) + "\n")


def _pair_content(i: int) -> dict[str, str]:
    """Version i's files: an odd version changes every file of its parent (so it reads none of its chunks)."""
    return {f"p{i - i % 2}.txt": f"pair file {i} " * 20, "shared.txt": f"{i}"}


def test_kill_at_any_point_of_a_retention_apply_leaves_kept_versions_readable_and_converges(
        env: Env, proxies: Proxies) -> None:
    vars_ = proxies.vars()
    _pairs_manifest(env, PAIRS)
    assert env.reconcile("apply", "--auto-approve", "manifests", env=vars_).returncode == 0
    for n, (side, where, body, nth) in enumerate(RETENTION_KILL_POINTS, 1):
        _pairs_manifest(env, PAIRS - n)  # retires version 1.0.<n-1>
        running: list[subprocess.Popen[str]] = []
        proxy = proxies.api if side == "api" else proxies.files
        pid = lambda r=running: r[0].pid if r else None  # noqa: E731
        proxy.rules[:] = [Rule(where, "kill", body=body, nth=nth, pid=pid) if side == "api"
                          else Rule("/", "kill", method=where, nth=nth, pid=pid)]
        proc = proxies.start("apply", "--auto-approve", "--lock-ttl", "3", "manifests")  # its lock soon expires
        running.append(proc)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -9, f"{where} {body} {nth}: the kill point was never reached\n{out}\n{err}"
        proxy.rules.clear()
        oldest_kept = [f"1.0.{n}"]  # the one the retired version's objects are nearest to
        got = env.sdk(f"""
            import hashlib, os
            result = {{}}
            for v in {oldest_kept!r}:
                ds = Dataset.get(dataset_project=PROJECT, dataset_name="pairs", dataset_version=v)
                root = ds.get_local_copy()
                result[v] = {{os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f)).read()
                             for d, _, fs in os.walk(root) for f in fs}}
                assert ds.verify_dataset_hash() == [], v
        """, env=vars_)
        assert got == {v: _pair_content(int(v.rsplit(".", 1)[1])) for v in oldest_kept}, (where, body, nth)
        res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)  # waits for the lock to expire
        assert res.returncode == 0, res.stdout + res.stderr
    plan = env.reconcile("plan", "--detailed-exitcode", "--format", "json", "manifests", env=vars_)
    assert plan.returncode == 0, plan.stdout + plan.stderr  # converged
    versions = {t["version"] for t in dataset_tasks(env, env.project, "pairs")}
    # every retired version is gone whole at last (1.0.9 and its freed parent 1.0.8 in the last step)
    assert versions == {"1.0.10"}, versions


def test_retention_frees_s3_storage_by_what_the_plan_says(
        env: Env, moto_endpoint: str, tmp_path: Path, oldest_sdk_python: Path) -> None:
    import boto3

    hostport = moto_endpoint.removeprefix("http://")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    bucket = f"ret-{env.project.lower()}"[:60]
    s3.create_bucket(Bucket=bucket)
    config = tmp_path / "clearml.conf"
    config.write_text(json.dumps({"sdk": {"aws": {"s3": {"credentials": [{
        "host": hostport, "bucket": bucket, "key": "testing", "secret": "testing", "secure": False,
        "multipart": False, "region": "us-east-1"}]}}}}))
    vars_ = {**env.vars(), "CLEARML_CONFIG_FILE": str(config)}

    def listing() -> dict[str, int]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="store/")
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    name = "on-s3"
    manifest = write_chain(env, name, VERSIONS, extra=f"storage: s3://{hostport}/{bucket}/store\n")
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 0, res.stdout + res.stderr
    before = listing()
    manifest.write_text(manifest.read_text().replace("versions:\n", "retention: {keep_last: 3, grace: 0}\nversions:\n"))
    plan = env.reconcile("plan", "--format", "json", "manifests", env=vars_)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert sorted(e["version"]["version"] for e in planned["retention"]) == [f"1.0.{i}" for i in range(7)]
    freed = planned["freed"]["freed_bytes"]
    used = env.json("usage", "--format", "json", "manifests", env=vars_)
    assert used["stored_bytes"] == sum(before.values()) and used["policy_frees_bytes"] == freed > 0
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 0, res.stdout + res.stderr
    after = listing()
    assert sum(before.values()) - sum(after.values()) == freed and set(after) < set(before)
    assert env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_).returncode == 0
    kept = ["1.0.7", "1.0.8", "1.0.9"]
    for python in (Path(sys.executable), oldest_sdk_python):
        got = read_back(env, python, name, kept, vars_)
        for version in kept:
            assert got[version]["sha256"] == sha(content(int(version.rsplit(".", 1)[1]))), (python, version)
            assert got[version]["verify"] == [], (python, version)


SDK_LINEAGE = """
import json, sys
from clearml import Dataset
project, name = sys.argv[1], sys.argv[2]
print("@@" + json.dumps({v: Dataset.get(dataset_project=project, dataset_name=name, dataset_version=v)
                         .get_dependency_graph() for v in sys.argv[3:]}))
"""


def test_rehome_frees_the_whole_lineage_below_the_oldest_kept_version_and_the_sdks_still_read_it(
        env: Env, oldest_sdk_python: Path) -> None:
    name = "rehomed"
    manifest = write_chain(env, name, VERSIONS)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    before = storage_listing(env, name)
    ids = {t["version"]: t["id"] for t in dataset_tasks(env, env.project, name)}
    manifest.write_text(manifest.read_text().replace(
        "versions:\n", "retention: {keep_last: 3, grace: 0, rehome: true}\nversions:\n"))

    plan = plan_json(env)
    (rehome,) = [a for a in plan["actions"] if a["type"] == "rehome_version"]
    inherited = {k: v for k, v in content(7).items() if k not in version_files(7)}  # the 900 files 1.0.0 stored
    assert (rehome["version"]["version"], rehome["version_id"]) == ("1.0.7", ids["1.0.7"])
    assert rehome["files"] == len(inherited) == FILES - CHANGED
    assert rehome["copy_bytes"] == sum(map(len, inherited.values()))
    assert [(r["version"], r["version_id"]) for r in rehome["rewrites"]] == [("1.0.8", ids["1.0.8"]),
                                                                             ("1.0.9", ids["1.0.9"])]
    assert rehome["detached"] == sorted(ids[f"1.0.{i}"] for i in range(7))
    replaced = {o["uri"].split(env.project, 1)[1] for o in rehome["replaced"]}
    assert len(replaced) == 3 and all(ids[f"1.0.{i}"] in " ".join(replaced) for i in (7, 8, 9))
    entries = {e["version"]["version"]: e for e in plan["retention"]}
    assert {v: e["stage"] for v, e in entries.items()} == {f"1.0.{i}": "delete" for i in range(7)}  # whole
    deletes = [a for a in plan["actions"] if a["type"] == "delete_version"]
    assert all(a["whole"] for a in deletes) and len(deletes) == 7
    order = [a["type"] for a in plan["actions"]]
    assert order.index("rehome_version") < order.index("delete_version")  # copied and read back first
    gone_bytes = sum(a["freed_bytes"] for a in deletes) + rehome["freed_bytes"]
    assert plan["freed"]["freed_bytes"] == gone_bytes and plan["freed"]["rehome_bytes"] == rehome["copy_bytes"]
    text = env.reconcile("plan", "manifests").stdout
    assert "RE-HOME version" in text and "no longer in their lineage" in text and "of files to copy" in text

    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "re-homed" in res.stdout + res.stderr
    after = storage_listing(env, name)
    removed, added = set(before) - set(after), set(after) - set(before)
    assert sum(before[p] for p in removed) == gone_bytes  # to the byte: what the plan said goes
    # what came: the new chunk of 1.0.7 and the three rewritten file lists, no more
    assert sorted(p.rsplit("/", 2)[-2] for p in added) == ["data_001", "state", "state", "state"]
    kept_tasks = {t["version"]: t for t in dataset_tasks(env, env.project, name)}
    assert sorted(kept_tasks) == ["1.0.7", "1.0.8", "1.0.9"]  # the others are gone whole, tasks included
    assert not [p for p in after if any(ids[f"1.0.{i}"] in p for i in range(7))]
    used = usage(env)
    assert used["stored_bytes"] == sum(after.values())  # usage agrees with the listing to the byte
    again = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert again.returncode == 0, again.stdout + again.stderr  # converged

    kept = ["1.0.7", "1.0.8", "1.0.9"]
    for python in (Path(sys.executable), oldest_sdk_python):
        got = read_back(env, python, name, kept)
        for version in kept:
            assert got[version]["id"] == ids[version]  # ids do not change
            assert got[version]["sha256"] == sha(content(int(version.rsplit(".", 1)[1]))), (python, version)
            assert got[version]["verify"] == [], (python, version)
    home = env.work / "home-lineage"
    home.mkdir()
    proc = subprocess.run([sys.executable, "-c", SDK_LINEAGE, env.project, name, *kept], cwd=env.work, text=True,
                          env={**env.vars(), "PYTHONPATH": "", "HOME": str(home)}, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    graphs = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:])
    assert graphs["1.0.7"] == {ids["1.0.7"]: []}  # what changes for consumers pinned to ids: no parents
    for version in ("1.0.8", "1.0.9"):  # their lineage stops at 1.0.7
        named = set(graphs[version]) | {p for parents in graphs[version].values() for p in parents}
        assert ids["1.0.7"] in named and not named & {ids[f"1.0.{i}"] for i in range(7)}, graphs


def test_rehome_on_s3_frees_what_the_plan_says_and_both_sdks_read_the_kept_versions(
        env: Env, moto_endpoint: str, tmp_path: Path, oldest_sdk_python: Path) -> None:
    import boto3

    hostport = moto_endpoint.removeprefix("http://")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    bucket = f"rh-{env.project.lower()}"[:60]
    s3.create_bucket(Bucket=bucket)
    config = tmp_path / "clearml.conf"
    config.write_text(json.dumps({"sdk": {"aws": {"s3": {"credentials": [{
        "host": hostport, "bucket": bucket, "key": "testing", "secret": "testing", "secure": False,
        "multipart": False, "region": "us-east-1"}]}}}}))
    vars_ = {**env.vars(), "CLEARML_CONFIG_FILE": str(config)}

    def listing() -> dict[str, int]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="store/")
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    name = "rehomed-s3"
    manifest = write_chain(env, name, 5, extra=f"storage: s3://{hostport}/{bucket}/store\n")
    assert env.reconcile("apply", "--auto-approve", "manifests", env=vars_).returncode == 0
    before = listing()
    ids = {t["version"]: t["id"] for t in dataset_tasks(env, env.project, name)}
    manifest.write_text(manifest.read_text().replace(
        "versions:\n", "retention: {keep_last: 2, grace: 0, rehome: true}\nversions:\n"))
    plan = env.reconcile("plan", "--format", "json", "manifests", env=vars_)
    assert plan.returncode == 0, plan.stderr
    actions = json.loads(plan.stdout)["actions"]
    (rehome,) = [a for a in actions if a["type"] == "rehome_version"]
    assert rehome["version"]["version"] == "1.0.3" and rehome["files"] == FILES - CHANGED
    gone = sum(a["freed_bytes"] for a in actions if a["type"] in ("delete_version", "rehome_version"))
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 0, res.stdout + res.stderr
    after = listing()
    assert sum(before[k] for k in set(before) - set(after)) == gone  # to the byte: what the plan said goes
    assert sorted(k.rsplit("/", 2)[-2] for k in set(after) - set(before)) == ["data_001", "state", "state"]
    assert not [k for k in after if any(ids[f"1.0.{i}"] in k for i in range(3))]
    used = env.json("usage", "--format", "json", "manifests", env=vars_)
    assert used["stored_bytes"] == sum(after.values())
    assert env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_).returncode == 0
    for python in (Path(sys.executable), oldest_sdk_python):
        got = read_back(env, python, name, ["1.0.3", "1.0.4"], vars_)
        for version in ("1.0.3", "1.0.4"):
            assert got[version]["sha256"] == sha(content(int(version[-1]))), (python, version)
            assert got[version]["verify"] == [], (python, version)


# kill -9 points of a re-home, one per step of a shrinking keep_last over a chain whose every version changes one
# file: each step re-homes the next version (it inherits from the one re-homed the step before) and rewrites the
# versions on it, then deletes the one before it whole
REHOME_KILL_POINTS: list[tuple[str, str, str, int]] = [
    ("files", "POST", "", 2),  # its new chunk and file list stored, the version not switched yet
    ("api", "tasks.edit", '"rehomed_from"', 1),  # switched, the answer lost
    ("files", "DELETE", "", 1),  # the file list it replaced deleted, the answer lost
    ("files", "POST", "", 3),  # a version built on it: its new file list stored
    ("api", "tasks.edit", '"replaced"', 2),  # that version switched, the answer lost
    ("api", "tasks.delete", "", 1),  # the version below it deleted, the answer lost
]
HOPS = len(REHOME_KILL_POINTS) + 2


def _hops_manifest(env: Env, keep: int) -> None:
    lines = []
    for i in range(HOPS):
        write_tree(env.work / "data" / "hops" / f"v{i}", _hop_files(i))  # type: ignore[arg-type]
        lines += [f"  - version: 1.0.{i}", *([f"    parent: 1.0.{i - 1}"] if i else []),
                  f"    sources: [{{path: ../data/hops/v{i}}}]"]
    (env.work / "manifests").mkdir(exist_ok=True)
    (env.work / "manifests" / "hops.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {env.project}
        name: hops
        """) + (f"retention: {{keep_last: {keep}, grace: 0, rehome: true}}\n" if keep < HOPS else "")
        + "versions:\n" + "\n".join(lines) + "\n")


def _hop_files(i: int) -> dict[str, str]:
    return {f"h{n}.txt": f"hop file {n} " * 30 for n in range(4)} if i == 0 else {f"h{i % 4}.txt": f"hop {i} " * 25}


def _hop_content(i: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for k in range(i + 1):
        out.update(_hop_files(k))
    return out


def test_kill_at_any_point_of_a_rehome_leaves_kept_versions_readable_and_converges(
        env: Env, proxies: Proxies) -> None:
    vars_ = proxies.vars()
    _hops_manifest(env, HOPS)
    assert env.reconcile("apply", "--auto-approve", "manifests", env=vars_).returncode == 0
    for n, (side, where, body, nth) in enumerate(REHOME_KILL_POINTS, 1):
        _hops_manifest(env, HOPS - n)  # keeps 1.0.<n> ..: re-homes 1.0.<n>, deletes 1.0.<n-1>
        running: list[subprocess.Popen[str]] = []
        proxy = proxies.api if side == "api" else proxies.files
        pid = lambda r=running: r[0].pid if r else None  # noqa: E731
        proxy.rules[:] = [Rule(where, "kill", body=body, nth=nth, pid=pid) if side == "api"
                          else Rule("/", "kill", method=where, nth=nth, pid=pid)]
        proc = proxies.start("apply", "--auto-approve", "--lock-ttl", "3", "manifests")
        running.append(proc)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -9, f"{where} {body} {nth}: the kill point was never reached\n{out}\n{err}"
        proxy.rules.clear()
        kept = [f"1.0.{n}", f"1.0.{HOPS - 1}"]  # the one being re-homed and the newest, built on it
        got = env.sdk(f"""
            import os
            result = {{}}
            for v in {kept!r}:
                ds = Dataset.get(dataset_project=PROJECT, dataset_name="hops", dataset_version=v)
                root = ds.get_local_copy()
                result[v] = {{os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f)).read()
                             for d, _, fs in os.walk(root) for f in fs}}
                assert ds.verify_dataset_hash() == [], v
        """, env=vars_)
        assert got == {v: _hop_content(int(v.rsplit(".", 1)[1])) for v in kept}, (where, body, nth)
        res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)  # waits for the lock to expire
        assert res.returncode == 0, res.stdout + res.stderr
    again = env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_)
    assert again.returncode == 0, again.stdout + again.stderr  # converged
    versions = {t["version"] for t in dataset_tasks(env, env.project, "hops")}
    assert versions == {f"1.0.{i}" for i in range(len(REHOME_KILL_POINTS), HOPS)}, versions
