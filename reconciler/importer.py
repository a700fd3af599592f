"""``reconcile import``: manifests that describe datasets already on a server, so adopting them changes nothing.

Every finalized version is written pinned by its id (``id:``: adopt it, content as the server holds it), with
its parent, its publish state, and its description, tags and metadata (the dataset's values are those of its
newest version; a version that differs says so itself). Drafts are listed in a comment, not adopted. The parents
of an imported version are imported too (a manifest names its parents). Output is deterministic: datasets,
versions and keys in a fixed order, scalars in JSON spelling (which YAML reads as is).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clearml_backend import ServerReader, codec
from .diagnostics import ReconcileError
from .model import DatasetKey, ObservedVersion, Properties, thaw_json
from .observe import list_versions, state_cache_dir, with_state

_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
API_VERSION = "reconciler/v1"


@dataclass(frozen=True, slots=True)
class ImportedDataset:
    key: DatasetKey
    versions: tuple[ObservedVersion, ...]  # finalized, oldest first
    drafts: tuple[ObservedVersion, ...]
    parents: Mapping[str, str]  # version id -> the parent reference to write ("1.0.0" or "proj/name@1.0.0")


def resolve_targets(reader: ServerReader, targets: Sequence[str]) -> list[DatasetKey]:
    """The datasets ``targets`` name: ``PROJECT`` (every dataset directly in it), ``PROJECT/NAME``, or an id."""
    found: list[DatasetKey] = []
    for target in targets:
        keys = _target(reader, target.strip().strip("/"))
        if not keys:
            raise ReconcileError(f"nothing to import for {target!r}: no dataset, project or dataset version "
                                 "of that name or id on the server")
        found += [k for k in keys if k not in found]
    return found


def _target(reader: ServerReader, target: str) -> list[DatasetKey]:
    if _HEX_ID.match(target):
        task = reader.task(target)
        names = reader.project_names([str(task.get("project"))]) if task and task.get("project") else {}
        where = codec.split_hidden_project(names.get(str((task or {}).get("project")), ""))
        return [DatasetKey(*where)] if where else []
    if "/" in target.strip("/"):
        key = DatasetKey.parse(target.strip("/"))
        if codec.hidden_project(key.project, key.name) in reader.dataset_projects([key.project]).values():
            return [key]
    return sorted(DatasetKey(*where) for full in reader.dataset_projects([target]).values()
                  if (where := codec.split_hidden_project(full)))


def gather(reader: ServerReader, datasets: Iterable[DatasetKey], cache_root: Path) -> list[ImportedDataset]:
    """What to write for ``datasets`` and every dataset their parents live in, read from the server."""
    pending = list(datasets)
    done: dict[DatasetKey, ImportedDataset] = {}
    by_id: dict[str, ObservedVersion] = {}
    cache_dir = state_cache_dir(reader.api_host, cache_root)
    while pending:
        key = pending.pop(0)
        if key in done:
            continue
        listing = list_versions(reader, [key.project])
        mine = [v for v in listing.versions if v.key.dataset == key and not v.archived]
        final, drafts = [], []
        for v in mine:
            if not v.finalized:
                drafts.append(v)
                continue
            task = listing.raw[v.id]
            v = with_state(v, reader.read_state(task, cache_dir))
            if not v.managed:  # metadata of a version this tool did not make lives only in its artifact
                meta = reader.read_json_artifact(task, codec.METADATA_KEY)
                if isinstance(meta, dict):
                    v = _with_metadata(v, meta)
            final.append(v)
            by_id[v.id] = v
        final.sort(key=lambda v: (_semver(v.key.version), v.key.version, v.last_update))
        done[key] = ImportedDataset(key, tuple(final), tuple(sorted(drafts, key=lambda v: v.key.version)), {})
        for v in final:
            for parent_id in v.parent_ids[:1]:
                if parent_id not in by_id:
                    pending += [k for k in _target(reader, parent_id) if k not in done]
    out = []
    for key, item in sorted(done.items()):
        parents: dict[str, str] = {}
        for v in item.versions:
            parent = by_id.get(v.parent_ids[0]) if v.parent_ids else None
            if parent is not None:
                same = parent.key.dataset == key
                parents[v.id] = parent.key.version if same else f"{parent.key.dataset}@{parent.key.version}"
        out.append(ImportedDataset(key, item.versions, item.drafts, parents))
    return out


def _with_metadata(v: ObservedVersion, meta: Mapping[str, Any]) -> ObservedVersion:
    from dataclasses import replace

    return replace(v, properties=v.properties.replace(metadata=meta))


def _semver(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+-]", version)[:3])


def _scalar(value: Any) -> str:
    return json.dumps(thaw_json(value), ensure_ascii=False, sort_keys=True)


def render_manifest(item: ImportedDataset, source: str) -> str:
    """The manifest of one imported dataset (YAML; every scalar and mapping in JSON spelling)."""
    newest = item.versions[-1].properties if item.versions else Properties()
    lines = [
        f"# Imported from {source} by 'reconcile import'.",
        "# Each version below exists on the server and is adopted as it is (id:); 'reconcile plan' shows no",
        "# changes for it. Declare new versions below them, with sources, as usual.",
        f"apiVersion: {API_VERSION}",
        "kind: Dataset",
        f"project: {_scalar(item.key.project)}",
        f"name: {_scalar(item.key.name)}",
        *(f"{name}: {_scalar(value)}" for name, value in newest.to_json().items()),
    ]
    if item.drafts:
        lines.append("# Drafts on the server, not adopted (finalize or discard them in ClearML first):")
        lines += [f"#   {d.key.version} (id {d.id}, {d.status})" for d in item.drafts]
    lines.append("versions:" if item.versions else "versions: []  # no finalized version yet")
    for v in item.versions:
        lines.append(f"  - version: {_scalar(v.key.version)}")
        lines.append(f"    id: {v.id}")
        if v.id in item.parents:
            lines.append(f"    parent: {_scalar(item.parents[v.id])}")
        if len(v.parent_ids) > 1:
            lines.append(f"    # other parents on the server: {', '.join(v.parent_ids[1:])}")
        if v.status == "published":
            lines.append("    publish: true")
        dataset_level = newest.to_json()
        lines += [f"    {name}: {_scalar(value)}" for name, value in v.properties.to_json().items()
                  if _scalar(value) != _scalar(dataset_level[name])]
    return "\n".join(lines) + "\n"


def manifest_path(out_dir: Path, key: DatasetKey) -> Path:
    """``<out>/<project folders>/<name>.yaml``, with characters unsafe in file names replaced."""
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", part) or "_" for part in (*key.project.split("/"), key.name)]
    return out_dir.joinpath(*safe[:-1], safe[-1] + ".yaml")
