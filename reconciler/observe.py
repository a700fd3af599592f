"""Read the live state of the datasets the manifests name, in a number of calls that does not grow with them.

Calls: one ``projects.get_all`` (a regex over every manifest project), one ``tasks.get_all`` per 500 versions,
one more ``tasks.get_all`` for versions this tool manages elsewhere (for --prune). A version's file list (its
``state`` artifact) is downloaded only when the recorded content digest cannot decide: drafts to resume,
versions not created by this tool, and versions whose digest differs. Finalized states are cached locally.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clearml_backend import MANAGED_TAG, SECTION, ClearMLBackend
from .model import (
    Content,
    DatasetKey,
    FileEntry,
    LinkEntry,
    ObservedState,
    ObservedVersion,
    VersionKey,
    freeze_json,
)
from .plan import choose_observed, fingerprint

DATASETS_SEGMENT = "/.datasets/"


def _bookkeeping(task: Mapping[str, Any]) -> dict[str, str]:
    section = ((task.get("hyperparams") or {}).get(SECTION)) or {}
    return {k: str((v or {}).get("value", "")) for k, v in section.items()}


def _summary(task: Mapping[str, Any], project_name: str) -> ObservedVersion | None:
    runtime = task.get("runtime") or {}
    version = runtime.get("version")
    if DATASETS_SEGMENT not in project_name or not version:
        return None
    project = project_name.rsplit(DATASETS_SEGMENT, 1)[0]
    book = _bookkeeping(task)
    system_tags = set(task.get("system_tags") or [])
    try:
        metadata = json.loads(book["metadata"]) if book.get("metadata") else {}
    except ValueError:
        metadata = {}
    return ObservedVersion(
        key=VersionKey(project, str(task.get("name")), str(version)),
        id=str(task["id"]),
        status=str(task.get("status") or "created"),
        tags=tuple(sorted(task.get("tags") or [])),
        description=str(task.get("comment") or ""),
        metadata=freeze_json(metadata),
        parent_ids=(book["parent_id"],) if book.get("parent_id") else (),
        file_count=runtime.get("ds_file_count"),
        total_size=runtime.get("ds_total_size"),
        managed=MANAGED_TAG in system_tags,
        archived="archived" in system_tags,
        last_update=str(task.get("last_update") or ""),
        content_digest=book.get("content_digest") or None,
        statistics_digest=book.get("statistics_digest") or None,
    )


def _with_state(version: ObservedVersion, state: Mapping[str, Any] | None) -> ObservedVersion:
    if state is None:
        return _replace(version, files=(), links=())
    files, pending = [], 0
    for e in state.get("dataset_file_entries") or []:
        if e.get("parent_dataset_id") == version.id and not e.get("artifact_name"):
            pending += 1
            continue
        files.append(FileEntry(str(e["relative_path"]), int(e.get("size") or 0), str(e.get("hash") or "")))
    links = [
        LinkEntry(str(e["relative_path"]), str(e.get("link")), e.get("size"), e.get("hash"))
        for e in state.get("dataset_link_entries") or []
    ]
    parents = tuple((state.get("dependency_graph") or {}).get(version.id) or version.parent_ids)
    return _replace(version, files=tuple(sorted(files)), links=tuple(sorted(links)), pending_files=pending,
                    parent_ids=parents)


def _replace(v: ObservedVersion, **changes: Any) -> ObservedVersion:
    values = {name: getattr(v, name) for name in v.__slots__}
    values.update(changes)
    return ObservedVersion(**values)


def state_cache_dir(api_host: str, root: Path) -> Path:
    return root / "states" / hashlib.sha256(api_host.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Listing:
    """Version summaries as listed by the server (no file lists yet), with the raw task of each."""

    versions: tuple[ObservedVersion, ...]
    raw: Mapping[str, Mapping[str, Any]]


def list_versions(backend: ClearMLBackend, projects: Iterable[str], *, include_managed: bool = False) -> Listing:
    """The versions under ``projects`` (and, with ``include_managed``, every version this tool manages, wherever
    it is: what --prune needs to find datasets whose manifests were deleted)."""
    project_names = backend.dataset_projects(projects)
    tasks = backend.dataset_tasks(sorted(project_names))
    if include_managed:
        seen = {t["id"] for t in tasks}
        extra = [t for t in backend.managed_tasks() if t["id"] not in seen]
        missing = {t.get("project") for t in extra} - set(project_names)
        project_names.update(backend.project_names(p for p in missing if p))
        tasks += extra
    raw: dict[str, Mapping[str, Any]] = {}
    versions: list[ObservedVersion] = []
    for t in tasks:
        v = _summary(t, project_names.get(str(t.get("project")), ""))
        if v is not None:
            versions.append(v)
            raw[v.id] = t
    return Listing(tuple(versions), raw)


def complete(
    backend: ClearMLBackend, listing: Listing, contents: Mapping[VersionKey, Content], *, cache_root: Path | None
) -> ObservedState:
    """The observed state: ``listing`` plus the file lists of the versions ``contents`` needs compared."""
    need = _needs_state(list(listing.versions), contents)
    cache_dir = state_cache_dir(backend.cfg.api_host, cache_root) if cache_root else None
    with ThreadPoolExecutor(max_workers=4) as pool:
        read = pool.map(lambda i: backend.read_state(listing.raw[i], cache_dir), need)
        states = dict(zip(need, read, strict=True))
    versions = [_with_state(v, states[v.id]) if v.id in states else v for v in listing.versions]
    observed = ObservedState(tuple(sorted(versions, key=lambda v: (v.key, v.id))))
    return ObservedState(observed.versions, fingerprint(observed))


def observe(
    backend: ClearMLBackend,
    projects: Iterable[str],
    contents: Mapping[VersionKey, Content],
    *,
    cache_root: Path | None,
    include_managed: bool = False,
) -> ObservedState:
    """:func:`list_versions` then :func:`complete`."""
    listing = list_versions(backend, projects, include_managed=include_managed)
    return complete(backend, listing, contents, cache_root=cache_root)


def _needs_state(versions: list[ObservedVersion], contents: Mapping[VersionKey, Content]) -> list[str]:
    by_key: dict[VersionKey, list[ObservedVersion]] = {}
    for v in versions:
        by_key.setdefault(v.key, []).append(v)
    need: list[str] = []
    for key, content in contents.items():
        chosen = choose_observed(by_key.get(key, []))
        if chosen is None:
            continue
        if not chosen.finalized or chosen.content_digest != content.digest():
            need.append(chosen.id)
    return sorted(need)



def read_version(backend: ClearMLBackend, version_id: str, *, cache_root: Path | None) -> ObservedVersion | None:
    """One dataset version by id, with its file list; None when no dataset version has that id."""
    task = backend.task_by_id(version_id)
    if task is None:
        return None
    names = backend.project_names([str(task.get("project"))]) if task.get("project") else {}
    version = _summary(task, names.get(str(task.get("project")), ""))
    if version is None:
        return None
    cache_dir = state_cache_dir(backend.cfg.api_host, cache_root) if cache_root else None
    return _with_state(version, backend.read_state(task, cache_dir))


def dataset_versions(backend: ClearMLBackend, dataset: DatasetKey) -> tuple[ObservedVersion, ...]:
    """Summaries (no file lists) of every live version of ``dataset``, sorted by version then id."""
    observed = observe(backend, [dataset.project], {}, cache_root=None, include_managed=False)
    return tuple(v for v in observed.versions if v.key.dataset == dataset and not v.archived)
