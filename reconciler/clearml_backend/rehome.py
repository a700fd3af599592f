"""Re-homing a finalized version: the files it inherits are copied into chunks of its own, its file list and
``Dataset Struct`` then name no parent, and the versions built on it are rewritten to read those files from it.
Afterwards nothing of the group reads the versions before it, so retention can delete them whole.

The format is the SDK's (1.16 and 2.x read it back unchanged): new chunks are ``data_NNN`` artifacts after the
version's own; its ``state`` lists every file with the version itself as ``parent_dataset_id``, its
``dependency_graph`` is ``{id: []}`` and ``dependency_chunk_lookup`` counts all its chunks; a rewritten version's
entries that were read outside the group name the re-homed version and its new chunk, and its graph, chunk
lookup and ``Dataset Struct`` (which the SDK 2.x walks before downloading) keep only versions of the group.

Order, so that every version stays readable whatever point a run stops at (kill -9 included):
1. the copies are zipped (each file's bytes checked against its sha256 as it is zipped), uploaded to paths
   named by the chunk (a rerun overwrites them) and checked in storage;
2. the new file list is stored under a new name (the SDK caches file lists by address), then ONE forced
   ``tasks.edit`` switches chunks, file list, ``Dataset Struct`` and bookkeeping together (the real server
   takes it on completed and published versions), and everything is read back;
3. the file list it replaced is deleted (its address is recorded in the same edit first);
4. then each version built on it, parents first, the same way (steps 2 and 3).
Nothing of any other version is deleted here: that is retention's delete, after this has been read back.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import FileEntry, VersionKey
from . import codec
from .api import BackendError
from .draft import Chunk, Draft
from .upload import UploadOptions, upload_files
from .writer import ServerWriter, output_base

REHOMED_FROM = "rehomed_from"  # Reconciler section: the parents a re-homed version had (comma-separated ids)
REPLACED = "replaced"  # Reconciler section: the address of the file list a re-home replaced (deleted after it)


@dataclass(frozen=True, slots=True)
class Rehomed:
    files: int  # files copied into new chunks
    file_bytes: int  # their size
    stored_bytes: int  # the size of the new chunks
    rewritten: int  # file lists rewritten (the re-homed version's and those built on it)


def rehome_version(writer: ServerWriter, key: VersionKey, version_id: str,
                   rewrites: Sequence[tuple[VersionKey, str]], group: Sequence[str], *, workers: int = 4,
                   tmp_dir: Path | None = None) -> Rehomed:
    """Re-home ``version_id`` and rewrite the file lists of ``rewrites`` (versions built on it, parents first)
    to read from it what they read outside ``group`` (the version and those built on it that stay).
    Idempotent: what a stopped run did is found and kept."""
    files, file_bytes, stored, rewritten = _rehome_root(writer, key, version_id, tmp_dir, workers)
    members = {version_id, *group}
    root_state = _fresh_state(writer, version_id)
    for member_key, member_id in rewrites:
        rewritten += _rewrite_member(writer, member_key, member_id, version_id, root_state, members)
    return Rehomed(files, file_bytes, stored, rewritten)


def _fresh_state(writer: ServerWriter, version_id: str) -> dict[str, Any]:
    task = writer.reader.full_task(version_id)
    state = writer.reader.read_state(task, None)  # never a cached copy: this changes finalized file lists
    if state is None:
        raise BackendError(f"version {version_id} has no file list on the server")
    return state


def _rehome_root(writer: ServerWriter, key: VersionKey, version_id: str, tmp_dir: Path | None, workers: int
                 ) -> tuple[int, int, int, int]:
    task = writer.reader.full_task(version_id)
    state = writer.reader.read_state(task, None)
    if state is None:
        raise BackendError(f"re-homing {key}: version {version_id} has no file list on the server")
    entries, links, graph = codec.read_state(state)
    inherited = [e for e in entries if e.owner_id != version_id]
    if not inherited and all(s.owner_id == version_id for s in links) and not graph.get(version_id) and \
            set(graph) <= {version_id}:
        return 0, 0, 0, 0  # done already
    own = [e for e in entries if e.owner_id == version_id]
    indexes = [i for e in own if (i := codec.chunk_index(e.chunk)) is not None]
    first = max(indexes) + 1 if indexes else 0
    prefix = codec.storage_prefix(output_base(task) or writer.api.cfg.files_host, key, version_id)
    with tempfile.TemporaryDirectory(prefix="reconcile-rehome-", dir=tmp_dir) as tmp:
        chunks, moved = _copy_files(writer, key, version_id, state, inherited, first, prefix, Path(tmp), workers)
    new_entries = [e for e in entries if e.owner_id == version_id] + [
        codec.StateEntry(e.path, e.size, e.sha256, version_id, moved[e.path]) for e in inherited]
    new_links = [codec.StateLink(s.link, version_id) for s in links]
    count = first + len(chunks)
    raw = codec.state_json(version_id, new_entries, new_links, {version_id: []}, {version_id: count})
    struct = codec.dataset_struct({version_id: []}, {version_id: codec.struct_node(task)})
    stale = [k for k in codec.artifacts(task) if (i := codec.chunk_index(k)) is not None and i >= first]
    runtime = dict(task.get("runtime") or {})
    compressed = sum(int(a.get("content_size") or 0) for k, a in codec.artifacts(task).items()
                     if codec.chunk_index(k) is not None and k not in stale) + sum(c["content_size"] for c in chunks)
    runtime["ds_total_size_compressed"] = compressed
    old_parents = ",".join(graph.get(version_id) or ())
    book = {"parent_id": "", **({REHOMED_FROM: old_parents} if old_parents else {})}
    _switch(writer, key, task, prefix, raw, chunks, stale, struct, book, runtime)
    return len(inherited), sum(e.size for e in inherited), sum(c["content_size"] for c in chunks), 1


def _copy_files(writer: ServerWriter, key: VersionKey, version_id: str, state: Mapping[str, Any],
                inherited: Sequence[codec.StateEntry], first: int, prefix: str, tmp: Path, workers: int
                ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Fetch ``inherited`` from the chunks that hold them, zip them into chunks ``first``.. of the version (each
    file checked against its sha256 as it is zipped), store them and check each in storage; their artifact
    entries, and path -> chunk."""
    if not inherited:
        return [], {}
    local = writer.reader.fetch(inherited, tmp / "files")
    files = [FileEntry(e.path, e.size, e.sha256, str(local[e.path])) for e in inherited]
    draft = Draft(key, version_id, prefix, ())
    draft.chunks = [Chunk(codec.chunk_name(i), "", 0, "", 0) for i in range(first)]  # its own: new ones follow
    upload_files(writer.api, writer.stores, draft, files,
                 UploadOptions(workers=workers, tmp_dir=tmp, register=False))
    entries = []
    for chunk in draft.chunks[first:]:
        there = writer.stores.size(chunk.uri)
        if there is None or (there >= 0 and there != chunk.size):
            raise BackendError(f"re-homing {key}: chunk {chunk.name} is not in storage as uploaded ({chunk.uri})")
        entries.append(codec.artifact(chunk.name, kind="custom", uri=chunk.uri, size=chunk.size, sha256=chunk.sha256,
                                      stamp=int(time.time()), preview=f"{chunk.files} files re-homed",
                                      content_type="application/zip"))
    return entries, {path: e.chunk for path, e in draft.own.items()}


def _rewrite_member(writer: ServerWriter, key: VersionKey, version_id: str, root_id: str,
                    root_state: Mapping[str, Any], group: set[str]) -> int:
    """Make a version built on the re-homed one read from it what it read outside the group; 1 when rewritten."""
    task = writer.reader.full_task(version_id)
    state = writer.reader.read_state(task, None)
    if state is None:
        raise BackendError(f"re-homing: {key} has no file list on the server")
    entries, links, graph = codec.read_state(state)
    root_entries, root_links, _ = codec.read_state(root_state)
    at_root = {e.path: e for e in root_entries}
    root_link_paths = {s.link.path for s in root_links}
    outside = [e for e in entries if e.owner_id not in group] + [s for s in links if s.owner_id not in group]
    if not outside and set(graph) <= group and all(set(ps) <= group for ps in graph.values()):
        return 0  # done already
    new_entries = []
    for e in entries:
        if e.owner_id in group:
            new_entries.append(e)
            continue
        held = at_root.get(e.path)
        if held is None or held.sha256 != e.sha256 or held.owner_id != root_id:
            raise BackendError(f"re-homing: {key} reads {e.path} from version {e.owner_id}, and the re-homed "
                               f"version {root_id} does not hold those bytes; nothing of {key} was changed")
        new_entries.append(codec.StateEntry(e.path, e.size, e.sha256, root_id, held.chunk))
    new_links = []
    for s in links:
        if s.owner_id not in group and s.link.path not in root_link_paths:
            raise BackendError(f"re-homing: {key} reads the link {s.link.path} from version {s.owner_id}, which the "
                               f"re-homed version {root_id} does not hold; nothing of {key} was changed")
        new_links.append(s if s.owner_id in group else codec.StateLink(s.link, root_id))
    kept = {k: [p for p in ps if p in group] for k, ps in graph.items() if k in group}
    kept[root_id] = []
    used = {e.owner_id for e in new_entries} | {s.owner_id for s in new_links}
    new_graph = codec.lineage_graph(version_id, graph.get(version_id) or [], kept, used)
    lookup = {str(k): int(v) for k, v in (state.get("dependency_chunk_lookup") or {}).items() if isinstance(v, int)}
    root_lookup = root_state.get("dependency_chunk_lookup") or {}
    lookup[root_id] = int(root_lookup.get(root_id, lookup.get(root_id, 0)))
    counts = {k: lookup.get(k, 0) for k in new_graph}
    raw = codec.state_json(version_id, new_entries, new_links, new_graph, counts)
    prefix = codec.storage_prefix(output_base(task) or writer.api.cfg.files_host, key, version_id)
    draft = Draft(key, version_id, prefix, tuple(new_graph.get(version_id) or ()))
    struct = writer.struct_lineage(draft, new_graph, codec.struct_node(task))
    _switch(writer, key, task, prefix, raw, [], [], struct, {}, None)
    return 1


def _switch(writer: ServerWriter, key: VersionKey, task: Mapping[str, Any], prefix: str, raw: bytes,
            chunks: Sequence[Mapping[str, Any]], stale: Sequence[str], struct: Mapping[str, Any],
            book: Mapping[str, str], runtime: Mapping[str, Any] | None) -> None:
    """Store the file list ``raw`` under a new name, then switch the version to it (with ``chunks`` registered,
    the ``stale`` chunk artifacts dropped, the ``Dataset Struct`` and bookkeeping) in one forced edit; read it
    back; then delete the file list it replaced."""
    version_id = str(task["id"])
    digest = hashlib.sha256(raw).hexdigest()
    uri = f"{prefix}/{codec.STATE_KEY}/{codec.STATE_KEY}.{digest[:12]}.json"
    with tempfile.NamedTemporaryFile(prefix="reconcile-", suffix=".json", delete=False) as handle:
        handle.write(raw)
    try:
        writer.stores.upload(uri, Path(handle.name), len(raw))
    finally:
        Path(handle.name).unlink()
    if writer.stores.size(uri) is None:
        raise BackendError(f"re-homing {key}: its new file list is not in storage ({uri})")
    arts = codec.artifacts(task)
    old = arts.get(codec.STATE_KEY) or {}
    old_uri = str(old.get("uri") or "")
    new_state = codec.artifact(codec.STATE_KEY, kind="dict", uri=uri, size=len(raw), sha256=digest,
                               stamp=int(time.time()), preview=str((old.get("type_data") or {}).get("preview") or ""),
                               content_type="application/json",
                               display=list(old.get("display_data") or []) or None)
    drop = {codec.STATE_KEY, *stale, *(c["key"] for c in chunks)}
    execution = dict(task.get("execution") or {})
    execution["artifacts"] = [a for a in execution.get("artifacts") or [] if a.get("key") not in drop]
    execution["artifacts"] += [*chunks, new_state]
    configuration = {**(task.get("configuration") or {}), **struct}
    params = {s: dict(v) for s, v in (task.get("hyperparams") or {}).items()}
    section = params.setdefault(codec.SECTION, {})
    for k, v in {**book, **({REPLACED: old_uri} if old_uri and old_uri != uri else {})}.items():
        section[k] = {"section": codec.SECTION, "name": k, "value": v, "type": "str"}
    edits: dict[str, Any] = dict(execution=execution, configuration=configuration, hyperparams=params)
    if runtime is not None:
        edits["runtime"] = dict(runtime)
    writer.api.call("tasks.edit", write=True, task=version_id, force=True, **edits)
    after = writer.reader.full_task(version_id)
    stored = codec.artifacts(after)
    if codec.artifact_uri(after, codec.STATE_KEY) != uri:
        raise BackendError(f"re-homing {key}: the server did not keep its new file list")
    for c in chunks:
        got = stored.get(c["key"]) or {}
        if got.get("uri") != c["uri"] or got.get("hash") != c["hash"]:
            raise BackendError(f"re-homing {key}: the server did not keep its new chunk {c['key']}")
    struct_value = ((after.get("configuration") or {}).get(codec.STRUCT_CONFIG) or {}).get("value")
    if json.loads(str(struct_value or "{}")) != json.loads(struct[codec.STRUCT_CONFIG]["value"]):
        raise BackendError(f"re-homing {key}: the server did not keep its new Dataset Struct")
    values = codec.section_values(after)
    if any(values.get(k, "") != v for k, v in book.items()):
        raise BackendError(f"re-homing {key}: the server did not keep its bookkeeping")
    gone = [old_uri] if old_uri and old_uri != uri else []
    gone += [str(a.get("uri")) for k, a in arts.items() if k in stale and a.get("uri")
             and a.get("uri") not in {c["uri"] for c in chunks}]
    left = writer.stores.delete_all(gone)
    if left:
        raise BackendError(f"re-homing {key}: objects it replaced are still there after the delete: "
                           + ", ".join(left))
