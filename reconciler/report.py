"""Diff reports: what differs between the manifests and the server, or between two live versions.

The comparison itself is pure (:func:`compare_versions` on plain values; property changes come from the one
differ plan renderers use too, :func:`reconciler.properties.diff_properties`).
The two entry points gather their inputs from a server:

- :func:`diff_desired`: every manifest version against the version the server holds for it (before: live,
  after: desired), i.e. what ``apply`` would change; statistics are compared for datasets with
  ``statistics: true``.
- :func:`diff_live`: two live versions (before: the first, after: the second), with their statistics
  (the stored ones when they describe the version's content, else computed from a downloaded copy).

Invariants of a :class:`DiffReport`: version pairs are in manifest order (parents first) or argument order;
file changes are sorted by path; every count map lists keys in sorted order; ``identical`` is true exactly
when no pair has a file, property or statistics difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .clearml_backend import ServerReader
from .diagnostics import ReconcileError
from .model import (
    Content,
    DesiredState,
    ObservedState,
    ObservedVersion,
    Properties,
    VersionKey,
    VersionSpec,
    statistics_key,
)
from .observe import HEX_ID, resolve_reference
from .plan.contents import diff_content
from .plan.observed import choose_observed, live_content, observed_content
from .plan.planner import topological_versions
from .properties import PropertyChange, diff_properties
from .statistics import (
    Statistics,
    StatisticsCache,
    cached_statistics,
    statistics_for,
    statistics_from_json,
)

REPORT_FORMAT_VERSION = 1


# --- the report --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountChange:
    key: str
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    change: str  # added | removed | modified
    before_size: int | None
    after_size: int | None


@dataclass(frozen=True, slots=True)
class SplitClasses:
    """Every class of one split on either side (unchanged ones too: the charts draw them side by side)."""

    split: str
    classes: tuple[CountChange, ...]

    @property
    def changed(self) -> tuple[CountChange, ...]:
        return tuple(c for c in self.classes if c.delta)


@dataclass(frozen=True, slots=True)
class ChannelChange:
    mode: str
    channel: int
    before_mean: float | None
    after_mean: float | None
    before_std: float | None
    after_std: float | None


@dataclass(frozen=True, slots=True)
class StatisticsDiff:
    """``summary``, ``extensions``, ``folders`` and ``sizes`` hold only what changed; ``splits`` everything."""

    before_available: bool
    after_available: bool
    summary: tuple[CountChange, ...] = ()
    extensions: tuple[CountChange, ...] = ()
    folders: tuple[CountChange, ...] = ()
    sizes: tuple[CountChange, ...] = ()
    splits: tuple[SplitClasses, ...] = ()
    channels: tuple[ChannelChange, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.summary or self.extensions or self.folders or self.sizes or self.channels
                    or any(s.changed for s in self.splits)
                    or self.before_available != self.after_available)


@dataclass(frozen=True, slots=True)
class VersionDiff:
    before: str  # what the left side is: "proj/ds@1.0.0" (live) or "(not on the server)"
    after: str
    before_id: str | None
    after_id: str | None
    file_count: CountChange
    total_size: CountChange
    files: tuple[FileChange, ...] = ()
    properties: tuple[PropertyChange, ...] = ()
    statistics: StatisticsDiff | None = None
    note: str = ""

    @property
    def identical(self) -> bool:
        return not (self.files or self.properties or (self.statistics and self.statistics.changed) or self.note)


@dataclass(frozen=True, slots=True)
class DiffReport:
    mode: str  # desired-vs-live | live-vs-live
    versions: tuple[VersionDiff, ...]

    @property
    def identical(self) -> bool:
        return all(v.identical for v in self.versions)


# --- the pure comparison -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a comparison, as plain values."""

    label: str
    id: str | None
    content: Content
    properties: Properties = Properties()
    statistics: Statistics | None = None


def file_changes(before: Content, after: Content) -> tuple[FileChange, ...]:
    def size(c: Content, p: str) -> int | None:
        return c.files[p].size if p in c.files else c.links[p].size

    d = diff_content(before, after)
    out = [FileChange(p, "added", None, size(after, p)) for p in d.added]
    out += [FileChange(p, "removed", size(before, p), None) for p in d.removed]
    out += [FileChange(p, "modified", size(before, p), size(after, p)) for p in d.modified]
    return tuple(sorted(out, key=lambda c: c.path))


def property_changes(before: Side, after: Side) -> tuple[PropertyChange, ...]:
    return diff_properties(before.properties, after.properties)


def _counts(key: str, before: Mapping[str, int], after: Mapping[str, int], *, all_keys: bool = False
            ) -> tuple[CountChange, ...]:
    keys = sorted(set(before) | set(after))
    changes = (CountChange(f"{key}{k}", before.get(k, 0), after.get(k, 0)) for k in keys)
    return tuple(c for c in changes if all_keys or c.delta)


def _summary(s: Statistics | None) -> dict[str, int]:
    if s is None:
        return {}
    out = {"files": s.file_count, "total size": s.total_size, "external links": s.links}
    if s.images is not None:
        out.update({"images": s.images.images, "unreadable images": s.images.unreadable})
    return out


def _channels(s: Statistics | None) -> dict[tuple[str, int], tuple[float, float]]:
    if s is None or s.images is None:
        return {}
    return {(c.mode, i): (c.mean[i], c.std[i]) for c in s.images.channels for i in range(len(c.sums))}


def _channel_change(key: tuple[str, int], before: Mapping[tuple[str, int], tuple[float, float]],
                    after: Mapping[tuple[str, int], tuple[float, float]]) -> ChannelChange:
    b_mean, b_std = before.get(key, (None, None))
    a_mean, a_std = after.get(key, (None, None))
    return ChannelChange(key[0], key[1], b_mean, a_mean, b_std, a_std)


def statistics_diff(before: Statistics | None, after: Statistics | None) -> StatisticsDiff:
    b_img = before.images if before else None
    a_img = after.images if after else None
    b_classes = b_img.classes if b_img else {}
    a_classes = a_img.classes if a_img else {}
    splits = tuple(SplitClasses(s, _counts("", b_classes.get(s, {}), a_classes.get(s, {}), all_keys=True))
                   for s in sorted(set(b_classes) | set(a_classes)))
    b_ch, a_ch = _channels(before), _channels(after)
    channels = tuple(_channel_change(k, b_ch, a_ch) for k in sorted(set(b_ch) | set(a_ch))
                     if b_ch.get(k) != a_ch.get(k))
    return StatisticsDiff(
        before_available=before is not None,
        after_available=after is not None,
        summary=_counts("", _summary(before), _summary(after)),
        extensions=_counts("", before.extensions if before else {}, after.extensions if after else {}),
        folders=_counts("", before.folders if before else {}, after.folders if after else {}),
        sizes=_counts("", b_img.sizes if b_img else {}, a_img.sizes if a_img else {}),
        splits=splits,
        channels=channels,
    )


def compare_versions(before: Side, after: Side, *, with_statistics: bool, note: str = "") -> VersionDiff:
    """The difference going from ``before`` to ``after`` (statistics only when asked)."""
    stats = statistics_diff(before.statistics, after.statistics) if with_statistics else None
    return VersionDiff(
        before=before.label,
        after=after.label,
        before_id=before.id,
        after_id=after.id,
        file_count=CountChange("files", before.content.file_count, after.content.file_count),
        total_size=CountChange("total size", before.content.total_size, after.content.total_size),
        files=file_changes(before.content, after.content),
        properties=property_changes(before, after),
        statistics=stats,
        note=note,
    )


# --- gathering inputs from a server --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffOptions:
    cache_root: Path | None  # file lists of finalized versions; None: not cached
    statistics: StatisticsCache
    workers: int = 4


def _live_side(version: ObservedVersion, content: Content, stats: Statistics | None) -> Side:
    return Side(str(version.key), version.id, content, version.properties, stats)


def stored_statistics(reader: ServerReader, version: ObservedVersion, digest: str) -> Statistics | None:
    """The version's stored statistics when they describe ``digest``; None otherwise."""
    if version.statistics_digest != digest:
        return None
    raw = reader.statistics_json(version)
    try:
        stats = statistics_from_json(raw) if isinstance(raw, dict) else None
    except ValueError:
        return None
    return stats if stats is not None and stats.content_digest == digest else None


def live_statistics(reader: ServerReader, version: ObservedVersion, content: Content, options: DiffOptions
                    ) -> Statistics:
    """Stored, else cached, else computed from the version's image files fetched from the server."""
    splits = version.properties.splits
    stats = stored_statistics(reader, version, statistics_key(content.digest(), splits))
    if stats is not None:
        return stats

    def fetch(paths: Sequence[str], dest: Path) -> Mapping[str, Path]:
        wanted = set(paths)
        files, _ = reader.files_of(version, None)
        return reader.fetch([f for f in files if f.path in wanted], dest)

    return statistics_for(content, splits, cache=options.statistics, fetch=fetch, workers=options.workers)


def _desired_pair(reader: ServerReader, ds_stats: bool, desired: Side, live: ObservedVersion | None,
                  options: DiffOptions, parent: Side | None = None) -> VersionDiff:
    if live is None:
        after = _with_stats(desired, ds_stats, options)
        if parent is not None:  # a new version is its parent plus a delta: that delta is the question
            whose = "its parents, merged" if parent.label.endswith(MERGED) else "its parent"
            return compare_versions(parent, after, with_statistics=ds_stats,
                                    note=f"not on the server: apply creates it on top of {whose}")
        before = Side("(not on the server)", None, Content())
        return compare_versions(before, after, with_statistics=ds_stats, note="not on the server: apply creates it")
    digest = desired.content.digest()
    held = live_content(live, desired.content) or Content()
    stats_differ = ds_stats and live.statistics_digest != statistics_key(digest, desired.properties.splits)
    before_stats = stored_statistics(reader, live, live.statistics_digest) if (
        stats_differ and live.statistics_digest) else None
    note = "" if live.finalized else f"the server holds a draft ({live.status})"
    return compare_versions(_live_side(live, held, before_stats), _with_stats(desired, stats_differ, options),
                            with_statistics=stats_differ, note=note)


def _with_stats(side: Side, wanted: bool, options: DiffOptions) -> Side:
    if not wanted:
        return side
    stats = cached_statistics(side.content, options.statistics, workers=options.workers,
                              splits=side.properties.splits)
    return Side(side.label, side.id, side.content, side.properties, stats)


def diff_desired(reader: ServerReader, desired: DesiredState, contents: Mapping[VersionKey, Content],
                 observed: ObservedState, options: DiffOptions) -> DiffReport:
    """Every manifest version (parents first) against the version the server holds for it."""
    pairs: list[VersionDiff] = []
    by_key = observed.by_key()
    for spec in topological_versions(desired):
        ds = desired.dataset(spec.key.dataset)
        live = choose_observed(by_key.get(spec.key, []))
        side = Side(f"{spec.key} (manifests)", None, contents[spec.key], spec.properties)
        parent = None
        if live is None and spec.parents:
            sides = [_parent_side(reader, desired.version(p), contents[p], choose_observed(by_key.get(p, [])),
                                  ds.statistics and len(spec.parents) == 1, options) for p in spec.parents]
            parent = sides[0] if len(sides) == 1 else _with_stats(
                Side(f"{' + '.join(str(p) for p in spec.parents)} {MERGED}", None,
                     Content.merged([s.content for s in sides]), sides[-1].properties), ds.statistics, options)
        pairs.append(_desired_pair(reader, ds.statistics, side, live, options, parent))
    return DiffReport("desired-vs-live", tuple(pairs))


MERGED = "(parents, merged)"  # the label's end of a new merge's base side


def _parent_side(reader: ServerReader, spec: VersionSpec, desired: Content, live: ObservedVersion | None,
                 with_stats: bool, options: DiffOptions) -> Side:
    """What a new version starts from, as plan sees it: the parent's finalized content on the server, else the
    content the manifests give it (the parent is new too)."""
    if live is not None and live.finalized:
        content = live_content(live, desired) or desired
        stats = live_statistics(reader, live, content, options) if with_stats else None
        return Side(f"{spec.key} (parent)", live.id, content, live.properties, stats)
    return _with_stats(Side(f"{spec.key} (parent, manifests)", None, desired, spec.properties), with_stats, options)


def is_live_reference(arg: str) -> bool:
    """``project/name@version`` or a 32-hex dataset id (anything else is a manifest path)."""
    return "@" in arg or bool(HEX_ID.match(arg))


def diff_live(reader: ServerReader, before_ref: str, after_ref: str, options: DiffOptions) -> DiffReport:
    """Two live versions: files, properties, and statistics (class distribution, sizes) from before to after."""
    sides = []
    for ref in (before_ref, after_ref):
        version = resolve_reference(reader, ref, cache_root=options.cache_root)
        sides.append((version, observed_content(version) or Content()))
    (b_ver, b_content), (a_ver, a_content) = sides
    same = b_content.digest() == a_content.digest()
    b_stats = None if same else live_statistics(reader, b_ver, b_content, options)
    a_stats = None if same else live_statistics(reader, a_ver, a_content, options)
    pair = compare_versions(_live_side(b_ver, b_content, b_stats), _live_side(a_ver, a_content, a_stats),
                            with_statistics=not same)
    return DiffReport("live-vs-live", (pair,))


def split_arguments(args: Sequence[str]) -> tuple[str, ...] | None:
    """The two references of a live-vs-live diff, or None when ``args`` are manifest paths."""
    live = [a for a in args if is_live_reference(a)]
    if not live:
        return None
    if len(args) != 2 or len(live) != 2:
        raise ReconcileError("diff takes manifest paths, or exactly two versions (PROJECT/NAME@VERSION or ids)")
    return tuple(args)
