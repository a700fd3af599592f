"""`reconcile show` as text, JSON and markdown (HTML: :mod:`.show_html`).

The JSON document (``format_version`` 1) is the complete view; text and markdown show the same facts. User data
(names, versions, tags, aliases, descriptions, task names, check names) is escaped for each medium.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .. import escape
from ..lineage import Graph, tree, trim_transitive
from ..model import TaskUse
from ..show import CardSummary, CheckResult, DatasetView, ShowReport, StatisticsSummary, VersionView
from ..wording import counted, human_size
from .graph import graph_to_json, graph_to_mermaid, node_text

SHOW_FORMATS = ("text", "json", "markdown", "html")


# --- shared wording ----------------------------------------------------------------------------------------------


def version_label(d: DatasetView, version_id: str) -> str:
    """``1.2.0`` for a version of the dataset shown, ``project/name@version`` for another's, else the id."""
    label = d.labels.get(version_id)
    if label is None:
        return version_id
    prefix = f"{d.key}@"
    return label[len(prefix):] if label.startswith(prefix) else label


def files_text(v: VersionView) -> str:
    if v.file_count is None:
        return "unknown (no file list yet)"
    text = f"{counted(v.file_count, 'file')}, {human_size(v.total_size or 0)}"
    if v.own_files is not None and v.inherited_files:
        text += (f" (own {v.own_files}, {human_size(v.own_size or 0)}; inherited {v.inherited_files}, "
                 f"{human_size(v.inherited_size or 0)})")
    elif v.own_files is not None:
        text += " (all its own)"
    return text


def statistics_text(s: StatisticsSummary) -> str:
    parts = [counted(s.file_count, "file")]
    if s.images is not None:
        parts.append(counted(s.images, "image"))
    for split, classes in s.classes.items():
        total = sum(classes.values())
        parts.append(f"{split}: {total} in {counted(len(classes), 'class', 'classes')}")
    return "; ".join(parts)


def checks_text(checks: Sequence[CheckResult]) -> str:
    if not checks:
        return "no checks"
    failed = [c for c in checks if c.status != "pass"]  # statuses: pass | warn | fail (reconciler.checks)
    words = {"warn": "warned", "fail": "failed"}
    text = f"{len(checks) - len(failed)} of {len(checks)} passed"
    if failed:
        text += "; " + ", ".join(f"{c.name} {words.get(c.status, c.status)} ({c.severity}, "
                                 f"{counted(c.offending_count, 'file')})" for c in failed)
    return text


def card_text(c: CardSummary) -> str:
    parts = [f"licence {c.license}"]
    if c.pretty_name:
        parts.insert(0, c.pretty_name)
    for label, values in (("tasks", c.task_categories), ("size", c.size_categories), ("from", c.source_datasets)):
        if values:
            parts.append(f"{label} {', '.join(values)}")
    return "; ".join(parts)


def task_text(t: TaskUse) -> str:
    where = f"project {t.project}, " if t.project else ""
    return f"{t.name} ({where}id {t.id}, {t.status or 'unknown'})"


def version_rows(d: DatasetView, v: VersionView) -> list[tuple[str, str]]:
    """The facts of one version, in display order, as (label, plain text) pairs."""
    rows = [("id", v.id), ("state", v.state if v.state != "draft" else f"draft ({v.status})")]
    rows.append(("parents", ", ".join(version_label(d, p) for p in v.parents) if v.parents else "none (a root)"))
    if v.aliases:
        rows.append(("aliases", ", ".join(v.aliases)))
    if v.tags:
        rows.append(("tags", ", ".join(v.tags)))
    if v.description:
        rows.append(("description", v.description))
    rows.append(("files", files_text(v)))
    if v.statistics is not None:
        rows.append(("statistics", statistics_text(v.statistics)))
    if v.checks is not None:
        rows.append(("checks", checks_text(v.checks)))
    if v.card is not None:
        rows.append(("card", card_text(v.card)))
    rows.append(("used by", "; ".join(task_text(t) for t in v.tasks) if v.tasks else "no task recorded"))
    return rows


def shown_versions(d: DatasetView) -> tuple[VersionView, ...]:
    return tuple(v for v in d.versions if d.selected is None or v.id == d.selected)


def heading(d: DatasetView) -> str:
    archived = sum(1 for v in d.versions if v.state == "archived")
    extra = f", {archived} archived" if archived else ""
    return f"{d.key} ({counted(len(d.versions), 'version')}{extra})"


def tree_lines(d: DatasetView) -> list[str]:
    """The lineage as an indented tree (plain text, not yet escaped): merges name their other parents."""
    by_id = {n.id: n for n in d.lineage.nodes}
    out = []
    for flags, nid, others in tree(d.lineage):
        n = by_id[nid]
        text = node_text(version_label(d, nid), n.aliases, n.state)
        if others:
            text += " <- also from " + ", ".join(version_label(d, p) for p in others)
        if nid == d.selected:
            text += "  <== selected"
        lead = "".join("   " if last else "│  " for last in flags[:-1])
        out.append(lead + ("└─ " if flags[-1] else "├─ ") + text if flags else text)
    return out


# --- text --------------------------------------------------------------------------------------------------------


def render_show_text(report: ShowReport) -> str:
    out: list[str] = []
    for d in report.datasets:
        out += [escape.text(heading(d)), "", "lineage:"]
        out += ["  " + escape.text(line) for line in tree_lines(d)]
        for v in shown_versions(d):
            out += ["", f"version {escape.text(v.key.version)}"]
            out += [f"  {label + ':':<12} {escape.text(value)}" for label, value in version_rows(d, v)]
        out.append("")
    return "\n".join(out)


# --- JSON --------------------------------------------------------------------------------------------------------


def _version_json(v: VersionView) -> dict[str, Any]:
    s = v.statistics
    return {
        "id": v.id, "project": v.key.project, "name": v.key.name, "version": v.key.version, "state": v.state,
        "status": v.status, "parents": list(v.parents), "aliases": list(v.aliases), "tags": list(v.tags),
        "description": v.description, "last_update": v.last_update,
        "files": {"count": v.file_count, "bytes": v.total_size, "own_count": v.own_files, "own_bytes": v.own_size,
                  "inherited_count": v.inherited_files, "inherited_bytes": v.inherited_size},
        "statistics": None if s is None else {
            "file_count": s.file_count, "total_size": s.total_size, "images": s.images,
            "classes": {k: dict(c) for k, c in s.classes.items()}, "extensions": dict(s.extensions)},
        "checks": None if v.checks is None else [
            {"name": c.name, "rule": c.rule, "severity": c.severity, "status": c.status,
             "offending_count": c.offending_count} for c in v.checks],
        "card": None if v.card is None else {
            "license": v.card.license, "pretty_name": v.card.pretty_name,
            "task_categories": list(v.card.task_categories), "size_categories": list(v.card.size_categories),
            "source_datasets": list(v.card.source_datasets)},
        "tasks": [{"id": t.id, "name": t.name, "project": t.project, "status": t.status,
                   "last_update": t.last_update.isoformat() if t.last_update else None} for t in v.tasks],
    }


def show_to_json(report: ShowReport) -> dict[str, Any]:
    return {
        "format_version": 1,
        "datasets": [{"dataset": str(d.key), "project": d.key.project, "name": d.key.name, "selected": d.selected,
                      "versions": [_version_json(v) for v in d.versions],
                      "lineage": graph_to_json(d.lineage)} for d in report.datasets],
    }


# --- markdown ----------------------------------------------------------------------------------------------------


def mermaid_block(graph: Graph) -> list[str]:
    """A fenced Mermaid chart (labels carry no backtick or newline: see :mod:`.graph`)."""
    return ["```mermaid", *graph_to_mermaid(graph).rstrip("\n").split("\n"), "```"]


def render_show_markdown(report: ShowReport) -> str:
    out: list[str] = []
    for d in report.datasets:
        out += [f"## {escape.markdown(heading(d))}", "", *mermaid_block(trim_transitive(d.lineage)), ""]
        for v in shown_versions(d):
            out += [f"### {escape.code_span(v.key.version)}", "", "| | |", "|---|---|"]
            out += [f"| {label} | {escape.markdown(value)} |" for label, value in version_rows(d, v)]
            out.append("")
    return "\n".join(out)


def render_show(report: ShowReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(show_to_json(report), indent=2, sort_keys=True) + "\n"
    if fmt == "markdown":
        return render_show_markdown(report)
    if fmt == "html":
        from .show_html import render_show_html

        return render_show_html(report)
    return render_show_text(report)
