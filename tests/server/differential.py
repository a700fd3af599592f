"""The differential catalogue: raw API call sequences whose answers the embedded server must share with the
real clearml-server.

A :class:`Case` is a list of :class:`Step`\\ s run in order against one server: the first ones bring a fresh
project and task into the state under test (:func:`task_in`), the one marked ``test=True`` (by default the last)
is the call under test, and any after it read back what it changed. Every step's answer is reduced to an
:class:`Answer` -- HTTP status, ``result_code``, ``result_subcode``, the message with ids masked, the shape of
``data`` (key paths and JSON types) and the values at the paths a step names in ``values`` -- and the answers of
two servers are compared step by step.

``data/differential-reference.json`` holds the answers of the reference server, recorded by
``record_differential.py``; the tests compare the embedded server with it and, when a live reference server is
configured, both with that server.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

RECORDING = Path(__file__).parent / "data" / "differential-reference.json"
JSON_LINES = "application/json-lines"
API_VERSION = "2.23"
_ID = re.compile(r"\b[0-9a-f]{32}\b")
# keys whose children are names chosen by the client: their inner shape is not the server's
OPAQUE = frozenset(
    {
        "configuration",
        "hyperparams",
        "runtime",
        "metric_stats",
        "last_metrics",
        "type_data",
        "display_data",
        "errors_info",
        "requirements",
        "container",
        "events",
        "plots",
    }
)
MAX_DEPTH = 5


# ------------------------------------------------------------------ the catalogue's vocabulary
@dataclass(frozen=True)
class Step:
    """One raw call. ``body`` may hold ``$project``, ``$task``, ``$other`` and ``$sfx`` (replaced before
    sending); ``raw`` replaces the JSON body byte for byte (sent as ``content_type``); ``query`` is sent as the
    query string of a GET; ``files`` sends a request to the file server instead (``endpoint`` is its path). ``bind``
    names a variable that takes ``data.id`` of a successful answer; ``values`` are dotted paths into ``data``
    (``a.b``, ``a[].b``) whose values are compared, not only their types."""

    endpoint: str
    body: Any = None
    raw: bytes | None = None
    query: str | None = None
    bind: str | None = None
    values: tuple[str, ...] = ()
    test: bool = False
    content_type: str = "application/json"
    files: str = ""  # an HTTP method: ``endpoint`` is then a path on the file server, and only the status counts
    token: bool = True  # send the bearer token (file server requests)


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    why: str = ""

    @property
    def under_test(self) -> int:
        marked = [i for i, s in enumerate(self.steps) if s.test]
        return marked[0] if marked else len(self.steps) - 1


@dataclass(frozen=True)
class Answer:
    endpoint: str
    status: int
    result_code: int
    result_subcode: int
    msg: str
    shape: tuple[str, ...]
    values: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "status": self.status,
            "result_code": self.result_code,
            "result_subcode": self.result_subcode,
            "msg": self.msg,
            "shape": list(self.shape),
            "values": dict(self.values),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Answer:
        return cls(
            endpoint=doc["endpoint"],
            status=doc["status"],
            result_code=doc["result_code"],
            result_subcode=doc["result_subcode"],
            msg=doc["msg"],
            shape=tuple(doc["shape"]),
            values=dict(doc["values"]),
        )


def step(endpoint: str, body: Any = None, **kwargs: Any) -> Step:
    return Step(endpoint, body, **kwargs)


def probe(endpoint: str, body: Any = None, **kwargs: Any) -> Step:
    return Step(endpoint, body, test=True, **kwargs)


_TO_STATUS: dict[str, tuple[str, ...]] = {
    "created": (),
    "in_progress": ("tasks.started",),
    "completed": ("tasks.started", "tasks.completed"),
    "published": ("tasks.started", "tasks.completed", "tasks.publish"),
    "stopped": ("tasks.started", "tasks.stopped"),
    "failed": ("tasks.started", "tasks.failed"),
    "closed": ("tasks.started", "tasks.stopped", "tasks.close"),
}


def task_in(status: str, var: str = "task", *, archived: bool = False, **create: Any) -> tuple[Step, ...]:
    """Steps creating a task in the case's project (``$project``) and moving it to ``status``."""
    body = {"name": f"catalogue {var}", "type": "data_processing", "project": "$project", **create}
    steps = [step("tasks.create", body, bind=var)]
    steps += [step(endpoint, {"task": f"${var}"}) for endpoint in _TO_STATUS[status]]
    if archived:
        steps.append(step("tasks.archive", {"tasks": [f"${var}"]}))
    return (step("projects.create", {"name": "catalogue-$sfx/$case"}, bind="project"), *steps)


def with_task(status: str, *calls: Step, **kwargs: Any) -> tuple[Step, ...]:
    return (*task_in(status, **kwargs), *calls)


def read_task(*paths: str) -> Step:
    """Reads back fields of ``$task``; their values are compared."""
    only = sorted({p.split(".")[0] for p in paths})
    return step(
        "tasks.get_all",
        {"id": ["$task"], "only_fields": only},
        values=tuple(f"tasks[].{p}" for p in paths),
    )


HP_RECONCILER = [{"section": "Reconciler", "name": "digest", "value": "abc"}]
HP_PROPERTIES = [{"section": "properties", "name": "version", "value": "1.0.0"}]
ARTIFACT = [{"key": "state", "type": "dict", "uri": "http://files.example/state.json", "mode": "output"}]
CONFIG = [{"name": "Dataset Struct", "value": "{}", "type": "dictionary"}]


def status_checks(prefix: str, endpoint: str, body: dict[str, Any], *runs: str) -> list[Case]:
    """One case per run, ``"<status>"`` or ``"<status>+force"``: ``endpoint`` called with ``body`` (and
    ``force``) on a task in that status, named ``<prefix>_<status>[_force]``."""
    cases = []
    for run in runs:
        status, _, forced = run.partition("+")
        call_body = {"task": "$task", **body, **({"force": True} if forced else {})}
        name = f"{prefix}_{status}{'_force' if forced else ''}"
        cases.append(Case(name, with_task(status, probe(endpoint, call_body))))
    return cases


def plot(var: str = "task", **extra: Any) -> dict[str, Any]:
    return {
        "type": "plot",
        "task": f"${var}",
        "metric": "statistics",
        "variant": "files",
        "iter": 0,
        "timestamp": 1700000000000,
        "plot_str": '{"data": []}',
        **extra,
    }


def log(var: str = "task") -> dict[str, Any]:
    return {"type": "log", "task": f"${var}", "level": "INFO", "msg": "hello", "timestamp": 1700000000000}


def _cases() -> list[Case]:
    c = Case
    everything = {
        "hyperparams": {"properties": {"version": {"section": "properties", "name": "version", "value": "1"}}},
        "runtime": {"version": "1.0.0", "ds_file_count": 3},
        "system_tags": ["dataset", "development"],
        "comment": "made by the catalogue",
        "configuration": {"Dataset Struct": {"name": "Dataset Struct", "value": "{}", "type": "dictionary"}},
    }
    return [
        # ---------------------------------------------------------------- the file server's auth rules
        c("files_get_needs_the_token", (probe("/catalogue-$sfx/$case/missing.txt", files="GET", token=False),),
          why="the real fileserver validates the bearer token on downloads (auth.enabled, its default)"),
        c("files_get_with_the_token", (probe("/catalogue-$sfx/$case/missing.txt", files="GET"),)),
        c("files_head_needs_the_token", (probe("/catalogue-$sfx/$case/missing.txt", files="HEAD", token=False),)),
        c("files_delete_needs_the_token",
          (probe("/catalogue-$sfx/$case/missing.txt", files="DELETE", token=False),)),
        c("files_ping_is_open", (probe("/", files="GET", token=False),)),
        # ---------------------------------------------------------------- get_all paging
        c("get_all_page_too_long_for_an_int",
          (probe("tasks.get_all", raw=b'{"page": 1' + b"0" * 4999 + b', "page_size": 10, "only_fields": ["id"]}'),),
          why="Python refuses to convert integers of more than 4300 digits: the body is not understood"),
        c("get_all_negative_page", (probe("tasks.get_all", {"page": -1, "page_size": 10, "only_fields": ["id"]}),)),
        # ---------------------------------------------------------------- tasks.create
        c(
            "create_with_hyperparams_runtime_system_tags_comment",
            (
                *task_in("created", **everything),
                read_task("runtime.version", "system_tags", "comment", "hyperparams.properties.version.value"),
            ),
        ),
        c(
            "create_short_name",
            (
                step("projects.create", {"name": "catalogue-$sfx/$case"}, bind="project"),
                probe("tasks.create", {"name": "ab", "type": "training", "project": "$project"}),
            ),
        ),
        c(
            "create_without_name",
            (
                step("projects.create", {"name": "catalogue-$sfx/$case"}, bind="project"),
                probe("tasks.create", {"type": "training", "project": "$project"}),
            ),
        ),
        c(
            "create_with_tags_not_a_list",
            (
                step("projects.create", {"name": "catalogue-$sfx/$case"}, bind="project"),
                probe("tasks.create", {"name": "catalogue", "type": "training", "project": "$project", "tags": "ab"}),
            ),
        ),
        c(
            "create_with_unknown_type",
            (
                step("projects.create", {"name": "catalogue-$sfx/$case"}, bind="project"),
                probe("tasks.create", {"name": "catalogue", "type": "bogus", "project": "$project"}),
            ),
        ),
        c(
            "create_in_unknown_project",
            (probe("tasks.create", {"name": "catalogue", "type": "training", "project": "0" * 32}),),
        ),
        # ---------------------------------------------------------------- the status machine
        c("completed_from_created", with_task("created", probe("tasks.completed", {"task": "$task"}))),
        c(
            "completed_from_created_force",
            with_task("created", probe("tasks.completed", {"task": "$task", "force": True}), read_task("status")),
        ),
        c(
            "completed_twice",
            with_task("completed", probe("tasks.completed", {"task": "$task"}), read_task("status")),
        ),
        c(
            "completed_and_published_from_in_progress",
            with_task(
                "in_progress",
                probe("tasks.completed", {"task": "$task", "publish": True}, values=("published", "updated")),
                read_task("status"),
            ),
        ),
        c("started_from_created", with_task("created", probe("tasks.started", {"task": "$task"}, values=("started",)))),
        c("started_from_completed", with_task("completed", probe("tasks.started", {"task": "$task"}))),
        c("started_from_published", with_task("published", probe("tasks.started", {"task": "$task"}))),
        c("publish_from_created", with_task("created", probe("tasks.publish", {"task": "$task"}))),
        c("publish_from_in_progress", with_task("in_progress", probe("tasks.publish", {"task": "$task"}))),
        c(
            "publish_from_completed",
            with_task("completed", probe("tasks.publish", {"task": "$task"}, values=("updated",)), read_task("status")),
        ),
        c("publish_from_stopped", with_task("stopped", probe("tasks.publish", {"task": "$task"}))),
        c("stopped_from_created", with_task("created", probe("tasks.stopped", {"task": "$task"}))),
        c(
            "stopped_from_in_progress",
            with_task("in_progress", probe("tasks.stopped", {"task": "$task"}), read_task("status")),
        ),
        c(
            "stopped_published_force",
            with_task("published", probe("tasks.stopped", {"task": "$task", "force": True}), read_task("status")),
        ),
        c("failed_from_created", with_task("created", probe("tasks.failed", {"task": "$task"}))),
        c("failed_from_in_progress", with_task("in_progress", probe("tasks.failed", {"task": "$task"}))),
        c("failed_from_published", with_task("published", probe("tasks.failed", {"task": "$task"}))),
        c("close_from_stopped", with_task("stopped", probe("tasks.close", {"task": "$task"}), read_task("status"))),
        c("close_from_completed", with_task("completed", probe("tasks.close", {"task": "$task"}))),
        c(
            "reset_completed",
            with_task("completed", probe("tasks.reset", {"task": "$task"}), read_task("status", "status_reason")),
        ),
        c("reset_published", with_task("published", probe("tasks.reset", {"task": "$task"}))),
        c(
            "reset_published_force",
            with_task("published", probe("tasks.reset", {"task": "$task", "force": True}), read_task("status")),
        ),
        c("reset_unknown_task", (probe("tasks.reset", {"task": "0" * 32}),)),
        c("reset_failed", with_task("failed", probe("tasks.reset", {"task": "$task"}), read_task("status"))),
        c("close_from_failed", with_task("failed", probe("tasks.close", {"task": "$task"}))),
        c("publish_from_failed", with_task("failed", probe("tasks.publish", {"task": "$task"}), read_task("status"))),
        c("stopped_from_failed", with_task("failed", probe("tasks.stopped", {"task": "$task"}))),
        c("completed_from_failed", with_task("failed", probe("tasks.completed", {"task": "$task"}))),
        c("started_from_stopped", with_task("stopped", probe("tasks.started", {"task": "$task"}))),
        c("completed_from_stopped", with_task("stopped", probe("tasks.completed", {"task": "$task"}))),
        c("failed_from_closed", with_task("closed", probe("tasks.failed", {"task": "$task"}))),
        c("started_from_closed", with_task("closed", probe("tasks.started", {"task": "$task"}))),
        c(
            "completed_with_publish_from_created_force",
            with_task(
                "created",
                probe("tasks.completed", {"task": "$task", "publish": True, "force": True}, values=("published",)),
                read_task("status"),
            ),
        ),
        # ---------------------------------------------------------------- tasks.edit / tasks.update
        c(
            "edit_created_runtime_and_configuration",
            with_task(
                "created",
                probe(
                    "tasks.edit",
                    {"task": "$task", "runtime": {"version": "2"}, "configuration": {c_["name"]: c_ for c_ in CONFIG}},
                    values=("updated",),
                ),
                read_task("runtime.version"),
            ),
        ),
        c("edit_in_progress", with_task("in_progress", probe("tasks.edit", {"task": "$task", "comment": "x"}))),
        c("edit_completed", with_task("completed", probe("tasks.edit", {"task": "$task", "comment": "x"}))),
        c(
            "edit_completed_force_everything",
            with_task(
                "completed",
                probe(
                    "tasks.edit",
                    {
                        "task": "$task",
                        "force": True,
                        "tags": ["t1"],
                        "comment": "forced",
                        "runtime": {"version": "3"},
                        "configuration": {c_["name"]: c_ for c_ in CONFIG},
                        "hyperparams": {"properties": {"version": HP_PROPERTIES[0]}},
                        "execution": {"artifacts": ARTIFACT},
                    },
                    values=("updated",),
                ),
                read_task("tags", "comment", "runtime.version", "status", "execution.artifacts"),
            ),
        ),
        c(
            "edit_published_force",
            with_task(
                "published",
                probe(
                    "tasks.edit",
                    {
                        "task": "$task",
                        "force": True,
                        "tags": ["t2"],
                        "system_tags": ["dataset"],
                        "comment": "forced",
                        "hyperparams": {"properties": {"version": HP_PROPERTIES[0]}},
                        "execution": {"artifacts": ARTIFACT},
                    },
                    values=("updated",),
                ),
                read_task("tags", "system_tags", "status"),
            ),
        ),
        c(
            "edit_published_force_file_list_and_struct",
            with_task(
                "published",
                probe(
                    "tasks.edit",
                    {
                        "task": "$task",
                        "force": True,
                        "configuration": {c_["name"]: c_ for c_ in CONFIG},
                        "execution": {"artifacts": ARTIFACT},
                        "hyperparams": {"Reconciler": {"parent_id": {"section": "Reconciler", "name": "parent_id",
                                                                     "value": ""}}},
                        "runtime": {"version": "1.0.0", "ds_total_size_compressed": 10},
                    },
                    values=("updated",),
                ),
                read_task("status", "execution.artifacts", "runtime.ds_total_size_compressed",
                          "hyperparams.Reconciler.parent_id.value", "configuration.Dataset Struct.value"),
            ),
            why="a re-home switches a published version's chunks, file list, Dataset Struct and bookkeeping in one "
                "forced edit",
        ),
        c("edit_published", with_task("published", probe("tasks.edit", {"task": "$task", "tags": ["x"]}))),
        c("edit_short_name", with_task("created", probe("tasks.edit", {"task": "$task", "name": "ab"}))),
        c(
            "edit_unknown_project",
            with_task("created", probe("tasks.edit", {"task": "$task", "project": "0" * 32})),
        ),
        c(
            "edit_status_field_force",
            with_task(
                "completed",
                probe("tasks.edit", {"task": "$task", "status": "stopped", "force": True}, values=("fields.status",)),
                read_task("status"),
            ),
        ),
        c("edit_nothing", with_task("created", probe("tasks.edit", {"task": "$task"}, values=("updated",)))),
        c(
            "update_completed_comment",
            with_task(
                "completed",
                probe("tasks.update", {"task": "$task", "comment": "updated"}, values=("updated",)),
                read_task("comment"),
            ),
        ),
        # ---------------------------------------------------------------- hyper-parameters
        c(
            "hyperparams_created",
            with_task(
                "created",
                probe("tasks.edit_hyper_params", {"task": "$task", "hyperparams": HP_RECONCILER}, values=("updated",)),
            ),
        ),
        *status_checks(
            "hyperparams",
            "tasks.edit_hyper_params",
            {"hyperparams": HP_RECONCILER},
            "in_progress",
            "in_progress+force",
            "completed+force",
        ),
        c(
            "hyperparams_completed_properties",
            with_task(
                "completed",
                probe("tasks.edit_hyper_params", {"task": "$task", "hyperparams": HP_PROPERTIES}),
                read_task("hyperparams.properties.version.value"),
            ),
        ),
        c(
            "hyperparams_published_properties_capitalised",
            with_task(
                "published",
                probe(
                    "tasks.edit_hyper_params",
                    {"task": "$task", "hyperparams": [{"section": "Properties", "name": "v", "value": "2"}]},
                ),
                read_task("hyperparams.properties.v.value"),
            ),
        ),
        c(
            "hyperparams_published_properties_force",
            with_task(
                "published",
                probe("tasks.edit_hyper_params", {"task": "$task", "hyperparams": HP_PROPERTIES, "force": True}),
            ),
        ),
        c(
            "hyperparams_published_mixed_sections",
            with_task(
                "published",
                probe("tasks.edit_hyper_params", {"task": "$task", "hyperparams": HP_PROPERTIES + HP_RECONCILER}),
            ),
        ),
        c(
            "delete_hyperparams_completed_force",
            with_task(
                "completed",
                probe(
                    "tasks.delete_hyper_params",
                    {"task": "$task", "hyperparams": [{"section": "Reconciler", "name": "digest"}], "force": True},
                ),
            ),
        ),
        c(
            "delete_hyperparams_completed_properties",
            with_task(
                "completed",
                step("tasks.edit_hyper_params", {"task": "$task", "hyperparams": HP_PROPERTIES}),
                probe(
                    "tasks.delete_hyper_params",
                    {"task": "$task", "hyperparams": [{"section": "properties", "name": "version"}]},
                    values=("deleted",),
                ),
            ),
        ),
        c(
            "delete_hyperparams_section_and_field",
            with_task(
                "created",
                probe(
                    "tasks.delete_hyper_params",
                    {"task": "$task", "hyperparams": [{"section": "Args"}, {"section": "Args", "name": "x"}]},
                ),
            ),
        ),
        # ---------------------------------------------------------------- configuration
        *status_checks(
            "configuration",
            "tasks.edit_configuration",
            {"configuration": CONFIG},
            "in_progress",
            "in_progress+force",
            "completed+force",
        ),
        c(
            "delete_configuration_created",
            with_task(
                "created",
                step("tasks.edit_configuration", {"task": "$task", "configuration": CONFIG}),
                probe("tasks.delete_configuration", {"task": "$task", "configuration": ["Dataset Struct"]}),
            ),
        ),
        c(
            "set_requirements_completed",
            with_task("completed", probe("tasks.set_requirements", {"task": "$task", "requirements": {"pip": "x"}})),
        ),
        # ---------------------------------------------------------------- artifacts
        *status_checks(
            "artifacts", "tasks.add_or_update_artifacts", {"artifacts": ARTIFACT}, "in_progress", "completed+force"
        ),
        c(
            "artifacts_created",
            with_task(
                "created",
                probe("tasks.add_or_update_artifacts", {"task": "$task", "artifacts": ARTIFACT}, values=("updated",)),
                read_task("execution.artifacts"),
            ),
        ),
        c(
            "delete_artifacts_created",
            with_task(
                "created",
                step("tasks.add_or_update_artifacts", {"task": "$task", "artifacts": ARTIFACT}),
                probe(
                    "tasks.delete_artifacts", {"task": "$task", "artifacts": [{"key": "state"}]}, values=("deleted",)
                ),
            ),
        ),
        c(
            "delete_artifacts_published",
            with_task("published", probe("tasks.delete_artifacts", {"task": "$task", "artifacts": [{"key": "state"}]})),
        ),
        # ---------------------------------------------------------------- events
        c("plot_on_completed", with_task("completed", events(plot(), values=("added", "errors")))),
        c(
            "plot_on_completed_as_one_json_object",
            with_task("completed", probe("events.add_batch", plot(), values=("added", "errors"))),
        ),
        c("plot_on_published", with_task("published", events(plot()))),
        c("log_on_published", with_task("published", events(log()))),
        c("plot_on_published_allow_locked", with_task("published", events(plot(allow_locked=True), values=("added",)))),
        c(
            "plot_on_published_and_on_running",
            (
                *task_in("published"),
                *task_in("in_progress", "other")[1:],
                events(plot(), plot("other"), values=("added", "errors")),
            ),
        ),
        c("plot_on_unknown_task", (events({**plot(), "task": "0" * 32}),)),
        c(
            "events_update_the_running_task",
            with_task(
                "in_progress",
                events(plot(iter=7), log(), values=("added",)),
                step(
                    "tasks.get_all",
                    {"id": ["$task"], "only_fields": ["last_iteration", "active_duration", "status"]},
                    values=("tasks[].last_iteration", "tasks[].status"),
                ),
            ),
        ),
        c("ping_unknown_task", (probe("tasks.ping", {"task": "0" * 32}),)),
        c(
            "ping_running_task",
            with_task("in_progress", probe("tasks.ping", {"task": "$task"}), read_task("status", "active_duration")),
        ),
        c("event_without_type", with_task("in_progress", events({"task": "$task", "msg": "x"}))),
        c("add_batch_without_events", (probe("events.add_batch", raw=b"", content_type=JSON_LINES),)),
        # ---------------------------------------------------------------- deleting and archiving
        c("delete_created", with_task("created", probe("tasks.delete", {"task": "$task"}, values=("deleted",)))),
        c("delete_published", with_task("published", probe("tasks.delete", {"task": "$task"}))),
        c(
            "delete_published_force",
            with_task("published", probe("tasks.delete", {"task": "$task", "force": True}, values=("deleted",))),
        ),
        c(
            "delete_archived_completed",
            with_task("completed", probe("tasks.delete", {"task": "$task"}, values=("deleted",)), archived=True),
        ),
        c(
            "archive_published",
            with_task(
                "published",
                probe("tasks.archive", {"tasks": ["$task"]}, values=("archived",)),
                read_task("system_tags", "status"),
            ),
        ),
        c(
            "archive_many_and_unarchive_many",
            (
                *task_in("completed"),
                *task_in("created", "other")[1:],
                probe("tasks.archive_many", {"ids": ["$task", "$other"]}, values=("succeeded[].archived",)),
                read_task("system_tags"),
                step("tasks.unarchive_many", {"ids": ["$task"]}, values=("succeeded[].unarchived",)),
                read_task("system_tags"),
            ),
        ),
        c("archive_many_unknown_task", (probe("tasks.archive_many", {"ids": ["0" * 32]}),)),
        c("archive_unknown_task", (probe("tasks.archive", {"tasks": ["0" * 32]}),)),
        c("unarchive_is_not_an_endpoint", with_task("created", probe("tasks.unarchive", {"tasks": ["$task"]}))),
        # ---------------------------------------------------------------- projects
        c(
            "create_dataset_project_creates_parents",
            (
                probe(
                    "projects.create",
                    {"name": "catalogue-$sfx/$case/.datasets/ds", "system_tags": ["dataset", "hidden"]},
                ),
                step(
                    "projects.get_all",
                    {
                        "name": "^catalogue-$sfx/$case",
                        "search_hidden": True,
                        "only_fields": ["name", "system_tags"],
                        "order_by": ["name"],
                    },
                    values=("projects[].system_tags",),
                ),
            ),
        ),
        c(
            "create_duplicate_project",
            (
                step("projects.create", {"name": "catalogue-$sfx/$case"}),
                probe("projects.create", {"name": "catalogue-$sfx/$case"}),
            ),
        ),
        # ---------------------------------------------------------------- queues, workers, enqueue (for agents)
        *_queue_cases(),
        # ---------------------------------------------------------------- malformed requests
        c(
            "any_field_pattern_matches_an_element_of_a_list",
            with_task(
                "completed",
                step("tasks.edit", {"task": "$task", "runtime": {"datasets": ["ab12cd", "ef34"]}, "force": True}),
                probe(
                    "tasks.get_all",
                    {"project": ["$project"], "only_fields": ["runtime.datasets"],
                     "_any_": {"pattern": "^(zz|AB12CD)$", "fields": ["runtime.datasets"]}},
                    values=("tasks[].runtime",),
                ),
                step(
                    "tasks.get_all",
                    {"project": ["$project"], "only_fields": ["name"],
                     "_any_": {"pattern": "^(ab12)$", "fields": ["runtime.datasets"]}},
                    values=("tasks",),
                ),
                step(
                    "tasks.get_all",
                    {"project": ["$project"], "only_fields": ["name"],
                     "_all_": {"pattern": "catalogue", "fields": ["name", "runtime.datasets"]}},
                    values=("tasks",),
                ),
                step(
                    "tasks.get_all",
                    {"project": ["$project"], "only_fields": ["name"],
                     "_or_": {"pattern": "catalogue", "fields": ["name", "runtime.datasets"]}},
                    values=("tasks[].name",),
                ),
            ),
            "Dataset.get records the versions a task read in runtime.datasets; the retention planner finds those "
            "tasks with one _any_ regex over that list",
        ),
        c("get_by_id_unknown_task", (probe("tasks.get_by_id", {"task": "0" * 32}),)),
        *(
            c(f"{endpoint.split('.')[1]}_unknown_task", (probe(endpoint, {"task": "0" * 32, **body}),))
            for endpoint, body in (
                ("tasks.edit", {"comment": "x"}),
                ("tasks.started", {}),
                ("tasks.publish", {}),
                ("tasks.delete", {}),
                ("tasks.edit_hyper_params", {"hyperparams": HP_RECONCILER}),
                ("tasks.add_or_update_artifacts", {"artifacts": ARTIFACT}),
            )
        ),
        c("get_by_id_task_not_a_string", (probe("tasks.get_by_id", {"task": 5}),)),
        c("malformed_json_body", (probe("tasks.get_all", raw=b"{not json"),)),
        c("malformed_regex_in_query_string", (probe("tasks.get_all", query="name=%5B"),)),
        c(
            "query_string_arguments",
            with_task(
                "created",
                probe("tasks.get_all", query="id[]=$task&only_fields[]=status", values=("tasks[].status",)),
            ),
        ),
    ]



def with_queue(status: str, *calls: Step, **kwargs: Any) -> tuple[Step, ...]:
    """A task in ``status`` (``$task``) and a fresh queue (``$queue``), then ``calls``."""
    return (*task_in(status, **kwargs), step("queues.create", {"name": "cq-$sfx-$case"}, bind="queue"), *calls)


def read_queue() -> Step:
    return step("queues.get_by_id", {"queue": "$queue"}, values=("queue.name", "queue.entries[].task"))


def register(worker: str = "cw-$sfx-$case", **body: Any) -> Step:
    return step("workers.register", {"worker": worker, "queues": ["$queue"], "timeout": 60, **body})


def read_workers(*values: str) -> Step:
    """``workers.get_all`` of this case's workers only (the server may be shared)."""
    return step("workers.get_all", {"worker_pattern": "cw-$sfx-$case*"}, values=values)


def enqueue(**body: Any) -> Step:
    return step("tasks.enqueue", {"task": "$task", "queue": "$queue", **body})


def _queue_cases() -> list[Case]:
    c = Case
    watched = ("queued", "queue_watched", "fields.status", "fields.enqueue_status")
    return [
        c("queue_create_and_list", (
            step("queues.create", {"name": "cq-$sfx-$case", "tags": ["a"], "system_tags": ["b"]}, bind="queue"),
            probe("queues.get_all", {"name": "^cq-$sfx-$case$"},
                  values=("queues[].name", "queues[].tags", "queues[].system_tags", "queues[].entries")),
            step("queues.get_all", {"name": "^cq-$sfx-$case$", "only_fields": ["name"]}, values=("queues",)),
            step("queues.get_all_ex", {"name": "^cq-$sfx-$case$"}, values=("queues[].workers",)),
        )),
        c("queue_create_duplicate", (
            step("queues.create", {"name": "cq-$sfx-$case"}),
            probe("queues.create", {"name": "cq-$sfx-$case"}),
        )),
        c("queue_create_short_name", (probe("queues.create", {"name": "ab"}),)),
        c("queue_create_without_name", (probe("queues.create", {}),)),
        c("queue_get_by_id_unknown", (probe("queues.get_by_id", {"queue": "0" * 32}),)),
        c("queue_get_default", (probe("queues.get_default", {}, values=("name",)),)),
        c("queue_update_name", (
            step("queues.create", {"name": "cq-$sfx-$case"}, bind="queue"),
            probe("queues.update", {"queue": "$queue", "name": "cq-$sfx-$case-renamed", "tags": ["t"]},
                  values=("updated", "fields")),
            read_queue(),
        )),
        c("enqueue_created", with_queue(
            "created", probe("tasks.enqueue", {"task": "$task", "queue": "$queue", "verify_watched_queue": True},
                             values=watched),
            read_task("status", "enqueue_status", "execution.queue", "system_tags"), read_queue(),
        )),
        c("enqueue_drops_development_tag", with_queue(
            "created", enqueue(), read_task("system_tags"), system_tags=["development", "dataset"],
        )),
        c("enqueue_twice", with_queue(
            "created", enqueue(), probe("tasks.enqueue", {"task": "$task", "queue": "$queue"}),
            read_task("status", "status_reason", "enqueue_status"), read_queue(),
        )),
        *(c(f"enqueue_from_{status}", with_queue(status, probe("tasks.enqueue", {"task": "$task", "queue": "$queue"},
                                                               values=("fields.enqueue_status",)),
                                                 read_task("status")))
          for status in ("in_progress", "completed", "published", "failed", "stopped")),
        c("enqueue_in_progress_force", with_queue(
            "in_progress", probe("tasks.enqueue", {"task": "$task", "queue": "$queue", "force": True},
                                 values=("fields.status", "fields.enqueue_status")),
        )),
        c("enqueue_unknown_queue", with_task("created", probe("tasks.enqueue", {"task": "$task", "queue": "0" * 32}),
                                             read_task("status"))),
        c("enqueue_unknown_task", with_queue("created", probe("tasks.enqueue", {"task": "0" * 32,
                                                                                "queue": "$queue"}))),
        c("enqueue_by_queue_name", with_task(
            "created", probe("tasks.enqueue", {"task": "$task", "queue_name": "cq-$sfx-$case-new"},
                             values=("queued", "fields.status")),
            step("queues.get_all", {"name": "^cq-$sfx-$case-new$"},
                 values=("queues[].name", "queues[].entries[].task")),
        )),
        c("enqueue_queue_and_queue_name", with_queue(
            "created", probe("tasks.enqueue", {"task": "$task", "queue": "$queue", "queue_name": "cq-$sfx-x"}),
        )),
        c("dequeue_queued", with_queue(
            "created", enqueue(), probe("tasks.dequeue", {"task": "$task"},
                                        values=("dequeued", "updated", "fields.status", "fields.enqueue_status")),
            read_task("status", "enqueue_status", "execution.queue"), read_queue(),
        )),
        c("dequeue_created", with_queue("created", probe("tasks.dequeue", {"task": "$task"},
                                                         values=("dequeued", "updated", "fields")))),
        c("dequeue_unknown_task", (probe("tasks.dequeue", {"task": "0" * 32}, values=("dequeued", "updated")),)),
        c("dequeue_failed_back_to_failed", with_queue(
            "failed", enqueue(), probe("tasks.dequeue", {"task": "$task"}, values=("fields.status",)),
            read_task("status"),
        )),
        c("get_next_task_then_dequeue_to_in_progress", with_queue(
            "created", enqueue(),
            probe("queues.get_next_task", {"queue": "$queue"}, values=("entry.task",)),
            step("queues.get_next_task", {"queue": "$queue"}, values=("entry",)),
            read_task("status", "enqueue_status"),
            step("tasks.dequeue", {"task": "$task", "new_status": "in_progress"},
                 values=("dequeued", "updated", "fields.status")),
            read_task("status", "enqueue_status"),
        )),
        c("get_next_task_unknown_queue", (probe("queues.get_next_task", {"queue": "0" * 32}),)),
        c("queue_entries_and_peek", with_queue(
            "created", enqueue(),
            probe("queues.get_num_entries", {"queue": "$queue"}, values=("num",)),
            step("queues.peek_task", {"queue": "$queue"}, values=("task",)),
        )),
        c("queue_remove_task_updates_status", with_queue(
            "created", enqueue(status_reason="r", status_message="m"),
            probe("queues.remove_task", {"queue": "$queue", "task": "$task", "update_task_status": True},
                  values=("removed",)),
            read_task("status", "status_reason", "status_message", "execution.queue", "enqueue_status"),
        )),
        c("queue_remove_task_not_queued", with_queue(
            "created", probe("queues.remove_task", {"queue": "$queue", "task": "$task"}))),
        c("queue_delete_not_empty", with_queue(
            "created", enqueue(), probe("queues.delete", {"queue": "$queue"}),
            step("queues.clear_queue", {"queue": "$queue"}, values=("removed_tasks",)),
            read_task("status", "status_reason", "execution.queue"),
            step("queues.delete", {"queue": "$queue"}, values=("deleted",)),
            step("queues.get_by_id", {"queue": "$queue"}),
        )),
        c("stop_queued", with_queue(
            "created", enqueue(), probe("tasks.stop", {"task": "$task"}, values=("fields.status",)),
            read_task("status"), read_queue(),
        )),
        c("stop_created", with_queue("created", probe("tasks.stop", {"task": "$task"}))),
        c("stop_in_progress_without_worker", with_queue(
            "in_progress", probe("tasks.stop", {"task": "$task"}, values=("fields.status",)),
            read_task("status"),
        )),
        c("stop_in_progress_run_by_worker", with_queue(
            "in_progress", register(),
            step("workers.status_report", {"worker": "cw-$sfx-$case", "task": "$task", "queue": "$queue",
                                           "timestamp": 1700000000000}),
            read_task("status", "last_worker"),
            probe("tasks.stop", {"task": "$task"}, values=("fields.status", "fields.status_message")),
            read_task("status", "status_message"),
            step("tasks.stopped", {"task": "$task"}, values=("fields.status",)),
            step("workers.unregister", {"worker": "cw-$sfx-$case"}),
        )),
        c("workers_register_and_list", (
            step("queues.create", {"name": "cq-$sfx-$case"}, bind="queue"),
            probe("workers.register", {"worker": "cw-$sfx-$case", "queues": ["$queue"], "timeout": 60}),
            read_workers("workers[].id", "workers[].queues[].name", "workers[].register_timeout",
                         "workers[].tags"),
            step("workers.get_count", {"worker_pattern": "cw-$sfx-$case*"}, values=("count",)),
            step("workers.unregister", {"worker": "cw-$sfx-$case"}),
            read_workers("workers"),
            step("workers.unregister", {"worker": "cw-$sfx-$case"}),
        )),
        c("workers_register_unknown_queue", (
            probe("workers.register", {"worker": "cw-$sfx-$case", "queues": ["0" * 32], "timeout": 60}),
        )),
        c("workers_register_bad_timeout", (
            step("queues.create", {"name": "cq-$sfx-$case"}, bind="queue"),
            probe("workers.register", {"worker": "cw-$sfx-$case", "queues": ["$queue"], "timeout": -1}),
        )),
        c("workers_status_report_registers", with_queue(
            "in_progress",
            probe("workers.status_report", {"worker": "cw-$sfx-$case", "task": "$task", "queue": "$queue",
                                            "timestamp": 1700000000000}),
            read_workers("workers[].id", "workers[].register_timeout", "workers[].queues", "workers[].task.name",
                         "workers[].project.name"),
            step("workers.unregister", {"worker": "cw-$sfx-$case"}),
        )),
        c("workers_status_report_with_queue", with_queue(
            "in_progress", register(),
            probe("workers.status_report", {"worker": "cw-$sfx-$case", "task": "$task", "queue": "$queue",
                                            "timestamp": 1700000000000}),
            read_workers("workers[].queue.name", "workers[].queues[].name", "workers[].task.name"),
            step("workers.status_report", {"worker": "cw-$sfx-$case", "timestamp": 1700000000000}),
            read_workers("workers[].task", "workers[].queue"),
            step("workers.unregister", {"worker": "cw-$sfx-$case"}),
        )),
        c("workers_status_report_unknown_task", with_queue(
            "created", register(),
            probe("workers.status_report", {"worker": "cw-$sfx-$case", "task": "0" * 32, "timestamp": 1700000000000}),
            read_workers("workers[].id", "workers[].task"),
            step("workers.unregister", {"worker": "cw-$sfx-$case"}),
        )),
        c("enqueue_watched_queue", with_queue(
            "created", register(),
            probe("tasks.enqueue", {"task": "$task", "queue": "$queue", "verify_watched_queue": True},
                  values=("queue_watched",)),
            step("queues.get_all_ex", {"name": "^cq-$sfx-$case$"}, values=("queues[].workers[].name",
                                                                          "queues[].entries[].name")),
            step("workers.unregister", {"worker": "cw-$sfx-$case"}),
        )),
    ]


def _lines(*events: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(e) for e in events).encode()


def events(*items: dict[str, Any], **kwargs: Any) -> Step:
    """``events.add_batch`` as the SDK sends it: JSON lines."""
    return probe("events.add_batch", raw=_lines(*items), content_type=JSON_LINES, **kwargs)


CASES: list[Case] = _cases()


# ------------------------------------------------------------------ answers
def json_type(value: Any) -> str:
    for kind, name in (
        (bool, "boolean"),
        (int | float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ):
        if isinstance(value, kind):
            return name
    return "null"


def shape(value: Any, *, opaque: Collection[str] = OPAQUE, max_depth: int = MAX_DEPTH) -> dict[str, set[str]]:
    """Every key path under ``value`` (``a.b``, ``a[].c``) with the JSON types seen there; below keys in
    ``opaque`` and past ``max_depth`` only the type of the whole value counts."""
    out: dict[str, set[str]] = {}

    def visit(item: Any, path: str, depth: int) -> None:
        out.setdefault(path, set()).add(json_type(item))
        if depth >= max_depth or path.rsplit(".", 1)[-1].removesuffix("[]") in opaque:
            return
        if isinstance(item, dict):
            for key, child in item.items():
                visit(child, f"{path}.{key}" if path else key, depth + 1)
        elif isinstance(item, list):
            for child in item:
                visit(child, f"{path}[]", depth + 1)

    visit(value, "", 0)
    return out


def values_at(data: Any, path: str) -> Any:
    """The value(s) at ``path``: ``a[].b`` maps over a list."""
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    key = head.removesuffix("[]")
    value = data.get(key) if isinstance(data, dict) else None
    if many:
        items = value if isinstance(value, list) else []
        return [values_at(item, rest) if rest else item for item in items]
    return values_at(value, rest) if rest and value is not None else value


class Masker:
    """Masks ids (32 hex digits) and the run's suffix in messages and values, so two runs compare equal."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def text(self, text: str) -> str:
        return _ID.sub("<id>", text.replace(self.suffix, "<sfx>"))

    def value(self, value: Any) -> Any:
        return json.loads(self.text(json.dumps(value)))


def answer(endpoint: str, status: int, body: dict[str, Any], step_: Step, masker: Masker) -> Answer:
    meta = body["meta"]
    data = body.get("data")
    paths = shape(data) if status == 200 else {"": {json_type(data)}}
    return Answer(
        endpoint=endpoint,
        status=status,
        result_code=meta["result_code"],
        result_subcode=meta["result_subcode"],
        msg=masker.text(meta["result_msg"]),
        shape=tuple(sorted(f"{p}:{'|'.join(sorted(t))}" for p, t in paths.items())),
        values={p: masker.value(values_at(data, p)) for p in step_.values},
    )


# ------------------------------------------------------------------ running a case against a server
@dataclass(frozen=True)
class Target:
    """A server to run the catalogue against."""

    name: str
    api_url: str
    access_key: str
    secret_key: str
    files_url: str = ""


class Client:
    def __init__(self, target: Target) -> None:
        self.target = target
        self._session = requests.Session()
        basic = base64.b64encode(f"{target.access_key}:{target.secret_key}".encode()).decode()
        login = self._session.get(
            f"{target.api_url}/auth.login", headers={"Authorization": f"Basic {basic}"}, timeout=60
        )
        login.raise_for_status()
        self._token = login.json()["data"]["token"]

    def send(
        self, endpoint: str, *, body: bytes, query: str | None = None, content_type: str = "application/json"
    ) -> tuple[int, dict[str, Any]]:
        url = f"{self.target.api_url}/v{API_VERSION}/{endpoint}"
        headers = {"Authorization": f"Bearer {self._token}"}
        if query is not None:
            response = self._session.get(f"{url}?{query}", headers=headers, timeout=60)
        else:
            headers["Content-Type"] = content_type
            response = self._session.post(url, data=body, headers=headers, timeout=60)
        return response.status_code, response.json()

    def send_file(self, method: str, path: str, *, token: bool) -> int:
        """The HTTP status of a request to the file server."""
        url = f"{self.target.files_url}{path}"
        if not token:  # not even the session's cookies (the real fileserver also reads the token from one)
            return requests.request(method, url, timeout=60).status_code
        response = self._session.request(method, url, headers={"Authorization": f"Bearer {self._token}"}, timeout=60)
        return response.status_code

    def close(self) -> None:
        self._session.close()


def _substitute(text: str, variables: Mapping[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${name}", variables[name])
    return text


def run_case(client: Client, case: Case, suffix: str) -> list[Answer]:
    """Runs ``case`` and returns one :class:`Answer` per step."""
    variables = {"sfx": suffix, "case": case.name}
    masker = Masker(suffix)
    answers = []
    for step_ in case.steps:
        if step_.raw is not None:
            body = _substitute(step_.raw.decode(), variables).encode()
        else:
            body = _substitute(json.dumps(step_.body if step_.body is not None else {}), variables).encode()
        if step_.files:
            path = _substitute(step_.endpoint, variables)
            status = client.send_file(step_.files, path, token=step_.token)
            answers.append(Answer(f"files {step_.files} {masker.text(path)}", status, 0, 0, "", ()))
            continue
        query = _substitute(step_.query, variables) if step_.query is not None else None
        status, doc = client.send(step_.endpoint, body=body, query=query, content_type=step_.content_type)
        answers.append(answer(step_.endpoint, status, doc, step_, masker))
        if step_.bind and status == 200:
            variables[step_.bind] = doc["data"]["id"]
    return answers


def reference_target(requested: bool = False) -> Target | None:
    """The live reference server this test session is given, or None.

    ``RECONCILE_TEST_REFERENCE_API`` (with ``..._ACCESS_KEY`` and ``..._SECRET_KEY``) names it; otherwise, when
    ``requested`` (``RECONCILE_TEST_SERVER=reference`` or ``--server=reference``), the ``CLEARML_API_HOST`` and
    key variables of the environment, or else of the reference server's ``env.sh``. Asking for the reference
    server without any of these is an error, not a silent fallback.
    """
    env = os.environ
    if env.get("RECONCILE_TEST_REFERENCE_API"):
        return Target(
            "reference",
            env["RECONCILE_TEST_REFERENCE_API"].rstrip("/"),
            _required(env, "RECONCILE_TEST_REFERENCE_ACCESS_KEY"),
            _required(env, "RECONCILE_TEST_REFERENCE_SECRET_KEY"),
            env.get("RECONCILE_TEST_REFERENCE_FILES", "").rstrip("/"),
        )
    if not (requested or env.get("RECONCILE_TEST_SERVER") == "reference"):
        return None
    source: Mapping[str, str] = env if env.get("CLEARML_API_HOST") else _env_sh()
    return Target(
        "reference",
        _required(source, "CLEARML_API_HOST").rstrip("/"),
        _required(source, "CLEARML_API_ACCESS_KEY"),
        _required(source, "CLEARML_API_SECRET_KEY"),
        source.get("CLEARML_FILES_HOST", "").rstrip("/"),
    )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise RuntimeError(f"the reference server is requested but {name} is not set")
    return value


def _env_sh() -> dict[str, str]:
    """The ``export NAME=value`` lines of the reference server's ``run/env.sh``."""
    home = Path(os.environ.get("CLEARML_REFERENCE_HOME", Path.home() / ".cache" / "clearml-reference-server"))
    path = home / "run" / "env.sh"
    if not path.is_file():
        raise RuntimeError(f"the reference server is requested but {path} does not exist (start it first)")
    found = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep and name.strip().isidentifier():
            found[name.strip()] = shlex.split(value)[0] if value.strip() else ""
    return found


def new_suffix() -> str:
    return uuid.uuid4().hex[:8]


# ------------------------------------------------------------------ comparing
def differences(expected: Iterable[Answer], actual: Iterable[Answer]) -> list[str]:
    """What differs between two servers' answers to the same case, one line per difference."""
    found = []
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        where = f"step {index} {want.endpoint}"
        for attr in ("status", "result_code", "result_subcode", "msg"):
            if getattr(want, attr) != getattr(got, attr):
                found.append(f"{where}: {attr} {getattr(want, attr)!r} != {getattr(got, attr)!r}")
        if want.shape != got.shape:
            missing = sorted(set(want.shape) - set(got.shape))
            extra = sorted(set(got.shape) - set(want.shape))
            found.append(f"{where}: data shape differs: missing {missing}, extra {extra}")
        for path, value in want.values.items():
            if got.values.get(path) != value:
                found.append(f"{where}: {path} {value!r} != {got.values.get(path)!r}")
    return found


def load_recording(path: Path = RECORDING) -> dict[str, list[Answer]]:
    doc = json.loads(path.read_text())
    return {name: [Answer.from_json(a) for a in answers] for name, answers in doc["cases"].items()}
