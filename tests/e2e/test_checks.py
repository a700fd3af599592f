"""Checks against a real server (embedded or reference): a failing error-level check makes plan exit 1 naming
the check's file:line:col and the offending files; apply creates, finalizes, publishes and aliases nothing for
that version while the rest proceeds; stored results are read back through both SDK generations."""

from __future__ import annotations

import io
import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from .helpers import Env, dataset_tasks, write_tree

pytestmark = pytest.mark.integration


def _png(color: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (color, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _manifest(env: Env, *, second: bool) -> Path:
    text = textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: {env.project}
        name: gated
        aliases: {{production: {'1.1.0' if second else '1.0.0'}}}
        checks:
          - name: no-empty
            rule: empty_files
          - name: decodable
            rule: images
            min_width: 4
          - name: few-dupes
            rule: duplicates
            severity: warn
        versions:
          - version: 1.0.0
            sources: [{{path: ../data/v1}}]
        """)
    if second:
        text += textwrap.indent(textwrap.dedent("""\
            - version: 1.1.0
              parent: 1.0.0
              sources: [{path: ../data/v2}]
              publish: true
            """), "  ")
    path = env.work / "manifests" / "gated.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


READ_CHECKS = """
import json, sys
from clearml import Dataset
ds = Dataset.get(dataset_project=sys.argv[1], dataset_name="gated", dataset_version="1.0.0")
print("@@" + json.dumps(ds.get_metadata("checks")))
"""


def test_a_failing_check_holds_its_version_and_the_results_are_stored(env: Env,
                                                                      request: pytest.FixtureRequest) -> None:
    write_tree(env.work / "data" / "v1", {"train/cat/1.png": _png(1), "train/cat/2.png": _png(2),
                                          "train/dog/1.png": _png(1), "notes.txt": "ok"})
    write_tree(env.work / "data" / "v2", {"train/dog/2.png": b"\x89PNG broken", "empty.txt": ""})
    _manifest(env, second=False)
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "'few-dupes' (duplicates) warns" in res.stdout and "train/dog/1.png" in res.stdout

    path = _manifest(env, second=True)
    plan = env.reconcile("plan", "manifests")
    assert plan.returncode == 1, plan.stdout + plan.stderr
    rel = "manifests/gated.yaml"
    assert f"{rel}:7:5: error: check 'no-empty' (empty_files) of {env.project}/gated@1.1.0 failed" in plan.stderr
    assert f"{rel}:9:5: error: check 'decodable' (images)" in plan.stderr and "train/dog/2.png" in plan.stderr
    assert "empty.txt" in plan.stderr and "held" in plan.stdout
    md = env.reconcile("plan", "--format", "markdown", "manifests")
    assert md.returncode == 1 and "`train/dog/2.png`" in md.stdout and f"`{rel}:9:5`" in md.stdout
    as_json = env.reconcile("plan", "--format", "json", "manifests")
    data = json.loads(as_json.stdout)
    assert [h["version"]["version"] for h in data["held"]] == ["1.1.0"]
    failed = {c["name"] for v in data["checks"] for c in v["checks"] if c["status"] == "fail"}
    assert failed == {"no-empty", "decodable"}

    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "held by failing checks" in res.stderr
    tasks = dataset_tasks(env, env.project, "gated")
    assert [t["version"] for t in tasks] == ["1.0.0"]  # 1.1.0 was never created, so never published
    assert "production" in tasks[0]["tags"]  # the alias did not move

    got = env.sdk("""
        from clearml import Task
        ds = Dataset.get(dataset_project=PROJECT, dataset_name="gated", dataset_version="1.0.0")
        plots = Task.get_task(task_id=ds.id).get_reported_plots()
        result = dict(checks=ds.get_metadata("checks"), plots=sorted({p["metric"] for p in plots}))
    """)
    stored = got["checks"]  # type: ignore[index]
    assert stored["format_version"] == 1 and stored["version"] == f"{env.project}/gated@1.0.0"
    by_name = {c["name"]: c for c in stored["checks"]}
    assert by_name["no-empty"]["status"] == "pass" and by_name["decodable"]["status"] == "pass"
    assert by_name["few-dupes"]["status"] == "warn" and by_name["few-dupes"]["offending"] == ["train/dog/1.png"]
    assert by_name["few-dupes"]["location"] == f"{path.relative_to(env.work)}:12:5"
    assert "Checks" in got["plots"]  # type: ignore[index]

    oldest = request.getfixturevalue("oldest_sdk_python")
    proc = subprocess.run([str(oldest), "-c", READ_CHECKS, env.project], cwd=env.work,
                          env={**env.vars(), "PYTHONPATH": ""}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:]) == stored

    # the offline check sees the same, and the fixed version goes through
    assert env.reconcile("check", "manifests").returncode == 1
    (env.work / "data" / "v2" / "empty.txt").write_text("now full")
    (env.work / "data" / "v2" / "train" / "dog" / "2.png").write_bytes(_png(3))
    assert env.reconcile("check", "manifests").returncode == 0
    res = env.reconcile("apply", "--auto-approve", "manifests")
    assert res.returncode == 0, res.stdout + res.stderr
    tasks = {t["version"]: t for t in dataset_tasks(env, env.project, "gated")}
    assert tasks["1.1.0"]["status"] == "published" and "production" in tasks["1.1.0"]["tags"]
    assert "production" not in tasks["1.0.0"]["tags"]
