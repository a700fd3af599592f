"""What apply, dispatch (``apply --queue``) and the agents' steps tell while they work: typed events.

The use cases emit these frozen values to an :data:`Emit` sink and never format text; views
(:mod:`reconciler.render.events`) turn them into the human lines, a progress display or JSON lines (``apply
--format json``; :data:`FORMAT_VERSION` is the schema version of that stream, README "Apply events as JSON").
A sink may be called from several threads at once (uploads report from their workers).

Every event has a stable ``type`` (its JSON name). Adding an event or a field is a minor change of the stream;
renaming or removing one is a major one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, get_args

from .diagnostics import ReconcileError
from .model import VersionKey

FORMAT_VERSION = "1.0"


# --- apply: one action after another ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionStarted:
    type: ClassVar[str] = "action_started"
    step: int  # 1-based position in the plan
    total: int
    version: VersionKey
    action: str  # the plan action's kind, e.g. "create_version", "sync_files", "finalize"
    description: str


@dataclass(frozen=True, slots=True)
class ActionDone:
    type: ClassVar[str] = "action_done"
    step: int
    total: int
    version: VersionKey
    action: str
    seconds: float


@dataclass(frozen=True, slots=True)
class ActionFailed:
    """An action failed: its version (and the versions built on it) stop; independent versions go on."""

    type: ClassVar[str] = "action_failed"
    step: int
    total: int
    version: VersionKey
    action: str
    description: str
    cause: str  # the error, one line
    draft_id: str = ""  # the draft it leaves (the next apply resumes it), when there is one


@dataclass(frozen=True, slots=True)
class VersionSkipped:
    type: ClassVar[str] = "version_skipped"
    step: int
    total: int
    version: VersionKey
    parent: VersionKey  # the parent that failed


@dataclass(frozen=True, slots=True)
class AliasKept:
    """Aliases stay on their old holder because their new holder was not finished."""

    type: ClassVar[str] = "alias_kept"
    step: int
    total: int
    version: VersionKey
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VersionStarted:
    """A version's draft is there to take files: created now, or left by an interrupted run and resumed."""

    type: ClassVar[str] = "version_started"
    version: VersionKey
    version_id: str
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class ChunksDiscarded:
    type: ClassVar[str] = "chunks_discarded"
    version: VersionKey
    chunks: int


@dataclass(frozen=True, slots=True)
class UploadStarted:
    type: ClassVar[str] = "upload_started"
    version: VersionKey
    files: int
    bytes: int
    workers: int


@dataclass(frozen=True, slots=True)
class UploadProgress:
    """How much of a version's upload is done: ``bytes`` of the sources' bytes are on the server (counted as
    their chunks' bytes go out, so a big chunk shows progress too); ``files`` only whole chunks count."""

    type: ClassVar[str] = "upload_progress"
    version: VersionKey
    files: int
    bytes: int
    total_files: int
    total_bytes: int
    seconds: float  # since the upload started
    rate: float = 0.0  # bytes a second over the last few seconds (0: not known yet)


@dataclass(frozen=True, slots=True)
class ChunkUploaded:
    type: ClassVar[str] = "chunk_uploaded"
    version: VersionKey
    chunk: str
    files: int
    bytes: int  # the sources' bytes it holds
    stored_bytes: int  # the size of the stored (zip) object


@dataclass(frozen=True, slots=True)
class UploadDone:
    type: ClassVar[str] = "upload_done"
    version: VersionKey
    files: int
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class StatisticsFetch:
    """Files fetched back from the server to compute a version's statistics (no local copy here)."""

    type: ClassVar[str] = "statistics_fetch"
    version: VersionKey
    files: int


@dataclass(frozen=True, slots=True)
class Finalized:
    type: ClassVar[str] = "finalized"
    version: VersionKey
    version_id: str
    content_digest: str


@dataclass(frozen=True, slots=True)
class Published:
    type: ClassVar[str] = "published"
    version: VersionKey
    version_id: str


@dataclass(frozen=True, slots=True)
class AliasMoved:
    type: ClassVar[str] = "alias_moved"
    version: VersionKey
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Archived:
    """Archived: pruned (``expired_at`` empty) or let go by its retention policy (its grace period starts then)."""

    type: ClassVar[str] = "archived"
    version: VersionKey
    version_id: str
    expired_at: str = ""


@dataclass(frozen=True, slots=True)
class Restored:
    type: ClassVar[str] = "restored"
    version: VersionKey
    version_id: str


@dataclass(frozen=True, slots=True)
class DraftDiscarded:
    type: ClassVar[str] = "draft_discarded"
    version: VersionKey
    version_id: str


@dataclass(frozen=True, slots=True)
class DeleteSkipped:
    """A delete not done because the re-home of a kept version that still reads the version failed."""

    type: ClassVar[str] = "delete_skipped"
    step: int
    total: int
    version: VersionKey
    description: str
    rehomed: VersionKey  # the kept version whose re-home failed


@dataclass(frozen=True, slots=True)
class RehomeStarted:
    """Retention re-homes a kept version: its inherited files are copied into chunks of its own."""

    type: ClassVar[str] = "rehome_started"
    version: VersionKey
    version_id: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class VersionRehomed:
    type: ClassVar[str] = "rehomed"
    version: VersionKey
    version_id: str
    files: int
    bytes: int  # of the files copied
    stored_bytes: int  # of the new chunks
    file_lists: int  # rewritten (its own and those of the versions on it) and read back


@dataclass(frozen=True, slots=True)
class Deleted:
    """Stored objects of a version deleted (checked gone), and with ``whole`` the version itself."""

    type: ClassVar[str] = "deleted"
    version: VersionKey
    version_id: str
    objects: int
    freed_bytes: int
    whole: bool


@dataclass(frozen=True, slots=True)
class ApplyComplete:
    """The end of an apply (``changed``: the server was changed; False when the plan had nothing to do)."""

    type: ClassVar[str] = "apply_complete"
    changed: bool
    actions: int
    created: int
    files: int
    bytes: int
    seconds: float


# --- apply --queue: the command's side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueSplit:
    type: ClassVar[str] = "queue_split"
    local_actions: int
    steps: int


@dataclass(frozen=True, slots=True)
class QueueBuilding:
    type: ClassVar[str] = "queue_building"
    steps: int
    queue: str


@dataclass(frozen=True, slots=True)
class StepQueued:
    type: ClassVar[str] = "step_queued"
    version: VersionKey
    queue: str
    version_id: str


@dataclass(frozen=True, slots=True)
class StepRunning:
    type: ClassVar[str] = "step_running"
    version: VersionKey
    worker: str


@dataclass(frozen=True, slots=True)
class StepProgress:
    type: ClassVar[str] = "step_progress"
    version: VersionKey
    phase: str
    progress: str  # percent done as the step reports it ("" when it does not say)


@dataclass(frozen=True, slots=True)
class StepWaiting:
    type: ClassVar[str] = "step_waiting"
    version: VersionKey
    queue: str
    seconds: float
    listeners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepBuilt:
    type: ClassVar[str] = "step_built"
    version: VersionKey
    worker: str
    published: bool
    files: int | None = None  # uploaded (None: the step uploaded nothing)
    bytes: int = 0
    seconds: float | None = None  # None: the step was not seen running


@dataclass(frozen=True, slots=True)
class StepFailed:
    type: ClassVar[str] = "step_failed"
    version: VersionKey
    message: str


@dataclass(frozen=True, slots=True)
class StepsNotStarted:
    type: ClassVar[str] = "steps_not_started"
    reason: str
    versions: tuple[VersionKey, ...]


# --- agent-step: the agent's side ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourcesResolving:
    type: ClassVar[str] = "sources_resolving"
    version: VersionKey
    where: str


@dataclass(frozen=True, slots=True)
class SourcesVerified:
    type: ClassVar[str] = "sources_verified"
    version: VersionKey
    files: int
    content_digest: str


@dataclass(frozen=True, slots=True)
class StepDone:
    type: ClassVar[str] = "step_done"
    version: VersionKey
    files: int
    seconds: float


@dataclass(frozen=True, slots=True)
class StepError:
    """An agent's step failed; ``message`` is the one line the command quotes (read back from the step's log)."""

    type: ClassVar[str] = "step_error"
    message: str


# --- around them -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    """A line for the operator while the run waits (the lock held by another run, ...)."""

    type: ClassVar[str] = "notice"
    message: str


@dataclass(frozen=True, slots=True)
class PlanReady:
    """The plan about to be applied: its human text and its counts."""

    type: ClassVar[str] = "plan"
    text: str
    actions: int
    create: int
    update: int
    archive: int
    delete: int
    restore: int
    freed_bytes: int


@dataclass(frozen=True, slots=True)
class Error:
    """An error that ended the run (exit 1), one per diagnostic."""

    type: ClassVar[str] = "diagnostic"
    message: str


Event = (
    ActionStarted | ActionDone | ActionFailed | VersionSkipped | AliasKept | VersionStarted | ChunksDiscarded
    | UploadStarted | UploadProgress | ChunkUploaded | UploadDone | StatisticsFetch | Finalized | Published
    | AliasMoved | Archived | Restored | DraftDiscarded | DeleteSkipped | RehomeStarted | VersionRehomed | Deleted
    | ApplyComplete
    | QueueSplit | QueueBuilding | StepQueued | StepRunning | StepProgress | StepWaiting | StepBuilt | StepFailed
    | StepsNotStarted
    | SourcesResolving | SourcesVerified | StepDone | StepError
    | Notice | PlanReady | Error
)
Emit = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """A sink that drops everything."""


def event_fields(event: Event) -> dict[str, Any]:
    """``event``'s ``type`` and fields as JSON values (a version as ``project/name@version``); the plan's text,
    being its message, is left to the view."""
    out: dict[str, Any] = {"type": event.type}
    for f in fields(event):
        if not (isinstance(event, PlanReady) and f.name == "text"):
            out[f.name] = _json_value(getattr(event, f.name))
    return out


def event_from_json(obj: Mapping[str, Any]) -> Event | None:
    """The event a JSON object holds (as a view wrote it); None for an object of another kind (the stream's
    ``start``, a type this version does not know) or a malformed one."""
    cls = _TYPES.get(str(obj.get("type")))
    if cls is None:
        return None
    values: dict[str, Any] = {}
    try:
        for f in fields(cls):
            if f.name not in obj:
                if cls is PlanReady and f.name == "text":
                    values["text"] = str(obj.get("@message", ""))
                continue
            raw = obj[f.name]
            if f.type == "VersionKey":
                raw = VersionKey.parse(str(raw))
            elif f.type == "tuple[VersionKey, ...]":
                raw = tuple(VersionKey.parse(str(x)) for x in raw)
            elif str(f.type).startswith("tuple["):
                raw = tuple(raw)
            values[f.name] = raw
        event: Event = cls(**values)
    except (TypeError, ValueError, ReconcileError):
        return None
    return event


_TYPES: dict[str, Any] = {c.type: c for c in get_args(Event)}


def _json_value(value: Any) -> Any:
    if isinstance(value, VersionKey):
        return str(value)
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, float):
        return round(value, 3)
    return value
