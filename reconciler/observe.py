"""Read the live state of the datasets in the plan's projects, in a number of calls that does not grow with them.

Calls: one ``projects.get_all`` (a regex over the projects), one ``tasks.get_all`` per 500 versions. A version's
file list (its ``state`` artifact) is downloaded only when the recorded content digest cannot decide: versions
not created by this tool and versions whose digest differs. Finalized states are cached locally. Metadata are
what consumers read, the metadata artifacts: one is downloaded, for the versions the manifests name, only when
its hash is not the hash of what this tool last wrote there (a version made by a script, or an edit since).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .clearml_backend import ServerReader
from .diagnostics import ReconcileError
from .model import Content, DatasetKey, ObservedState, ObservedVersion, VersionKey
from .plan.observed import choose_observed, fingerprint, proves_content


def state_cache_dir(api_host: str, root: Path) -> Path:
    return root / "states" / hashlib.sha256(api_host.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Listing:
    """Version summaries as listed by the server (no file lists yet)."""

    versions: tuple[ObservedVersion, ...]


def list_versions(reader: ServerReader, projects: Iterable[str]) -> Listing:
    """The dataset versions directly under ``projects``."""
    return Listing(reader.versions(projects))


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
        states = dict(zip(need_state, pool.map(lambda i: reader.with_files(by_id[i], cache_dir), need_state),
                          strict=True))
        metas = dict(zip(need_meta, pool.map(lambda i: reader.with_metadata(by_id[i])[0], need_meta), strict=True))
        checked = dict(zip(need_check, pool.map(lambda i: reader.missing_chunks(by_id[i], check_storage),
                                                need_check), strict=True))
    versions = []
    for v in listing.versions:
        if v.id in states:
            v = states[v.id]
        if v.id in metas:
            v = replace(v, properties=metas[v.id].properties, unread_metadata=())
        if v.id in checked and any(checked[v.id]):
            v = replace(v, missing_chunks=checked[v.id][0], corrupt_chunks=checked[v.id][1])
        versions.append(v)
    observed = ObservedState(tuple(sorted(versions, key=lambda v: (v.key, v.id))))
    return ObservedState(observed.versions, fingerprint(observed))


def with_reads(reader: ServerReader, observed: ObservedState, listing: Listing, ids: Iterable[str], *,
               cache_root: Path | None) -> ObservedState:
    """``observed`` with the file lists (and so the chunks each reads) of the versions ``ids`` read."""
    by_id = {v.id: v for v in listing.versions}
    wanted = sorted({i for i in ids if i in by_id})
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    with ThreadPoolExecutor(max_workers=4) as pool:
        read = dict(zip(wanted, pool.map(lambda i: reader.with_files(by_id[i], cache_dir), wanted), strict=True))
    versions = tuple(_with_files_of(v, read[v.id]) if v.id in read else v for v in observed.versions)
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
        if chosen.finalized and not proves_content(chosen, content):
            need_state.append(chosen.id)
        if chosen.unread_metadata:
            need_meta.append(chosen.id)
    return sorted(need_state), sorted(need_meta)


def _archived(candidates: list[ObservedVersion]) -> ObservedVersion | None:
    from .plan.observed import archived_candidate

    return archived_candidate(candidates)


def read_version(reader: ServerReader, version_id: str, *, cache_root: Path | None) -> ObservedVersion | None:
    """One dataset version by id, with its file list; None when no dataset version has that id."""
    version = reader.version(version_id)
    if version is None:
        return None
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    return reader.with_files(version, cache_dir)


def dataset_versions(reader: ServerReader, dataset: DatasetKey) -> tuple[ObservedVersion, ...]:
    """Summaries (no file lists) of every live version of ``dataset``, sorted by version then id."""
    observed = observe(reader, [dataset.project], {}, cache_root=None)
    return tuple(v for v in observed.versions if v.key.dataset == dataset and not v.archived)


def version_summaries(reader: ServerReader, version_ids: Iterable[str]) -> dict[str, ObservedVersion]:
    """Summaries (no file lists) of the dataset versions with these ids (one look-up each); others are left out."""
    return reader.summaries(version_ids)


def _with_files_of(version: ObservedVersion, read: ObservedVersion) -> ObservedVersion:
    """``version`` (as observed) with the file list, parents and reads of ``read`` (the same version, read)."""
    return replace(version, files=read.files, links=read.links, parent_ids=read.parent_ids, reads=read.reads,
                   inherited=read.inherited)


# --- what a reference names ---------------------------------------------------------------------------------------

HEX_ID = re.compile(r"^[0-9a-fA-F]{32}$")  # a dataset id


def parse_reference(ref: str) -> VersionKey | str:
    """A VersionKey for ``project/name@version``, the id itself for a dataset id."""
    if HEX_ID.match(ref):
        return ref.lower()
    try:
        return VersionKey.parse(ref)
    except ValueError:
        raise ReconcileError(f"{ref!r} is neither PROJECT/NAME@VERSION nor a 32-character dataset id") from None


def resolve_version(reader: ServerReader, ref: str) -> ObservedVersion:
    """The live version ``ref`` names (``project/name@version``, ``project/name@alias`` or an id), as listed (no
    file list); one-line errors for a dataset, version, alias or id that does not exist."""
    parsed = parse_reference(ref)
    if not isinstance(parsed, VersionKey):
        found = reader.version(parsed)
        if found is None:
            raise ReconcileError(f"no dataset version has the id {parsed}")
        return found
    versions = dataset_versions(reader, DatasetKey(parsed.project, parsed.name))
    if not versions:
        raise ReconcileError(f"unknown dataset {parsed.dataset}: the server has no version of it")
    chosen = choose_observed([v for v in versions if v.key == parsed])
    if chosen is not None:
        return chosen
    holders = [v for v in versions if parsed.version in v.properties.tags]
    if len(holders) == 1:
        return holders[0]
    if holders:
        found_versions = ", ".join(sorted(v.key.version for v in holders))
        raise ReconcileError(f"the alias {parsed.version!r} of {parsed.dataset} is on several versions "
                             f"({found_versions}); name the version")
    known = ", ".join(sorted({v.key.version for v in versions}))
    raise ReconcileError(f"{parsed.dataset} has no version or alias {parsed.version!r} (versions: {known})")


def resolve_reference(reader: ServerReader, ref: str, *, cache_root: Path | None) -> ObservedVersion:
    """The live version ``ref`` names, with its file list; one-line errors for what does not exist."""
    version_id = resolve_version(reader, ref).id
    found = read_version(reader, version_id, cache_root=cache_root)
    if found is None:
        raise ReconcileError(f"no dataset version has the id {version_id}")
    return found
