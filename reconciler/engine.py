"""The steps every command shares: manifests -> desired contents -> observed state -> plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .clearml_backend import ClearMLBackend
from .diagnostics import Diagnostic, ReconcileError
from .manifest import load_manifests
from .model import Content, DesiredState, ObservedState, VersionKey
from .observe import complete, list_versions, observe
from .plan import Plan, PlanOptions, SourceFiles, compute_contents, compute_plan
from .sources import ResolveOptions, SourceResolver, default_cache_dir

if TYPE_CHECKING:  # report pulls in deepdiff (a fifth of a second): only the diff command pays for it
    from .report import DiffOptions, DiffReport


@dataclass(frozen=True, slots=True)
class Desired:
    state: DesiredState
    contents: Mapping[VersionKey, Content]
    hashed_files: int


def resolve_desired(paths: Sequence[Path], *, workers: int, progress: bool) -> Desired:
    """Load and validate the manifests, then resolve every version's sources into content."""
    return resolve_contents(load_manifests(paths), workers=workers, progress=progress)


def resolve_contents(state: DesiredState, *, workers: int, progress: bool) -> Desired:
    """Resolve every version's sources into content (hashing through the persistent cache)."""
    own: dict[VersionKey, SourceFiles] = {}
    problems: list[Diagnostic] = []
    with SourceResolver(ResolveOptions(workers=workers, progress=progress)) as resolver:
        for spec in state.all_versions():
            try:
                parts = resolver.resolve_all(spec.sources)
            except ReconcileError as err:  # keep going: every broken source is reported in one run
                problems.extend(err.diagnostics)
                continue
            own[spec.key] = SourceFiles(
                files=tuple(f for p in parts for f in p.files),
                links=tuple(lnk for p in parts for lnk in p.links),
            )
        hashed = resolver.hashed_files
    if problems:
        raise ReconcileError(problems)
    return Desired(state, compute_contents(state, own), hashed)


def _projects(state: DesiredState) -> list[str]:
    return sorted({ds.key.project for ds in state.datasets})


def observe_and_plan(backend: ClearMLBackend, desired: Desired, options: PlanOptions) -> tuple[ObservedState, Plan]:
    observed = observe(backend, _projects(desired.state), desired.contents, cache_root=default_cache_dir(),
                       include_managed=options.prune)
    return observed, compute_plan(desired.state, desired.contents, observed, options)


def plan_manifests(
    backend: ClearMLBackend, state: DesiredState, options: PlanOptions, *, workers: int, progress: bool
) -> tuple[Desired, ObservedState, Plan]:
    """Resolve sources while the server lists its versions (network waits overlap local work), then plan."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="observe") as pool:
        listing = pool.submit(list_versions, backend, _projects(state), include_managed=options.prune)
        try:
            desired = resolve_contents(state, workers=workers, progress=progress)
        except BaseException:
            listing.cancel()
            raise
        listed = listing.result()
    observed = complete(backend, listed, desired.contents, cache_root=default_cache_dir())
    return desired, observed, compute_plan(state, desired.contents, observed, options)


def _diff_options(workers: int) -> DiffOptions:
    from .report import DiffOptions
    from .statistics import default_statistics_cache

    return DiffOptions(cache_root=default_cache_dir(), statistics=default_statistics_cache(), workers=workers)


def desired_diff(backend: ClearMLBackend, desired: Desired, *, workers: int) -> DiffReport:
    """The manifests (after) against what the server holds (before)."""
    from .report import diff_desired

    projects = sorted({ds.key.project for ds in desired.state.datasets})
    observed = observe(backend, projects, desired.contents, cache_root=default_cache_dir())
    return diff_desired(backend, desired.state, desired.contents, observed, _diff_options(workers))


def live_diff(backend: ClearMLBackend, before: str, after: str, *, workers: int) -> DiffReport:
    """Two live versions, each ``project/name@version`` or a dataset id."""
    from .report import diff_live

    return diff_live(backend, before, after, _diff_options(workers))
