"""``apply --queue``: the command's side of applying a plan on ClearML agents.

The plan is computed where the command runs and stays the reviewed unit. Its versions to create or resume
become steps (:mod:`reconciler.steps`): each version's draft is created (or taken back) here, gets the step it
must run (as the configuration item ``Reconciler Step``) and what an agent needs to run it (``script``:
``python -m reconciler.cli agent-step`` in the repository checkout, ``container`` for docker agents), and is put
on the queue. The agent's task IS the version, so its log, machine and progress sit on the version in the UI.

A step is queued once its parent is built; independent versions run in parallel on as many agents as listen.
The command holds the apply lock all along (the steps write only while it does), follows every step and reports
its progress, publishes each version its step finalized, and ends with exit 0, or 1 naming every failure. When a
step fails, steps not started yet are not started (queued ones are taken off the queue); running ones finish.
A signal (Ctrl-C) also asks the agents to stop the running ones. Drafts left behind are resumed by the next
apply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .apply import ApplyFailed, ApplyOptions, ApplyResult, apply_plan
from .checkout import AgentSources, agent_sources
from .clearml_backend import Backend, Interrupted, LeaseLost
from .clearml_backend.agenttask import AgentTasks
from .clearml_backend.lock import LockInfo
from .clearml_backend.queues import STEP_CONFIG, Queue, QueueClient, TaskState, check_listened, step_task_fields
from .diagnostics import ReconcileError
from .events import (
    Emit,
    QueueBuilding,
    QueueSplit,
    StepBuilt,
    StepError,
    StepFailed,
    StepProgress,
    StepQueued,
    StepRunning,
    StepsNotStarted,
    StepWaiting,
    VersionStarted,
    event_from_json,
)
from .model import FINAL_STATUSES, ObservedState, VersionKey
from .plan.actions import CreateVersion, Plan, SyncFiles
from .plan.observed import choose_observed
from .stepcodec import encode_step
from .steps import QueuedVersion, QueuePlan, move_check_paths, split_for_queue

WAITING_NOTICE_S = 60.0


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """Where and how the plan's versions are built; ``mounts`` are folders agents see at the same path."""

    queue: str
    mounts: tuple[Path, ...] = ()
    image: str | None = None
    poll_seconds: float = 1.0
    step_timeout: float = 300.0  # a running step with no sign of life (task, agent) for this long has failed
    agent_wait: float | None = None  # on-demand agents: how long a queued step may wait for one (None: one must
    # listen before anything is queued, and a queued step waits as long as it takes)


def check_queue(backend: Backend, options: QueueOptions) -> Queue:
    """The queue, when some agent listens on it; else one line (before anything is planned or written)."""
    return check_listened(QueueClient(backend.api), options.queue, backend.api.cfg.api_host,
                          on_demand=options.agent_wait is not None)


def check_sources(plan: Plan, options: QueueOptions) -> AgentSources:
    """The plan's sources as agents see them; one line per source they cannot see."""
    return agent_sources(plan.builds, queue=options.queue, mounts=options.mounts, cwd=Path.cwd())


@dataclass
class _Run:
    queued: QueuedVersion
    task_id: str = ""
    state: str = "waiting"  # waiting | queued | running | done | failed | not started
    worker: str = ""
    shown: tuple[str, str] = ("", "")  # the progress last reported (phase, percent)
    since: float = 0.0
    started: float = 0.0
    notice_at: float = 0.0
    signs: tuple[str, ...] = ()  # what last showed the step alive: its task's last_update, its agent's report
    heard_at: float = 0.0  # when those last changed


class _Dispatcher:
    def __init__(self, backend: Backend, queue: Queue, split: QueuePlan, seen: AgentSources,
                 lock: Mapping[str, str], ids: dict[VersionKey, str], options: QueueOptions, emit: Emit):
        self.backend, self.queue, self.split, self.seen = backend, queue, split, seen
        self.client = QueueClient(backend.api)
        self.lock, self.ids, self.options, self.emit = lock, ids, options, emit
        self.runs = {q.step.version: _Run(q) for q in split.steps}
        self.failures: list[str] = []
        self.result = ApplyResult()
        checkout = seen.checkout
        self.fields = step_task_fields(repository=checkout.remote if checkout else "",
                                       commit=checkout.commit if checkout else "",
                                       branch=checkout.branch if checkout else "", image=options.image)

    # --- starting ------------------------------------------------------------------------------------------------

    def in_checkout(self, path: str) -> str:
        """A path the checks read, relative to the repository checkout when it is in it (agents check it out)."""
        checkout = self.seen.checkout
        if checkout is None:
            return path
        try:
            return Path(path).resolve().relative_to(Path(checkout.root).resolve()).as_posix() or "."
        except ValueError:
            return path  # outside: at the same path on the agents (a shared mount), as for sources

    def ready(self, run: _Run) -> bool:
        return all(p not in self.runs or self.runs[p].state == "done" for p in run.queued.step.parents)

    def blocked(self, run: _Run) -> bool:
        return any(p in self.runs and self.runs[p].state in ("failed", "not started") for p in run.queued.step.parents)

    def start(self, run: _Run) -> None:
        q, writer = run.queued, self.backend.writer
        v = q.step.version
        if isinstance(q.opening, CreateVersion):
            run.task_id = writer.create_draft(v, [self.ids[p] for p in q.opening.parents], q.opening.storage)
            self.result.created.append(v)
            self.emit(VersionStarted(v, run.task_id))
        else:
            run.task_id = q.opening.version_id
        self.ids[v] = self.result.ids[v] = run.task_id
        step = replace(q.step, sources=self.seen.sources.get(v, ()),
                       actions=tuple(move_check_paths(a, self.in_checkout) for a in q.step.actions),
                       lock=((v.project, self.lock[v.project]),) if v.project in self.lock else ())
        AgentTasks(self.backend.api, self.backend.reader).prepare(run.task_id, self.fields, STEP_CONFIG,
                                                                  encode_step(step))
        watched = self.client.enqueue(run.task_id, self.queue)
        run.state, run.since = "queued", time.monotonic()
        run.notice_at = run.since + WAITING_NOTICE_S
        self.emit(StepQueued(v, self.queue.name, run.task_id))
        if not watched and self.options.agent_wait is None:
            self.client.dequeue(run.task_id)
            run.state = "not started"
            raise ReconcileError(f"no agent listens on queue {self.queue.name!r} any more; {v} was taken off it "
                                 f"(version {run.task_id} stays a draft; the next apply resumes it)")

    # --- following ---------------------------------------------------------------------------------------------

    def follow(self, run: _Run, state: TaskState, activity: Mapping[str, str]) -> None:
        v = run.queued.step.version
        if state.status == "in_progress" and run.state == "queued":
            run.state, run.started, run.worker = "running", time.monotonic(), state.worker
            run.heard_at = run.started
            self.emit(StepRunning(v, state.worker))
        if run.state == "running":
            shown = (state.phase, state.progress)
            if any(shown) and shown != run.shown:
                run.shown = shown
                self.emit(StepProgress(v, state.phase, state.progress))
        if state.status in FINAL_STATUSES:
            self.done(run, state)
        elif state.status in ("failed", "stopped") or (state.status == "created" and run.state != "waiting"):
            self.fail(run, state)
        elif run.state == "running":
            self.check_alive(run, state, activity)
        elif run.state == "queued" and self.options.agent_wait is not None and (
                time.monotonic() - run.since >= self.options.agent_wait):
            self.client.dequeue(run.task_id)
            run.state = "failed"
            message = (f"{v}: no agent took it from queue {self.queue.name!r} within {self.options.agent_wait:.0f}s "
                       f"(--agent-wait); taken off the queue (version {run.task_id} stays a draft; the next apply "
                       "resumes it)")
            self.failed(v, message)
        elif run.state == "queued" and time.monotonic() >= run.notice_at:
            waited = time.monotonic() - run.since
            run.notice_at += WAITING_NOTICE_S
            self.emit(StepWaiting(v, self.queue.name, waited, tuple(self.client.listeners(self.queue))))

    def done(self, run: _Run, state: TaskState) -> None:
        q = run.queued
        v = q.step.version
        if q.publish:
            self.backend.writer.publish(v, run.task_id)
        run.state = "done"
        sync = q.step.sync
        self.result.actions += len(q.step.actions) + 1 + (1 if q.publish else 0)
        if sync is not None:
            self.result.uploaded_files += len(sync.upload)
            self.result.uploaded_bytes += sync.upload_bytes
        self.emit(StepBuilt(v, state.worker or run.worker, q.publish,
                            files=len(sync.upload) if isinstance(sync, SyncFiles) else None,
                            bytes=sync.upload_bytes if isinstance(sync, SyncFiles) else 0,
                            seconds=time.monotonic() - run.started if run.started else None))

    def fail(self, run: _Run, state: TaskState) -> None:
        v = run.queued.step.version
        run.state = "failed"
        why = self.failure_reason(run, state)
        message = (f"{v}: {why} (on agent {state.worker or run.worker or '?'}; version {run.task_id} stays a draft, "
                   "its log is on it; the next apply resumes it)")
        self.failed(v, message)

    def failed(self, v: VersionKey, message: str) -> None:
        """``v``'s step failed: said once, and the steps not started yet are not started."""
        self.failures.append(message)
        self.result.failed[v] = message
        self.emit(StepFailed(v, message))
        self.stop_not_started("a step failed")

    def check_alive(self, run: _Run, state: TaskState, activity: Mapping[str, str]) -> None:
        """A running step must show life: its task written (progress, log) or its agent reporting. Silent for
        ``step_timeout`` seconds (the agent was killed, its machine lost), the step has failed."""
        worker = state.worker or run.worker
        signs = (state.last_update, state.status_message, activity.get(worker, "gone"))
        now = time.monotonic()
        if signs != run.signs:
            run.signs, run.heard_at = signs, now
            return
        silent = now - run.heard_at
        if silent < self.options.step_timeout:
            return
        v = run.queued.step.version
        self.client.abort(run.task_id)
        run.state = "failed"
        where = ("is gone from the server's workers" if worker not in activity
                 else f"has not reported since {activity[worker] or '?'}")
        message = (f"{v}: the step on agent {worker or '?'} stopped reporting for {silent:.0f}s (--step-timeout "
                   f"{self.options.step_timeout:.0f}; the agent {where}); version {run.task_id} stays a draft, the "
                   "next apply resumes it")
        self.failed(v, message)

    def failure_reason(self, run: _Run, state: TaskState) -> str:
        try:
            lines = self.client.log_lines(run.task_id)
        except ReconcileError:
            lines = []
        told = [e.message for e in map(step_event, lines) if e is not None]
        if told:
            return told[-1]
        if state.status == "stopped":
            return f"stopped ({state.status_reason or 'aborted'})"
        if state.status == "created":
            return "taken off the queue before an agent ran it"
        tail = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
        return f"the step failed ({state.status_reason or state.status})" + (f": {tail}" if tail else "")

    def stop_not_started(self, why: str) -> None:
        taken = []
        for run in self.runs.values():
            if run.state == "queued":
                self.client.dequeue(run.task_id)
                run.state = "not started"
                taken.append(run)
            elif run.state == "waiting":
                run.state = "not started"
                taken.append(run)
        if taken:
            self.emit(StepsNotStarted(why, tuple(r.queued.step.version for r in taken)))

    def abort_all(self) -> None:
        """After a signal: queued steps off the queue, running ones stopped by their agents."""
        for run in self.runs.values():
            if run.state == "queued":
                self.client.dequeue(run.task_id)
            elif run.state == "running":
                self.client.abort(run.task_id)

    # --- the loop ------------------------------------------------------------------------------------------------

    def run(self) -> ApplyResult:
        start = time.monotonic()
        cancel = self.backend.api.cancel
        try:
            while True:
                for run in self.runs.values():
                    if run.state == "waiting" and self.blocked(run):
                        run.state = "not started"
                    elif run.state == "waiting" and not self.failures and self.ready(run):
                        self.start(run)
                active = [r for r in self.runs.values() if r.state in ("queued", "running")]
                if not active and all(r.state != "waiting" for r in self.runs.values()):
                    break
                states = self.client.states(r.task_id for r in active)
                activity = self.client.activity() if any(r.state == "running" for r in active) else {}
                for run in active:
                    if run.task_id in states:
                        self.follow(run, states[run.task_id], activity)
                if any(r.state in ("queued", "running") for r in self.runs.values()):
                    cancel.sleep(self.options.poll_seconds)
        except (Interrupted, LeaseLost, KeyboardInterrupt):
            self.abort_all()
            raise
        except ReconcileError:
            self.abort_all()
            raise
        self.result.seconds = time.monotonic() - start
        not_started = [str(r.queued.step.version) for r in self.runs.values() if r.state == "not started"]
        self.result.skipped.extend(r.queued.step.version for r in self.runs.values() if r.state == "not started")
        if self.failures:
            lines = list(self.failures)
            if not_started:
                lines.append(f"not started because a step failed: {', '.join(not_started)}")
            lines.append(f"apply incomplete: {len(self.failures)} step(s) failed, "
                         f"{sum(r.state == 'done' for r in self.runs.values())} built; fix the cause and run apply "
                         "again")
            raise ApplyFailed(lines)
        return self.result


def step_event(line: str) -> StepError | None:
    """The failure an agent's step told in its log: a line holding the JSON of a ``step_error`` event (as
    ``agent-step`` prints it); None for any other line."""
    start = line.find("{")
    if start < 0 or f'"{StepError.type}"' not in line:
        return None
    try:
        obj = json.loads(line[start:])
    except ValueError:
        return None
    event = event_from_json(obj) if isinstance(obj, dict) else None
    return event if isinstance(event, StepError) else None


def apply_queued(plan: Plan, backend: Backend, observed: ObservedState, *, queue: Queue, seen: AgentSources,
                 held: list[LockInfo], options: QueueOptions, apply_options: ApplyOptions, emit: Emit
                 ) -> ApplyResult:
    """Apply ``plan``: the command's own actions first, then one step per version on ``queue``."""
    split = split_for_queue(plan)
    ids: dict[VersionKey, str] = {}
    for key, candidates in observed.by_key().items():
        chosen = choose_observed(candidates)
        if chosen is not None:
            ids[key] = chosen.id
    local = ApplyResult()
    if split.local:
        emit(QueueSplit(len(split.local), len(split.steps)))
        local = apply_plan(Plan(actions=split.local), backend.writer, observed, apply_options, emit=emit)
        ids.update(local.ids)
    if split.steps:
        emit(QueueBuilding(len(split.steps), queue.name))
    lock = {info.project: info.token for info in held}
    result = _Dispatcher(backend, queue, split, seen, lock, ids, options, emit).run()
    if split.after:  # aliases move once every new holder is final (and published)
        moved = apply_plan(Plan(actions=split.after), backend.writer, observed, apply_options, emit=emit,
                           known_ids=ids)
        result.actions += moved.actions
    result.actions += local.actions
    result.created = [*local.created, *result.created]
    result.seconds += local.seconds
    return result
