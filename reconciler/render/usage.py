"""``reconcile usage`` as text, JSON or markdown; user data escaped for where it lands."""

from __future__ import annotations

import json
from typing import Any

from .. import escape
from ..usage import DatasetUsage, UsageReport, VersionUsage
from ..wording import human_size


def _bytes(n: int | None) -> str:
    return "-" if n is None else human_size(n)


def _state(v: VersionUsage) -> str:
    return v.status + (", archived" if v.archived else "") + (", freed by retention" if v.freed else "")


def _frees(d: DatasetUsage | UsageReport) -> str:
    return "" if d.policy_frees is None else f"; the retention policy would free {human_size(d.policy_frees)}"


def usage_to_json(report: UsageReport) -> dict[str, Any]:
    return {
        "stored_bytes": report.stored_bytes,
        "archived_bytes": report.archived_bytes,
        "policy_frees_bytes": report.policy_frees,
        "datasets": [{
            "dataset": str(d.dataset), "project": d.dataset.project, "name": d.dataset.name,
            "stored_bytes": d.stored_bytes, "archived_bytes": d.archived_bytes, "policy_frees_bytes": d.policy_frees,
            "versions": [{
                "address": str(v.version), "version": v.version.version, "version_id": v.version_id,
                "status": v.status, "archived": v.archived, "freed": v.freed, "stored_bytes": v.stored_bytes,
                "objects": v.objects, "own_bytes": v.own_bytes, "inherited_bytes": v.inherited_bytes,
            } for v in d.versions],
        } for d in report.datasets],
    }


def render_usage(report: UsageReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(usage_to_json(report), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return _markdown(report)
    return _text(report)


def _text(report: UsageReport) -> str:
    out: list[str] = []
    for d in report.datasets:
        out.append(escape.text(f"{d.dataset}: {human_size(d.stored_bytes)} stored, {human_size(d.archived_bytes)} "
                               f"archived{_frees(d)}"))
        out.append(f"  {'version':<16} {'stored':>10} {'own files':>10} {'inherited':>10}  state")
        for v in d.versions:
            out.append(escape.text(f"  {v.version.version:<16} {_bytes(v.stored_bytes):>10} {_bytes(v.own_bytes):>10} "
                                   f"{_bytes(v.inherited_bytes):>10}  {_state(v)} ({v.version_id})"))
        out.append("")
    if not report.datasets:
        out.append("No dataset versions there.")
    out.append(f"Total: {human_size(report.stored_bytes)} stored, {human_size(report.archived_bytes)} archived"
               f"{_frees(report)}.")
    return "\n".join(out) + "\n"


def _markdown(report: UsageReport) -> str:
    out = ["### Dataset storage", "",
           f"**{human_size(report.stored_bytes)} stored, {human_size(report.archived_bytes)} archived"
           f"{_frees(report)}.**", ""]
    for d in report.datasets:
        out += [f"#### {escape.markdown(str(d.dataset))}", "",
                f"{human_size(d.stored_bytes)} stored, {human_size(d.archived_bytes)} archived{_frees(d)}.", "",
                "| version | stored | own files | inherited | state |", "|---|---:|---:|---:|---|"]
        out += [f"| {escape.code_span(v.version.version, table=True)} | {_bytes(v.stored_bytes)} | "
                f"{_bytes(v.own_bytes)} | {_bytes(v.inherited_bytes)} | {escape.markdown(_state(v))} |"
                for v in d.versions]
        out.append("")
    return "\n".join(out)
