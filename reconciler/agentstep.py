"""``reconcile agent-step``: what a ClearML agent runs for one version of an ``apply --queue``.

The agent runs the version's own task (``CLEARML_TASK_ID``), in the repository checkout it made (the working
directory) or in a folder of its own. The step:

1. reads the step the command stored on the version (``Reconciler Step``) and fences every write with the
   command's lock (it writes only while that apply still holds it);
2. checks that this agent can write where the version's data goes (credentials for a bucket);
3. resolves the version's sources again here and checks they give exactly the content the plan was made from:
   same paths, sizes and sha256, else it fails naming the file, before anything is uploaded;
4. runs the version's actions (upload, statistics, properties, finalize) as ``apply`` does, reporting its
   progress on the version (``runtime.progress``).

It emits events (:mod:`reconciler.events`) as apply does; its upload progress is also written on the version.
Any failure is one ``step_error`` event, printed in the log as a JSON line that the command reads back
(:func:`reconciler.dispatch.step_event`) to quote it; the agent then marks the version ``failed`` (it stays a
draft; the next apply resumes it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .apply import ApplyOptions, ApplyResult, apply_plan
from .clearml_backend import Backend, Cancel, WaitPolicy, load_server_config
from .clearml_backend.agenttask import AgentTasks
from .clearml_backend.lock import LeaseFollower
from .clearml_backend.queues import PHASE_KEY, STEP_CONFIG
from .diagnostics import ReconcileError
from .engine import resolve_sources
from .events import Emit, Event, SourcesResolving, SourcesVerified, UploadProgress
from .model import (
    FINAL_STATUSES,
    Content,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    ObservedState,
    ObservedVersion,
    PathSource,
    Source,
    TorchvisionSource,
    VersionSpec,
)
from .plan.actions import Action, Finalize, Plan, ResumeVersion, SyncFiles
from .plan.contents import compute_contents
from .stepcodec import decode_step
from .steps import Step, content_mismatches, mismatch_error, move_check_paths, planned_content, upload_from

PROGRESS_EVERY_S = 3.0


class _Progress:
    """A view of the step's events for the command following it: ``runtime.progress`` and the phase of the
    step on the version, written at most every few seconds; every event also goes on to ``emit``."""

    def __init__(self, backend: Backend, task_id: str, emit: Emit):
        self.backend, self.task_id, self.emit = backend, task_id, emit
        self.last = 0.0
        self.phase = ""
        self._mutex = threading.Lock()  # uploads report from several threads

    def set_phase(self, phase: str, percent: int | None = None) -> None:
        self.phase = phase
        self.write(percent, force=True)

    def __call__(self, event: Event) -> None:
        self.emit(event)
        if isinstance(event, UploadProgress) and event.total_bytes and (
                time.monotonic() - self.last >= PROGRESS_EVERY_S):
            self.write(min(99, 10 + int(80 * event.bytes / event.total_bytes)))

    def write(self, percent: int | None, *, force: bool = False) -> None:
        with self._mutex:
            if not force and time.monotonic() - self.last < PROGRESS_EVERY_S:
                return
            self.last = time.monotonic()
            values = {PHASE_KEY: self.phase}
            if percent is not None:
                values["progress"] = str(percent)
            AgentTasks(self.backend.api, self.backend.reader).report_progress(self.task_id, values)


def _here(source: Source, root: Path) -> Source:
    """A source with a path relative to the repository checkout made absolute (the step runs in the checkout)."""
    if isinstance(source, PathSource) and not source.path.is_absolute():
        return replace(source, path=root / source.path)
    if isinstance(source, TorchvisionSource) and source.root is not None and not source.root.is_absolute():
        return replace(source, root=root / source.root)
    return source


def content_here(step: Step, parent_content: Content, *, root: Path, workers: int) -> Content:
    """The version's content from its sources as they are on this machine, on top of its parents' (merged)."""
    sources = tuple(_here(s, root) for s in step.sources)
    base = step.parents[:1]  # the parents' merged content stands as the first one's
    spec = VersionSpec(step.version, base, sources, step.remove)
    by_dataset: dict[DatasetKey, list[VersionSpec]] = {}
    for p in base:
        by_dataset.setdefault(p.dataset, []).append(VersionSpec(p))
    by_dataset.setdefault(step.version.dataset, []).append(spec)
    state = DesiredState(tuple(DatasetSpec(k, tuple(v)) for k, v in by_dataset.items()))
    own = resolve_sources(state, workers=workers, progress=False)
    adopted = {p: parent_content for p in base}
    return compute_contents(state, own, adopted)[step.version]


def run_step(backend: Backend, task_id: str, step: Step, *, workers: int, emit: Emit,
             forget_hashes: Callable[..., None] | None = None) -> ApplyResult:
    """Build ``step``'s version (the task ``task_id``) from its sources here; see the module docstring."""
    found = backend.reader.version(task_id)
    if found is None or found.key.version != step.version.version or found.key.name != step.version.name:
        raise ReconcileError(f"task {task_id} is not the version {step.version} its step builds")
    parent_ids = found.parent_ids if step.parents else ()
    if len(parent_ids) != len(step.parents):
        raise ReconcileError(f"version {task_id} does not record its parents {', '.join(map(str, step.parents))}")
    with LeaseFollower(backend.api, step.lock):
        progress = _Progress(backend, task_id, emit)
        progress.set_phase("resolving sources", 0)
        backend.writer.check_writable(step.version, task_id)  # a bucket needs credentials on this agent too
        contents = []
        for parent_key, parent_id in zip(step.parents, parent_ids, strict=True):
            content = backend.reader.content(parent_id, None)
            if content is None:
                raise ReconcileError(f"the parent {parent_key} ({parent_id}) of {step.version} has no file list")
            contents.append(content)
        parent_content = Content.merged(contents) if contents else Content()
        emit(SourcesResolving(step.version, str(Path.cwd())))
        actual = content_here(step, parent_content, root=Path.cwd(), workers=workers)
        planned = planned_content(parent_content, step.sync)
        final = next((a for a in step.actions if isinstance(a, Finalize)), None)
        if final is not None and planned.digest() != final.content_digest:
            raise ReconcileError(f"the parents of {step.version} no longer hold what the plan was made from; run "
                                 "'reconcile plan' again")
        mismatches = content_mismatches(planned, actual)
        if mismatches:
            raise mismatch_error(step.version, mismatches)
        emit(SourcesVerified(step.version, planned.file_count, planned.digest()))
        sync = step.sync
        progress.set_phase("uploading" if sync is not None and sync.upload_bytes else "writing", 10)
        actions: list[Action] = [ResumeVersion(step.version, task_id, step.parents)]
        here = Path.cwd()
        actions += [upload_from(a, actual) if isinstance(a, SyncFiles)
                    else move_check_paths(a, lambda p: p if Path(p).is_absolute() else str(here / p))
                    for a in step.actions]
        observed = ObservedState(tuple(ObservedVersion(k, i, "completed")
                                       for k, i in zip(step.parents, parent_ids, strict=True)))
        options = ApplyOptions(workers=workers, forget_hashes=forget_hashes)
        result = apply_plan(Plan(actions=tuple(actions)), backend.writer, observed, options, emit=progress,
                            local_contents={step.version: actual})
    status = backend.reader.status(task_id)
    if status not in FINAL_STATUSES:
        raise ReconcileError(f"{step.version} is {status} after its step; it was not finalized")
    return result


def connect_here(*, policy: WaitPolicy, cancel: Cancel) -> Backend:
    """The server the agent runs for (its own configuration: the agent passes ``CLEARML_CONFIG_FILE``)."""
    cfg = load_server_config()
    if cfg is None:
        raise ReconcileError("no ClearML server is configured here: the agent passes its own configuration "
                             "(CLEARML_CONFIG_FILE); check the agent's clearml.conf and credentials")
    return Backend.connect(cfg, policy=policy, cancel=cancel)


def read_step(backend: Backend, task_id: str) -> Step:
    """The step ``apply --queue`` stored on the version's task."""
    text = AgentTasks(backend.api, backend.reader).step_text(task_id)
    if text is None:
        raise ReconcileError(f"task {task_id} carries no step ({STEP_CONFIG}): it was not queued by "
                             "'reconcile apply --queue'")
    return decode_step(text, source=f"the step of task {task_id}")
