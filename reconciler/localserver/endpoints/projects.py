"""``projects.*``: a project is a JSON document; its full name (``a/b/c``) is unique and its ancestors exist.

Invariants kept by every handler: ``parent`` is the id of the project named by the name's prefix and ``path``
lists all ancestor ids from the root; creating or renaming to ``a/b/c`` creates missing ancestors; deleting a
project deletes its whole subtree.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from .. import errors, query
from ..store import Tx
from .common import Call, Doc, Handler, new_id, now

HIDDEN = "hidden"
_UPDATABLE = ("name", "description", "tags", "system_tags", "default_output_destination")


def _normalize_name(name: Any) -> str:
    if name is not None and not isinstance(name, str):
        raise errors.wrong_type("name", "str", name)
    if not name or not name.strip():
        raise errors.validation_error("name")
    parts = [part.strip() for part in name.strip().strip("/").split("/")]
    if not all(parts):
        raise errors.data_validation_error(f"name={name} (empty project name part)")
    return "/".join(parts)


def _new_project(call: Call, name: str, parent: Doc | None, **fields: Any) -> Doc:
    stamp = now()
    doc: Doc = {
        "id": new_id(),
        "company": call.identity.company,
        "user": call.identity.user,
        "name": name,
        "basename": name.rsplit("/", 1)[-1],
        "description": "",
        "created": stamp,
        "tags": [],
        "system_tags": [],
        "last_update": stamp,
        "featured": 9999,
    }
    if parent is not None:
        doc["parent"] = parent["id"]
        doc["path"] = [*parent.get("path", []), parent["id"]]
    doc.update({k: v for k, v in fields.items() if v is not None})
    return doc


def _ensure_ancestors(tx: Tx, call: Call, name: str) -> Doc | None:
    """The parent project of ``name`` (created with all missing ancestors), or None for a root name."""
    parent: Doc | None = None
    parts = name.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        existing = tx.project_by_name(prefix)
        if existing is None:
            existing = _new_project(call, prefix, parent)
            tx.insert_project(existing)
        parent = existing
    return parent


def _insert_unique(tx: Tx, call: Call, doc: Doc) -> None:
    try:
        tx.insert_project(doc)
    except sqlite3.IntegrityError:
        raise errors.project_name_exists(doc["name"], call.identity.company) from None


def create(call: Call) -> Doc:
    name = _normalize_name(call.string("name"))
    with call.store.transaction() as tx:
        if tx.project_by_name(name) is not None:
            raise errors.project_name_exists(name, call.identity.company)
        parent = _ensure_ancestors(tx, call, name)
        doc = _new_project(
            call,
            name,
            parent,
            description=call.string("description"),
            tags=call.string_list("tags"),
            system_tags=call.string_list("system_tags"),
            default_output_destination=call.string("default_output_destination"),
        )
        _insert_unique(tx, call, doc)
    return {"id": doc["id"]}


def _load(tx: Tx, project_id: Any) -> Doc:
    doc = tx.get_project(project_id) if isinstance(project_id, str) else None
    if doc is None:
        raise errors.invalid_project_id(str(project_id))
    return doc


def get_by_id(call: Call) -> Doc:
    with call.store.transaction() as tx:
        return {"project": _load(tx, call.string("project", required=True))}


def _matches(call: Call, doc: Doc, ids: list[str] | None) -> bool:
    if ids and doc["id"] not in ids:
        return False
    if not ids and not call.flag("search_hidden") and HIDDEN in doc.get("system_tags", []):
        return False
    try:
        name_ok = query.regex_match(call.string("name"), doc["name"])
    except re.error as exc:
        raise errors.malformed_regex(str(exc)) from None
    return (
        name_ok
        and query.value_in(call.field("basename"), doc.get("basename"))
        and query.value_in(call.field("parent"), doc.get("parent"))
        and query.tags_match(call.string_list("tags"), doc.get("tags"))
        and query.tags_match(call.string_list("system_tags"), doc.get("system_tags"))
    )


def get_all(call: Call) -> Doc:
    ids = call.string_list("id")
    try:
        query.check_regex(call.string("name"))
    except re.error as exc:
        raise errors.malformed_regex(str(exc)) from None
    with call.store.transaction() as tx:
        docs = [d for d in tx.all_projects() if _matches(call, d, ids)]
    for doc in docs:
        doc.pop("path", None)
    docs = query.sort_docs(docs, call.string_list("order_by"))
    docs = query.page(docs, *call.page())
    only = call.string_list("only_fields")
    return {"projects": [query.project(d, only) for d in docs]}


def _subtree(tx: Tx, root: Doc) -> list[Doc]:
    """``root`` and all its descendants, parents before children."""
    prefix = root["name"] + "/"
    below = [d for d in tx.all_projects() if d["name"].startswith(prefix)]
    return [root, *sorted(below, key=lambda d: d["name"].count("/"))]


def _rename(tx: Tx, call: Call, doc: Doc, new_name: str) -> None:
    """Renames/moves ``doc`` and its subtree to ``new_name`` (creating missing ancestors)."""
    existing = tx.project_by_name(new_name)
    if existing is not None and existing["id"] != doc["id"]:
        raise errors.project_name_exists(new_name, call.identity.company)
    old_name = doc["name"]
    subtree = _subtree(tx, doc)
    parent = _ensure_ancestors(tx, call, new_name)
    doc.pop("parent", None)
    doc.pop("path", None)
    if parent is not None:
        doc["parent"], doc["path"] = parent["id"], [*parent.get("path", []), parent["id"]]
    doc["name"], doc["basename"] = new_name, new_name.rsplit("/", 1)[-1]
    tx.update_project(doc)
    by_id = {doc["id"]: doc}
    for child in subtree[1:]:
        child["name"] = new_name + child["name"][len(old_name) :]
        child["path"] = [*by_id[child["parent"]].get("path", []), child["parent"]]
        by_id[child["id"]] = child
        tx.update_project(child)


def update(call: Call) -> Doc:
    fields: Doc = {}
    with call.store.transaction() as tx:
        doc = _load(tx, call.string("project", required=True))
        for key in _UPDATABLE:
            value = call.field(key)
            if value is None:
                continue
            if key == "name":
                value = _normalize_name(value)
                if value != doc["name"]:
                    _rename(tx, call, doc, value)
            elif key in ("tags", "system_tags"):
                value = call.string_list(key)
            else:
                value = call.string(key)
            fields[key] = value
            doc[key] = value
        if fields:
            doc["last_update"] = now()
            tx.update_project(doc)
    return {"updated": 1 if fields else 0, "fields": fields}


def delete(call: Call) -> Doc:
    """Deletes the project subtree. Its tasks: refused unless ``force``; deleted with ``delete_contents``,
    otherwise left without a project."""
    with call.store.transaction() as tx:
        subtree = _subtree(tx, _load(tx, call.string("project", required=True)))
        project_ids = [d["id"] for d in subtree]
        tasks = tx.tasks(projects=project_ids)
        if tasks and not (call.flag("force") or call.flag("delete_contents")):
            raise errors.project_has_tasks(project_ids[0], len(tasks))
        for task in tasks:
            if call.flag("delete_contents"):
                tx.delete_task(task["id"])
            else:
                task.pop("project", None)
                tx.put_task(task)
        for project_id in reversed(project_ids):
            tx.delete_project(project_id)
    deleted_tasks = len(tasks) if call.flag("delete_contents") else 0
    return {
        "deleted": 1,
        "disassociated_tasks": len(tasks) - deleted_tasks,
        "deleted_models": 0,
        "deleted_tasks": deleted_tasks,
        "urls": {"model_urls": [], "event_urls": [], "artifact_urls": []},
    }


ENDPOINTS: dict[str, Handler] = {
    "projects.create": create,
    "projects.get_by_id": get_by_id,
    "projects.get_all": get_all,
    "projects.get_all_ex": get_all,
    "projects.update": update,
    "projects.delete": delete,
}
