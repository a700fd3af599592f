"""Checks across documents and the assembly of :class:`DesiredState`.

A dataset may be spread over several documents (for instance one file per version); the dataset-level fields
each gives must agree. Version identities are unique across all documents; parents resolve to versions
named in the manifests and never form a cycle, so ``DesiredState.lineage`` always terminates.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ..diagnostics import Diagnostic, SourceSpan
from ..model import (
    DAY,
    CheckSpec,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    Properties,
    Retention,
    VersionKey,
    VersionSpec,
)
from .build import DATASET_FIELDS, DatasetPart, VersionPart, dataset_field_value
from .schema import at
from .yamldoc import JsonPath


def resolve(parts: list[DatasetPart]) -> tuple[DesiredState, list[Diagnostic]]:
    """The desired state of ``parts`` (in manifest order) and every cross-document problem."""
    groups: dict[DatasetKey, list[DatasetPart]] = {}
    for part in parts:
        groups.setdefault(part.key, []).append(part)
    diags: list[Diagnostic] = []
    for group in groups.values():
        diags.extend(_field_conflicts(group))
    versions = _unique_versions(parts, diags)
    parents = _resolve_parents(versions, set(groups), diags)
    diags.extend(_cycles(versions, parents))
    diags.extend(_alias_problems(groups, versions))
    diags.extend(_adoption_problems(versions))
    datasets = tuple(_dataset(key, groups[key], versions, parents) for key in sorted(groups))
    return DesiredState(datasets), diags


def _alias_problems(groups: Mapping[DatasetKey, list[DatasetPart]],
                    versions: Mapping[VersionKey, VersionPart]) -> Iterable[Diagnostic]:
    """An alias names a version of its own dataset, and is no tag of the dataset (it moves; tags do not)."""
    for key, group in groups.items():
        for part in group:
            aliases = part.fields.get("aliases")
            if not isinstance(aliases, dict):
                continue
            tags = part.fields.get("tags") if isinstance(part.fields.get("tags"), list) else []
            known = [k.version for k in versions if k.dataset == key]
            for name, version in aliases.items():
                where = ("aliases", name)
                if isinstance(version, str) and version not in known:
                    yield Diagnostic(at(where, f"{version!r} is not a version of {key} (its versions: "
                                               f"{', '.join(known)})"), part.doc.span(where))
                if name in (tags or []):
                    yield Diagnostic(at(where, f"{name!r} is also a tag of every version; an alias is a tag on "
                                               "one version only: remove it from tags"), part.doc.span(where, key=True))


def _adoption_problems(versions: Mapping[VersionKey, VersionPart]) -> Iterable[Diagnostic]:
    seen: dict[str, VersionPart] = {}
    for v in versions.values():
        if v.spec.adopt is None:
            continue
        if v.spec.adopt in seen:
            first = seen[v.spec.adopt]
            yield Diagnostic(at((*v.path, "id"), f"{first.spec.key} already adopts version {v.spec.adopt} "
                                                 f"(at {first.doc.span((*first.path, 'id'))})"),
                             v.doc.span((*v.path, "id")))
        else:
            seen[v.spec.adopt] = v


def _field_conflicts(group: list[DatasetPart]) -> Iterable[Diagnostic]:
    first: dict[str, DatasetPart] = {}
    for part in group:
        for name in DATASET_FIELDS:
            if name not in part.fields:
                continue
            if name not in first:
                first[name] = part
                continue
            other = first[name]
            if dataset_field_value(part.fields, name) != dataset_field_value(other.fields, name):
                where = other.doc.span((name,))
                yield Diagnostic(
                    at(
                        (name,),
                        f"differs from the {name} of {part.key} at {where}; a dataset's fields "
                        "must agree in every document that gives them",
                    ),
                    part.doc.span((name,)),
                )


def _unique_versions(parts: list[DatasetPart], diags: list[Diagnostic]) -> dict[VersionKey, VersionPart]:
    """Versions by key in manifest order; a repeated key is reported where it repeats, naming the first."""
    versions: dict[VersionKey, VersionPart] = {}
    for part in parts:
        for v in part.versions:
            key = v.spec.key
            if key in versions:
                first = versions[key]
                where = first.doc.span((*first.path, "version"))
                diags.append(
                    Diagnostic(
                        at((*v.path, "version"), f"version {key} is already defined at {where}"),
                        v.doc.span((*v.path, "version")),
                    )
                )
            else:
                versions[key] = v
    return versions


def parse_parent(ref: str, own: DatasetKey) -> VersionKey:
    """``1.0.0`` -> a version of ``own``; ``project/sub/name@1.0.0`` -> a version of that dataset."""
    return VersionKey.parse(ref, dataset=own)


def _resolve_parents(
    versions: Mapping[VersionKey, VersionPart], datasets: set[DatasetKey], diags: list[Diagnostic]
) -> dict[VersionKey, tuple[VersionKey, ...]]:
    parents: dict[VersionKey, tuple[VersionKey, ...]] = {}
    for key, v in versions.items():
        found = [p for ref, where in v.parent_refs if (p := _resolve_parent(key, v, ref, where, versions, datasets,
                                                                            diags))]
        repeated = sorted({str(p) for p in found if found.count(p) > 1})
        if repeated:
            where = v.parent_refs[-1][1]
            diags.append(Diagnostic(at(where, f"{repeated[0]} is named twice as a parent"), v.doc.span(where)))
        if found:
            parents[key] = tuple(found)
    return parents


def _resolve_parent(key: VersionKey, v: VersionPart, ref: str, where: JsonPath,
                    versions: Mapping[VersionKey, VersionPart], datasets: set[DatasetKey], diags: list[Diagnostic]
                    ) -> VersionKey | None:
    """The version ``ref`` names, or None (with a diagnostic) when the manifests have none of that name."""
    target = parse_parent(ref, key.dataset)
    if target.dataset not in datasets:
        diags.append(
            Diagnostic(
                at(where, f"{ref!r}: no dataset {target.dataset} in the manifests"),
                v.doc.span(where),
            )
        )
    elif target not in versions:
        known = ", ".join(k.version for k in versions if k.dataset == target.dataset)
        diags.append(
            Diagnostic(
                at(
                    where,
                    f"{target.version!r} is not a version of {target.dataset} (its versions: {known})",
                ),
                v.doc.span(where),
            )
        )
    else:
        return target
    return None


def _cycles(
    versions: Mapping[VersionKey, VersionPart], parents: Mapping[VersionKey, tuple[VersionKey, ...]]
) -> list[Diagnostic]:
    """One diagnostic per parent cycle (depth first, parents in order), at the member that comes first in the
    manifests."""
    done: set[VersionKey] = set()
    diags = []

    def walk(cur: VersionKey, chain: list[VersionKey]) -> None:
        if cur in done:
            return
        if cur in chain:
            diags.append(_cycle_diagnostic(chain[chain.index(cur):], versions))
            return
        chain.append(cur)
        for p in parents.get(cur, ()):
            walk(p, chain)
        chain.pop()
        done.add(cur)

    for start in versions:
        walk(start, [])
    return diags


def _cycle_diagnostic(cycle: list[VersionKey], versions: Mapping[VersionKey, VersionPart]) -> Diagnostic:
    def where_of(k: VersionKey) -> JsonPath:
        v = versions[k]
        i = cycle.index(k)
        nxt = cycle[(i + 1) % len(cycle)]
        refs = [w for r, w in v.parent_refs if parse_parent(r, k.dataset) == nxt]
        return refs[0] if refs else (*v.path, "parent")

    def place(k: VersionKey) -> SourceSpan:
        return versions[k].doc.span(where_of(k))

    head = min(cycle, key=place)
    i = cycle.index(head)
    ordered = cycle[i:] + cycle[:i] + [head]
    where = where_of(head)
    return Diagnostic(at(where, "parent cycle: " + " -> ".join(str(k) for k in ordered)),
                      versions[head].doc.span(where))


def _dataset(
    key: DatasetKey,
    group: list[DatasetPart],
    versions: Mapping[VersionKey, VersionPart],
    parents: Mapping[VersionKey, tuple[VersionKey, ...]],
) -> DatasetSpec:
    fields: dict[str, Any] = {}
    for part in group:
        for name, value in part.fields.items():
            fields.setdefault(name, value)
    properties = _properties(fields, Properties())
    raw_aliases = fields.get("aliases") if isinstance(fields.get("aliases"), dict) else {}
    aliases = {str(k): v for k, v in (raw_aliases or {}).items() if isinstance(v, str)}
    checks = next((part.checks for part in group if "checks" in part.fields), ())
    specs = tuple(_version(v, parents, properties, aliases, checks) for k, v in versions.items()
                  if k.dataset == key)
    return DatasetSpec(
        key=key,
        versions=specs,
        properties=properties,
        aliases=MappingProxyType(dict(sorted(aliases.items()))),
        statistics=fields.get("statistics") is True,
        chunk_size_mb=_upload(fields, "chunk_size_mb", int),
        compression=_upload(fields, "compression", str) or "auto",
        storage=fields["storage"] if isinstance(fields.get("storage"), str) else None,
        retention=_retention(fields.get("retention")),
        span=group[0].doc.span(()),
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}


def duration_seconds(text: Any) -> int | None:
    """Seconds of a schema ``duration`` (``90d``, ``12h``, ``0``); None for anything else."""
    if text == "0" or (text == 0 and not isinstance(text, bool)):
        return 0
    if isinstance(text, str) and re.fullmatch(r"[0-9]+[smhdw]", text):
        return int(text[:-1]) * _UNITS[text[-1]]
    return None


def _retention(raw: Any) -> Retention | None:
    """The policy of a ``retention`` map (values the schema refuses are left at their defaults)."""
    if not isinstance(raw, dict) or not ({"keep_last", "max_age"} & raw.keys()):
        return None
    keep = raw.get("keep_last")
    defaults = Retention()
    grace, used = duration_seconds(raw.get("grace")), duration_seconds(raw.get("used_within"))
    return Retention(
        keep_last=keep if isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1 else None,
        max_age=duration_seconds(raw.get("max_age")),
        grace=defaults.grace if grace is None else grace,
        delete_published=raw.get("delete_published") is True,
        used_within=defaults.used_within if used is None else used,
        rehome=raw.get("rehome") is True,
    )


def _upload(fields: Mapping[str, Any], name: str, kind: type) -> Any:
    upload = fields.get("upload")
    value = upload.get(name) if isinstance(upload, dict) else None
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _properties(fields: Mapping[str, Any], base: Properties) -> Properties:
    """``base`` with the properties ``fields`` give (each replaces the base's)."""
    return Properties.from_json(fields, base)


def _version(v: VersionPart, parents: Mapping[VersionKey, tuple[VersionKey, ...]], properties: Properties,
             aliases: Mapping[str, str], checks: tuple[CheckSpec, ...]) -> VersionSpec:
    """The version with its parent resolved; its properties are the dataset's, with what the version gives
    itself instead, plus the aliases that name it (as tags); its checks are the dataset's, each replaced by
    the version's check of the same name (or dropped when it turns it off), then the version's new ones."""
    own = _properties(v.overrides, properties)
    named = frozenset(a for a, target in aliases.items() if target == v.spec.key.version)
    if named:
        own = own.replace(tags=own.tags | named)
    mine = dict(v.checks)
    merged = [mine.get(c.name, c) if c.name in mine else c for c in checks]
    merged += [c for name, c in v.checks if name not in {d.name for d in checks}]
    return dataclasses.replace(v.spec, parents=parents.get(v.spec.key, ()), properties=own,
                               checks=tuple(c for c in merged if c is not None))
