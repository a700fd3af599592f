"""``tasks.*``: a task is a JSON document shaped like the real server's (see the recorded traffic).

Rules kept here, as the real clearml-server has them:

* Status machine (:data:`TRANSITIONS`): a status change not listed is refused with 400/110 unless ``force``;
  asking for the current status again is allowed (``tasks.completed`` twice is fine).
* Editing (``tasks.edit``, hyper-parameters, configuration, requirements) needs status ``created`` -- or a
  running development task -- unless ``force``: otherwise 400/110 ``expected=created``.
* ``tasks.delete`` of a task not in ``created`` needs ``force`` (400/123).
* Artifacts are upserted by (``key``, ``mode``), each stored exactly as sent (``display_data`` round-trips).
* Changing only tags does not move ``last_update`` (the SDK orders versions by it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import errors, query
from ..store import Tx
from .common import Call, Doc, Handler, load_task, new_id, now, touch

TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"queued", "in_progress"}),
    "queued": frozenset({"created", "in_progress"}),
    "in_progress": frozenset({"stopped", "failed", "created", "completed"}),
    "stopped": frozenset(
        {"closed", "created", "failed", "in_progress", "published", "publishing", "completed"}
    ),
    "closed": frozenset({"created", "failed", "published", "publishing", "stopped"}),
    "failed": frozenset({"created", "stopped", "published"}),
    "publishing": frozenset({"published"}),
    "published": frozenset(),
    "completed": frozenset({"published", "in_progress", "created"}),
}
MIN_NAME_LENGTH = 3
_TAG_FIELDS = ("tags", "system_tags")
_EDITABLE = (
    "name",
    "tags",
    "system_tags",
    "type",
    "comment",
    "parent",
    "project",
    "execution",
    "hyperparams",
    "configuration",
    "script",
    "runtime",
    "container",
    "models",
    "report_assets",
)
_SEARCH_TEXT_FIELDS = ("id", "name", "comment")


# ---------------------------------------------------------------- creation and reading
def _validate_name(name: Any) -> str:
    if name is None:
        raise errors.validation_error("name")
    if not isinstance(name, str) or len(name.strip()) < MIN_NAME_LENGTH:
        raise errors.data_validation_error("name=String value is too short")
    return name.strip()


def _check_project(tx: Tx, project_id: Any) -> None:
    if project_id is not None and tx.get_project(project_id) is None:
        raise errors.invalid_project_id(str(project_id))


def _new_task(call: Call) -> Doc:
    stamp = now()
    doc: Doc = {
        "id": new_id(),
        "company": call.identity.company,
        "user": call.identity.user,
        "name": _validate_name(call.field("name")),
        "type": call.field("type") or "training",
        "status": "created",
        "comment": call.field("comment") or "",
        "report_assets": [],
        "created": stamp,
        "output": {},
        "execution": {
            "test_split": 0,
            "parameters": {},
            "model_desc": {},
            "model_labels": {},
            "artifacts": [],
        },
        "tags": call.string_list("tags") or [],
        "system_tags": call.string_list("system_tags") or [],
        "script": {"binary": "python", "repository": "", "entry_point": "", "requirements": {}},
        "last_update": stamp,
        "last_change": stamp,
        "last_iteration": 0,
        "last_metrics": {},
        "unique_metrics": [],
        "metric_stats": {},
        "hyperparams": {},
        "configuration": {},
        "runtime": {},
        "models": {"input": [], "output": []},
        "container": {},
        "last_changed_by": call.identity.user,
    }
    for key in ("project", "parent", "hyperparams", "configuration", "script", "execution", "container", "runtime"):
        if call.field(key) is not None:
            doc[key] = call.field(key)
    if call.field("output_dest") is not None:
        doc["output"] = {"destination": call.field("output_dest")}
    return doc


def create(call: Call) -> Doc:
    doc = _new_task(call)
    with call.store.transaction() as tx:
        _check_project(tx, doc.get("project"))
        tx.put_task(doc)
    return {"id": doc["id"]}


def get_by_id(call: Call) -> Doc:
    with call.store.transaction() as tx:
        return {"task": load_task(tx, call.required("task"))}


def _text_match(text: Any, doc: Doc) -> bool:
    if not text:
        return True
    needle = str(text).lower()
    return any(needle in str(doc.get(key, "")).lower() for key in _SEARCH_TEXT_FIELDS)


def _matches(call: Call, doc: Doc, ids: list[str] | None) -> bool:
    if not ids and not call.flag("search_hidden") and "hidden" in doc.get("system_tags", []):
        return False
    try:
        name_ok = query.regex_match(call.field("name"), doc.get("name"))
    except re.error as exc:
        raise errors.validation_error("name", f"invalid regular expression: {exc}") from None
    return (
        name_ok
        and all(query.value_in(call.field(key), doc.get(key)) for key in ("type", "status", "parent", "user"))
        and all(query.tags_match(call.field(key), doc.get(key)) for key in _TAG_FIELDS)
        and _text_match(call.field("search_text"), doc)
    )


def get_all(call: Call) -> Doc:
    ids = call.string_list("id")
    projects = call.string_list("project")
    with call.store.transaction() as tx:
        docs = [d for d in tx.tasks(ids=ids, projects=projects) if _matches(call, d, ids)]
    docs = query.sort_docs(docs, call.field("order_by"))
    docs = query.page(docs, call.field("page"), call.field("page_size"))
    only = call.field("only_fields")
    return {"tasks": [query.project(d, only) for d in docs]}


# ---------------------------------------------------------------- editing
def _check_editable(task: Doc, force: bool) -> None:
    """Raises 400/110 unless ``task`` may be edited (see module docstring)."""
    status = task.get("status")
    running_dev = status == "in_progress" and "development" in task.get("system_tags", [])
    if not (force or status == "created" or running_dev):
        raise errors.invalid_status_for_edit(str(status))


def _edit_fields(call: Call, tx: Tx) -> Doc:
    fields: Doc = {}
    for key in _EDITABLE:
        if call.field(key) is None:
            continue
        value = call.string_list(key) if key in _TAG_FIELDS else call.field(key)
        if key == "name":
            value = _validate_name(value)
        elif key == "project":
            _check_project(tx, value)
        fields[key] = value
    return fields


def _edit(call: Call) -> Doc:
    with call.store.transaction() as tx:
        task = load_task(tx, call.required("task"))
        _check_editable(task, call.flag("force"))
        fields = _edit_fields(call, tx)
        if call.field("output_dest") is not None:
            fields["output"] = {**task.get("output", {}), "destination": call.field("output_dest")}
        if not fields:
            return {"updated": 0, "fields": {}}
        task.update(fields)
        fields.update(touch(task, call, update=not set(fields) <= set(_TAG_FIELDS)))
        tx.put_task(task)
    return {"updated": 1, "fields": fields}


def _update_task(call: Call, mutate: Callable[[Doc], Doc], *, check_status: bool = True) -> Doc:
    """Loads the task, checks it is editable, applies ``mutate`` (which returns the response) and saves."""
    with call.store.transaction() as tx:
        task = load_task(tx, call.required("task"))
        if check_status:
            _check_editable(task, call.flag("force"))
        result = mutate(task)
        touch(task, call)
        tx.put_task(task)
    return result


def edit_hyper_params(call: Call) -> Doc:
    params = call.field("hyperparams") or []
    replace = call.field("replace_hyperparams") or "none"

    def mutate(task: Doc) -> Doc:
        sections: Doc = {} if replace == "all" else task.setdefault("hyperparams", {})
        replaced: set[str] = set()
        for item in params:
            section = item.get("section", "")
            if replace == "section" and section not in replaced:
                sections[section], replaced = {}, replaced | {section}
            sections.setdefault(section, {})[item.get("name", "")] = dict(item)
        task["hyperparams"] = sections
        return {"updated": 1}

    return _update_task(call, mutate)


def delete_hyper_params(call: Call) -> Doc:
    def mutate(task: Doc) -> Doc:
        deleted = 0
        sections = task.setdefault("hyperparams", {})
        for item in call.field("hyperparams") or []:
            section, name = item.get("section", ""), item.get("name")
            if name is None:
                deleted += len(sections.pop(section, {}))
            elif name in sections.get(section, {}):
                del sections[section][name]
                deleted += 1
        return {"deleted": deleted}

    return _update_task(call, mutate)


def edit_configuration(call: Call) -> Doc:
    items = call.field("configuration") or []

    def mutate(task: Doc) -> Doc:
        config: Doc = {} if call.flag("replace_configuration") else task.setdefault("configuration", {})
        for item in items:
            config[item.get("name", "")] = dict(item)
        task["configuration"] = config
        return {"updated": 1}

    return _update_task(call, mutate)


def delete_configuration(call: Call) -> Doc:
    def mutate(task: Doc) -> Doc:
        config = task.setdefault("configuration", {})
        names = [n for n in call.field("configuration") or [] if n in config]
        for name in names:
            del config[name]
        return {"deleted": len(names)}

    return _update_task(call, mutate)


def set_requirements(call: Call) -> Doc:
    def mutate(task: Doc) -> Doc:
        script = task.setdefault("script", {})
        script["requirements"] = call.field("requirements") or {}
        return {"updated": 1, "fields": {"script": script}}

    return _update_task(call, mutate)


def _many(call: Call) -> list[Doc]:
    with call.store.transaction() as tx:
        return tx.tasks(ids=call.string_list("tasks") or [])


def get_hyper_params(call: Call) -> Doc:
    return {
        "params": [
            {
                "task": t["id"],
                "hyperparams": [p for s in t.get("hyperparams", {}).values() for p in s.values()],
            }
            for t in _many(call)
        ]
    }


def get_configurations(call: Call) -> Doc:
    names = call.field("names")
    return {
        "configurations": [
            {
                "task": t["id"],
                "configuration": [
                    c for n, c in t.get("configuration", {}).items() if not names or n in names
                ],
            }
            for t in _many(call)
        ]
    }


def get_configuration_names(call: Call) -> Doc:
    return {
        "configurations": [
            {"task": t["id"], "names": sorted(t.get("configuration", {}))} for t in _many(call)
        ]
    }


# ---------------------------------------------------------------- artifacts
def _artifact_key(artifact: Doc) -> tuple[str, str]:
    return artifact.get("key", ""), artifact.get("mode") or "output"


def add_or_update_artifacts(call: Call) -> Doc:
    new = [dict(a, mode=a.get("mode") or "output") for a in call.field("artifacts") or []]
    for artifact in new:
        if not artifact.get("key"):
            raise errors.validation_error("artifacts.key")

    def mutate(task: Doc) -> Doc:
        execution = task.setdefault("execution", {})
        by_key = {_artifact_key(a): a for a in execution.get("artifacts", [])}
        by_key.update({_artifact_key(a): a for a in new})
        execution["artifacts"] = list(by_key.values())
        return {"updated": 1}

    return _update_task(call, mutate, check_status=False)


def delete_artifacts(call: Call) -> Doc:
    doomed = {_artifact_key(a) for a in call.field("artifacts") or []}

    def mutate(task: Doc) -> Doc:
        execution = task.setdefault("execution", {})
        before = execution.get("artifacts", [])
        execution["artifacts"] = [a for a in before if _artifact_key(a) not in doomed]
        return {"deleted": len(before) - len(execution["artifacts"])}

    return _update_task(call, mutate, check_status=False)


# ---------------------------------------------------------------- status machine
def _status_change(call: Call, new_status: str, extra: Callable[[Doc, str], Doc] | None = None) -> Doc:
    """Moves the task to ``new_status`` if :data:`TRANSITIONS` (or ``force``) allows; returns the set
    fields."""
    with call.store.transaction() as tx:
        task = load_task(tx, call.required("task"))
        return _apply_status(call, tx, task, new_status, extra)


def _apply_status(
    call: Call, tx: Tx, task: Doc, new_status: str, extra: Callable[[Doc, str], Doc] | None
) -> Doc:
    current = task.get("status", "created")
    if not call.flag("force") and new_status != current and new_status not in TRANSITIONS.get(current, ()):
        raise errors.invalid_status_change(current, new_status)
    stamp = now()
    fields: Doc = {
        "status": new_status,
        "status_reason": call.field("status_reason") or "",
        "status_message": call.field("status_message") or "",
        "status_changed": stamp,
        "last_update": stamp,
        "last_change": stamp,
        "last_changed_by": call.identity.user,
    }
    if extra is not None:
        fields.update(extra(task, stamp))
    task.update(fields)
    tx.put_task(task)
    return fields


def _finished_fields(task: Doc, stamp: str) -> Doc:
    """``completed`` and ``active_duration`` (whole seconds since ``started``) of a task that stops
    running."""
    fields: Doc = {"completed": stamp}
    if task.get("started"):
        elapsed = datetime.fromisoformat(stamp) - datetime.fromisoformat(task["started"])
        fields["active_duration"] = max(0, int(elapsed.total_seconds()))
    return fields


def started(call: Call) -> Doc:
    fields = _status_change(call, "in_progress", lambda t, s: {} if t.get("started") else {"started": s})
    return {"fields": fields, "started": 1, "updated": 1}


def completed(call: Call) -> Doc:
    with call.store.transaction() as tx:
        task = load_task(tx, call.required("task"))
        fields = _apply_status(call, tx, task, "completed", _finished_fields)
        if call.flag("publish"):
            fields = _apply_status(call, tx, task, "published", _published_fields)
    return {"fields": fields, "published": int(call.flag("publish")), "updated": 1}


def _published_fields(task: Doc, stamp: str) -> Doc:
    return {"published": stamp, "output": task.get("output", {})}


def publish(call: Call) -> Doc:
    return {"fields": _status_change(call, "published", _published_fields), "updated": 1}


def stopped(call: Call) -> Doc:
    return {"fields": _status_change(call, "stopped", _finished_fields), "updated": 1}


def failed(call: Call) -> Doc:
    return {"fields": _status_change(call, "failed"), "updated": 1}


def close(call: Call) -> Doc:
    return {"fields": _status_change(call, "closed"), "updated": 1}


def _reset_fields(task: Doc, stamp: str) -> Doc:
    for key in ("started", "completed", "published", "active_duration"):
        task.pop(key, None)
    execution = dict(task.get("execution", {}))
    execution["artifacts"] = [a for a in execution.get("artifacts", []) if a.get("mode") == "input"]
    return {
        "execution": execution,
        "runtime": {},
        "last_metrics": {},
        "last_iteration": 0,
        "metric_stats": {},
    }


def reset(call: Call) -> Doc:
    with call.store.transaction() as tx:
        task = load_task(tx, call.required("task"))
        fields = _apply_status(call, tx, task, "created", _reset_fields)
        tx.delete_events(task["id"])
    return {
        "updated": 1,
        "fields": fields,
        "dequeued": {},
        "deleted_models": 0,
        "urls": {"model_urls": [], "event_urls": [], "artifact_urls": []},
    }


def ping(call: Call) -> Doc:
    with call.store.transaction() as tx:
        load_task(tx, call.required("task"))
    return {}


# ---------------------------------------------------------------- deletion and archiving
def delete(call: Call) -> Doc:
    with call.store.transaction() as tx:
        task = load_task(tx, call.required("task"))
        if task.get("status") != "created" and not call.flag("force"):
            raise errors.task_cannot_be_deleted(task["id"], str(task.get("status")))
        children = [t for t in tx.tasks() if t.get("parent") == task["id"]]
        for child in children:
            child.pop("parent")
            tx.put_task(child)
        tx.delete_task(task["id"])
    return {
        "deleted": True,
        "updated_children": len(children),
        "updated_models": 0,
        "deleted_models": 0,
        "urls": None,
    }


def _set_archived(call: Call, archived: bool) -> int:
    count = 0
    with call.store.transaction() as tx:
        for task in tx.tasks(ids=call.string_list("tasks") or []):
            tags = [t for t in task.get("system_tags", []) if t != "archived"]
            task["system_tags"] = [*tags, "archived"] if archived else tags
            touch(task, call, update=False)
            tx.put_task(task)
            count += 1
    return count


def archive(call: Call) -> Doc:
    return {"archived": _set_archived(call, True)}


def unarchive(call: Call) -> Doc:
    return {"unarchived": _set_archived(call, False)}


ENDPOINTS: dict[str, Handler] = {
    "tasks.create": create,
    "tasks.get_by_id": get_by_id,
    "tasks.get_all": get_all,
    "tasks.get_all_ex": get_all,
    "tasks.edit": _edit,
    "tasks.update": _edit,
    "tasks.edit_hyper_params": edit_hyper_params,
    "tasks.delete_hyper_params": delete_hyper_params,
    "tasks.get_hyper_params": get_hyper_params,
    "tasks.edit_configuration": edit_configuration,
    "tasks.delete_configuration": delete_configuration,
    "tasks.get_configurations": get_configurations,
    "tasks.get_configuration_names": get_configuration_names,
    "tasks.set_requirements": set_requirements,
    "tasks.add_or_update_artifacts": add_or_update_artifacts,
    "tasks.delete_artifacts": delete_artifacts,
    "tasks.started": started,
    "tasks.completed": completed,
    "tasks.publish": publish,
    "tasks.stopped": stopped,
    "tasks.failed": failed,
    "tasks.close": close,
    "tasks.reset": reset,
    "tasks.ping": ping,
    "tasks.delete": delete,
    "tasks.archive": archive,
    "tasks.unarchive": unarchive,
}
