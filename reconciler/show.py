"""See datasets as the server holds them: versions, lineage (merges included), aliases, states, own and inherited
files, statistics and checks summaries, and the tasks that used each version. A use case over the reader.

Calls: one listing of the datasets' projects, per version its file list (cached for finalized versions), its
``statistics`` and ``checks`` artifacts when it has them, one listing of the tasks that used the versions, and one
look-up of parents that belong to datasets not shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .clearml_backend import ServerReader
from .diagnostics import ReconcileError
from .lineage import Graph, Node, build_graph
from .model import DatasetKey, ObservedVersion, TaskUse, VersionKey, VersionLayout
from .observe import list_versions, state_cache_dir, version_summaries
from .plan.observed import choose_observed
from .statistics import statistics_from_json


@dataclass(frozen=True, slots=True)
class Target:
    """A dataset to show, optionally one version of it (a version string, an alias or an id), and the aliases the
    manifests give it (None: aliases are read from the server, see :func:`server_aliases`)."""

    dataset: DatasetKey
    version: str | None = None
    aliases: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class StatisticsSummary:
    file_count: int
    total_size: int
    images: int | None  # None: no image files
    classes: Mapping[str, Mapping[str, int]] = field(hash=False)  # split -> class -> samples
    extensions: Mapping[str, int] = field(hash=False)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    rule: str
    severity: str
    status: str  # passed | failed | ...
    offending_count: int


@dataclass(frozen=True, slots=True)
class CardSummary:
    """A version's dataset card (its named metadata ``card``): the front matter's main fields."""

    license: str
    pretty_name: str = ""
    task_categories: tuple[str, ...] = ()
    size_categories: tuple[str, ...] = ()
    source_datasets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionView:
    key: VersionKey
    id: str
    state: str  # draft | final | published | archived
    status: str  # the server's task status
    parents: tuple[str, ...]  # ids, as the stored lineage records them
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    file_count: int | None = None
    total_size: int | None = None
    own_files: int | None = None
    own_size: int | None = None
    last_update: str = ""
    statistics: StatisticsSummary | None = None
    checks: tuple[CheckResult, ...] | None = None  # None: never checked
    tasks: tuple[TaskUse, ...] = ()
    card: CardSummary | None = None

    @property
    def inherited_files(self) -> int | None:
        return None if self.file_count is None or self.own_files is None else self.file_count - self.own_files

    @property
    def inherited_size(self) -> int | None:
        return None if self.total_size is None or self.own_size is None else self.total_size - self.own_size


@dataclass(frozen=True, slots=True)
class DatasetView:
    key: DatasetKey
    versions: tuple[VersionView, ...]  # lineage order: parents first
    lineage: Graph  # the dataset's versions and their parents from other datasets
    labels: Mapping[str, str] = field(hash=False)  # version id -> project/name@version (parents included)
    selected: str | None = None  # the id of the version asked for (None: the whole dataset)


@dataclass(frozen=True, slots=True)
class ShowReport:
    datasets: tuple[DatasetView, ...]


def state_of(version: ObservedVersion) -> str:
    if version.archived:
        return "archived"
    if version.status == "published":
        return "published"
    return "final" if version.finalized else "draft"


def server_aliases(versions: Sequence[ObservedVersion]) -> dict[str, str]:
    """Aliases as the server shows them: a tag held by exactly one live version of a dataset of several (this
    tool's aliases are such tags; dataset-wide tags are on every version). alias -> version."""
    live = [v for v in versions if not v.archived]
    if len(live) < 2:
        return {}
    holders: dict[str, list[ObservedVersion]] = {}
    for v in live:
        for tag in v.properties.tags:
            holders.setdefault(tag, []).append(v)
    return {tag: vs[0].key.version for tag, vs in sorted(holders.items()) if len(vs) == 1}


def show(reader: ServerReader, targets: Sequence[Target], *, cache_root: Path | None, workers: int = 4
         ) -> ShowReport:
    """What the server holds of ``targets``; a one-line error for an unknown dataset, version or alias."""
    listing = list_versions(reader, sorted({t.dataset.project for t in targets}))
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    chosen = [(t, [v for v in listing.versions if v.key.dataset == t.dataset]) for t in targets]
    for t, versions in chosen:
        if not versions:
            raise ReconcileError(f"unknown dataset {t.dataset}: the server has no version of it")
    every = [v for _, vs in chosen for v in vs]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        details = dict(zip([v.id for v in every], pool.map(lambda v: _details(reader, v, cache_dir), every),
                           strict=True))
    uses = reader.tasks_using(sorted(details))
    known = {v.id: v for v in listing.versions}
    outside = sorted({p for d in details.values() for p in d[0] if p not in known})
    known.update(version_summaries(reader, outside))
    return ShowReport(tuple(_dataset_view(t, vs, details, uses, known) for t, vs in chosen))


_Details = tuple[tuple[str, ...], VersionLayout | None, StatisticsSummary | None, tuple[CheckResult, ...] | None,
                 CardSummary | None]


def _details(reader: ServerReader, v: ObservedVersion, cache_dir: Path | None) -> _Details:
    layout = reader.layout(v, cache_dir)
    parents = layout.parent_ids if layout is not None else (v.parent_ids or reader.draft_parents(v.id))
    return (parents, layout, _statistics(reader.statistics_json(v)), _checks(reader.checks_json(v)),
            _card(reader.card_json(v)))


def _texts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _card(raw: Any) -> CardSummary | None:
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    if not isinstance(meta, dict):
        return None
    return CardSummary(str(meta.get("license") or ""), str(meta.get("pretty_name") or ""),
                       _texts(meta.get("task_categories")), _texts(meta.get("size_categories")),
                       _texts(meta.get("source_datasets")))


def _statistics(raw: Any) -> StatisticsSummary | None:
    if not isinstance(raw, dict):
        return None
    try:
        s = statistics_from_json(raw)
    except (ValueError, KeyError, TypeError):
        return None
    images = s.images
    return StatisticsSummary(s.file_count, s.total_size, images.images if images else None,
                             MappingProxyType(dict(images.classes)) if images else MappingProxyType({}),
                             MappingProxyType(dict(s.extensions)))


def _checks(raw: Any) -> tuple[CheckResult, ...] | None:
    """The ``checks`` artifact: ``{"format_version": 1, "checks": [{name, rule, severity, status,
    offending_count, ...}]}``; None when it is not of that shape."""
    if not isinstance(raw, dict) or not isinstance(raw.get("checks"), list):
        return None
    out = []
    for c in raw["checks"]:
        if isinstance(c, dict):
            count = c.get("offending_count")
            out.append(CheckResult(str(c.get("name") or ""), str(c.get("rule") or ""), str(c.get("severity") or ""),
                                   str(c.get("status") or ""),
                                   count if isinstance(count, int) and not isinstance(count, bool) else 0))
    return tuple(out)


def _dataset_view(target: Target, versions: list[ObservedVersion], details: Mapping[str, _Details],
                  uses: Mapping[str, tuple[TaskUse, ...]], known: Mapping[str, ObservedVersion]) -> DatasetView:
    aliases = dict(target.aliases) if target.aliases is not None else server_aliases(versions)
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    selected = _select(target, versions, aliases) if target.version else None
    views = []
    for v in versions:
        parents, layout, stats, checks, card = details[v.id]
        held = tuple(sorted(a for a in by_version.get(v.key.version, ()) if a in v.properties.tags
                            or target.aliases is None)) if not v.archived else ()
        views.append(VersionView(
            key=v.key, id=v.id, state=state_of(v), status=v.status, parents=tuple(parents), aliases=held,
            tags=tuple(sorted(v.properties.tags - set(held))), description=v.properties.description,
            file_count=layout.file_count if layout else v.file_count,
            total_size=layout.total_size if layout else v.total_size,
            own_files=layout.own_files if layout else None, own_size=layout.own_size if layout else None,
            last_update=v.last_update, statistics=stats, checks=checks, tasks=uses.get(v.id, ()), card=card,
        ))
    labels = {vid: str(k.key) for vid, k in known.items()}
    nodes = [Node(w.id, str(w.key), w.state, w.aliases, str(w.key.dataset), w.key.version) for w in views]
    outside = sorted({p for w in views for p in w.parents} - {w.id for w in views})
    for p in outside:
        o = known.get(p)
        nodes.append(Node(p, str(o.key) if o else p, state_of(o) if o else "final",
                          dataset=str(o.key.dataset) if o else "", version=o.key.version if o else ""))
    graph = build_graph(nodes, {w.id: w.parents for w in views})
    rank = {n.id: i for i, n in enumerate(graph.nodes)}
    ordered = tuple(sorted(views, key=lambda w: rank[w.id]))
    return DatasetView(target.dataset, ordered, graph, MappingProxyType(labels), selected)


def _select(target: Target, versions: list[ObservedVersion], aliases: Mapping[str, str]) -> str:
    wanted = str(target.version)
    matching = [v for v in versions if v.key.version == wanted or v.id == wanted]
    if not matching and wanted in aliases:
        matching = [v for v in versions if v.key.version == aliases[wanted] and not v.archived]
    live = choose_observed([v for v in matching if not v.archived])
    chosen = live or (sorted(matching, key=lambda v: v.last_update)[-1] if matching else None)
    if chosen is None:
        known = ", ".join(sorted({v.key.version for v in versions}))
        names = f"; aliases: {', '.join(sorted(aliases))}" if aliases else ""
        raise ReconcileError(f"{target.dataset} has no version or alias {wanted!r} (versions: {known}{names})")
    return chosen.id


def parse_targets(args: Sequence[str], load: Any) -> tuple[Target, ...]:
    """``project/name[@version|alias]`` references and manifest paths (files or folders that exist), in order;
    ``load`` reads manifests (paths -> DesiredState) and gives their datasets' aliases."""
    targets: list[Target] = []
    paths = [a for a in args if Path(a).exists()]
    state = load([Path(p) for p in paths]) if paths else None
    for arg in args:
        if arg in paths:
            continue
        bare = "@" not in arg or arg.endswith("@")  # PROJECT/NAME (a trailing '@' is refused below)
        try:
            version = None if bare else VersionKey.parse(arg)
            key = DatasetKey.parse(arg.removesuffix("@")) if version is None else version.dataset
        except ValueError:
            raise ReconcileError(f"{arg!r} is neither a manifest path nor PROJECT/NAME[@VERSION|ALIAS]") from None
        if "@" in arg and version is None:
            raise ReconcileError(f"{arg!r}: no version or alias after '@'")
        targets.append(Target(key, version.version if version else None))
    if state is not None:
        targets += [Target(ds.key, None, MappingProxyType(dict(ds.aliases))) for ds in state.datasets]
    return tuple(targets)


def combined_lineage(report: ShowReport) -> Graph:
    """One graph of every dataset in ``report`` (a parent shared by two datasets appears once)."""
    nodes: dict[str, Node] = {}
    parents: dict[str, tuple[str, ...]] = {}
    for d in report.datasets:
        own = {v.id for v in d.versions}
        for n in d.lineage.nodes:
            if n.id in own or n.id not in nodes:  # a dataset's own node wins over another's parent stub
                nodes[n.id] = n
        parents.update((v.id, v.parents) for v in d.versions)
    return build_graph(nodes.values(), parents)
