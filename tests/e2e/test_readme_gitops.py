"""The README's GitOps blocks, run as written by bash in a non-interactive shell (no terminal, stdin closed)
against an embedded server, in a copy of the sample manifests: the pull-request plan, applying the saved plan
without a prompt, and the live apply. The blocks are read from README.md, so this breaks when the README does."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from .helpers import Env, copy_sample, dataset_tasks

REPO = Path(__file__).resolve().parents[2]


def gitops_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = re.search(r"\n## GitOps\n(.*?)\n##+ ", text, re.S)  # up to the next heading of any level
    assert section, "README.md lost its GitOps section"
    blocks = re.findall(r"```bash\n(.*?)```", section.group(1), re.S)
    assert len(blocks) == 3, blocks
    return blocks


def shell(env: Env, script: str) -> subprocess.CompletedProcess[str]:
    vars_ = env.vars()
    vars_["PATH"] = f"{env.work / 'bin'}{os.pathsep}{vars_['PATH']}"
    vars_["PYTHONPATH"] = str(REPO)
    vars_["CI"] = "true"  # as in a CI job: the configured server, never a fallback
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=env.work, env=vars_,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)


def test_the_readme_gitops_blocks_run_as_written(env: Env) -> None:
    pr_plan, apply_saved, apply_live = gitops_blocks()
    assert "reconcile plan manifests/" in pr_plan and "--out plan.json > plan.md" in pr_plan
    assert apply_saved.strip() == "reconcile apply plan.json"
    assert "--auto-approve manifests/" in apply_live
    copy_sample(env)  # in this test's own project: the server may be shared
    (env.work / "bin").mkdir()
    wrapper = env.work / "bin" / "reconcile"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m reconciler.cli "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)

    planned = shell(env, pr_plan)
    assert planned.returncode == 2, planned.stdout + planned.stderr  # changes pending
    md = (env.work / "plan.md").read_text()
    assert md.startswith("### Dataset plan") and "Plan: 2 to create" in md
    assert (env.work / "plan.json").is_file()

    applied = shell(env, apply_saved)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Enter a value" not in applied.stdout and "2 versions created" in applied.stdout
    tasks = dataset_tasks(env, env.project, "Shapes")
    assert sorted(t["version"] for t in tasks) == ["1.0.0", "1.1.0"]

    again = shell(env, pr_plan)
    assert again.returncode == 0, again.stdout + again.stderr  # no changes
    assert "No changes." in (env.work / "plan.md").read_text()
    nothing = shell(env, apply_saved)  # the new saved plan has nothing to do
    assert nothing.returncode == 0 and "No changes." in nothing.stdout, nothing.stdout + nothing.stderr

    live = shell(env, apply_live)
    assert live.returncode == 0 and "Apply complete!" not in live.stdout, live.stdout + live.stderr
    assert dataset_tasks(env, env.project, "Shapes") == tasks
