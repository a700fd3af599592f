"""``reconcile`` in a GitHub Actions job: plan on pull requests, apply on the default branch, drift on a schedule.

The repository's ``action.yml`` runs ``python -m reconciler.ci.github``. Every setting is an option whose default
comes from an environment variable (``RECONCILE_MODE``, ``RECONCILE_PATHS``, ...), so the action hands its inputs
over through ``env:`` and never splices them into a shell line. One run:

1. runs the ``reconcile`` CLI in a subprocess (the tool as users run it: same exit codes, same output), its
   output copied to the job log as it comes;
2. writes the step outputs to ``$GITHUB_OUTPUT``: ``mode``, ``exitcode`` (the CLI's), ``has-changes``,
   ``plan-json`` (path of the saved plan, empty when there is none);
3. appends the report to ``$GITHUB_STEP_SUMMARY``: the markdown plan, or the apply output (apply runs with
   ``--format json``: its events are read, and their human text goes to the job log and the summary);
4. on a pull request, keeps ONE comment up to date: the comment whose body carries this run's hidden marker is
   edited in place (PATCH); a comment is created (POST) only when none carries it.

The CLI contract it relies on: ``plan --detailed-exitcode`` exits 0 (no changes), 2 (changes) or 1 (error or
conflicts, the plan still printed); ``plan --drift-only --detailed-exitcode`` exits 0 (no drift), 2 (drift) or 1;
``apply --format json`` exits 0 or 1 and its ``apply_complete`` event says whether it changed the server.

Exit status of this program: 0 the job passes; 1 ``reconcile`` failed (or the settings are wrong); 2 drift was
found and ``--fail-on-drift`` is on. Standard library only (urllib for the REST API) and the package's pure
event views: it never imports clearml.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

from .._compat import assert_never
from ..escape import text as escape_text
from ..events import ApplyComplete, Event, PlanReady, UploadProgress, event_from_json
from ..render.events import message, text_line

MARKER_PREFIX = "<!-- clearml-dataset-reconciler"
COMMENT_LIMIT = 65_000  # GitHub refuses comment bodies over 65,536 characters
SUMMARY_LIMIT = 900_000  # and step summaries over 1 MiB
STDERR_TAIL_LINES = 40
PER_PAGE = 100
MAX_PAGES = 100


class Mode(Enum):
    PLAN = "plan"
    APPLY = "apply"
    DRIFT = "drift"


class SettingsError(Exception):
    """Wrong inputs or environment: reported on one line, exit 1."""


class GitHubError(Exception):
    """A failed REST call; the message names the method, path and status, never the token."""


@dataclass(frozen=True, slots=True)
class Settings:
    mode: str  # auto, plan, apply or drift
    paths: tuple[str, ...]
    saved_plan: Path | None  # apply: a plan saved by 'reconcile plan --out'
    plan_out: Path  # plan and drift: where the JSON plan is saved
    args: tuple[str, ...]  # after the subcommand: --target ..., --prune, --workers N
    global_args: tuple[str, ...]  # before it: --local, --data-dir DIR
    command: tuple[str, ...]  # how to run the CLI
    comment: bool
    comment_key: str
    fail_on_drift: bool


@dataclass(frozen=True, slots=True)
class GitHubContext:
    """What the runner tells a step about the run (the ``GITHUB_*`` variables and the event payload)."""

    event_name: str
    event: Mapping[str, Any]
    ref: str
    sha: str
    repository: str
    api_url: str
    server_url: str
    run_id: str
    output_file: Path | None
    summary_file: Path | None
    token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GitHubContext:
        event: Mapping[str, Any] = {}
        event_path = environ.get("GITHUB_EVENT_PATH", "")
        if event_path:
            try:
                loaded = json.loads(Path(event_path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise SettingsError(f"cannot read the event payload {event_path}: {err}") from None
            event = loaded if isinstance(loaded, dict) else {}

        def path(name: str) -> Path | None:
            value = environ.get(name, "")
            return Path(value) if value else None

        return cls(
            event_name=environ.get("GITHUB_EVENT_NAME", ""),
            event=event,
            ref=environ.get("GITHUB_REF", ""),
            sha=environ.get("GITHUB_SHA", ""),
            repository=environ.get("GITHUB_REPOSITORY", ""),
            api_url=environ.get("GITHUB_API_URL", "https://api.github.com"),
            server_url=environ.get("GITHUB_SERVER_URL", "https://github.com"),
            run_id=environ.get("GITHUB_RUN_ID", ""),
            output_file=path("GITHUB_OUTPUT"),
            summary_file=path("GITHUB_STEP_SUMMARY"),
            token=environ.get("GITHUB_TOKEN", ""),
        )

    @property
    def pull_request(self) -> Mapping[str, Any] | None:
        pr = self.event.get("pull_request")
        return pr if isinstance(pr, Mapping) and isinstance(pr.get("number"), int) else None

    @property
    def on_default_branch(self) -> bool:
        repo = self.event.get("repository")
        default = repo.get("default_branch") if isinstance(repo, Mapping) else None
        return isinstance(default, str) and bool(default) and self.ref == f"refs/heads/{default}"

    @property
    def head_sha(self) -> str:
        pr = self.pull_request
        head = pr.get("head") if pr else None
        sha = head.get("sha") if isinstance(head, Mapping) else None
        return sha if isinstance(sha, str) and sha else self.sha

    @property
    def run_url(self) -> str:
        if not (self.repository and self.run_id):
            return ""
        return f"{self.server_url.rstrip('/')}/{self.repository}/actions/runs/{self.run_id}"


def resolve_mode(requested: str, ctx: GitHubContext) -> Mode:
    """``auto``: plan on pull requests, drift on a schedule, apply on a push or manual run of the default branch,
    plan anywhere else."""
    if requested != "auto":
        return Mode(requested)
    if ctx.event_name in ("pull_request", "pull_request_target"):
        return Mode.PLAN
    if ctx.event_name == "schedule":
        return Mode.DRIFT
    if ctx.event_name in ("push", "workflow_dispatch") and ctx.on_default_branch:
        return Mode.APPLY
    return Mode.PLAN


# --- running the CLI ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _pump(source: IO[str], sink: IO[str], kept: list[str]) -> None:
    for line in source:
        kept.append(line)
        sink.write(line)
        sink.flush()


def _pump_events(source: IO[str], sinks: tuple[IO[str], IO[str]], kept: list[str], events: list[Event]) -> None:
    """A JSON event stream: each event's human text (what ``apply`` prints without ``--format json``) kept and
    copied to the job log (upload progress too); a line that is not an event passes as it came."""
    for line in source:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        event = event_from_json(obj) if isinstance(obj, dict) else None
        if event is None:
            if not (isinstance(obj, dict) and "@message" in obj):  # the stream's start, a newer event type
                kept.append(line)
                sinks[0].write(line)
                sinks[0].flush()
            continue
        events.append(event)
        if isinstance(event, PlanReady):
            shown: tuple[bool, str] | None = (False, event.text.rstrip("\n"))
        elif isinstance(event, UploadProgress):
            shown = (True, escape_text(message(event)))
        else:
            found = text_line(event)
            shown = None if found is None else (found[0], escape_text(found[1]))
        if shown is None:
            continue
        to_err, text = shown
        if not to_err:
            kept.append(text + "\n")
        sinks[to_err].write(text + "\n")
        sinks[to_err].flush()


def run_reconcile(settings: Settings, args: Sequence[str], events: list[Event] | None = None) -> Completed:
    """Run the CLI; its output is kept and also copied to this process's stdout and stderr as it comes. With
    ``events``, its stdout is an event stream (``--format json``): the events are kept there, their text in
    ``stdout``."""
    argv = (*settings.command, *settings.global_args, *args)
    print(f"$ {shlex.join(argv)}", flush=True)
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, env=env, bufsize=1)
    except OSError as err:
        return Completed(argv, 1, "", f"cannot run {argv[0]}: {err.strerror or err}\n")
    out: list[str] = []
    err_lines: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    reader = (threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, out), daemon=True) if events is None
              else threading.Thread(target=_pump_events, args=(proc.stdout, (sys.stdout, sys.stderr), out, events),
                                    daemon=True))
    threads = [reader, threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, err_lines), daemon=True)]
    for t in threads:
        t.start()
    returncode = proc.wait()
    for t in threads:
        t.join()
    return Completed(argv, returncode, "".join(out), "".join(err_lines))


# --- reports -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    mode: Mode
    exitcode: int  # the CLI's
    has_changes: bool
    plan_json: str
    report: str  # markdown
    failed: bool
    error: str  # first line of the CLI's error, for the annotation


def fenced(text: str, info: str = "text") -> str:
    """``text`` in a code fence longer than any run of backticks inside it."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def _error_text(result: Completed) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:]) or f"exit code {result.returncode}"


def _first_error(result: Completed) -> str:
    """The CLI's own one-line error: the last stderr line that says ``error``, else the last line."""
    lines = [ln.strip() for ln in result.stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else f"reconcile exited with {result.returncode}"


def _failure_block(result: Completed) -> str:
    return f"**`reconcile` failed (exit code {result.returncode}):**\n\n{fenced(_error_text(result))}"


def _plan_outcome(mode: Mode, result: Completed, plan_out: Path, heading: str) -> Outcome:
    failed = result.returncode not in (0, 2)
    parts = [heading] if heading else []
    if result.stdout.strip():
        parts.append(result.stdout.strip())
    elif not heading:
        parts.append("### Dataset plan")  # the CLI printed no plan (an error before planning)
    if failed:
        parts.append(_failure_block(result))
    return Outcome(mode, result.returncode, result.returncode == 2, str(plan_out) if plan_out.is_file() else "",
                   "\n\n".join(parts) + "\n", failed, _first_error(result) if failed else "")


def run_plan(settings: Settings) -> Outcome:
    settings.plan_out.unlink(missing_ok=True)  # a plan left by an earlier run must not pass for this one's
    result = run_reconcile(settings, ["plan", *settings.paths, "--format", "markdown", "--detailed-exitcode",
                                      "--out", str(settings.plan_out), *settings.args])
    return _plan_outcome(Mode.PLAN, result, settings.plan_out, "")


def run_drift(settings: Settings) -> Outcome:
    settings.plan_out.unlink(missing_ok=True)
    result = run_reconcile(settings, ["plan", *settings.paths, "--drift-only", "--format", "markdown",
                                      "--detailed-exitcode", "--out", str(settings.plan_out), *settings.args])
    match result.returncode:
        case 0:
            heading = "## Drift check: none\n\nThe server matches what the last apply left."
        case 2:
            heading = "## Drift check: :warning: drift found\n\nThe server was changed outside the manifests."
        case _:
            heading = "## Drift check: failed"
    return _plan_outcome(Mode.DRIFT, result, settings.plan_out, heading)


def run_apply(settings: Settings) -> Outcome:
    target = [str(settings.saved_plan)] if settings.saved_plan else list(settings.paths)
    # --auto-approve with a saved plan too: a job has no terminal to confirm on, and the plan was reviewed
    events: list[Event] = []
    result = run_reconcile(settings, ["apply", "--auto-approve", *target, *settings.args, "--format", "json"], events)
    failed = result.returncode != 0
    changed = not failed and any(isinstance(e, ApplyComplete) and e.changed for e in events)
    parts = ["### Dataset apply"]
    if settings.saved_plan:
        parts.append(f"Saved plan: `{settings.saved_plan}`")
    if result.stdout.strip():
        parts.append(fenced(result.stdout))
    if failed:
        parts.append(_failure_block(result))
    return Outcome(Mode.APPLY, result.returncode, changed, str(settings.saved_plan or ""), "\n\n".join(parts) + "\n",
                   failed, _first_error(result) if failed else "")


def execute(mode: Mode, settings: Settings) -> Outcome:
    match mode:
        case Mode.PLAN:
            return run_plan(settings)
        case Mode.APPLY:
            return run_apply(settings)
        case Mode.DRIFT:
            return run_drift(settings)
        case _:
            assert_never(mode)


# --- the runner's files ------------------------------------------------------------------------------------


def write_outputs(path: Path | None, values: Mapping[str, str]) -> None:
    """Append ``values`` to ``$GITHUB_OUTPUT``; a value with a newline uses the heredoc form."""
    if path is None:
        return
    with path.open("a", encoding="utf-8") as f:
        for name, value in values.items():
            if "\n" in value or "\r" in value:
                delimiter = f"reconcile_{os.urandom(8).hex()}"
                f.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                f.write(f"{name}={value}\n")


def _clip(text: str, limit: int, note: str) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - len(note) - 6]  # room for the closing fence and two newlines
    if cut.count("```") % 2:  # do not leave a code fence open
        cut += "\n```"
    return cut + "\n\n" + note


def append_summary(path: Path | None, report: str) -> None:
    if path is None:
        return
    note = "_… report cut to fit the job summary; the full output is in the job log._"
    with path.open("a", encoding="utf-8") as f:
        f.write(_clip(report, SUMMARY_LIMIT, note) + "\n")


def annotate(kind: str, message: str) -> None:
    """A workflow command (``::error::`` / ``::warning::``), escaped as the runner expects."""
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    print(f"::{kind}::{escaped}", flush=True)


# --- the pull-request comment ------------------------------------------------------------------------------


def marker(mode: Mode, key: str) -> str:
    """The hidden line that identifies this job's comment; ``--`` and ``>`` would end an HTML comment early."""
    safe = key.replace("--", "- -").replace(">", "")
    return f"{MARKER_PREFIX} {mode.value} {safe} -->"


def comment_body(outcome: Outcome, ctx: GitHubContext, mark: str) -> str:
    footer_parts = []
    if ctx.head_sha:
        footer_parts.append(f"commit {ctx.head_sha[:12]}")
    if ctx.run_url:
        footer_parts.append(f"[workflow run]({ctx.run_url})")
    footer = f"\n\n<sub>{' · '.join(footer_parts)}</sub>\n" if footer_parts else "\n"
    budget = COMMENT_LIMIT - len(mark) - len(footer) - 2
    report = _clip(outcome.report.rstrip(), budget, "_… cut to fit a comment; the full report is in the job summary._")
    return f"{mark}\n{report}{footer}"


@dataclass(frozen=True, slots=True)
class GitHubApi:
    """The few REST calls the comment needs, over urllib."""

    base_url: str
    repository: str
    token: str = field(repr=False)
    timeout: float = 30.0

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(
            self.base_url.rstrip("/") + path, data=data, method=method,
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "clearml-dataset-reconciler",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise GitHubError(f"{method} {path}: HTTP {err.code} {_api_message(err)}".rstrip()) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise GitHubError(f"{method} {path}: {reason}") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise GitHubError(f"{method} {path}: the answer is not JSON") from None

    def _repo(self) -> str:
        return "/repos/" + urllib.parse.quote(self.repository, safe="/")

    def find_comment(self, number: int, mark: str) -> int | None:
        """The oldest comment of issue/PR ``number`` whose body carries ``mark``."""
        for page in range(1, MAX_PAGES + 1):
            items = self._call("GET", f"{self._repo()}/issues/{number}/comments?per_page={PER_PAGE}&page={page}")
            if not isinstance(items, list):
                raise GitHubError(f"GET comments of #{number}: expected a list")
            for item in items:
                if isinstance(item, Mapping) and mark in str(item.get("body") or ""):
                    return int(item["id"])
            if len(items) < PER_PAGE:
                break
        return None

    def upsert_comment(self, number: int, mark: str, body: str) -> tuple[str, int]:
        """Edit the comment carrying ``mark`` in place, or create it: ``("updated"|"created", id)``."""
        existing = self.find_comment(number, mark)
        if existing is not None:
            self._call("PATCH", f"{self._repo()}/issues/comments/{existing}", {"body": body})
            return "updated", existing
        created = self._call("POST", f"{self._repo()}/issues/{number}/comments", {"body": body})
        return "created", int(created["id"])


def _api_message(err: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(err.read() or b"{}")
    except (ValueError, OSError):
        return ""
    return str(payload.get("message", "")) if isinstance(payload, dict) else ""


def update_comment(outcome: Outcome, ctx: GitHubContext, settings: Settings,
                   log: Callable[[str], None] = print) -> None:
    pr = ctx.pull_request
    if not settings.comment or pr is None:
        return
    if not ctx.token:
        annotate("warning", "no GITHUB_TOKEN: the pull-request comment was not updated")
        return
    if not ctx.repository:
        annotate("warning", "no GITHUB_REPOSITORY: the pull-request comment was not updated")
        return
    mark = marker(outcome.mode, settings.comment_key)
    api = GitHubApi(ctx.api_url, ctx.repository, ctx.token)
    try:
        action, comment_id = api.upsert_comment(int(pr["number"]), mark, comment_body(outcome, ctx, mark))
    except GitHubError as err:  # e.g. a fork's read-only token: the summary still has the plan
        annotate("warning", f"the pull-request comment was not updated: {err}")
        return
    log(f"{action} comment {comment_id} on #{pr['number']}")


# --- entry point -------------------------------------------------------------------------------------------


def _env_flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {value!r}")


def _words(value: str, name: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as err:
        raise SettingsError(f"{name}: {err}") from None


def parse_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    env = environ.get
    parser = argparse.ArgumentParser(
        prog="python -m reconciler.ci.github",
        description="Run reconcile in a GitHub Actions job (plan on pull requests, apply on the default branch).",
    )
    parser.add_argument("--mode", choices=["auto", "plan", "apply", "drift"], default=env("RECONCILE_MODE") or "auto")
    parser.add_argument("--paths", default=env("RECONCILE_PATHS") or "manifests/",
                        help="manifest files and folders, separated by spaces or newlines")
    parser.add_argument("--saved-plan", default=env("RECONCILE_SAVED_PLAN", ""),
                        help="apply: a JSON plan saved by 'reconcile plan --out' (default: plan and apply at once)")
    default_out = Path(env("RUNNER_TEMP") or ".") / "reconcile-plan.json"
    parser.add_argument("--plan-out", default=env("RECONCILE_PLAN_OUT") or str(default_out))
    parser.add_argument("--args", default=env("RECONCILE_ARGS", ""), help="more options for the subcommand")
    parser.add_argument("--global-args", default=env("RECONCILE_GLOBAL_ARGS", ""),
                        help="options before the subcommand, e.g. --data-dir DIR")
    parser.add_argument("--command", default=env("RECONCILE_COMMAND", ""),
                        help="how to run the CLI (default: this Python with -m reconciler.cli)")
    parser.add_argument("--comment-key", default=env("RECONCILE_COMMENT_KEY", ""),
                        help="tells apart the comments of several jobs on one pull request (default: the paths)")
    parser.add_argument("--comment", action=argparse.BooleanOptionalAction,
                        default=_env_flag(environ, "RECONCILE_COMMENT", True))
    parser.add_argument("--fail-on-drift", action=argparse.BooleanOptionalAction,
                        default=_env_flag(environ, "RECONCILE_FAIL_ON_DRIFT", True))
    ns = parser.parse_args(argv)
    paths = _words(ns.paths, "paths")
    if not paths:
        raise SettingsError("paths: no manifest files or folders given")
    command = _words(ns.command, "command") or (sys.executable, "-m", "reconciler.cli")
    return Settings(
        mode=ns.mode,
        paths=paths,
        saved_plan=Path(ns.saved_plan) if ns.saved_plan else None,
        plan_out=Path(ns.plan_out).absolute(),
        args=_words(ns.args, "args"),
        global_args=_words(ns.global_args, "global-args"),
        command=command,
        comment=ns.comment,
        comment_key=ns.comment_key or " ".join(paths),
        fail_on_drift=ns.fail_on_drift,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = parse_settings(argv, os.environ)
        ctx = GitHubContext.from_env(os.environ)
        mode = resolve_mode(settings.mode, ctx)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if settings.saved_plan is not None and mode is not Mode.APPLY:
        print(f"error: saved-plan is for apply; this run is a {mode.value}", file=sys.stderr)
        return 1
    settings.plan_out.parent.mkdir(parents=True, exist_ok=True)
    outcome = execute(mode, settings)
    write_outputs(ctx.output_file, {
        "mode": mode.value,
        "exitcode": str(outcome.exitcode),
        "has-changes": "true" if outcome.has_changes else "false",
        "plan-json": outcome.plan_json,
    })
    append_summary(ctx.summary_file, outcome.report)
    update_comment(outcome, ctx, settings)
    if outcome.failed:
        annotate("error", f"reconcile {mode.value} failed: {outcome.error}")
        return 1
    if mode is Mode.DRIFT and outcome.has_changes:
        annotate("error" if settings.fail_on_drift else "warning",
                 "drift: the server was changed outside the manifests (see the job summary)")
        return 2 if settings.fail_on_drift else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
