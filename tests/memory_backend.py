"""One in-memory ClearML backend for fast tests: the reader and the writer together, speaking the project's types.

:class:`MemoryBackend` answers what the use cases ask the real ``ServerReader`` (observe, report, import, show,
``Run``) and what ``apply`` asks the real ``ServerWriter``, from plain records (:class:`MemoryVersion`), with the
same draft bookkeeping (``clearml_backend.writer.Draft``) as the real writer. File bytes are kept per chunk, so
statistics can fetch files back. ``fail_at`` makes the k-th write raise (a server failing mid-apply).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler.checks.results import VersionChecks, checks_to_json
from reconciler.clearml_backend.api import BackendError
from reconciler.clearml_backend.draft import Chunk, Draft
from reconciler.clearml_backend.rehome import Rehomed
from reconciler.clearml_backend.upload import UploadOptions
from reconciler.model import (
    ALL_OBJECTS,
    FINAL_STATUSES,
    Content,
    DatasetKey,
    FileEntry,
    LinkEntry,
    ObservedState,
    ObservedVersion,
    Properties,
    StoredFile,
    StoredObject,
    TaskUse,
    VersionKey,
    VersionLayout,
    thaw_json,
)
from reconciler.statistics import Statistics, statistics_to_json


class Injected(BackendError):
    """The failure ``fail_at`` injects."""


@dataclass
class MemoryVersion:
    """A dataset version as the fake server holds it."""

    key: VersionKey
    id: str
    status: str = "created"
    parents: tuple[str, ...] = ()
    properties: Properties = Properties()
    files: dict[str, StoredFile] = field(default_factory=dict)  # what its file list records (finalized)
    links: dict[str, tuple[LinkEntry, str]] = field(default_factory=dict)  # path -> (link, who registered it)
    chunks: dict[str, dict[str, bytes]] = field(default_factory=dict)  # chunk name -> path -> bytes
    content_digest: str | None = None
    statistics_digest: str | None = None
    archived: bool = False
    managed: bool = True
    applied: Properties | None = None
    stored: dict[str, Any] = field(default_factory=dict)  # statistics, checks, card: the JSON stored
    updates: int = 0  # every write bumps it (the server's last_update)


class MemoryBackend:
    """The reader and writer of one in-memory server (see the module docstring)."""

    api_host = "memory://api"

    def __init__(self, fail_at: int | None = None):
        self.records: dict[str, MemoryVersion] = {}
        self.fail_at = fail_at
        self.writes = 0
        self.fetched: list[str] = []  # paths fetched back from chunks, in order

    # --- setting up -----------------------------------------------------------------------------------------

    def add(self, key: VersionKey, files: Iterable[FileEntry] = (), *, status: str = "completed",
            parents: Sequence[str] = (), properties: Properties | None = None, managed: bool = True,
            data: dict[str, bytes] | None = None, **fields: Any) -> MemoryVersion:
        """A version as if made earlier (by this tool, or by the SDK with ``managed=False``); its files in one
        chunk of its own, with their bytes from ``data`` (path -> bytes) when given."""
        vid = f"{len(self.records):032x}"
        version = MemoryVersion(key, vid, status, tuple(parents), properties or Properties(), managed=managed, **fields)
        for f in files:
            version.files[f.path] = StoredFile(f.path, f.size, f.sha256, vid, "data")
            version.chunks.setdefault("data", {})[f.path] = (data or {}).get(f.path, b"")
        if status in FINAL_STATUSES and managed and version.content_digest is None:
            version.content_digest = self._content(version).digest()
        self.records[vid] = version
        return version

    # --- reader: versions -----------------------------------------------------------------------------------

    def _summary(self, v: MemoryVersion) -> ObservedVersion:
        final = v.status in FINAL_STATUSES
        return ObservedVersion(
            key=v.key, id=v.id, status=v.status, properties=v.properties, parent_ids=v.parents,
            file_count=len(v.files) + len(v.links) if final else None,
            total_size=sum(f.size for f in v.files.values()) if final else None,
            managed=v.managed, archived=v.archived, last_update=f"2026-01-01T00:00:{v.updates:02d}+00:00",
            content_digest=v.content_digest if v.managed else None,
            statistics_digest=v.statistics_digest if "statistics" in v.stored else None, applied=v.applied,
            objects=tuple(StoredObject(name, f"mem://{v.id}/{name}", 1) for name in sorted(v.chunks)),
        )

    def versions_of(self, dataset: DatasetKey) -> list[MemoryVersion]:
        return [v for v in self.records.values() if v.key.dataset == dataset]

    def versions(self, projects: Iterable[str]) -> tuple[ObservedVersion, ...]:
        wanted = set(projects)
        return tuple(self._summary(v) for v in self.records.values() if v.key.project in wanted)

    def managed_versions(self) -> tuple[ObservedVersion, ...]:
        return tuple(self._summary(v) for v in self.records.values() if v.managed)

    def version(self, version_id: str) -> ObservedVersion | None:
        v = self.records.get(version_id)
        return None if v is None else self._summary(v)

    def summaries(self, version_ids: Iterable[str]) -> dict[str, ObservedVersion]:
        return {i: self._summary(self.records[i]) for i in sorted(set(version_ids)) if i in self.records}

    def datasets(self, projects: Iterable[str]) -> tuple[DatasetKey, ...]:
        wanted = set(projects)
        return tuple(sorted({v.key.dataset for v in self.records.values() if v.key.project in wanted}))

    def dataset_of(self, task_id: str) -> DatasetKey | None:
        v = self.records.get(task_id)
        return None if v is None else v.key.dataset

    def status(self, version_id: str) -> str | None:
        v = self.records.get(version_id)
        return None if v is None else v.status

    def tasks_using(self, version_ids: Collection[str]) -> dict[str, tuple[TaskUse, ...]]:
        return {}

    # --- reader: contents ------------------------------------------------------------------------------------

    def _content(self, v: MemoryVersion) -> Content:
        files = {p: FileEntry(f.path, f.size, f.sha256) for p, f in sorted(v.files.items())}
        return Content(files, {p: link for p, (link, _) in sorted(v.links.items())})

    def with_files(self, version: ObservedVersion, cache_dir: Path | None) -> ObservedVersion:
        v = self.records.get(version.id)
        if v is None or v.status not in FINAL_STATUSES:
            return replace(version, files=(), links=())
        owners = {f.owner_id for f in v.files.values()} - {v.id}
        reads = {(o, ALL_OBJECTS) for o in owners} | {(p, "state") for p in self._ancestors(v)}
        return replace(version, files=tuple(sorted(self._content(v).files.values())),
                       links=tuple(sorted(link for link, _ in v.links.values())), reads=tuple(sorted(reads)))

    def _ancestors(self, v: MemoryVersion) -> set[str]:
        out: set[str] = set()
        pending = list(v.parents)
        while pending:
            p = pending.pop()
            if p not in out and p in self.records:
                out.add(p)
                pending += self.records[p].parents
        return out

    def content(self, version_id: str, cache_dir: Path | None) -> Content | None:
        v = self.records.get(version_id)
        return None if v is None or v.status not in FINAL_STATUSES else self._content(v)

    def with_metadata(self, version: ObservedVersion) -> tuple[ObservedVersion, tuple[str, ...]]:
        return replace(version, unread_metadata=()), ()

    def layout(self, version: ObservedVersion, cache_dir: Path | None) -> VersionLayout | None:
        v = self.records[version.id]
        if v.status not in FINAL_STATUSES:
            return None
        own = [f for f in v.files.values() if f.owner_id == v.id]
        return VersionLayout(v.parents, len(v.files), sum(f.size for f in v.files.values()), len(own),
                             sum(f.size for f in own))

    def draft_parents(self, version_id: str) -> tuple[str, ...]:
        return self.records[version_id].parents

    def missing_chunks(self, version: ObservedVersion, mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (), ()

    def files_of(self, version: ObservedVersion, cache_dir: Path | None) -> tuple[list[StoredFile], list[LinkEntry]]:
        v = self.records.get(version.id)
        if v is None or v.status not in FINAL_STATUSES:
            raise BackendError(f"version {version.id} has no file list on the server")
        return sorted(v.files.values()), sorted(link for link, _ in v.links.values())

    def statistics_json(self, version: ObservedVersion) -> Any | None:
        return self.records[version.id].stored.get("statistics")

    def checks_json(self, version: ObservedVersion) -> Any | None:
        return self.records[version.id].stored.get("checks")

    def card_json(self, version: ObservedVersion) -> Any | None:
        return self.records[version.id].stored.get("card")

    def fetch(self, files: Iterable[StoredFile], dest: Path) -> dict[str, Path]:
        out = {}
        for f in files:
            target = dest / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.records[f.owner_id].chunks[f.chunk][f.path])
            self.fetched.append(f.path)
            out[f.path] = target
        return out

    # --- writer ---------------------------------------------------------------------------------------------

    def _write(self, what: str, version_id: str | None = None) -> None:
        if self.fail_at is not None and self.writes == self.fail_at:
            self.writes += 1
            raise Injected(f"injected failure at {what}")
        self.writes += 1
        if version_id is not None:
            self.records[version_id].updates += 1

    def create_draft(self, key: VersionKey, parent_ids: Sequence[str], storage: str | None) -> str:
        self._write("create")
        vid = f"{len(self.records):032x}"
        self.records[vid] = MemoryVersion(key, vid, parents=tuple(parent_ids))
        return vid

    def open_draft(self, key: VersionKey, version_id: str, parent_ids: Sequence[str], storage: str | None
                   ) -> Draft:
        draft = Draft(key, version_id, f"mem://{version_id}", tuple(parent_ids))
        for parent_id in parent_ids:
            parent = self.records[parent_id]
            draft.inherit(parent.files.values(), parent.links.values())
        return draft

    def discard_chunks(self, version_id: str) -> int:
        stored = self.records[version_id]
        n = len(stored.chunks)
        stored.chunks.clear()
        return n

    def upload_files(self, draft: Draft, files: Sequence[FileEntry], options: UploadOptions,
                     progress: Any = None) -> None:
        for f in files:  # one chunk per file
            self._write(f"upload {f.path}", draft.id)
            name = draft.chunk_name(0)
            assert f.local is not None
            data = Path(f.local).read_bytes()
            self.records[draft.id].chunks[name] = {f.path: data}
            draft.stored(Chunk(name, f"mem://{draft.id}/{name}", len(data), "", 1), [f])
            if progress is not None:
                progress(1, f.size)

    def set_properties(self, key: VersionKey, version_id: str, before: Properties, after: Properties,
                       aliases: Collection[str] = ()) -> None:
        self._write("properties", version_id)
        v = self.records[version_id]
        v.properties = after
        if after.metadata_artifacts.get("card") is not None:
            v.stored["card"] = {"metadata": thaw_json(after.metadata_artifacts["card"]), "text": ""}
        self._write("applied", version_id)
        v.applied = after

    def set_statistics(self, key: VersionKey, version_id: str, stats: Statistics, digest: str, *,
                       plots: bool) -> None:
        self._write("statistics", version_id)
        v = self.records[version_id]
        v.stored["statistics"] = statistics_to_json(stats)
        v.statistics_digest = digest

    def set_checks(self, key: VersionKey, version_id: str, checks: VersionChecks) -> None:
        self._write("checks", version_id)
        self.records[version_id].stored["checks"] = checks_to_json(checks)

    def finalize(self, draft: Draft, content_digest: str) -> None:
        self._write("finalize", draft.id)
        v = self.records[draft.id]
        files, links = draft.stored_files(), draft.stored_links()
        for f in files:
            assert f.path in self.records[f.owner_id].chunks.get(f.chunk, {}), f"{f.path}: its chunk is not stored"
        v.files = {f.path: f for f in files}
        v.links = {link.path: (link, owner) for link, owner in links}
        v.content_digest, v.status = content_digest, "completed"

    def publish(self, key: VersionKey, version_id: str) -> None:
        self._write("publish", version_id)
        self.records[version_id].status = "published"

    def archive(self, key: VersionKey, version_id: str) -> None:
        self._write("archive", version_id)
        self.records[version_id].archived = True

    def expire(self, key: VersionKey, version_id: str, at: str) -> None:
        self.archive(key, version_id)

    def restore(self, key: VersionKey, version_id: str, system_tags: Sequence[str] = ()) -> None:
        self._write("restore", version_id)
        self.records[version_id].archived = False

    def delete_version(self, key: VersionKey, version_id: str, objects: Sequence[StoredObject], *,
                       whole: bool = True) -> None:
        self._write("delete")
        if whole:
            del self.records[version_id]

    def rehome(self, key: VersionKey, version_id: str, rewrites: Sequence[tuple[VersionKey, str]],
               group: Sequence[str], *, workers: int = 4) -> Rehomed:
        """Every file of ``version_id`` and of ``rewrites`` read outside ``group`` becomes ``version_id``'s own."""
        self._write("rehome", version_id)
        members = {version_id, *group}
        root = self.records[version_id]
        moved = [f for f in root.files.values() if f.owner_id != version_id]
        for f in moved:
            root.chunks.setdefault("data_rehome", {})[f.path] = self.records[f.owner_id].chunks[f.chunk][f.path]
            root.files[f.path] = StoredFile(f.path, f.size, f.sha256, version_id, "data_rehome")
        root.parents = ()
        for _, vid in rewrites:
            v = self.records[vid]
            for path, f in list(v.files.items()):
                if f.owner_id not in members:
                    v.files[path] = root.files[path]
        return Rehomed(len(moved), sum(f.size for f in moved), sum(f.size for f in moved), 1 + len(rewrites))

    def delete_draft(self, version_id: str) -> None:
        self._write("discard")
        del self.records[version_id]

    def version_content(self, version_id: str) -> tuple[Content, tuple[StoredFile, ...]]:
        v = self.records[version_id]
        return self._content(v), tuple(sorted(v.files.values()))

    def fetch_files(self, files: Sequence[StoredFile], dest: Path) -> dict[str, Path]:
        return self.fetch(files, dest)

    # --- what observation sees ------------------------------------------------------------------------------

    def observed(self) -> ObservedState:
        """Every version with its file list (finalized ones), as ``observe`` would read them all."""
        from reconciler.plan.observed import fingerprint

        state = ObservedState(tuple(sorted((self.with_files(self._summary(v), None) if v.status in FINAL_STATUSES
                                            else self._summary(v) for v in self.records.values()),
                                           key=lambda o: (o.key, o.id))))
        return ObservedState(state.versions, fingerprint(state))
