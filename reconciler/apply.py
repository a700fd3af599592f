"""Execute a Plan against a server: the only code that mutates one.

Order is the plan's (parents first). A version is finalized only after every chunk of its files has been
uploaded and verified; a failure leaves it a draft that the next apply resumes. Tags, description and
metadata are applied after content.

Statistics (:class:`SetStatistics`) are computed from the local files the plan names: every file of a version's
content, inherited ones included, is local because the manifests resolve the whole lineage. When a file's bytes
are gone (a saved plan applied elsewhere), the finalized version is downloaded with the SDK and computed from
that copy. Either way the result is cached by content digest, so the same content is never decoded twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._compat import assert_never
from .clearml_backend import ClearMLBackend
from .diagnostics import ReconcileError
from .model import Content, ObservedState, VersionKey
from .plan import (
    Action,
    Archive,
    CreateVersion,
    Finalize,
    Plan,
    Publish,
    ResumeVersion,
    SetDescription,
    SetMetadata,
    SetStatistics,
    SetTags,
    SyncFiles,
    choose_observed,
    describe,
)
from .statistics import (
    Statistics,
    StatisticsCache,
    compute_statistics,
    default_statistics_cache,
    is_image,
    statistics_to_json,
    ui_histograms,
    ui_tables,
    with_local_root,
)


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    workers: int = 4
    show_progress: bool = False
    statistics_cache: StatisticsCache | None = None  # None: under the user cache directory


@dataclass(slots=True)
class ApplyResult:
    actions: int = 0
    created: list[VersionKey] = field(default_factory=list)
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    seconds: float = 0.0
    ids: dict[VersionKey, str] = field(default_factory=dict)


Report = Callable[[str], None]


def check_fresh(plan: Plan, observed: ObservedState) -> None:
    if plan.observed_fingerprint != observed.fingerprint:
        raise ReconcileError(
            "the saved plan is stale: the server changed since it was made; run 'reconcile plan' again"
        )


class _Applier:
    def __init__(self, backend: ClearMLBackend, observed: ObservedState, options: ApplyOptions, report: Report):
        self.backend, self.options, self.report = backend, options, report
        self.result = ApplyResult()
        self.open: dict[VersionKey, Any] = {}
        for key, candidates in observed.by_key().items():
            chosen = choose_observed(candidates)
            if chosen is not None:
                self.result.ids[key] = chosen.id

    def version_id(self, key: VersionKey) -> str:
        if key not in self.result.ids:
            raise ReconcileError(f"{key} is not on the server and the plan does not create it")
        return self.result.ids[key]

    def run(self, action: Action) -> None:
        match action:
            case CreateVersion(version=v, parent=p, storage=s):
                ds = self.backend.create_version(v, self.version_id(p) if p else None, s)
                self.open[v] = ds
                self.result.ids[v] = ds.id
                self.result.created.append(v)
                self.report(f"  created {v} (id {ds.id})")
            case ResumeVersion(version=v, version_id=i):
                self.open[v] = self.backend.open_draft(i)
                self.result.ids[v] = i
            case SyncFiles(version=v):
                ds = self.dataset(v)
                self.backend.sync_files(ds, upload=action.upload, remove=action.remove,
                                        add_links=action.add_links, remove_links=action.remove_links)
                if action.upload:
                    self.report(f"  uploading {len(action.upload)} files of {v} "
                                f"({action.upload_bytes} bytes, {self.options.workers} workers)")
                self.backend.upload(ds, workers=self.options.workers, total_bytes=action.upload_bytes,
                                    show_progress=self.options.show_progress)
                self.result.uploaded_files += len(action.upload)
                self.result.uploaded_bytes += action.upload_bytes
            case Finalize(version=v, content_digest=digest):
                ds = self.dataset(v)
                if ds.is_dirty():
                    self.backend.upload(ds, workers=self.options.workers, total_bytes=0,
                                        show_progress=self.options.show_progress)
                self.backend.verify_uploaded(ds)
                self.backend.set_bookkeeping(ds.id, {"content_digest": digest})
                self.backend.finalize(ds)
                self.open.pop(v, None)
            case SetStatistics(version=v, after_digest=digest):
                stats = self.statistics(action)
                self.backend.report_statistics(self.version_id(v), ui_tables(stats), ui_histograms(stats))
                self.backend.store_statistics(self.version_id(v), statistics_to_json(stats), digest)
            case SetDescription(version=v, after=after):
                self.backend.set_description(self.version_id(v), after)
            case SetMetadata(version=v, after=after):
                self.backend.set_metadata(self.version_id(v), after)
            case SetTags(version=v, after=after):
                self.backend.set_tags(self.version_id(v), after)
            case Publish(version=v):
                self.backend.publish(self.version_id(v))
            case Archive(version_id=i):
                self.backend.archive(i)
            case _:
                assert_never(action)

    def statistics(self, action: SetStatistics) -> Statistics:
        """From the cache, else from the local files, else from a downloaded copy of the version."""
        content = action.content()
        if content.digest() != action.after_digest:
            raise ReconcileError("the plan's file list does not match its content digest")
        cache = self.options.statistics_cache or default_statistics_cache()
        hit = cache.get(action.after_digest)
        if hit is not None:
            return hit
        if not _all_local(content):
            root = self.backend.local_copy(self.version_id(action.version))
            files = with_local_root(tuple(content.files.values()), root)
            content = Content({f.path: f for f in files}, content.links)
        stats = compute_statistics(content, workers=self.options.workers)
        cache.put(stats)
        return stats

    def dataset(self, key: VersionKey) -> Any:
        if key not in self.open:
            self.open[key] = self.backend.open_draft(self.version_id(key))
        return self.open[key]


def _all_local(content: Content) -> bool:
    """True when every image file's bytes are on this machine (only images are read)."""
    return all(f.local and os.path.isfile(f.local) for f in content.files.values() if is_image(f.path))


def apply_plan(
    plan: Plan,
    backend: ClearMLBackend,
    observed: ObservedState,
    options: ApplyOptions = ApplyOptions(),
    report: Report = lambda _line: None,
) -> ApplyResult:
    """Run every action in order; stop at the first failure (raised as ReconcileError)."""
    applier = _Applier(backend, observed, options, report)
    start = time.monotonic()
    total = len(plan.actions)
    for n, action in enumerate(plan.actions, 1):
        report(f"[{n}/{total}] {describe(action)}")
        t0 = time.monotonic()
        try:
            applier.run(action)
        except ReconcileError as err:
            draft = applier.result.ids.get(action.version)
            where = f" (version {draft} stays a draft; the next apply resumes it)" if draft and isinstance(
                action, (SyncFiles, Finalize)) else ""
            raise ReconcileError(f"{describe(action)}: {err}{where}") from err
        applier.result.actions += 1
        elapsed = time.monotonic() - t0
        if elapsed >= 1:
            report(f"      done in {elapsed:.1f}s")
    applier.result.seconds = time.monotonic() - start
    return applier.result
