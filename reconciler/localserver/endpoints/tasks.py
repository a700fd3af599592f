"""``tasks.*``: a task is a JSON document shaped like the real server's (see the recorded traffic).

Rules kept here, as clearml-server 2.0.0 has them (``apiserver/bll/task/utils.py``, ``task_operations.py``,
``hyperparams.py``, ``artifacts.py``, ``services/tasks.py``); ``tests/server/differential.py`` checks them
against the real server:

* Status machine (:data:`TRANSITIONS`): a status change not listed is refused with 400/110 ``Invalid status
  change`` unless ``force``; asking for the current status again is allowed (``tasks.completed`` twice is fine).
  ``tasks.publish`` checks the change to ``published`` unless ``force``; ``tasks.reset`` refuses a published
  task unless ``force`` and otherwise moves the task to ``created`` with the machine's rule.
* ``tasks.edit`` needs status ``created`` unless ``force``; with ``force`` any status may be edited.
  ``tasks.update`` (name, comment, tags, project...) never checks the status.
* "Updatable" endpoints -- ``edit_hyper_params``/``delete_hyper_params``, ``edit_configuration``/
  ``delete_configuration`` -- need status ``created``, or ``in_progress`` with ``force``; anything else is
  400/110 ``expected=created``. Hyper-parameters all in the ``properties`` section (any case) may be changed in
  every status, and do not move ``last_update``.
* ``add_or_update_artifacts``/``delete_artifacts`` are always "forced": ``created`` or ``in_progress`` only.
* ``tasks.delete`` of a task neither ``created`` nor archived needs ``force`` (400/123).
* Artifacts are upserted by (``key``, ``mode``) and read back sorted by key.
* Changing only user-settable fields (name, comment, tags, project...) does not move ``last_update`` (the SDK
  orders versions by it).
* Every endpoint changing one task answers an unknown id with 400/101 ``id=..., company=...``; reading and
  archiving endpoints with ``ids=(...)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .. import errors, query
from ..store import Tx
from .common import Call, Doc, Handler, load_task, load_task_for_write, new_id, now, touch

TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"queued", "in_progress"}),
    "queued": frozenset({"created", "in_progress", "stopped"}),
    "in_progress": frozenset({"stopped", "failed", "created", "completed"}),
    "stopped": frozenset(
        {"closed", "created", "failed", "queued", "in_progress", "published", "publishing", "completed"}
    ),
    "closed": frozenset({"created", "failed", "published", "publishing", "stopped"}),
    "failed": frozenset({"created", "stopped", "published", "queued"}),
    "publishing": frozenset({"published"}),
    "published": frozenset(),
    "completed": frozenset({"published", "in_progress", "created"}),
}
LOCKED_STATUSES = frozenset({"publishing", "published"})
TASK_TYPES = (
    "training",
    "testing",
    "inference",
    "data_processing",
    "application",
    "monitor",
    "controller",
    "report",
    "optimizer",
    "service",
    "qc",
    "custom",
)
MIN_NAME_LENGTH = 3
PROPERTIES_SECTION = "properties"
_TAG_FIELDS = ("tags", "system_tags")
# fields a user may set without it counting as a change of the task's content (no ``last_update``)
_USER_SET = frozenset({"name", "comment", "created", "project", "tags", "system_tags", "status_message"})
# fields tasks.create and tasks.edit accept; dict fields are replaced, "embedded" ones merged into the old value
_CREATE_FIELDS = (
    "name",
    "tags",
    "system_tags",
    "type",
    "comment",
    "parent",
    "project",
    "models",
    "container",
    "execution",
    "hyperparams",
    "configuration",
    "script",
    "runtime",
)
_DICT_FIELDS = frozenset({"models", "container", "execution", "hyperparams", "configuration", "script", "runtime"})
_EMBEDDED = frozenset({"execution", "script", "models"})
_UPDATE_FIELDS = ("name", "tags", "system_tags", "comment", "project")
_ARTIFACT_FIELDS = ("key", "type", "mode", "uri", "hash", "content_size", "timestamp", "type_data", "display_data")
_SEARCH_TEXT_FIELDS = ("id", "name", "comment")


def _default_execution() -> Doc:
    return {"test_split": 0, "parameters": {}, "model_desc": {}, "model_labels": {}, "artifacts": []}


# ---------------------------------------------------------------- validating fields
def _validate_name(name: Any) -> str:
    if name is None:
        raise errors.validation_error("name")
    if not isinstance(name, str):
        raise errors.wrong_type("name", "str", name)
    if len(name.strip()) < MIN_NAME_LENGTH:
        raise errors.data_validation_error("name=String value is too short")
    return name.strip()


def _check_project(tx: Tx, project_id: Any) -> None:
    if project_id is not None and (not isinstance(project_id, str) or tx.get_project(project_id) is None):
        raise errors.invalid_field_value("Project id", id=project_id, field="project")


def _check_parent(tx: Tx, parent_id: Any) -> None:
    if parent_id is not None and (not isinstance(parent_id, str) or tx.get_task(parent_id) is None):
        raise errors.invalid_field_value("Task id", id=parent_id, field="parent")


def _artifacts(items: Any, field: str) -> list[Doc]:
    """Artifacts as sent, validated: known fields only, ``mode`` defaulting to ``output``."""
    if not isinstance(items, list):
        raise errors.wrong_type(field, "list", items)
    result = []
    for item in items:
        if not isinstance(item, dict):
            raise errors.wrong_type(field, "dict", item)
        for key in ("key", "type"):
            if not isinstance(item.get(key), str):
                raise errors.item_field_required(field, key)
        artifact = {k: item[k] for k in _ARTIFACT_FIELDS if item.get(k) is not None}
        artifact.setdefault("mode", "output")
        if artifact["mode"] not in ("input", "output"):
            raise errors.not_a_choice(f"{field}.mode", artifact["mode"])
        result.append(artifact)
    return result


def _create_fields(call: Call, tx: Tx, names: tuple[str, ...]) -> Doc:
    """The fields of ``names`` present in the call, validated as the real server's tasks.create/edit do."""
    fields: Doc = {}
    for key in names:
        value = call.field(key)
        if value is None:
            continue
        if key == "name":
            value = _validate_name(value)
        elif key in _TAG_FIELDS:
            value = call.string_list(key)
        elif key == "type":
            value = call.choice("type", TASK_TYPES, "training")
        elif key == "status":
            value = call.choice("status", tuple(TRANSITIONS), "created")
        elif key == "project":
            _check_project(tx, value)
        elif key == "parent":
            _check_parent(tx, value)
        elif key in _DICT_FIELDS and not isinstance(value, dict):
            raise errors.invalid_field_value("dict", field=key)
        elif key == "comment" and not isinstance(value, str):
            raise errors.wrong_type(key, "str", value)
        if key == "execution" and "artifacts" in value:
            value = {**value, "artifacts": _artifacts(value["artifacts"], "execution.artifacts")}
        if key in ("hyperparams", "configuration") and not all(isinstance(v, dict) for v in value.values()):
            raise errors.invalid_field_value("dict", field=key)
        fields[key] = value
    if call.field("output_dest") is not None:
        fields["output_dest"] = call.string("output_dest")
    return fields


def _stored(key: str, value: Any) -> Any:
    """A field's value as stored: artifacts get the ``display_data: []`` the real server's model defaults to
    (answers echo what was sent)."""
    if key != "execution" or not isinstance(value.get("artifacts"), list):
        return value
    return {**value, "artifacts": [{"display_data": [], **a} for a in value["artifacts"]]}


# ---------------------------------------------------------------- creation and reading
def _new_task(call: Call, tx: Tx) -> Doc:
    if call.field("name") is None:
        raise errors.validation_error("name")
    if call.field("type") is None:
        raise errors.validation_error("type")
    if isinstance(call.field("tags"), str) or isinstance(call.field("system_tags"), str):
        field = "tags" if isinstance(call.field("tags"), str) else "system_tags"
        raise errors.data_validation_error(f"{field}=Only lists and tuples may be used in a list field")
    fields = _create_fields(call, tx, _CREATE_FIELDS)
    stamp = now()
    doc: Doc = {
        "id": new_id(),
        "company": call.identity.company,
        "user": call.identity.user,
        "name": fields.pop("name"),
        "type": fields.pop("type"),
        "status": "created",
        "comment": "",
        "report_assets": [],
        "created": stamp,
        "output": {},
        "execution": _default_execution(),
        "tags": [],
        "system_tags": [],
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
    output_dest = fields.pop("output_dest", None)
    if output_dest is not None:
        doc["output"] = {"destination": output_dest}
    for key, value in fields.items():
        doc[key] = _stored(key, {**doc[key], **value} if key in _EMBEDDED else value)
    return doc


def create(call: Call) -> Doc:
    with call.store.transaction() as tx:
        doc = _new_task(call, tx)
        tx.put_task(doc)
    return {"id": doc["id"]}


def _for_reading(task: Doc) -> Doc:
    """The task as the real server returns it: artifacts sorted by key."""
    execution = task.get("execution")
    if isinstance(execution, dict) and isinstance(execution.get("artifacts"), list):
        execution["artifacts"] = sorted(execution["artifacts"], key=lambda a: str(a.get("key", "")))
    return task


def get_by_id(call: Call) -> Doc:
    with call.store.transaction() as tx:
        return {"task": _for_reading(load_task(tx, call.task_id()))}


def _text_match(text: Any, doc: Doc) -> bool:
    if not text:
        return True
    needle = str(text).lower()
    return any(needle in str(doc.get(key, "")).lower() for key in _SEARCH_TEXT_FIELDS)


def _matches(call: Call, doc: Doc, ids: list[str] | None) -> bool:
    if not ids and not call.flag("search_hidden") and "hidden" in doc.get("system_tags", []):
        return False
    try:
        name_ok = query.regex_match(call.string("name"), doc.get("name")) and all(
            query.fields_match(combine, call.field(key), doc) for key, combine in query.MULTI_FIELD.items()
        )
    except re.error as exc:
        raise errors.malformed_regex(str(exc)) from None
    return (
        name_ok
        and all(query.value_in(call.field(key), doc.get(key)) for key in ("type", "status", "parent", "user"))
        and all(query.tags_match(call.string_list(key), doc.get(key)) for key in _TAG_FIELDS)
        and _text_match(call.field("search_text"), doc)
    )


def get_all(call: Call) -> Doc:
    ids = call.string_list("id")
    projects = call.string_list("project")
    try:
        query.check_regex(call.string("name"))
    except re.error as exc:
        raise errors.malformed_regex(str(exc)) from None
    with call.store.transaction() as tx:
        docs = [d for d in tx.tasks(ids=ids, projects=projects) if _matches(call, d, ids)]
    docs = query.sort_docs(docs, call.string_list("order_by"))
    docs = query.page(docs, *call.page())
    only = call.string_list("only_fields")
    return {"tasks": [query.project(_for_reading(d), only) for d in docs]}


# ---------------------------------------------------------------- editing
def _check_updatable(task: Doc, *, force: bool) -> None:
    """The real server's ``get_task_for_update``: ``created``, or also ``in_progress`` with ``force``."""
    status = str(task.get("status"))
    if not (status == "created" or (force and status == "in_progress")):
        raise errors.invalid_status_for_edit(status)


def _edit(call: Call) -> Doc:
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        if not call.flag("force") and task.get("status") != "created":
            raise errors.invalid_status_for_edit(str(task.get("status")))
        fields = _create_fields(call, tx, (*_CREATE_FIELDS, "status"))
        output_dest = fields.pop("output_dest", None)
        if output_dest is not None:
            fields["output"] = {**task.get("output", {}), "destination": output_dest}
        for key in _EMBEDDED & set(fields):
            if isinstance(task.get(key), dict):
                fields[key] = {**task[key], **fields[key]}
        if not fields:
            return {"updated": 0, "fields": {}}
        task.update({key: _stored(key, value) for key, value in fields.items()})
        fields.update(touch(task, call, update=not set(fields) <= _USER_SET))
        tx.put_task(task)
    return {"updated": 1, "fields": fields}


def update(call: Call) -> Doc:
    """``tasks.update``: user-settable fields only, in any status."""
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        fields = _create_fields(call, tx, _UPDATE_FIELDS)
        if not fields:
            return {"updated": 0, "fields": {}}
        task.update(fields)
        fields.update(touch(task, call, update=False))
        tx.put_task(task)
    return {"updated": 1, "fields": fields}


def _update_task(
    call: Call,
    mutate: Callable[[Doc], Doc],
    *,
    force: bool | None = None,
    any_status: bool = False,
    last_update: bool = True,
) -> Doc:
    """Loads the task, checks it is updatable unless ``any_status`` (``force`` defaults to the call's), applies
    ``mutate`` (which returns the response) and saves."""
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        if not any_status:
            _check_updatable(task, force=call.flag("force") if force is None else force)
        result = mutate(task)
        touch(task, call, update=last_update)
        tx.put_task(task)
    return result


def _properties_only(items: list[Doc]) -> bool:
    """Lower-cases the ``properties`` section in place; True if every item is in it (as the real server)."""
    for item in items:
        if str(item.get("section", "")).lower() == PROPERTIES_SECTION:
            item["section"] = PROPERTIES_SECTION
    return all(item.get("section") == PROPERTIES_SECTION for item in items)


def edit_hyper_params(call: Call) -> Doc:
    params = call.items("hyperparams", required=("section", "name", "value"), min_length=1)
    replace = call.choice("replace_hyperparams", ("none", "section", "all"), "none")
    properties_only = _properties_only(params)

    def mutate(task: Doc) -> Doc:
        sections: Doc = {} if replace == "all" else task.setdefault("hyperparams", {})
        replaced: set[str] = set()
        for item in params:
            section = item["section"]
            if replace == "section" and section not in replaced:
                sections[section], replaced = {}, replaced | {section}
            sections.setdefault(section, {})[item["name"]] = {
                k: item[k] for k in ("section", "name", "value", "type", "description") if item.get(k) is not None
            }
        task["hyperparams"] = sections
        return {"updated": 1}

    return _update_task(call, mutate, any_status=properties_only, last_update=not properties_only)


def delete_hyper_params(call: Call) -> Doc:
    params = call.items("hyperparams", required=("section",), min_length=1)
    properties_only = _properties_only(params)
    whole_sections = {item["section"] for item in params if not item.get("name")}
    if any(item.get("name") and item["section"] in whole_sections for item in params):
        raise errors.fields_conflict(
            "Cannot delete section field if the whole section was scheduled for deletion"
        )

    def mutate(task: Doc) -> Doc:
        sections = task.setdefault("hyperparams", {})
        for item in params:
            section, name = item["section"], item.get("name")
            if not name:
                sections.pop(section, None)
            elif isinstance(sections.get(section), dict):
                sections[section].pop(name, None)
        return {"deleted": 1}

    return _update_task(call, mutate, any_status=properties_only, last_update=not properties_only)


def edit_configuration(call: Call) -> Doc:
    items = call.items("configuration", required=("name", "value"), min_length=1)
    replace = call.flag("replace_configuration")

    def mutate(task: Doc) -> Doc:
        config: Doc = {} if replace else task.setdefault("configuration", {})
        for item in items:
            config[item["name"]] = {
                k: item[k] for k in ("name", "value", "type", "description") if item.get(k) is not None
            }
        task["configuration"] = config
        return {"updated": 1}

    return _update_task(call, mutate)


def delete_configuration(call: Call) -> Doc:
    names = call.string_list("configuration")
    if names is None:
        raise errors.validation_error("configuration")
    if not names:
        raise errors.list_too_short("configuration", names)

    def mutate(task: Doc) -> Doc:
        config = task.setdefault("configuration", {})
        for name in names:
            config.pop(name, None)
        return {"deleted": 1}

    return _update_task(call, mutate)


def set_requirements(call: Call) -> Doc:
    requirements = call.mapping("requirements") or {}

    def mutate(task: Doc) -> Doc:
        task.setdefault("script", {})["requirements"] = requirements
        return {"updated": 1, "fields": {}}

    return _update_task(call, mutate, any_status=True)


def _many(call: Call) -> list[Doc]:
    """The tasks named by ``tasks``; 400/101 naming those that do not exist."""
    ids = call.string_list("tasks") or []
    with call.store.transaction() as tx:
        found = tx.tasks(ids=ids) if ids else []
    missing = sorted(set(ids) - {t["id"] for t in found})
    if missing:
        raise errors.invalid_task_id(missing)
    return found


def get_hyper_params(call: Call) -> Doc:
    return {
        "params": [
            {
                "task": t["id"],
                "hyperparams": sorted(
                    (p for s in t.get("hyperparams", {}).values() for p in s.values()),
                    key=lambda p: (str(p.get("section", "")), str(p.get("name", ""))),
                ),
            }
            for t in _many(call)
        ]
    }


def get_configurations(call: Call) -> Doc:
    names = call.string_list("names")
    return {
        "configurations": [
            {
                "task": t["id"],
                "configuration": [
                    c
                    for n, c in sorted(t.get("configuration", {}).items())
                    if not names or n in names
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
    return str(artifact.get("key", "")), str(artifact.get("mode") or "output")


def add_or_update_artifacts(call: Call) -> Doc:
    if call.field("artifacts") is None:
        raise errors.validation_error("artifacts")
    new = [{"display_data": [], **a} for a in _artifacts(call.field("artifacts"), "artifacts")]
    if not new:
        raise errors.list_too_short("artifacts", [])

    def mutate(task: Doc) -> Doc:
        execution = task.setdefault("execution", _default_execution())
        by_key = {_artifact_key(a): a for a in execution.get("artifacts", [])}
        by_key.update({_artifact_key(a): a for a in new})
        execution["artifacts"] = list(by_key.values())
        return {"updated": 1}

    return _update_task(call, mutate, force=True)


def delete_artifacts(call: Call) -> Doc:
    doomed = {_artifact_key(a) for a in call.items("artifacts", required=("key",), min_length=1)}

    def mutate(task: Doc) -> Doc:
        execution = task.setdefault("execution", _default_execution())
        execution["artifacts"] = [a for a in execution.get("artifacts", []) if _artifact_key(a) not in doomed]
        return {"deleted": 1}

    return _update_task(call, mutate, force=True)


# ---------------------------------------------------------------- status machine
def _change_status(
    call: Call,
    tx: Tx,
    task: Doc,
    new_status: str,
    *,
    force: bool,
    extra: Doc | None = None,
    reason: str | None = None,
    message: str | None = None,
) -> Doc:
    """The real server's ``ChangeStatusRequest``: validates the transition (unless ``force``), sets the status
    fields and ``extra``, saves and returns the response (``updated`` and the set ``fields``)."""
    current = str(task.get("status", "created"))
    if not force and new_status != current and new_status not in TRANSITIONS.get(current, ()):
        raise errors.invalid_status_change(current, new_status)
    stamp = now()
    fields: Doc = {
        "status": new_status,
        "status_reason": (call.string("status_reason") or "") if reason is None else reason,
        "status_message": (call.string("status_message") or "") if message is None else message,
        "status_changed": stamp,
        "last_update": stamp,
        "last_change": stamp,
        "last_changed_by": call.identity.user,
        **(extra or {}),
    }
    task.update(fields)
    for key in [k for k, v in (extra or {}).items() if v is None]:  # unset, as the real server's ``None``
        task.pop(key, None)
    tx.put_task(task)
    return {"updated": 1, "fields": fields}


def _set_status(call: Call, new_status: str, extra: Callable[[Doc], Doc] | None = None) -> Doc:
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        return _change_status(
            call, tx, task, new_status, force=call.flag("force"), extra=extra(task) if extra else None
        )


def started(call: Call) -> Doc:
    result = _set_status(call, "in_progress", lambda t: {} if t.get("started") else {"started": now()})
    return {**result, "started": result["updated"]}


def stopped(call: Call) -> Doc:
    return _set_status(call, "stopped", lambda t: {"completed": now()})


def failed(call: Call) -> Doc:
    return _set_status(call, "failed")


def close(call: Call) -> Doc:
    return _set_status(call, "closed")


def _publish(call: Call, tx: Tx, task: Doc, *, force: bool) -> Doc:
    current = str(task.get("status"))
    if not force and "published" not in TRANSITIONS.get(current, ()):
        raise errors.invalid_status_change(current, "published")
    task["status"] = "publishing"
    return _change_status(
        call, tx, task, "published", force=force, extra={"published": now(), "output": task.get("output", {})}
    )


def completed(call: Call) -> Doc:
    force = call.flag("force")
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        result = _change_status(call, tx, task, "completed", force=force, extra={"completed": now()})
        published = 0
        if call.flag("publish"):
            published = _publish(call, tx, task, force=force)["updated"]
            result["fields"]["status"] = task["status"]
    return {**result, "published": published}


def publish(call: Call) -> Doc:
    with call.store.transaction() as tx:
        return _publish(call, tx, load_task_for_write(tx, call), force=call.flag("force"))


def _reset_task(task: Doc, *, clear_all: bool) -> None:
    """What ``tasks.reset`` clears besides the status (none of it is in the answer's ``fields``)."""
    for key in ("started", "completed", "published", "active_duration", "enqueue_status", "last_worker"):
        task.pop(key, None)
    task.update(last_iteration=0, last_metrics={}, unique_metrics=[], metric_stats={}, runtime={})
    task.setdefault("models", {})["output"] = []
    for key in ("result", "error"):
        task.get("output", {}).pop(key, None)
    if clear_all:
        task["execution"] = _default_execution()
        task.pop("script", None)
        return
    execution = task.setdefault("execution", _default_execution())
    execution.pop("queue", None)
    execution["artifacts"] = [a for a in execution.get("artifacts", []) if a.get("mode") == "input"]


def reset(call: Call) -> Doc:
    force = call.flag("force")
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        if not force and task.get("status") == "published":
            raise errors.invalid_status_for_reset(task["id"], "published")
        current = str(task.get("status"))
        if not force and current != "created" and "created" not in TRANSITIONS.get(current, ()):
            raise errors.invalid_status_change(current, "created")
        _reset_task(task, clear_all=call.flag("clear_all"))
        result = _change_status(call, tx, task, "created", force=True, reason="reset", message="reset")
        tx.delete_events(task["id"])
    return {**result, "dequeued": {}, "events": {}, "deleted_models": 0, "urls": {}}


def record_activity(task: Doc, user: str, *, iteration: int | None = None) -> None:
    """What reporting to a task (``tasks.ping``, events) changes, as the real server's ``set_last_update``:
    the change stamps, ``active_duration`` (whole seconds since ``started``) of a running task, and the
    highest reported iteration."""
    stamp = now()
    task.update(last_update=stamp, last_change=stamp, last_changed_by=user)
    last = task.get("last_iteration")
    if iteration is not None and (not isinstance(last, int) or iteration > last):
        task["last_iteration"] = iteration
    if task.get("status") == "in_progress" and isinstance(task.get("started"), str):
        try:
            elapsed = datetime.fromisoformat(stamp) - datetime.fromisoformat(task["started"])
        except (ValueError, TypeError):  # a "started" set by a client, not by this server
            return
        task["active_duration"] = max(0, int(elapsed.total_seconds()))


def ping(call: Call) -> Doc:
    """Marks the task alive; an unknown id changes nothing (the real server does not check it)."""
    with call.store.transaction() as tx:
        task = tx.get_task(call.task_id())
        if task is not None:
            record_activity(task, call.identity.user)
            tx.put_task(task)
    return {}


# ---------------------------------------------------------------- deletion and archiving
def delete(call: Call) -> Doc:
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        status = str(task.get("status"))
        if status != "created" and "archived" not in task.get("system_tags", []) and not call.flag("force"):
            raise errors.task_cannot_be_deleted(task["id"], status)
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


def _set_archived(call: Call, task: Doc, archived: bool) -> None:
    tags = [t for t in task.get("system_tags", []) if t != "archived"]
    task["system_tags"] = [*tags, "archived"] if archived else tags
    task["status_message"] = call.string("status_message") or ""
    task["status_reason"] = call.string("status_reason") or ""
    touch(task, call, update=False)


def archive(call: Call) -> Doc:
    tasks = _many(call)
    with call.store.transaction() as tx:
        for task in tasks:
            _set_archived(call, task, True)
            tx.put_task(task)
    return {"archived": len(tasks)}


def _batch(call: Call, key: str, archived: bool) -> Doc:
    """``tasks.archive_many``/``unarchive_many``: per-id results; unknown ids fail alone, as the real server."""
    ids = call.string_list("ids")
    if ids is None:
        raise errors.validation_error("ids")
    if not ids:
        raise errors.list_too_short("ids", ids)
    succeeded, failed = [], []
    with call.store.transaction() as tx:
        for task_id in ids:
            task = tx.get_task(task_id)
            if task is None:
                err = errors.invalid_task_id_for_write(task_id, call.identity.company)
                data = {"id": task_id, "company": call.identity.company}
                error = {"codes": [err.code, err.subcode], "msg": err.msg, "data": data}
                failed.append({"id": task_id, "error": error})
                continue
            _set_archived(call, task, archived)
            tx.put_task(task)
            succeeded.append({"id": task_id, key: True})
    return {"succeeded": succeeded, "failed": failed}


def archive_many(call: Call) -> Doc:
    return _batch(call, "archived", True)


def unarchive_many(call: Call) -> Doc:
    return _batch(call, "unarchived", False)


ENDPOINTS: dict[str, Handler] = {
    "tasks.create": create,
    "tasks.get_by_id": get_by_id,
    "tasks.get_all": get_all,
    "tasks.get_all_ex": get_all,
    "tasks.edit": _edit,
    "tasks.update": update,
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
    "tasks.archive_many": archive_many,
    "tasks.unarchive_many": unarchive_many,
}
