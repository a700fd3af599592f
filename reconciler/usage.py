"""Storage use per dataset and version: what each version stores, what it reads from its ancestors, what is
archived, and what the manifests' retention policies would free. A use case over the reader (nothing here
writes).

A version's ``stored_bytes`` is the sum of the objects it lists (its chunks, file list, metadata and statistics,
as the server records their sizes), so the stored bytes of all versions of a dataset are what its storage holds
for it. ``own_bytes`` / ``inherited_bytes`` are file bytes: those in its own chunks, and those it reads from
ancestors' chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .clearml_backend import ServerReader
from .model import DatasetKey, VersionKey, VersionLayout
from .observe import list_versions, state_cache_dir
from .plan.actions import Plan


@dataclass(frozen=True, slots=True)
class VersionUsage:
    version: VersionKey
    version_id: str
    status: str
    archived: bool
    stored_bytes: int
    objects: int
    own_bytes: int | None  # None: no file list (a draft)
    inherited_bytes: int | None
    freed: bool  # retention freed some of its objects: it can no longer be downloaded


@dataclass(frozen=True, slots=True)
class DatasetUsage:
    dataset: DatasetKey
    versions: tuple[VersionUsage, ...]
    policy_frees: int | None  # bytes the manifests' retention policy would free now (None: no policy given)

    @property
    def stored_bytes(self) -> int:
        return sum(v.stored_bytes for v in self.versions)

    @property
    def archived_bytes(self) -> int:
        return sum(v.stored_bytes for v in self.versions if v.archived)


@dataclass(frozen=True, slots=True)
class UsageReport:
    datasets: tuple[DatasetUsage, ...]

    @property
    def stored_bytes(self) -> int:
        return sum(d.stored_bytes for d in self.datasets)

    @property
    def archived_bytes(self) -> int:
        return sum(d.archived_bytes for d in self.datasets)

    @property
    def policy_frees(self) -> int | None:
        known = [d.policy_frees for d in self.datasets if d.policy_frees is not None]
        return sum(known) if known else None


def usage(reader: ServerReader, projects: Iterable[str], *, plan: Plan | None, cache_root: Path | None,
          workers: int = 4) -> UsageReport:
    """The storage use of every dataset version directly under ``projects``; ``plan`` (of the manifests, when
    given) says what their retention policies would free."""
    listing = list_versions(reader, projects)
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    finals = [v for v in listing.versions if v.finalized]
    ids = [v.id for v in finals]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        layouts: Mapping[str, VersionLayout | None] = dict(zip(
            ids, pool.map(lambda v: reader.layout(v, cache_dir), finals), strict=True))
    frees: dict[DatasetKey, int] = {}
    if plan is not None:
        for key in {v.key.dataset for v in listing.versions} | {e.version.dataset for e in plan.retention}:
            frees[key] = 0
        for e in plan.retention:
            frees[e.version.dataset] = frees.get(e.version.dataset, 0) + e.freed_bytes
    by_dataset: dict[DatasetKey, list[VersionUsage]] = {}
    for v in listing.versions:
        layout = layouts.get(v.id)
        by_dataset.setdefault(v.key.dataset, []).append(VersionUsage(
            version=v.key, version_id=v.id, status=v.status, archived=v.archived,
            stored_bytes=sum(o.size for o in v.objects), objects=len(v.objects),
            own_bytes=layout.own_size if layout else None,
            inherited_bytes=layout.total_size - layout.own_size if layout else None,
            freed=bool(v.freed),
        ))
    return UsageReport(tuple(
        DatasetUsage(key, tuple(sorted(versions, key=lambda u: (u.version, u.version_id))), frees.get(key))
        for key, versions in sorted(by_dataset.items())
    ))
