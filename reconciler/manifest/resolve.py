"""Checks across documents and the assembly of :class:`DesiredState`.

A dataset may be spread over several documents (for instance one file per version); the dataset-level fields
each gives must agree. Version identities are unique across all documents; parents resolve to versions
named in the manifests and never form a cycle, so ``DesiredState.lineage`` always terminates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ..diagnostics import Diagnostic, SourceSpan
from ..model import DatasetKey, DatasetSpec, DesiredState, Properties, VersionKey, VersionSpec, freeze_json
from .build import DATASET_FIELDS, DatasetPart, VersionPart, dataset_field_value
from .schema import at


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
    datasets = tuple(_dataset(key, groups[key], versions, parents) for key in sorted(groups))
    return DesiredState(datasets), diags


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
    if "@" not in ref:
        return VersionKey(own.project, own.name, ref)
    dataset, version = ref.rsplit("@", 1)
    project, name = dataset.rsplit("/", 1)
    return VersionKey(project, name, version)


def _resolve_parents(
    versions: Mapping[VersionKey, VersionPart], datasets: set[DatasetKey], diags: list[Diagnostic]
) -> dict[VersionKey, VersionKey]:
    parents: dict[VersionKey, VersionKey] = {}
    for key, v in versions.items():
        if v.parent_ref is None:
            continue
        target = parse_parent(v.parent_ref, key.dataset)
        where = (*v.path, "parent")
        if target.dataset not in datasets:
            diags.append(
                Diagnostic(
                    at(where, f"{v.parent_ref!r}: no dataset {target.dataset} in the manifests"),
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
            parents[key] = target
    return parents


def _cycles(
    versions: Mapping[VersionKey, VersionPart], parents: Mapping[VersionKey, VersionKey]
) -> list[Diagnostic]:
    """One diagnostic per parent cycle, at the member that comes first in the manifests."""
    done: set[VersionKey] = set()
    diags = []
    for start in versions:
        chain: list[VersionKey] = []
        cur: VersionKey | None = start
        while cur is not None and cur not in done and cur not in chain:
            chain.append(cur)
            cur = parents.get(cur)
        if cur is not None and cur in chain:
            cycle = chain[chain.index(cur) :]
            diags.append(_cycle_diagnostic(cycle, versions))
        done.update(chain)
    return diags


def _cycle_diagnostic(cycle: list[VersionKey], versions: Mapping[VersionKey, VersionPart]) -> Diagnostic:
    def place(k: VersionKey) -> SourceSpan:
        return versions[k].doc.span((*versions[k].path, "parent"))

    head = min(cycle, key=place)
    i = cycle.index(head)
    ordered = cycle[i:] + cycle[:i] + [head]
    v = versions[head]
    where = (*v.path, "parent")
    return Diagnostic(at(where, "parent cycle: " + " -> ".join(str(k) for k in ordered)), v.doc.span(where))


def _dataset(
    key: DatasetKey,
    group: list[DatasetPart],
    versions: Mapping[VersionKey, VersionPart],
    parents: Mapping[VersionKey, VersionKey],
) -> DatasetSpec:
    fields: dict[str, Any] = {}
    for part in group:
        for name, value in part.fields.items():
            fields.setdefault(name, value)
    tags = fields.get("tags")
    properties = Properties(
        description=fields["description"] if isinstance(fields.get("description"), str) else "",
        tags=frozenset(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else frozenset(),
        metadata=freeze_json(fields["metadata"] if isinstance(fields.get("metadata"), dict) else {}),
    )
    specs = tuple(_version(v, parents, properties) for k, v in versions.items() if k.dataset == key)
    return DatasetSpec(
        key=key,
        versions=specs,
        properties=properties,
        statistics=fields.get("statistics") is True,
        chunk_size_mb=_upload(fields, "chunk_size_mb", int),
        compression=_upload(fields, "compression", str) or "auto",
        storage=fields["storage"] if isinstance(fields.get("storage"), str) else None,
        span=group[0].doc.span(()),
    )


def _upload(fields: Mapping[str, Any], name: str, kind: type) -> Any:
    upload = fields.get("upload")
    value = upload.get(name) if isinstance(upload, dict) else None
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _version(v: VersionPart, parents: Mapping[VersionKey, VersionKey], properties: Properties) -> VersionSpec:
    """The version with its parent resolved; its properties are the dataset's (every version carries them)."""
    return dataclasses.replace(v.spec, parent=parents.get(v.spec.key), properties=properties)
