"""A version being built on this machine: what it inherits from its parents, what this run stored in it, and the
delta a plan's file changes make to it (pure bookkeeping; the writer stores it at finalize)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model import FileEntry, LinkEntry, VersionKey, content_digest
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
        return {**self.inherited, **self.own}

    def links(self) -> dict[str, codec.StateLink]:
        return {**self.inherited_links, **self.own_links}

    def files(self) -> dict[str, FileEntry]:
        return {p: FileEntry(e.path, e.size, e.sha256) for p, e in self.entries().items()}

    def digest(self) -> str:
        """The content digest of what the draft holds (:meth:`Content.digest`, without building the content)."""
        return content_digest(self.entries(), {p: s.link for p, s in self.links().items()})


def apply_delta(draft: Draft, *, remove: Sequence[str], remove_links: Sequence[str], add_links: Sequence[LinkEntry],
                modified: int, added: int, removed: int, change_size: int) -> None:
    """Drop ``remove``/``remove_links`` from what the draft holds and register ``add_links`` (pure)."""
    for path in remove:
        draft.inherited.pop(path, None)
        draft.own.pop(path, None)
    for path in remove_links:
        draft.inherited_links.pop(path, None)
        draft.own_links.pop(path, None)
    for lnk in add_links:
        draft.inherited.pop(lnk.path, None)
        draft.inherited_links.pop(lnk.path, None)
        draft.own_links[lnk.path] = codec.StateLink(lnk, draft.id)
    draft.changes = codec.Changes(added=added, removed=removed, modified=modified, size=change_size)
