"""The one differ of a version's properties: plan renderers and diff reports show what it finds.

Changes are kopf-style items: ``(field, path, change, before, after)`` where ``path`` names the place inside
the field (``tags``, ``description``, ``metadata['a']['b']``, ``metadata['list'][2]``) and ``change`` is
``added``, ``removed`` or ``changed``. Tags are a set: each tag is added or removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .model import PROPERTY_FIELDS, Properties, canonical_json, thaw_json


@dataclass(frozen=True, slots=True)
class PropertyChange:
    field: str
    path: str
    change: str  # added | removed | changed
    before: Any = None
    after: Any = None


def diff_properties(before: Properties, after: Properties) -> tuple[PropertyChange, ...]:
    """Every difference going from ``before`` to ``after``, sorted by field name then path.

    Tags are compared as sets here; description and metadata by deepdiff (imported only when some field
    differs, so a plan without property changes never loads it).
    """
    fields_changed = changed_fields(before, after)
    if not fields_changed:
        return ()
    out: list[PropertyChange] = []
    if "tags" in fields_changed:
        out += [PropertyChange("tags", "tags", "added", None, t) for t in sorted(after.tags - before.tags)]
        out += [PropertyChange("tags", "tags", "removed", t, None) for t in sorted(before.tags - after.tags)]
    others = [name for name in fields_changed if name != "tags"]
    if others:
        from deepdiff import DeepDiff

        left = {name: thaw_json(getattr(before, name)) for name in others}
        right = {name: thaw_json(getattr(after, name)) for name in others}
        for report_type, levels in DeepDiff(left, right, view="tree").items():
            for level in levels:
                parts = level.path(output_format="list")
                path = str(parts[0]) + "".join(f"[{p!r}]" for p in parts[1:] if p is not None)
                out.append(PropertyChange(str(parts[0]), path, _kind(report_type), _present(level.t1),
                                          _present(level.t2)))
    return tuple(sorted(out, key=lambda c: (c.field, c.path, c.change, repr(c.before), repr(c.after))))


def changed_fields(before: Properties, after: Properties) -> tuple[str, ...]:
    """The names of the fields that differ (what a writer must write). Cheap: no deepdiff."""
    return tuple(name for name in PROPERTY_FIELDS if _key(getattr(before, name)) != _key(getattr(after, name)))


def _key(value: Any) -> Any:
    if isinstance(value, frozenset):
        return tuple(sorted(value))
    if isinstance(value, Mapping):
        return canonical_json(value)
    return value


def _kind(report_type: str) -> str:
    if report_type.endswith("added"):
        return "added"
    if report_type.endswith("removed"):
        return "removed"
    return "changed"


def _present(value: Any) -> Any:
    return None if type(value).__name__ == "NotPresent" else value


assert tuple(f.name for f in fields(Properties) if not f.name.startswith("_")) == PROPERTY_FIELDS
