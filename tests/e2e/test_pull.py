"""`reconcile pull`: a version's files into a folder, byte-equal to the SDK's get_local_copy(), verified, partial
(only the chunks that hold the selected files), warm (nothing downloaded when DEST is right), resumable after
kill -9. Versions made by `reconcile apply` and by plain SDK scripts (inherited chunks, a merge of two parents)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .helpers import Env, write_tree
from .proxy import Proxies, Rule

pytestmark = pytest.mark.integration

KB = 1024


def _noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# incompressible files of ~300 KiB with 1 MiB chunks: several chunks per version
V1 = {**{f"train/c{i % 2}/{i}.bin": _noise(i, 300 * KB) for i in range(6)},
      **{f"test/{i}.bin": _noise(100 + i, 300 * KB) for i in range(3)},
      "README.txt": "tiny"}
V2 = {"train/c0/new.txt": "added in 1.1.0", "test/extra.txt": "test file of 1.1.0"}


def _manifest(project: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {project}
        name: things
        upload: {{chunk_size_mb: 1}}
        splits: {{train: "train/**", test: ["test/**", "README.txt"]}}
        aliases: {{stable: 1.1.0}}
        versions:
          - version: 1.0.0
            sources:
              - path: ../data/v1
          - version: 1.1.0
            parent: 1.0.0
            sources:
              - path: ../data/v2
        """)


def _setup(env: Env, vars: dict[str, str] | None = None) -> None:
    write_tree(env.work / "data" / "v1", V1)
    write_tree(env.work / "data" / "v2", V2)
    (env.work / "manifests").mkdir(exist_ok=True)
    (env.work / "manifests" / "things.yaml").write_text(_manifest(env.project))
    r = env.reconcile("apply", "--auto-approve", "manifests", env=vars)
    assert r.returncode == 0, r.stdout + r.stderr


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pull(env: Env, *args: str, vars: dict[str, str] | None = None) -> tuple[str, dict[str, int]]:
    r = env.reconcile("pull", *args, env=vars)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"(\d+) already there, (\d+) fetched \((\d+) chunks", r.stdout)
    assert m, r.stdout
    return r.stdout, {"present": int(m[1]), "fetched": int(m[2]), "chunks": int(m[3])}


def _local_copy(env: Env, name: str, version: str) -> Path:
    return Path(str(env.sdk(f"""
        ds = Dataset.get(dataset_project=PROJECT, dataset_name={name!r}, dataset_version={version!r})
        result = ds.get_local_copy()
    """)))


def test_pull_is_the_sdk_copy_warm_repaired_and_partial(env: Env) -> None:
    _setup(env)
    dest = env.work / "out"
    out, full = _pull(env, f"{env.project}/things@stable", str(dest))
    assert full["fetched"] == len(V1) + len(V2) and full["chunks"] >= 4, out
    assert _tree(dest) == _tree(_local_copy(env, "things", "1.1.0"))

    # warm: nothing downloaded
    _, warm = _pull(env, f"{env.project}/things@1.1.0", str(dest))
    assert warm == {"present": len(V1) + len(V2), "fetched": 0, "chunks": 0}

    # a corrupted file (same size) is fetched again; a file the version lacks is left alone, --delete removes it
    bad = dest / "train/c1/1.bin"
    bad.write_bytes(b"x" * bad.stat().st_size)
    (dest / "mine.txt").write_text("not in the version")
    _, again = _pull(env, f"{env.project}/things@1.1.0", str(dest))
    assert again["fetched"] == 1 and again["chunks"] == 1
    assert bad.read_bytes() == V1["train/c1/1.bin"] and (dest / "mine.txt").exists()
    out, _ = _pull(env, f"{env.project}/things@1.1.0", str(dest), "--delete")
    assert not (dest / "mine.txt").exists() and "1 extra files deleted" in out
    assert _tree(dest) == {**{k: v if isinstance(v, bytes) else v.encode() for k, v in {**V1, **V2}.items()}}

    # a split: only the chunks holding its files (the test files sort before train/, in their own chunks)
    part = env.work / "test-only"
    _, split = _pull(env, f"{env.project}/things@1.1.0", str(part), "--split", "test")
    assert set(_tree(part)) == {"README.txt", "test/0.bin", "test/1.bin", "test/2.bin", "test/extra.txt"}
    assert split["chunks"] < full["chunks"], (split, full)
    code = (f"from reconciler import pull\nprint(pull({env.project + '/things@1.1.0'!r}, 'train-part', "
            f"split='train', include=['**/c0/**']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=env.work, env=env.vars(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == str(env.work / "train-part"), r.stderr
    assert set(_tree(env.work / "train-part")) == {"train/c0/0.bin", "train/c0/2.bin", "train/c0/4.bin",
                                                   "train/c0/new.txt"}
    # the splits are on the version, where the SDK reads them; plan shows a change of them, apply makes it
    stored = env.sdk("""
        from clearml import Task
        ds = Dataset.get(dataset_project=PROJECT, dataset_name='things', dataset_version='1.1.0')
        result = Task.get_task(task_id=ds.id).get_parameter('Reconciler/splits')
    """)
    assert json.loads(str(stored)) == {"test": ["test/**", "README.txt"], "train": ["train/**"]}
    m = env.work / "manifests" / "things.yaml"
    m.write_text(m.read_text().replace('train: "train/**"', 'train: "train/c1/**"'))
    r = env.reconcile("plan", "--detailed-exitcode", "manifests")
    assert r.returncode == 2 and "splits" in r.stdout and "train/c1/**" in r.stdout, r.stdout + r.stderr
    assert env.reconcile("apply", "--auto-approve", "manifests").returncode == 0
    assert env.reconcile("plan", "--detailed-exitcode", "manifests").returncode == 0
    _pull(env, f"{env.project}/things@1.1.0", str(env.work / "c1"), "--split", "train")
    assert set(_tree(env.work / "c1")) == {"train/c1/1.bin", "train/c1/3.bin", "train/c1/5.bin"}
    inc = env.work / "inc"
    _, one = _pull(env, f"{env.project}/things@1.1.0", str(inc), "--include", "train/c0/new.txt")
    assert _tree(inc) == {"train/c0/new.txt": b"added in 1.1.0"} and one["chunks"] == 1


def test_pull_errors_are_one_line(env: Env) -> None:
    _setup(env)
    cases = [
        (f"{env.project}/nothing@1.0.0", "unknown dataset"),
        (f"{env.project}/things@9.9.9", "has no version or alias '9.9.9'"),
        ("0123456789abcdef0123456789abcdef", "no dataset version has the id"),
    ]
    for ref, message in cases:
        r = env.reconcile("pull", ref, str(env.work / "x"))
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = env.reconcile("pull", f"{env.project}/things@1.0.0", str(env.work / "x"), "--split", "validation")
    assert r.returncode == 1 and "has no split 'validation' (splits: test, train)" in r.stderr, r.stderr
    assert not (env.work / "x").exists() or not any((env.work / "x").rglob("*.bin"))


def test_pull_sdk_versions_inherited_and_merged(env: Env) -> None:
    write_tree(env.work / "a", {"a/1.txt": "one", "a/2.bin": _noise(7, 200 * KB), "same.txt": "from a"})
    write_tree(env.work / "b", {"b/1.txt": "bee", "same.txt": "from b"})
    write_tree(env.work / "c", {"c/1.txt": "sea"})
    write_tree(env.work / "elsewhere", {"ext.txt": "an external file, registered by its URL"})
    env.sdk(f"LINK = {(env.work / 'elsewhere' / 'ext.txt').as_uri()!r}\n" + textwrap.dedent("""
        def make(name, folder, parents=(), links=()):
            ds = Dataset.create(dataset_project=PROJECT, dataset_name=name, parent_datasets=list(parents))
            if folder:
                ds.add_files(folder)
            for link in links:
                ds.add_external_files(link, dataset_path='linked')
            ds.upload()
            ds.finalize()
            return ds.id
        a = make('first', 'a')
        b = make('second', 'b')
        merged = make('merged', 'c', [a, b], links=[LINK])
        result = [a, b, merged]
    """))
    for name in ("merged",):  # files from both parents' chunks (the later parent wins same.txt) and its own
        dest = env.work / f"pulled-{name}"
        _, first = _pull(env, f"{env.project}/{name}@1.0.0", str(dest))
        assert first["fetched"] >= 3
        assert _tree(dest) == _tree(_local_copy(env, name, "1.0.0"))
        assert (dest / "linked" / "ext.txt").read_text() == "an external file, registered by its URL"
        out, warm = _pull(env, f"{env.project}/{name}@1.0.0", str(dest))
        assert warm["fetched"] == 0 and warm["chunks"] == 0 and "links" not in out, out


def _verified(dest: Path, expected: dict[str, bytes], but: str = "") -> None:
    """Every file under a name of the version holds the version's bytes (what a kill may leave: fewer files)."""
    for rel, data in _tree(dest).items():
        if rel in expected and rel != but:
            assert hashlib.sha256(data).digest() == hashlib.sha256(expected[rel]).digest(), rel


def _gone(dest: Path, wait: float = 10.0) -> bool:
    """No process pulling into ``dest`` is left (within ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        left = []
        for proc in Path("/proc").iterdir():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:  # ended, or not a process
                continue
            if b"pull" in cmd and str(dest).encode() in cmd:
                left.append(proc.name)
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_pull_killed_at_ten_points_then_pulled_again(env: Env, proxies: Proxies) -> None:
    vars = proxies.vars()  # the chunks are stored through the proxy, so the pulls download through it
    _setup(env, vars)
    expected = {k: v if isinstance(v, bytes) else v.encode() for k, v in {**V1, **V2}.items()}
    ref = f"{env.project}/things@1.1.0"
    dest = env.work / "killed"
    running: list[int] = []

    def files() -> int:  # os.walk: a pull's staging folders come and go while it is counted
        return sum(1 for _, _, names in os.walk(dest) for n in names if n.endswith((".bin", ".txt")))

    def killed_at(rule: Rule | None, *extra: str, on_new_file: int = 0, but: str = "") -> int:
        """Run a pull and kill it (``on_new_file``: this signal once a new file appears); its exit code."""
        for proxy in (proxies.api, proxies.files):
            proxy.rules.clear()
        if rule is not None:
            rule.pid = lambda: running[-1] if running else None
            (proxies.api if rule.path.startswith("/tasks") else proxies.files).rules.append(rule)
        before = files()
        proc = proxies.start("pull", ref, str(dest), *extra)
        running.append(proc.pid)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if on_new_file and files() > before:
                os.kill(proc.pid, on_new_file)
                break
            time.sleep(0.005)
        _, err = proc.communicate(timeout=30)
        assert rule is None or rule.fired or rule.action == "stall", (rule, err)
        assert _gone(dest), "a process of the killed pull is still running"  # its unpacking helpers end with it
        _verified(dest, expected, but)  # whatever the kill left: every file under a version name is right
        return proc.returncode

    def lose_files(n: int) -> None:
        for f in sorted(p for p in dest.rglob("*.bin") if ".reconcile-pull" not in p.parts)[:n]:
            f.unlink()

    kill = signal.SIGKILL
    assert killed_at(Rule("/tasks.get_all", "kill")) == -kill  # 1. resolving the version
    # (the version is read from its listing: the next call finds the chunks' versions)
    assert killed_at(Rule("/tasks.get_all", "kill", nth=2)) == -kill  # 2. the chunks, the file list cached
    shutil.rmtree(env.home / ".cache" / "clearml-reconciler" / "states")  # (apply kept the file list)
    assert killed_at(Rule("state", "kill", method="GET")) == -kill  # 3. the file list
    assert killed_at(Rule("/tasks.get_all", "kill", nth=2)) == -kill  # 4. the chunks, the file list just read
    assert killed_at(Rule(".zip", "kill", method="GET"), "--workers", "1") == -kill  # 5. the first chunk
    assert killed_at(Rule(".zip", "kill", method="GET", nth=3), "--workers", "1") == -kill  # 6. the third
    lose_files(9)
    assert killed_at(Rule(".zip", "kill", method="GET", nth=2), "--workers", "4") == -kill  # 7. in parallel
    lose_files(9)  # 8. between the files of a chunk being written
    assert killed_at(Rule(".zip", "stall", method="GET", seconds=0.2, times=0), "--workers", "1",
                     on_new_file=kill) == -kill
    lose_files(9)  # 9. the same, with four workers writing
    assert killed_at(Rule(".zip", "stall", method="GET", seconds=0.2, times=0), "--workers", "4",
                     on_new_file=kill) == -kill
    lose_files(9)  # and SIGTERM stops promptly, as Ctrl-C does
    assert killed_at(Rule(".zip", "stall", method="GET", seconds=0.2, times=0), "--workers", "2",
                     on_new_file=signal.SIGTERM) == 143
    bad = dest / "test/extra.txt"  # 10. the only chunk needed: a corrupted file's
    bad.write_text("x" * len(V2["test/extra.txt"]))
    assert killed_at(Rule(".zip", "kill", method="GET"), but="test/extra.txt") == -kill

    _, final = _pull(env, ref, str(dest), vars=vars)
    assert final["fetched"] >= 1
    assert _tree(dest) == expected
    assert not list(dest.rglob("*.reconcile-part")) and not (dest / ".reconcile-pull").exists()
    _, warm = _pull(env, ref, str(dest), vars=vars)
    assert warm["fetched"] == 0 and warm["chunks"] == 0


def test_pull_versions_of_the_oldest_sdk(env: Env, oldest_sdk_python: Path) -> None:
    """A parent and a child made by clearml 1.16 (the oldest supported SDK): the child's inherited files come from
    the parent's chunk, and the file a child replaces from its own."""
    write_tree(env.work / "p", {"x/1.txt": "one", "x/2.bin": _noise(3, 50 * KB)})
    write_tree(env.work / "q", {"x/1.txt": "one, replaced", "y/3.txt": "three"})
    code = textwrap.dedent(f"""
        from clearml import Dataset
        def make(name, folder, parents=()):
            ds = Dataset.create(dataset_project={env.project!r}, dataset_name=name, parent_datasets=list(parents))
            ds.add_files(folder)
            ds.upload()
            ds.finalize()
            return ds.id
        make('old-child', 'q', [make('old-parent', 'p')])
    """)
    r = subprocess.run([str(oldest_sdk_python), "-c", code], cwd=env.work, env=env.vars(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    dest = env.work / "old"
    _, first = _pull(env, f"{env.project}/old-child@1.0.0", str(dest))
    assert _tree(dest) == {"x/1.txt": b"one, replaced", "x/2.bin": _noise(3, 50 * KB), "y/3.txt": b"three"}
    assert first["chunks"] == 2
