"""Read the live state of the datasets in the plan's projects, in a number of calls that does not grow with them.

Calls: one ``projects.get_all`` (a regex over the projects), one ``tasks.get_all`` per 500 versions. A version's
file list (its ``state`` artifact) is downloaded only when the recorded content digest cannot decide: versions
not created by this tool and versions whose digest differs. Finalized states are cached locally. Metadata are
what consumers read, the metadata artifacts: one is downloaded, for the versions the manifests name, only when
its hash is not the hash of what this tool last wrote there (a version made by a script, or an edit since).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .clearml_backend import ServerReader, codec
from .model import Content, DatasetKey, ObservedState, ObservedVersion, VersionKey
from .plan.observed import choose_observed, fingerprint


def with_state(version: ObservedVersion, state: Mapping[str, Any] | None) -> ObservedVersion:
    """``version`` with its file list (empty when it has none) and its parents as the file list records them."""
    if state is None:
        return replace(version, files=(), links=())
    entries, links, graph = codec.read_state(state)
    parents = tuple(graph.get(version.id) or version.parent_ids)
    reads = tuple(sorted(codec.objects_read(version.id, entries, graph)))
    inherited = [e.size for e in entries if e.owner_id and e.owner_id != version.id]
    return replace(version, files=codec.state_files(entries), links=tuple(sorted(s.link for s in links)),
                   parent_ids=parents, reads=reads, inherited=(len(inherited), sum(inherited)))


def with_metadata(version: ObservedVersion, read: Mapping[str, Any]) -> ObservedVersion:
    """``version`` with its unread metadata artifacts given their values as read (``read``: name -> value)."""
    known = {codec.METADATA_KEY: version.properties.metadata, **version.properties.metadata_artifacts}
    known = {k: v for k, v in known.items() if k not in version.unread_metadata}
    return replace(version, properties=codec.with_metadata(version.properties, {**known, **read}),
                   unread_metadata=())


def state_cache_dir(api_host: str, root: Path) -> Path:
    return root / "states" / hashlib.sha256(api_host.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Listing:
    """Version summaries as listed by the server (no file lists yet), with the raw task of each."""

    versions: tuple[ObservedVersion, ...]
    raw: Mapping[str, Mapping[str, Any]]


def list_versions(reader: ServerReader, projects: Iterable[str]) -> Listing:
    """The dataset versions directly under ``projects``."""
    project_names = reader.dataset_projects(projects)
    tasks = reader.dataset_tasks(sorted(project_names))
    raw: dict[str, Mapping[str, Any]] = {}
    versions: list[ObservedVersion] = []
    for t in tasks:
        v = codec.task_summary(t, project_names.get(str(t.get("project")), ""))
        if v is not None:
            versions.append(v)
            raw[v.id] = t
    return Listing(tuple(versions), raw)


def complete(
    reader: ServerReader, listing: Listing, contents: Mapping[VersionKey, Content], *, cache_root: Path | None,
    check_storage: str = "",
) -> ObservedState:
    """The observed state: ``listing`` plus what ``contents`` needs compared (file lists, foreign metadata).

    ``check_storage``: also look for every data chunk of the finalized versions the manifests name and record
    the missing ones: ``presence``, one HEAD request per chunk; ``content``, every chunk downloaded (one at a
    time per worker, into a temporary file) and its sha256 compared with the one recorded with it.
    """
    need_state, need_meta = _needs(list(listing.versions), contents)
    by_id = {v.id: v for v in listing.versions}
    need_check = _finalized_named(list(listing.versions), contents) if check_storage else []
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    with ThreadPoolExecutor(max_workers=4) as pool:
        states = dict(zip(need_state, pool.map(lambda i: reader.read_state(listing.raw[i], cache_dir), need_state),
                          strict=True))
        metas = dict(zip(need_meta, pool.map(lambda i: reader.read_metadata(listing.raw[i], by_id[i].unread_metadata),
                                             need_meta), strict=True))
        checked = dict(zip(need_check, pool.map(lambda i: reader.check_chunks(listing.raw[i], check_storage),
                                                need_check), strict=True))
    versions = []
    for v in listing.versions:
        if v.id in states:
            v = with_state(v, states[v.id])
        if v.id in metas:
            v = with_metadata(v, metas[v.id])
        if v.id in checked and any(checked[v.id]):
            v = replace(v, missing_chunks=checked[v.id][0], corrupt_chunks=checked[v.id][1])
        versions.append(v)
    observed = ObservedState(tuple(sorted(versions, key=lambda v: (v.key, v.id))))
    return ObservedState(observed.versions, fingerprint(observed))


def with_reads(reader: ServerReader, observed: ObservedState, listing: Listing, ids: Iterable[str], *,
               cache_root: Path | None) -> ObservedState:
    """``observed`` with the file lists (and so the chunks each reads) of the versions ``ids`` read."""
    wanted = sorted({i for i in ids if i in listing.raw})
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    with ThreadPoolExecutor(max_workers=4) as pool:
        states = dict(zip(wanted, pool.map(lambda i: reader.read_state(listing.raw[i], cache_dir), wanted),
                          strict=True))
    versions = tuple(with_state(v, states[v.id]) if v.id in states else v for v in observed.versions)
    return ObservedState(versions, observed.fingerprint)




def _finalized_named(versions: list[ObservedVersion], contents: Mapping[VersionKey, Content]) -> list[str]:
    by_key: dict[VersionKey, list[ObservedVersion]] = {}
    for v in versions:
        by_key.setdefault(v.key, []).append(v)
    chosen = [choose_observed(by_key.get(key, [])) for key in contents]
    return sorted(v.id for v in chosen if v is not None and v.finalized)


def observe(
    reader: ServerReader, projects: Iterable[str], contents: Mapping[VersionKey, Content], *,
    cache_root: Path | None,
) -> ObservedState:
    """:func:`list_versions` then :func:`complete`."""
    return complete(reader, list_versions(reader, projects), contents, cache_root=cache_root)


def _needs(versions: list[ObservedVersion], contents: Mapping[VersionKey, Content]) -> tuple[list[str], list[str]]:
    """Ids whose file list must be read, and ids whose metadata must be read from the artifact."""
    by_key: dict[VersionKey, list[ObservedVersion]] = {}
    for v in versions:
        by_key.setdefault(v.key, []).append(v)
    need_state: list[str] = []
    need_meta: list[str] = []
    for key, content in contents.items():
        chosen = choose_observed(by_key.get(key, [])) or _archived(by_key.get(key, []))
        if chosen is None:
            continue
        if chosen.finalized and chosen.content_digest != content.digest():
            need_state.append(chosen.id)
        if chosen.unread_metadata:
            need_meta.append(chosen.id)
    return sorted(need_state), sorted(need_meta)


def _archived(candidates: list[ObservedVersion]) -> ObservedVersion | None:
    from .plan.observed import archived_candidate

    return archived_candidate(candidates)


def version_summary(reader: ServerReader, version_id: str) -> tuple[ObservedVersion, Mapping[str, Any]] | None:
    """One dataset version by id (no file list yet) with its task; None when no dataset version has that id."""
    task = reader.task(version_id)
    if task is None:
        return None
    names = reader.project_names([str(task.get("project"))]) if task.get("project") else {}
    version = codec.task_summary(task, names.get(str(task.get("project")), ""))
    return None if version is None else (version, task)


def read_version(reader: ServerReader, version_id: str, *, cache_root: Path | None) -> ObservedVersion | None:
    """One dataset version by id, with its file list; None when no dataset version has that id."""
    found = version_summary(reader, version_id)
    if found is None:
        return None
    version, task = found
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    return with_state(version, reader.read_state(task, cache_dir))


def dataset_versions(reader: ServerReader, dataset: DatasetKey) -> tuple[ObservedVersion, ...]:
    """Summaries (no file lists) of every live version of ``dataset``, sorted by version then id."""
    observed = observe(reader, [dataset.project], {}, cache_root=None)
    return tuple(v for v in observed.versions if v.key.dataset == dataset and not v.archived)


def version_summaries(reader: ServerReader, version_ids: Iterable[str]) -> dict[str, ObservedVersion]:
    """Summaries (no file lists) of the dataset versions with these ids (one look-up each); others are left out."""
    ids = sorted(set(version_ids))
    if not ids:
        return {}
    tasks = [t for vid in ids if (t := reader.task(vid)) is not None]
    names = reader.project_names(str(t.get("project")) for t in tasks if t.get("project"))
    out = {}
    for t in tasks:
        v = codec.task_summary(t, names.get(str(t.get("project")), ""))
        if v is not None:
            out[v.id] = v
    return out
