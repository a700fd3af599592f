"""apply on a terminal asks for confirmation; only 'yes' applies (driven through a real pseudo-terminal)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from .helpers import Env, dataset_tasks, manifest, read_terminal, waiting_for_the_lock, write_tree

ONE_VERSION = """\
- version: 1.0.0
  sources:
    - path: ../data
"""


def run_on_tty(env: Env, answer: str, *args: str) -> tuple[int, str]:
    """Run the CLI with stdin/stdout on a pty; type ``answer`` once it asks."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *waiting_for_the_lock(args)], cwd=env.work,
                            env=env.vars(), stdin=follower, stdout=follower, stderr=subprocess.PIPE,
                            close_fds=True)
    os.close(follower)
    typed = answer.encode() + b"\n"
    seen = read_terminal(leader, proc, respond=lambda out: typed if b"Enter a value:" in out else None)
    answered = b"Enter a value:" in seen
    assert answered, seen.decode(errors="replace")
    output = seen.decode(errors="replace") + proc.stderr.read().decode()
    env.assert_no_secret(output)
    return proc.returncode, output


def test_confirmation_on_a_terminal(env: Env):
    write_tree(env.work / "data", {"a.txt": "a"})
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "ds.yaml").write_text(manifest(env.project, "asked", ONE_VERSION))
    code, out = run_on_tty(env, "no", "apply", "manifests")
    assert code == 1 and "apply cancelled" in out
    assert dataset_tasks(env, env.project, "asked") == []
    code, out = run_on_tty(env, "yes", "apply", "manifests")
    assert code == 0 and "Apply complete!" in out, out
    assert [t["version"] for t in dataset_tasks(env, env.project, "asked")] == ["1.0.0"]
