"""The planner: desired content against observed versions -> typed actions. Pure: no IO, no clock.

Invariants of a :class:`Plan`:
- actions of a version come after every action of its parent (parents before children, then by key);
- within a version the phase order is fixed: create/resume/restore, sync files, statistics, properties,
  finalize, publish; archives come last. Everything a version carries is written before it is finalized, UI
  plots before it is published: the order the real clearml-server accepts;
- aliases move last (:func:`aliases_last`): an alias is added to its new holder only once every other action of
  the plan ran (so the holder is final, and published when the manifest says so), and leaves its old holders
  only after that; an alias whose new holder is blocked stays where it is;
- a dataset with ``statistics: true`` gets a :class:`SetStatistics` for every version whose recorded statistics
  digest differs from its content digest (so a second plan after apply has none);
- a finalized version is never the subject of a content action: a content difference is a :class:`Conflict`,
  and so is a finalized version whose parent is gone, or ``publish: false`` on a published version;
- a version whose parent is in conflict (or missing from the plan and the server) is blocked, not created;
- a version to build whose error-level checks failed is held (:class:`Held`): it gets no action at all (not
  created, finalized, published), nor do its descendants, and no alias moves to or away for it; the rest of
  the plan proceeds. A version built with checks stores their results (:class:`SetChecks`) before it is
  finalized;
- a version the manifests name that exists only archived is restored (same id), not created again;
- a draft this tool made of a version that is already finalized is discarded (:class:`DiscardDraft`, first of
  that version's actions);
- only versions in the plan's projects (its prune scope) are reported as unmanaged or pruned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from ..checks.results import VersionChecks
from ..model import (
    DRAFT_STATUSES,
    Content,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    ObservedState,
    ObservedVersion,
    Properties,
    VersionKey,
    VersionSpec,
    statistics_key,
)
from ..properties import changed_fields
from ..retention import RetentionInputs, RetentionPlan, plan_retention
from ..wording import counted
from .actions import (
    Action,
    AliasMove,
    Archive,
    Build,
    Conflict,
    CreateVersion,
    DeleteVersion,
    DiscardDraft,
    Drift,
    Finalize,
    Held,
    Plan,
    PlanOptions,
    Publish,
    RehomeVersion,
    Restore,
    ResumeVersion,
    SetChecks,
    SetProperties,
    SetStatistics,
    Unmanaged,
)
from .contents import diff_content, sync_delta
from .observed import archived_candidate, choose_observed, fingerprint, observed_content, proves_content


def topological_versions(desired: DesiredState) -> list[VersionSpec]:
    """Every desired version, parents before children; ties broken by key."""
    order: list[VersionSpec] = []
    done: set[VersionKey] = set()

    def visit(spec: VersionSpec) -> None:
        if spec.key in done:
            return
        for p in spec.parents:
            visit(desired.version(p))
        done.add(spec.key)
        order.append(spec)

    for spec in sorted(desired.all_versions(), key=lambda s: s.key):
        visit(spec)
    return order


def _selected(key: VersionKey, targets: Sequence[str]) -> bool:
    if not targets:
        return True
    return any(t == str(key) or t == str(key.dataset) for t in targets)


def unknown_targets(desired: DesiredState, targets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Targets that name no manifest dataset or version, each with the closest names (for "did you mean")."""
    import difflib

    names = sorted({str(v.key) for v in desired.all_versions()} | {str(d.key) for d in desired.datasets})
    out: dict[str, tuple[str, ...]] = {}
    for t in targets:
        if t not in names:
            out[t] = tuple(difflib.get_close_matches(t, names, n=3, cutoff=0.5))
    return out


def _with_ancestors(desired: DesiredState, targets: Sequence[str]) -> set[VersionKey]:
    """Targeted versions and every ancestor they need (Terraform's -target pulls in dependencies)."""
    keep: set[VersionKey] = set()
    for spec in desired.all_versions():
        if _selected(spec.key, targets):
            keep.update(s.key for s in desired.lineage(spec.key))
    return keep


class _Planner:
    def __init__(self, desired: DesiredState, contents: Mapping[VersionKey, Content], observed: ObservedState,
                 checks: Mapping[VersionKey, VersionChecks], retired: frozenset[VersionKey] = frozenset()):
        self.retired = retired  # versions retention lets go: neither built, restored nor checked
        self.checks = checks
        self.held: dict[VersionKey, Held] = {}
        failing = {k for k, c in checks.items() if c.failed}
        held_keys = {v.key for v in desired.all_versions() if any(s.key in failing for s in desired.lineage(v.key))}
        self.frozen_aliases: dict[DatasetKey, frozenset[str]] = {
            ds.key: frozenset(a for a, t in ds.aliases.items() if VersionKey(ds.key.project, ds.key.name, t)
                              in held_keys) for ds in desired.datasets if ds.aliases}
        self.desired = desired
        self.contents = contents
        self.observed = observed
        self.actions: list[Action] = []
        self.conflicts: list[Conflict] = []
        self.blocked: set[VersionKey] = set()
        self.by_key = observed.by_key()
        self.by_id = {v.id: v for v in observed.versions}
        self.drift: list[Drift] = []
        self.builds: list[Build] = []
        self.adopted = {v.key: v.adopt for v in desired.all_versions() if v.adopt}
        self.restored: dict[VersionKey, str] = {}  # versions this plan unarchives: key -> id

    def restore(self, key: VersionKey, version: ObservedVersion) -> None:
        """Unarchive ``version`` and give it back the system tags it lost; archiving it was drift unless this
        tool pruned it, and a lost system tag always is."""
        self.actions.append(Restore(key, version.id, version.archived, version.lost_system_tags))
        self.restored[key] = version.id
        if version.archived and not version.pruned:
            self.drift.append(Drift(key, version.id, "archived", "archived on the server since the last apply"))
        if version.lost_system_tags:
            self.drift.append(Drift(key, version.id, "system_tags", f"system tag {', '.join(version.lost_system_tags)} "
                                    "removed on the server: the SDK cannot find the version"))

    def chosen(self, key: VersionKey) -> ObservedVersion | None:
        if key in self.adopted:
            return self.by_id.get(self.adopted[key])
        return choose_observed(self.by_key.get(key, []))

    def base_content(self, spec: VersionSpec) -> Content:
        """What a new version of ``spec`` starts with: its parents' live contents when known, else desired,
        merged in order."""
        return Content.merged([self.parent_content(p) for p in spec.parents]) if spec.parents else Content()

    def parent_content(self, key: VersionKey) -> Content:
        parent_obs = self.chosen(key)
        if parent_obs is not None and parent_obs.finalized:
            live = observed_content(parent_obs)
            if live is not None:
                return live
        return self.contents[key]

    def hold(self, spec: VersionSpec) -> bool:
        """Whether the version is held by failing checks (its own or a parent's); held ones are recorded."""
        held = [p for p in spec.parents if p in self.held]
        if held:
            self.held[spec.key] = Held(spec.key, f"its parent {held[0]} failed its checks")
            return True
        checks = self.checks.get(spec.key)
        if checks is None or not checks.failed:
            return False
        names = ", ".join(repr(r.name) for r in checks.failed)
        self.held[spec.key] = Held(spec.key, f"{len(checks.failed)} error-level check(s) failed: {names}")
        return True

    def plan_version(self, spec: VersionSpec, ds: DatasetSpec) -> None:
        key = spec.key
        current = self.chosen(key)
        if (current is None or not current.finalized) and self.hold(spec):
            return
        blocked = [p for p in spec.parents if p in self.blocked]
        if blocked:
            self.block(spec, f"its parent {blocked[0]} cannot be reconciled", "resolve the parent's conflict first")
            return
        obs = self.chosen(key)
        if spec.adopt is not None and not self.check_adopted(spec, obs):
            return
        if obs is not None and (obs.archived or obs.lost_system_tags):  # adopted and archived, or lost a tag
            self.restore(key, obs)
        if obs is None:
            archived = archived_candidate(self.by_key.get(key, []))
            if archived is not None and archived.finalized:
                self.restore(key, archived)
                obs = archived
        target = self.contents[key]
        if obs is not None and obs.finalized and not obs.archived:
            self.discard_stray_drafts(key, obs)
        if obs is None:
            self.actions.append(CreateVersion(key, spec.parents, ds.storage))
            self.build(spec, ds, None, self.base_content(spec), target)
        elif obs.finalized:
            if not (self.check_finalized(spec, obs, target) and self.check_lineage(spec, obs)
                    and self.check_storage(spec, obs)):
                return
            self.plan_statistics(spec, ds, obs, target)
            self.plan_properties(spec, obs)
            self.plan_publish(spec, obs)
        elif obs.managed:
            self.actions.append(ResumeVersion(key, obs.id, spec.parents))
            self.build(spec, ds, obs, self.base_content(spec), target)
        else:
            self.block(
                spec,
                f"a draft version not created by this tool exists (id {obs.id}, status {obs.status})",
                "finalize or delete that draft in ClearML, then plan again",
                obs.id,
            )

    def discard_stray_drafts(self, key: VersionKey, final: ObservedVersion) -> None:
        """This tool's live drafts of ``key`` next to its finalized ``final``: only a run that lost its lease
        (its create answered after another run finished the version) leaves one."""
        for v in sorted(self.by_key.get(key, []), key=lambda v: v.id):
            if v.id != final.id and v.managed and not v.archived and v.status in DRAFT_STATUSES:
                self.actions.append(DiscardDraft(key, v.id))

    def build(self, spec: VersionSpec, ds: DatasetSpec, draft: ObservedVersion | None, base: Content,
              target: Content) -> None:
        """The steps of a version being built: content, statistics, properties, finalize, publish."""
        self.builds.append(Build(spec.key, spec.sources, spec.remove))
        sync = sync_delta(spec.key, base, target)
        if sync is not None:
            self.actions.append(replace(sync, chunk_size_mb=ds.chunk_size_mb, compression=ds.compression))
        if ds.statistics:
            splits = spec.properties.splits
            self.actions.append(SetStatistics(spec.key, None, statistics_key(target.digest(), splits), plots=True,
                                              splits=splits))
        if spec.key in self.checks:
            self.actions.append(SetChecks(spec.key, self.checks[spec.key], spec.checks))
        self.plan_properties(spec, draft)
        self.actions.append(Finalize(spec.key, target.digest()))
        if spec.publish:
            self.actions.append(Publish(spec.key))

    def check_adopted(self, spec: VersionSpec, obs: ObservedVersion | None) -> bool:
        """An adopted version must exist, be final, and be the version the manifest says it is."""
        if obs is None:
            self.block(spec, f"the manifest adopts version {spec.adopt}, which is not on the server",
                       "check the id (reconcile import writes it), or remove the id to create the version")
        elif obs.key != spec.key:
            self.block(spec, f"the adopted version {obs.id} is {obs.key} on the server",
                       "adopt it under its own project, name and version", obs.id)
        elif not obs.finalized:
            self.block(spec, f"the adopted version {obs.id} is a draft ({obs.status})",
                       "finalize it in ClearML first: an adopted version is taken as it is", obs.id)
        else:
            return True
        return False

    def check_finalized(self, spec: VersionSpec, obs: ObservedVersion, target: Content) -> bool:
        if proves_content(obs, target):
            return True
        live = observed_content(obs)
        if live is None:
            if obs.content_digest is None:
                return True  # nothing to compare against: the observer could not read the file list
            self.block(spec, "finalized content differs from the manifest",
                       f"add a new version on top of {spec.key.version} instead of changing this one", obs.id)
            return False
        d = diff_content(live, target)
        if d.empty:
            return True
        changed_links = [p for p in d.modified if p in live.links and p in target.links
                         and live.links[p].url == target.links[p].url]
        if changed_links and not d.added and not d.removed and len(changed_links) == len(d.modified):
            self.drift.append(Drift(spec.key, obs.id, "source", f"the objects behind {len(changed_links)} URL "
                                    f"sources changed (size or ETag): {', '.join(changed_links[:5])}"))
        self.conflicts.append(
            Conflict(
                version=spec.key,
                reason="finalized content differs from the manifest",
                hint=f"finalized versions are immutable: add a new version (parent: {spec.key.version}) "
                f"with these changes, or restore the sources",
                version_id=obs.id,
                added=d.added,
                removed=d.removed,
                modified=d.modified,
            )
        )
        self.blocked.add(spec.key)
        return False

    def parent_id(self, key: VersionKey) -> str | None:
        """The id of the version ``key`` names on the server (or that this plan restores), None if none."""
        parent = self.chosen(key)
        return parent.id if parent is not None else self.restored.get(key)

    def check_lineage(self, spec: VersionSpec, obs: ObservedVersion) -> bool:
        """A finalized version must stand on the versions the manifests name as its parents, and those must
        still be there, or be restored by this plan: its files are read through them."""
        if not spec.parents or not obs.parent_ids or any(p in self.retired for p in spec.parents):
            return True  # a retired parent may be archived or freed: retention keeps what kept versions read
        ids = [self.parent_id(p) for p in spec.parents]
        if all(i is not None and i in obs.parent_ids for i in ids):
            return True
        back = set(self.restored.values())
        gone = [p for p in obs.parent_ids if p not in back and (p not in self.by_id or self.by_id[p].archived)]
        if gone:
            assert spec.parent is not None
            self.drift.append(Drift(spec.key, obs.id, "parent", f"its parent version {gone[0]} was deleted or "
                                    "archived on the server"))
            self.block(spec, f"its parent version {gone[0]} is gone from the server (deleted or archived), so its "
                       "inherited files cannot be read",
                       f"restore that parent, or add a new version of {spec.key.name} built on "
                       f"{spec.parent.version}", obs.id)
            return False
        return True

    def check_storage(self, spec: VersionSpec, obs: ObservedVersion) -> bool:
        if obs.corrupt_chunks:
            self.block(spec, f"its data chunks {', '.join(obs.corrupt_chunks)} in storage are not the bytes that were "
                       "recorded (sha256 differs), so the version would give other files", f"restore those objects "
                       f"from a backup, or add a new version of {spec.key.name} with the same sources (it uploads the "
                       "files again)", obs.id)
            return False
        if not obs.missing_chunks:
            return True
        n = len(obs.missing_chunks)
        self.block(spec, f"{counted(n, 'data chunk')} of it {'is' if n == 1 else 'are'} missing from storage "
                   f"({', '.join(obs.missing_chunks)}), so the version cannot be downloaded",
                   f"restore those objects, or add a new version of {spec.key.name} with the same sources (it "
                   "uploads the files again)", obs.id)
        return False

    def block(self, spec: VersionSpec, reason: str, hint: str, version_id: str | None = None) -> None:
        self.conflicts.append(Conflict(spec.key, reason, hint, version_id))
        self.blocked.add(spec.key)

    def plan_statistics(self, spec: VersionSpec, ds: DatasetSpec, obs: ObservedVersion, target: Content) -> None:
        splits = spec.properties.splits
        wanted = statistics_key(target.digest(), splits)
        if ds.statistics and obs.statistics_digest != wanted:
            self.actions.append(SetStatistics(spec.key, obs.statistics_digest, wanted,
                                              plots=obs.status != "published", splits=splits))

    def plan_properties(self, spec: VersionSpec, obs: ObservedVersion | None) -> None:
        before = obs.properties if obs is not None else Properties()
        after = spec.properties
        frozen = self.frozen_aliases.get(spec.key.dataset)
        if frozen:  # an alias of a held version stays where it is
            after = after.replace(tags=(after.tags - frozen) | (before.tags & frozen))
        if obs is not None and obs.applied is not None and obs.applied != obs.properties:
            fields_changed = changed_fields(obs.applied, obs.properties)
            self.drift.append(Drift(spec.key, obs.id, "properties",
                                    f"{', '.join(fields_changed)} changed on the server since the last apply",
                                    obs.applied, obs.properties))
        if before != after:
            self.actions.append(SetProperties(spec.key, before, after))

    def dropped_aliases(self, ds: DatasetSpec) -> frozenset[str]:
        """Aliases apply set on versions of ``ds`` that the manifests no longer give (still held on the server)."""
        return frozenset(a for v in self.observed.versions if v.key.dataset == ds.key and not v.archived
                         for a in v.aliases if a in v.properties.tags and a not in ds.aliases)

    def release_aliases(self, ds: DatasetSpec) -> None:
        """Take the dataset's aliases, and those dropped from the manifests, off versions on the server that the
        manifests do not name, or that retention lets go (they are not planned otherwise)."""
        named = {v.key for v in ds.versions} - self.retired
        aliases = (frozenset(ds.aliases) | self.dropped_aliases(ds)) - self.frozen_aliases.get(ds.key, frozenset())
        for v in sorted(self.observed.versions, key=lambda v: (v.key, v.id)):
            if v.key.dataset != ds.key or v.key in named or v.archived or not (v.properties.tags & aliases):
                continue
            after = v.properties.replace(tags=v.properties.tags - aliases)
            self.actions.append(SetProperties(v.key, v.properties, after))

    def alias_moves(self, ds: DatasetSpec) -> list[AliasMove]:
        live = [v for v in self.observed.versions if v.key.dataset == ds.key and not v.archived]
        moves = []
        for alias, version in sorted(ds.aliases.items()):
            if alias in self.frozen_aliases.get(ds.key, frozenset()):
                continue
            holders = tuple(sorted({v.key.version for v in live if alias in v.properties.tags}))
            if holders != (version,):
                moves.append(AliasMove(ds.key, alias, holders, version))
        for alias in sorted(self.dropped_aliases(ds)):
            moves.append(AliasMove(ds.key, alias, tuple(sorted({v.key.version for v in live
                                                                 if alias in v.properties.tags})), ""))
        return moves

    def plan_publish(self, spec: VersionSpec, obs: ObservedVersion) -> None:
        if spec.publish and obs.status != "published":
            self.actions.append(Publish(spec.key))
        elif not spec.publish and obs.status == "published":
            self.conflicts.append(Conflict(
                spec.key, "the manifest says publish: false but the version is published",
                "ClearML cannot unpublish a version: set publish: true, or add a new version that is not "
                "published", obs.id))


def compute_plan(
    desired: DesiredState,
    contents: Mapping[VersionKey, Content],
    observed: ObservedState,
    options: PlanOptions = PlanOptions(),
    checks: Mapping[VersionKey, VersionChecks] | None = None,
    retention: RetentionInputs | None = None,
) -> Plan:
    """The actions that make the server hold ``desired``; see the module docstring for the invariants.

    ``checks``: the results of the checks of the versions to build (what :func:`versions_to_check` names);
    ``retention``: the clock and task uses the retention policies are judged with (None: no retention)."""
    checks = checks or {}
    selected = _with_ancestors(desired, options.targets)
    kept = plan_retention(desired, observed, retention or RetentionInputs(), selected if options.targets else None)
    planner = _Planner(desired, contents, observed, checks, kept.retired)
    for spec in topological_versions(desired):
        if spec.key in selected and spec.key not in kept.retired:
            planner.plan_version(spec, desired.dataset(spec.key.dataset))
    moves: list[AliasMove] = []
    for ds in desired.datasets:
        if (ds.aliases or planner.dropped_aliases(ds)) and any(v.key in selected for v in ds.versions):
            planner.release_aliases(ds)
            moves += planner.alias_moves(ds)
    actions = aliases_last(planner.actions, desired, planner.blocked | set(planner.held))
    scope = prune_scope(desired, options)
    unmanaged = _unmanaged(desired, observed, options, actions, scope)
    if options.prune:
        actions.extend(Archive(u.version, u.version_id) for u in unmanaged if u.managed and not u.reason)
    actions.extend(retention_actions(kept))
    return Plan(
        actions=tuple(actions),
        conflicts=tuple(planner.conflicts),
        unmanaged=unmanaged,
        observed_fingerprint=observed.fingerprint or fingerprint(observed),
        targets=tuple(options.targets),
        projects=scope,
        prune=options.prune,
        drift=tuple(planner.drift),
        aliases=tuple(moves),
        builds=tuple(planner.builds),
        checks=tuple(checks[k] for k in sorted(checks, key=str)),
        held=tuple(planner.held.values()),
        retention=kept.entries,
    )


def retention_actions(kept: RetentionPlan) -> list[Action]:
    """Archives first (recording when), then re-homes (copied and read back before anything is deleted), then
    deletes, children before parents."""
    actions: list[Action] = [Archive(v.key, v.id, why) for v, why in kept.archive]
    actions += [RehomeVersion(r.version, r.version_id, r.files, r.copy_bytes, r.rewrites, r.detached, r.group,
                              r.replaced, r.frees_bytes) for r in kept.rehome]
    actions += [DeleteVersion(v.key, v.id, objects, why, whole) for v, why, objects, whole in kept.delete]
    return actions


def versions_to_check(desired: DesiredState, plan: Plan) -> tuple[VersionKey, ...]:
    """The versions of ``plan`` (planned without checks) whose checks must be evaluated: those it builds."""
    return tuple(b.version for b in plan.builds if desired.version(b.version).checks)


def aliases_last(actions: Sequence[Action], desired: DesiredState, blocked: set[VersionKey]) -> list[Action]:
    """``actions`` with every alias change split off its version's properties and moved to the end: first the
    additions (each new holder is then final, and published when the manifest says so), then the removals from
    the old holders. An alias whose new holder is blocked (a conflict) is not taken from its old holders.

    So a reader resolving an alias (``Dataset.get(dataset_tags=[alias])``) always finds a finalized version,
    whenever the apply stops.
    """
    names = {ds.key: frozenset(ds.aliases) for ds in desired.datasets if ds.aliases}
    stuck = {(ds.key, alias) for ds in desired.datasets for alias, version in ds.aliases.items()
             if VersionKey(ds.key.project, ds.key.name, version) in blocked}
    rest: list[Action] = []
    adds: list[Action] = []
    removals: list[Action] = []
    for a in actions:
        mine = names.get(a.version.dataset, frozenset()) if isinstance(a, SetProperties) and not a.alias else None
        if not mine:
            rest.append(a)
            continue
        assert isinstance(a, SetProperties)
        had, wants = a.before.tags & mine, a.after.tags & mine
        if had == wants:
            rest.append(a)
            continue
        middle = a.after.replace(tags=(a.after.tags - mine) | had)
        if middle != a.before:
            rest.append(SetProperties(a.version, a.before, middle))
        gained = wants - had
        lost = frozenset(t for t in had - wants if (a.version.dataset, t) not in stuck)
        if gained:
            added = middle.replace(tags=middle.tags | gained)
            adds.append(SetProperties(a.version, middle, added, alias=True))
            middle = added
        if lost:
            removals.append(SetProperties(a.version, middle, middle.replace(tags=middle.tags - lost), alias=True))
    return rest + adds + removals


def prune_scope(desired: DesiredState, options: PlanOptions) -> tuple[str, ...]:
    """The projects observed (and, with --prune, pruned): those the manifests declare, plus any named on purpose."""
    return tuple(sorted({ds.key.project for ds in desired.datasets} | set(options.prune_scope)))


def _unmanaged(
    desired: DesiredState, observed: ObservedState, options: PlanOptions, actions: Sequence[Action],
    scope: Sequence[str],
) -> tuple[Unmanaged, ...]:
    wanted = {v.key for v in desired.all_versions()}
    by_key = observed.by_key()
    chosen_ids = {
        chosen.id for key in wanted if (chosen := choose_observed(by_key.get(key, ()))) is not None
    }
    chosen_ids |= {a.version_id for a in actions if isinstance(a, (Restore, DiscardDraft))}
    chosen_ids |= {v.adopt for v in desired.all_versions() if v.adopt}
    kept_ids = {v.id for v in observed.versions if not v.archived and (v.id in chosen_ids or not v.managed)}
    parents_of_kept = {p for v in observed.versions if v.id in kept_ids for p in v.parent_ids}
    in_scope = set(scope)
    out: list[Unmanaged] = []
    for v in sorted(observed.versions, key=lambda v: (v.key, v.id)):
        if v.archived or v.id in chosen_ids or v.key.project not in in_scope:
            continue
        if options.targets and not _selected(v.key, options.targets):
            continue
        reason = ""
        if v.id in parents_of_kept:
            reason = "parent of a version that is kept"
        elif v.key in wanted:
            reason = "duplicate of a version the manifests name"
        out.append(Unmanaged(v.key, v.id, v.managed, reason))
    return tuple(out)
