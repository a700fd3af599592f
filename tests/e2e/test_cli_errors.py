"""Bad input and bad environments: one line, exit 1, no traceback, nothing changed on the server."""

from __future__ import annotations

import pytest

from .helpers import Env, dataset_tasks, manifest, write_tree

ONE_VERSION = """\
- version: 1.0.0
  sources:
    - path: ../data
"""


def project(env: Env) -> None:
    write_tree(env.work / "data", {"a.txt": "a"})
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "ds.yaml").write_text(manifest(env.project, "errs", ONE_VERSION))


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unreachable_server_is_one_line(env: Env, unused_port: int):
    project(env)
    vars_ = env.vars()
    vars_["CLEARML_API_HOST"] = f"http://127.0.0.1:{unused_port}"
    proc = env.reconcile("plan", "manifests", env=vars_, timeout=60)
    assert_one_line_error(proc, "cannot reach the ClearML server", vars_["CLEARML_API_HOST"])


def test_wrong_credentials_are_one_line(env: Env):
    project(env)
    vars_ = env.vars()
    vars_["CLEARML_API_SECRET_KEY"] = "not-the-secret"
    proc = env.reconcile("apply", "--auto-approve", "manifests", env=vars_, timeout=60)
    assert_one_line_error(proc, "refused the credentials")
    assert "not-the-secret" not in proc.stderr
    assert dataset_tasks(env, env.project, "errs") == []


def test_ci_without_configuration_is_an_error_not_a_local_run(env: Env):
    project(env)
    vars_ = {k: v for k, v in env.vars().items() if not k.startswith("CLEARML_")}
    vars_["CI"] = "true"
    proc = env.reconcile("plan", "manifests", env=vars_)
    assert_one_line_error(proc, "no ClearML server is configured", "--local")
    assert not (env.work / ".reconcile").exists()


@pytest.mark.embedded_only  # about falling back to the embedded server
def test_no_configuration_outside_ci_uses_the_embedded_server_with_a_notice(env: Env):
    project(env)
    vars_ = {k: v for k, v in env.vars().items() if not k.startswith("CLEARML_")}
    proc = env.reconcile("plan", "--detailed-exitcode", "manifests", env=vars_)
    assert proc.returncode == 2, proc.stderr
    assert "using the embedded server" in proc.stderr
    assert (env.work / ".reconcile").is_dir()
    local = env.reconcile("--local", "plan", "manifests", env=vars_)
    assert local.returncode == 0 and "using the embedded server" not in local.stderr


@pytest.mark.embedded_only  # --local: the embedded server
def test_local_apply_then_idempotent(env: Env):
    project(env)
    vars_ = {k: v for k, v in env.vars().items() if not k.startswith("CLEARML_")}
    first = env.reconcile("--local", "apply", "--auto-approve", "manifests", env=vars_)
    assert first.returncode == 0, first.stderr
    again = env.reconcile("--local", "plan", "--detailed-exitcode", "manifests", env=vars_)
    assert again.returncode == 0 and "No changes" in again.stdout


def test_missing_source_folder_names_the_manifest_line(env: Env):
    project(env)
    (env.work / "data" / "a.txt").unlink()
    (env.work / "data").rmdir()
    proc = env.reconcile("plan", "manifests")
    assert_one_line_error(proc, "manifests/ds.yaml:", "../data")


def test_debug_shows_the_traceback(env: Env, unused_port: int):
    project(env)
    vars_ = env.vars()
    vars_["CLEARML_API_HOST"] = f"http://127.0.0.1:{unused_port}"
    proc = env.reconcile("--debug", "plan", "manifests", env=vars_, timeout=60)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
