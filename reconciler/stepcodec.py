"""The JSON form of a :class:`~reconciler.steps.Step`: what the command stores on a version for the agent that
builds it, and what the agent reads back. ``step_from_json(step_to_json(s)) == s``.

Files to upload carry no local path: the agent finds them again from the sources.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .diagnostics import ReconcileError
from .model import FileEntry, VersionKey
from .plan.actions import Action, SyncFiles
from .plancodec import action_from_json, action_to_json, parents_from_json, source_from_json, source_to_json
from .plancodec import parents_json as _parents
from .steps import STEP_FORMAT_VERSION, Step

INLINE_LIMIT = 256 * 1024  # larger steps are stored gzip-compressed (a task document must stay small)


def _key(k: VersionKey) -> dict[str, str]:
    return {"project": k.project, "name": k.name, "version": k.version}


def _unkey(d: Mapping[str, str]) -> VersionKey:
    return VersionKey(d["project"], d["name"], d["version"])


def _without_local(action: Action) -> Action:
    if isinstance(action, SyncFiles):
        return replace(action, upload=tuple(FileEntry(f.path, f.size, f.sha256) for f in action.upload))
    return action


def step_to_json(step: Step) -> dict[str, Any]:
    return {
        "format_version": STEP_FORMAT_VERSION,
        "address": str(step.version),
        "version": _key(step.version),
        **_parents(step.parents),
        "actions": [action_to_json(_without_local(a)) for a in step.actions],
        "sources": [source_to_json(s) for s in step.sources],
        "remove": list(step.remove),
        "lock": [{"project": p, "token": t} for p, t in step.lock],
    }


def step_from_json(data: Mapping[str, Any], *, source: str = "step") -> Step:
    if not isinstance(data, Mapping) or data.get("format_version") != STEP_FORMAT_VERSION:
        raise ReconcileError(f"{source}: not a step of format_version {STEP_FORMAT_VERSION} (the agent runs "
                             "another version of reconcile than the command that queued it)")
    try:
        return Step(
            version=_unkey(data["version"]),
            parents=parents_from_json(data),
            actions=tuple(action_from_json(a) for a in data["actions"]),
            sources=tuple(source_from_json(s) for s in data["sources"]),
            remove=tuple(data.get("remove", ())),
            lock=tuple((str(x["project"]), str(x["token"])) for x in data.get("lock", ())),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ReconcileError(f"{source}: malformed step ({type(err).__name__}: {err})") from None


def encode_step(step: Step) -> str:
    """The text stored on the version: JSON, or ``{"gzip_base64": ...}`` when it is large."""
    text = json.dumps(step_to_json(step), sort_keys=True, separators=(",", ":"))
    if len(text) <= INLINE_LIMIT:
        return text
    packed = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    return json.dumps({"gzip_base64": packed})


def decode_step(text: str, *, source: str = "step") -> Step:
    try:
        data = json.loads(text)
        if isinstance(data, Mapping) and "gzip_base64" in data:
            data = json.loads(gzip.decompress(base64.b64decode(data["gzip_base64"])))
    except (ValueError, OSError, EOFError) as err:
        raise ReconcileError(f"{source}: not a readable step ({err})") from None
    return step_from_json(data, source=source)
