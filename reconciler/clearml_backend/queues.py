"""ClearML queues and the agents (workers) that listen on them: finding a queue, asking who listens, putting a
version's task on it, following it, taking it off again.

A task on a queue goes ``queued`` -> ``in_progress`` (an agent took it) -> ``completed`` / ``failed`` /
``stopped``. ``tasks.stop`` on a task an agent runs only asks the agent to stop it (``status_message``
``stopping``); on a queued task it takes it off the queue.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..diagnostics import ReconcileError
from .api import ApiClient

STEP_CONFIG = "Reconciler Step"  # the configuration item holding a version's step (see stepcodec)
STATUS_FIELDS = ("id", "status", "status_reason", "status_message", "last_worker", "runtime", "last_update")


@dataclass(frozen=True, slots=True)
class Queue:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class TaskState:
    id: str
    status: str
    status_reason: str = ""
    status_message: str = ""
    worker: str = ""
    progress: str = ""  # runtime.progress: percent done, as the step reports it
    phase: str = ""  # runtime.reconciler_phase: what the step is doing
    last_update: str = ""  # changes with every write to the task (the step's progress, its log)


class QueueClient:
    def __init__(self, api: ApiClient):
        self.api = api

    def find(self, name: str) -> Queue | None:
        rows = self.api.call("queues.get_all", name=f"^{re.escape(name)}$",
                             only_fields=["id", "name"]).get("queues") or []
        exact = [r for r in rows if r.get("name") == name]
        return Queue(str(exact[0]["id"]), name) if exact else None

    def listeners(self, queue: Queue) -> list[str]:
        """The workers registered as listening on ``queue`` (agents unregister when they stop; a killed one's
        registration expires after its timeout)."""
        rows = self.api.call("workers.get_all").get("workers") or []
        return sorted(str(w.get("id")) for w in rows
                      if any(_queue_id(q) == queue.id for q in w.get("queues") or []))

    def activity(self) -> dict[str, str]:
        """Every registered worker's last report (``last_activity_time``; an agent reports every 30 s while it
        lives, a killed one stops, and its registration expires later)."""
        rows = self.api.call("workers.get_all").get("workers") or []
        return {str(w.get("id")): str(w.get("last_activity_time") or "") for w in rows}

    def enqueue(self, task_id: str, queue: Queue) -> bool:
        """Put ``task_id`` on ``queue``; whether some agent listens on it."""
        data = self.api.call("tasks.enqueue", write=True, task=task_id, queue=queue.id, verify_watched_queue=True,
                             status_reason="queued by reconcile apply")
        return bool(data.get("queue_watched", True))

    def dequeue(self, task_id: str) -> None:
        """Take a queued task off its queue (back to the status it was queued from). A stop, not a change of the
        version: it runs after a signal and without the lock's fence."""
        with contextlib.suppress(ReconcileError):  # already taken by an agent, or gone
            self.api.call("tasks.dequeue", cleanup=True, task=task_id,
                          status_reason="not started: reconcile apply stopped")

    def abort(self, task_id: str) -> None:
        """Ask the agent running ``task_id`` to stop it (runs after a signal and without the fence, as dequeue)."""
        with contextlib.suppress(ReconcileError):
            self.api.call("tasks.stop", cleanup=True, task=task_id, force=True,
                          status_reason="reconcile apply stopped")

    def states(self, task_ids: Iterable[str]) -> dict[str, TaskState]:
        ids = sorted(set(task_ids))
        if not ids:
            return {}
        rows = self.api.call("tasks.get_all", id=ids, search_hidden=True,
                             only_fields=list(STATUS_FIELDS)).get("tasks") or []
        out = {}
        for r in rows:
            runtime = r.get("runtime") or {}
            out[str(r["id"])] = TaskState(str(r["id"]), str(r.get("status") or ""), str(r.get("status_reason") or ""),
                                          str(r.get("status_message") or ""), str(r.get("last_worker") or ""),
                                          str(runtime.get("progress") or ""), str(runtime.get(PHASE_KEY) or ""),
                                          str(r.get("last_update") or ""))
        return out

    def log_lines(self, task_id: str, limit: int = 200) -> list[str]:
        """The last ``limit`` console lines of a task, oldest first."""
        data = self.api.call("events.get_task_log", task=task_id, batch_size=limit, navigate_earlier=True)
        events = sorted((e for e in data.get("events") or [] if isinstance(e, Mapping)),
                        key=lambda e: (e.get("timestamp") or 0))
        lines: list[str] = []
        for e in events:
            lines += str(e.get("msg") or "").splitlines()
        return lines[-limit:]


PHASE_KEY = "reconciler_phase"


def _queue_id(q: Any) -> str:
    return str(q.get("id")) if isinstance(q, Mapping) else str(q)


def check_listened(client: QueueClient, name: str, server: str, *, on_demand: bool = False) -> Queue:
    """The queue ``name`` when some agent listens on it (``on_demand``: when it exists; an autoscaler starts
    agents once work is queued); otherwise one line saying what to start."""
    queue = client.find(name)
    hint = f"start one: clearml-agent daemon --queue {name}"
    if queue is None:
        raise ReconcileError(f"there is no queue {name!r} on {server}, so no agent listens on it; {hint} "
                             "--create-queue")
    if not on_demand and not client.listeners(queue):
        raise ReconcileError(f"no agent listens on queue {name!r} on {server}; {hint} (or, for agents an "
                             "autoscaler starts on demand, --agent-wait SECONDS)")
    return queue


def step_task_fields(*, repository: str, commit: str, branch: str, image: str | None) -> dict[str, Any]:
    """What an agent needs to run a version's step: the script (this tool, run as a module in the repository
    checkout, or in the agent's folder when no repository is needed) and, for agents in docker mode, the image."""
    script = {"binary": "python3", "repository": repository, "version_num": commit, "branch": branch,
              "entry_point": "-m reconciler.cli agent-step", "working_dir": ".", "diff": ""}
    fields: dict[str, Any] = {"script": script}
    if image:
        fields["container"] = {"image": image, "arguments": "", "setup_shell_script": ""}
    return fields

