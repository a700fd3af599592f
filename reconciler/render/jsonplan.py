"""The JSON form of a Plan: ``format_version``, stable keys, every action with its before/after.

``plan_from_json(plan_to_json(p)) == p`` for every plan: a saved plan is applied exactly as printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .._compat import assert_never
from ..diagnostics import ReconcileError
from ..model import FileEntry, LinkEntry, VersionKey, freeze_json, thaw_json
from ..plan import (
    PLAN_FORMAT_VERSION,
    Action,
    Archive,
    Conflict,
    CreateVersion,
    Finalize,
    Plan,
    Publish,
    ResumeVersion,
    SetDescription,
    SetMetadata,
    SetStatistics,
    SetTags,
    SyncFiles,
    Unmanaged,
)

_ACTION_TYPES: dict[str, type] = {
    "create_version": CreateVersion,
    "resume_version": ResumeVersion,
    "sync_files": SyncFiles,
    "finalize": Finalize,
    "set_statistics": SetStatistics,
    "set_description": SetDescription,
    "set_metadata": SetMetadata,
    "set_tags": SetTags,
    "publish": Publish,
    "archive": Archive,
}
_TYPE_NAMES = {cls: name for name, cls in _ACTION_TYPES.items()}


def _key(k: VersionKey) -> dict[str, str]:
    return {"project": k.project, "name": k.name, "version": k.version}


def _unkey(d: Mapping[str, str]) -> VersionKey:
    return VersionKey(d["project"], d["name"], d["version"])


def _file(f: FileEntry) -> dict[str, Any]:
    return {"path": f.path, "size": f.size, "sha256": f.sha256, "local": f.local}


def _link(lnk: LinkEntry) -> dict[str, Any]:
    return {"path": lnk.path, "url": lnk.url, "size": lnk.size, "etag": lnk.etag}


def _unfile(d: Mapping[str, Any]) -> FileEntry:
    return FileEntry(d["path"], d["size"], d["sha256"], d.get("local"))


def _unlink(d: Mapping[str, Any]) -> LinkEntry:
    return LinkEntry(d["path"], d["url"], d.get("size"), d.get("etag"))


def action_to_json(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _TYPE_NAMES[type(action)], "address": str(action.version),
                           "version": _key(action.version)}
    match action:
        case CreateVersion():
            out["parent"] = _key(action.parent) if action.parent else None
            out["storage"] = action.storage
        case ResumeVersion():
            out["version_id"] = action.version_id
            out["pending_files"] = action.pending_files
        case SyncFiles():
            out.update(
                upload=[_file(f) for f in action.upload],
                modified=list(action.modified),
                remove=list(action.remove),
                add_links=[_link(lnk) for lnk in action.add_links],
                remove_links=list(action.remove_links),
                content_digest=action.content_digest,
                file_count=action.file_count,
                total_size=action.total_size,
                upload_bytes=action.upload_bytes,
            )
        case Finalize():
            out["content_digest"] = action.content_digest
        case SetStatistics():
            out.update(before_digest=action.before_digest, after_digest=action.after_digest,
                       files=[_file(f) for f in action.files], links=[_link(lnk) for lnk in action.links])
        case SetDescription():
            out.update(before=action.before, after=action.after)
        case SetMetadata():
            out.update(before=thaw_json(action.before), after=thaw_json(action.after))
        case SetTags():
            out.update(before=sorted(action.before), after=sorted(action.after))
        case Publish():
            pass
        case Archive():
            out["version_id"] = action.version_id
        case _:
            assert_never(action)
    return out


def action_from_json(d: Mapping[str, Any]) -> Action:
    kind = _ACTION_TYPES[d["type"]]
    v = _unkey(d["version"])
    if kind is CreateVersion:
        return CreateVersion(v, _unkey(d["parent"]) if d.get("parent") else None, d.get("storage"))
    if kind is ResumeVersion:
        return ResumeVersion(v, d["version_id"], d.get("pending_files", 0))
    if kind is SyncFiles:
        return SyncFiles(
            version=v,
            upload=tuple(_unfile(f) for f in d["upload"]),
            modified=tuple(d["modified"]),
            remove=tuple(d["remove"]),
            add_links=tuple(_unlink(x) for x in d["add_links"]),
            remove_links=tuple(d["remove_links"]),
            content_digest=d["content_digest"],
            file_count=d["file_count"],
            total_size=d["total_size"],
        )
    if kind is Finalize:
        return Finalize(v, d["content_digest"])
    if kind is SetStatistics:
        return SetStatistics(v, d.get("before_digest"), d["after_digest"],
                             tuple(_unfile(f) for f in d["files"]), tuple(_unlink(x) for x in d["links"]))
    if kind is SetDescription:
        return SetDescription(v, d["before"], d["after"])
    if kind is SetMetadata:
        return SetMetadata(v, freeze_json(d["before"]), freeze_json(d["after"]))
    if kind is SetTags:
        return SetTags(v, frozenset(d["before"]), frozenset(d["after"]))
    if kind is Publish:
        return Publish(v)
    return Archive(v, d["version_id"])


def _plain(obj: Conflict | Unmanaged) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, VersionKey):
            out["address"] = str(value)
            value = _key(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def plan_to_json(plan: Plan) -> dict[str, Any]:
    s = plan.summary()
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "observed_fingerprint": plan.observed_fingerprint,
        "targets": list(plan.targets),
        "projects": list(plan.projects),
        "prune": plan.prune,
        "summary": {
            "create": s.create,
            "update": s.update,
            "archive": s.archive,
            "conflicts": s.conflicts,
            "upload_files": s.upload_files,
            "upload_bytes": s.upload_bytes,
            "has_changes": plan.has_changes,
        },
        "actions": [action_to_json(a) for a in plan.actions],
        "conflicts": [_plain(c) for c in plan.conflicts],
        "unmanaged": [_plain(u) for u in plan.unmanaged],
    }


def plan_from_json(data: Mapping[str, Any], *, source: str = "plan") -> Plan:
    if not isinstance(data, Mapping) or data.get("format_version") != PLAN_FORMAT_VERSION:
        raise ReconcileError(f"{source}: not a saved plan of format_version {PLAN_FORMAT_VERSION}")
    try:
        return Plan(
            actions=tuple(action_from_json(a) for a in data["actions"]),
            conflicts=tuple(
                Conflict(_unkey(c["version"]), c["reason"], c["hint"], c.get("version_id"),
                         tuple(c.get("added", ())), tuple(c.get("removed", ())), tuple(c.get("modified", ())))
                for c in data.get("conflicts", [])
            ),
            unmanaged=tuple(
                Unmanaged(_unkey(u["version"]), u["version_id"], u["managed"], u.get("reason", ""))
                for u in data.get("unmanaged", [])
            ),
            observed_fingerprint=data["observed_fingerprint"],
            targets=tuple(data.get("targets", ())),
            projects=tuple(data.get("projects", ())),
            prune=bool(data.get("prune", False)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ReconcileError(f"{source}: malformed saved plan ({type(err).__name__}: {err})") from None
