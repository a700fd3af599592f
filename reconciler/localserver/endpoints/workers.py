"""``workers.*``: the agents that listen on queues, as clearml-server 2.0.0 keeps them (``bll/workers``).

A registration lives ``timeout`` seconds (default 600) and every status report renews it; a worker that is not
registered is registered by its first status report (``apiserver.workers.auto_register``), and unregistering an
unknown worker is not an error (``auto_unregister``), as the reference server is configured. A status report
naming a task stamps it with ``last_worker`` (which is how ``tasks.stop`` knows a worker runs it).
"""

from __future__ import annotations

import re
import time
from typing import Any

from .. import errors
from ..store import Tx
from .common import Call, Doc, Handler, now

DEFAULT_TIMEOUT_S = 600


def _key(call: Call, worker: str) -> str:
    return f"worker_{call.identity.company}_{call.identity.user}_{worker}"


def _ip() -> str:
    try:
        from flask import request

        return str(request.remote_addr or "")
    except RuntimeError:  # outside a request (tests calling handlers directly)
        return ""


def live_workers(tx: Tx) -> list[Doc]:
    """Every registration that has not expired."""
    return tx.workers(time.time())


def _check_queues(tx: Tx, queues: list[str]) -> None:
    missing = [q for q in queues if tx.get_queue(q) is None]
    if missing:
        raise errors.invalid_queue_id(ids="(" + ", ".join(missing) + ")")


def _register(call: Call, tx: Tx, worker: str, queues: list[str], timeout: int) -> Doc:
    _check_queues(tx, queues)
    stamp = now()
    doc: Doc = {
        "key": _key(call, worker), "id": worker,
        "user": {"id": call.identity.user, "name": call.identity.user_name},
        "company": {"id": call.identity.company, "name": call.identity.company_name},
        "ip": _ip(), "queues": queues, "register_time": stamp, "register_timeout": timeout,
        "last_activity_time": stamp, "tags": call.string_list("tags") or [],
        "system_tags": call.string_list("system_tags") or [],
    }
    tx.put_worker(doc["key"], doc, time.time() + timeout)
    return doc


def register(call: Call) -> Doc:
    worker = str(call.string("worker", required=True))
    timeout = call.integer("timeout") or DEFAULT_TIMEOUT_S
    if timeout <= 0:
        raise errors.worker_registration_failed("invalid timeout", timeout=timeout, worker=worker)
    with call.store.transaction() as tx:
        _register(call, tx, worker, call.string_list("queues") or [], timeout)
    return {}


def unregister(call: Call) -> Doc:
    worker = str(call.string("worker", required=True))
    with call.store.transaction() as tx:
        tx.delete_worker(_key(call, worker))
    return {}


def status_report(call: Call) -> Doc:
    worker = str(call.string("worker", required=True))
    task_id = call.string("task")
    with call.store.transaction() as tx:
        doc = tx.get_worker(_key(call, worker), time.time()) or _register(call, tx, worker, [], DEFAULT_TIMEOUT_S)
        stamp = now()
        doc.update(ip=_ip(), last_activity_time=stamp, queue=call.string("queue"))
        for field in ("tags", "system_tags"):
            if call.field(field) is not None:
                doc[field] = call.string_list(field)
        if call.string_list("queues"):
            doc["queues"] = call.string_list("queues")
        failure: errors.ApiError | None = None
        if not task_id:
            doc.pop("task", None)
            doc.pop("project", None)
        else:
            task = tx.get_task(task_id)
            if task is None:  # the worker keeps what it last reported
                failure = errors.invalid_task_id_for_write(task_id, call.identity.company)
            else:
                doc.pop("project", None)
                task.update(last_worker=worker, last_worker_report=stamp, last_update=stamp, last_change=stamp,
                            last_changed_by=call.identity.user)
                tx.put_task(task)
                doc["task"] = {"id": task["id"], "name": task.get("name")}
                project = tx.get_project(task["project"]) if task.get("project") else None
                if project is not None:
                    doc["project"] = {"id": project["id"], "name": project["name"]}
        if failure is None:
            doc["last_report_time"] = stamp
        tx.put_worker(doc["key"], doc, time.time() + int(doc.get("register_timeout") or DEFAULT_TIMEOUT_S))
    if failure is not None:  # the real server saves the report before answering the error
        raise failure
    return {}


def _selected(call: Call, tx: Tx) -> list[Doc]:
    workers = live_workers(tx)
    last_seen = call.integer("last_seen")
    if last_seen:
        horizon = time.time() - max(1, last_seen)
        workers = [w for w in workers if _epoch(w.get("last_activity_time")) >= horizon]
    pattern = call.string("worker_pattern")
    if pattern:
        wildcards: dict[str, str | int | None] = {"*": ".*", "?": ".?"}
        regex = re.compile(pattern.translate(str.maketrans(wildcards)) + "$")
        workers = [w for w in workers if regex.search(w["key"])]
    for field in ("tags", "system_tags"):
        wanted = call.string_list(field)
        if wanted:
            include = {t for t in wanted if not t.startswith("-")}
            exclude = {t[1:] for t in wanted if t.startswith("-")}
            workers = [w for w in workers if (not include or include & set(w.get(field) or []))
                       and not exclude & set(w.get(field) or [])]
    return workers


def _epoch(stamp: Any) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return 0.0


def get_all(call: Call) -> Doc:
    with call.store.transaction() as tx:
        workers = _selected(call, tx)
        queues = {q["id"]: q for q in tx.queues()}
        running = [w["task"]["id"] for w in workers if w.get("task")]
        tasks = {t["id"]: t for t in tx.tasks(ids=running)} if running else {}

    def queue_entry(queue_id: str) -> Doc:
        queue = queues.get(queue_id)
        if queue is None:
            return {"id": queue_id}
        entry: Doc = {"id": queue_id, "name": queue["name"], "num_tasks": len(queue["entries"])}
        if queue.get("display_name"):
            entry["display_name"] = queue["display_name"]
        if queue["entries"]:
            entry["next_task"] = {"id": queue["entries"][0]["task"]}
        return entry

    out = []
    for worker in workers:
        item = {k: v for k, v in worker.items() if k not in ("queue", "queues")}
        item["queues"] = [queue_entry(q) for q in worker.get("queues") or []]
        if worker.get("queue") and worker["queue"] in (worker.get("queues") or []):
            item["queue"] = queue_entry(worker["queue"])
        if worker.get("task"):
            task = tasks.get(worker["task"]["id"], {})
            item["task"] = {**worker["task"], "running_time": int(task.get("active_duration") or 0) * 1000,
                            "last_iteration": task.get("last_iteration", 0)}
        out.append(item)
    return {"workers": out}


def get_count(call: Call) -> Doc:
    with call.store.transaction() as tx:
        return {"count": len(_selected(call, tx))}


ENDPOINTS: dict[str, Handler] = {
    "workers.register": register,
    "workers.unregister": unregister,
    "workers.status_report": status_report,
    "workers.get_all": get_all,
    "workers.get_count": get_count,
}
