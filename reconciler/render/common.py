"""What the human and markdown renderers share: actions grouped per version, and line items per action."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

from .._compat import assert_never
from ..model import VersionKey, thaw_json
from ..plan.actions import (
    Action,
    Archive,
    CreateVersion,
    DeleteVersion,
    DiscardDraft,
    Finalize,
    Plan,
    PlanSummary,
    Publish,
    RehomeVersion,
    Restore,
    ResumeVersion,
    SetChecks,
    SetProperties,
    SetStatistics,
    SyncFiles,
    Unmanaged,
)
from ..properties import PropertyChange, changed_fields, diff_properties
from ..wording import counted, human_size


@dataclass(frozen=True, slots=True)
class Line:
    """One rendered change: ``sign`` is ``+``, ``-``, ``~`` or ``!``; ``detail`` lines are indented below."""

    sign: str
    text: str
    detail: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class VersionBlock:
    version: VersionKey
    verb: str  # "created", "updated in place", "resumed", "archived"
    sign: str
    lines: tuple[Line, ...]


def summary_line(s: PlanSummary) -> str:
    restore = f"{s.restore} to restore, " if s.restore else ""
    delete = f"{s.delete} to delete, " if s.delete else ""
    delete += f"{human_size(s.freed_bytes)} of storage to free, " if s.freed_bytes else ""
    delete += f"{human_size(s.rehome_bytes)} of files to copy by re-homes, " if s.rehome_bytes else ""
    held = f", {s.held} held by failing checks" if s.held else ""
    return (f"Plan: {s.create} to create, {restore}{s.update} to update, {s.archive} to archive, {delete}"
            f"{counted(s.conflicts, 'conflict')}{held}.")


def _short(value: Any) -> str:
    return json.dumps(thaw_json(value), sort_keys=True, default=str)


_SIGN = {"added": "+", "removed": "-", "changed": "~"}
_TEXT = itemgetter(1)


def property_lines(changes: tuple[PropertyChange, ...]) -> tuple[tuple[str, str], ...]:
    """One line per change the properties differ finds (the diff report shows the same items)."""
    out: list[tuple[str, str]] = []
    for c in changes:
        if c.field == "tags":
            out.append((_SIGN[c.change], f"tag {_short(c.after if c.change == 'added' else c.before)}"))
        elif c.change == "changed":
            out.append(("~", f"{c.path}: {_short(c.before)} -> {_short(c.after)}"))
        else:
            out.append((_SIGN[c.change], f"{c.path} = {_short(c.after if c.change == 'added' else c.before)}"))
    return tuple(out)


def sync_lines(a: SyncFiles, limit: int | None) -> tuple[tuple[str, str], ...]:
    """The lines of a file sync, sorted by their text; past ``limit`` of them, one line says how many more. Only
    the lines shown are kept in memory (a new version of a million files lists them all)."""
    modified = set(a.modified)
    items: Iterator[tuple[str, str]] = chain(
        (("~" if f.path in modified else "+", f"{f.path} ({human_size(f.size)})") for f in a.upload),
        (("+", f"{lnk.path} -> {lnk.url}") for lnk in a.add_links),
        (("-", p) for p in a.remove if p not in modified),
        (("-", p) for p in a.remove_links),
    )
    if limit is None:
        return tuple(sorted(items, key=_TEXT))
    total = len(a.upload) + len(a.add_links) + len([p for p in a.remove if p not in modified]) + len(a.remove_links)
    shown = heapq.nsmallest(limit, items, key=_TEXT)  # what sorted(items)[:limit] is
    if total > limit:
        shown.append((" ", f"... and {total - limit} more (use --show-files all)"))
    return tuple(shown)


def action_line(action: Action, file_limit: int | None) -> Line:
    match action:
        case CreateVersion(parents=ps):
            return Line("+", "create version" + (f" on top of {', '.join(str(p) for p in ps)}" if len(ps) == 1
                                                 else f" merging {', '.join(str(p) for p in ps)}" if ps
                                                 else " (no parent)"))
        case ResumeVersion(version_id=i):
            return Line("~", f"resume draft {i} (chunks an interrupted run left are uploaded again)")
        case Restore(version_id=i, archived=archived, system_tags=tags):
            what = " and ".join(([f"archived version {i}"] if archived else [f"version {i}"])
                                + ([f"its system tag {', '.join(tags)}"] if tags else []))
            return Line("+", f"restore {what} (same id; no new version)")
        case DiscardDraft(version_id=i):
            return Line("-", f"discard draft {i}: a stray copy of this finalized version, left by an interrupted "
                        "apply (deleted with its chunks)")
        case SyncFiles():
            n_mod = len(action.modified)
            n_add = len(action.upload) - n_mod + len(action.add_links)
            n_rem = len([p for p in action.remove if p not in set(action.modified)]) + len(action.remove_links)
            return Line(
                "~",
                f"files: {n_add} to add, {n_mod} to modify, {n_rem} to remove; upload "
                f"{human_size(action.upload_bytes)} (version total {counted(action.file_count, 'file')}, "
                f"{human_size(action.total_size)})",
                sync_lines(action, file_limit),
            )
        case SetStatistics(before_digest=b, after_digest=a, plots=plots):
            was = f"stored ones describe content {b[:12]}" if b else "none stored"
            where = "" if plots else "; stored as metadata only: ClearML takes no plots on a published version"
            return Line("~", f"statistics: compute for content {a[:12]} ({was}{where})")
        case SetChecks(checks=c):
            n_pass = len(c.results) - len(c.warned) - len(c.failed)
            return Line("~", f"checks: store the results ({n_pass} passed, {len(c.warned)} warned)",
                        tuple(("!", f"warn: {r.name}: {r.message}") for r in c.warned))
        case SetProperties():
            return Line("~", ", ".join(changed_fields(action.before, action.after)), property_lines(action.changes()))
        case Finalize():
            return Line("+", "finalize")
        case Publish():
            return Line("+", "publish")
        case Archive(version_id=i, retention=why):
            if why:
                return Line("-", f"archive version {i} (retention: {why}; restorable until it is deleted)")
            return Line("-", f"archive version {i} (no manifest names it)")
        case RehomeVersion(version_id=i):
            return Line("~", rehome_headline(action), rehome_notes(action))
        case DeleteVersion(version_id=i):
            objects = tuple(("-", f"{o.key}  {human_size(o.size)}  {o.uri}") for o in action.objects)
            if action.whole:
                return Line("-", f"DELETE version {i} and its {counted(len(action.objects), 'stored object')}: "
                            f"frees {human_size(action.freed_bytes)} for good (retention: {action.reason})", objects)
            return Line("-", f"DELETE {counted(len(action.objects), 'stored object')} of version {i} that no kept "
                        f"version reads: frees {human_size(action.freed_bytes)} for good; its task and file list "
                        f"stay (kept versions load them); the version itself can no longer be downloaded "
                        f"(retention: {action.reason})", objects)
        case _:
            assert_never(action)


def rehome_headline(action: RehomeVersion) -> str:
    copied = (f"copy the {counted(action.files, 'file')} it inherits ({human_size(action.copy_bytes)}) into new "
              "chunks of its own" if action.files else "its files are its own already")
    return (f"RE-HOME version {action.version_id} (retention: rehome): {copied}; then the versions before it go "
            f"whole, freeing {human_size(action.frees_bytes)} more")


def rehome_notes(action: RehomeVersion) -> tuple[tuple[str, str], ...]:
    """What changes for whoever reads these versions by id."""
    rewritten = ", ".join(str(k) for k, _ in action.rewrites)
    notes = [("~", "its file list names no parent: Dataset.get(id).get_dependency_graph() gives only itself, and "
                   "list_added_files() / list_modified_files() compare with nothing"),
             ("~", "its id, files and hashes do not change; get_local_copy() downloads them from its own chunks")]
    if action.rewrites:
        notes.append(("~", f"the file lists of {rewritten} read those files from it (ids unchanged; their lineage "
                           "stops at it)"))
    if action.detached:
        shown = ", ".join(action.detached[:5]) + (f" and {len(action.detached) - 5} more" if len(action.detached) > 5
                                                   else "")
        notes.append(("-", f"no longer in their lineage: {shown} (those retention deletes are gone for consumers "
                           "pinned to their ids)"))
    notes += [("-", f"replaced file list  {human_size(o.size)}  {o.uri}") for o in action.replaced]
    return tuple(notes)


def version_blocks(plan: Plan, file_limit: int | None) -> list[VersionBlock]:
    grouped: dict[VersionKey, list[Action]] = {}
    for a in plan.actions:
        grouped.setdefault(a.version, []).append(a)
    blocks = []
    for key, actions in grouped.items():
        if any(isinstance(a, CreateVersion) for a in actions):
            verb, sign = "created", "+"
        elif any(isinstance(a, DeleteVersion) for a in actions):
            verb, sign = "deleted", "-"
        elif any(isinstance(a, Archive) for a in actions):
            verb, sign = "archived", "-"
        elif any(isinstance(a, ResumeVersion) for a in actions):
            verb, sign = "resumed and finalized", "~"
        elif any(isinstance(a, Restore) for a in actions):
            verb, sign = "restored", "+"
        elif all(isinstance(a, DiscardDraft) for a in actions):
            verb, sign = "stray draft discarded", "-"
        else:
            verb, sign = "updated in place", "~"
        lines = tuple(action_line(a, file_limit) for a in actions)
        if sign == "+":  # everything about a new version is an addition
            lines = tuple(Line("+", ln.text, ln.detail) for ln in lines)
        blocks.append(VersionBlock(key, verb, sign, lines))
    return blocks


STAGES = {"delete": "deleted by this apply", "free": "partly freed by this apply",
          "archive": "archived now, deleted after its grace period",
          "waiting": "archived, in its grace period", "kept": "kept"}


def retention_lines(plan: Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    """(sign, headline, detail lines) for every version out of its dataset's retention policy."""
    out = []
    for e in plan.retention:
        sign = "-" if e.stage == "delete" else ("!" if e.stage == "kept" else "~")
        ident = f" ({e.version_id})" if e.version_id else ""
        head = (f"{e.version}{ident}: {STAGES.get(e.stage, e.stage)}; frees {human_size(e.freed_bytes)}, keeps "
                f"{human_size(e.kept_bytes)}")
        detail = [f"out of the policy: {e.why}"] + [f"kept: {r}" for r in e.reasons]
        out.append((sign, head, tuple(detail)))
    return out


def drift_lines(plan: Plan) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(version, what changed, detail lines) for every drift item, properties shown as changes."""
    out = []
    for d in plan.drift:
        detail: tuple[tuple[str, str], ...] = ()
        if d.before is not None and d.after is not None:
            detail = property_lines(diff_properties(d.before, d.after))
        out.append((f"{d.version} (id {d.version_id})", d.detail, detail))
    return out


def alias_lines(plan: Plan) -> list[str]:
    return [f"{m.dataset} {m.alias}: {', '.join(m.before) or 'none'} -> "
            + (m.after or "none (dropped from the manifests)") for m in plan.aliases]


@dataclass(frozen=True, slots=True)
class CheckItem:
    """A check to show: a failure or a warning of a version (passes are counted, not listed)."""

    version: VersionKey
    status: str  # fail | warn
    name: str
    rule: str
    location: str
    message: str
    offending: tuple[str, ...]
    offending_count: int


def check_items(plan: Plan) -> list[CheckItem]:
    """Every failed check, then every warning, of the versions the plan checked (in plan order)."""
    items = [CheckItem(c.version, r.status, r.name, r.rule, r.location, r.message, r.offending, r.offending_count)
             for c in plan.checks for r in c.results if r.status != "pass"]
    return sorted(items, key=lambda i: i.status != "fail")


def checks_summary(plan: Plan) -> str:
    flat = [r.status for c in plan.checks for r in c.results]
    return (f"{counted(len(plan.checks), 'version')} checked: {flat.count('pass')} passed, "
            f"{flat.count('warn')} warned, {flat.count('fail')} failed")


def import_hint(unmanaged: Sequence[Unmanaged]) -> tuple[str, str] | None:
    """How to bring versions listed as in no manifest under management: the command, and what it does."""
    datasets = sorted({str(u.version.dataset) for u in unmanaged if not u.reason})
    if not datasets:
        return None
    shown = " ".join(datasets[:3]) + (" ..." if len(datasets) > 3 else "")
    return (f"reconcile import {shown} --update --out DIR",
            "adds the versions to the dataset's manifest under DIR, or writes one")
