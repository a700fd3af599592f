"""A lineage graph as JSON, Mermaid (GitHub renders it in markdown) or Graphviz DOT.

Labels are user data: Mermaid labels carry every character outside a small safe set as an entity code
(``#35;``), so no label can end a node, add an edge or close the markdown code fence around the chart; DOT
labels are quoted with ``\\`` and ``"`` escaped and control characters shown as escapes.
"""

from __future__ import annotations

import re
from typing import Any

from .. import escape
from ..lineage import Graph

GRAPH_FORMATS = ("mermaid", "dot", "json")
_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 ._/@:,()+-]")
# node classes: fill and border per state (GitHub's light palette)
STATE_STYLE = {
    "draft": ("#fff8c5", "#9a6700"), "final": ("#ddf4ff", "#0969da"), "published": ("#dafbe1", "#1a7f37"),
    "archived": ("#f6f8fa", "#8c959f"), "collapsed": ("#ffffff", "#8c959f"),
    "new": ("#dafbe1", "#1a7f37"), "changed": ("#fff8c5", "#9a6700"),  # in a plan
}


def node_ids(graph: Graph) -> dict[str, str]:
    """Short stable names (``v0``, ``v1``, ... in node order) for the formats that need plain identifiers."""
    return {n.id: f"v{i}" for i, n in enumerate(graph.nodes)}


def node_text(label: str, aliases: tuple[str, ...], state: str) -> str:
    extra = [{"new": "created by this plan", "changed": "changed by this plan"}.get(state, state)
             ] if state not in ("final", "collapsed") else []
    extra += [f"alias {a}" for a in aliases]
    return f"{label} ({', '.join(extra)})" if extra else label


def _mermaid_label(text: str) -> str:
    return "".join(ch if _MERMAID_SAFE.fullmatch(ch) else f"#{ord(ch)};" for ch in text)


def graph_to_mermaid(graph: Graph, *, direction: str = "TD") -> str:
    """A Mermaid ``flowchart`` (without the markdown fence)."""
    ids = node_ids(graph)
    out = [f"flowchart {direction}"]
    for n in graph.nodes:
        out.append(f'  {ids[n.id]}["{_mermaid_label(node_text(n.label, n.aliases, n.state))}"]:::{n.state}')
    out += [f"  {ids[p]} --> {ids[c]}" for p, c in graph.edges]
    used = sorted({n.state for n in graph.nodes})
    out += [f"  classDef {s} fill:{STATE_STYLE[s][0]},stroke:{STATE_STYLE[s][1]}" for s in used if s in STATE_STYLE]
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    return '"' + escape.text(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph_to_dot(graph: Graph) -> str:
    ids = node_ids(graph)
    out = ["digraph lineage {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for n in graph.nodes:
        fill, stroke = STATE_STYLE.get(n.state, STATE_STYLE["final"])
        style = ', style="rounded,dashed,filled"' if n.state in ("archived", "collapsed") else ""
        out.append(f"  {ids[n.id]} [label={_dot_string(node_text(n.label, n.aliases, n.state))}, "
                   f'fillcolor="{fill}", color="{stroke}"{style}];')
    out += [f"  {ids[p]} -> {ids[c]};" for p, c in graph.edges]
    out.append("}")
    return "\n".join(out) + "\n"


def graph_to_json(graph: Graph) -> dict[str, Any]:
    return {
        "format_version": 1,
        "nodes": [{"id": n.id, "label": n.label, "dataset": n.dataset, "version": n.version, "state": n.state,
                   "aliases": list(n.aliases), "collapsed": list(n.collapsed)} for n in graph.nodes],
        "edges": [{"parent": p, "child": c} for p, c in graph.edges],
    }


def render_graph(graph: Graph, fmt: str) -> str:
    import json

    if fmt == "mermaid":
        return graph_to_mermaid(graph)
    if fmt == "dot":
        return graph_to_dot(graph)
    return json.dumps(graph_to_json(graph), indent=2, sort_keys=True) + "\n"
