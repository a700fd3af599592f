"""Desired contents: what every manifest version holds (its parents' merged content, ``remove`` globs, its own
sources), the keys that determine it, and how two contents differ. Pure: no IO.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..globs import GlobSet
from ..model import (
    Content,
    ContentSummary,
    DesiredState,
    FileEntry,
    LinkEntry,
    VersionKey,
    VersionSpec,
    resolved,
)
from .actions import SyncFiles


@dataclass(frozen=True, slots=True)
class SourceFiles:
    """What one version's own sources produce (already joined with each source's dest).

    ``memo``: a key that determines ``files`` and ``links`` (equal memos, equal lists), when the sources could
    give one (see :func:`content_memos`); None otherwise.
    """

    files: Sequence[FileEntry] = ()
    links: Sequence[LinkEntry] = ()
    memo: str | None = None


CONTENT_MEMO_FORMAT = "content-memo-1"


def content_memos(desired: DesiredState, own: Mapping[VersionKey, SourceFiles]) -> dict[VersionKey, str]:
    """A key per version that determines its content, for the versions whose own sources (and ancestors') gave
    one: the parents' keys (in order), the ``remove`` globs and the sources' memo. Equal keys, equal contents;
    so a content summary remembered under a key stands for the content (see :func:`compute_contents`'s
    ``known``).
    """
    memos: dict[VersionKey, str | None] = {}

    def memo_of(spec: VersionSpec) -> str | None:
        if spec.key in memos:
            return memos[spec.key]
        memos[spec.key] = None  # (no cycles: the loader refuses them)
        mine = own.get(spec.key)
        parents = [memo_of(desired.version(p)) for p in spec.parents]
        if spec.adopt is not None or mine is None or mine.memo is None or None in parents:
            return None
        parent = ",".join(str(p) for p in parents)  # one parent: its memo, as before merges
        text = "\0".join((CONTENT_MEMO_FORMAT, parent, *spec.remove, "\0", mine.memo))
        memos[spec.key] = hashlib.sha256(text.encode()).hexdigest()
        return memos[spec.key]

    for spec in desired.all_versions():
        memo_of(spec)
    return {k: m for k, m in memos.items() if m is not None}


def _sorted_by_key(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` itself when its keys are already in order (the usual case: one sorted source), else a sorted copy."""
    keys = list(d)
    if all(a < b for a, b in zip(keys, keys[1:], strict=False)):
        return d
    return {k: d[k] for k in sorted(keys)}


def compute_contents(
    desired: DesiredState, own: Mapping[VersionKey, SourceFiles], adopted: Mapping[VersionKey, Content] | None = None,
    known: Mapping[VersionKey, ContentSummary] | None = None,
) -> dict[VersionKey, Content]:
    """Content of every desired version: (its parents' contents merged in order, minus `remove`) overlaid with
    its own sources.

    A source file at the same dataset path as an inherited file or link replaces it. An adopted version's
    content is given (``adopted``: what the server holds). A version in ``known`` (its summary, remembered
    under its :func:`content_memos` key) gets a content built only when its files are read.
    """
    result: dict[VersionKey, Content] = dict(adopted or {})
    known = known or {}

    def content_of(spec: VersionSpec) -> Content:
        if spec.key in result:
            return result[spec.key]
        summary = known.get(spec.key)
        content = build(spec) if summary is None else Content.deferred(lambda: build(spec), summary)
        result[spec.key] = content
        return content

    def build(spec: VersionSpec) -> Content:
        files: dict[str, FileEntry] = {}
        links: dict[str, LinkEntry] = {}
        if spec.parents:
            base = Content.merged([content_of(desired.version(p)) for p in spec.parents])
            base_files, base_links = resolved(base.files), resolved(base.links)  # copied without a call per file
            if spec.remove:
                removed = GlobSet.compile(spec.remove)
                files = {p: f for p, f in base_files.items() if not removed.matches(p)}
                links = {p: lnk for p, lnk in base_links.items() if not removed.matches(p)}
            else:
                files, links = dict(base_files), dict(base_links)
        mine = own.get(spec.key, SourceFiles())
        for f in mine.files:
            if links:
                links.pop(f.path, None)
            files[f.path] = f
        for lnk in mine.links:
            files.pop(lnk.path, None)
            links[lnk.path] = lnk
        return Content(MappingProxyType(_sorted_by_key(files)), MappingProxyType(_sorted_by_key(links)))

    for spec in desired.all_versions():
        content_of(spec)
    return result


@dataclass(frozen=True, slots=True)
class ContentDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    modified: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified)


def diff_content(before: Content, after: Content) -> ContentDiff:
    """Paths added, removed and modified going from ``before`` to ``after`` (files and links alike)."""
    if not before.links and not after.links:
        return _diff_files(resolved(before.files), resolved(after.files))

    def flat(c: Content) -> dict[str, tuple[object, ...]]:
        out: dict[str, tuple[object, ...]] = {p: ("F", f.size, f.sha256) for p, f in c.files.items()}
        out.update({p: ("L", lnk.url, lnk.size, lnk.etag) for p, lnk in c.links.items()})
        return out

    b, a = flat(before), flat(after)
    return ContentDiff(
        added=tuple(sorted(a.keys() - b.keys())),
        removed=tuple(sorted(b.keys() - a.keys())),
        modified=tuple(sorted(p for p in a.keys() & b.keys() if a[p] != b[p])),
    )


def _diff_files(before: Mapping[str, FileEntry], after: Mapping[str, FileEntry]) -> ContentDiff:
    """:func:`diff_content` of two contents without links: one pass over each, entries compared by size and
    hash (an entry shared by both, as a version shares its parent's, is the same)."""
    get = before.get
    modified = [p for p, f in after.items()
                if (g := get(p)) is not None and g is not f and (g.size != f.size or g.sha256 != f.sha256)]
    return ContentDiff(
        added=tuple(sorted([p for p in after if p not in before])),
        removed=tuple(sorted([p for p in before if p not in after])),
        modified=tuple(sorted(modified)),
    )


def sync_delta(version: VersionKey, base: Content, target: Content) -> SyncFiles | None:
    """The SyncFiles turning ``base`` into ``target``, or None when they are equal."""
    d = diff_content(base, target)
    if d.empty:
        return None
    # each list is sorted and they are disjoint: sorting their concatenation merges two runs, in linear time
    changed = sorted(d.added + d.modified)
    gone = sorted(d.removed + d.modified)
    base_files, base_links = resolved(base.files), resolved(base.links)
    files, links = resolved(target.files), resolved(target.links)
    return SyncFiles(
        version=version,
        upload=tuple([files[p] for p in changed if p in files]),
        modified=tuple(p for p in d.modified if p in files),
        remove=tuple(p for p in gone if p in base_files and p not in files),
        add_links=tuple(links[p] for p in changed if p in links),
        remove_links=tuple(p for p in gone if p in base_links and p not in links),
        content_digest=target.digest(),
        file_count=target.file_count,
        total_size=target.total_size,
    )
