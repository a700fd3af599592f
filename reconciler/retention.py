"""Retention: which versions the manifests' policies let go, and what deleting them frees. Pure: the clock and
the task uses come in as values.

Invariants of :func:`plan_retention`:
- only versions the manifests name, that this tool created and that are finalized, are ever archived or deleted;
- a version is out of the policy when no rule keeps it: not among the ``keep_last`` newest the manifests name
  (manifest order), and (when ``max_age`` is given) created longer ago than ``max_age``;
- an out-of-policy version is still kept, and not archived, when it holds an alias, is published (unless
  ``delete_published``), or a task read it within ``used_within`` (the entry names the tasks);
- a retired version is archived first (recording when); once ``grace`` has passed since then (``grace: 0``: in
  the same apply) it is deleted: its task and every object it stores. Except what a version that stays on the
  server reads (by that version's file entries, whichever version they inherit from, and the file lists the
  SDK loads walking its dependency graph): then only the other objects are freed, and the task, its file list
  and the read objects stay. The versions that stay include the retired ones still in their grace period, so a
  revert of the manifests restores readable versions;
- a version a kept version needs as the parent of a version still to be built is not retired;
- a version whose chunks retention freed stays retired, whatever the policy says later: it is neither
  restored nor built again (the versions on it still load).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from .model import (
    ALL_OBJECTS,
    DatasetSpec,
    DesiredState,
    ObservedState,
    ObservedVersion,
    Retention,
    StoredObject,
    TaskUse,
    VersionKey,
    parse_time,
)


@dataclass(frozen=True, slots=True)
class RetentionInputs:
    """What retention planning needs besides manifests and observation: ``now`` (None: no retention planned)
    and the tasks that read each version (``ServerReader.tasks_using``)."""

    now: datetime | None = None
    uses: Mapping[str, tuple[TaskUse, ...]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class RetentionEntry:
    """One version out of its dataset's policy, and what happens to it.

    ``stage``: ``archive`` (archived now, deleted after the grace period), ``delete`` (deleted by this plan),
    ``free`` (the objects no staying version reads are deleted; the rest stays: ``reasons`` say who
    reads it), ``waiting`` (archived, in its grace period until ``delete_after``), ``kept`` (nothing freed:
    ``reasons`` say why). ``freed_bytes``: what deleting frees; ``kept_bytes``: what stays because something
    needs it.
    """

    version: VersionKey
    version_id: str
    stage: str
    why: str  # why the policy lets it go
    freed_bytes: int = 0
    kept_bytes: int = 0
    reasons: tuple[str, ...] = ()
    tasks: tuple[TaskUse, ...] = ()
    delete_after: str = ""


@dataclass(frozen=True, slots=True)
class Rehoming:
    """The oldest kept version of a dataset whose policy says ``rehome``, made to stand on its own: the files it
    inherits are copied into new chunks of its own, its file list and ``Dataset Struct`` name no parent, and the
    versions built on it (``rewrites``) read those files from it. Then nothing kept reads the versions before it
    (``detached``), and they are deleted whole. Ids do not change; ``frees_bytes``: what the deletions free
    because of it (beyond what they would free without it)."""

    version: VersionKey
    version_id: str
    files: int  # inherited files copied into its own chunks (0: done already, only file lists left to rewrite)
    copy_bytes: int  # their size
    rewrites: tuple[tuple[VersionKey, str], ...]  # versions built on it whose file lists are rewritten, parents first
    detached: tuple[str, ...]  # ids that its lineage and theirs no longer name
    frees_bytes: int = 0
    group: tuple[str, ...] = ()  # it and every version built on it that stays (what they may go on reading)
    replaced: tuple[StoredObject, ...] = ()  # the file lists it rewrites (deleted once the new ones are read back)


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    retired: frozenset[VersionKey] = frozenset()  # versions the planner must neither build, restore nor check
    archive: tuple[tuple[ObservedVersion, str], ...] = ()  # (version, why) to archive, in order
    # (version, why, objects to delete, whether its task goes too), children first
    delete: tuple[tuple[ObservedVersion, str, tuple[StoredObject, ...], bool], ...] = ()
    entries: tuple[RetentionEntry, ...] = ()
    unread: frozenset[str] = frozenset()  # ids whose file lists the decision needs and observation lacks
    rehome: tuple[Rehoming, ...] = ()  # applied after the archives, before the deletes


def duration_text(seconds: int) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _managed_final(candidates: Sequence[ObservedVersion]) -> ObservedVersion | None:
    """The version retention manages for a key: this tool's finalized one, live first, then archived."""
    final = [v for v in candidates if v.managed and v.finalized]  # (a partly freed one too: it frees the rest)
    final.sort(key=lambda v: (not v.archived, v.last_update), reverse=True)
    return final[0] if final else None


def _out_of_policy(policy: Retention, index: int, count: int, obs: ObservedVersion | None, now: datetime
                   ) -> str | None:
    """Why the version at ``index`` of ``count`` is out of ``policy`` (None: a rule keeps it)."""
    reasons = []
    if policy.keep_last is not None:
        if index >= count - policy.keep_last:
            return None
        reasons.append(f"not among the {policy.keep_last} newest versions (keep_last)")
    if policy.max_age is not None:
        created = parse_time(obs.created) if obs is not None else None
        if created is None or now - created <= timedelta(seconds=policy.max_age):
            return None
        reasons.append(f"created more than {duration_text(policy.max_age)} ago (max_age)")
    return "; ".join(reasons) or None


def _protections(ds: DatasetSpec, policy: Retention, key: VersionKey, obs: ObservedVersion | None,
                 inputs: RetentionInputs, now: datetime) -> tuple[tuple[str, ...], tuple[TaskUse, ...]]:
    reasons: list[str] = []
    aliases = sorted(a for a, v in ds.aliases.items() if v == key.version)
    if aliases:
        reasons.append(f"holds the alias{'es' if len(aliases) > 1 else ''} {', '.join(aliases)}")
    spec = next((v for v in ds.versions if v.key == key), None)
    published = (obs is not None and obs.status == "published") or (spec is not None and spec.publish)
    if published and not policy.delete_published:
        reasons.append("published (the policy keeps published versions: delete_published is false)")
    tasks: tuple[TaskUse, ...] = ()
    if obs is not None:
        since = now - timedelta(seconds=policy.used_within)
        tasks = tuple(u for u in inputs.uses.get(obs.id, ()) if u.last_update is not None and u.last_update >= since)
        if tasks:
            names = ", ".join(f"{u.name!r} ({u.project or 'no project'}, {u.id})" for u in tasks[:5])
            more = f" and {len(tasks) - 5} more" if len(tasks) > 5 else ""
            reasons.append(f"read by {len(tasks)} task{'s' if len(tasks) > 1 else ''} within "
                           f"{duration_text(policy.used_within)}: {names}{more}")
    return tuple(reasons), tasks


def plan_retention(desired: DesiredState, observed: ObservedState, inputs: RetentionInputs,
                   selected: Collection[VersionKey] | None = None) -> RetentionPlan:
    """What the retention policies of ``desired`` do to ``observed`` at ``inputs.now`` (see module docstring).

    ``selected``: the versions a ``--target`` plan may touch (None: all).
    """
    by_key = observed.by_key()
    husks = _husks(desired, by_key)
    now = inputs.now
    if now is None or not any(ds.retention for ds in desired.datasets):
        return RetentionPlan(retired=frozenset(husks))
    retired: dict[VersionKey, str] = {}
    entries: dict[VersionKey, RetentionEntry] = {}
    for ds in desired.datasets:
        policy = ds.retention
        if policy is None:
            continue
        names = [v.key for v in ds.versions]
        for index, key in enumerate(names):
            if selected is not None and key not in selected:
                continue
            obs = _managed_final(by_key.get(key, ()))
            why = _out_of_policy(policy, index, len(names), obs, now)
            if why is None:
                continue
            reasons, tasks = _protections(ds, policy, key, obs, inputs, now)
            if reasons:
                entries[key] = RetentionEntry(key, obs.id if obs else "", "kept", why,
                                              kept_bytes=_size(obs.objects) if obs else 0, reasons=reasons,
                                              tasks=tasks)
                continue
            retired[key] = why
    _keep_parents_to_build(desired, by_key, retired)
    for key, obs in husks.items():
        if key not in retired:  # back in the policy (or a policy removed): it cannot come back
            entries[key] = RetentionEntry(key, obs.id, "kept", "its chunks were deleted by an earlier retention "
                                          "apply: it cannot be restored", kept_bytes=_size(obs.objects),
                                          reasons=("its task and file list stay: the versions built on it load "
                                                   "them",))

    # versions to delete: retired, on the server, grace over; then drop those a staying version reads from
    deletable: dict[str, tuple[ObservedVersion, str]] = {}
    archive: list[tuple[ObservedVersion, str]] = []
    for key, why in retired.items():
        obs = _managed_final(by_key.get(key, ()))
        if obs is None:
            continue
        policy = desired.dataset(key.dataset).retention
        assert policy is not None
        expired = parse_time(obs.expired_at) if obs.archived else None
        if expired is None:
            archive.append((obs, why))
            expired = now
        due = expired + timedelta(seconds=policy.grace)
        if due <= now:
            deletable[obs.id] = (obs, why)
        else:
            entries[key] = RetentionEntry(key, obs.id, "archive" if expired == now else "waiting", why,
                                          kept_bytes=_size(obs.objects),
                                          reasons=(f"in its grace period until {due.isoformat(timespec='seconds')}",),
                                          delete_after=due.isoformat(timespec="seconds"))
    groups = [g for ds in desired.datasets if ds.retention is not None and ds.retention.rehome
              for g in [_rehome_group(ds, retired, entries, by_key, observed, deletable)] if g is not None]
    if _hold_interrupted(observed, deletable, groups, entries):
        groups = [g for ds in desired.datasets if ds.retention is not None and ds.retention.rehome
                  for g in [_rehome_group(ds, retired, entries, by_key, observed, deletable)] if g is not None]
    needed, unread = _needed(observed, deletable)
    rehome: list[Rehoming] = []
    if groups:
        members = {v.id for group, _ in groups for v in group}
        after, _ = _needed(observed, deletable, skip=members)
        sizes = {vid: {o.key: o.size for o in obs.objects} for vid, (obs, _) in deletable.items()}
        frees = _freed(after, sizes) - _freed(needed, sizes)
        if frees > 0 or any(group[0].rehome_pending for group, _ in groups):  # worth it, or to be finished
            needed = after
            rehome = [_rehoming(group, before, frees if i == 0 else 0) for i, (group, before) in enumerate(groups)]
    delete: list[tuple[ObservedVersion, str, tuple[StoredObject, ...], bool]] = []
    for vid, (obs, why) in deletable.items():
        entry, objects, whole = _split(obs, why, needed[vid])
        entries[obs.key] = entry
        if objects is not None:
            delete.append((obs, why, objects, whole))
    order = {key: i for i, key in enumerate(v.key for v in desired.all_versions())}
    return RetentionPlan(
        retired=frozenset(retired) | frozenset(husks),
        archive=tuple(sorted(archive, key=lambda a: order.get(a[0].key, 0))),
        delete=tuple(sorted(delete, key=lambda d: order.get(d[0].key, 0), reverse=True)),  # children first
        entries=tuple(sorted(entries.values(), key=lambda e: order.get(e.version, 0))),
        unread=frozenset(unread),
        rehome=tuple(rehome),
    )


def _husks(desired: DesiredState, by_key: Mapping[VersionKey, list[ObservedVersion]]
           ) -> dict[VersionKey, ObservedVersion]:
    """Versions the manifests name whose chunks retention freed (and no other version stands for): they are
    neither restored nor built again, and the versions built on them still load."""
    out = {}
    for spec in desired.all_versions():
        candidates = by_key.get(spec.key, ())
        husk = next((v for v in candidates if v.freed and v.archived and v.managed), None)
        if husk is not None and not any(v.finalized and not v.freed for v in candidates):
            out[spec.key] = husk
    return out


def _keep_parents_to_build(desired: DesiredState, by_key: Mapping[VersionKey, list[ObservedVersion]],
                           retired: dict[VersionKey, str]) -> None:
    """Un-retire the parents that a version still to be built (kept, not finalized on the server) stands on."""
    for spec in desired.all_versions():
        if spec.key in retired:
            continue
        todo, seen = [spec], {spec.key}
        while todo:
            cur = todo.pop()
            if any(v.finalized and not v.freed for v in by_key.get(cur.key, ())):
                continue
            for p in cur.parents:
                retired.pop(p, None)
                if p not in seen:
                    seen.add(p)
                    todo.append(desired.version(p))


def _size(objects: Sequence[StoredObject]) -> int:
    return sum(o.size for o in objects)


def _ancestors(version: ObservedVersion, by_id: Mapping[str, ObservedVersion]) -> set[str]:
    """The ids of every ancestor of ``version`` the observation shows (by recorded parents)."""
    seen: set[str] = set()
    todo = list(version.parent_ids)
    while todo:
        vid = todo.pop()
        if vid in seen:
            continue
        seen.add(vid)
        parent = by_id.get(vid)
        if parent is not None:
            todo.extend(parent.parent_ids)
    return seen


def _needed(observed: ObservedState, deletable: Mapping[str, tuple[ObservedVersion, str]],
            skip: Collection[str] = ()) -> tuple[dict[str, dict[str, list[VersionKey]]], set[str]]:
    """For each deletable version, the keys of its objects that a staying version reads (key -> readers); and
    the ids of staying versions whose file lists observation did not read (they then keep every object of every
    ancestor, and the caller reads them for the next plan). ``skip``: readers that a re-home makes read nothing
    outside their group."""
    needed: dict[str, dict[str, list[VersionKey]]] = {vid: {} for vid in deletable}
    unread: set[str] = set()
    by_id = {v.id: v for v in observed.versions}
    uris = {o.uri: (vid, o.key) for vid, (obs, _) in deletable.items() for o in obs.objects}
    for reader in observed.versions:
        if reader.id in deletable or reader.id in skip:
            continue
        ancestors = _ancestors(reader, by_id)
        if reader.reads is None:
            if reader.finalized:
                unread.add(reader.id)
            pairs = {(a, ALL_OBJECTS) for a in ancestors if a in deletable}
        else:
            # the SDK walks the whole ancestry (the Dataset Struct) and loads the file list of each version
            pairs = {p for p in reader.reads if p[0] in deletable} | {(a, "state") for a in ancestors if a in deletable}
            unread |= {a for a in ancestors if a in by_id and by_id[a].reads is None and not by_id[a].managed}
        pairs |= {uris[o.uri] for o in reader.objects if o.uri in uris}  # an object two versions list
        for vid, key in pairs:
            needed[vid].setdefault(key, []).append(reader.key)
    return needed, unread


def _split(obs: ObservedVersion, why: str, needs: Mapping[str, list[VersionKey]]
           ) -> tuple[RetentionEntry, tuple[StoredObject, ...] | None, bool]:
    """The entry of a deletable version, the objects to delete (None: nothing) and whether the task goes too.

    Nothing read: everything goes. Something read: the task, its file list and the read objects stay (the SDK
    loads them when reading the staying versions), the rest is freed."""
    if not needs:
        return RetentionEntry(obs.key, obs.id, "delete", why, freed_bytes=_size(obs.objects)), obs.objects, True
    keep = set(needs) | {"state"}
    free = () if ALL_OBJECTS in needs else tuple(o for o in obs.objects if o.key not in keep)
    reasons = []
    for key in sorted(needs):
        readers = sorted(set(needs[key]))
        shown = ", ".join(str(r) for r in readers[:3]) + (f" and {len(readers) - 3} more" if len(readers) > 3 else "")
        what = {"state": "its file list (the SDK loads it while reading",
                ALL_OBJECTS: "all of it (the SDK downloads it as part of the lineage of"}.get(
                    key, f"its chunk {key} (read by")
        reasons.append(f"{what} {shown})")
    entry = RetentionEntry(obs.key, obs.id, "free" if free else "kept", why, freed_bytes=_size(free),
                           kept_bytes=_size(obs.objects) - _size(free), reasons=tuple(reasons))
    return entry, (free or None), False


def _freed(needed: Mapping[str, Mapping[str, object]], sizes: Mapping[str, Mapping[str, int]]) -> int:
    """The bytes the deletions free given what staying versions read (``needed``; see :func:`_split`)."""
    total = 0
    for vid, needs in needed.items():
        if ALL_OBJECTS in needs:
            continue
        keep = set(needs) | ({"state"} if needs else set())
        total += sum(size for key, size in sizes[vid].items() if key not in keep)
    return total


def _rehome_group(ds: DatasetSpec, retired: Mapping[VersionKey, str], entries: Mapping[VersionKey, RetentionEntry],
                  by_key: Mapping[VersionKey, list[ObservedVersion]], observed: ObservedState,
                  deletable: Mapping[str, tuple[ObservedVersion, str]]
                  ) -> tuple[list[ObservedVersion], set[str]] | None:
    """The oldest version of ``ds`` its policy keeps with every version that stays and is built on it (parents
    first), and the ids of its ancestors, when a re-home can make them read nothing outside the group: each is
    this tool's, finalized, its file list read, and every ancestor of each is in the group or an ancestor of the
    oldest.
    None when nothing is deletable yet, or some version built on it could not follow (it would still read the
    old lineage: then nothing is re-homed and the versions it reads stay as they would)."""
    if not deletable:
        return None
    pending = [v for v in observed.versions if v.key.dataset == ds.key and v.rehome_pending and v.id not in deletable]
    key = next((v.key for v in ds.versions if v.key not in retired and v.key not in entries), None)
    oldest = pending[0] if pending else _managed_final(by_key.get(key, ())) if key is not None else None
    if oldest is None or oldest.archived or oldest.freed or oldest.reads is None or oldest.id in deletable:
        return None
    by_id = {v.id: v for v in observed.versions}
    staying = [v for v in observed.versions if v.id not in deletable]
    ancestors = {v.id: _ancestors(v, by_id) for v in staying}
    built_on = [v for v in staying if oldest.id in ancestors[v.id]]
    allowed = {oldest.id} | ancestors[oldest.id] | {v.id for v in built_on}
    for v in built_on:
        if not (v.managed and v.finalized and v.reads is not None and ancestors[v.id] <= allowed):
            return None
    depth = {v.id: len(ancestors[v.id]) for v in built_on}
    return [oldest, *sorted(built_on, key=lambda v: (depth[v.id], v.key, v.id))], ancestors[oldest.id]


def _rehoming(group: Sequence[ObservedVersion], before: set[str], frees: int) -> Rehoming:
    """What re-homing ``group[0]`` does: the files it copies, the file lists it rewrites (those that read anything
    outside the group, or name a version outside it in their lineage), the ids their lineage drops (``before``:
    its ancestors)."""
    oldest = group[0]
    ids = {v.id for v in group}
    by_id = {v.id: v for v in group}
    outside = set(before) | {owner for owner, _ in oldest.reads or ()} | set(oldest.parent_ids)
    rewrites = []
    for v in group[1:]:  # all of them: apply checks each one's file list and Dataset Struct, and skips those done
        reads = {owner for owner, _ in v.reads or ()} - ids
        rewrites.append((v.key, v.id))
        outside |= reads
    files, size = oldest.inherited or (0, 0)
    changed = [oldest] if files or oldest.parent_ids or outside - set(before) - ids else []
    changed += [v for v in group[1:] if {o for o, _ in v.reads or ()} - ids or _ancestors(v, by_id) - ids]
    replaced = tuple(o for v in changed for o in v.objects if o.key == "state")
    return Rehoming(oldest.key, oldest.id, files, size, tuple(rewrites), tuple(sorted(outside - ids)), frees,
                    tuple(v.id for v in group), replaced)


def _hold_interrupted(observed: ObservedState, deletable: dict[str, tuple[ObservedVersion, str]],
                      groups: Sequence[tuple[list[ObservedVersion], set[str]]],
                      entries: dict[VersionKey, RetentionEntry]) -> bool:
    """A re-home that a stopped run left unfinished (the versions on it may still name the old lineage in their
    ``Dataset Struct``) and that cannot be finished now: nothing of its dataset is deleted until it is. Whether
    anything was held."""
    finishing = {group[0].id for group, _ in groups}
    stuck = {v.key.dataset for v in observed.versions
             if v.rehome_pending and v.id not in deletable and v.id not in finishing}
    held = False
    for vid, (obs, why) in list(deletable.items()):
        if obs.key.dataset in stuck:
            held = True
            del deletable[vid]
            entries[obs.key] = RetentionEntry(obs.key, vid, "kept", why, kept_bytes=_size(obs.objects), reasons=(
                "a re-home of this dataset was interrupted and cannot be finished now (a version built on it is "
                "not this tool's or not finalized): nothing of it is deleted until it is",))
    return held
