"""The ``reconcile-validate`` pre-commit hook, through ``pre-commit try-repo`` as a user tries it.

The hook repository is a fresh git repository made from this working tree (try-repo reads committed files), so
the test checks the hook as it is now, committed or not. try-repo installs the hook's environment from scratch
on every call (its store is a temporary folder): the package and its dependencies from the package index,
about 40 to 70 seconds here. Two calls, one failing and one passing, are the least that shows both outcomes;
they run side by side.
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


def make_consumer(root: Path, traffic_lights: str) -> Path:
    """A repository with manifests, the way a user's looks: road signs, and traffic lights on top of them."""
    repo = root
    (repo / "manifests" / "data").mkdir(parents=True)
    (repo / "manifests" / "data" / "stop.png").write_bytes(b"not really a png")
    (repo / "manifests" / "road-signs.yaml").write_text(textwrap.dedent(GOOD))
    (repo / "manifests" / "traffic-lights.yaml").write_text(textwrap.dedent(traffic_lights))
    (repo / "README.md").write_text("datasets\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    return repo


def start_try_repo(hook_repo: Path, consumer: Path, *files: str) -> subprocess.Popen[str]:
    home = consumer.parent / f"{consumer.name}-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "PRE_COMMIT"))}
    env.update(GIT_ENV, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PRE_COMMIT_HOME=str(home / "pc"),
               NO_COLOR="1")
    return subprocess.Popen([sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo), "reconcile-validate",
                             "--files", *files], cwd=consumer, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_hook_definition():
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"reconcile-validate", "reconcile-check"}
    for command, hook in (("validate", hooks["reconcile-validate"]), ("check", hooks["reconcile-check"])):
        assert hook["language"] == "python" and hook["entry"] == f"reconcile {command}"
        assert hook["pass_filenames"] is False and hook["args"] == ["manifests/"]


def test_try_repo_fails_with_the_located_error_and_passes_once_fixed(hook_repo: Path, tmp_path: Path):
    broken = make_consumer(tmp_path / "broken", BAD_PARENT)
    fixed = make_consumer(tmp_path / "fixed", BAD_PARENT.replace("0.9.0", "1.0.0"))  # the parent exists
    start = time.monotonic()
    # each try-repo installs its own environment: the two installs run side by side
    runs = [start_try_repo(hook_repo, repo, "manifests/traffic-lights.yaml") for repo in (broken, fixed)]
    failed_out, passed_out = (p.communicate(timeout=900)[0] for p in runs)
    seconds = time.monotonic() - start

    assert runs[0].returncode == 1, failed_out
    assert "reconcile validate" in failed_out and "Failed" in failed_out
    assert ("manifests/traffic-lights.yaml:7:13: error: versions[0].parent: '0.9.0' is not a version of "
            "team/vision/Road signs (its versions: 1.0.0)") in failed_out
    # the parent is in another file: passing shows the hook read the folder, not only the file it was given
    assert runs[1].returncode == 0, passed_out
    assert "reconcile validate" in passed_out and "Passed" in passed_out
    print(f"two pre-commit try-repo runs side by side: {seconds:.0f}s")
