"""What this tool stores on a ClearML server, and how it reads it back: one pure module (no IO, no clock).

A dataset version is a task (``type: data_processing``, system tag ``dataset``) in the hidden project
``<project>/.datasets/<name>``; its version string is ``runtime.version``. Its file list is the ``state``
artifact (the clearml SDK's format, so ``Dataset.get`` reads what this tool writes), its data are zip chunks in
artifacts ``data``, ``data_001``, ...

The tool's own bookkeeping, on every version it creates:
- system tag ``reconciler-managed``, set in the same call that creates the task;
- hyper-parameter section ``Reconciler``: ``managed_by``, ``parent_id``, ``content_digest``
  (:meth:`Content.digest` of the finalized content), ``metadata`` (canonical JSON of the manifest metadata, also
  the ``metadata`` artifact that ``Dataset.get_metadata()`` reads), ``statistics_digest`` (the content digest
  the stored ``statistics`` artifact describes).
Everything here is checked against payloads recorded from the real clearml-server.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from json.encoder import encode_basestring_ascii as _encode_string  # what json.dumps uses
from operator import attrgetter
from typing import IO, Any

from ..model import (
    ALL_OBJECTS,
    Content,
    FileEntry,
    LinkEntry,
    ObservedVersion,
    Properties,
    StoredFile,
    StoredFiles,
    StoredObject,
    VersionKey,
    VersionLayout,
    canonical_json,
    freeze_json,
    thaw_json,
)

MANAGED_TAG = "reconciler-managed"
SECTION = "Reconciler"
PROPERTIES_SECTION = "properties"
DATASET_TAG = "dataset"
HIDDEN_TAG = "hidden"
ARCHIVED_TAG = "archived"
DATASETS_SEGMENT = "/.datasets/"
STATE_KEY = "state"
METADATA_KEY = "metadata"
STATISTICS_KEY = "statistics"
CHECKS_KEY = "checks"  # the results of a version's checks (reconciler.checks.results)
DATA_KEY = "data"
DATA_PREFIX = "data_"
TASK_TYPE = "data_processing"
STRUCT_CONFIG = "Dataset Struct"

# what observation asks for per task (a MongoDB-like projection)
TASK_FIELDS: tuple[str, ...] = (
    "id", "name", "project", "status", "tags", "system_tags", "comment", "runtime", "last_update", "created",
    f"hyperparams.{SECTION}", "execution.artifacts",
)
EXPIRED_AT = "expired_at"  # Reconciler section: when retention archived the version (ISO 8601)
FREED = "freed"  # Reconciler section: artifact keys whose objects retention deleted (comma-separated)
REHOME_PENDING = "rehome_pending"  # Reconciler section: "1" from a re-home's switch until the versions on it follow


def hidden_project(project: str, name: str) -> str:
    return f"{project}{DATASETS_SEGMENT}{name}"


def split_hidden_project(full_name: str) -> tuple[str, str] | None:
    """``(project, name)`` of a hidden dataset project name, or None for any other project."""
    if DATASETS_SEGMENT not in full_name:
        return None
    project, name = full_name.rsplit(DATASETS_SEGMENT, 1)
    return (project, name) if project and name and "/" not in name else None


def chunk_name(index: int) -> str:
    """The artifact name of data chunk ``index`` (the SDK's naming: ``data``, ``data_001``, ...)."""
    return DATA_KEY if index == 0 else f"{DATA_PREFIX}{index:03d}"


def chunk_index(name: str) -> int | None:
    """The chunk index of a data artifact name, or None when the name is not a data chunk."""
    if name == DATA_KEY:
        return 0
    if name.startswith(DATA_PREFIX) and name[len(DATA_PREFIX):].isdigit():
        return int(name[len(DATA_PREFIX):])
    return None


def storage_prefix(base: str, key: VersionKey, version_id: str) -> str:
    """Where a version's artifacts live under a storage root (the SDK's layout)."""
    return f"{base.rstrip('/')}/{hidden_project(key.project, key.name)}/{key.name}.{version_id}/artifacts"


# --- bookkeeping -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bookkeeping:
    """The ``Reconciler`` hyper-parameter section of a version this tool created."""

    parent_ids: tuple[str, ...] = ()
    content_digest: str | None = None
    metadata_json: str | None = None  # canonical JSON; None: not recorded
    statistics_digest: str | None = None
    run_token: str = ""  # the creating run's random token: finds the draft again after a lost answer
    applied_json: str | None = None  # the properties this tool last wrote (applied_properties_json)
    pruned: bool = False  # archived by this tool's prune (restoring it is no drift)
    aliases: tuple[str, ...] = ()  # the tags apply set on the version as aliases
    splits_json: str | None = None  # the version's declared splits: canonical JSON {name: [glob, ...]}

    def to_section(self) -> dict[str, dict[str, str]]:
        values = {
            "managed_by": "reconciler",
            "parent_id": ",".join(self.parent_ids),
            "content_digest": self.content_digest or "",
            "metadata": self.metadata_json if self.metadata_json is not None else "",
            "statistics_digest": self.statistics_digest or "",
            "run_token": self.run_token,
            "applied": self.applied_json or "",
            "pruned": "1" if self.pruned else "",
            "aliases": json.dumps(sorted(self.aliases)) if self.aliases else "",
        }
        if self.splits_json:
            values["splits"] = self.splits_json
        return {k: {"section": SECTION, "name": k, "value": v, "type": "str"} for k, v in values.items()}


def section_values(task: Mapping[str, Any], section_name: str = SECTION) -> dict[str, str]:
    section = ((task.get("hyperparams") or {}).get(section_name)) or {}
    return {str(k): str((v or {}).get("value", "")) for k, v in section.items() if isinstance(v, Mapping)}


def read_bookkeeping(task: Mapping[str, Any]) -> Bookkeeping:
    values = section_values(task)
    parents = tuple(p for p in values.get("parent_id", "").split(",") if p)
    return Bookkeeping(
        parent_ids=parents,
        content_digest=values.get("content_digest") or None,
        metadata_json=values.get("metadata") or None,
        statistics_digest=values.get("statistics_digest") or None,
        run_token=values.get("run_token", ""),
        applied_json=values.get("applied") or None,
        pruned=values.get("pruned") == "1",
        aliases=_string_list(values.get("aliases", "")),
        splits_json=values.get("splits") or None,
    )


def _string_list(text: str) -> tuple[str, ...]:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def aliases_json(aliases: Iterable[str]) -> str:
    """How the aliases apply set on a version are recorded (``Bookkeeping.aliases``)."""
    return Bookkeeping(aliases=tuple(aliases)).to_section()["aliases"]["value"]


def applied_json(properties: Properties) -> str:
    """How the properties this tool wrote are recorded (drift is a difference from them)."""
    return properties.compare_key()


def read_applied(book: Bookkeeping) -> Properties | None:
    if not book.applied_json:
        return None
    try:
        value = json.loads(book.applied_json)
    except ValueError:
        return None
    return Properties.from_json(value) if isinstance(value, dict) else None


def hyperparams(bookkeeping: Bookkeeping, version: str) -> dict[str, dict[str, dict[str, str]]]:
    """The hyper-parameters a new version is created with (the SDK keeps the version in ``properties``)."""
    return {
        PROPERTIES_SECTION: {"version": {"section": PROPERTIES_SECTION, "name": "version", "value": version}},
        SECTION: bookkeeping.to_section(),
    }


def _json_object(text: str | None) -> Mapping[str, Any]:
    """The JSON object ``text`` holds, frozen; empty when there is none or it is not an object."""
    value: Any = {}
    if text:
        try:
            value = json.loads(text)
        except ValueError:
            value = {}
    frozen: Mapping[str, Any] = freeze_json(value if isinstance(value, dict) else {})
    return frozen


def _metadata(book: Bookkeeping) -> Mapping[str, Any]:
    return _json_object(book.metadata_json)


def task_summary(task: Mapping[str, Any], project_name: str) -> ObservedVersion | None:
    """The version a listed task stands for (no file list yet); None when the task is not a dataset version.

    Its metadata are what consumers read, its metadata artifacts: an artifact whose hash is that of what this
    tool last wrote is taken as that value; the others are named in ``unread_metadata`` (their value here is a
    placeholder until :func:`with_metadata` gives the downloaded ones).
    """
    where = split_hidden_project(project_name)
    runtime = task.get("runtime") or {}
    version = runtime.get("version")
    if where is None or not version:
        return None
    book = read_bookkeeping(task)
    system_tags = set(task.get("system_tags") or [])
    applied = read_applied(book)
    known, unread = known_metadata(task, applied, _metadata(book))
    return ObservedVersion(
        key=VersionKey(where[0], str(task.get("name")), str(version)),
        id=str(task["id"]),
        status=str(task.get("status") or "created"),
        properties=with_metadata(Properties(description(task), frozenset(task.get("tags") or ()),
                                            splits=_json_object(book.splits_json)), known),
        parent_ids=book.parent_ids,
        file_count=_int(runtime.get("ds_file_count")),
        total_size=_int(runtime.get("ds_total_size")),
        managed=MANAGED_TAG in system_tags,
        archived=ARCHIVED_TAG in system_tags,
        last_update=str(task.get("last_update") or ""),
        content_digest=book.content_digest,
        statistics_digest=book.statistics_digest,
        applied=applied,
        unread_metadata=unread,
        pruned=book.pruned,
        lost_system_tags=() if DATASET_TAG in system_tags else (DATASET_TAG,),
        aliases=book.aliases,
        created=str(task.get("created") or ""),
        objects=stored_objects(task, freed_keys(task)),
        freed=tuple(sorted(freed_keys(task))),
        expired_at=section_values(task).get(EXPIRED_AT, ""),
        rehome_pending=section_values(task).get(REHOME_PENDING) == "1",
    )


def freed_keys(task: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(k for k in section_values(task).get(FREED, "").split(",") if k)


def stored_objects(task: Mapping[str, Any], freed: frozenset[str] = frozenset()) -> tuple[StoredObject, ...]:
    """Every artifact of the task that names a stored object (but the ``freed`` ones), with its recorded size."""
    out = []
    for key, art in sorted(artifacts(task).items()):
        uri = art.get("uri")
        if uri and key not in freed:
            out.append(StoredObject(key, str(uri), _int(art.get("content_size")) or 0))
    return tuple(out)


# what the SDK writes as the comment of every task it creates ("Auto-generated at <time> UTC by <user>@<host>")
_AUTO_DESCRIPTION = re.compile(r"Auto-generated (at|on) [^\n]* by [^\s@]*@\S*\s*")


def description(task: Mapping[str, Any]) -> str:
    """A version's description as a person wrote it: the SDK's automatic one is no description."""
    comment = str(task.get("comment") or "")
    return "" if _AUTO_DESCRIPTION.fullmatch(comment) else comment


def is_metadata_artifact(key: str) -> bool:
    """Whether an artifact of a dataset version is metadata (``Dataset.set_metadata``): not its file list, a
    data chunk, or the statistics and check results this tool stores."""
    return key not in (STATE_KEY, STATISTICS_KEY, CHECKS_KEY) and chunk_index(key) is None


def metadata_artifacts(task: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The metadata artifacts of a version by name (``metadata`` is the one ``get_metadata()`` reads)."""
    return {k: a for k, a in artifacts(task).items() if is_metadata_artifact(k)}


def json_artifact_hash(value: Any) -> str:
    """The ``hash`` of a dict artifact holding ``value`` (the SDK and this tool write the same bytes)."""
    return hashlib.sha256(json_bytes(thaw_json(value))).hexdigest()


def known_metadata(task: Mapping[str, Any], applied: Properties | None, recorded: Mapping[str, Any]
                   ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The metadata artifacts whose value is known without a download (name -> value), and the names of the
    others. Known: those whose hash is the hash of what this tool last wrote."""
    written: dict[str, Any] = {METADATA_KEY: applied.metadata if applied is not None else recorded}
    if applied is not None:
        written.update(applied.metadata_artifacts)
    known: dict[str, Any] = {}
    unread: list[str] = []
    for name, art in sorted(metadata_artifacts(task).items()):
        if name in written and art.get("hash") and art.get("hash") == json_artifact_hash(written[name]):
            known[name] = written[name]
        else:
            unread.append(name)
    return known, tuple(unread)


def with_metadata(properties: Properties, values: Mapping[str, Any]) -> Properties:
    """``properties`` with the metadata artifacts ``values`` (name -> value) as consumers read them: a version
    without a ``metadata`` artifact has empty metadata; values that are not JSON objects are left out."""
    meta = values.get(METADATA_KEY)
    named = {k: v for k, v in sorted(values.items()) if k != METADATA_KEY and isinstance(v, Mapping)}
    return properties.replace(metadata=meta if isinstance(meta, Mapping) else {}, metadata_artifacts=named)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def artifacts(task: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The task's artifacts by key (output mode)."""
    rows = ((task.get("execution") or {}).get("artifacts")) or []
    return {str(a["key"]): a for a in rows if isinstance(a, Mapping) and a.get("key")}


def artifact_uri(task: Mapping[str, Any], key: str) -> str | None:
    art = artifacts(task).get(key)
    uri = art.get("uri") if art else None
    return str(uri) if uri else None


# --- the state artifact (the SDK's dataset format) -------------------------------------------------------------


StateEntry = StoredFile  # a file entry of a version's state: path, size, sha256, owner (parent_dataset_id), chunk


@dataclass(frozen=True, slots=True)
class StateLink:
    link: LinkEntry
    owner_id: str  # the version that registered it


def read_state(state: Mapping[str, Any]) -> tuple[list[StateEntry], list[StateLink], dict[str, list[str]]]:
    """Entries, links and the dependency graph of a ``state`` artifact."""
    new = tuple.__new__
    entries = [
        new(StateEntry, (str(e["relative_path"]), int(e.get("size") or 0), str(e.get("hash") or ""),
                         str(e.get("parent_dataset_id") or ""), str(e.get("artifact_name") or "")))
        for e in state.get("dataset_file_entries") or []
        if (type(e) is dict or isinstance(e, Mapping)) and e.get("relative_path")  # JSON gives dicts: no ABC check
    ]
    links = [
        StateLink(LinkEntry(str(e["relative_path"]), str(e.get("link")), _int(e.get("size")),
                            str(e["hash"]) if e.get("hash") else None), str(e.get("parent_dataset_id") or ""))
        for e in state.get("dataset_link_entries") or [] if isinstance(e, Mapping) and e.get("relative_path")
    ]
    graph = {str(k): [str(p) for p in (v or [])] for k, v in (state.get("dependency_graph") or {}).items()}
    return entries, links, graph


def stored_files(stream: IO[bytes], version_id: str) -> tuple[StoredFiles, list[LinkEntry]]:
    """The files (as :func:`stored_file` gives them) and links of the ``state`` document read from ``stream``.

    The document is read piece by piece and each file entry is kept compactly as soon as it is decoded: a file list
    of a million files never exists as one string nor as a million dicts. ``ValueError`` when it is not a JSON
    object.
    """
    files = StoredFiles()
    add = files.append

    def entry(e: Any) -> None:
        if (type(e) is dict or isinstance(e, Mapping)) and e.get("relative_path"):  # as read_state takes them
            add(str(e["relative_path"]), int(e.get("size") or 0), str(e.get("hash") or ""),
                str(e.get("parent_dataset_id") or "") or version_id, str(e.get("artifact_name") or "") or DATA_KEY)

    head = stream.read(4)
    if len(head) >= 2 and b"\0" in head[:4]:  # UTF-16 or UTF-32 (json.loads detects them): read whole
        doc = json.loads(head + stream.read())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        for e in doc.get("dataset_file_entries") or []:
            entry(e)
    else:
        doc = _JsonStream(head, stream).state(entry)
    _, links, _ = read_state({"dataset_link_entries": doc.get("dataset_link_entries")})
    return files, [link.link for link in links]


_WS = re.compile(r"[ \t\n\r]*")
_PIECE = 1 << 20


class _JsonStream:
    """A JSON text read from a binary stream in pieces (UTF-8, a BOM allowed, as ``json.loads`` of bytes)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._stream = stream
        self._text = codecs.getincrementaldecoder("utf-8-sig")("surrogatepass")
        self.buf = self._text.decode(head)
        self.pos = 0
        self._decode = json.JSONDecoder().raw_decode

    def _more(self) -> bool:
        """Append the next piece (at least as much as is buffered: a long value is not decoded again and again);
        False at the end (the buffer unchanged)."""
        raw = self._stream.read(max(_PIECE, len(self.buf) - self.pos))
        piece = self._text.decode(raw, final=not raw)
        if not raw and not piece:
            return False
        self.buf, self.pos = self.buf[self.pos :] + piece, 0
        return True

    def _skip(self) -> str:
        """Skip white space; the next character ('' at the end)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]  # always matches
            if self.pos < len(self.buf) or not self._more():
                return self.buf[self.pos : self.pos + 1]

    def _char(self, allowed: str) -> str:
        c = self._skip()
        if not c or c not in allowed:
            raise ValueError(f"expected one of {allowed!r} at {self.pos}")
        self.pos += 1
        return c

    def value(self) -> Any:
        self._skip()
        while True:
            try:
                value, end = self._decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if not self._more():
                    raise
                continue
            if end < len(self.buf) or not self._more():  # a value ending the buffer may go on (a number)
                self.pos = end
                return value

    def state(self, entry: Callable[[Any], None]) -> dict[str, Any]:
        """The top-level object; each element of its ``dataset_file_entries`` array goes to ``entry`` instead."""
        doc: dict[str, Any] = {}
        self._char("{")
        if self._skip() == "}":
            self.pos += 1
        else:
            while True:
                key = self.value()
                if not isinstance(key, str):
                    raise ValueError("an object key is not a string")
                self._char(":")
                if key == "dataset_file_entries" and self._skip() == "[":
                    self.pos += 1
                    if self._skip() == "]":
                        self.pos += 1
                    else:
                        while True:
                            entry(self.value())
                            if self._char(",]") == "]":
                                break
                    doc[key] = None
                else:
                    doc[key] = self.value()
                if self._char(",}") == "}":
                    break
        if self._skip():
            raise ValueError(f"extra data at {self.pos}")
        return doc


def objects_read(version_id: str, entries: Iterable[StateEntry], graph: Mapping[str, Sequence[str]]
                 ) -> set[tuple[str, str]]:
    """(version id, artifact key) of the objects of other versions that the SDK reads to download this one:
    :data:`ALL_OBJECTS` of every version that owns one of its files (``get_local_copy`` downloads every chunk
    of each), and the ``state`` of every other version in its dependency graph (loaded while walking it). The
    planner adds the ``state`` of every ancestor (the SDK walks the whole ancestry in the ``Dataset Struct``)."""
    owners = {e.owner_id for e in entries if e.owner_id and e.owner_id != version_id}
    nodes = set(graph) | {p for parents in graph.values() for p in parents or ()}
    out = {(node, STATE_KEY) for node in nodes if node and node != version_id}
    return out | {(owner, ALL_OBJECTS) for owner in owners}


def layout(version_id: str, state: Mapping[str, Any]) -> VersionLayout:
    """Parents (the ``dependency_graph`` entry of the version itself) and own/inherited files of a ``state``."""
    entries, links, graph = read_state(state)
    own = [e for e in entries if e.owner_id == version_id]
    own_links = [s for s in links if s.owner_id == version_id]
    return VersionLayout(
        parent_ids=tuple(graph.get(version_id) or ()),
        file_count=len(entries) + len(links),
        total_size=sum(e.size for e in entries) + sum(s.link.size or 0 for s in links),
        own_files=len(own) + len(own_links),
        own_size=sum(e.size for e in own) + sum(s.link.size or 0 for s in own_links),
    )


def state_files(entries: Iterable[StateEntry]) -> tuple[FileEntry, ...]:
    return tuple(sorted(FileEntry(e.path, e.size, e.sha256) for e in entries))


def entries_content(entries: Iterable[StateEntry], links: Iterable[StateLink]) -> Content:
    """The content a version's file entries and links stand for (the one way a file list becomes a Content)."""
    files = {e.path: FileEntry(e.path, e.size, e.sha256) for e in sorted(entries, key=_PATH)}
    link_map = {s.link.path: s.link for s in sorted(links, key=lambda s: s.link.path)}
    return Content(files, link_map)


def state_content(state: Mapping[str, Any]) -> Content:
    """The content a ``state`` artifact describes."""
    entries, links, _ = read_state(state)
    return entries_content(entries, links)


def with_state(version: ObservedVersion, state: Mapping[str, Any] | None) -> ObservedVersion:
    """``version`` with its file list (empty when it has none), its parents as the file list records them, and
    the objects of other versions its files are read from."""
    if state is None:
        return replace(version, files=(), links=())
    entries, links, graph = read_state(state)
    parents = tuple(graph.get(version.id) or version.parent_ids)
    reads = tuple(sorted(objects_read(version.id, entries, graph)))
    inherited = [e.size for e in entries if e.owner_id and e.owner_id != version.id]
    return replace(version, files=state_files(entries), links=tuple(sorted(s.link for s in links)),
                   parent_ids=parents, reads=reads, inherited=(len(inherited), sum(inherited)))


def stored_file(entry: StateEntry, version_id: str) -> StoredFile:
    """A file entry of ``version_id``'s file list and where its bytes are (its own chunk when it names none)."""
    return StoredFile(entry.path, entry.size, entry.sha256, entry.owner_id or version_id, entry.chunk or DATA_KEY)


def state_document(version_id: str, entries: Sequence[StateEntry], links: Sequence[StateLink],
                   graph: Mapping[str, Sequence[str]], chunk_counts: Mapping[str, int]) -> dict[str, Any]:
    """The ``state`` artifact of a finalized version, as the SDK writes it in ``finalize()``."""
    return {
        "file_count": len(entries) + len(links),
        "total_size": sum(e.size for e in entries) + sum(lnk.link.size or 0 for lnk in links),
        "dataset_file_entries": [
            {"relative_path": e.path, "hash": e.sha256, "parent_dataset_id": e.owner_id, "size": e.size,
             "artifact_name": e.chunk}
            for e in sorted(entries, key=_PATH)
        ],
        "dataset_link_entries": [
            {"link": s.link.url, "relative_path": s.link.path, "parent_dataset_id": s.owner_id,
             "size": s.link.size, "hash": s.link.etag}
            for s in sorted(links, key=lambda s: s.link.path)
        ],
        "dependency_graph": {k: list(v) for k, v in graph.items()},
        "id": version_id,
        "dirty": False,
        "dependency_chunk_lookup": dict(chunk_counts),
    }


def state_json(version_id: str, entries: Sequence[StateEntry], links: Sequence[StateLink],
               graph: Mapping[str, Sequence[str]], chunk_counts: Mapping[str, int]) -> bytes:
    """``json.dumps(state_document(...)).encode()``, the same bytes, without a dict per file entry."""
    token = f"@@entries-{version_id}@@"
    doc = state_document(version_id, [], links, graph, chunk_counts)
    doc["file_count"] = len(entries) + len(links)
    doc["total_size"] = sum(e.size for e in entries) + sum(lnk.link.size or 0 for lnk in links)
    doc["dataset_file_entries"] = token
    head, _, tail = json.dumps(doc).partition(json.dumps(token))
    enc = _encode_string
    owners = {o: enc(o) for o in {e.owner_id for e in entries}}  # a few versions and chunks: encoded once each
    chunks = {c: enc(c) for c in {e.chunk for e in entries}}
    parts = [f'{{"relative_path": {enc(path)}, "hash": {enc(sha)}, "parent_dataset_id": {owners[owner]}, '
             f'"size": {int(size)}, "artifact_name": {chunks[chunk]}}}'
             for path, size, sha, owner, chunk in _in_path_order(entries)]
    return "".join((head, "[", ", ".join(parts), "]", tail)).encode()


def _in_path_order(entries: Sequence[StateEntry]) -> Sequence[StateEntry]:
    """``entries`` sorted by path (as they are when read in order: a linear check first)."""
    paths = [e.path for e in entries]
    if all(map(operator.lt, paths, islice(paths, 1, None))):
        return entries
    return sorted(entries, key=_PATH)


_PATH = attrgetter("path")


@dataclass(frozen=True, slots=True)
class Changes:
    added: int = 0
    removed: int = 0
    modified: int = 0
    size: int = 0  # bytes added + modified + removed

    def display(self) -> list[list[str]]:
        return [["files added", str(self.added)], ["files removed", str(self.removed)],
                ["files modified", str(self.modified)]]


def runtime(name: str, version: str, version_id: str, *, file_count: int, link_count: int, total_size: int,
            compressed: int, changes: Changes) -> dict[str, Any]:
    """``runtime``: the version string and the cheap summary the UI and the SDK read."""
    return {
        "orig_dataset_name": name,
        "orig_dataset_id": version_id,
        "version": version,
        "ds_file_count": file_count,
        "ds_link_count": link_count,
        "ds_total_size": total_size,
        "ds_total_size_compressed": compressed,
        "ds_change_add": changes.added,
        "ds_change_remove": changes.removed,
        "ds_change_modify": changes.modified,
        "ds_change_size": changes.size,
    }


def lineage_graph(version_id: str, parent_ids: Sequence[str], parent_graph: Mapping[str, Sequence[str]],
                  used: Iterable[str]) -> dict[str, list[str]]:
    """The ``dependency_graph`` of a new version, as the SDK prunes it: the ancestors' graph restricted to the
    versions whose chunks hold some of its files, and its own parents kept as they are."""
    keep = set(used) | {version_id}
    graph = {k: [p for p in v if p in keep] for k, v in parent_graph.items() if k in keep}
    graph[version_id] = list(parent_ids)
    return graph


def struct_parents(struct_config: Mapping[str, Any] | None, version_id: str) -> list[str]:
    """The parents (ids) that a version's own ``Dataset Struct`` configuration gives for it ([] when none)."""
    try:
        value = json.loads(str((struct_config or {}).get("value") or "{}"))
    except ValueError:
        return []
    if not isinstance(value, dict):
        return []
    nodes = {k: v for k, v in value.items() if isinstance(v, dict) and v.get("job_id")}
    for node in nodes.values():
        if node["job_id"] == version_id:
            return [str(nodes[p]["job_id"]) for p in node.get("parents") or [] if p in nodes]
    return []


def struct_node(task: Mapping[str, Any]) -> dict[str, Any]:
    """What the ``Dataset Struct`` says of a version besides its parents (from its task)."""
    runtime = task.get("runtime") or {}
    return {"status": task.get("status"), "last_update": _epoch(task.get("last_update")),
            "job_size": runtime.get("ds_total_size"), "name": task.get("name"), "version": runtime.get("version")}


def _epoch(stamp: Any) -> int | None:
    """An ISO time as the SDK writes it in the struct (whole seconds since the epoch, UTC)."""
    from datetime import datetime, timezone

    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp())


def dataset_struct(graph: Mapping[str, Sequence[str]], nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``Dataset Struct`` configuration item: the UI's lineage view, and what the SDK (2.x) reads lineage
    from before ``get_local_copy()`` (``_fix_dataset_files_parents``: every file is fetched from the deepest
    version in this graph that holds the same bytes). So ``graph`` must be the whole ancestry, as the SDK's
    ``_report_dataset_struct`` writes it: the pruned dependency graph, extended with each version's parents
    from that version's own struct, transitively (see ``ServerWriter.struct_lineage``).

    Nodes are numbered; a node's ``parents`` are the numbers of its parents. ``nodes`` gives each version's
    ``status``, ``last_update``, ``job_size``, ``name`` and ``version``.
    """
    ids = list(graph)
    for parents in graph.values():
        ids += [p for p in parents if p not in ids]
    index = {vid: str(i) for i, vid in enumerate(ids)}
    value = {}
    for vid in ids:
        info = nodes.get(vid, {})
        value[index[vid]] = {
            "job_id": vid, "status": info.get("status"), "last_update": info.get("last_update"),
            "parents": [index[p] for p in graph.get(vid, [])], "job_size": info.get("job_size"),
            "name": info.get("name"), "version": info.get("version"),
        }
    return {STRUCT_CONFIG: {"name": STRUCT_CONFIG, "value": json.dumps(value, indent=2), "type": "json",
                            "description": "Structure of the dataset"}}


def artifact(key: str, *, kind: str, uri: str, size: int, sha256: str, stamp: int, preview: str,
             content_type: str, display: list[list[str]] | None = None) -> dict[str, Any]:
    """One artifact entry as ``tasks.add_or_update_artifacts`` takes it (the SDK's shape)."""
    entry: dict[str, Any] = {
        "key": key, "type": kind, "mode": "output", "uri": uri, "content_size": size, "hash": sha256,
        "timestamp": stamp, "type_data": {"preview": preview, "content_type": content_type},
    }
    if display is not None:
        entry["display_data"] = display
    return entry


def json_bytes(value: Any) -> bytes:
    """How a dict artifact is stored (the SDK writes indented JSON)."""
    return json.dumps(value, indent=4, sort_keys=True).encode()


def metadata_json(metadata: Mapping[str, Any]) -> str:
    return canonical_json(metadata)


# --- UI plots ----------------------------------------------------------------------------------------------------


def table_event(task_id: str, title: str, series: str, rows: Sequence[Sequence[Any]], stamp_ms: int
                ) -> dict[str, Any]:
    """A ``plot`` event holding a table (what ``Logger.report_table`` sends)."""
    header, body = (list(rows[0]), [list(r) for r in rows[1:]]) if rows else ([], [])
    columns = [[str(r[i]) if i < len(r) else "" for r in body] for i in range(len(header))]
    figure = {
        "data": [{"type": "table", "header": {"values": [str(h) for h in header]}, "cells": {"values": columns}}],
        "layout": {"title": title, "name": series},
    }
    return _plot(task_id, title, series, figure, stamp_ms)


def histogram_event(task_id: str, title: str, series: str, labels: Sequence[str], values: Sequence[float],
                    xaxis: str, yaxis: str, stamp_ms: int) -> dict[str, Any]:
    """A ``plot`` event holding a bar histogram (what ``Logger.report_histogram`` sends)."""
    figure = {
        "data": [{"type": "bar", "name": series, "x": [str(x) for x in labels], "y": list(values)}],
        "layout": {"title": title, "xaxis": {"title": xaxis}, "yaxis": {"title": yaxis}},
    }
    return _plot(task_id, title, series, figure, stamp_ms)


def _plot(task_id: str, metric: str, variant: str, figure: Mapping[str, Any], stamp_ms: int) -> dict[str, Any]:
    return {"type": "plot", "task": task_id, "iter": 0, "metric": metric, "variant": variant,
            "plot_str": json.dumps(figure), "timestamp": stamp_ms}


# --- the dataset card in the UI --------------------------------------------------------------------------------

CARD_KEY = "card"  # the named metadata holding a version's dataset card
CARD_SAMPLE = ("Dataset Card", "card.html")  # (metric, variant) of its page among the version's debug samples


def card_html(card: Mapping[str, Any]) -> bytes:
    """The page the UI shows for a version's card (its PREVIEW tab renders HTML debug samples in a frame):
    the front matter as a table and the text as written; everything escaped, no script."""
    from html import escape

    meta = card.get("metadata") if isinstance(card.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    title = str(meta.get("pretty_name") or "Dataset card")
    shown = {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in meta.items()}
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in sorted(shown.items()))
    text = escape(str(card.get("text") or ""))
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{escape(title)}</title><style>'
            "body{font:14px system-ui,sans-serif;margin:16px}th,td{border:1px solid #d0d7de;padding:3px 8px;"
            "text-align:left;vertical-align:top}table{border-collapse:collapse}pre{white-space:pre-wrap}"
            f"</style></head><body><h1>{escape(title)}</h1><table>{rows}</table><pre>{text}</pre></body></html>"
            ).encode()


def debug_sample_event(task_id: str, metric: str, variant: str, url: str, stamp_ms: int) -> dict[str, Any]:
    """A ``training_debug_image`` event (what ``Logger.report_media`` sends) pointing at ``url``."""
    return {"type": "training_debug_image", "task": task_id, "iter": 0, "metric": metric, "variant": variant,
            "url": url, "key": f"{metric}/{variant}", "timestamp": stamp_ms}
