"""``events.*``: logs, plots, scalars and debug images of tasks, stored as documents in arrival order.

Scrolling endpoints hand out an opaque ``scroll_id`` that encodes the offset of the next batch; a batch
shorter
than asked (or empty) marks the end.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from .. import errors
from .common import Call, Doc, Handler
from .tasks import LOCKED_STATUSES, record_activity

DEFAULT_BATCH = 500
EVENT_TYPES = frozenset({"training_stats_scalar", "training_stats_vector", "training_debug_image", "plot", "log"})
MAX_LONG = 2**63 - 1
MIN_LONG = -(2**63)


def _iso_from_millis(millis: Any) -> str:
    try:
        moment = datetime.fromtimestamp(float(millis) / 1000.0, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        moment = datetime.now(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _prepare(event: Doc) -> Doc:
    doc = dict(event)
    doc["type"] = str(doc["type"]).replace(" ", "_")
    doc["metric"] = doc.get("metric") or ""
    doc["variant"] = doc.get("variant") or ""
    if "timestamp" not in doc:
        doc["timestamp"] = int(datetime.now(timezone.utc).timestamp() * 1000)
    doc["@timestamp"] = _iso_from_millis(doc.get("timestamp"))
    if doc["type"] == "plot":
        doc["plot_len"] = len(doc["plot_str"]) if isinstance(doc.get("plot_str"), str) else 0
    return doc


def _allow_locked(events: list[Doc]) -> dict[str, bool]:
    """``allow_locked`` per task id (popped from the events); one task's events must agree on it."""
    flags: dict[str, bool] = {}
    for event in events:
        task_id, allow = event.get("task"), bool(event.pop("allow_locked", False))
        if not task_id:
            continue
        if not isinstance(task_id, str):
            raise errors.wrong_type("task", "str", task_id)
        if flags.setdefault(task_id, allow) != allow:
            raise errors.ApiError(
                400, 12, f"Validation error (Inconsistent allow_locked setting in the passed events for {task_id})"
            )
    return flags


def _event_error(event: Doc, writable: set[str]) -> str | None:
    """Why the real server would not store ``event``, in its words, or None."""
    event_type = event.get("type")
    if event_type is None:
        return "Event must have a 'type' field"
    if not isinstance(event_type, str) or event_type.replace(" ", "_") not in EVENT_TYPES:
        return f"Invalid event type {event_type}"
    if event.get("model_event"):
        return f"Invalid model id {event.get('model', event.get('task'))}"
    if event.get("task") is None:
        return "Event must have a 'task' field"
    if event["task"] not in writable:
        return f"Invalid task id {event['task']}"
    iteration = event.get("iter")
    if iteration is not None and (not isinstance(iteration, int) or not MIN_LONG <= iteration <= MAX_LONG):
        return f"Iteration number should not exceed {MAX_LONG}"
    return None


def add_batch(call: Call) -> Doc:
    """Stores the events of tasks that may take them: existing, and not published (``publishing`` or
    ``published``) unless the task's events say ``allow_locked``. None stored is 400/131, as the real server."""
    items = call.data if isinstance(call.data, list) else ([call.data] if call.data else [])
    if not items:
        raise errors.batch_contains_no_items()
    events = [dict(e) for e in items if isinstance(e, dict)]
    if len(events) != len(items):
        raise errors.malformed_request("json lines must contain objects")
    flags = _allow_locked(events)
    reasons: Counter[str] = Counter()
    with call.store.transaction() as tx:
        tasks = tx.tasks(ids=sorted(flags)) if flags else []
        writable = {t["id"] for t in tasks if flags[t["id"]] or t.get("status") not in LOCKED_STATUSES}
        good = []
        for event in events:
            reason = _event_error(event, writable)
            if reason is None:
                good.append(_prepare(event))
            else:
                reasons[reason] += 1
        if not good:
            raise errors.events_not_added(dict(reasons))
        tx.add_events(good)
        by_id = {t["id"]: t for t in tasks}
        for task_id in sorted({e["task"] for e in good}):
            iterations = [e["iter"] for e in good if e["task"] == task_id and isinstance(e.get("iter"), int)]
            record_activity(by_id[task_id], call.identity.user, iteration=max(iterations, default=None))
            tx.put_task(by_id[task_id])
    return {"added": len(good), "errors": sum(reasons.values()), "errors_info": dict(reasons)}


def _scroll_id(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(scroll_id: Any) -> int:
    if not scroll_id:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(str(scroll_id).encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise errors.validation_error("scroll_id", "invalid scroll id") from None


def _metric_filter(call: Call) -> dict[str, set[str]] | None:
    wanted = call.items("metrics")
    if not wanted:
        return None
    filters: dict[str, set[str]] = {}
    for item in wanted:
        variants = item.get("variants") or []
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            raise errors.wrong_type("metrics.variants", "list", variants)
        filters[str(item.get("metric", ""))] = set(variants)
    return filters


def _selected(call: Call, types: list[str] | None) -> list[Doc]:
    task = call.required("task")
    tasks = (call.string_list("task") or []) if isinstance(task, list) else [call.task_id()]
    with call.store.transaction() as tx:
        events = tx.events(tasks, types)
    metrics = _metric_filter(call)
    if metrics is not None:
        events = [
            e
            for e in events
            if e.get("metric", "") in metrics
            and (not metrics[e.get("metric", "")] or e.get("variant") in metrics[e.get("metric", "")])
        ]
    if call.string("order") == "desc" or call.flag("navigate_earlier"):
        events.reverse()
    return events


def _batch(call: Call, events: list[Doc], key: str = "events") -> Doc:
    start = _offset(call.string("scroll_id"))
    size = call.integer("batch_size") or DEFAULT_BATCH
    if size < 0:
        raise errors.validation_error("batch_size", "must not be negative")
    chunk = events[start : start + size]
    return {
        key: chunk,
        "returned": len(chunk),
        "total": len(events),
        "scroll_id": _scroll_id(start + len(chunk)),
    }


def get_task_events(call: Call) -> Doc:
    event_type = call.string("event_type")
    return _batch(call, _selected(call, [event_type] if event_type else None))


def get_task_log(call: Call) -> Doc:
    call = Call(
        call.endpoint,
        {**call.data, "order": "desc" if call.flag("navigate_earlier") else "asc"},
        call.store,
        call.identity,
    )
    return _batch(call, _selected(call, ["log"]))


def get_task_plots(call: Call) -> Doc:
    return _batch(call, _selected(call, ["plot"]), key="plots")


def debug_images(call: Call) -> Doc:
    return _batch(call, _selected(call, ["training_debug_image"]))


def scalar_metrics_iter_histogram(call: Call) -> Doc:
    result: Doc = {}
    for event in _selected(call, ["training_stats_scalar"]):
        series = result.setdefault(event.get("metric", ""), {}).setdefault(
            event.get("variant", ""), {"name": event.get("variant", ""), "x": [], "y": []}
        )
        series["x"].append(event.get("iter", 0))
        series["y"].append(event.get("value"))
    return result


def get_scalar_metrics_and_variants(call: Call) -> Doc:
    metrics: Doc = {}
    for event in _selected(call, ["training_stats_scalar"]):
        metric, variant = event.get("metric", ""), event.get("variant", "")
        metrics.setdefault(metric, {})[variant] = {"metric": metric, "variant": variant}
    return {"metrics": metrics}


def get_task_metrics(call: Call) -> Doc:
    tasks = call.string_list("tasks") or []
    event_type = call.string("event_type")
    with call.store.transaction() as tx:
        result = []
        for task in tasks:
            names = {e.get("metric", "") for e in tx.events([task], [event_type] if event_type else None)}
            result.append({"task": task, "metrics": sorted(names)})
    return {"metrics": result}


def delete_for_task(call: Call) -> Doc:
    with call.store.transaction() as tx:
        return {"deleted": tx.delete_events(call.task_id())}


ENDPOINTS: dict[str, Handler] = {
    "events.add_batch": add_batch,
    "events.get_task_events": get_task_events,
    "events.get_task_log": get_task_log,
    "events.get_task_plots": get_task_plots,
    "events.debug_images": debug_images,
    "events.scalar_metrics_iter_histogram": scalar_metrics_iter_histogram,
    "events.get_scalar_metrics_and_variants": get_scalar_metrics_and_variants,
    "events.get_task_metrics": get_task_metrics,
    "events.delete_for_task": delete_for_task,
}
