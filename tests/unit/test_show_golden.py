"""`show` and `graph` outputs of one history, golden-tested in every format (UPDATE_GOLDEN=1 regenerates).

The history (plain values): a root with an alias, a published child, a side branch, a merge of both, a long
linear chain after the merge (collapsed by `graph`), an archived version, a draft, a parent from another dataset,
statistics, checks, tasks, and user data with markup, control and bidi characters (escaped in every format).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.lineage import Node, build_graph, collapse_chains, depths, tree, trim_transitive
from reconciler.model import DatasetKey, TaskUse, VersionKey
from reconciler.render.graph import render_graph
from reconciler.render.show import render_show
from reconciler.show import (
    CardSummary,
    CheckResult,
    DatasetView,
    ShowReport,
    StatisticsSummary,
    VersionView,
    combined_lineage,
)

GOLDEN = Path(__file__).parents[1] / "golden" / "show"
DS = DatasetKey("vision", "Shapes")
HOSTILE = "evil <script>alert(1)</script> | `x` \x1b[31m\u202e [link](http://x)"


def vid(n: int) -> str:
    return f"{n:032x}"


def version(n: int, ver: str, state: str, parents: tuple[str, ...], **kw: object) -> VersionView:
    status = {"draft": "in_progress", "published": "published"}.get(state, "completed")
    base: dict[str, object] = dict(key=VersionKey(DS.project, DS.name, ver), id=vid(n), state=state, status=status,
                                   parents=parents, file_count=10 * n, total_size=1000 * n, own_files=n,
                                   own_size=100 * n, last_update=f"2026-01-{n:02d}T00:00:00")
    base.update(kw)
    return VersionView(**base)  # type: ignore[arg-type]


def history() -> ShowReport:
    stats = StatisticsSummary(20, 2000, 18, MappingProxyType({"train": MappingProxyType({"circle": 6, "square": 8}),
                                                              "test": MappingProxyType({"circle": 2, "square": 2})}),
                              MappingProxyType({".png": 18, ".txt": 2}))
    checks = (CheckResult("no-empty", "empty_files", "error", "pass", 0),
              CheckResult(HOSTILE, "class_samples", "warn", "warn", 3))
    tasks = (TaskUse(vid(90), f"train {HOSTILE}", "vision/training", "completed",
                     datetime(2026, 2, 1, tzinfo=timezone.utc)),)
    versions = [
        version(1, "1.0.0", "final", (vid(99),), aliases=("staging",), tags=("image",), description=HOSTILE),
        version(2, "1.1.0", "published", (vid(1),), aliases=("production",), statistics=stats, checks=checks,
                card=CardSummary("Apache-2.0", f"Shapes {HOSTILE}", ("image-classification",), ("n<1K",),
                                 ("original",))),
        version(3, "1.0.1", "final", (vid(1),)),
        version(4, "2.0.0", "final", (vid(2), vid(3), vid(1)), tasks=tasks),  # vid(1) is a transitive parent
        version(5, "2.0.1", "final", (vid(4),)),
        version(6, "2.0.2", "final", (vid(5),)),
        version(7, "2.0.3", "final", (vid(6),)),
        version(8, "2.0.4", "final", (vid(7),)),
        version(9, "3.0.0-rc.1", "draft", (vid(8),), file_count=None, total_size=None, own_files=None,
                own_size=None),
        version(10, "0.1.0", "archived", ()),
    ]
    labels = {v.id: str(v.key) for v in versions} | {vid(99): "vision/Raw@1.0.0"}
    nodes = [Node(v.id, str(v.key), v.state, v.aliases, str(DS), v.key.version) for v in versions]
    nodes.append(Node(vid(99), "vision/Raw@1.0.0", "published", (), "vision/Raw", "1.0.0"))
    graph = build_graph(nodes, {v.id: v.parents for v in versions})
    ordered = tuple(sorted(versions, key=lambda v: [n.id for n in graph.nodes].index(v.id)))
    return ShowReport((DatasetView(DS, ordered, graph, MappingProxyType(labels)),))


def selected() -> ShowReport:
    [d] = history().datasets
    return ShowReport((DatasetView(d.key, d.versions, d.lineage, d.labels, selected=vid(2)),))


def outputs() -> dict[str, str]:
    report = history()
    lineage = combined_lineage(report)
    out = {f"show.{ext}": render_show(report, fmt) for fmt, ext in
           (("text", "txt"), ("json", "json"), ("markdown", "md"), ("html", "html"))}
    out["show-selected.txt"] = render_show(selected(), "text")
    out |= {f"graph.{ext}": render_graph(collapse_chains(trim_transitive(lineage)), fmt)
            for fmt, ext in (("mermaid", "mmd"), ("dot", "dot"), ("json", "json"))}
    out["graph-full.mmd"] = render_graph(lineage, "mermaid")
    return out


@pytest.mark.parametrize("name", sorted(outputs()))
def test_show_and_graph_match_their_golden_files(name: str) -> None:
    text = outputs()[name]
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"show/{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates)"


def test_user_data_is_escaped_in_every_format() -> None:
    for name, text in outputs().items():
        assert "\x1b" not in text and "\u202e" not in text, name
        if name.endswith(".html"):
            assert "<script>" not in text
        if name.endswith((".md", ".mmd")):
            assert "<script>" not in text or name.endswith(".md") and "\\<script\\>" in text


def test_transitive_edges_are_trimmed_and_chains_collapsed() -> None:
    graph = combined_lineage(history())
    assert (vid(1), vid(4)) in graph.edges
    trimmed = trim_transitive(graph)
    assert (vid(1), vid(4)) not in trimmed.edges and (vid(2), vid(4)) in trimmed.edges
    folded = collapse_chains(trimmed)
    [chain] = [n for n in folded.nodes if n.state == "collapsed"]
    assert chain.collapsed == (vid(5), vid(6), vid(7), vid(8)) and chain.label == "4 versions: 2.0.1 … 2.0.4"
    assert (vid(4), vid(5)) in folded.edges and (vid(5), vid(9)) in folded.edges
    assert collapse_chains(trimmed, min_run=5) == trimmed


def test_tree_puts_a_merge_under_its_first_parent_and_names_the_others() -> None:
    graph = trim_transitive(combined_lineage(history()))
    rows = {nid: (flags, others) for flags, nid, others in tree(graph)}
    assert rows[vid(4)] == ((True, True, True), (vid(3),))
    assert rows[vid(3)][0] == (True, False)
    assert rows[vid(99)] == ((), ()) and rows[vid(10)] == ((), ())
    assert depths(graph)[vid(4)] == 3


def test_a_cycle_in_a_corrupt_lineage_is_still_shown() -> None:
    nodes = [Node("a", "x@1"), Node("b", "x@2")]
    graph = build_graph(nodes, {"a": ("b",), "b": ("a",)})
    assert [n.id for n in graph.nodes] == ["a", "b"] and len(graph.edges) == 2
    assert {nid for _, nid, _ in tree(graph)} == {"a", "b"}
    assert json.loads(render_graph(graph, "json"))["edges"]


def test_mermaid_labels_cannot_end_a_node_add_an_edge_or_close_the_fence() -> None:
    hostile = 'x"] --> evil["y\n```\n<img src=x onerror=alert(1)>'
    chart = render_graph(build_graph([Node("a", hostile), Node("b", "ok")], {"b": ("a",)}), "mermaid")
    assert chart.count("\n") == 5 and chart.count("-->") == 1 and "`" not in chart and "<" not in chart
    assert '"' not in chart.split("\n")[1][8:-len('"]:::final')]


def test_the_plan_comment_draws_the_lineage_of_the_versions_it_creates() -> None:
    from reconciler.plan.actions import Archive, CreateVersion, Plan
    from reconciler.render.markdown import MAX_LINEAGE_NODES, lineage_lines

    key = VersionKey("p", "ds", "1.0.0")
    child = VersionKey("p", "ds", "1.1.0")
    assert lineage_lines(Plan((Archive(key, vid(1)),))) == []
    lines = lineage_lines(Plan((CreateVersion(child, (key,)), Archive(VersionKey("p", "ds", "0.1.0"), vid(2)))))
    text = "\n".join(lines)
    assert lines[:3] == ["#### Lineage", "", "```mermaid"] and lines[-2] == "```"
    assert "p/ds@1.1.0 (created by this plan)" in text and "p/ds@0.1.0 (archived)" in text and "-->" in text
    many = Plan(tuple(CreateVersion(VersionKey("p", "ds", f"1.0.{i}"), ()) for i in range(MAX_LINEAGE_NODES + 1)))
    assert "too many to draw" in "\n".join(lineage_lines(many))
