"""Renderers of a Plan (human text, JSON, markdown) and of a diff report (text, JSON, markdown, html).

They read the model; they never change it.
"""

from ..report import DiffReport
from .human import render_human
from .jsonplan import plan_from_json, plan_to_json
from .markdown import render_markdown
from .report_html import render_report_html
from .report_json import report_to_json
from .report_markdown import render_report_markdown
from .report_text import render_report_text

REPORT_FORMATS = ("text", "json", "markdown", "html")

__all__ = ["REPORT_FORMATS", "plan_from_json", "plan_to_json", "render_human", "render_markdown", "render_report",
           "render_report_html", "render_report_markdown", "render_report_text", "report_to_json"]


def render_report(report: DiffReport, fmt: str) -> str:
    """A diff report in one of :data:`REPORT_FORMATS`."""
    import json

    if fmt == "json":
        return json.dumps(report_to_json(report), indent=2, sort_keys=True, default=str) + "\n"
    if fmt == "markdown":
        return render_report_markdown(report)
    if fmt == "html":
        return render_report_html(report)
    return render_report_text(report)
