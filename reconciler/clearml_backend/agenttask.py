"""A version's task as an agent's step: made ready to be queued (what the agent runs, and the step itself as a
configuration item), and its progress shown while the agent builds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .api import ApiClient
from .queues import STEP_CONFIG
from .reader import ServerReader
from .writer import status_not, transition


class AgentTasks:
    def __init__(self, api: ApiClient, reader: ServerReader):
        self.api, self.reader = api, reader

    def prepare(self, version_id: str, fields: Mapping[str, Any], config_name: str, config_text: str) -> None:
        """Make a draft ready to be queued as its own step: what the agent runs (``fields``: script, container)
        and the step itself as a configuration item. A draft a stale run left queued or running is taken back."""
        task = self.reader.full_task(version_id)
        status = str(task.get("status"))
        if status == "queued":
            transition(self.api, self.reader, "tasks.dequeue", version_id, status_not("queued"), task=version_id,
                       status_reason="queued again")
        elif status == "in_progress":
            transition(self.api, self.reader, "tasks.stopped", version_id, status_not("in_progress"),
                       task=version_id, force=True, status_reason="left running by an earlier apply")
        configuration = dict(task.get("configuration") or {})
        configuration[config_name] = {"name": config_name, "value": config_text, "type": "json",
                                      "description": "what reconcile apply --queue asks the agent to build"}
        self.api.call("tasks.edit", write=True, task=version_id, force=True, configuration=configuration,
                      **dict(fields))

    def report_progress(self, version_id: str, runtime_values: Mapping[str, str]) -> None:
        """Show how far a step got (``runtime.progress``, as the UI reads it); replaced when it is finalized."""
        task = self.reader.task(version_id, ("id", "runtime")) or {}
        runtime = {**(task.get("runtime") or {}), **runtime_values}
        self.api.call("tasks.edit", write=True, task=version_id, force=True, runtime=runtime)

    def step_text(self, version_id: str) -> str | None:
        """The step stored on the version's task (the ``Reconciler Step`` configuration item), or None."""
        item = (self.reader.full_task(version_id).get("configuration") or {}).get(STEP_CONFIG) or {}
        return str(item["value"]) if item.get("value") else None
