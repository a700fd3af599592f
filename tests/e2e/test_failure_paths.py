"""When things go wrong around a version: a create answered after another run finished the version, lost answers
to state changes. Real processes and the real SDK, faults from the proxies (same on both servers)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from .helpers import Env, dataset_tasks, manifest, write_tree
from .proxy import Proxies, Rule

pytestmark = pytest.mark.integration

VERSIONS = """\
- version: 1.0.0
  sources:
    - path: ../data/v1
- version: 1.1.0
  parent: 1.0.0
  publish: true
  sources:
    - path: ../data/v2
"""


def _setup(env: Env) -> None:
    write_tree(env.work / "data" / "v1", {"a.txt": "alpha", "sub/b.txt": "bravo"})
    write_tree(env.work / "data" / "v2", {"c.txt": "charlie"})
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir(exist_ok=True)
    m.write_text(manifest(env.project, "things", VERSIONS))


def _live(env: Env) -> list[tuple[str, str]]:
    return sorted((t["version"], t["status"]) for t in dataset_tasks(env, env.project, "things")
                  if "archived" not in t["system_tags"])


def _wait(condition, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_create_held_past_the_lease_leaves_a_stray_draft_the_next_apply_discards(env: Env,
                                                                                  proxies: Proxies) -> None:
    _setup(env)
    vars_ = proxies.vars()
    held = Rule("tasks.create", "hold", body='"name": "things"')
    proxies.api.rules.append(held)
    paused = proxies.start("apply", "--auto-approve", "--lock-ttl", "4", "manifests")
    try:
        _wait(lambda: held.fired, "the first apply never sent its create")
        os.kill(paused.pid, signal.SIGSTOP)  # the laptop sleeps with the create on the wire
        other = env.reconcile("apply", "--auto-approve", "--lock-timeout", "60", "manifests", env=vars_)
        assert other.returncode == 0, other.stdout + other.stderr
        held.release.set()  # the held create reaches the server now, after the version was finalized
        _wait(held.passed.is_set, "the held create never went through")
    finally:
        held.release.set()
        paused.send_signal(signal.SIGCONT)
    out, err = paused.communicate(timeout=120)
    assert paused.returncode == 1 and "lost the apply lock" in err, out + err
    assert _live(env) == [("1.0.0", "completed"), ("1.0.0", "created"), ("1.1.0", "published")]

    plan = env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "discard draft" in plan.stdout and "stray copy of this finalized version" in plan.stdout
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert res.returncode == 0 and "discard stray draft" in res.stdout, res.stdout + res.stderr
    assert _live(env) == [("1.0.0", "completed"), ("1.1.0", "published")]
    got = env.sdk("""
        import os
        ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version="1.0.0")
        result = sorted(os.path.relpath(os.path.join(d, n), ds.get_local_copy())
                        for d, _, names in os.walk(ds.get_local_copy()) for n in names)
    """, env=vars_)
    assert got == ["a.txt", "sub/b.txt"]
    assert env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_).returncode == 0


def test_lost_answers_to_state_changes_are_read_back_not_failed(env: Env, proxies: Proxies) -> None:
    """The server applies the change, the answer is lost; the retry is refused (already done): apply reads the
    state back and goes on."""
    _setup(env)
    vars_ = proxies.vars()
    for endpoint in ("tasks.started", "tasks.completed", "tasks.publish"):
        proxies.api.rules.append(Rule(endpoint, "kill"))  # no process to kill: only the answer is lost
    res = env.reconcile("apply", "--auto-approve", "manifests", env=vars_)
    assert all(r.fired for r in proxies.api.rules), proxies.api.rules
    assert res.returncode == 0, res.stdout + res.stderr
    assert _live(env) == [("1.0.0", "completed"), ("1.1.0", "published")]
    assert env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_).returncode == 0


def test_a_corrupt_content_summary_in_the_hash_cache_is_dropped_and_the_same_apply_converges(env: Env) -> None:
    import hashlib
    import sqlite3

    _setup(env)
    first = VERSIONS.split("- version: 1.1")[0]
    (env.work / "manifests" / "ds.yaml").write_text(manifest(env.project, "things", first))
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    (env.work / "manifests" / "ds.yaml").write_text(manifest(env.project, "things", VERSIONS))
    assert env.reconcile("plan", "manifests").returncode == 0  # remembers what 1.1.0's sources come to
    db = env.home / ".cache" / "clearml-reconciler" / "hashes.sqlite3"
    with sqlite3.connect(db) as conn:  # every remembered summary now states another content
        rows = conn.execute("UPDATE contents SET digest = ?", (hashlib.sha256(b"wrong").hexdigest(),)).rowcount
    assert rows >= 2
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _live(env) == [("1.0.0", "completed"), ("1.1.0", "published")]
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0


def _datasets(env: Env, names: tuple[str, ...]) -> None:
    for name in names:
        write_tree(env.work / "data" / name, {"a.txt": name})
        m = env.work / "manifests" / f"{name}.yaml"
        m.parent.mkdir(exist_ok=True)
        m.write_text(manifest(env.project, name, f"- version: 1.0.0\n  sources:\n    - path: ../data/{name}\n"))


def test_a_dead_server_ends_the_run_within_one_timeout_however_many_calls_are_left(env: Env,
                                                                                   proxies: Proxies) -> None:
    _datasets(env, ("one", "two", "three"))  # independent: each would wait its own --timeout before
    first = Rule("tasks.add_or_update_artifacts", "stall", seconds=0)
    proxies.api.rules.append(first)
    proc = proxies.start("--timeout", "6", "apply", "--auto-approve", "manifests")
    _wait(lambda: first.fired, "the apply never uploaded")
    proxies.api.stop()  # the API server dies and does not come back
    started = time.monotonic()
    out, err = proc.communicate(timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 1, out + err
    assert took < 6 + 5, f"{took:.1f}s: the timeout did not bound the whole wait\n{err}"
    assert "the ClearML API server at" in err and "Traceback" not in err


def test_a_wrong_files_host_fails_at_once_and_is_named(env: Env) -> None:
    import socket

    _datasets(env, ("one",))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    wrong = {**env.vars(), "CLEARML_FILES_HOST": f"http://127.0.0.1:{port}"}
    started = time.monotonic()
    res = env.reconcile("apply", "--auto-approve", "manifests", env=wrong)
    assert res.returncode == 1, res.stdout + res.stderr
    assert time.monotonic() - started < 30  # not the 120 s of --timeout
    assert f"cannot reach the ClearML file server at http://127.0.0.1:{port}" in res.stderr, res.stderr
    assert "CLEARML_FILES_HOST" in res.stderr and "API server" not in res.stderr
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0  # the right host: it converges


def test_check_storage_content_finds_a_flipped_byte_that_presence_does_not(env: Env) -> None:
    _setup(env)
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    env.sdk("""
        from clearml import StorageManager
        ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version="1.0.0")
        url = ds._task.artifacts["data"].url
        local = StorageManager.get_local_copy(url, extract_archive=False)
        data = bytearray(open(local, "rb").read())
        data[len(data) // 2] ^= 0xFF  # same size, other bytes
        flipped = local + ".flipped"
        open(flipped, "wb").write(bytes(data))
        StorageManager.upload_file(flipped, url)
        result = url
    """)
    presence = env.reconcile("plan", "--check-storage", "manifests")
    assert presence.returncode == 0, presence.stdout + presence.stderr  # the object is there, of the right size
    content = env.reconcile("plan", "--check-storage-content", "manifests")
    assert content.returncode == 1, content.stdout + content.stderr
    assert "its data chunks data in storage are not the bytes that were recorded" in content.stdout + content.stderr
