"""``action.yml`` and the example workflows: valid YAML, and in step with each other and with the runner module.

No GitHub here, so what can be checked offline is checked: the action is a composite that installs its own
checkout and runs ``reconciler.ci.github``; every input reaches the module; every example uses the action with
inputs it declares and outputs it sets, in the mode its trigger calls for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import reconciler.ci.github as runner

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "github"
ACTION_REF = re.compile(r"^[A-Za-z0-9_.-]+/clearml-dataset-reconciler@[A-Za-z0-9_./-]+$")
EXPECTED = {  # file -> (trigger, modes of its reconcile steps in order)
    "plan-on-pull-request.yml": ("pull_request", ["plan"]),
    "apply-on-merge.yml": ("push", ["plan", "apply"]),
    "nightly-drift.yml": ("schedule", ["drift"]),
}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    if True in data:  # YAML 1.1 reads the key `on` as a boolean; GitHub reads it as the string
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    return load(REPO / "action.yml")


def test_action_is_a_composite_that_installs_its_own_checkout(action: dict[str, Any]):
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    install = next(s for s in steps if s.get("id") == "install")
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert "pip install" in install["run"] and '"$ACTION_PATH[$EXTRAS]"' in install["run"]
    assert {"python-version", "extras"} <= set(action["inputs"])
    run = next(s for s in steps if s.get("id") == "reconcile")
    assert run["run"] == '"$RECONCILE_PYTHON" -m reconciler.ci.github'
    assert "${{" not in run["run"], "inputs go through env:, never into the shell line"
    assert set(action["outputs"]) == {"mode", "exitcode", "has-changes", "plan-json"}
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.reconcile.outputs.{name} }}}}"


def test_every_input_reaches_the_runner(action: dict[str, Any]):
    run = next(s for s in action["runs"]["steps"] if s.get("id") == "reconcile")
    passed = {m.group(1) for v in run["env"].values() if (m := re.fullmatch(r"\$\{\{ inputs\.([\w-]+) \}\}", v))}
    handled_elsewhere = {"python-version", "extras", "working-directory"}
    assert passed | handled_elsewhere == set(action["inputs"])
    assert run["working-directory"] == "${{ inputs.working-directory }}"
    source = Path(runner.__file__).read_text(encoding="utf-8")
    for name in run["env"]:
        if name.startswith("RECONCILE_") and name != "RECONCILE_PYTHON":
            assert f'"{name}"' in source, f"{name} is set by action.yml but never read by the runner"
    assert run["env"]["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert action["inputs"]["mode"]["default"] == "auto"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_workflow_uses_the_action_in_the_right_mode(name: str, action: dict[str, Any]):
    workflow = load(EXAMPLES / name)
    trigger, modes = EXPECTED[name]
    assert trigger in workflow["on"]
    used: list[str] = []
    for job in workflow["jobs"].values():
        assert job["runs-on"] and job["steps"][0]["uses"].startswith("actions/checkout@")
        assert job["env"]["CLEARML_API_SECRET_KEY"] == "${{ secrets.CLEARML_API_SECRET_KEY }}"
        step_ids = {}
        for step in job["steps"]:
            if ACTION_REF.match(step.get("uses", "")):
                inputs = step.get("with", {})
                assert set(inputs) <= set(action["inputs"]), set(inputs) - set(action["inputs"])
                used.append(inputs["mode"])
                if "id" in step:
                    step_ids[step["id"]] = step
        text = yaml.safe_dump(job)
        for step_id, output in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", text):
            assert step_id in step_ids, f"{name}: steps.{step_id} is not a reconcile step"
            assert output in action["outputs"], f"{name}: the action has no output {output}"
    assert used == modes


def test_pull_request_plan_may_comment():
    workflow = load(EXAMPLES / "plan-on-pull-request.yml")
    assert workflow["permissions"]["pull-requests"] == "write"


def test_apply_on_merge_applies_the_saved_plan_of_the_same_run():
    workflow = load(EXAMPLES / "apply-on-merge.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    plan_job, apply_job = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    upload = next(s for s in plan_job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "${{ steps.plan.outputs.plan-json }}"
    assert apply_job["needs"] == "plan" and "needs.plan.outputs.has-changes" in apply_job["if"]
    assert apply_job["environment"]
    download = next(s for s in apply_job["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["name"] == upload["with"]["name"]
    apply_step = next(s for s in apply_job["steps"] if ACTION_REF.match(s.get("uses", "")))
    # upload-artifact keeps a single file's base name; the plan job saves it under RUNNER_TEMP
    assert apply_step["with"]["saved-plan"] == download["with"]["path"] + "/reconcile-plan.json"
    assert Path(runner.parse_settings([], {"RUNNER_TEMP": "/runner/temp"}).plan_out).name == "reconcile-plan.json"


def test_nightly_drift_runs_on_a_schedule():
    workflow = load(EXAMPLES / "nightly-drift.yml")
    (entry,) = workflow["on"]["schedule"]
    assert len(entry["cron"].split()) == 5
