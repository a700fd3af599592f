"""The diff report as plain text (the default format): one block per compared pair, verdict last.

Every line is escaped (:func:`reconciler.escape.text`): names, paths and values cannot fake lines.
"""

from __future__ import annotations

from .. import escape
from ..report import DiffReport, VersionDiff
from .report_common import (
    SIGNS,
    class_rows,
    file_size,
    files_summary,
    property_text,
    statistics_rows,
    verdict,
    version_title,
)


def _block(v: VersionDiff) -> list[str]:
    if v.identical:
        return [f"= {v.after}: identical to {v.before}" + (f" (id {v.before_id})" if v.before_id else ""), ""]
    out = [f"~ {version_title(v)}"]
    if v.note:
        out.append(f"  note: {v.note}")
    out.append(f"  files: {files_summary(v)}")
    out += [f"    {SIGNS[f.change]} {f.path} ({file_size(f)})" for f in v.files]
    if v.properties:
        out.append("  properties:")
        out += [f"    {SIGNS[p.change]} {property_text(p)}" for p in v.properties]
    s = v.statistics
    if s is not None and s.changed:
        out.append("  statistics:")
        for r in statistics_rows(s):
            out.append(f"    {r.sign} {r.label}: {r.before} -> {r.after}" + (f" ({r.delta})" if r.delta else ""))
        for split, rows in class_rows(s, changed_only=True):
            out.append(f"    classes of split {split}:")
            out += [f"      {r.sign} {r.label}: {r.before} -> {r.after} ({r.delta})" for r in rows]
    out.append("")
    return out


def render_report_text(report: DiffReport) -> str:
    head = ("Diff of the server (before) against the manifests (after):" if report.mode == "desired-vs-live"
            else "Diff of two dataset versions (before -> after):")
    out = [head, ""]
    for v in report.versions:
        out += _block(v)
    out.append(verdict(report))
    return "\n".join(escape.text(line) for line in out) + "\n"
