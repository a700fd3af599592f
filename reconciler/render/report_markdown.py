"""The diff report as GitHub markdown: one section per compared pair, with tables.

User data is escaped (:mod:`reconciler.escape`): code spans for versions, ids, paths and property changes,
inert markdown for labels and notes.
"""

from __future__ import annotations

from .. import escape
from ..report import DiffReport, VersionDiff
from .report_common import (
    SIGNS,
    Row,
    class_rows,
    file_size,
    files_summary,
    property_text,
    statistics_rows,
    verdict,
)


def _rows_table(rows: list[Row], first: str) -> list[str]:
    out = [f"| | {first} | before | after | change |", "|---|---|---|---|---|"]
    out += [f"| `{r.sign}` | {escape.markdown(r.label)} | {r.before} | {r.after} | {r.delta} |" for r in rows]
    return out + [""]


def _section(v: VersionDiff) -> list[str]:
    before = escape.code_span(v.before) + (f" ({escape.code_span(v.before_id)})" if v.before_id else "")
    after = escape.code_span(v.after) + (f" ({escape.code_span(v.after_id)})" if v.after_id else "")
    if v.identical:
        return [f"#### {after}: identical to {before}", ""]
    out = [f"#### {before} → {after}", ""]
    if v.note:
        out += [f"> {escape.markdown(v.note)}", ""]
    out += [f"**Files:** {files_summary(v)}", ""]
    if v.files:
        out += ["| | path | size |", "|---|---|---|"]
        out += [f"| `{SIGNS[f.change]}` | {escape.code_span(f.path, table=True)} | {file_size(f)} |" for f in v.files]
        out.append("")
    if v.properties:
        out += ["**Properties**", "", "| | change |", "|---|---|"]
        out += [f"| `{SIGNS[p.change]}` | {escape.code_span(property_text(p), table=True)} |" for p in v.properties]
        out.append("")
    s = v.statistics
    if s is not None and s.changed:
        rows = statistics_rows(s)
        if rows:
            out += ["**Statistics**", ""] + _rows_table(rows, "statistic")
        for split, class_changes in class_rows(s, changed_only=True):
            out += [f"**Classes of split {escape.code_span(split)}**", ""] + _rows_table(class_changes, "class")
    return out


def render_report_markdown(report: DiffReport) -> str:
    title = "server → manifests" if report.mode == "desired-vs-live" else "two dataset versions"
    out = [f"### Dataset diff: {title}", "", f"**{escape.markdown(verdict(report))}**", ""]
    for v in report.versions:
        out += _section(v)
    return "\n".join(out).rstrip("\n") + "\n"
