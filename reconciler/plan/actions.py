"""The plan's types: typed actions (one per change a server goes through), what blocks or holds a version, and
the :class:`Plan` that ``plan`` prints and ``apply`` executes. Pure values: no IO.

See :mod:`.planner` for how a plan is computed and the order its actions come in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from types import MappingProxyType

from ..checks.results import VersionChecks
from ..model import (
    CheckSpec,
    DatasetKey,
    FileEntry,
    LinkEntry,
    Properties,
    Source,
    StoredObject,
    VersionKey,
)
from ..properties import PropertyChange, diff_properties
from ..retention import RetentionEntry

PLAN_FORMAT_VERSION = 2
_SIZE = attrgetter("size")


# --- actions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateVersion:
    version: VersionKey
    parents: tuple[VersionKey, ...]  # in merge order
    storage: str | None = None


@dataclass(frozen=True, slots=True)
class ResumeVersion:
    """Continue a draft an interrupted apply left behind, instead of creating a duplicate."""

    version: VersionKey
    version_id: str
    parents: tuple[VersionKey, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncFiles:
    """The delta to apply on top of what the version already holds (its parent's entries, or the draft's)."""

    version: VersionKey
    upload: tuple[FileEntry, ...] = ()  # added or modified, sorted by path
    modified: tuple[str, ...] = ()  # the paths of `upload` that replace an inherited file
    remove: tuple[str, ...] = ()  # dataset paths dropped
    add_links: tuple[LinkEntry, ...] = ()
    remove_links: tuple[str, ...] = ()
    content_digest: str = ""  # Content.digest() of the version once synced
    file_count: int = 0
    total_size: int = 0
    chunk_size_mb: int | None = None  # the dataset's upload settings
    compression: str = "auto"

    @property
    def upload_bytes(self) -> int:
        return sum(map(_SIZE, self.upload))  # read by the summary, the renderers and apply: no Python loop


@dataclass(frozen=True, slots=True)
class SetStatistics:
    """Compute the statistics of the version's content and store them with it (metadata and UI plots).

    The content is the version's own (apply knows it: the files it synced, or the version's file list on the
    server); ``after_digest`` is its :meth:`Content.digest`, ``before_digest`` the digest the stored statistics
    describe (None: none stored). ``plots``: whether UI plots can still be added (not once published).
    """

    version: VersionKey
    before_digest: str | None
    after_digest: str
    plots: bool = True
    splits: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), compare=False,
                                                  hash=False)  # the declared splits (then after_digest is the
    # statistics_key of the content digest and them)


@dataclass(frozen=True, slots=True)
class SetChecks:
    """Store the results of the version's checks with it (an artifact and a UI table), before it is finalized.

    ``checks``: the results the plan computed; ``specs``: the checks, so that apply evaluates again those that
    read the files' bytes on the bytes it uploaded (an error-level failure then stops the version there).
    """

    version: VersionKey
    checks: VersionChecks
    specs: tuple[CheckSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class SetProperties:
    """Make the version's mutable properties ``after``; only the fields that differ from ``before`` are written.

    ``alias``: the change moves aliases only (tags that name exactly one version); such actions come after
    every other one, additions before removals, and apply removes an alias from a version only when its new
    holder got it (:func:`aliases_last`).
    """

    version: VersionKey
    before: Properties
    after: Properties
    alias: bool = False

    def changes(self) -> tuple[PropertyChange, ...]:
        return diff_properties(self.before, self.after)


@dataclass(frozen=True, slots=True)
class Finalize:
    """Write the file list and close the version: its content must have ``content_digest``."""

    version: VersionKey
    content_digest: str


@dataclass(frozen=True, slots=True)
class Publish:
    version: VersionKey


@dataclass(frozen=True, slots=True)
class Archive:
    """Archive a version (reversible: a plan that names it again restores the same id). ``retention``: why its
    dataset's retention policy lets it go ("" when --prune archives it because no manifest names it); apply then
    records when, which starts its grace period."""

    version: VersionKey
    version_id: str
    retention: str = ""


@dataclass(frozen=True, slots=True)
class DeleteVersion:
    """Delete stored objects of an archived version for good, verified gone; with ``whole``, its task too.

    Planned only by retention: ``whole`` when no version that stays on the server reads anything of it, else
    ``objects`` are those none of them reads (its task and file list stay)."""

    version: VersionKey
    version_id: str
    objects: tuple[StoredObject, ...]
    reason: str = ""
    whole: bool = True

    @property
    def freed_bytes(self) -> int:
        return sum(o.size for o in self.objects)


@dataclass(frozen=True, slots=True)
class RehomeVersion:
    """Make the oldest version a retention policy keeps stand on its own (``rehome: true``), before the versions
    below it are deleted: the ``files`` it inherits (``copy_bytes``) are copied into new chunks of its own, its
    file list and lineage name no parent, and the file lists of ``rewrites`` (versions built on it) read those
    files from it. Ids do not change; ``detached`` are the ids its lineage (and theirs) no longer names;
    ``replaced`` the file lists rewritten (deleted once the new ones are read back); ``group`` the versions that
    may go on reading each other; ``frees_bytes`` what the deletions free because of it."""

    version: VersionKey
    version_id: str
    files: int
    copy_bytes: int
    rewrites: tuple[tuple[VersionKey, str], ...] = ()
    detached: tuple[str, ...] = ()
    group: tuple[str, ...] = ()
    replaced: tuple[StoredObject, ...] = ()
    frees_bytes: int = 0

    @property
    def freed_bytes(self) -> int:
        """The bytes of the file lists it replaces (new ones, of about the same size, take their place)."""
        return sum(o.size for o in self.replaced)


@dataclass(frozen=True, slots=True)
class DiscardDraft:
    """Delete a draft (and its chunks) of a version that is already finalized: a stray copy left by an apply
    that was interrupted or paused past its lease while another one finished the version. Left alone, it is
    what ``Dataset.get(dataset_version=...)`` may return ("is in draft mode")."""

    version: VersionKey
    version_id: str


@dataclass(frozen=True, slots=True)
class Restore:
    """Bring back a version the manifests name again, instead of creating a second one: unarchive it (when
    ``archived``) and put back the system tags ``system_tags`` it lost (those the SDK finds a version by)."""

    version: VersionKey
    version_id: str
    archived: bool = True
    system_tags: tuple[str, ...] = ()


Action = (
    CreateVersion
    | ResumeVersion
    | DiscardDraft
    | Restore
    | SyncFiles
    | SetStatistics
    | SetChecks
    | SetProperties
    | Finalize
    | Publish
    | Archive
    | RehomeVersion
    | DeleteVersion
)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A version the plan will not touch: its finalized content differs, or it cannot be built safely."""

    version: VersionKey
    reason: str
    hint: str
    version_id: str | None = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Drift:
    """Something changed on the server since this tool last applied the manifests (not in the manifests).

    ``what``: ``properties`` (``before`` is what was applied, ``after`` what the server shows), ``archived``,
    ``source`` (a URL source's object changed under a finalized version), ``parent`` (a parent was removed).
    """

    version: VersionKey
    version_id: str
    what: str
    detail: str
    before: Properties | None = None
    after: Properties | None = None


@dataclass(frozen=True, slots=True)
class AliasMove:
    """An alias (a tag on exactly one version) pointing somewhere new: ``before`` holds it now; ``after`` is
    empty when the manifests dropped it (it is taken off)."""

    dataset: DatasetKey
    alias: str
    before: tuple[str, ...]  # versions that hold it on the server
    after: str


@dataclass(frozen=True, slots=True)
class Unmanaged:
    """A version on the server that no manifest names (reported; archived only with --prune)."""

    version: VersionKey
    version_id: str
    managed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Held:
    """A version the plan does not build because its error-level checks failed (or its parent's did)."""

    version: VersionKey
    reason: str


@dataclass(frozen=True, slots=True)
class Build:
    """What a version the plan creates or resumes is made of: its own sources and removals, as the manifests
    give them. A saved plan carries them so that an agent can resolve them again (``apply --queue``)."""

    version: VersionKey
    sources: tuple[Source, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanOptions:
    prune: bool = False
    targets: tuple[str, ...] = ()  # "project/name" or "project/name@version"; empty: everything
    prune_scope: tuple[str, ...] = ()  # projects observed and pruned besides those the manifests declare


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    unmanaged: tuple[Unmanaged, ...] = ()
    observed_fingerprint: str = ""
    targets: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()  # the projects observed (the prune scope); a saved plan re-observes these
    prune: bool = False  # made with --prune
    drift: tuple[Drift, ...] = ()
    aliases: tuple[AliasMove, ...] = ()
    builds: tuple[Build, ...] = ()  # one per version the plan creates or resumes, in action order
    checks: tuple[VersionChecks, ...] = ()  # the results of every version checked, held ones included
    held: tuple[Held, ...] = ()
    retention: tuple[RetentionEntry, ...] = ()  # every version out of its dataset's retention policy

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def summary(self) -> PlanSummary:
        created = {a.version for a in self.actions if isinstance(a, CreateVersion)}
        archived = {a.version for a in self.actions if isinstance(a, Archive)}
        restored = {a.version for a in self.actions if isinstance(a, Restore)}
        deleted = [a for a in self.actions if isinstance(a, DeleteVersion)]
        touched = {a.version for a in self.actions}
        return PlanSummary(
            create=len(created),
            update=len(touched - created - archived - restored - {a.version for a in deleted}),
            archive=len(archived),
            delete=sum(1 for a in deleted if a.whole),
            freed_bytes=sum(a.freed_bytes for a in deleted)
            + sum(a.freed_bytes for a in self.actions if isinstance(a, RehomeVersion)),
            rehome_bytes=sum(a.copy_bytes for a in self.actions if isinstance(a, RehomeVersion)),
            restore=len(restored),
            conflicts=len(self.conflicts),
            upload_files=sum(len(a.upload) for a in self.actions if isinstance(a, SyncFiles)),
            upload_bytes=sum(a.upload_bytes for a in self.actions if isinstance(a, SyncFiles)),
            held=len(self.held),
        )

    def versions(self) -> tuple[VersionKey, ...]:
        """Every version the plan acts on, in action order."""
        seen: dict[VersionKey, None] = {}
        for a in self.actions:
            seen.setdefault(a.version, None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class PlanSummary:
    create: int
    update: int
    archive: int
    restore: int
    conflicts: int
    upload_files: int
    upload_bytes: int
    held: int = 0
    delete: int = 0
    freed_bytes: int = 0
    rehome_bytes: int = 0  # file bytes re-homes copy into new chunks (stored again, as the dataset compresses)
