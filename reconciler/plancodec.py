"""The JSON form of a Plan: ``format_version``, stable keys, every action with its before/after.

``plan_from_json(plan_to_json(p)) == p`` for every plan: a saved plan is applied exactly as printed.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from json.encoder import encode_basestring_ascii as _encode_string  # what json.dumps uses (ensure_ascii)
from pathlib import Path
from typing import Any

from ._compat import assert_never
from .checks.results import checks_from_json, checks_to_json
from .diagnostics import ReconcileError
from .model import (
    CheckSpec,
    DatasetKey,
    FileEntry,
    LinkEntry,
    PathSource,
    Properties,
    Source,
    StoredObject,
    TaskUse,
    TorchvisionSource,
    UrlSource,
    VersionKey,
    normalize_splits,
    parse_time,
)
from .plan.actions import (
    PLAN_FORMAT_VERSION,
    Action,
    AliasMove,
    Archive,
    Build,
    Conflict,
    CreateVersion,
    DeleteVersion,
    DiscardDraft,
    Drift,
    Finalize,
    Held,
    Plan,
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
from .retention import RetentionEntry

_TYPE_NAMES: dict[type, str] = {
    CreateVersion: "create_version",
    ResumeVersion: "resume_version",
    DiscardDraft: "discard_draft",
    Restore: "restore",
    SyncFiles: "sync_files",
    SetStatistics: "set_statistics",
    SetChecks: "set_checks",
    SetProperties: "set_properties",
    Finalize: "finalize",
    Publish: "publish",
    Archive: "archive",
    RehomeVersion: "rehome_version",
    DeleteVersion: "delete_version",
}


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


def _properties(p: Properties) -> dict[str, Any]:
    return p.to_json()


def _unproperties(d: Mapping[str, Any]) -> Properties:
    return Properties.from_json(d)


def action_to_json(action: Action, files: Callable[[Sequence[FileEntry]], Any] | None = None) -> dict[str, Any]:
    """The JSON form of ``action``; ``files``, when given, stands for the list of files to upload."""
    out: dict[str, Any] = {"type": _TYPE_NAMES[type(action)], "address": str(action.version),
                           "version": _key(action.version)}
    match action:
        case CreateVersion():
            out.update(parents_json(action.parents))
            out["storage"] = action.storage
        case ResumeVersion():
            out["version_id"] = action.version_id
            out.update(parents_json(action.parents))
        case Restore():
            out.update(version_id=action.version_id, archived=action.archived,
                       system_tags=list(action.system_tags))
        case DiscardDraft():
            out["version_id"] = action.version_id
        case Archive():
            out["version_id"] = action.version_id
            if action.retention:
                out["retention"] = action.retention
        case RehomeVersion():
            out.update(version_id=action.version_id, files=action.files, copy_bytes=action.copy_bytes,
                       rewrites=[{**_key(k), "version_id": i} for k, i in action.rewrites],
                       detached=list(action.detached), group=list(action.group),
                       replaced=[{"key": o.key, "uri": o.uri, "size": o.size} for o in action.replaced],
                       freed_bytes=action.freed_bytes, frees_bytes=action.frees_bytes)
        case DeleteVersion():
            out.update(version_id=action.version_id, reason=action.reason, freed_bytes=action.freed_bytes,
                       whole=action.whole,
                       objects=[{"key": o.key, "uri": o.uri, "size": o.size} for o in action.objects])
        case SyncFiles():
            out.update(
                upload=files(action.upload) if files is not None else [_file(f) for f in action.upload],
                modified=list(action.modified),
                remove=list(action.remove),
                add_links=[_link(lnk) for lnk in action.add_links],
                remove_links=list(action.remove_links),
                content_digest=action.content_digest,
                file_count=action.file_count,
                total_size=action.total_size,
                upload_bytes=action.upload_bytes,
                chunk_size_mb=action.chunk_size_mb,
                compression=action.compression,
            )
        case SetStatistics():
            out.update(before_digest=action.before_digest, after_digest=action.after_digest, plots=action.plots)
            if action.splits:
                out["splits"] = {k: list(v) for k, v in action.splits.items()}
        case SetChecks():
            out.update(checks=checks_to_json(action.checks), specs=[c.to_json() for c in action.specs])
        case SetProperties():
            if action.alias:  # an alias move (applied last); absent on other property changes
                out["alias"] = True
            out.update(before=_properties(action.before), after=_properties(action.after),
                       changes=[{"field": c.field, "path": c.path, "change": c.change, "before": c.before,
                                 "after": c.after} for c in action.changes()])
        case Finalize():
            out["content_digest"] = action.content_digest
        case Publish():
            pass
        case _:
            assert_never(action)
    return out


def parents_json(parents: Sequence[VersionKey]) -> dict[str, Any]:
    """``parents`` (in merge order) and ``parent`` (the first, or null), as plans and steps write them."""
    return {"parent": _key(parents[0]) if parents else None, "parents": [_key(p) for p in parents]}


def parents_from_json(d: Mapping[str, Any]) -> tuple[VersionKey, ...]:
    """The parents ``d`` gives: ``parents``, or a lone ``parent`` (what plans saved before merges wrote)."""
    if isinstance(d.get("parents"), list):
        return tuple(_unkey(p) for p in d["parents"])
    return (_unkey(d["parent"]),) if d.get("parent") else ()


def action_from_json(d: Mapping[str, Any]) -> Action:
    """The action ``d`` describes; an unknown type is an error (never a guess)."""
    v = _unkey(d["version"])
    match d["type"]:
        case "create_version":
            return CreateVersion(v, parents_from_json(d), d.get("storage"))
        case "resume_version":
            return ResumeVersion(v, d["version_id"], parents_from_json(d))
        case "restore":
            return Restore(v, d["version_id"], bool(d.get("archived", True)), tuple(d.get("system_tags") or ()))
        case "discard_draft":
            return DiscardDraft(v, d["version_id"])
        case "sync_files":
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
                chunk_size_mb=d.get("chunk_size_mb"),
                compression=d.get("compression", "auto"),
            )
        case "set_statistics":
            return SetStatistics(v, d.get("before_digest"), d["after_digest"], bool(d.get("plots", True)),
                                 normalize_splits(d.get("splits") or {}))
        case "set_checks":
            return SetChecks(v, checks_from_json(d["checks"]), tuple(CheckSpec.from_json(c) for c in d["specs"]))
        case "set_properties":
            return SetProperties(v, _unproperties(d["before"]), _unproperties(d["after"]), bool(d.get("alias")))
        case "finalize":
            return Finalize(v, d["content_digest"])
        case "publish":
            return Publish(v)
        case "archive":
            return Archive(v, d["version_id"], d.get("retention", ""))
        case "rehome_version":
            return RehomeVersion(
                v, d["version_id"], int(d["files"]), int(d["copy_bytes"]),
                tuple((_unkey(r), str(r["version_id"])) for r in d.get("rewrites") or ()),
                tuple(d.get("detached") or ()), tuple(d.get("group") or ()),
                tuple(StoredObject(o["key"], o["uri"], int(o["size"])) for o in d.get("replaced") or ()),
                int(d.get("frees_bytes", 0)))
        case "delete_version":
            return DeleteVersion(v, d["version_id"],
                                 tuple(StoredObject(o["key"], o["uri"], int(o["size"])) for o in d["objects"]),
                                 d.get("reason", ""), bool(d.get("whole", True)))
        case other:
            raise ValueError(f"unknown action type {other!r}")


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


def source_to_json(source: Source) -> dict[str, Any]:
    match source:
        case PathSource():
            return {"kind": "path", "path": str(source.path), "dest": source.dest, "include": list(source.include),
                    "exclude": list(source.exclude)}
        case TorchvisionSource():
            return {"kind": "torchvision", "dataset": source.dataset, "split": source.split, "layout": source.layout,
                    "dest": source.dest, "root": str(source.root) if source.root else None,
                    "download": source.download}
        case UrlSource():
            return {"kind": "url", "url": source.url, "dest": source.dest, "copy": source.copy}
        case _:
            assert_never(source)


def source_from_json(d: Mapping[str, Any]) -> Source:
    """The source ``d`` describes; an unknown kind is an error."""
    match d["kind"]:
        case "path":
            return PathSource(Path(d["path"]), d.get("dest", ""), tuple(d.get("include", ())),
                              tuple(d.get("exclude", ())))
        case "torchvision":
            return TorchvisionSource(d["dataset"], d["split"], d.get("layout", "raw"), d.get("dest", ""),
                                     Path(d["root"]) if d.get("root") else None, bool(d.get("download", False)))
        case "url":
            return UrlSource(d["url"], d.get("dest", ""), bool(d.get("copy", False)))
        case other:
            raise ValueError(f"unknown source kind {other!r}")


def build_to_json(build: Build) -> dict[str, Any]:
    return {"address": str(build.version), "version": _key(build.version),
            "sources": [source_to_json(s) for s in build.sources], "remove": list(build.remove)}


def build_from_json(d: Mapping[str, Any]) -> Build:
    return Build(_unkey(d["version"]), tuple(source_from_json(s) for s in d["sources"]), tuple(d.get("remove", ())))


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return _plan_json(plan)


def plan_json_chunks(plan: Plan) -> Iterator[str]:
    """``json.dumps(plan_to_json(plan), indent=2, sort_keys=True) + "\\n"``, the same text, in pieces: the files
    to upload are written one by one as they are read (a plan of a million files never holds its whole text,
    nor a dict per file)."""
    token = secrets.token_hex(8)
    lists: list[Sequence[FileEntry]] = []

    def placeholder(files: Sequence[FileEntry]) -> str:
        lists.append(files)
        return f"{token}:{len(lists) - 1}"

    skeleton = json.dumps(_plan_json(plan, placeholder), indent=2, sort_keys=True) + "\n"
    at = 0
    for found in re.finditer(rf'"{token}:(\d+)"', skeleton):
        line_start = skeleton.rfind("\n", 0, found.start()) + 1
        depth = len(skeleton[line_start:found.start()]) - len(skeleton[line_start:found.start()].lstrip(" "))
        yield skeleton[at:found.start()]
        yield from _file_list(lists[int(found.group(1))], depth)
        at = found.end()
    yield skeleton[at:]


def _file_list(files: Sequence[FileEntry], depth: int) -> Iterator[str]:
    """A list of :func:`_file` dicts as ``json.dumps(..., indent=2, sort_keys=True)`` writes it at ``depth``."""
    if not files:
        yield "[]"
        return
    pad, inner = " " * (depth + 2), " " * (depth + 4)
    enc = _encode_string
    yield "["
    sep = "\n"
    batch: list[str] = []
    for f in files:
        local = "null" if f.local is None else enc(f.local)
        batch.append(f'{sep}{pad}{{\n{inner}"local": {local},\n{inner}"path": {enc(f.path)},\n'
                     f'{inner}"sha256": {enc(f.sha256)},\n{inner}"size": {int(f.size)}\n{pad}}}')
        sep = ",\n"
        if len(batch) >= 1024:
            yield "".join(batch)
            batch = []
    yield "".join(batch) + "\n" + " " * depth + "]"


def write_plan_json(plan: Plan, write: Callable[[str], object]) -> None:
    """Write the JSON form of ``plan`` (what :func:`plan_json_chunks` gives) through ``write``."""
    for chunk in plan_json_chunks(plan):
        write(chunk)


def _plan_json(plan: Plan, files: Callable[[Sequence[FileEntry]], Any] | None = None) -> dict[str, Any]:
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
            "restore": s.restore,
            "conflicts": s.conflicts,
            "upload_files": s.upload_files,
            "upload_bytes": s.upload_bytes,
            "has_changes": plan.has_changes,
        },
        "actions": [action_to_json(a, files) for a in plan.actions],
        "conflicts": [_plain(c) for c in plan.conflicts],
        "unmanaged": [_plain(u) for u in plan.unmanaged],
        "drift": [_drift(d) for d in plan.drift],
        "aliases": [{"dataset": str(m.dataset), "alias": m.alias, "before": list(m.before), "after": m.after}
                    for m in plan.aliases],
        "builds": [build_to_json(b) for b in plan.builds],
        "checks": [checks_to_json(c) for c in plan.checks],
        "held": [{"address": str(h.version), "version": _key(h.version), "reason": h.reason} for h in plan.held],
        # present only when retention acts (so plans of datasets without a policy keep their form)
        **({"retention": [retention_to_json(e) for e in plan.retention]} if plan.retention else {}),
        **({"freed": {"delete": s.delete, "freed_bytes": s.freed_bytes,
                      **({"rehome_bytes": s.rehome_bytes} if s.rehome_bytes else {})}}
           if s.freed_bytes or s.delete else {}),
    }


def _use(u: TaskUse) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "project": u.project, "status": u.status,
            "last_update": u.last_update.isoformat() if u.last_update else None}


def retention_to_json(e: RetentionEntry) -> dict[str, Any]:
    return {"address": str(e.version), "version": _key(e.version), "version_id": e.version_id, "stage": e.stage,
            "why": e.why, "freed_bytes": e.freed_bytes, "kept_bytes": e.kept_bytes, "reasons": list(e.reasons),
            "tasks": [_use(u) for u in e.tasks], "delete_after": e.delete_after}


def retention_from_json(d: Mapping[str, Any]) -> RetentionEntry:
    return RetentionEntry(
        _unkey(d["version"]), d["version_id"], d["stage"], d["why"], int(d.get("freed_bytes", 0)),
        int(d.get("kept_bytes", 0)), tuple(d.get("reasons", ())),
        tuple(TaskUse(u["id"], u["name"], u["project"], u["status"], parse_time(u.get("last_update") or ""))
              for u in d.get("tasks", ())),
        d.get("delete_after", ""))


def _drift(d: Drift) -> dict[str, Any]:
    return {"address": str(d.version), "version": _key(d.version), "version_id": d.version_id, "what": d.what,
            "detail": d.detail, "before": _properties(d.before) if d.before else None,
            "after": _properties(d.after) if d.after else None}


def _undrift(d: Mapping[str, Any]) -> Drift:
    return Drift(_unkey(d["version"]), d["version_id"], d["what"], d["detail"],
                 _unproperties(d["before"]) if d.get("before") else None,
                 _unproperties(d["after"]) if d.get("after") else None)


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
            drift=tuple(_undrift(d) for d in data.get("drift", [])),
            aliases=tuple(AliasMove(DatasetKey.parse(m["dataset"]), m["alias"], tuple(m["before"]),
                                    m["after"]) for m in data.get("aliases", [])),
            builds=tuple(build_from_json(b) for b in data.get("builds", [])),
            checks=tuple(checks_from_json(c) for c in data.get("checks", [])),
            held=tuple(Held(_unkey(h["version"]), h["reason"]) for h in data.get("held", [])),
            retention=tuple(retention_from_json(e) for e in data.get("retention", [])),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ReconcileError(f"{source}: malformed saved plan ({type(err).__name__}: {err})") from None


def read_plan(path: Path) -> Plan:
    """The plan saved in ``path`` (by ``plan --out``); one line naming the file when it is not one."""
    try:
        return plan_from_json(json.loads(path.read_text()), source=str(path))
    except ValueError as err:
        raise ReconcileError(f"{path}: not valid JSON ({err})") from None
