"""Drift only (``plan --drift-only``): what changed on the server since the last apply, in text, markdown, JSON."""

from __future__ import annotations

import json

from .. import escape
from ..plan.actions import PLAN_FORMAT_VERSION, Plan
from ..plancodec import plan_to_json
from .common import drift_lines

NO_DRIFT = "No drift: the server holds what the last apply wrote."


def render_drift(plan: Plan, fmt: str) -> str:
    lines = drift_lines(plan)
    if fmt == "json":
        data = {"format_version": PLAN_FORMAT_VERSION, "has_drift": bool(plan.drift),
                "drift": plan_to_json(plan)["drift"]}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        if not lines:
            return f"### Dataset drift\n\n{NO_DRIFT}\n"
        out = ["### Dataset drift", "", f"**{len(lines)} drifted** (changed on the server since the last apply; "
               "the next apply puts the manifests back)", ""]
        for where, what, detail in lines:
            out.append(f"- {escape.code_span(where)}: {escape.markdown(what)}")
            out += [f"  - {escape.code_span(f'{sign} {text}')}" for sign, text in detail]
        return "\n".join(out) + "\n"
    if not lines:
        return NO_DRIFT + "\n"
    out = ["Drift (changed on the server since the last apply; the next apply puts the manifests back):"]
    for where, what, detail in lines:
        out.append(escape.text(f"  ! {where}: {what}"))
        out += [escape.text(f"      {sign} {text}") for sign, text in detail]
    return "\n".join(out) + "\n"
