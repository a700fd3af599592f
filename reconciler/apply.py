"""Execute a Plan against a server through the backend's writer (dispatch and agent-step reuse it for agents).

Order is the plan's (parents first, each version's steps in the order the real server accepts). Each version
is a chain of steps; a failed step stops that version and every version built on it, while independent
versions go on; the run then ends with one error listing what failed (exit 1). A version is finalized only when
the content this run built has the plan's digest, every file's bytes hashed as uploaded matched the plan, and
every chunk is on the server. An alias leaves its old holder only when its new holder got it (the plan moves
aliases last). A signal or a lost lock stops everything at once.

What happens is told as events (:mod:`reconciler.events`: each action started, done or failed, each chunk
uploaded and the upload's bytes as they go out, finalized, published, ...) to the caller's sink; the views
(:mod:`reconciler.render.events`) make text, progress or JSON of them.

Statistics of a version are computed from local files where the plan's sources still have them, else from
the version's files fetched from the server; either way cached by content digest.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from ._compat import assert_never
from .checks.evaluate import evaluate_checks
from .checks.results import VersionChecks
from .checks.rules import BYTE_RULES, CheckInput
from .clearml_backend import Interrupted, LeaseLost, Rehomed
from .clearml_backend.draft import Draft
from .clearml_backend.upload import FileChanged, UploadOptions
from .clearml_backend.upload import Progress as UploadProgressSink
from .describe import describe
from .diagnostics import Diagnostic, ReconcileError
from .events import (
    ActionDone,
    ActionFailed,
    ActionStarted,
    AliasKept,
    AliasMoved,
    Archived,
    ChunksDiscarded,
    ChunkUploaded,
    Deleted,
    DeleteSkipped,
    DraftDiscarded,
    Emit,
    Finalized,
    Published,
    RehomeStarted,
    Restored,
    StatisticsFetch,
    UploadDone,
    UploadProgress,
    UploadStarted,
    VersionRehomed,
    VersionSkipped,
    VersionStarted,
    ignore,
)
from .model import Content, FileEntry, ObservedState, Properties, StoredFile, StoredObject, VersionKey, statistics_key
from .plan.actions import (
    Action,
    Archive,
    CreateVersion,
    DeleteVersion,
    DiscardDraft,
    Finalize,
    Plan,
    Publish,
    RehomeVersion,
    Restore,
    ResumeVersion,
    SetChecks,
    SetProperties,
    SetStatistics,
    SyncFiles,
)
from .plan.observed import choose_observed
from .statistics import Statistics, StatisticsCache, default_statistics_cache, statistics_for
from .wording import counted

RATE_WINDOW_S = 10.0  # an upload's rate is measured over this many seconds


class Writer(Protocol):
    """What apply needs from a server (``clearml_backend.ServerWriter``; an in-memory one in tests)."""

    def create_draft(self, key: VersionKey, parent_ids: Sequence[str], storage: str | None) -> str: ...
    def open_draft(self, key: VersionKey, version_id: str, parent_ids: Sequence[str], storage: str | None
                   ) -> Draft: ...
    def discard_chunks(self, version_id: str) -> int: ...
    def upload_files(self, draft: Draft, files: Sequence[FileEntry], options: UploadOptions,
                     progress: UploadProgressSink | None = None) -> None: ...
    def set_properties(self, key: VersionKey, version_id: str, before: Properties, after: Properties,
                       aliases: Collection[str] = ()) -> None: ...
    def set_statistics(self, key: VersionKey, version_id: str, stats: Statistics, digest: str, *,
                       plots: bool) -> None: ...
    def set_checks(self, key: VersionKey, version_id: str, checks: VersionChecks) -> None: ...
    def finalize(self, draft: Draft, content_digest: str) -> None: ...
    def publish(self, key: VersionKey, version_id: str) -> None: ...
    def archive(self, key: VersionKey, version_id: str) -> None: ...
    def expire(self, key: VersionKey, version_id: str, at: str) -> None: ...
    def delete_version(self, key: VersionKey, version_id: str, objects: Sequence[StoredObject], *,
                       whole: bool = True) -> None: ...
    def delete_draft(self, version_id: str) -> None: ...
    def restore(self, key: VersionKey, version_id: str, system_tags: Sequence[str] = ()) -> None: ...
    def rehome(self, key: VersionKey, version_id: str, rewrites: Sequence[tuple[VersionKey, str]],
               group: Sequence[str], *, workers: int = 4) -> Rehomed: ...
    def version_content(self, version_id: str) -> tuple[Content, tuple[StoredFile, ...]]: ...
    def fetch_files(self, files: Sequence[StoredFile], dest: Path) -> dict[str, Path]: ...


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    workers: int = 4
    statistics_cache: StatisticsCache | None = None  # None: under the user cache directory
    forget_hashes: Callable[[Sequence[str]], None] | None = None  # told of files whose bytes did not match


@dataclass(slots=True)
class ApplyResult:
    actions: int = 0
    created: list[VersionKey] = field(default_factory=list)
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    seconds: float = 0.0
    ids: dict[VersionKey, str] = field(default_factory=dict)
    failed: dict[VersionKey, str] = field(default_factory=dict)
    skipped: list[VersionKey] = field(default_factory=list)
    deleted_versions: int = 0
    freed_bytes: int = 0


class ApplyFailed(ReconcileError):
    """Some versions could not be applied; the others were. One line per failure, in the order they happened."""

    def __init__(self, lines: Sequence[str]):
        super().__init__([Diagnostic(line) for line in lines])
        self.diagnostics = tuple(Diagnostic(line) for line in lines)
        self.args = ("\n".join(str(d) for d in self.diagnostics),)

    def __str__(self) -> str:
        return str(self.args[0])


def check_fresh(plan: Plan, observed: ObservedState) -> None:
    if plan.observed_fingerprint != observed.fingerprint:
        raise ReconcileError(
            "the saved plan is stale: the server changed since it was made; run 'reconcile plan' again"
        )


class _Applier:
    def __init__(self, writer: Writer, observed: ObservedState, options: ApplyOptions, emit: Emit,
                 local_contents: Mapping[VersionKey, Content]):
        self.writer, self.options, self.emit = writer, options, emit
        self.local_contents = local_contents
        self.result = ApplyResult()
        self.drafts: dict[VersionKey, Draft] = {}
        self.parents: dict[VersionKey, tuple[VersionKey, ...]] = {}
        self.statuses: dict[VersionKey, str] = {}
        for key, candidates in observed.by_key().items():
            chosen = choose_observed(candidates)
            if chosen is not None:
                self.result.ids[key] = chosen.id
                self.statuses[key] = chosen.status

    def version_id(self, key: VersionKey) -> str:
        if key not in self.result.ids:
            raise ReconcileError(f"{key} is not on the server and the plan does not create it")
        return self.result.ids[key]

    def run(self, action: Action) -> None:
        match action:
            case CreateVersion(version=v, parents=ps, storage=s):
                parent_ids = [self.version_id(p) for p in ps]
                version_id = self.writer.create_draft(v, parent_ids, s)
                self.result.ids[v] = version_id
                self.result.created.append(v)
                self.statuses[v] = "created"
                self.drafts[v] = self.writer.open_draft(v, version_id, parent_ids, s)
                self.emit(VersionStarted(v, version_id))
            case ResumeVersion(version=v, version_id=i):
                self.result.ids[v] = i
                self.statuses[v] = "created"
                discarded = self.writer.discard_chunks(i)
                if discarded:
                    self.emit(ChunksDiscarded(v, discarded))
                parent_ids = [self.version_id(p) for p in self.parents.get(v, ())]
                self.drafts[v] = self.writer.open_draft(v, i, parent_ids, None)
                self.emit(VersionStarted(v, i, resumed=True))
            case Restore(version=v, version_id=i, system_tags=tags):
                self.writer.restore(v, i, tags)
                self.result.ids[v] = i
                self.emit(Restored(v, i))
            case DiscardDraft(version_id=i):
                self.writer.delete_draft(i)
                self.emit(DraftDiscarded(action.version, i))
            case SyncFiles(version=v):
                draft = self.drafts[v]
                draft.apply_delta(remove=action.remove, remove_links=action.remove_links,
                                  add_links=action.add_links, modified=len(action.modified),
                                  added=len(action.upload) + len(action.add_links) - len(action.modified),
                                  removed=len(action.remove) + len(action.remove_links) - len(action.modified),
                                  change_size=action.upload_bytes)
                if action.upload:
                    self.emit(UploadStarted(v, len(action.upload), action.upload_bytes, self.options.workers))
                chunk = action.chunk_size_mb << 20 if action.chunk_size_mb else None
                tracker = UploadTracker(v, len(action.upload), action.upload_bytes, self.emit)
                self.writer.upload_files(draft, action.upload,
                                         UploadOptions(workers=self.options.workers, chunk_bytes=chunk,
                                                       compression=action.compression),
                                         progress=tracker)
                if action.upload:
                    self.emit(tracker.done())
                self.result.uploaded_files += len(action.upload)
                self.result.uploaded_bytes += action.upload_bytes
            case SetStatistics(version=v):
                self.set_statistics(action)
            case SetChecks(version=v):
                self.set_checks(action)
            case SetProperties(version=v, before=b, after=a, alias=alias):
                self.writer.set_properties(v, self.version_id(v), b, a, aliases=a.tags - b.tags if alias else ())
                if alias:
                    self.emit(AliasMoved(v, tuple(sorted(a.tags - b.tags)), tuple(sorted(b.tags - a.tags))))
            case Finalize(version=v, content_digest=digest):
                draft = self.drafts[v]
                built = draft.digest()
                if built != digest:
                    raise ReconcileError(f"the content this run built for {v} does not match the plan "
                                         f"({built[:12]} != {digest[:12]}); nothing was finalized")
                self.writer.finalize(draft, digest)
                self.statuses[v] = "completed"
                self.drafts.pop(v, None)
                self.emit(Finalized(v, self.version_id(v), digest))
            case Publish(version=v):
                self.writer.publish(v, self.version_id(v))
                self.statuses[v] = "published"
                self.emit(Published(v, self.version_id(v)))
            case Archive(version=v, version_id=i, retention=""):
                self.writer.archive(v, i)
                self.emit(Archived(v, i))
            case Archive(version=v, version_id=i):
                at = datetime.now(timezone.utc).isoformat(timespec="seconds")
                self.writer.expire(v, i, at)
                self.emit(Archived(v, i, at))
            case RehomeVersion(version=v, version_id=i):
                self.emit(RehomeStarted(v, i, action.files, action.copy_bytes))
                done = self.writer.rehome(v, i, action.rewrites, action.group, workers=self.options.workers)
                self.result.freed_bytes += action.freed_bytes
                self.emit(VersionRehomed(v, i, done.files, done.file_bytes, done.stored_bytes, done.rewritten))
            case DeleteVersion(version=v, version_id=i, objects=objects, whole=whole):
                self.writer.delete_version(v, i, objects, whole=whole)
                self.result.deleted_versions += 1 if whole else 0
                self.result.freed_bytes += action.freed_bytes
                self.emit(Deleted(v, i, len(objects), action.freed_bytes, whole))
            case _:
                assert_never(action)

    def set_statistics(self, action: SetStatistics) -> None:
        key = action.version
        stats = self.statistics(key, action.after_digest, action.splits)
        self.writer.set_statistics(key, self.version_id(key), stats, action.after_digest, plots=action.plots)

    def statistics(self, key: VersionKey, digest: str, splits: Mapping[str, tuple[str, ...]]) -> Statistics:
        """From the cache, else from local files, else from the version's files fetched from the server.
        ``digest``: the statistics key of the version's content and its declared ``splits``."""
        cache = self.options.statistics_cache or default_statistics_cache()
        hit = cache.get(digest)
        if hit is not None:
            return hit
        content, stored = self.content_of(key)
        if statistics_key(content.digest(), splits) != digest:
            raise ReconcileError(f"the content of {key} on the server does not match the plan's statistics")

        def fetch(paths: Sequence[str], dest: Path) -> Mapping[str, Path]:
            wanted = set(paths)
            return self.writer.fetch_files([f for f in stored if f.path in wanted], dest)

        here = Content(self.with_local_copies(key, content), content.links)
        return statistics_for(here, splits, cache=cache, fetch=fetch, workers=self.options.workers,
                              fetching=lambda n: self.emit(StatisticsFetch(key, n)))

    def with_local_copies(self, key: VersionKey, content: Content) -> dict[str, FileEntry]:
        """The files of ``content``, each with a local copy where this run uploaded it or the plan's sources
        have it (same path and hash)."""
        local = self.local_contents.get(key)
        by_hash = {} if local is None else {(f.path, f.sha256): f.local for f in local.files.values() if f.local}
        return {p: FileEntry(f.path, f.size, f.sha256, f.local or by_hash.get((f.path, f.sha256)))
                for p, f in content.files.items()}

    def set_checks(self, action: SetChecks) -> None:
        """Evaluate again the checks that read bytes, on the bytes uploaded; store every result (an artifact and
        a UI table); an error-level failure then stops the version before it is finalized."""
        key = action.version
        checks = action.checks
        if any(s.rule in BYTE_RULES for s in action.specs):
            content, _ = self.content_of(key)
            here = Content(self.with_local_copies(key, content), content.links)
            checks = evaluate_checks(action.specs, CheckInput(key, here, workers=self.options.workers),
                                     keep=action.checks.results, rules=BYTE_RULES)
        self.writer.set_checks(key, self.version_id(key), checks)
        if checks.failed:
            raise ReconcileError([Diagnostic(f"check {r.name!r} ({r.rule}) failed on the bytes uploaded: "
                                             f"{r.message}; nothing was finalized", r.span) for r in checks.failed])

    def content_of(self, key: VersionKey) -> tuple[Content, Sequence[StoredFile]]:
        """The version's content (with local paths of files this run uploaded) and where its files' bytes are."""
        draft = self.drafts.get(key)
        if draft is not None:
            return draft.content(), draft.stored_files()
        return self.writer.version_content(self.version_id(key))


def apply_plan(
    plan: Plan,
    writer: Writer,
    observed: ObservedState,
    options: ApplyOptions = ApplyOptions(),
    emit: Emit = ignore,
    local_contents: Mapping[VersionKey, Content] | None = None,
    known_ids: Mapping[VersionKey, str] | None = None,
) -> ApplyResult:
    """Run every action in order (``known_ids``: versions made since ``observed``). A failed version stops its
    own chain and its descendants' (the others go on);
    :class:`ApplyFailed` at the end names each. A signal or a lost lock stops the run at once."""
    applier = _Applier(writer, observed, options, emit, local_contents or {})
    applier.result.ids.update(known_ids or {})  # versions made since ``observed`` (by agents' steps)
    for a in plan.actions:
        if isinstance(a, (CreateVersion, ResumeVersion)):
            applier.parents[a.version] = a.parents
    blocked: dict[VersionKey, str] = {}
    unhomed: dict[str, VersionKey] = {}  # ids whose deletion waited for a re-home that failed
    unplaced: set[str] = set()  # aliases whose new holder did not get them: their old holders keep them
    start = time.monotonic()
    total = len(plan.actions)
    for n, action in enumerate(plan.actions, 1):
        v = action.version
        parent = next((p for p in applier.parents.get(v, ()) if p in blocked), None)  # a failed one
        if isinstance(action, SetProperties) and action.alias:
            gained, lost = action.after.tags - action.before.tags, action.before.tags - action.after.tags
            if v in blocked or parent is not None:
                unplaced |= gained
            elif lost & unplaced:
                emit(AliasKept(n, total, v, tuple(sorted(lost & unplaced))))
                continue
        if v in blocked:
            continue
        if isinstance(action, DeleteVersion) and action.version_id in unhomed:
            blocked[v] = f"the re-home of {unhomed[action.version_id]} failed"
            applier.result.skipped.append(v)
            emit(DeleteSkipped(n, total, v, describe(action), unhomed[action.version_id]))
            continue
        if parent is not None:
            blocked[v] = f"its parent {parent} failed"
            applier.result.skipped.append(v)
            emit(VersionSkipped(n, total, v, parent))
            continue
        kind = action_kind(action)
        emit(ActionStarted(n, total, v, kind, describe(action)))
        t0 = time.monotonic()
        try:
            applier.run(action)
        except (Interrupted, LeaseLost):
            raise
        except ReconcileError as err:
            if isinstance(err, FileChanged) and options.forget_hashes is not None:
                options.forget_hashes([err.local])
            left = ""
            if v in applier.drafts or isinstance(action, (CreateVersion, ResumeVersion, SyncFiles, Finalize)):
                draft = applier.result.ids.get(v)
                if draft and applier.statuses.get(v) == "created":
                    left = draft
            if isinstance(action, SetProperties) and action.alias:
                unplaced |= action.after.tags - action.before.tags
            if isinstance(action, RehomeVersion):
                unhomed.update(dict.fromkeys(action.detached, v))
            failed = ActionFailed(n, total, v, kind, describe(action), _message(err), left)
            blocked[v] = applier.result.failed[v] = failure_line(failed)
            emit(failed)
            continue
        applier.result.actions += 1
        emit(ActionDone(n, total, v, kind, time.monotonic() - t0))
    applier.result.seconds = time.monotonic() - start
    if applier.result.failed:
        lines = list(applier.result.failed.values())
        if applier.result.skipped:
            lines.append(f"not applied because a parent failed: {', '.join(str(k) for k in applier.result.skipped)}")
        if len(lines) > 1:  # one failure is its own one line
            lines.append(f"apply incomplete: {counted(len(applier.result.failed), 'version')} failed, "
                         f"{counted(applier.result.actions, 'action')} applied; fix the cause and run apply again")
        raise ApplyFailed(lines)
    return applier.result


def action_kind(action: Action) -> str:
    """The action's kind as events name it: ``CreateVersion`` -> ``create_version``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(action).__name__).lower()


def failure_line(e: ActionFailed) -> str:
    """The error line of a failed action (the version's line in :class:`ApplyFailed`)."""
    where = f" (version {e.draft_id} stays a draft; the next apply resumes it)" if e.draft_id else ""
    return f"{e.description}: {e.cause}{where}"


class UploadTracker:
    """The writer's upload progress of one version turned into events: bytes as chunks go out (from several
    threads), each chunk once it is stored; the rate over the last :data:`RATE_WINDOW_S` seconds."""

    def __init__(self, version: VersionKey, files: int, total_bytes: int, emit: Emit,
                 clock: Callable[[], float] = time.monotonic):
        self.version, self.total_files, self.total_bytes, self.emit = version, files, total_bytes, emit
        self.clock = clock
        self.files = 0
        self.bytes = 0
        self.started = clock()
        self._samples: deque[tuple[float, int]] = deque()  # (when, bytes) since the first bytes went out
        self._lock = threading.Lock()

    def __call__(self, files: int, nbytes: int) -> None:
        """``files`` (whole chunks only) and ``nbytes`` of the sources more are on the server."""
        with self._lock:
            now = self.clock()
            self.files += files
            self.bytes = min(self.total_bytes, self.bytes + nbytes)
            self._samples.append((now, self.bytes))  # the first: from when the first bytes were out
            while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW_S:
                self._samples.popleft()
            then, before = self._samples[0]
            rate = (self.bytes - before) / (now - then) if now - then >= 0.5 else 0.0
            event = UploadProgress(self.version, self.files, self.bytes, self.total_files, self.total_bytes,
                                   now - self.started, rate)
        self.emit(event)

    def chunk(self, name: str, files: int, nbytes: int, stored_bytes: int) -> None:
        self.emit(ChunkUploaded(self.version, name, files, nbytes, stored_bytes))

    def done(self) -> UploadDone:
        return UploadDone(self.version, self.total_files, self.total_bytes, self.clock() - self.started)


def _message(err: ReconcileError) -> str:
    """The error's text without the ``error:`` prefixes its diagnostics carry (it is embedded in another line)."""
    return "; ".join(d.message if d.span is None else str(d) for d in err.diagnostics)
