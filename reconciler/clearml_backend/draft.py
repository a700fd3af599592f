"""A version being built on this machine: what it inherits from its parents, what this run stored in it, and the
delta a plan's file changes make to it (pure bookkeeping; the writer stores it at finalize)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..gcpause import gc_paused
from ..model import Content, FileEntry, LinkEntry, StoredFile, VersionKey, content_digest
from . import codec


@dataclass(frozen=True, slots=True)
class Chunk:
    name: str
    uri: str
    size: int
    sha256: str
    files: int


@dataclass(slots=True)
class Draft:
    """A version being built: what it inherits and what this run stored in it."""

    key: VersionKey
    id: str
    prefix: str  # where its artifacts are stored
    parent_ids: tuple[str, ...]
    inherited: dict[str, codec.StateEntry] = field(default_factory=dict)
    inherited_links: dict[str, codec.StateLink] = field(default_factory=dict)
    own: dict[str, codec.StateEntry] = field(default_factory=dict)
    own_links: dict[str, codec.StateLink] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    uploaded_files: list[FileEntry] = field(default_factory=list)  # with local paths: what this run stored
    parent_chunks: dict[str, int] = field(default_factory=dict)  # version id -> chunk count (lineage)
    parent_graph: dict[str, list[str]] = field(default_factory=dict)  # the parent's dependency graph
    parent_compressed: int = 0
    changes: codec.Changes = codec.Changes()

    def entries(self) -> dict[str, codec.StateEntry]:
        """Every file entry, by path; in path order when the parents' were and this run only replaced files (a
        replaced file keeps its place), so that a digest or file list of it need not sort."""
        return {**self.inherited, **self.own}

    def links(self) -> dict[str, codec.StateLink]:
        return {**self.inherited_links, **self.own_links}

    def files(self) -> dict[str, FileEntry]:
        return {p: FileEntry(e.path, e.size, e.sha256) for p, e in self.entries().items()}

    def digest(self) -> str:
        """The content digest of what the draft holds (:meth:`Content.digest`, without building the content)."""
        with gc_paused():
            return content_digest(self.entries(), {p: s.link for p, s in self.links().items()})

    # --- the bookkeeping: the only code that changes what a draft holds ---------------------------------------

    def inherit(self, files: Iterable[StoredFile], links: Iterable[tuple[LinkEntry, str]]) -> None:
        """Take a parent's files and links (each link with the version that registered it), in merge order as the
        SDK's ``Dataset.create(parent_datasets=[...])`` does: a later parent's entry at the same path wins."""
        for e in files:
            self.inherited_links.pop(e.path, None)
            self.inherited[e.path] = e
        for link, owner in links:
            self.inherited.pop(link.path, None)
            self.inherited_links[link.path] = codec.StateLink(link, owner)

    def chunk_name(self, offset: int) -> str:
        """The name of the ``offset``-th chunk stored after those already stored (the SDK's naming)."""
        return codec.chunk_name(len(self.chunks) + offset)

    def stored(self, chunk: Chunk, files: Sequence[FileEntry]) -> None:
        """``files`` (with their local paths) are now in ``chunk`` of this version, over whatever it inherited."""
        self.chunks.append(chunk)
        self.uploaded_files.extend(files)
        for f in files:  # an inherited entry it replaces stays in ``inherited``: ``own`` wins in :meth:`entries`
            self.inherited_links.pop(f.path, None)
            self.own[f.path] = StoredFile(f.path, f.size, f.sha256, self.id, chunk.name)

    def apply_delta(self, *, remove: Sequence[str], remove_links: Sequence[str], add_links: Sequence[LinkEntry],
                    modified: int, added: int, removed: int, change_size: int) -> None:
        """Drop ``remove``/``remove_links`` from what the draft holds, register ``add_links``, and record the
        change counts the SDK shows."""
        for path in remove:
            self.inherited.pop(path, None)
            self.own.pop(path, None)
        for path in remove_links:
            self.inherited_links.pop(path, None)
            self.own_links.pop(path, None)
        for lnk in add_links:
            self.inherited.pop(lnk.path, None)
            self.inherited_links.pop(lnk.path, None)
            self.own_links[lnk.path] = codec.StateLink(lnk, self.id)
        self.changes = codec.Changes(added=added, removed=removed, modified=modified, size=change_size)

    # --- what it holds, in the project's types ------------------------------------------------------------------

    def content(self) -> Content:
        """What the draft holds, with the local paths of the files this run uploaded."""
        local = {f.path: f.local for f in self.uploaded_files}
        files = {p: FileEntry(e.path, e.size, e.sha256, local.get(p)) for p, e in self.entries().items()}
        return Content(files, {p: s.link for p, s in self.links().items()})

    def stored_files(self) -> tuple[StoredFile, ...]:
        """Every file the draft holds and where its bytes are (this version's chunks, or an ancestor's)."""
        return tuple(sorted(self.entries().values()))

    def stored_links(self) -> tuple[tuple[LinkEntry, str], ...]:
        """Every link the draft holds, with the version that registered it."""
        return tuple(sorted(((s.link, s.owner_id) for s in self.links().values()), key=lambda x: x[0].path))
