"""Apply on agents: a plan split into what the command applies itself and one step per version an agent builds.

A version the plan creates or resumes (it has a :class:`~reconciler.plan.actions.Build`) is built by a step on a ClearML
agent: the step resolves the version's sources again where the agent runs, checks that they still give the
content the plan was computed from (:func:`content_mismatches`), then runs the version's actions (upload,
statistics, properties, finalize). The command publishes the version once its step finalized it, so the status
a running agent watches never changes under it. Every other action (restores, properties and statistics of
finalized versions, publishing them, archives) the command applies itself, before the steps start; alias moves
last, once every step is built (an alias moves only to a final version).

Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from .diagnostics import ReconcileError
from .model import Content, FileEntry, LinkEntry, Source, VersionKey, freeze_json, thaw_json
from .plan.actions import Action, CreateVersion, Plan, Publish, ResumeVersion, SetChecks, SetProperties, SyncFiles
from .plan.contents import diff_content

STEP_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Step:
    """What an agent needs to build one version.

    ``actions``: the version's actions after it is opened (sync files, statistics, properties, finalize), in
    plan order; the agent opens the draft it runs as itself. ``sources``: the version's own sources as the agent
    sees them (a relative ``path:`` is relative to the repository checkout the agent gets). ``lock``: the
    ``(project, token)`` of the apply lock the command holds; the step writes only while it is still held.
    """

    version: VersionKey
    parents: tuple[VersionKey, ...]  # in merge order
    actions: tuple[Action, ...]
    sources: tuple[Source, ...] = ()
    remove: tuple[str, ...] = ()
    lock: tuple[tuple[str, str], ...] = ()

    @property
    def sync(self) -> SyncFiles | None:
        return next((a for a in self.actions if isinstance(a, SyncFiles)), None)


@dataclass(frozen=True, slots=True)
class QueuedVersion:
    """A step and how the command prepares its draft: ``opening`` creates it or resumes an existing one."""

    step: Step
    opening: CreateVersion | ResumeVersion
    publish: bool = False  # the command publishes the version once the step finalized it


@dataclass(frozen=True, slots=True)
class QueuePlan:
    local: tuple[Action, ...] = ()  # applied by the command, in plan order, before any step starts
    steps: tuple[QueuedVersion, ...] = ()  # parents before children
    after: tuple[Action, ...] = ()  # alias moves: applied by the command once every step is built and published
    steps_by_version: Mapping[VersionKey, QueuedVersion] = field(
        default_factory=lambda: MappingProxyType({}), compare=False)


def split_for_queue(plan: Plan) -> QueuePlan:
    """The plan's versions to create or resume as steps; everything else stays with the command.

    A saved plan made before plans carried their builds cannot say what a version is made of: an error.
    """
    builds = {b.version: b for b in plan.builds}
    opened: dict[VersionKey, CreateVersion | ResumeVersion] = {}
    for a in plan.actions:
        if isinstance(a, (CreateVersion, ResumeVersion)):
            opened[a.version] = a
    missing = [str(v) for v in opened if v not in builds]
    if missing:
        raise ReconcileError(f"the plan does not say what {missing[0]} is made of (it was saved by an older "
                             "reconcile): run 'reconcile plan' again")
    own: dict[VersionKey, list[Action]] = {v: [] for v in opened}
    published: set[VersionKey] = set()
    local: list[Action] = []
    after: list[Action] = []
    for a in plan.actions:
        v = a.version
        if isinstance(a, SetProperties) and a.alias:
            after.append(a)
        elif v not in opened:
            local.append(a)
        elif isinstance(a, Publish):
            published.add(v)
        elif a is not opened[v]:
            own[v].append(a)
    steps = tuple(
        QueuedVersion(Step(v, opening.parents, tuple(own[v]), builds[v].sources, builds[v].remove), opening,
                      v in published)
        for v, opening in opened.items()
    )
    return QueuePlan(tuple(local), steps, tuple(after), MappingProxyType({q.step.version: q for q in steps}))


def planned_content(base: Content, sync: SyncFiles | None) -> Content:
    """The content the plan gives a version built on ``base`` (its parent's content) with ``sync``."""
    if sync is None:
        return base
    files = dict(base.files)
    links = dict(base.links)
    for path in sync.remove:
        files.pop(path, None)
    for path in sync.remove_links:
        links.pop(path, None)
    for lnk in sync.add_links:
        files.pop(lnk.path, None)
        links[lnk.path] = lnk
    for f in sync.upload:
        links.pop(f.path, None)
        files[f.path] = FileEntry(f.path, f.size, f.sha256)
    return Content(MappingProxyType(dict(sorted(files.items()))), MappingProxyType(dict(sorted(links.items()))))


def content_mismatches(planned: Content, actual: Content) -> list[str]:
    """One phrase per path whose file or link differs between the plan and what the sources give now."""

    def describe(entry: FileEntry | LinkEntry | None) -> str:
        if isinstance(entry, FileEntry):
            return f"{entry.size} bytes, sha256 {entry.sha256[:12]}"
        if isinstance(entry, LinkEntry):
            return f"a link to {entry.url}"
        return "nothing"

    d = diff_content(planned, actual)
    out: list[str] = []
    for path in d.modified:
        before = planned.files.get(path) or planned.links.get(path)
        after = actual.files.get(path) or actual.links.get(path)
        out.append(f"{path} (planned {describe(before)}; the sources now give {describe(after)})")
    out += [f"{path} (not in the plan; the sources now give it)" for path in d.added]
    out += [f"{path} (in the plan; the sources no longer give it)" for path in d.removed]
    return out


def mismatch_error(version: VersionKey, mismatches: Sequence[str]) -> ReconcileError:
    more = f"; and {len(mismatches) - 1} more" if len(mismatches) > 1 else ""
    return ReconcileError(f"the sources of {version} changed since the plan: {mismatches[0]}{more}; nothing of "
                          "this version was uploaded or finalized; run 'reconcile plan' again")


def upload_from(sync: SyncFiles, actual: Content) -> SyncFiles:
    """``sync`` with each file to upload taken from where the sources put it on this machine."""
    from dataclasses import replace

    return replace(sync, upload=tuple(FileEntry(f.path, f.size, f.sha256, actual.files[f.path].local)
                                      for f in sync.upload))


def move_check_paths(action: Action, move: Callable[[str], str]) -> Action:
    """``action`` with the local paths its checks read (a schema file, a command's program and folder) passed
    through ``move``, when it stores checks; any other action as it is. The command makes paths inside its
    repository checkout relative to it; the agent makes them absolute again in its own checkout."""
    if not isinstance(action, SetChecks):
        return action
    specs = []
    for spec in action.specs:
        params = thaw_json(spec.params)
        for key in ("schema_file", "cwd"):
            if isinstance(params.get(key), str):
                params[key] = move(params[key])
        run = params.get("run")
        if spec.rule == "command" and isinstance(run, list) and run and "/" in str(run[0]):
            run[0] = move(str(run[0]))
        specs.append(replace(spec, params=freeze_json(params)))
    return replace(action, specs=tuple(specs))
