"""Issue acceptance for plan/apply: the real CLI and SDK against the test's server."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from .helpers import Env, dataset_tasks, manifest, write_tree

V1_FILES = {"a.txt": "alpha", "sub/b.txt": "bravo", "sub/deep/c.bin": b"\x00\x01" * 500, "old/x.txt": "x-ray"}
V2_FILES = {"a.txt": "ALPHA v2", "new/d.txt": "delta"}

VERSIONS = """\
- version: 1.0.0
  sources:
    - path: ../data/v1
- version: 1.1.0
  parent: 1.0.0
  sources:
    - path: ../data/v2
  remove: [old]
"""


def setup_project(env: Env, **kw) -> Path:
    write_tree(env.work / "data" / "v1", V1_FILES)
    write_tree(env.work / "data" / "v2", V2_FILES)
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir(exist_ok=True)
    m.write_text(manifest(env.project, "things", VERSIONS, **kw))
    return m


def download(env: Env, version: str) -> dict:
    return env.sdk(f"""
        import hashlib, os
        ds = Dataset.get(dataset_project='{env.project}', dataset_name='things', dataset_version='{version}')
        root = ds.get_local_copy()
        files = {{}}
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                files[os.path.relpath(p, root)] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
        result = dict(id=ds.id, files=files, tags=ds.tags, meta=ds.get_metadata(), parents=ds._get_parents(),
                      entries={{k: v.parent_dataset_id for k, v in ds.file_entries_dict.items()}})
    """)


def sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def test_fresh_apply_then_no_changes(env: Env):
    setup_project(env)
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Apply complete!" in res.stdout and "2 versions created" in res.stdout
    assert "results page" not in res.stdout + res.stderr  # no links that lead nowhere
    v1 = download(env, "1.0.0")
    assert v1["files"] == {k: sha(v) for k, v in V1_FILES.items()}
    assert sorted(v1["tags"]) == ["a", "b"] and v1["meta"] == {"k": 1}
    v2 = download(env, "1.1.0")
    expected = {**{k: sha(v) for k, v in V1_FILES.items() if not k.startswith("old/")},
                **{k: sha(v) for k, v in V2_FILES.items()}}
    assert v2["files"] == expected
    assert v2["parents"] == [v1["id"]]
    plan = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes" in plan.stdout


def test_only_tags_and_metadata_change(env: Env):
    m = setup_project(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    m.write_text(manifest(env.project, "things", VERSIONS, tags="[a, c]", metadata="{k: 2, extra: true}"))
    plan = env.reconcile("plan", "--format", "json", "--detailed-exitcode", "manifests")
    assert plan.returncode == 2, plan.stderr
    data = json.loads(plan.stdout)
    assert {a["type"] for a in data["actions"]} == {"set_properties"}
    changes = {(c["field"], c["path"], c["change"]) for a in data["actions"] for c in a["changes"]}
    assert changes == {("tags", "tags", "added"), ("tags", "tags", "removed"), ("metadata", "metadata['k']", "changed"),
                       ("metadata", "metadata['extra']", "added")}
    assert data["summary"]["upload_files"] == 0
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stderr
    assert "0 files uploaded" in res.stdout
    v2 = download(env, "1.1.0")
    assert sorted(v2["tags"]) == ["a", "c"] and v2["meta"] == {"k": 2, "extra": True}
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0


@pytest.mark.embedded_only  # counts requests with the embedded server's hook
def test_a_metadata_change_uploads_no_data_chunk(env: Env):
    m = setup_project(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    m.write_text(manifest(env.project, "things", VERSIONS, metadata="{k: 2}"))
    server = env.server.local
    assert server is not None
    server.stats.reset()
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stderr
    assert server.stats.snapshot()["files.upload"] <= 2  # the two metadata artifacts, no data chunk


def test_new_version_uploads_only_the_delta(env: Env):
    m = setup_project(env)
    first_only = VERSIONS.split("- version: 1.1.0")[0]
    m.write_text(manifest(env.project, "things", first_only))
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    m.write_text(manifest(env.project, "things", VERSIONS))
    plan = env.json("plan", "--format", "json", "manifests")
    sync = [a for a in plan["actions"] if a["type"] == "sync_files"]
    assert len(sync) == 1 and sync[0]["address"] == f"{env.project}/things@1.1.0"
    assert [f["path"] for f in sync[0]["upload"]] == ["a.txt", "new/d.txt"]
    assert sync[0]["remove"] == ["old/x.txt"]
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stderr
    assert "2 files uploaded" in res.stdout
    v1, v2 = download(env, "1.0.0"), download(env, "1.1.0")
    owners = v2["entries"]
    assert owners["a.txt"] == v2["id"] and owners["new/d.txt"] == v2["id"]
    assert owners["sub/b.txt"] == v1["id"] and owners["sub/deep/c.bin"] == v1["id"]


def test_changed_finalized_content_is_a_conflict(env: Env):
    setup_project(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    before = dataset_tasks(env, env.project, "things")
    (env.work / "data" / "v1" / "sub" / "b.txt").write_text("changed!")
    plan = env.reconcile("plan", "manifests")
    assert plan.returncode == 1
    assert f"{env.project}/things@1.0.0" in plan.stdout and "sub/b.txt (modified)" in plan.stdout
    assert "add a new version" in plan.stdout
    assert "conflicts" in plan.stderr and "Traceback" not in plan.stderr
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 1 and "nothing was applied" in res.stderr
    assert dataset_tasks(env, env.project, "things") == before


@pytest.mark.embedded_only  # injects upload failures with the embedded server's hook
def test_failed_upload_leaves_a_draft_that_the_next_apply_resumes(env: Env):
    setup_project(env)
    server = env.server.local
    assert server is not None
    server.faults.fail_file_uploads_after = 0  # the first data chunk never arrives
    res = env.reconcile("--timeout", "3", "apply", "--auto-approve", "manifests")
    assert res.returncode == 1, res.stdout
    assert "Traceback" not in res.stderr and "stays a draft" in res.stderr
    assert "stays a draft" not in res.stdout  # said once, as the error
    assert f"not applied because a parent failed: {env.project}/things@1.1.0" in res.stderr
    tasks = dataset_tasks(env, env.project, "things")
    assert tasks and all(t["status"] not in ("completed", "published") for t in tasks)
    server.faults.fail_file_uploads_after = None
    plan = env.reconcile("plan", "manifests")
    assert "resume draft" in plan.stdout, plan.stdout
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    tasks = dataset_tasks(env, env.project, "things")
    assert sorted(t["version"] for t in tasks) == ["1.0.0", "1.1.0"]  # no duplicate
    assert all(t["status"] == "completed" for t in tasks)
    assert download(env, "1.0.0")["files"] == {k: sha(v) for k, v in V1_FILES.items()}


def test_stale_saved_plan_is_refused(env: Env):
    m = setup_project(env)
    assert env.reconcile("plan", "--out", "plan.json", "manifests").returncode == 0
    saved = json.loads((env.work / "plan.json").read_text())
    assert saved["format_version"] == 2
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    res = env.reconcile("apply", "--auto-approve", "plan.json")
    assert res.returncode == 1 and "stale" in res.stderr
    m.write_text(manifest(env.project, "things", VERSIONS, tags="[z]"))
    assert env.reconcile("plan", "--out", "plan2.json", "manifests").returncode == 0
    res = env.reconcile("apply", "--auto-approve", "plan2.json")
    assert res.returncode == 0, res.stderr
    assert sorted(download(env, "1.1.0")["tags"]) == ["z"]


def test_concurrent_applies_create_each_version_once(env: Env):
    setup_project(env)
    results = []

    def run() -> None:
        results.append(env.reconcile("apply", "--auto-approve", "--lock-timeout", "120", "manifests"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    created = sorted(r.stdout.count(f"  created {env.project}/things@") for r in results)
    assert created == [0, 2]
    tasks = dataset_tasks(env, env.project, "things")
    assert sorted(t["version"] for t in tasks) == ["1.0.0", "1.1.0"]


def test_apply_refuses_to_run_unattended_without_auto_approve(env: Env):
    setup_project(env)
    res = env.reconcile("apply", "manifests")
    assert res.returncode == 1 and "--auto-approve" in res.stderr
    assert dataset_tasks(env, env.project, "things") == []


def test_unlock_breaks_a_stale_lock(env: Env):
    setup_project(env)
    owner = f"crashed-{env.project}"
    env.sdk(f"""
        import hashlib, json, time
        from clearml.backend_api.session.client import APIClient
        name = '.reconciler-lock-' + hashlib.sha256({env.project!r}.encode()).hexdigest()[:16]
        APIClient().projects.create(name=name, system_tags=['hidden'], description=json.dumps(  # a crashed run's
            {{'project': {env.project!r}, 'owner': {owner!r}, 'expires': time.time() + 3600}}))
        result = 1
    """)
    try:
        res = env.reconcile("apply", "--auto-approve", "--lock-timeout", "0", "manifests")
        assert res.returncode == 1 and "reconcile unlock" in res.stderr and owner in res.stderr
        res = env.reconcile("unlock", "manifests")  # only this project's lock: the server is shared
        assert res.returncode == 0 and owner in res.stdout and env.project in res.stdout
    finally:  # a lock left behind would stop every apply on the server for an hour
        env.sdk(f"""
            import json
            from clearml.backend_api.session.client import APIClient
            client = APIClient()
            for p in client.projects.get_all(name='^.reconciler-lock-', search_hidden=True):
                if json.loads(p.description or '{{}}').get('owner') == {owner!r}:
                    client.projects.delete(project=p.id, force=True)
            result = 1
        """)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0


def test_prune_archives_only_what_no_manifest_names(env: Env):
    m = setup_project(env)
    extra = env.work / "manifests" / "extra.yaml"
    extra.write_text(manifest(env.project, "leftover", """\
        - version: 1.0.0
          sources:
            - path: ../data/v2
        """))
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    extra.unlink()
    m.write_text(manifest(env.project, "things", VERSIONS.split("- version: 1.1.0")[0]))
    plan = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # without --prune nothing changes...
    assert f"{env.project}/things@1.1.0" in plan.stdout and "in no manifest" in plan.stdout  # ...but it is reported
    pruned = env.json("plan", "--prune", "--format", "json", "manifests")
    archived = sorted(a["address"] for a in pruned["actions"] if a["type"] == "archive")
    assert archived == [f"{env.project}/leftover@1.0.0", f"{env.project}/things@1.1.0"]  # this project only
    assert pruned["projects"] == [env.project]
    res = env.reconcile("apply", "--prune", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Prune scope: {env.project}" in res.stdout
    tasks = {t["version"]: t for t in dataset_tasks(env, env.project, "things")}
    assert "archived" in tasks["1.1.0"]["system_tags"] and "archived" not in tasks["1.0.0"]["system_tags"]
    assert all("archived" in t["system_tags"] for t in dataset_tasks(env, env.project, "leftover"))
    assert env.reconcile("plan", "--prune", "--detailed-exitcode", "manifests").returncode == 0
    m.write_text(manifest(env.project, "things", VERSIONS))  # a git revert brings 1.1.0 back: restored, same id
    plan = env.reconcile("plan", "manifests")
    assert "restore archived version" in plan.stdout, plan.stdout
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    after = {t["version"]: t for t in dataset_tasks(env, env.project, "things")}
    assert sorted(after) == ["1.0.0", "1.1.0"] and after["1.1.0"]["id"] == tasks["1.1.0"]["id"]
    assert "archived" not in after["1.1.0"]["system_tags"]


def test_prune_from_one_repository_never_touches_another(env: Env):
    other = f"{env.project}-other"
    write_tree(env.work / "data" / "v1", V1_FILES)
    for project, folder in ((env.project, "mine"), (other, "theirs")):
        (env.work / folder).mkdir()
        (env.work / folder / "ds.yaml").write_text(manifest(project, "things", VERSIONS.split("- version: 1.1.0")[0]
                                                            .replace("../data/v1", "../data/v1")))
        assert env.reconcile("apply", "--auto-approve", folder).returncode == 0
    (env.work / "mine" / "ds.yaml").write_text(manifest(env.project, "renamed", VERSIONS.split("- version: 1.1.0")[0]))
    for folder, project in (("mine", env.project), ("theirs", other)):
        res = env.reconcile("apply", "--prune", "--auto-approve", folder)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"Prune scope: {project} " in res.stdout or "No changes" in res.stdout
    theirs = dataset_tasks(env, other, "things")
    assert theirs and all("archived" not in t["system_tags"] for t in theirs)  # the other repository's: untouched
    mine = dataset_tasks(env, env.project, "things")
    assert mine and all("archived" in t["system_tags"] for t in mine)


def test_a_target_that_matches_nothing_is_an_error_with_close_matches(env: Env):
    setup_project(env)
    for typo, hint in ((f"{env.project}/thingz", f"did you mean '{env.project}/things'"),
                       (f"{env.project}/things@7.0.0", "matches no dataset or version"), ("things", "")):
        res = env.reconcile("plan", "--target", typo, "manifests")
        assert res.returncode == 1, res.stdout + res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "--target" in res.stderr and hint in res.stderr
        assert res.stdout == ""  # nothing was planned


def test_publish_false_on_a_published_version_is_a_conflict_with_a_hint(env: Env):
    m = setup_project(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    m.write_text(manifest(env.project, "things", VERSIONS + "  publish: true\n"))
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    m.write_text(manifest(env.project, "things", VERSIONS))
    plan = env.reconcile("plan", "manifests")
    assert plan.returncode == 1 and "publish: false" in plan.stdout and "cannot unpublish" in plan.stdout
