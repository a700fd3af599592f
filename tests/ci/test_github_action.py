"""The GitHub Action's runner, ``python -m reconciler.ci.github``, as a job step runs it.

Each run gets fresh ``GITHUB_OUTPUT`` and ``GITHUB_STEP_SUMMARY`` files and a GitHub event payload, talks to a
fake GitHub REST API on loopback (:mod:`fake_github`, every request recorded) and drives the real ``reconcile``
CLI against the embedded server (``--local --data-dir`` in a temporary folder, HOME isolated) on a copy of the
repository's ``manifests/sample/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_github import TOKEN, FakeGitHub, fake_github

from reconciler.ci.github import (
    MARKER_PREFIX,
    GitHubContext,
    Mode,
    comment_body,
    fenced,
    marker,
    resolve_mode,
    write_outputs,
)
from reconciler.localserver import LocalServer

REPO = Path(__file__).resolve().parents[2]
STAND_IN = Path(__file__).with_name("reconcile_drift_stand_in.py")
PR_NUMBER = 7
HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"


def parse_outputs(text: str) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as the runner reads it: ``name=value`` lines and ``name<<DELIM`` blocks."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                value.append(inner)
            out[name] = "\n".join(value)
        elif "=" in line:
            name, value_text = line.split("=", 1)
            out[name] = value_text
    return out


@dataclass
class StepRun:
    returncode: int
    outputs: dict[str, str]
    summary: str
    stdout: str
    stderr: str
    requests: list[Any] = field(default_factory=list)  # GitHub API requests made by this run


@dataclass
class Job:
    """A checkout with the sample manifests, an isolated HOME and the embedded server's data folder."""

    root: Path
    github: FakeGitHub
    runs: int = 0

    @property
    def work(self) -> Path:
        return self.root / "checkout"

    @property
    def data_dir(self) -> Path:
        return self.root / "server"

    def env(self, event_name: str, event: dict[str, Any], ref: str, **settings: str) -> dict[str, str]:
        self.runs += 1
        step = self.root / f"step{self.runs}"
        step.mkdir()
        (step / "event.json").write_text(json.dumps(event))
        foreign = ("CLEARML_", "TRAINS_", "GITHUB_", "RECONCILE_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
        home = self.root / "home"
        env.update(
            CI="true", GITHUB_ACTIONS="true", HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
            NO_PROXY="127.0.0.1,localhost", RUNNER_TEMP=str(self.root / "runner-temp"),
            GITHUB_EVENT_NAME=event_name, GITHUB_EVENT_PATH=str(step / "event.json"), GITHUB_REF=ref,
            GITHUB_SHA=HEAD_SHA, GITHUB_REPOSITORY=self.github.repository, GITHUB_API_URL=self.github.url,
            GITHUB_SERVER_URL="https://github.example", GITHUB_RUN_ID=str(4200 + self.runs), GITHUB_TOKEN=TOKEN,
            GITHUB_OUTPUT=str(step / "output"), GITHUB_STEP_SUMMARY=str(step / "summary.md"),
            RECONCILE_PATHS="manifests/sample/", RECONCILE_GLOBAL_ARGS=f"--local --data-dir {self.data_dir}",
        )
        env.update({f"RECONCILE_{k.upper()}": v for k, v in settings.items()})
        (step / "output").touch()
        (step / "summary.md").touch()
        return env

    def run(self, event_name: str, event: dict[str, Any], ref: str, **settings: str) -> StepRun:
        env = self.env(event_name, event, ref, **settings)
        before = len(self.github.requests)
        proc = subprocess.run([sys.executable, "-m", "reconciler.ci.github"], cwd=self.work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert TOKEN not in proc.stdout and TOKEN not in proc.stderr, "the GitHub token was printed"
        assert "Traceback" not in proc.stderr, proc.stderr
        return StepRun(proc.returncode, parse_outputs(Path(env["GITHUB_OUTPUT"]).read_text()),
                       Path(env["GITHUB_STEP_SUMMARY"]).read_text(), proc.stdout, proc.stderr,
                       self.github.requests[before:])

    def pull_request(self, **settings: str) -> StepRun:
        event = {"action": "synchronize", "number": PR_NUMBER,
                 "pull_request": {"number": PR_NUMBER, "head": {"sha": HEAD_SHA, "ref": "feature"}},
                 "repository": {"full_name": self.github.repository, "default_branch": "main"}}
        return self.run("pull_request", event, f"refs/pull/{PR_NUMBER}/merge", **settings)

    def push_to_main(self, **settings: str) -> StepRun:
        event = {"ref": "refs/heads/main", "after": HEAD_SHA,
                 "repository": {"full_name": self.github.repository, "default_branch": "main"}}
        return self.run("push", event, "refs/heads/main", **settings)

    def schedule(self, **settings: str) -> StepRun:
        return self.run("schedule", {"schedule": "0 3 * * *"}, "refs/heads/main", **settings)


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    with fake_github() as gh:
        j = Job(tmp_path, gh)
        shutil.copytree(REPO / "manifests" / "sample", j.work / "manifests" / "sample")
        (tmp_path / "home").mkdir()
        yield j


def marked_comments(job: Job) -> list[dict[str, Any]]:
    return [c for c in job.github.comments_on(PR_NUMBER) if MARKER_PREFIX in c["body"]]


def test_pull_request_plan_is_one_comment_updated_in_place(job: Job):
    for i in range(101):  # the conversation so far: more than one page of other people's comments
        job.github.add_comment(PR_NUMBER, f"comment {i}: looks good, but see <!-- an unrelated html comment -->")

    first = job.pull_request()
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.outputs["mode"] == "plan"
    assert first.outputs["exitcode"] == "2" and first.outputs["has-changes"] == "true"
    plan_json = Path(first.outputs["plan-json"])
    assert plan_json == job.root / "runner-temp" / "reconcile-plan.json"
    saved = json.loads(plan_json.read_text())
    assert saved["summary"]["has_changes"] is True and saved["summary"]["create"] == 2
    assert first.summary.startswith("### Dataset plan")
    assert "clearml_datasets/Shapes@1.0.0" in first.summary and "clearml_datasets/Shapes@1.1.0" in first.summary

    (post,) = [r for r in first.requests if r.method == "POST"]
    assert not [r for r in first.requests if r.method == "PATCH"]
    assert post.path == f"/repos/acme/datasets/issues/{PR_NUMBER}/comments"
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.headers["x-github-api-version"] == "2022-11-28"
    assert post.headers["accept"] == "application/vnd.github+json"
    pages = [r.query["page"] for r in first.requests if r.method == "GET"]
    assert pages == [["1"], ["2"]]  # the whole conversation was searched before creating
    body = post.body["body"]
    assert body.splitlines()[0] == marker(Mode.PLAN, "manifests/sample/")
    assert "### Dataset plan" in body and "clearml_datasets/Shapes@1.1.0" in body
    assert HEAD_SHA[:12] in body and "https://github.example/acme/datasets/actions/runs/" in body
    (ours,) = marked_comments(job)
    comment_id = ours["id"]

    again = job.pull_request()
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.outputs["exitcode"] == "2" and again.outputs["has-changes"] == "true"
    assert not [r for r in again.requests if r.method == "POST"], "a second comment was created"
    (patch,) = [r for r in again.requests if r.method == "PATCH"]
    assert patch.path == f"/repos/acme/datasets/issues/comments/{comment_id}"
    assert [c["id"] for c in marked_comments(job)] == [comment_id]

    # merged: apply the reviewed plan on the default branch
    reviewed = job.root / "reviewed-plan.json"
    shutil.copy(plan_json, reviewed)
    merged = job.push_to_main(saved_plan=str(reviewed))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert merged.outputs == {"mode": "apply", "exitcode": "0", "has-changes": "true", "plan-json": str(reviewed)}
    assert merged.summary.startswith("### Dataset apply")
    assert "Apply complete!" in merged.summary and "2 versions created" in merged.summary
    assert merged.requests == []  # no pull request: no comment

    after = job.pull_request()
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.outputs["exitcode"] == "0" and after.outputs["has-changes"] == "false"
    assert "No changes" in after.summary
    assert [r.method for r in after.requests if r.method in ("POST", "PATCH")] == ["PATCH"]
    (ours,) = marked_comments(job)
    assert ours["id"] == comment_id and "No changes" in ours["body"] and "Shapes@1.1.0" not in ours["body"]
    assert len(job.github.comments_on(PR_NUMBER)) == 102


def test_a_broken_manifest_fails_the_step_and_says_where(job: Job):
    bad = job.work / "manifests" / "sample" / "broken.yaml"
    bad.write_text(textwrap.dedent("""\
        apiVersion: reconciler/v1
        kind: Dataset
        project: clearml_datasets
        name: Broken
        versions:
          - version: "one@two"
        """))
    run = job.pull_request()
    assert run.returncode == 1
    assert run.outputs == {"mode": "plan", "exitcode": "1", "has-changes": "false", "plan-json": ""}
    located = "manifests/sample/broken.yaml:6:14: error: versions[0].version: 'one@two' is not a version"
    assert run.summary.startswith("### Dataset plan") and located in run.summary
    assert f"::error::reconcile plan failed: {located}" in run.stdout
    (post,) = [r for r in run.requests if r.method == "POST"]
    assert located in post.body["body"] and post.body["body"].startswith(MARKER_PREFIX)


def test_a_read_only_token_leaves_the_plan_in_the_summary(job: Job):
    job.github.refuse_writes = True
    run = job.pull_request()
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.outputs["exitcode"] == "2" and "### Dataset plan" in run.summary
    assert f"::warning::the pull-request comment was not updated: POST /repos/acme/datasets/issues/{PR_NUMBER}/" \
           "comments: HTTP 403 Resource not accessible by integration" in run.stdout
    assert job.github.comments_on(PR_NUMBER) == []


def _drift_only_available() -> bool:
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "plan", "--help"], capture_output=True, text=True,
                          timeout=120)
    return "--drift-only" in proc.stdout


def _edit_tags_behind_the_tools_back(job: Job) -> None:
    """What someone does in the web UI: add a tag to a version the tool manages."""
    server = LocalServer(job.data_dir, port=0).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
        env.update(server.client_env(), HOME=str(job.root / "home"))
        code = textwrap.dedent("""\
            from clearml import Dataset, Task
            ds = Dataset.get(dataset_project="clearml_datasets", dataset_name="Shapes", dataset_version="1.0.0")
            Task.get_task(task_id=ds.id).add_tags(["edited-in-the-ui"])
            print(sorted(Task.get_task(task_id=ds.id).get_tags()))
            """)
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=job.root, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "edited-in-the-ui" in proc.stdout.splitlines()[-1]
    finally:
        server.stop()


def test_nightly_drift_check(job: Job):
    """Drift mode on a schedule: nothing after an apply, then a tag edited on the server is drift (exit code 2)."""
    command = "" if _drift_only_available() else f"{sys.executable} {STAND_IN}"

    applied = job.push_to_main()  # apply --auto-approve of the manifests, no saved plan
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.outputs == {"mode": "apply", "exitcode": "0", "has-changes": "true", "plan-json": ""}

    quiet = job.schedule(command=command)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert quiet.outputs["mode"] == "drift"
    assert quiet.outputs["exitcode"] == "0" and quiet.outputs["has-changes"] == "false"
    assert quiet.summary.startswith("## Drift check: none")

    _edit_tags_behind_the_tools_back(job)
    drifted = job.schedule(command=command)
    assert drifted.returncode == 2, drifted.stdout + drifted.stderr
    assert drifted.outputs["exitcode"] == "2" and drifted.outputs["has-changes"] == "true"
    assert Path(drifted.outputs["plan-json"]).is_file()
    assert drifted.summary.startswith("## Drift check: :warning: drift found")
    assert "edited-in-the-ui" in drifted.summary
    assert "::error::drift: the server was changed outside the manifests" in drifted.stdout
    assert drifted.requests == []

    tolerated = job.schedule(command=command, fail_on_drift="false")
    assert tolerated.returncode == 0 and tolerated.outputs["has-changes"] == "true"
    assert "::warning::drift" in tolerated.stdout


# --- the pure parts ----------------------------------------------------------------------------------------


def _ctx(event_name: str, ref: str, event: dict[str, Any] | None = None) -> GitHubContext:
    payload = event if event is not None else {"repository": {"default_branch": "main"}}
    return GitHubContext(event_name, payload, ref, HEAD_SHA, "acme/datasets", "https://api.example",
                         "https://github.example", "1", None, None, token=TOKEN)


@pytest.mark.parametrize(("requested", "event_name", "ref", "expected"), [
    ("auto", "pull_request", "refs/pull/7/merge", Mode.PLAN),
    ("auto", "pull_request_target", "refs/heads/main", Mode.PLAN),
    ("auto", "push", "refs/heads/main", Mode.APPLY),
    ("auto", "workflow_dispatch", "refs/heads/main", Mode.APPLY),
    ("auto", "push", "refs/heads/feature", Mode.PLAN),
    ("auto", "push", "refs/tags/v1", Mode.PLAN),
    ("auto", "schedule", "refs/heads/main", Mode.DRIFT),
    ("plan", "push", "refs/heads/main", Mode.PLAN),
    ("apply", "pull_request", "refs/pull/7/merge", Mode.APPLY),
    ("drift", "push", "refs/heads/main", Mode.DRIFT),
])
def test_mode_resolution(requested: str, event_name: str, ref: str, expected: Mode):
    assert resolve_mode(requested, _ctx(event_name, ref)) is expected


def test_auto_never_applies_without_knowing_the_default_branch():
    assert resolve_mode("auto", _ctx("push", "refs/heads/main", event={})) is Mode.PLAN


def test_the_token_is_not_in_the_context_repr():
    assert TOKEN not in repr(_ctx("push", "refs/heads/main"))


def test_marker_cannot_close_the_html_comment_early():
    mark = marker(Mode.PLAN, "a-->b --> c")
    assert mark.startswith("<!--") and mark.endswith("-->") and mark.count("-->") == 1
    assert marker(Mode.PLAN, "x") != marker(Mode.DRIFT, "x") != marker(Mode.PLAN, "y")


def test_fence_is_longer_than_any_backtick_run_inside():
    text = "a ``` b ```` c"
    block = fenced(text)
    assert block.startswith("`````text\n") and block.endswith("\n`````")


def test_multiline_output_uses_a_delimiter(tmp_path: Path):
    out = tmp_path / "output"
    write_outputs(out, {"one": "1", "many": "a\nb=c\nd"})
    assert parse_outputs(out.read_text()) == {"one": "1", "many": "a\nb=c\nd"}


def test_a_huge_report_is_cut_to_a_postable_comment():
    from reconciler.ci.github import COMMENT_LIMIT, Outcome

    report = "### Dataset plan\n\n```text\n" + "x" * 200_000 + "\n```\n"
    outcome = Outcome(Mode.PLAN, 2, True, "", report, False, "")
    mark = marker(Mode.PLAN, "manifests/")
    body = comment_body(outcome, _ctx("pull_request", "refs/pull/7/merge"), mark)
    assert len(body) <= COMMENT_LIMIT and body.startswith(mark)
    assert body.count("```") % 2 == 0 and "cut to fit a comment" in body


def test_the_runner_does_not_import_clearml():
    code = "import sys, reconciler.ci.github; print(sorted(m for m in sys.modules if m.split('.')[0] == 'clearml'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def _stand_in(job: Job, name: str, stdout: str) -> str:
    """A ``reconcile`` that prints ``stdout`` and exits 0, whatever it is asked (for the apply mode's reading)."""
    script = job.root / f"{name}.py"
    script.write_text(f"import sys\nsys.stdout.write({stdout!r})\n")
    return f"{sys.executable} {script}"


def test_the_apply_mode_reads_events_not_text(job: Job):
    from reconciler.events import ActionStarted, ApplyComplete, Notice, PlanReady, UploadProgress
    from reconciler.model import VersionKey
    from reconciler.render.events import event_to_json

    v = VersionKey("clearml_datasets", "Shapes", "1.0.0")
    events = [PlanReady("Plan: 1 to create, 0 to update, 0 to archive, 0 conflicts.\n", 1, 1, 0, 0, 0, 0, 0),
              ActionStarted(1, 1, v, "create_version", f"create {v}"),
              Notice("waiting for the lock"),
              UploadProgress(v, 1, 512, 2, 1024, 1.0),
              ApplyComplete(True, 1, 1, 0, 0, 0.1)]
    stream = '{"type": "start", "@message": "reconcile 9", "format_version": "1.0"}\n' + "".join(
        json.dumps(event_to_json(e)) + "\n" for e in events)
    applied = job.push_to_main(command=_stand_in(job, "events", stream))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.outputs["has-changes"] == "true"
    # the summary and the log hold the events' human text, as apply prints it without --format json
    assert "Plan: 1 to create" in applied.summary and f"[1/1] create {v}" in applied.summary
    assert "Apply complete! 1 action, 1 version created, 0 files uploaded (0 B) in 0.1s." in applied.summary
    assert '"type"' not in applied.summary and "waiting for the lock" not in applied.summary
    assert "waiting for the lock" in applied.stderr and f"uploading {v}: 1/2 files" in applied.stderr
    assert f"[1/1] create {v}" in applied.stdout and "--format json" in applied.stdout

    nothing = ApplyComplete(False, 0, 0, 0, 0, 0.0)
    quiet = job.push_to_main(command=_stand_in(job, "quiet", json.dumps(event_to_json(nothing)) + "\n"))
    assert quiet.returncode == 0 and quiet.outputs["has-changes"] == "false"

    text = job.push_to_main(command=_stand_in(job, "text", "Apply complete! 1 action, 1 version created.\n"))
    assert text.returncode == 0 and text.outputs["has-changes"] == "false"  # English is no longer read
    assert "Apply complete! 1 action" in text.summary  # but a line that is not an event is kept as it came
