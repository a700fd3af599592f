"""Views of the events apply, dispatch and agent steps emit (:mod:`reconciler.events`).

- :func:`text_line`: the human line of an event (``None``: no line), the text ``apply`` has always printed;
- :class:`ConsoleView`: those lines, plus the upload progress of each version on stderr: on a terminal one line
  redrawn at most :data:`TTY_REDRAW_S` apart (bytes, percent, rate, time left), shown once an upload has run
  for a second; without one (CI logs) a plain line at most every ``interval`` seconds per version;
- :class:`JsonView`: one JSON object per line (``apply --format json``), progress at most every ``interval``
  seconds per version. Schema: README "Apply events as JSON".

``interval`` defaults to :data:`PROGRESS_INTERVAL_S`; the environment variable ``RECONCILE_PROGRESS_INTERVAL``
(seconds) changes it, which also makes a terminal show progress after that long when it is under a second.
Views are thread-safe: uploads emit from their worker threads.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

from .. import escape
from .._compat import assert_never
from ..events import (
    FORMAT_VERSION,
    ActionDone,
    ActionFailed,
    ActionStarted,
    AliasKept,
    AliasMoved,
    ApplyComplete,
    Archived,
    ChunksDiscarded,
    ChunkUploaded,
    Deleted,
    DeleteSkipped,
    DraftDiscarded,
    Error,
    Event,
    Finalized,
    Notice,
    PlanReady,
    Published,
    QueueBuilding,
    QueueSplit,
    RehomeStarted,
    Restored,
    SourcesResolving,
    SourcesVerified,
    StatisticsFetch,
    StepBuilt,
    StepDone,
    StepError,
    StepFailed,
    StepProgress,
    StepQueued,
    StepRunning,
    StepsNotStarted,
    StepWaiting,
    UploadDone,
    UploadProgress,
    UploadStarted,
    VersionRehomed,
    VersionSkipped,
    VersionStarted,
    event_fields,
)
from ..model import VersionKey
from ..wording import counted, human_size

PROGRESS_INTERVAL_S = 10.0  # without a terminal, and in JSON: one progress line per version this often at most
TTY_REDRAW_S = 0.2  # on a terminal: redrawn at most five times a second
TTY_DELAY_S = 1.0  # and only for uploads that last longer than this
STEP_ERROR_PREFIX = "reconcile step failed: "  # the agent's human line for a failed step (its log, for people)


def progress_interval(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between progress lines in logs and JSON: ``RECONCILE_PROGRESS_INTERVAL``, else 10."""
    raw = environ.get("RECONCILE_PROGRESS_INTERVAL", "")
    try:
        value = float(raw)
    except ValueError:
        return PROGRESS_INTERVAL_S
    return value if value >= 0 else PROGRESS_INTERVAL_S


def text_line(event: Event) -> tuple[bool, str] | None:
    """The line ``event`` prints in the human output, and whether it goes to stderr; None: none."""
    match event:
        case ActionStarted(step=n, total=total, description=what):
            return False, f"[{n}/{total}] {what}"
        case ActionDone(seconds=s):
            return (False, f"      done in {s:.1f}s") if s >= 1 else None
        case ActionFailed(description=what):
            return False, f"  failed: {what} (error below)"
        case VersionSkipped(step=n, total=total, version=v, parent=p):
            return False, f"[{n}/{total}] skipped {v}: its parent {p} failed"
        case AliasKept(step=n, total=total, version=v, aliases=aliases):
            return False, f"[{n}/{total}] kept alias {', '.join(aliases)} on {v}: its new holder was not finished"
        case VersionStarted(version=v, version_id=i, resumed=resumed):
            return None if resumed else (False, f"  created {v} (id {i})")
        case ChunksDiscarded(version=v, chunks=n):
            return False, f"  discarded {counted(n, 'chunk')} an interrupted run left on {v}; uploading again"
        case UploadStarted(version=v, files=n, bytes=size, workers=w):
            return False, f"  uploading {counted(n, 'file')} of {v} ({human_size(size)}, {counted(w, 'worker')})"
        case StatisticsFetch(version=v, files=n):
            return False, f"  fetching {counted(n, 'image file')} of {v} from the server for its statistics"
        case DeleteSkipped(step=n, total=total, description=what, rehomed=r):
            return False, f"[{n}/{total}] skipped {what}: the re-home of {r} failed, so kept versions may still read it"
        case RehomeStarted(version=v, version_id=i, files=n, bytes=size):
            return False, f"  re-homing {v} ({i}): copying {counted(n, 'inherited file')} ({human_size(size)}) " \
                          "into its own chunks"
        case VersionRehomed(version=v, version_id=i, files=n, bytes=size, stored_bytes=stored, file_lists=lists):
            return False, f"  re-homed {v} ({i}): {counted(n, 'file')} ({human_size(size)}) in new chunks of " \
                          f"{human_size(stored)}; {counted(lists, 'file list')} rewritten and read back"
        case Deleted(version=v, version_id=i, objects=n, freed_bytes=freed, whole=whole):
            what = "deleted" if whole else "freed objects of"
            return False, f"  {what} {v} ({i}): {counted(n, 'object')} gone, {human_size(freed)} freed"
        case ApplyComplete(changed=changed):
            return (False, _complete(event)) if changed else None
        case QueueSplit(local_actions=n, steps=m):
            return False, f"applying {n} actions here, then {m} versions on agents"
        case QueueBuilding(steps=n, queue=q):
            return False, f"building {n} versions on queue {q!r}"
        case StepQueued(version=v, queue=q, version_id=i):
            return False, f"  queued {v} on {q!r} (version {i})"
        case StepRunning(version=v, worker=w):
            return False, f"  {v}: running on agent {w or '?'}"
        case StepProgress(version=v):
            return False, f"  {v}: {_shown(event)}"
        case StepWaiting(version=v, queue=q, seconds=s, listeners=who):
            return False, f"  {v}: still waiting on queue {q!r} after {s:.0f}s (agents listening: " \
                          f"{', '.join(who) or 'none'})"
        case StepBuilt(version=v, worker=w, published=published, files=n, bytes=size, seconds=s):
            uploaded = f", {n} files ({human_size(size)})" if n is not None else ""
            took = f" in {s:.1f}s" if s else ""
            return False, f"  built {v}{uploaded}{took} on agent {w or '?'}" + (", published" if published else "")
        case StepFailed(message=message):
            return False, f"  failed: {message}"
        case StepsNotStarted(reason=why, versions=versions):
            return False, f"  {why}: not starting {', '.join(map(str, versions))}"
        case SourcesResolving(version=v, where=where):
            return False, f"resolving the sources of {v} in {where}"
        case SourcesVerified(files=n, content_digest=digest):
            return False, f"the sources give the planned content ({n} files, digest {digest[:12]})"
        case StepDone(version=v, files=n, seconds=s):
            return False, f"built {v} in {s:.1f}s: {counted(n, 'file')} uploaded"
        case StepError(message=message):
            return True, STEP_ERROR_PREFIX + message
        case Notice(message=message):
            return True, message
        case (UploadProgress() | ChunkUploaded() | UploadDone() | Finalized() | Published() | AliasMoved()
              | Archived() | Restored() | DraftDiscarded() | PlanReady() | Error()):
            return None
        case _:
            assert_never(event)


def message(event: Event) -> str:
    """The one-line (the plan: several lines) human message of ``event``: its text line, else a sentence."""
    match event:
        case ActionDone(version=v, action=a, seconds=s):
            return f"{v}: {a.replace('_', ' ')} done in {s:.1f}s"
        case ActionFailed(version=v, description=what, cause=cause, draft_id=draft):
            where = f" (version {draft} stays a draft; the next apply resumes it)" if draft else ""
            return f"{what}: {cause}{where}"
        case VersionStarted(version=v, version_id=i, resumed=True):
            return f"resuming the draft {i} of {v}"
        case UploadProgress():
            return _progress(event)
        case ChunkUploaded(version=v, chunk=c, files=n, bytes=size, stored_bytes=stored):
            return f"{v}: stored {c} ({counted(n, 'file')}, {human_size(size)}; {human_size(stored)} stored)"
        case UploadDone(version=v, files=n, bytes=size, seconds=s):
            return f"uploaded {counted(n, 'file')} of {v} ({human_size(size)}) in {s:.1f}s"
        case Finalized(version=v, version_id=i, content_digest=digest):
            return f"finalized {v} ({i}), content digest {digest[:12]}"
        case Published(version=v, version_id=i):
            return f"published {v} ({i})"
        case AliasMoved(version=v, added=added, removed=removed):
            parts = [f"alias {', '.join(added)} now on {v}"] if added else []
            parts += [f"alias {', '.join(removed)} left {v}"] if removed else []
            return "; ".join(parts) or f"aliases of {v} unchanged"
        case Archived(version=v, version_id=i, expired_at=at):
            return f"archived {v} ({i})" + (f": its retention policy let it go at {at}" if at else "")
        case Restored(version=v, version_id=i):
            return f"restored {v} ({i})"
        case DraftDiscarded(version=v, version_id=i):
            return f"discarded the stray draft {i} of {v}"
        case ApplyComplete(changed=False):
            return "Apply complete! No changes."
        case StepError(message=m) | Error(message=m):
            return m
        case PlanReady(text=text):
            return text
        case _:
            line = text_line(event)
            return line[1].strip() if line else type(event).__name__


def level(event: Event) -> str:
    if isinstance(event, (ActionFailed, StepFailed, StepError, Error)):
        return "error"
    if isinstance(event, (VersionSkipped, DeleteSkipped, AliasKept, Notice, StepsNotStarted, StepWaiting,
                          ChunksDiscarded)):
        return "warn"
    return "info"


def _complete(e: ApplyComplete) -> str:
    return (f"Apply complete! {counted(e.actions, 'action')}, {counted(e.created, 'version')} created, "
            f"{counted(e.files, 'file')} uploaded ({human_size(e.bytes)}) in {e.seconds:.1f}s.")


def _shown(e: StepProgress) -> str:
    return " ".join(x for x in (e.phase, f"{e.progress}%" if e.progress else "") if x)


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _progress(e: UploadProgress) -> str:
    """``uploading p/n@v: 3/10 files, 120.0 MiB/1.0 GiB (11%), 40.0 MiB/s, 22s left``."""
    text = f"uploading {e.version}: {e.files}/{e.total_files} files, {human_size(e.bytes)}/{human_size(e.total_bytes)}"
    if e.total_bytes:
        text += f" ({100 * e.bytes // e.total_bytes}%)"
    if e.rate > 0:
        text += f", {human_size(int(e.rate))}/s"
        if e.bytes < e.total_bytes:
            text += f", {_duration((e.total_bytes - e.bytes) / e.rate)} left"
    return text


@dataclass(slots=True)
class _Upload:
    started: float
    last: float = float("-inf")  # when its progress was last shown


class ConsoleView:
    """The human output: :func:`text_line` lines (stdout or stderr) and upload progress on ``err``."""

    def __init__(self, out: TextIO, err: TextIO, *, tty: bool, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic, width: Callable[[], int] | None = None):
        self.out, self.err, self.tty = out, err, tty
        self.interval = progress_interval() if interval is None else interval
        self.delay = min(TTY_DELAY_S, self.interval)
        self.clock = clock
        self.width = width or (lambda: shutil.get_terminal_size((100, 24)).columns)
        self._uploads: dict[VersionKey, _Upload] = {}
        self._drawn = ""  # the progress line on the terminal now (not ended by a newline)
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            match event:
                case UploadStarted(version=v):
                    self._uploads[v] = _Upload(self.clock())
                case UploadProgress(version=v):
                    self._tick(v, event)
                case UploadDone(version=v, files=n, bytes=size, seconds=took):
                    self._uploads.pop(v, None)
                    if self._drawn:  # the whole upload stays on the screen
                        whole = UploadProgress(v, n, size, n, size, took, size / took if took > 0 else 0.0)
                        self.err.write("\r\x1b[K" + escape.text(_progress(whole))[: max(20, self.width() - 1)] + "\n")
                        self.err.flush()
                        self._drawn = ""
            line = text_line(event)
            if line is None:
                return
            self._clear()
            to_err, text = line
            stream = self.err if to_err else self.out
            stream.write(escape.text(text) + "\n")
            stream.flush()

    def _tick(self, v: VersionKey, e: UploadProgress) -> None:
        upload = self._uploads.setdefault(v, _Upload(self.clock() - e.seconds))
        now = self.clock()
        if self.tty:
            if now - upload.started < self.delay or now - upload.last < TTY_REDRAW_S:
                return
            upload.last = now
            line = escape.text(_progress(e))[: max(20, self.width() - 1)]
            self.err.write("\r\x1b[K" + line)
            self._drawn = line
        else:
            if now - max(upload.last, upload.started) < self.interval:
                return
            upload.last = now
            self.err.write(escape.text(_progress(e)) + "\n")
        self.err.flush()

    def _clear(self) -> None:
        if self._drawn:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._drawn = ""


class JsonView:
    """``apply --format json``: one JSON object per line on ``out``, first a ``start`` line with the schema's
    version; upload progress at most every ``interval`` seconds per version."""

    def __init__(self, out: TextIO, *, tool_version: str, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.out, self.clock, self.now = out, clock, now
        self.interval = progress_interval() if interval is None else interval
        self._uploads: dict[VersionKey, _Upload] = {}
        self._lock = threading.Lock()
        self._write({"@level": "info", "@message": f"reconcile {tool_version}", "type": "start",
                     "format_version": FORMAT_VERSION, "reconcile": tool_version})

    def __call__(self, event: Event) -> None:
        with self._lock:
            match event:
                case UploadStarted(version=v):
                    self._uploads[v] = _Upload(self.clock())
                case UploadProgress(version=v):
                    upload = self._uploads.setdefault(v, _Upload(self.clock() - event.seconds))
                    now = self.clock()
                    if now - max(upload.last, upload.started) < self.interval:
                        return
                    upload.last = now
                case UploadDone(version=v):
                    self._uploads.pop(v, None)
            self._write(event_to_json(event))

    def _write(self, obj: dict[str, Any]) -> None:
        stamp = self.now().astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        head = {"@level": obj.pop("@level"), "@message": obj.pop("@message"), "@module": "reconcile",
                "@timestamp": stamp}
        self.out.write(json.dumps({**head, **obj}, ensure_ascii=True) + "\n")
        self.out.flush()


def event_to_json(event: Event) -> dict[str, Any]:
    """``event`` as its JSON object (without ``@module`` and ``@timestamp``, which the stream adds)."""
    return {"@level": level(event), "@message": message(event), **event_fields(event)}


class AgentStepView(ConsoleView):
    """An agent's step: the human lines in its log, and its failure also as one JSON line (the ``step_error``
    event), which the command following the step reads back from the log."""

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepError):
            with self._lock:
                self.out.write(json.dumps({**event_to_json(event), "@module": "reconcile"}, ensure_ascii=True) + "\n")
                self.out.flush()
        super().__call__(event)
