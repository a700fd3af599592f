"""Lost leases, signals, a vanished server, and files that change under the plan: real processes, real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import Env, dataset_tasks, manifest, write_tree
from .proxy import Proxies, Rule

pytestmark = pytest.mark.integration


V1 = {"a.txt": "alpha", "sub/b.txt": "bravo", "c.bin": b"\x00\x01" * 4000}
VERSIONS = """\
- version: 1.0.0
  sources:
    - path: ../data/v1
- version: 1.1.0
  parent: 1.0.0
  sources:
    - path: ../data/v2
"""


def _setup(env: Env) -> Path:
    write_tree(env.work / "data" / "v1", V1)
    write_tree(env.work / "data" / "v2", {"d.txt": "delta"})
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir(exist_ok=True)
    m.write_text(manifest(env.project, "things", VERSIONS))
    return m


def _live_versions(env: Env) -> list[str]:
    return sorted(t["version"] for t in dataset_tasks(env, env.project, "things") if "archived" not in t["system_tags"])


def test_a_run_paused_past_its_lease_stops_and_writes_nothing_more(env: Env, proxies: Proxies) -> None:
    _setup(env)
    paused: subprocess.Popen[str] | None = None
    proxies.api.rules.append(Rule("tasks.create", "stop", body='"name": "things"',
                                  pid=lambda: paused.pid if paused else None))
    paused = proxies.start("apply", "--auto-approve", "--lock-ttl", "4", "manifests")
    deadline = time.monotonic() + 60
    while not proxies.api.rules[0].fired and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proxies.api.rules[0].fired, "the first apply never created its draft"
    proxies.api.rules.clear()
    # a second run waits out the stopped run's lease, takes the lock and finishes the work
    other = subprocess.run([sys.executable, "-m", "reconciler.cli", "apply", "--auto-approve", "--lock-timeout",
                            "60", "manifests"], cwd=env.work, env=proxies.vars(), capture_output=True, text=True,
                           timeout=300)
    assert other.returncode == 0, other.stdout + other.stderr
    assert "waiting up to 60s for the apply lock" in other.stderr
    assert "expires" in other.stderr  # the holder and when its lease ends are named
    writes_before = len(proxies.api.log)
    paused.send_signal(signal.SIGCONT)
    out, err = paused.communicate(timeout=120)
    assert paused.returncode == 1, out + err
    assert "lost the apply lock" in err and "Traceback" not in err
    written = [p for m, p in proxies.api.log[writes_before:] if m == "POST" and "get_all" not in p
               and "get_by_id" not in p and "auth.login" not in p]
    assert all("projects.update" not in p for p in written) and not any("tasks." in p for p in written), written
    assert _live_versions(env) == ["1.0.0", "1.1.0"]  # no duplicate of either version
    assert env.reconcile("plan", "--detailed-exitcode", "manifests", env=proxies.vars()).returncode == 0


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_an_upload_quickly_and_releases_the_lock(env: Env, proxies: Proxies, sig: int,
                                                                 code: int) -> None:
    _setup(env)
    proxies.files.rules.append(Rule("/", "stall", method="POST", seconds=60))
    proc = proxies.start("apply", "--auto-approve", "manifests")
    deadline = time.monotonic() + 60
    while not proxies.files.rules[0].fired and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proxies.files.rules[0].fired, "the upload never started"
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == code, out + err
    assert took < 10, f"took {took:.1f}s to stop"
    assert "Traceback" not in err and "stopped: interrupted by SIG" in err and "error:" not in err, err
    assert "No lock is held." in env.reconcile("unlock", "manifests", env=proxies.vars()).stdout
    proxies.files.rules.clear()
    res = env.reconcile("apply", "--auto-approve", "manifests", env=proxies.vars())
    assert res.returncode == 0, res.stdout + res.stderr
    assert _live_versions(env) == ["1.0.0", "1.1.0"]


def test_a_server_that_goes_away_ends_the_run_within_the_bound(env: Env, proxies: Proxies) -> None:
    _setup(env)
    gone: subprocess.Popen[str] | None = None
    proxies.api.rules.append(Rule("tasks.add_or_update_artifacts", "stall", seconds=0))
    proc = proxies.start("--timeout", "5", "apply", "--auto-approve", "manifests")
    gone = proc
    deadline = time.monotonic() + 60
    while not proxies.api.rules[0].fired and time.monotonic() < deadline:
        time.sleep(0.05)
    proxies.api.stop()  # the API server vanishes mid-apply and does not come back
    started = time.monotonic()
    out, err = gone.communicate(timeout=120)
    assert gone.returncode == 1, out + err
    assert time.monotonic() - started < 5 + 15  # the bound plus one attempt's timeouts
    assert "did not answer within 5s" in err and "Traceback" not in err


def test_an_endpoint_failing_forever_ends_the_run_within_the_bound(env: Env, proxies: Proxies) -> None:
    _setup(env)
    proxies.api.rules.append(Rule("tasks.edit", "fail", times=0))
    started = time.monotonic()
    res = env.reconcile("--timeout", "4", "apply", "--auto-approve", "manifests", env=proxies.vars())
    assert res.returncode == 1, res.stdout + res.stderr
    assert time.monotonic() - started < 60
    assert "did not answer within 4s" in res.stderr and len(res.stderr.splitlines()) < 10


def test_a_file_changed_between_plan_and_apply_is_named_and_nothing_is_finalized(env: Env) -> None:
    _setup(env)
    assert env.reconcile("plan", "--out", "plan.json", "manifests").returncode == 0
    (env.work / "data" / "v1" / "sub" / "b.txt").write_text("bravo, edited after the plan")
    res = env.reconcile("apply", "plan.json")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "sub/b.txt" in res.stderr and "not what the plan hashed" in res.stderr
    assert all(t["status"] not in ("completed", "published") for t in dataset_tasks(env, env.project, "things"))
    res = env.reconcile("apply", "--auto-approve", "manifests")  # a fresh plan hashes the new bytes
    assert res.returncode == 0, res.stdout + res.stderr
    got = env.sdk("""
        ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version="1.0.0")
        result = [ds.verify_dataset_hash(), open(ds.get_local_copy() + "/sub/b.txt").read()]
    """)
    assert got == [[], "bravo, edited after the plan"]


def test_a_wrong_hash_cache_row_never_reaches_a_finalized_version(env: Env) -> None:
    import hashlib
    import sqlite3

    from reconciler.sources.hashcache import HashCache

    _setup(env)
    assert env.reconcile("plan", "manifests").returncode == 0  # fills the hash cache
    caches = list((env.home / ".cache").rglob("hashes.sqlite3"))
    assert len(caches) == 1
    right, wrong = hashlib.sha256(b"alpha").hexdigest(), "0" * 64
    db = sqlite3.connect(caches[0])
    target = str((env.work / "data" / "v1" / "a.txt").resolve())
    assert db.execute("UPDATE file_hashes SET sha256 = ? WHERE path = ?", (wrong, target)).rowcount == 1
    db.commit()
    cache = HashCache(caches[0])
    for source, listing in db.execute("SELECT source, listing FROM listings").fetchall():  # the folder memo too
        hit = cache.load_listing(source, listing)
        assert hit is not None
        cache.store_listing(source, listing, [wrong if h == right else h for h in hit[0]])
    cache.close()
    db.close()
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "a.txt" in res.stderr and "not what the plan hashed" in res.stderr
    assert all(t["status"] not in ("completed", "published") for t in dataset_tasks(env, env.project, "things"))
    res = env.reconcile("apply", "--auto-approve", "manifests")  # the bad row was forgotten: hashed again
    assert res.returncode == 0, res.stdout + res.stderr
    assert env.sdk("""
        ds = Dataset.get(dataset_project=PROJECT, dataset_name="things", dataset_version="1.0.0")
        result = ds.verify_dataset_hash()
    """) == []
