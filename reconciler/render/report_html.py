"""The diff report as one self-contained HTML page: tables, and inline SVG charts (no scripts, no external
assets, no network). Every compared split gets one class-distribution chart (``svg.class-chart``, bars of
before and after side by side per class); every pair with content changes gets one size chart
(``svg.size-chart``: file count, total size and image sizes before and after). All text is escaped
(:func:`reconciler.escape.html`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..escape import html as escape
from ..report import DiffReport, StatisticsDiff, VersionDiff
from ..wording import human_size
from .report_common import SIGNS, Row, file_size, files_summary, property_text, statistics_rows, verdict

BEFORE_COLOR, AFTER_COLOR = "#8c9bab", "#e07b24"
PAGE_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 15px; margin-top: 20px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, monospace; } .sign-plus { color: #1a7f37; } .sign-minus { color: #cf222e; }
.sign-tilde { color: #9a6700; } .verdict { font-weight: 600; } .legend span { margin-right: 16px; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; } figure { margin: 0; }
"""
_SIGN_CLASS = {"+": "sign-plus", "-": "sign-minus", "~": "sign-tilde"}
_ROW_H, _BAR_H, _LABEL_W, _PLOT_W = 26, 10, 150, 320


def _sign(sign: str) -> str:
    return f'<td class="{_SIGN_CLASS.get(sign, "")}"><code>{escape(sign)}</code></td>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: str, num: bool = False) -> str:
    return f'<td class="num">{escape(text)}</td>' if num else f"<td>{escape(text)}</td>"


def _row_cells(r: Row) -> list[str]:
    return [_sign(r.sign), _td(r.label), _td(r.before, True), _td(r.after, True), _td(r.delta, True)]


def bar_chart(title: str, css_class: str, items: Sequence[tuple[str, float, float, str, str]], *,
              shared_scale: bool = True, single: bool = False) -> str:
    """Horizontal bars, before above after, per item ``(label, before, after, before text, after text)``.

    With ``shared_scale`` every bar uses one scale; otherwise each item is scaled to its own larger value.
    ``single``: one bar per item (its "after" value), for a chart of one version.
    """
    top = 28
    height = top + _ROW_H * max(1, len(items)) + 8
    width = _LABEL_W + _PLOT_W + 90
    shared = max([max(b, a) for _, b, a, _, _ in items] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
             f'<text x="0" y="16" font-size="13" font-weight="600">{escape(title)}</text>']
    for i, (label, before, after, b_text, a_text) in enumerate(items):
        y = top + i * _ROW_H
        peak = shared if shared_scale else max(before, after, 1)
        parts.append(f'<text x="{_LABEL_W - 6}" y="{y + _BAR_H + 2}" font-size="11" text-anchor="end">'
                     f"{escape(label)}</text>")
        bars = ((before, b_text, BEFORE_COLOR), (after, a_text, AFTER_COLOR))[1 if single else 0:]
        for j, (v, text, color) in enumerate(bars):
            w = round(_PLOT_W * v / peak, 1)
            by = y + j * (_BAR_H + 1)
            parts.append(f'<rect x="{_LABEL_W}" y="{by}" width="{w}" height="{_BAR_H}" fill="{color}"/>')
            parts.append(f'<text x="{_LABEL_W + w + 4}" y="{by + _BAR_H - 1}" font-size="10">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def class_charts(s: StatisticsDiff) -> list[str]:
    """One chart per compared split."""
    charts = []
    for split in s.splits:
        items = [(c.key, c.before, c.after, str(c.before), str(c.after)) for c in split.classes]
        charts.append(f'<figure data-split="{escape(split.split)}">'
                      f"{bar_chart(f'Class distribution: {split.split}', 'class-chart', items)}</figure>")
    return charts


def size_chart(v: VersionDiff) -> str:
    items: list[tuple[str, float, float, str, str]] = [
        ("files", v.file_count.before, v.file_count.after, str(v.file_count.before), str(v.file_count.after)),
        ("total size", v.total_size.before, v.total_size.after, human_size(v.total_size.before),
         human_size(v.total_size.after)),
    ]
    if v.statistics is not None:
        items += [(f"images {c.key}", c.before, c.after, str(c.before), str(c.after)) for c in v.statistics.sizes]
    return f"<figure>{bar_chart('Size changes', 'size-chart', items, shared_scale=False)}</figure>"


def _legend() -> str:
    return (f'<p class="legend"><span><i class="swatch" style="background:{BEFORE_COLOR}"></i>before</span>'
            f'<span><i class="swatch" style="background:{AFTER_COLOR}"></i>after</span></p>')


def _section(v: VersionDiff) -> str:
    before = escape(v.before) + (f" <code>{escape(v.before_id)}</code>" if v.before_id else "")
    after = escape(v.after) + (f" <code>{escape(v.after_id)}</code>" if v.after_id else "")
    if v.identical:
        return f"<section><h2>{after}</h2><p>Identical to {before}.</p></section>"
    out = [f"<section><h2>{before} → {after}</h2>"]
    if v.note:
        out.append(f"<p><em>{escape(v.note)}</em></p>")
    out.append(f"<h3>Files</h3><p>{escape(files_summary(v))}</p>")
    if v.files:
        out.append(_table(["", "path", "size"], [[_sign(SIGNS[f.change]), f"<td><code>{escape(f.path)}</code></td>",
                                                  _td(file_size(f), True)] for f in v.files]))
    if v.properties:
        out.append("<h3>Properties</h3>")
        out.append(_table(["", "change"], [[_sign(SIGNS[p.change]), f"<td><code>{escape(property_text(p))}</code></td>"]
                                          for p in v.properties]))
    out.append("<h3>Size changes</h3>" + _legend() + size_chart(v))
    s = v.statistics
    if s is not None and s.changed:
        rows = statistics_rows(s)
        out.append("<h3>Statistics</h3>")
        if rows:
            out.append(_table(["", "statistic", "before", "after", "change"], [_row_cells(r) for r in rows]))
        if s.splits:
            out.append("<h3>Class distribution</h3>" + _legend())
            out.append(f'<div class="charts">{"".join(class_charts(s))}</div>')
    out.append("</section>")
    return "".join(out)


def render_report_html(report: DiffReport) -> str:
    title = "Dataset diff: server → manifests" if report.mode == "desired-vs-live" else "Dataset diff"
    body = "".join(_section(v) for v in report.versions)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{PAGE_CSS}</style></head><body><h1>{escape(title)}</h1>"
            f'<p class="verdict">{escape(verdict(report))}</p>{body}</body></html>\n')
