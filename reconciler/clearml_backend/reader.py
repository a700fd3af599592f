"""Reading a ClearML server: versions, their contents and file lists, stored statistics, checks and cards,
file bytes. Everything returned is one of the project's types (:mod:`reconciler.model`); tasks and ``state``
documents stay in here.

Nothing here writes. Observation costs one ``projects.get_all`` and one ``tasks.get_all`` per 500 versions;
file lists (``state`` artifacts) of finalized versions are cached on disk by version id (immutable). The reader
remembers the task each listed version was read from, so that reading that version's file list or artifacts
next costs no other listing call (a version listed again later, with another ``last_update``, is read again).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..model import (
    FINAL_STATUSES,
    Content,
    DatasetKey,
    LinkEntry,
    ObservedVersion,
    StoredChunk,
    StoredFile,
    TaskUse,
    VersionLayout,
    normalize_dataset_path,
    parse_time,
)
from . import codec
from .api import ApiClient, BackendError
from .storage import Stores

PAGE_SIZE = 500
USES_BATCH = 1000  # version ids per ``tasks.get_all`` in :meth:`ServerReader.tasks_using`
_ID = re.compile(r"^[0-9A-Za-z_-]+$")


class ServerReader:
    def __init__(self, api: ApiClient, stores: Stores):
        self.api = api
        self.stores = stores
        self._listed: dict[str, Mapping[str, Any]] = {}  # version id -> the task its summary was read from

    # --- versions ----------------------------------------------------------------------------------------------

    def _summaries(self, tasks: Iterable[Mapping[str, Any]], names: Mapping[str, str]) -> list[ObservedVersion]:
        out = []
        for t in tasks:
            v = codec.task_summary(t, names.get(str(t.get("project")), ""))
            if v is not None:
                self._listed[v.id] = t
                out.append(v)
        return out

    def _task_of(self, version: ObservedVersion) -> Mapping[str, Any] | None:
        """The task ``version`` was summarised from (read again when it was listed at another time)."""
        task = self._listed.get(version.id)
        if task is not None and (not version.last_update or str(task.get("last_update") or "") ==
                                 version.last_update):
            return task
        return self.task(version.id)

    def versions(self, projects: Iterable[str]) -> tuple[ObservedVersion, ...]:
        """Summaries (no file lists) of the dataset versions directly under ``projects``, newest first."""
        names = self.dataset_projects(projects)
        return tuple(self._summaries(self._dataset_tasks(sorted(names)), names))

    def managed_versions(self) -> tuple[ObservedVersion, ...]:
        """Summaries of every version this tool created, in any project."""
        tasks = self._managed_tasks()
        names = self.project_names(str(t.get("project")) for t in tasks if t.get("project"))
        return tuple(self._summaries(tasks, names))

    def version(self, version_id: str) -> ObservedVersion | None:
        """The dataset version with this id (no file list), or None when no dataset version has it."""
        found = self.summaries([version_id])
        return found.get(version_id)

    def summaries(self, version_ids: Iterable[str]) -> dict[str, ObservedVersion]:
        """Summaries (no file lists) of the dataset versions with these ids (one look-up each); others are left
        out."""
        tasks = [t for vid in sorted(set(version_ids)) if (t := self.task(vid)) is not None]
        names = self.project_names(str(t.get("project")) for t in tasks if t.get("project"))
        return {v.id: v for v in self._summaries(tasks, names)}

    def datasets(self, projects: Iterable[str]) -> tuple[DatasetKey, ...]:
        """The datasets directly in ``projects`` (each has a hidden ``<project>/.datasets/<name>``), sorted."""
        return tuple(sorted(DatasetKey(*where) for full in self.dataset_projects(projects).values()
                            if (where := codec.split_hidden_project(full))))

    def dataset_of(self, task_id: str) -> DatasetKey | None:
        """The dataset the task ``task_id`` belongs to (by its project), or None."""
        task = self.task(task_id, ("id", "project"))
        names = self.project_names([str(task.get("project"))]) if task and task.get("project") else {}
        where = codec.split_hidden_project(names.get(str((task or {}).get("project")), ""))
        return DatasetKey(*where) if where else None

    def status(self, version_id: str) -> str | None:
        """The version's status now, or None when there is no such task."""
        row = self.task(version_id, ("id", "status"))
        return None if row is None else str(row.get("status"))

    def output_destination(self, version_id: str) -> str:
        """Where the version's data goes when it is not the file server ("" for the file server)."""
        task = self.task(version_id, ("id", "output")) or {}
        return str((task.get("output") or {}).get("destination") or "")

    def with_files(self, version: ObservedVersion, cache_dir: Path | None) -> ObservedVersion:
        """``version`` with its file list (empty when it has none), its parents as the file list records them,
        and the objects of other versions its files are read from."""
        task = self._task_of(version)
        return codec.with_state(version, self.read_state(task, cache_dir) if task is not None else None)

    def content(self, version_id: str, cache_dir: Path | None) -> Content | None:
        """The content of a version (the one its file list records), or None when it has no file list (or the
        version is not there)."""
        task = self._listed.get(version_id) or self.task(version_id)
        state = self.read_state(task, cache_dir) if task is not None else None
        return None if state is None else codec.state_content(state)

    def with_metadata(self, version: ObservedVersion) -> tuple[ObservedVersion, tuple[str, ...]]:
        """``version`` with its unread metadata artifacts given their values as downloaded; and the names of
        those that are not JSON objects (left out of its metadata)."""
        task = self._task_of(version)
        read = self._read_metadata(task, version.unread_metadata) if task is not None else {}
        known = {codec.METADATA_KEY: version.properties.metadata, **version.properties.metadata_artifacts}
        known = {k: v for k, v in known.items() if k not in version.unread_metadata}
        unreadable = tuple(n for n in version.unread_metadata if not isinstance(read.get(n), dict))
        return replace(version, properties=codec.with_metadata(version.properties, {**known, **read}),
                       unread_metadata=()), unreadable

    def layout(self, version: ObservedVersion, cache_dir: Path | None) -> VersionLayout | None:
        """The parents and own/inherited files of a version, from its stored lineage; None for a draft that has
        stored no file list yet (its parents then come from its ``Dataset Struct``, see :meth:`draft_parents`)."""
        task = self._task_of(version)
        return None if task is None else self._version_layout(task, cache_dir)

    def missing_chunks(self, version: ObservedVersion, mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The data chunks of ``version`` missing from storage, and (``mode`` ``content``) those whose bytes do
        not hash to the sha256 recorded with them."""
        task = self._task_of(version)
        return ((), ()) if task is None else self._check_chunks(task, mode)

    def files_of(self, version: ObservedVersion, cache_dir: Path | None
                 ) -> tuple[Sequence[StoredFile], list[LinkEntry]]:
        """The files of a version (each with the version and chunk that hold its bytes, held compactly: see
        :class:`StoredFiles`) and its links.

        A file entry names its own owner (``parent_dataset_id``) and chunk (``artifact_name``), as the SDK reads
        them: files inherited from parents, or merged from several, are found where they were uploaded. The file
        list is read from a file (the cached copy, or a download), piece by piece, never whole in memory.
        """
        task = self._task_of(version)
        if task is None:
            raise BackendError(f"no dataset version has the id {version.id}")
        uri = codec.artifact_uri(task, codec.STATE_KEY)
        if not uri:
            raise BackendError(f"version {task.get('id')} has no file list on the server")
        own = str(task.get("id") or "")
        cached = self._state_cache_file(task, cache_dir)
        if cached is not None and cached.exists():
            try:
                with open(cached, "rb") as fh:
                    return codec.stored_files(fh, own)
            except (OSError, ValueError):
                pass  # a broken cache file is a miss
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="reconcile-state-", dir=cached and cached.parent) as tmp:
            path = Path(tmp) / "state.json"
            self.stores.download(uri, path)
            try:
                with open(path, "rb") as fh:
                    found = codec.stored_files(fh, own)
            except ValueError:
                raise BackendError(f"the file list of version {task['id']} ({uri}) is not valid JSON") from None
            if cached is not None:
                os.replace(path, cached)  # downloaded beside it: one rename
            return found

    def _artifact_json(self, version: ObservedVersion, key: str) -> Any | None:
        task = self._task_of(version)
        if task is None or key not in codec.artifacts(task):
            return None
        return self._read_json_artifact(task, key)

    def statistics_json(self, version: ObservedVersion) -> Any | None:
        """The statistics stored on the version (JSON, :func:`reconciler.statistics.statistics_from_json`), or
        None when it stores none."""
        return self._artifact_json(version, codec.STATISTICS_KEY)

    def checks_json(self, version: ObservedVersion) -> Any | None:
        """The check results stored on the version (JSON), or None when it stores none."""
        return self._artifact_json(version, codec.CHECKS_KEY)

    def card_json(self, version: ObservedVersion) -> Any | None:
        """The dataset card stored on the version (JSON: ``metadata`` and ``text``), or None when it has none."""
        return self._artifact_json(version, codec.CARD_KEY)

    @property
    def api_host(self) -> str:
        return self.api.cfg.api_host

    def _get_all(self, endpoint: str, key: str, **body: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 0
        while True:
            items = self.api.call(endpoint, page=page, page_size=PAGE_SIZE, **body).get(key) or []
            out.extend(items)
            if len(items) < PAGE_SIZE:
                return out
            page += 1

    # --- listings ----------------------------------------------------------------------------------------------

    def dataset_projects(self, projects: Iterable[str]) -> dict[str, str]:
        """Hidden dataset projects (``<project>/.datasets/<name>``) under the given projects: id -> full name."""
        names = sorted(set(projects))
        if not names:
            return {}
        pattern = "^(" + "|".join(re.escape(p) for p in names) + r")/\.datasets/[^/]+$"
        rows = self._get_all("projects.get_all", "projects", name=pattern, search_hidden=True,
                             only_fields=["id", "name"])
        return {str(r["id"]): str(r["name"]) for r in rows}

    def _dataset_tasks(self, project_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not project_ids:
            return []
        return self._get_all(
            "tasks.get_all", "tasks", project=list(project_ids), type=[codec.TASK_TYPE],
            search_hidden=True, only_fields=list(codec.TASK_FIELDS),
            order_by=["-last_update"],
        )

    def _managed_tasks(self) -> list[dict[str, Any]]:
        return self._get_all(
            "tasks.get_all", "tasks", system_tags=["__$all", codec.DATASET_TAG, codec.MANAGED_TAG],
            type=[codec.TASK_TYPE], search_hidden=True, only_fields=list(codec.TASK_FIELDS),
            order_by=["-last_update"],
        )

    def project_names(self, project_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(project_ids))
        if not ids:
            return {}
        rows = self._get_all("projects.get_all", "projects", id=ids, search_hidden=True, only_fields=["id", "name"])
        return {str(r["id"]): str(r["name"]) for r in rows}

    def task(self, task_id: str, fields: Sequence[str] = codec.TASK_FIELDS) -> dict[str, Any] | None:
        """The task with this id (projected to ``fields``), or None when there is none."""
        rows = self.api.call("tasks.get_all", id=[task_id], search_hidden=True,
                             only_fields=list(fields)).get("tasks") or []
        return dict(rows[0]) if rows else None

    def tasks(self, task_ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """The tasks with these ids (projected to ``fields``) that exist, in one paged listing."""
        if not task_ids:
            return []
        return self._get_all("tasks.get_all", "tasks", id=list(task_ids), search_hidden=True, only_fields=list(fields))

    def full_task(self, task_id: str) -> dict[str, Any]:
        return dict(self.api.call("tasks.get_by_id", task=task_id).get("task") or {})

    def tasks_using(self, version_ids: Collection[str]) -> dict[str, tuple[TaskUse, ...]]:
        """For each of ``version_ids`` that some task read with ``Dataset.get``, those tasks, newest first.

        The SDK records every dataset id a task's ``Dataset.get`` returned in the task's runtime property
        ``datasets`` (next to the ``Datasets/<alias>`` hyperparameter when an alias is given), so one
        ``tasks.get_all`` per :data:`USES_BATCH` ids (a regex over ``runtime.datasets``) finds them all, and one
        ``projects.get_all`` names their projects. Archived and hidden tasks count too: they can be restored and
        re-run. Ids that no task used are absent from the answer.
        """
        wanted = {v for v in version_ids if v and _ID.match(v)}
        if not wanted:
            return {}
        rows: dict[str, dict[str, Any]] = {}
        ordered = sorted(wanted)
        for start in range(0, len(ordered), USES_BATCH):
            batch = ordered[start : start + USES_BATCH]
            pattern = "^(" + "|".join(batch) + ")$"
            for row in self._get_all(
                "tasks.get_all", "tasks", search_hidden=True,
                _any_={"pattern": pattern, "fields": ["runtime.datasets"]},
                only_fields=["id", "name", "project", "status", "last_update", "runtime.datasets"],
            ):
                rows[str(row["id"])] = row
        projects = self.project_names(str(r["project"]) for r in rows.values() if r.get("project"))
        uses: dict[str, list[TaskUse]] = {}
        for row in rows.values():
            use = TaskUse(
                id=str(row["id"]), name=str(row.get("name") or ""),
                project=projects.get(str(row.get("project") or ""), ""), status=str(row.get("status") or ""),
                last_update=parse_time(row.get("last_update")),
            )
            runtime = row.get("runtime")
            used = runtime.get("datasets") if isinstance(runtime, dict) else None
            if not isinstance(used, list):
                continue
            # the server matches ids case-insensitively; only exact ids count
            for version_id in {str(u) for u in used} & wanted:
                uses.setdefault(version_id, []).append(use)
        oldest = datetime.min.replace(tzinfo=timezone.utc)
        return {
            vid: tuple(sorted(found, key=lambda u: (u.last_update or oldest, u.id), reverse=True))
            for vid, found in sorted(uses.items())
        }

    def task_reads(self, task_id: str) -> tuple[TaskUse, tuple[str, ...]] | None:
        """A task and the dataset version ids it read (its ``runtime.datasets``), or None when there is no such
        task."""
        row = self.task(task_id, ("id", "name", "project", "status", "last_update", "runtime.datasets"))
        if row is None:
            return None
        project = str(row.get("project") or "")
        names = self.project_names([project]) if project else {}
        use = TaskUse(id=str(row["id"]), name=str(row.get("name") or ""), project=names.get(project, ""),
                      status=str(row.get("status") or ""), last_update=parse_time(row.get("last_update")))
        used = (row.get("runtime") or {}).get("datasets")
        return use, tuple(str(u) for u in used) if isinstance(used, list) else ()

    def _version_layout(self, task: Mapping[str, Any], cache_dir: Path | None) -> VersionLayout | None:
        """The parents and own/inherited files of a version, from its stored lineage; None for a draft that has
        stored no file list yet (its parents then come from its ``Dataset Struct``, see :meth:`draft_parents`)."""
        state = self.read_state(task, cache_dir)
        return None if state is None else codec.layout(str(task["id"]), state)

    def draft_parents(self, version_id: str) -> tuple[str, ...]:
        """The parents a version's ``Dataset Struct`` configuration records (what the SDK writes at creation)."""
        task = self.full_task(version_id)
        struct = ((task.get("configuration") or {}).get(codec.STRUCT_CONFIG)) or {}
        return tuple(codec.struct_parents(struct, version_id))

    # --- artifacts ---------------------------------------------------------------------------------------------

    def read_state(self, task: Mapping[str, Any], cache_dir: Path | None) -> dict[str, Any] | None:
        """The ``state`` artifact of a version (its file list), or None when it has none.

        The state of a finalized version changes only when a re-home rewrites it (under a new address, with a
        new hash), so it is cached under ``cache_dir`` by version id and the hash recorded with it.
        """
        uri = codec.artifact_uri(task, codec.STATE_KEY)
        if not uri:
            return None
        cached = self._state_cache_file(task, cache_dir)
        if cached is not None and cached.exists():
            try:
                state: dict[str, Any] = json.loads(cached.read_bytes())
                return state
            except (OSError, ValueError):
                pass  # a broken cache file is a miss
        raw = self.stores.read_bytes(uri)
        try:
            data = json.loads(raw)
        except ValueError:
            raise BackendError(f"the file list of version {task['id']} ({uri}) is not valid JSON") from None
        if not isinstance(data, dict):
            raise BackendError(f"the file list of version {task['id']} ({uri}) is not a JSON object")
        if cached is not None:
            remember_state(cached, raw)
        return data

    @staticmethod
    def _state_cache_file(task: Mapping[str, Any], cache_dir: Path | None) -> Path | None:
        """Where the file list of ``task`` is cached: only a finalized version's (see :meth:`read_state`)."""
        if not cache_dir or task.get("status") not in FINAL_STATUSES:
            return None
        art = codec.artifacts(task).get(codec.STATE_KEY) or {}
        stamp = art.get("hash") or codec.artifact_uri(task, codec.STATE_KEY)
        return state_cache_file(cache_dir, str(task["id"]), str(stamp))

    def read_json(self, uri: str, what: str) -> Any:
        raw = self.stores.read_bytes(uri)
        try:
            return json.loads(raw)
        except ValueError:
            raise BackendError(f"{what} ({uri}) is not valid JSON") from None

    def _check_chunks(self, task: Mapping[str, Any], mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The data chunks of ``task`` missing from storage, and (``mode`` ``content``) those whose bytes do not
        hash to the sha256 recorded with them (a chunk recorded without one is only checked for presence)."""
        chunks = {k: a for k, a in codec.artifacts(task).items() if codec.chunk_index(k) is not None}
        missing, corrupt = [], []
        for name, art in sorted(chunks.items()):
            uri = str(art.get("uri") or "")
            if not uri or self.stores.size(uri) is None:
                missing.append(name)
            elif mode == "content" and art.get("hash"):
                with tempfile.TemporaryDirectory(prefix="reconcile-check-") as tmp:
                    dest = Path(tmp) / "chunk"
                    self.download(uri, dest)
                    if sha256_file(dest) != str(art["hash"]):
                        corrupt.append(name)
        return tuple(missing), tuple(corrupt)

    def _read_json_artifact(self, task: Mapping[str, Any], key: str) -> Any | None:
        uri = codec.artifact_uri(task, key)
        return None if not uri else self.read_json(uri, f"the {key} of version {task.get('id')}")

    def chunk_uris(self, chunks: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Where each ``(version id, chunk name)`` is stored; one call per 500 versions that own chunks."""
        return {key: chunk.uri for key, chunk in self.stored_chunks(chunks).items()}

    def stored_chunks(self, chunks: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredChunk]:
        """Each ``(version id, chunk name)``: where it is, its size and sha256 as recorded; one call per 500
        versions that own chunks."""
        wanted = sorted(set(chunks))
        owners = sorted({owner for owner, _ in wanted})
        tasks: dict[str, dict[str, Any]] = {}
        for i in range(0, len(owners), PAGE_SIZE):
            rows = self.api.call("tasks.get_all", id=owners[i:i + PAGE_SIZE], search_hidden=True,
                                 only_fields=["id", "execution.artifacts"]).get("tasks") or []
            tasks.update({str(r.get("id")): r for r in rows})
        out: dict[tuple[str, str], StoredChunk] = {}
        for owner, chunk in wanted:
            art = codec.artifacts(tasks.get(owner) or {}).get(chunk) or {}
            if not art.get("uri"):
                raise BackendError(f"chunk {chunk} of version {owner} is not on the server")
            size, digest = art.get("content_size"), art.get("hash")
            out[(owner, chunk)] = StoredChunk(owner, chunk, str(art["uri"]), size if isinstance(size, int) else None,
                                              str(digest) if isinstance(digest, str) and len(digest) == 64 else None)
        return out

    def download(self, uri: str, dest: Path) -> int:
        """Store the object at ``uri`` into the file ``dest``; its size."""
        self.stores.download(uri, dest)
        return dest.stat().st_size

    def _read_metadata(self, task: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
        """The JSON values of the named metadata artifacts of ``task`` (name -> value); an artifact that is not
        JSON (a table, an array, text) or cannot be read is left out."""
        arts = codec.metadata_artifacts(task)
        out: dict[str, Any] = {}
        for name in names:
            art = arts.get(name) or {}
            uri = art.get("uri")
            content_type = str((art.get("type_data") or {}).get("content_type") or "")
            if not uri or art.get("type") not in ("dict", "JSON") or content_type not in ("", "application/json"):
                continue
            try:
                out[name] = json.loads(self.stores.read_bytes(str(uri)))
            except (ValueError, OSError, BackendError):
                continue
        return out

    def fetch(self, files: Iterable[StoredFile], dest: Path) -> dict[str, Path]:
        """Extract ``files`` under ``dest`` (each at its path); path -> local file.

        Downloads only the chunks that hold them, from whichever version stored them.
        """
        by_chunk: dict[tuple[str, str], list[StoredFile]] = {}
        for e in files:
            by_chunk.setdefault((e.owner_id, e.chunk), []).append(e)
        uris = self.chunk_uris(by_chunk)
        out: dict[str, Path] = {}
        for (owner, chunk), items in sorted(by_chunk.items()):
            with tempfile.TemporaryDirectory(prefix="reconcile-chunk-") as tmp:
                local_zip = Path(tmp) / "chunk.zip"
                self.download(uris[(owner, chunk)], local_zip)
                with zipfile.ZipFile(local_zip) as zf:
                    names = set(zf.namelist())
                    for e in items:
                        if e.path not in names:
                            raise BackendError(f"chunk {chunk} of version {owner} lacks {e.path}")
                        if normalize_dataset_path(e.path) != e.path or not e.path:
                            raise BackendError(f"version {owner} holds an unsafe path {e.path!r}")
                        target = dest / e.path
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(e.path) as src, open(target, "wb") as dst:
                            while block := src.read(1 << 20):
                                dst.write(block)
                        out[e.path] = target
        return out


def state_cache_file(cache_dir: Path, version_id: str, stamp: str) -> Path:
    """Where the finalized file list of ``version_id`` whose recorded hash (or address) is ``stamp`` is cached."""
    return cache_dir / f"{version_id}.{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.json"


def remember_state(cached: Path, raw: bytes) -> None:
    """Keep the file list ``raw`` of a finalized version at ``cached`` (written whole, then renamed)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{hashlib.sha256(raw[:4096]).hexdigest()[:8]}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    tmp.replace(cached)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
