"""``queues.*`` and the task calls that move tasks through them (``tasks.enqueue``, ``tasks.dequeue``,
``tasks.stop``): what a real ``clearml-agent`` needs to take work from this server.

Rules kept here, as clearml-server 2.0.0 has them (``bll/queue/queue_bll.py``, ``bll/task/task_operations.py``,
``bll/task/task_bll.py``, ``services/queues.py``); ``tests/server/differential.py`` checks them against the real
server:

* A queue's name is unique and at least 3 characters; its ``entries`` list holds ``{task, added}`` in order.
  ``queues.get_next_task`` pops the first entry (the task stays ``queued``: the agent dequeues it itself).
* ``tasks.enqueue`` moves the task to ``queued`` by the status machine (unless ``force``), remembers the status it
  came from in ``enqueue_status``, drops the ``development`` system tag, appends the task to the queue (a task
  already in it is 400/706, and the status change is undone), sets ``execution.queue`` and takes the task out of
  every other queue. ``queue_name`` names (or creates) the queue; neither ``queue`` nor ``queue_name``: the queue
  tagged ``default``. ``verify_watched_queue`` adds ``queue_watched``: whether a live worker listens on it.
* ``tasks.dequeue`` takes a queued task out of its queue and, for a ``queued`` or ``in_progress`` task, sets the
  status to ``new_status``, or the ``enqueue_status``, or ``created`` (forced); ``enqueue_status`` is cleared.
* ``tasks.stop``: a queued task, or one no worker reported on in the last 10 minutes, is dequeued and
  ``stopped``; a task a worker runs keeps its status and gets the message ``stopping`` (the agent stops it).
* Removing a task from a queue with ``update_task_status`` (and clearing or deleting a queue) puts it back to
  its ``enqueue_status`` (or ``created``) and unsets ``execution.queue``.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from typing import Any

from .. import errors, query
from ..store import Tx
from .common import Call, Doc, Handler, load_task_for_write, new_id, now
from .tasks import _change_status
from .workers import live_workers

MIN_NAME_LENGTH = 3
DEFAULT_TAG = "default"
DEVELOPMENT_TAG = "development"
TASK_UPDATE_TIMEOUT_S = 600  # apiserver.workers.task_update_timeout: a worker reported on the task this recently
_UPDATABLE = ("name", "display_name", "tags", "system_tags", "metadata")


# ---------------------------------------------------------------- queues
def _name(call: Call, value: Any) -> str:
    if value is None:
        raise errors.validation_error("name")
    if not isinstance(value, str):
        raise errors.wrong_type("name", "str", value)
    if len(value.strip()) < MIN_NAME_LENGTH:
        raise errors.data_validation_error("name=String value is too short")
    return value.strip()


def _new_queue(call: Call, name: str, **fields: Any) -> Doc:
    stamp = now()
    doc: Doc = {"id": new_id(), "name": name, "company": call.identity.company, "created": stamp, "tags": [],
                "system_tags": [], "entries": [], "last_update": stamp, "metadata": {}}
    doc.update({k: v for k, v in fields.items() if v is not None})
    return doc


def _insert(tx: Tx, doc: Doc) -> None:
    try:
        tx.insert_queue(doc)
    except sqlite3.IntegrityError:
        raise errors.duplicate_unique_value() from None


def ensure_default(tx: Tx, call: Call) -> Doc:
    """The queue tagged ``default``; the real server makes one named ``default`` when it first starts."""
    found = [q for q in tx.queues() if DEFAULT_TAG in q.get("system_tags", [])]
    if found:
        return found[0]
    doc = _new_queue(call, DEFAULT_TAG, system_tags=[DEFAULT_TAG])
    _insert(tx, doc)
    return doc


def load_queue(tx: Tx, call: Call, queue_id: Any) -> Doc:
    doc = tx.get_queue(queue_id) if isinstance(queue_id, str) else None
    if doc is None:
        raise errors.invalid_queue_id(id=queue_id, company=call.identity.company)
    return doc


def create(call: Call) -> Doc:
    name = _name(call, call.field("name"))
    with call.store.transaction() as tx:
        ensure_default(tx, call)
        doc = _new_queue(call, name, display_name=call.string("display_name"), tags=call.string_list("tags"),
                         system_tags=call.string_list("system_tags"), metadata=call.mapping("metadata"))
        _insert(tx, doc)
    return {"id": doc["id"]}


def _matches(call: Call, doc: Doc, ids: list[str] | None) -> bool:
    if ids and doc["id"] not in ids:
        return False
    try:
        name_ok = query.regex_match(call.string("name"), doc.get("name"))
    except re.error as exc:
        raise errors.malformed_regex(str(exc)) from None
    return (name_ok and query.tags_match(call.string_list("tags"), doc.get("tags"))
            and query.tags_match(call.string_list("system_tags"), doc.get("system_tags")))


def _listed(call: Call, tx: Tx) -> list[Doc]:
    ensure_default(tx, call)
    ids = call.string_list("id")
    docs = [d for d in tx.queues() if _matches(call, d, ids)]
    docs = query.sort_docs(docs, call.string_list("order_by"))
    docs = query.page(docs, *call.page())
    limit = call.integer("max_task_entries")
    if limit:
        for doc in docs:
            doc["entries"] = doc["entries"][:limit]
    return docs


def get_all(call: Call) -> Doc:
    with call.store.transaction() as tx:
        docs = _listed(call, tx)
    only = call.string_list("only_fields")
    return {"queues": [query.project(d, only) for d in docs]}


def get_all_ex(call: Call) -> Doc:
    """``get_all`` joined with task names and the workers listening on each queue."""
    with call.store.transaction() as tx:
        docs = _listed(call, tx)
        names = {t["id"]: t.get("name") for t in tx.tasks(ids=[e["task"] for d in docs for e in d["entries"]])}
        workers = live_workers(tx)
    out = []
    for doc in docs:
        doc["company"] = {"id": doc["company"]}
        for entry in doc["entries"]:
            entry["task"] = {"id": entry["task"], "name": names.get(entry["task"])}
        doc["workers"] = [{"name": w["id"], "ip": w.get("ip", ""), "key": w["key"], "task": w.get("task")}
                          for w in workers if doc["id"] in w.get("queues", [])]
        out.append(doc)
    only = call.string_list("only_fields")
    return {"queues": [query.project(d, only) for d in out]}


def get_by_id(call: Call) -> Doc:
    with call.store.transaction() as tx:
        doc = load_queue(tx, call, call.string("queue", required=True))
    limit = call.integer("max_task_entries")
    if limit:
        doc["entries"] = doc["entries"][:limit]
    return {"queue": doc}


def get_default(call: Call) -> Doc:
    with call.store.transaction() as tx:
        doc = ensure_default(tx, call)
    return {"id": doc["id"], "name": doc["name"]}


def update(call: Call) -> Doc:
    fields: Doc = {}
    with call.store.transaction() as tx:
        doc = load_queue(tx, call, call.string("queue", required=True))
        for key in _UPDATABLE:
            value = call.field(key)
            if value is None:
                continue
            if key == "name":
                value = _name(call, value)
            elif key in ("tags", "system_tags"):
                value = call.string_list(key)
            elif key == "metadata":
                value = call.mapping(key)
            else:
                value = call.string(key)
            fields[key] = value
            doc[key] = value
        if fields:
            doc["last_update"] = now()
            try:
                tx.update_queue(doc)
            except sqlite3.IntegrityError:
                raise errors.duplicate_unique_value() from None
    return {"updated": 1 if fields else 0, "fields": fields}


def _back_from_queue(call: Call, tx: Tx, task_ids: list[str], queue_id: str, reason: str) -> list[str]:
    """Tasks of ``queue_id`` leaving it: back to the status they were enqueued from, no ``execution.queue``."""
    moved = []
    for task_id in task_ids:
        task = tx.get_task(task_id)
        if task is None or query.get_path(task, "execution.queue") != queue_id:
            continue
        moved.append(task_id)
        task.setdefault("execution", {}).pop("queue", None)
        _change_status(call, tx, task, task.get("enqueue_status") or "created", force=True,
                       extra={"enqueue_status": None}, reason=reason, message="")
    return moved


def delete(call: Call) -> Doc:
    with call.store.transaction() as tx:
        doc = load_queue(tx, call, call.string("queue", required=True))
        if doc["entries"]:
            if not call.flag("force"):
                raise errors.queue_not_empty(doc["id"])
            _back_from_queue(call, tx, [e["task"] for e in doc["entries"]], doc["id"],
                             f"Queue {doc['id']} was deleted")
        tx.delete_queue(doc["id"])
    return {"deleted": 1}


def _add_entry(tx: Tx, queue: Doc, task_id: str) -> None:
    if any(e["task"] == task_id for e in queue["entries"]):
        raise errors.task_already_queued(task_id)
    stamp = now()
    queue["entries"].append({"task": task_id, "added": stamp})
    queue["last_update"] = stamp
    tx.update_queue(queue)


def add_task(call: Call) -> Doc:
    task_id = call.task_id()
    with call.store.transaction() as tx:
        queue = load_queue(tx, call, call.string("queue", required=True))
        _add_entry(tx, queue, task_id)
        task = tx.get_task(task_id)
        if task is not None and call.field("update_execution_queue", True):
            task.setdefault("execution", {})["queue"] = queue["id"]
            tx.put_task(task)
    return {"added": 1}


def get_next_task(call: Call) -> Doc:
    with call.store.transaction() as tx:
        queue = load_queue(tx, call, call.string("queue", required=True))
        wanted = call.string("task")
        if not queue["entries"] or (wanted and queue["entries"][0]["task"] != wanted):
            return {}
        entry = queue["entries"].pop(0)
        queue["last_update"] = now()
        tx.update_queue(queue)
        data: Doc = {"entry": entry}
        task = tx.get_task(entry["task"])
        if task is not None:
            if task.get("status") == "stopped":  # the real server's fix for a task aborted while queued
                task["status"] = "queued"
                tx.put_task(task)
            if call.flag("get_task_info"):
                data["task_info"] = {"company": task.get("company"), "user": task.get("user")}
    return data


def _remove(tx: Tx, call: Call, queue: Doc, task_id: str) -> int:
    kept = [e for e in queue["entries"] if e["task"] != task_id]
    removed = len(queue["entries"]) - len(kept)
    if not removed:
        raise errors.task_not_in_queue(task_id, queue["id"], call.identity.company)
    queue["entries"] = kept
    queue["last_update"] = now()
    tx.update_queue(queue)
    return removed


def remove_task(call: Call) -> Doc:
    task_id = call.task_id()
    with call.store.transaction() as tx:
        queue = load_queue(tx, call, call.string("queue", required=True))
        removed = _remove(tx, call, queue, task_id)
        if call.flag("update_task_status"):
            _back_from_queue(call, tx, [task_id], queue["id"], f"Task was removed from the queue {queue['id']}")
    return {"removed": removed}


def clear_queue(call: Call) -> Doc:
    with call.store.transaction() as tx:
        queue = tx.get_queue(call.string("queue", required=True) or "")
        if queue is None:
            raise errors.invalid_queue_id(queue=call.field("queue"))
        if not queue["entries"]:
            return {"removed_tasks": []}
        moved = _back_from_queue(call, tx, [e["task"] for e in queue["entries"]], queue["id"],
                                 f"Queue {queue['id']} was cleared")
        queue["entries"] = []
        queue["last_update"] = now()
        tx.update_queue(queue)
    return {"removed_tasks": moved}


def peek_task(call: Call) -> Doc:
    with call.store.transaction() as tx:
        queue = load_queue(tx, call, call.string("queue", required=True))
    return {"task": queue["entries"][0]["task"] if queue["entries"] else None}


def get_num_entries(call: Call) -> Doc:
    with call.store.transaction() as tx:
        queue = load_queue(tx, call, call.string("queue", required=True))
    return {"num": len(queue["entries"])}


# ---------------------------------------------------------------- tasks moving through queues
def _remove_everywhere(tx: Tx, task_id: str, *, exclude: str | None = None) -> None:
    for queue in tx.queues():
        if queue["id"] != exclude and any(e["task"] == task_id for e in queue["entries"]):
            queue["entries"] = [e for e in queue["entries"] if e["task"] != task_id]
            queue["last_update"] = now()
            tx.update_queue(queue)


def enqueue(call: Call) -> Doc:
    if call.flag("verify_watched_queue") and not call.field("update_execution_queue", True):
        raise errors.validation_error("verify_watched_queue", "cannot be used with update_execution_queue=False")
    queue_id, queue_name = call.string("queue"), call.string("queue_name")
    if queue_id and queue_name:
        raise errors.ApiError(400, 12, "Validation error (Either queue id or queue name should be provided)")
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        if queue_name:
            found = [q for q in tx.queues() if q["name"] == queue_name]
            queue = found[0] if found else _new_queue(call, queue_name)
            if not found:
                _insert(tx, queue)
        elif queue_id:
            queue = load_queue(tx, call, queue_id)
        else:
            queue = ensure_default(tx, call)
        before = task.get("status", "created")
        enqueue_status = task.get("enqueue_status") if before == "queued" and task.get("enqueue_status") else before
        result = _change_status(call, tx, task, "queued", force=call.flag("force"),
                                extra={"enqueue_status": enqueue_status})
        try:
            _add_entry(tx, queue, task["id"])
        except errors.ApiError as err:  # undone as the real server undoes it, and that is kept: no rollback
            _change_status(call, tx, task, before, force=True, extra={"enqueue_status": None},
                           reason="failed enqueueing", message="")
            failure: errors.ApiError | None = err
        else:
            failure = None
            task["system_tags"] = [t for t in task.get("system_tags", []) if t != DEVELOPMENT_TAG]
            task.setdefault("execution", {})["queue"] = queue["id"]
            tx.put_task(task)
            result["fields"]["execution.queue"] = queue["id"]
            _remove_everywhere(tx, task["id"], exclude=queue["id"])
            data: Doc = {**result, "queued": 1}
            if call.flag("verify_watched_queue"):
                data["queue_watched"] = any(queue["id"] in w.get("queues", []) for w in live_workers(tx))
    if failure is not None:
        raise failure
    return data


def _dequeue(call: Call, tx: Tx, task: Doc, new_status: str | None) -> Doc:
    queue_id = query.get_path(task, "execution.queue")
    if task.get("status") == "queued" and queue_id:
        queue = tx.get_queue(queue_id)
        if queue is not None and any(e["task"] == task["id"] for e in queue["entries"]):
            _remove(tx, call, queue, task["id"])
    if call.flag("remove_from_all_queues"):
        _remove_everywhere(tx, task["id"])
    if task.get("status") not in ("queued", "in_progress"):
        return {"updated": 0, "fields": {}}
    return _change_status(call, tx, task, new_status or task.get("enqueue_status") or "created", force=True,
                          extra={"enqueue_status": None})


def dequeue(call: Call) -> Doc:
    new_status = call.string("new_status")
    statuses = ("created", "queued", "in_progress", "stopped", "published", "publishing", "closed", "failed",
                "completed", "unknown")
    if new_status and new_status not in statuses:
        raise errors.validation_error("new_status", f"Invalid task status: {new_status}")
    with call.store.transaction() as tx:
        if tx.get_task(call.task_id()) is None:
            _remove_everywhere(tx, call.task_id())
            return {"dequeued": 1, "updated": 0, "fields": {}}
        task = load_task_for_write(tx, call)
        return {**_dequeue(call, tx, task, new_status), "dequeued": 1}


def _run_by_worker(task: Doc) -> bool:
    if not task.get("last_worker") or not isinstance(task.get("last_update"), str):
        return False
    try:
        age = datetime.now(timezone.utc) - datetime.fromisoformat(task["last_update"])
    except ValueError:
        return False
    return age.total_seconds() < TASK_UPDATE_TIMEOUT_S


def stop(call: Call) -> Doc:
    with call.store.transaction() as tx:
        task = load_task_for_write(tx, call)
        queued = task.get("status") == "queued"
        if queued or DEVELOPMENT_TAG in task.get("system_tags", []) or not _run_by_worker(task):
            if queued:
                _dequeue_silently(call, tx, task)
            status, message = "stopped", f"Stopped by {call.identity.user_name}"
        else:
            status, message = str(task.get("status")), "stopping"
        return _change_status(call, tx, task, status, force=call.flag("force"), message=message)


def _dequeue_silently(call: Call, tx: Tx, task: Doc) -> None:
    queue_id = query.get_path(task, "execution.queue")
    queue = tx.get_queue(queue_id) if isinstance(queue_id, str) else None
    if queue is not None and any(e["task"] == task["id"] for e in queue["entries"]):
        _remove(tx, call, queue, task["id"])


ENDPOINTS: dict[str, Handler] = {
    "queues.create": create,
    "queues.get_all": get_all,
    "queues.get_all_ex": get_all_ex,
    "queues.get_by_id": get_by_id,
    "queues.get_default": get_default,
    "queues.update": update,
    "queues.delete": delete,
    "queues.add_task": add_task,
    "queues.get_next_task": get_next_task,
    "queues.remove_task": remove_task,
    "queues.clear_queue": clear_queue,
    "queues.peek_task": peek_task,
    "queues.get_num_entries": get_num_entries,
    "tasks.enqueue": enqueue,
    "tasks.dequeue": dequeue,
    "tasks.stop": stop,
}
