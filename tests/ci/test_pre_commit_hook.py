"""The ``reconcile-validate`` pre-commit hook, through ``pre-commit try-repo`` as a user tries it.

The hook repository is a fresh git repository made from this working tree (try-repo reads committed files), so
the test checks the hook as it is now, committed or not. try-repo installs the hook's environment from scratch
on every call (its store is a temporary folder): the package and its dependencies from the package index,
about 40 to 70 seconds here. Two calls, one failing and one passing, are the least that shows both outcomes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}

GOOD = """\
    apiVersion: reconciler/v1
    kind: Dataset
    project: team/vision
    name: Road signs
    versions:
      - version: 1.0.0
        sources: [{path: data}]
    """
BAD_PARENT = """\
    apiVersion: reconciler/v1
    kind: Dataset
    project: team/vision
    name: Traffic lights
    versions:
      - version: 1.0.0
        parent: team/vision/Road signs@0.9.0
        sources: [{path: data}]
    """


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


@pytest.fixture
def hook_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "hook-repo"
    repo.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(REPO / name, repo / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "reconciler", repo / "reconciler", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "schemas", repo / "schemas", ignore=ignore)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hook repository")
    return repo


@pytest.fixture
def consumer(tmp_path: Path) -> Path:
    """A repository with manifests, the way a user's looks."""
    repo = tmp_path / "datasets-repo"
    (repo / "manifests" / "data").mkdir(parents=True)
    (repo / "manifests" / "data" / "stop.png").write_bytes(b"not really a png")
    (repo / "manifests" / "road-signs.yaml").write_text(textwrap.dedent(GOOD))
    (repo / "README.md").write_text("datasets\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    return repo


def try_repo(hook_repo: Path, consumer: Path, *files: str) -> tuple[subprocess.CompletedProcess[str], float]:
    home = consumer.parent / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "PRE_COMMIT"))}
    env.update(GIT_ENV, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PRE_COMMIT_HOME=str(home / "pc"),
               NO_COLOR="1")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo), "reconcile-validate",
                           "--files", *files], cwd=consumer, env=env, capture_output=True, text=True, timeout=900)
    return proc, time.monotonic() - start


def test_hook_definition():
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "reconcile-validate" and hook["language"] == "python"
    assert hook["entry"] == "reconcile validate"
    assert hook["pass_filenames"] is False and hook["args"] == ["manifests/"]


def test_try_repo_fails_with_the_located_error_then_passes(hook_repo: Path, consumer: Path):
    bad = consumer / "manifests" / "traffic-lights.yaml"
    bad.write_text(textwrap.dedent(BAD_PARENT))
    git(consumer, "add", "-A")
    failed, first_seconds = try_repo(hook_repo, consumer, "manifests/traffic-lights.yaml")
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output
    assert "reconcile validate" in output and "Failed" in output
    assert ("manifests/traffic-lights.yaml:7:13: error: versions[0].parent: '0.9.0' is not a version of "
            "team/vision/Road signs (its versions: 1.0.0)") in output

    bad.write_text(textwrap.dedent(BAD_PARENT).replace("0.9.0", "1.0.0"))  # fixed: the parent exists
    passed, second_seconds = try_repo(hook_repo, consumer, "manifests/traffic-lights.yaml")
    output = passed.stdout + passed.stderr
    assert passed.returncode == 0, output
    assert "reconcile validate" in output and "Passed" in output
    # the parent is in another file: the hook validated the folder, not the one file it was given
    print(f"pre-commit try-repo: {first_seconds:.0f}s and {second_seconds:.0f}s (environment installed each time)")
