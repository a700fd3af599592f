"""Version lineage as a DAG (pure: no IO): ordering, transitive edges trimmed, long linear chains collapsed.

A version may have several parents (a merge). Node order is topological (parents first), ties broken by label,
so every rendering of one history is the same text. Edges are ``(parent id, child id)``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

STATES = ("draft", "final", "published", "archived")


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    label: str  # project/name@version
    state: str = "final"  # one of STATES, or "collapsed" for a folded run
    aliases: tuple[str, ...] = ()
    dataset: str = ""  # project/name
    version: str = ""
    collapsed: tuple[str, ...] = ()  # ids of the versions a collapsed node stands for, in order


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: tuple[Node, ...]  # topological order, parents first
    edges: tuple[tuple[str, str], ...]  # (parent id, child id), in node order

    def parents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for p, c in self.edges:
            out[c].append(p)
        return out

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for p, c in self.edges:
            out[p].append(c)
        return out


def build_graph(nodes: Iterable[Node], parents: Mapping[str, Sequence[str]]) -> Graph:
    """The DAG of ``nodes``; ``parents`` maps an id to its parents' ids (those not among the nodes are dropped).

    A cycle (a corrupt lineage) cannot be ordered: its nodes come last, by label, and keep their edges.
    """
    by_id = {n.id: n for n in nodes}
    position = {(p, c): i for c, ps in parents.items() if c in by_id for i, p in enumerate(ps)
                if p in by_id and p != c}
    order = _topological(by_id, set(position))
    rank = {nid: i for i, nid in enumerate(order)}
    # a child's edges in the order its parents were given: the first parent is the one it continues
    return Graph(tuple(by_id[i] for i in order), tuple(sorted(position, key=lambda e: (rank[e[1]], position[e]))))


def _topological(by_id: Mapping[str, Node], edges: set[tuple[str, str]]) -> list[str]:
    indegree = {nid: 0 for nid in by_id}
    children: dict[str, list[str]] = {nid: [] for nid in by_id}
    for p, c in edges:
        indegree[c] += 1
        children[p].append(c)
    heap = [(by_id[n].label, n) for n, d in indegree.items() if d == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, nid = heapq.heappop(heap)
        order.append(nid)
        for c in children[nid]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(heap, (by_id[c].label, c))
    done = set(order)
    order += sorted((n for n in by_id if n not in done), key=lambda n: (by_id[n].label, n))
    return order


def trim_transitive(graph: Graph) -> Graph:
    """``graph`` without the edges another path already implies (``a -> c`` when ``a -> b -> c``)."""
    parents = graph.parents()
    ancestors: dict[str, set[str]] = {}
    for n in graph.nodes:  # topological: parents' ancestor sets are ready
        acc: set[str] = set()
        for p in parents[n.id]:
            acc |= ancestors.get(p, set()) | {p}
        ancestors[n.id] = acc
    kept = []
    for p, c in graph.edges:
        others = [q for q in parents[c] if q != p]
        if not any(p in ancestors.get(q, set()) for q in others):
            kept.append((p, c))
    return Graph(graph.nodes, tuple(kept))


def collapse_chains(graph: Graph, *, min_run: int = 3, keep: Iterable[str] = ()) -> Graph:
    """Runs of at least ``min_run`` versions with one parent and one child each (a linear history) become one
    node; versions with aliases, versions in ``keep`` and the ends of a chain stay visible."""
    parents, children = graph.parents(), graph.children()
    keep_ids = set(keep)
    by_id = {n.id: n for n in graph.nodes}

    def foldable(nid: str) -> bool:
        n = by_id[nid]
        return (len(parents[nid]) == 1 and len(children[nid]) == 1 and not n.aliases and nid not in keep_ids
                and n.state != "collapsed")

    runs: list[list[str]] = []
    seen: set[str] = set()
    for n in graph.nodes:
        if n.id in seen or not foldable(n.id) or foldable(parents[n.id][0]):
            continue
        run = [n.id]
        while foldable(children[run[-1]][0]) and children[run[-1]][0] not in seen:
            run.append(children[run[-1]][0])
        seen.update(run)
        if len(run) >= min_run:
            runs.append(run)
    if not runs:
        return graph
    into: dict[str, str] = {}
    folded: dict[str, Node] = {}
    for run in runs:
        first, last = by_id[run[0]], by_id[run[-1]]
        label = f"{len(run)} versions: {first.version or first.label} … {last.version or last.label}"
        folded[run[0]] = replace(first, label=label, state="collapsed", aliases=(), collapsed=tuple(run))
        into.update({nid: run[0] for nid in run})
    nodes = tuple(folded.get(n.id, n) for n in graph.nodes if into.get(n.id, n.id) == n.id)
    edges = []
    for p, c in graph.edges:
        a, b = into.get(p, p), into.get(c, c)
        if a != b and (a, b) not in edges:
            edges.append((a, b))
    return Graph(nodes, tuple(edges))


def depths(graph: Graph) -> dict[str, int]:
    """The longest-path depth of every node (roots are 0): the layers a drawing places them in."""
    parents = graph.parents()
    out: dict[str, int] = {}
    for n in graph.nodes:
        out[n.id] = 1 + max((out.get(p, 0) for p in parents[n.id]), default=-1)
    return out


def tree(graph: Graph) -> list[tuple[tuple[bool, ...], str, tuple[str, ...]]]:
    """The DAG as an indented tree: ``(last flags, node id, other parents)`` rows in display order.

    ``last flags`` has one entry per level below the root: whether the node (last entry) and each of its tree
    ancestors is the last child of its tree parent (what draws ``├─``, ``└─`` and ``│``). Each node sits under
    its first parent; a merge also names the other parents it came from.
    """
    parents, children = graph.parents(), graph.children()
    rows: list[tuple[tuple[bool, ...], str, tuple[str, ...]]] = []
    stack: list[tuple[str, tuple[bool, ...]]] = [(n.id, ()) for n in reversed(graph.nodes) if not parents[n.id]]
    while stack:  # depth first, without recursion: a history may be thousands of versions long
        nid, flags = stack.pop()
        rows.append((flags, nid, tuple(parents[nid][1:])))
        kids = [c for c in children[nid] if parents[c][0] == nid]
        stack += [(c, (*flags, i == len(kids) - 1)) for i, c in reversed(list(enumerate(kids)))]
    placed = {nid for _, nid, _ in rows}
    for n in graph.nodes:  # nodes of a cycle: no root reaches them
        if n.id not in placed:
            rows.append(((), n.id, tuple(parents[n.id])))
    return rows
