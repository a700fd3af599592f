"""One pipeline for every command: manifests -> desired contents -> observed state -> plan, each computed once.

A :class:`Run` holds one command's inputs and memoises each step; the use cases (:func:`plan`, :func:`apply`,
:func:`diff_manifests`, :func:`diff_versions`) are functions over it, so plan, apply, a saved plan and diff
cannot wire the steps differently. The CLI parses, builds a Run, calls a use case and renders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from .clearml_backend import Backend, LockLease, ServerReader
from .diagnostics import Diagnostic, ReconcileError
from .events import Emit
from .gcpause import gc_paused
from .manifest import load_manifests
from .model import Content, DeferredTuple, DesiredState, ObservedState, ObservedVersion, VersionKey, content_digest
from .observe import Listing, complete, list_versions, observe, state_cache_dir, with_reads
from .plan.actions import Finalize, Plan, PlanOptions
from .plan.contents import SourceFiles, compute_contents, content_memos
from .plan.planner import compute_plan, prune_scope, unknown_targets, versions_to_check
from .retention import RetentionInputs, plan_retention
from .sources import (
    ResolveOptions,
    SourceContent,
    SourceResolver,
    default_cache_dir,
    forget_contents,
    remember_contents,
    remembered_contents,
)

if TYPE_CHECKING:  # imported where used: plan loads neither the writer nor the reports' statistics and images
    from .apply import ApplyOptions, ApplyResult
    from .checkout import AgentSources
    from .checks.results import VersionChecks
    from .clearml_backend.queues import Queue
    from .dispatch import QueueOptions
    from .report import DiffReport
    from .usage import UsageReport


def resolve_sources(state: DesiredState, *, workers: int, progress: bool) -> dict[VersionKey, SourceFiles]:
    """Every version's own sources as files and links (hashing through the persistent cache)."""
    own: dict[VersionKey, SourceFiles] = {}
    problems: list[Diagnostic] = []
    with SourceResolver(ResolveOptions(workers=workers, progress=progress)) as resolver:
        for spec in state.all_versions():
            try:
                parts = resolver.resolve_all(spec.sources)
            except ReconcileError as err:  # keep going: every broken source is reported in one run
                problems.extend(err.diagnostics)
                continue
            own[spec.key] = source_files(parts)
    if problems:
        raise ReconcileError(problems)
    return own


def source_files(parts: Sequence[SourceContent]) -> SourceFiles:
    """A version's sources together; files are not built while the sources have not built theirs."""
    memos = [p.memo for p in parts]
    memo = None if None in memos else hashlib.sha256("\0".join(["sources-1", *map(str, memos)]).encode()).hexdigest()
    files = parts[0].files if len(parts) == 1 else DeferredTuple(lambda: tuple(f for p in parts for f in p.files))
    return SourceFiles(files=files, links=tuple(lnk for p in parts for lnk in p.links), memo=memo)


def desired_contents(paths: Sequence[Path], *, workers: int, progress: bool) -> dict[VersionKey, Content]:
    """Manifests without adopted versions -> every version's content (no server needed)."""
    state = load_manifests(paths)
    return compute_contents(state, resolve_sources(state, workers=workers, progress=progress))


def adopted_contents(reader: ServerReader, state: DesiredState, cache_root: Path) -> dict[VersionKey, Content]:
    """The content of every version the manifests adopt (``id:``), as the server holds it (a version the reader
    listed already is read without another listing call)."""
    out: dict[VersionKey, Content] = {}
    problems = []
    cache_dir = state_cache_dir(reader.api_host, cache_root)
    for spec in state.all_versions():
        if spec.adopt is None:
            continue
        content = reader.content(spec.adopt, cache_dir)
        if content is None:
            problems.append(Diagnostic(f"{spec.key} adopts version {spec.adopt}, which is not on the server "
                                       "(or has no file list)", spec.span))
            continue
        out[spec.key] = content
    if problems:
        raise ReconcileError(problems)
    return out


def check_targets(state: DesiredState, targets: tuple[str, ...]) -> None:
    """Every ``--target`` must name a manifest dataset or version (a typo must not plan nothing and pass)."""
    unknown = unknown_targets(state, targets)
    if unknown:
        raise ReconcileError([
            Diagnostic(f"--target {t!r} matches no dataset or version in the manifests"
                       + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""))
            for t, close in unknown.items()
        ])


def check_offline(state: DesiredState, targets: tuple[str, ...], *, workers: int, progress: bool
                  ) -> tuple[list[VersionChecks], list[VersionKey]]:
    """The checks of every version of ``state`` (or of ``targets``) on the files its sources give, without a
    server: the results, and the versions not checked because they stand on an adopted version (whose files only
    the server has)."""
    from .checks.evaluate import check_versions

    check_targets(state, targets)
    own = resolve_sources(state, workers=workers, progress=progress)
    contents = compute_contents(state, own)
    keys, skipped = [], []
    for spec in state.all_versions():
        if not spec.checks or (targets and not any(t in (str(spec.key), str(spec.key.dataset)) for t in targets)):
            continue
        if any(s.adopt for s in state.lineage(spec.key)):
            skipped.append(spec.key)
        else:
            keys.append(spec.key)
    results = check_versions(state, contents, keys, workers=workers)
    return [results[k] for k in keys], skipped


class Run:
    """One command's pipeline over ``state`` (already loaded manifests) and a server ``reader``."""

    def __init__(self, reader: ServerReader, state: DesiredState, options: PlanOptions, *, workers: int,
                 progress: bool, check_storage: str = ""):
        check_targets(state, options.targets)
        self.reader, self.state, self.options = reader, state, options
        self.workers, self.progress, self.check_storage = workers, progress, check_storage
        self.cache_root: Path = default_cache_dir()
        self._own: dict[VersionKey, SourceFiles] | None = None
        self._listing: Listing | None = None
        self._contents: Mapping[VersionKey, Content] | None = None
        self._observed: ObservedState | None = None
        self._plan: Plan | None = None
        self._desired: DesiredState | None = None
        self._memos: dict[str, VersionKey] = {}  # contents to remember once planned
        self._known_memos: dict[VersionKey, str] = {}  # contents taken from remembered summaries
        self._distrust_memos = False

    @property
    def projects(self) -> tuple[str, ...]:
        return prune_scope(self.state, self.options)

    def _sources(self) -> dict[VersionKey, SourceFiles]:
        if self._own is None:
            self._own = resolve_sources(self.state, workers=self.workers, progress=self.progress)
        return self._own

    def _listed(self) -> Listing:
        """The server's versions; the first time, sources are resolved while the server lists them."""
        if self._listing is None:
            if self._own is None:
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="observe") as pool:
                    listing = pool.submit(list_versions, self.reader, self.projects)
                    try:
                        self._sources()
                    except BaseException:
                        listing.cancel()
                        raise
                    self._listing = listing.result()
            else:
                self._listing = list_versions(self.reader, self.projects)
        return self._listing

    def contents(self) -> Mapping[VersionKey, Content]:
        """Every manifest version's content (adopted versions: what the server holds)."""
        if self._contents is None:
            adopted = {}
            if any(v.adopt for v in self.state.all_versions()):
                self._listed()  # first: the adopted versions among those listed cost no look-up
                adopted = adopted_contents(self.reader, self.state, self.cache_root)
            own = self._sources()
            memos = content_memos(self.state, own)
            # unchanged sources: no per-file work beyond the walk (unless a remembered summary proved wrong)
            known = {} if self._distrust_memos else remembered_contents(memos)
            self._contents = compute_contents(self.state, own, adopted, known)
            self._memos = {memos[k]: k for k in memos.keys() - known.keys()}
            self._known_memos = {k: memos[k] for k in known}
        return self._contents

    def observed(self) -> ObservedState:
        if self._observed is None:
            listed = self._listed()
            self._observed = complete(self.reader, listed, self.contents(), cache_root=self.cache_root,
                                      check_storage=self.check_storage)
        return self._observed

    def refresh(self) -> None:
        """Forget what was observed and planned (apply re-observes once it holds the lock)."""
        self._listing = None
        self._contents = None
        self._observed = None
        self._plan = None
        self._desired = None

    def desired_state(self) -> DesiredState:
        """The manifests' state with what depends on the contents filled in (the cards' size categories)."""
        if self._desired is None:
            from .manifest.card import with_card_sizes

            self._desired = with_card_sizes(self.state, {k: c.file_count for k, c in self.contents().items()})
        return self._desired

    def retention_inputs(self) -> RetentionInputs | None:
        """The clock and the tasks that read the versions under a retention policy; the file lists retention
        needs are read into the observed state (a few rounds: versions kept because others read them are
        readers in turn). None when no dataset has a policy."""
        if not any(ds.retention for ds in self.state.datasets):
            return None
        observed = self.observed()
        policed = {ds.key for ds in self.state.datasets if ds.retention}
        ids = [v.id for v in observed.versions if v.key.dataset in policed and v.managed and v.finalized]
        inputs = RetentionInputs(datetime.now(timezone.utc), MappingProxyType(self.reader.tasks_using(ids)))
        for _ in range(8):
            unread = plan_retention(self.state, observed, inputs).unread
            if not unread:
                break
            observed = with_reads(self.reader, observed, self._listed(), unread, cache_root=self.cache_root)
            self._observed = observed
        return inputs

    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = self._planned()
        return self._plan

    def _planned(self) -> Plan:
        retention = self.retention_inputs()
        plan = self._compute(retention)
        wrong = self._wrong_summaries(plan)
        if wrong:  # a corrupt hash-cache row: drop it and plan again from the files' hashes
            forget_contents(wrong)
            self._distrust_memos = True
            self._contents = self._observed = self._desired = None
            retention = self.retention_inputs()
            plan = self._compute(retention)
        to_check = versions_to_check(self.state, plan)
        if to_check:  # planned again with the results: failing versions are held
            from .checks.evaluate import check_versions

            results = check_versions(self.state, self.contents(), to_check, workers=self.workers)
            plan = self._compute(retention, results)
        contents = self.contents()
        remember_contents({memo: contents[key].summarize() for memo, key in self._memos.items()})
        self._memos = {}
        return plan

    def _compute(self, retention: RetentionInputs | None, checks: Mapping[VersionKey, VersionChecks] | None = None
                 ) -> Plan:
        """The plan; the contents it builds, their deltas and digests (an object per file, none cyclic) without
        the collector scanning them over and over. (The checks, which decode images, run outside the pause.)"""
        with gc_paused():
            return compute_plan(self.desired_state(), self.contents(), self.observed(), self.options, checks,
                                retention)

    def _wrong_summaries(self, plan: Plan) -> list[str]:
        """Memos of remembered content summaries that the files contradict, among the versions the plan builds
        (their files were read to plan the upload, so checking costs one digest each)."""
        contents = self.contents()
        wrong = []
        for a in plan.actions:
            if isinstance(a, Finalize) and a.version in self._known_memos:
                c = contents[a.version]
                if content_digest(c.files, c.links) != a.content_digest:
                    wrong.append(self._known_memos[a.version])
        return wrong


# --- use cases -------------------------------------------------------------------------------------------------


def observe_saved(reader: ServerReader, plan: Plan) -> ObservedState:
    """What a saved plan was computed against, observed again (same projects) to check it is not stale."""
    return observe(reader, plan.projects, {}, cache_root=default_cache_dir())


def plan(run: Run, backend: Backend, *, queue: QueueOptions | None = None) -> Plan:
    """``run``'s plan. With ``queue``, what ``apply --queue`` checks first: an agent listens on it (before
    planning) and the agents can see the sources of the versions the plan builds."""
    _queue_listened(backend, queue)
    the_plan = run.plan()
    if not the_plan.conflicts:
        _agents_see(the_plan, queue)
    return the_plan


def _queue_listened(backend: Backend, queue: QueueOptions | None) -> Queue | None:
    """The queue, when some agent listens on it (before anything is planned or written); None without one."""
    if queue is None:
        return None
    from .dispatch import check_queue

    return check_queue(backend, queue)


def _agents_see(the_plan: Plan, queue: QueueOptions | None) -> AgentSources | None:
    """The sources of the versions ``the_plan`` builds, as the queue's agents see them (one line per source they
    cannot see); None without a queue or anything to build."""
    if queue is None or not the_plan.has_changes:
        return None
    from .dispatch import check_sources

    return check_sources(the_plan, queue)


def apply(
    backend: Backend,
    *,
    run: Run | None,
    saved: Plan | None,
    options: ApplyOptions,
    lock_owner: str,
    lock_wait: float,
    lock_ttl: float = 120.0,
    show: Callable[[Plan], None],
    confirm: Callable[[Plan], None],
    emit: Emit,
    notice: Callable[[str], None],
    queue: QueueOptions | None = None,
) -> ApplyResult | None:
    """Take the lock, (re)observe, show the plan, confirm, apply. None when there is nothing to do.

    A saved plan is refused when the server changed since it was made; a live plan is computed under the lock.
    With ``queue``, the versions to build are built by agents on that queue (:mod:`reconciler.dispatch`): that
    an agent listens is checked before anything else, that agents can see the sources before confirming.
    """
    from .apply import apply_plan, check_fresh

    assert (run is None) != (saved is None)
    target = _queue_listened(backend, queue)
    scope = list(saved.projects if saved is not None else run.projects)  # type: ignore[union-attr]
    with LockLease(backend.api, lock_owner, scope, wait=lock_wait, ttl=lock_ttl, notice=notice) as lease:
        if saved is not None:
            observed = observe_saved(backend.reader, saved)
            check_fresh(saved, observed)
            the_plan, contents = saved, {}  # type: Plan, Mapping[VersionKey, Content]
        else:
            assert run is not None
            run.refresh()
            the_plan, observed, contents = run.plan(), run.observed(), run.contents()
        show(the_plan)
        if the_plan.conflicts:
            n = len(the_plan.conflicts)
            raise ReconcileError(f"{n} conflict{'' if n == 1 else 's'}: nothing was applied")
        if not the_plan.has_changes:
            return None
        seen = _agents_see(the_plan, queue)
        confirm(the_plan)
        backend.writer.state_cache = state_cache_dir(backend.api.cfg.api_host, default_cache_dir())
        if queue is not None:
            from .dispatch import apply_queued

            assert target is not None and seen is not None
            return apply_queued(the_plan, backend, observed, queue=target, seen=seen, held=lease.held,
                                options=queue, apply_options=options, emit=emit)
        return apply_plan(the_plan, backend.writer, observed, options, emit=emit, local_contents=contents)


def managed_drafts(reader: ServerReader, projects: tuple[str, ...]) -> tuple[ObservedVersion, ...]:
    """The drafts this tool left (interrupted applies) in ``projects``, or anywhere when none are given."""
    versions = list_versions(reader, projects).versions if projects else reader.managed_versions()
    drafts = (v for v in versions if v.managed and not v.finalized and not v.archived)
    return tuple(sorted(drafts, key=lambda v: (v.key, v.id)))


def discard_drafts(backend: Backend, drafts: tuple[ObservedVersion, ...], *, lock_owner: str, lock_wait: float,
                   report: Callable[[str], None], notice: Callable[[str], None]) -> int:
    """Delete ``drafts`` (and their uploaded chunks) under the apply lock; how many were deleted."""
    with LockLease(backend.api, lock_owner, sorted({d.key.project for d in drafts}), wait=lock_wait, notice=notice):
        for draft in drafts:
            backend.writer.delete_draft(draft.id)
            report(f"discarded draft {draft.key} (id {draft.id})")
    return len(drafts)


def storage_usage(reader: ServerReader, state: DesiredState | None, projects: Sequence[str], *, workers: int,
                  progress: bool) -> UsageReport:
    """The storage use of the versions in ``projects`` and in the manifests' projects; with manifests (``state``),
    what their retention policies would free (their plan says)."""
    from .usage import usage

    scope = set(projects)
    plan = None
    if state is not None:
        scope |= {ds.key.project for ds in state.datasets}
        plan = Run(reader, state, PlanOptions(), workers=workers, progress=progress).plan()
    return usage(reader, sorted(scope), plan=plan, cache_root=default_cache_dir(), workers=workers)


def diff_manifests(run: Run) -> DiffReport:
    """The manifests (after) against what the server holds (before)."""
    from .report import diff_desired

    return diff_desired(run.reader, run.desired_state(), run.contents(), run.observed(), _diff_options(run.workers))


def diff_versions(reader: ServerReader, before: str, after: str, *, workers: int) -> DiffReport:
    """Two live versions, each ``project/name@version`` or a dataset id."""
    from .report import diff_live

    return diff_live(reader, before, after, _diff_options(workers))


def _diff_options(workers: int):  # type: ignore[no-untyped-def]
    from .report import DiffOptions
    from .statistics import default_statistics_cache

    return DiffOptions(cache_root=default_cache_dir(), statistics=default_statistics_cache(), workers=workers)
