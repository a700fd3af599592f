"""Renderers of a Plan (human text, markdown; its JSON form is :mod:`reconciler.plancodec`) and of a diff report
(text, JSON, markdown, html).

They read the model; they never change it. Each renderer is loaded when it is first used: printing a plan does
not load the diff report (and its dependencies).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..report import DiffReport
    from .human import render_human
    from .markdown import render_markdown
    from .report_html import render_report_html
    from .report_json import report_to_json
    from .report_markdown import render_report_markdown
    from .report_text import render_report_text

REPORT_FORMATS = ("text", "json", "markdown", "html")

__all__ = ["REPORT_FORMATS", "render_human", "render_markdown", "render_report",
           "render_report_html", "render_report_markdown", "render_report_text", "report_to_json"]

_WHERE = {
    "render_human": "human", "render_markdown": "markdown",
    "render_report_html": "report_html", "report_to_json": "report_json",
    "render_report_markdown": "report_markdown", "render_report_text": "report_text",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render_report(report: DiffReport, fmt: str) -> str:
    """A diff report in one of :data:`REPORT_FORMATS`."""
    import json

    from .report_html import render_report_html
    from .report_json import report_to_json
    from .report_markdown import render_report_markdown
    from .report_text import render_report_text

    if fmt == "json":
        return json.dumps(report_to_json(report), indent=2, sort_keys=True, default=str) + "\n"
    if fmt == "markdown":
        return render_report_markdown(report)
    if fmt == "html":
        return render_report_html(report)
    return render_report_text(report)
