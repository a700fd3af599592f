"""``events.*``: logs, plots, scalars and debug images of tasks, stored as documents in arrival order.

Scrolling endpoints hand out an opaque ``scroll_id`` that encodes the offset of the next batch; a batch
shorter
than asked (or empty) marks the end.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

from .. import errors
from .common import Call, Doc, Handler

DEFAULT_BATCH = 500


def _iso_from_millis(millis: Any) -> str:
    try:
        moment = datetime.fromtimestamp(float(millis) / 1000.0, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        moment = datetime.now(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _prepare(event: Any) -> Doc | None:
    if not isinstance(event, dict) or not isinstance(event.get("task"), str) or not event.get("type"):
        return None
    doc = dict(event)
    doc["@timestamp"] = _iso_from_millis(doc.get("timestamp"))
    if doc["type"] == "plot" and isinstance(doc.get("plot_str"), str):
        doc["plot_len"] = len(doc["plot_str"])
    return doc


def add_batch(call: Call) -> Doc:
    items = call.data if isinstance(call.data, list) else call.field("requests") or []
    prepared = [_prepare(e) for e in items]
    with call.store.transaction() as tx:
        known = {t["id"] for t in tx.tasks(ids=sorted({e["task"] for e in prepared if e}))}
        good = [e for e in prepared if e and e["task"] in known]
        tx.add_events(good)
    bad = len(prepared) - len(good)
    return {"added": len(good), "errors": bad, "errors_info": {"invalid task or event": bad} if bad else {}}


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
    wanted = call.field("metrics")
    if not wanted:
        return None
    return {m.get("metric", ""): set(m.get("variants") or []) for m in wanted if isinstance(m, dict)}


def _selected(call: Call, types: list[str] | None) -> list[Doc]:
    task = call.required("task")
    tasks = task if isinstance(task, list) else [task]
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
    if call.field("order") == "desc" or call.flag("navigate_earlier"):
        events.reverse()
    return events


def _batch(call: Call, events: list[Doc], key: str = "events") -> Doc:
    start = _offset(call.field("scroll_id"))
    size = int(call.field("batch_size") or DEFAULT_BATCH)
    chunk = events[start : start + size]
    return {
        key: chunk,
        "returned": len(chunk),
        "total": len(events),
        "scroll_id": _scroll_id(start + len(chunk)),
    }


def get_task_events(call: Call) -> Doc:
    event_type = call.field("event_type")
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
    tasks = call.field("tasks") or []
    event_type = call.field("event_type")
    with call.store.transaction() as tx:
        result = []
        for task in tasks:
            names = {e.get("metric", "") for e in tx.events([task], [event_type] if event_type else None)}
            result.append({"task": task, "metrics": sorted(names)})
    return {"metrics": result}


def delete_for_task(call: Call) -> Doc:
    with call.store.transaction() as tx:
        return {"deleted": tx.delete_events(call.required("task"))}


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
