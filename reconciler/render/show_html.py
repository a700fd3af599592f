"""`reconcile show` as one self-contained HTML page: no script, no external asset, no network.

The lineage is an inline SVG laid out here (``svg.lineage``): versions in layers by their longest distance from a
root, parents above children, one arrow per (trimmed) parent edge, a node per version (``g.node``) coloured by
state, archived ones dashed. Each version with statistics gets the class charts of
:func:`reconciler.render.report_html.bar_chart` (``svg.class-chart``). All text is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..escape import html as escape
from ..lineage import Graph, depths, trim_transitive
from ..model import TaskUse
from ..show import DatasetView, ShowReport, VersionView
from .graph import STATE_STYLE, node_text
from .report_html import PAGE_CSS, bar_chart
from .show import heading, shown_versions, task_text, version_label, version_rows

Link = Callable[[str], str]  # an id -> the address of its page

_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _PAD = 210, 44, 24, 46, 12
_EXTRA_CSS = """
svg.lineage text { font: 12px system-ui, sans-serif; } svg.lineage .sub { fill: #57606a; font-size: 10px; }
.selected rect { stroke-width: 3; } dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; }
dl.facts dt { color: #57606a; } dl.facts dd { margin: 0; }
"""


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lineage_svg(d: DatasetView) -> str:
    """The lineage picture of one dataset."""
    graph: Graph = trim_transitive(d.lineage)
    depth = depths(graph)
    layers: dict[int, list[str]] = {}
    for n in graph.nodes:
        layers.setdefault(depth[n.id], []).append(n.id)
    widest = max((len(ids) for ids in layers.values()), default=1)
    width = _PAD * 2 + widest * _NODE_W + (widest - 1) * _GAP_X
    height = _PAD * 2 + len(layers) * _NODE_H + max(0, len(layers) - 1) * _GAP_Y
    pos: dict[str, tuple[float, float]] = {}
    for level, ids in layers.items():
        row_w = len(ids) * _NODE_W + (len(ids) - 1) * _GAP_X
        x0 = (width - row_w) / 2
        for i, nid in enumerate(ids):
            pos[nid] = (x0 + i * (_NODE_W + _GAP_X), _PAD + level * (_NODE_H + _GAP_Y))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" role="img" width="{width:.0f}" '
             f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}"><title>{escape(f"Lineage of {d.key}")}'
             '</title><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker>'
             "</defs>"]
    for p, c in graph.edges:
        (px, py), (cx, cy) = pos[p], pos[c]
        x1, y1, x2, y2 = px + _NODE_W / 2, py + _NODE_H, cx + _NODE_W / 2, cy - 2
        mid = (y1 + y2) / 2
        parts.append(f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} '
                     f'{x2:.1f},{y2:.1f}" fill="none" stroke="#57606a" stroke-width="1.4" '
                     'marker-end="url(#arrow)"/>')
    for n in graph.nodes:
        x, y = pos[n.id]
        fill, stroke = STATE_STYLE.get(n.state, STATE_STYLE["final"])
        dash = ' stroke-dasharray="5 3"' if n.state in ("archived", "collapsed") else ""
        selected = " selected" if n.id == d.selected else ""
        sub = node_text("", n.aliases, n.state).strip(" ()") or n.state
        name = n.label if n.state == "collapsed" else version_label(d, n.id)
        parts.append(
            f'<g class="node state-{escape(n.state)}{selected}" data-id="{escape(n.id)}">'
            f"<title>{escape(n.label)} ({escape(n.id)})</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_NODE_W}" height="{_NODE_H}" rx="6" fill="{fill}" '
            f'stroke="{stroke}"{dash}/>'
            f'<text x="{x + 8:.1f}" y="{y + 18:.1f}">{escape(_clip(name))}</text>'
            f'<text class="sub" x="{x + 8:.1f}" y="{y + 34:.1f}">{escape(_clip(sub, 36))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _class_charts(v: VersionView) -> str:
    s = v.statistics
    if s is None or not s.classes:
        return ""
    charts = []
    for split, classes in s.classes.items():
        items = [(c, 0.0, float(n), "", str(n)) for c, n in classes.items()]
        charts.append(f'<figure data-split="{escape(split)}">'
                      f"{bar_chart(f'Class distribution: {split}', 'class-chart', items, single=True)}</figure>")
    return f'<h4>Class distribution</h4><div class="charts">{"".join(charts)}</div>'


def _a(text: str, href: str | None) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>' if href else escape(text)


def _version(d: DatasetView, v: VersionView, task_link: Link | None, version_link: Link | None) -> str:
    cells = []
    for label, value in version_rows(d, v):
        if label == "parents" and v.parents and version_link is not None:
            value_html = ", ".join(_a(version_label(d, p), version_link(p)) for p in v.parents)
        elif label == "used by" and v.tasks and task_link is not None:
            value_html = "; ".join(_a(task_text(t), task_link(t.id)) for t in v.tasks)
        else:
            value_html = escape(value)
        cells.append(f"<dt>{escape(label)}</dt><dd>{value_html}</dd>")
    return (f'<section class="version" id="v-{escape(v.id)}"><h3>{escape(v.key.version)}</h3>'
            f'<dl class="facts">{"".join(cells)}</dl>{_class_charts(v)}</section>')


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{PAGE_CSS}{_EXTRA_CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n")


def render_show_html(report: ShowReport, *, task_link: Link | None = None, version_link: Link | None = None
                     ) -> str:
    """The page; with ``task_link``/``version_link``, tasks and parents link to their pages."""
    title = "Datasets: " + ", ".join(str(d.key) for d in report.datasets)
    body = []
    for d in report.datasets:
        body.append(f"<h2>{escape(heading(d))}</h2><h3>Lineage</h3><figure>{lineage_svg(d)}</figure>")
        body += [_version(d, v, task_link, version_link) for v in shown_versions(d)]
    return _page(title, "".join(body))


def render_task_html(task: TaskUse, read: Sequence[tuple[str, str]], *, version_link: Link) -> str:
    """A task's page: what it is, and the dataset versions it read (``(id, label)``), linked to their pages."""
    facts = [("name", escape(task.name)), ("id", escape(task.id)), ("project", escape(task.project or "none")),
             ("status", escape(task.status or "unknown")),
             ("last update", escape(task.last_update.isoformat() if task.last_update else "unknown")),
             ("datasets read", ", ".join(_a(label, version_link(vid)) for vid, label in read) or "none recorded")]
    cells = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return _page(f"Task: {task.name}", f'<dl class="facts">{cells}</dl>')


def render_not_found_html(title: str, message: str) -> str:
    return _page(title, f"<p>{escape(message)}</p>")
