"""Checks in the manifests and in the plan: overrides by name, located loader errors, failing versions held
(no action, descendants held, aliases left where they are) while the rest of the plan proceeds."""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.checks import CheckResult, VersionChecks
from reconciler.diagnostics import ReconcileError, SourceSpan
from reconciler.manifest import load_manifests
from reconciler.model import (
    CheckSpec,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    FileEntry,
    ObservedState,
    ObservedVersion,
    Properties,
    VersionKey,
    VersionSpec,
    freeze_json,
)
from reconciler.plan.actions import Finalize, SetChecks, SetProperties
from reconciler.plan.contents import SourceFiles, compute_contents
from reconciler.plan.planner import compute_plan, versions_to_check
from reconciler.plancodec import plan_from_json, plan_to_json
from reconciler.render import render_human, render_markdown

P, N = "proj", "dsx"


def vk(version: str) -> VersionKey:
    return VersionKey(P, N, version)


def f(path: str, text: str) -> FileEntry:
    return FileEntry(path, len(text), hashlib.sha256(text.encode()).hexdigest(), f"/data/{path}")


def manifest(tmp_path: Path, body: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.txt").write_text("a")
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_version_checks_replace_the_datasets_by_name(tmp_path: Path) -> None:
    path = manifest(tmp_path, """\
        apiVersion: reconciler/v1
        kind: Dataset
        project: proj
        name: dsx
        checks:
          - {name: enough, rule: files, error_if: "<1"}
          - {name: no-empty, rule: empty_files}
        versions:
          - version: 1.0.0
            sources: [{path: data}]
          - version: 1.1.0
            parent: 1.0.0
            checks:
              - {name: enough, rule: files, error_if: "<2", severity: warn}
              - {name: no-empty, enabled: false}
              - {name: cmd, rule: command, run: [./tool.sh, --x], timeout: 5}
    """)
    state = load_manifests([path], cache=None)
    v1, v2 = state.dataset(DatasetKey(P, N)).versions
    assert [(c.name, c.error_if) for c in v1.checks] == [("enough", "<1"), ("no-empty", None)]
    assert [(c.name, c.severity) for c in v2.checks] == [("enough", "warn"), ("cmd", "error")]
    assert v1.checks[0].span == SourceSpan(str(path), 6, 5)
    cmd = v2.checks[1]
    assert cmd.params["run"] == (str(tmp_path / "tool.sh"), "--x") and cmd.params["cwd"] == str(tmp_path)


def test_check_mistakes_are_located(tmp_path: Path) -> None:
    path = manifest(tmp_path, """\
        apiVersion: reconciler/v1
        kind: Dataset
        project: proj
        name: dsx
        checks:
          - {name: a, rule: files}
          - {name: b, rule: extensions}
          - {name: c, rule: empty_files, min_width: 3}
          - {name: d, rule: bytes, error_if: "lots"}
          - {name: e, rule: annotations, glob: "*.json", schema_file: missing.json}
          - {name: a, rule: duplicates}
          - {name: f, rule: nope}
        versions:
          - version: 1.0.0
            sources: [{path: data}]
    """)
    with pytest.raises(ReconcileError) as err:
        load_manifests([path], cache=None)
    lines = str(err.value).splitlines()
    assert f"{path}:6:5: error: checks[0]: rule 'files' measures" in lines[0]
    assert any(":7:5:" in x and "rule 'extensions' needs 'allowed'" in x for x in lines)
    assert any(":8:" in x and "'min_width' is not an option of rule 'empty_files'" in x for x in lines)
    assert any(":9:" in x and "'lots' is not a condition" in x for x in lines)
    assert any(":10:" in x and "'missing.json' does not exist" in x for x in lines)
    assert any(":11:" in x and "a check named 'a' is already given" in x for x in lines)
    assert any(":12:" in x and "nope" in x for x in lines)


SPEC = CheckSpec("no-empty", "empty_files", span=SourceSpan("m.yaml", 7, 5))


def result(status: str) -> CheckResult:
    return CheckResult("no-empty", "empty_files", "error", status, 1 if status == "fail" else 0, "!=0",
                       ("bad.txt",) if status == "fail" else (), 1 if status == "fail" else 0,
                       "files of 0 bytes: 1", SourceSpan("m.yaml", 7, 5))


def desired_with_alias() -> DesiredState:
    base = Properties("d", frozenset({"a"}))
    v1 = VersionSpec(vk("1.0.0"), properties=base)
    v2 = VersionSpec(vk("1.1.0"), parents=(vk("1.0.0"),), checks=(SPEC,), publish=True,
                     properties=Properties("d", frozenset({"a", "production"})))
    v3 = VersionSpec(vk("1.2.0"), parents=(vk("1.1.0"),), properties=base)
    other = VersionSpec(VersionKey(P, "other", "1.0.0"), checks=(SPEC,), properties=base)
    aliases = freeze_json({"production": "1.1.0"})
    return DesiredState((DatasetSpec(DatasetKey(P, N), (v1, v2, v3), base, aliases=aliases),
                         DatasetSpec(DatasetKey(P, "other"), (other,), base)))


OWN = {vk("1.0.0"): SourceFiles(files=(f("a.txt", "a"),)), vk("1.1.0"): SourceFiles(files=(f("bad.txt", ""),)),
       vk("1.2.0"): SourceFiles(files=(f("c.txt", "c"),)),
       VersionKey(P, "other", "1.0.0"): SourceFiles(files=(f("o.txt", "o"),))}


def test_a_failing_version_is_held_with_its_descendants_and_keeps_no_alias() -> None:
    desired = desired_with_alias()
    contents = compute_contents(desired, OWN)
    v1 = ObservedVersion(vk("1.0.0"), "id1", "completed", Properties("d", frozenset({"a", "production"})),
                         files=(f("a.txt", "a"),), links=(), managed=True,
                         content_digest=contents[vk("1.0.0")].digest())
    observed = ObservedState((v1,))
    first = compute_plan(desired, contents, observed)
    assert set(versions_to_check(desired, first)) == {vk("1.1.0"), VersionKey(P, "other", "1.0.0")}
    checks = {vk("1.1.0"): VersionChecks(vk("1.1.0"), "x", (result("fail"),)),
              VersionKey(P, "other", "1.0.0"): VersionChecks(VersionKey(P, "other", "1.0.0"), "y", (result("pass"),))}
    plan = compute_plan(desired, contents, observed, checks=checks)
    touched = {a.version for a in plan.actions}
    assert vk("1.1.0") not in touched and vk("1.2.0") not in touched  # not created, finalized nor published
    assert [h.version for h in plan.held] == [vk("1.1.0"), vk("1.2.0")]
    assert not plan.aliases  # production stays on 1.0.0
    assert not any(isinstance(a, SetProperties) and a.version == vk("1.0.0") for a in plan.actions)
    other = [type(a).__name__ for a in plan.actions if a.version.name == "other"]
    assert other.index("SetChecks") < other.index("Finalize")  # the rest proceeds, results stored first
    assert plan.summary().held == 2 and not plan.conflicts
    assert plan_from_json(plan_to_json(plan)) == plan
    text = render_human(plan)
    assert "m.yaml:7:5: check 'no-empty' (empty_files) failed" in text and "bad.txt" in text
    assert "proj/dsx@1.1.0 is held" in text and "2 held by failing checks" in text
    md = render_markdown(plan)
    assert "Checks" in md and "`bad.txt`" in md and "`m.yaml:7:5`" in md


def test_passing_checks_let_the_version_through_with_its_results() -> None:
    desired = desired_with_alias()
    contents = compute_contents(desired, OWN)
    checks = {k: VersionChecks(k, "x", (result("pass"),)) for k in (vk("1.1.0"), VersionKey(P, "other", "1.0.0"))}
    plan = compute_plan(desired, contents, ObservedState(), checks=checks)
    mine = [a for a in plan.actions if a.version == vk("1.1.0")]
    kinds = [type(a) for a in mine]
    assert kinds.index(SetChecks) < kinds.index(Finalize) and not plan.held
    assert replace(plan, checks=()).held == ()


def test_the_schema_knows_every_rule_and_option() -> None:
    from reconciler.checks.catalog import COMMON_OPTIONS, RULE_OPTIONS, RULES
    from reconciler.manifest import manifest_schema

    check = manifest_schema()["$defs"]["check"]
    assert tuple(check["properties"]["rule"]["enum"]) == RULES
    assert set(check["properties"]) == COMMON_OPTIONS | {o for opts in RULE_OPTIONS.values() for o in opts}


def test_reconcile_check_alone_in_every_format(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    path = manifest(tmp_path, """\
        apiVersion: reconciler/v1
        kind: Dataset
        project: proj
        name: dsx
        checks:
          - {name: no-empty, rule: empty_files}
          - {name: enough, rule: files, error_if: "<1", warn_if: "<5"}
        versions:
          - version: 1.0.0
            sources: [{path: data}]
    """)

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler.cli", "check", *args, str(path)], cwd=tmp_path,
                              capture_output=True, text=True, env={**__import__("os").environ, "NO_COLOR": "1",
                                                                    "HOME": str(tmp_path)}, timeout=120)

    ok = check()
    assert ok.returncode == 0, ok.stderr
    assert "WARN enough (files)" in ok.stdout and "1 version checked: 1 passed, 1 warned, 0 failed." in ok.stdout
    (tmp_path / "data" / "empty.txt").write_text("")
    text, as_json, md = check(), check("--format", "json"), check("--format", "markdown")
    assert text.returncode == as_json.returncode == md.returncode == 1
    assert text.stderr.startswith("m.yaml:6:5: error: check 'no-empty' (empty_files) of proj/dsx@1.0.0 failed")
    assert "FAIL no-empty (empty_files)" in text.stdout and "empty.txt" in text.stdout
    data = json.loads(as_json.stdout)
    assert data["summary"] == {"passed": 0, "warned": 1, "failed": 1}
    assert data["versions"][0]["checks"][0]["offending"] == ["empty.txt"]
    assert "| `proj/dsx@1.0.0` | `no-empty` | fail |" in md.stdout and "`empty.txt`" in md.stdout


def test_check_paths_move_into_an_agents_checkout() -> None:
    from reconciler.steps import move_check_paths

    specs = (CheckSpec("s", "annotations", params=freeze_json({"glob": "*.json", "schema_file": "/repo/s.json"})),
             CheckSpec("c", "command", params=freeze_json({"run": ["/repo/tools/gate", "--strict"], "cwd": "/repo"})),
             CheckSpec("p", "command", params=freeze_json({"run": ["python3", "-c", "pass"], "cwd": "/elsewhere"})))
    action = SetChecks(vk("1.0.0"), VersionChecks(vk("1.0.0"), "d", ()), specs)
    sent = move_check_paths(action, lambda p: p.removeprefix("/repo/").removeprefix("/repo") or ".")
    assert isinstance(sent, SetChecks)
    assert [dict(s.params) for s in sent.specs][:1] == [{"glob": "*.json", "schema_file": "s.json"}]
    assert sent.specs[1].params["run"] == ("tools/gate", "--strict") and sent.specs[1].params["cwd"] == "."
    assert sent.specs[2].params["run"] == ("python3", "-c", "pass")  # a program found on PATH stays as it is
    back = move_check_paths(sent, lambda p: p if p.startswith("/") else f"/agent/{p}")
    assert back.specs[0].params["schema_file"] == "/agent/s.json"
    assert back.specs[1].params["run"][0] == "/agent/tools/gate"
    assert move_check_paths(Finalize(vk("1.0.0"), "d"), str.upper) == Finalize(vk("1.0.0"), "d")
