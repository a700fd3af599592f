"""``reconcile import``: manifests that describe datasets already on a server, so adopting them changes nothing.

Every finalized version is written pinned by its id (``id:``: adopt it, content as the server holds it), with
its parent, its publish state, and its description, tags and metadata artifacts, as consumers read them (the
dataset's values are those of its newest version; a version that differs says so itself). The SDK's automatic
description is no description. Drafts are listed in a comment and in the command's notes, not adopted; a dataset
with no finalized live version is not written, and says why. The parents of an imported version are imported
too (a manifest names its parents). Output is deterministic: datasets, versions and keys in a fixed order,
scalars in JSON spelling (which YAML reads as is).

``import --update`` adds the versions a manifest lacks to it (round-trip YAML: its comments and layout stay).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .clearml_backend import ServerReader
from .diagnostics import ReconcileError
from .model import DatasetKey, ObservedVersion, Properties, thaw_json
from .observe import list_versions, state_cache_dir


@dataclass(frozen=True, slots=True)
class ManifestFiles:
    texts: dict[Path, str]  # path -> the manifest's text
    added: dict[Path, list[str]]  # an existing manifest (--update) -> the versions added to it


_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
API_VERSION = "reconciler/v1"


@dataclass(frozen=True, slots=True)
class ImportedDataset:
    key: DatasetKey
    versions: tuple[ObservedVersion, ...]  # finalized, oldest first
    drafts: tuple[ObservedVersion, ...]
    parents: Mapping[str, tuple[str, ...]]  # version id -> its parent references, in merge order ("1.0.0" or
    # "proj/name@1.0.0")
    archived: int = 0  # finalized versions that are archived (not imported)
    unreadable: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # version id -> artifacts not JSON

    def notes(self) -> list[str]:
        """What the import leaves out, one line each."""
        if not self.versions:
            return [f"{self.key}: not imported: no finalized live version on the server ({self.left_out()})"]
        return [f"{self.key}@{d.key.version}: a draft (id {d.id}, {d.status}), not imported; finalize it with the "
                "SDK (then 'reconcile import --update') or discard it" for d in self.drafts] + [
                f"{self.key}@{v.key.version}: metadata {', '.join(names)} not imported (not JSON objects)"
                for v in self.versions if (names := self.unreadable.get(v.id))]

    def left_out(self) -> str:
        parts = []
        if self.drafts:
            parts.append(f"{len(self.drafts)} draft{'s' if len(self.drafts) != 1 else ''} "
                         f"({', '.join(d.key.version for d in self.drafts)})")
        if self.archived:
            parts.append(f"{self.archived} archived version{'s' if self.archived != 1 else ''}")
        return ", ".join(parts) or "no versions"


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
        found = reader.dataset_of(target)
        return [found] if found else []
    if "/" in target.strip("/"):
        key = DatasetKey.parse(target.strip("/"))
        if key in reader.datasets([key.project]):
            return [key]
    return list(reader.datasets([target]))


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
        everything = [v for v in listing.versions if v.key.dataset == key]
        mine = [v for v in everything if not v.archived]
        final, drafts = [], []
        unreadable: dict[str, tuple[str, ...]] = {}
        for v in mine:
            if not v.finalized:
                drafts.append(v)
                continue
            v = reader.with_files(v, cache_dir)
            if v.unread_metadata:
                v, unreadable[v.id] = reader.with_metadata(v)
            final.append(v)
            by_id[v.id] = v
        final = parents_first(sorted(final, key=lambda v: version_order(v.key.version, v.last_update)))
        archived = sum(1 for v in everything if v.archived and v.finalized)
        done[key] = ImportedDataset(key, tuple(final), tuple(sorted(drafts, key=lambda v: v.key.version)), {},
                                    archived, unreadable)
        for v in final:
            for parent_id in v.parent_ids:
                if parent_id not in by_id:
                    pending += [k for k in _target(reader, parent_id) if k not in done]
    out = []
    for key, item in sorted(done.items()):
        parents: dict[str, tuple[str, ...]] = {}
        for v in item.versions:
            found = [by_id[p] for p in v.parent_ids if p in by_id]
            if found:
                parents[v.id] = tuple(p.key.version if p.key.dataset == key else f"{p.key.dataset}@{p.key.version}"
                                      for p in found)
        out.append(replace(item, parents=parents))
    return out


def version_order(version: str, last_update: str = "") -> tuple[Any, ...]:
    """A sort key that orders version strings as ClearML does when it picks a dataset's latest version: the
    strings that parse as PEP 440 versions (1.0.0, v2, 1.0, 2024.06.01) by that order, after every other string;
    those, and equal versions, by ``last_update``."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version.strip()), last_update)
    except InvalidVersion:
        return (0, last_update)


def parents_first(versions: Sequence[ObservedVersion]) -> list[ObservedVersion]:
    """``versions`` in their order, except that a version comes after its parents among them."""
    by_id = {v.id: v for v in versions}
    order: list[ObservedVersion] = []
    seen: set[str] = set()

    def visit(v: ObservedVersion) -> None:
        if v.id in seen:
            return
        seen.add(v.id)
        for p in v.parent_ids:
            if p in by_id:
                visit(by_id[p])
        order.append(v)

    for v in versions:
        visit(v)
    return order


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
        *(f"{name}: {_scalar(value)}" for name, value in newest.to_json().items()
          if value or name not in _OMITTED_WHEN_EMPTY),
    ]
    if item.drafts:
        lines.append("# Drafts on the server, not adopted (finalize or discard them in ClearML first):")
        lines += [f"#   {d.key.version} (id {d.id}, {d.status})" for d in item.drafts]
    lines.append("versions:" if item.versions else "versions: []  # no finalized version yet")
    lines += version_lines(item, item.versions, newest)
    return "\n".join(lines) + "\n"


_OMITTED_WHEN_EMPTY = ("metadata_artifacts",)


def version_lines(item: ImportedDataset, versions: Iterable[ObservedVersion], dataset_level: Properties
                  ) -> list[str]:
    """The ``versions:`` entries of ``versions`` (indented for a manifest), each with what differs from
    ``dataset_level``."""
    lines = []
    level = dataset_level.to_json()
    for v in versions:
        lines.append(f"  - version: {_scalar(v.key.version)}")
        lines.append(f"    id: {v.id}")
        refs = item.parents.get(v.id, ())
        if len(refs) == 1:
            lines.append(f"    parent: {_scalar(refs[0])}")
        elif refs:
            lines.append(f"    parents: [{', '.join(_scalar(r) for r in refs)}]")
        if v.status == "published":
            lines.append("    publish: true")
        lines += [f"    {name}: {_scalar(value)}" for name, value in v.properties.to_json().items()
                  if _scalar(value) != _scalar(level[name])]
    return lines


def update_manifest(text: str, item: ImportedDataset, dataset_level: Properties, known: Iterable[str]
                    ) -> tuple[str, list[str]]:
    """``text`` (a manifest of ``item``'s dataset) with the imported versions it lacks appended to its
    ``versions``, comments and layout kept; and the versions added. ``known``: the ids and version strings
    the manifest already declares (a version it declares with sources is the one apply made)."""
    import io

    from ruamel.yaml import YAML

    known = set(known)
    new = [v for v in item.versions if v.id not in known and v.key.version not in known]
    if not new:
        return text, []
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    doc = yaml.load(text)
    entries = yaml.load("\n".join(version_lines(item, new, dataset_level)).replace("\n  ", "\n").lstrip())
    doc["versions"].extend(entries)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue(), [v.key.version for v in new]


def manifest_path(out_dir: Path, key: DatasetKey) -> Path:
    """``<out>/<project folders>/<name>.yaml``, with characters unsafe in file names replaced."""
    safe = [re.sub(r"[^A-Za-z0-9._-]+", "_", part) or "_" for part in (*key.project.split("/"), key.name)]
    return out_dir.joinpath(*safe[:-1], safe[-1] + ".yaml")


def manifest_files(items: Sequence[ImportedDataset], out_dir: Path, source: str, *, update: bool) -> ManifestFiles:
    """The manifests an import writes into ``out_dir``, each checked to load: a new file per dataset, or (with
    ``update``) an existing manifest with the versions it lacks added. An existing file is never overwritten
    without ``update``; errors name the files as they would be written, never a temporary one."""
    import tempfile

    from .manifest import load_manifests

    existing = {}
    if update and out_dir.exists():
        desired = load_manifests([out_dir], check_local_paths=False)
        existing = {ds.key: ds for ds in desired.datasets}
    files: dict[Path, str] = {}
    added: dict[Path, list[str]] = {}
    for item in items:
        ds = existing.get(item.key)
        if ds is None or ds.span is None:
            files[manifest_path(out_dir, item.key)] = render_manifest(item, source)
            continue
        path = Path(ds.span.file)
        known = [v.adopt or v.key.version for v in ds.versions] + [v.key.version for v in ds.versions]
        text, new = update_manifest(path.read_text(), item, ds.properties, known)
        if new:
            files[path], added[path] = text, new
    if not update:
        taken = [str(p) for p in files if p.exists()]
        if taken:
            raise ReconcileError(f"{taken[0]} exists and is not overwritten; add --update to add the versions it "
                                 "lacks, or move it away, or choose another --out"
                                 + (f" ({len(taken) - 1} more)" if len(taken) > 1 else ""))
    if not files:
        return ManifestFiles(files, added)
    with tempfile.TemporaryDirectory(prefix="reconcile-import-") as tmp:  # what we write must load cleanly
        names = {}
        for i, (path, text) in enumerate(files.items()):
            (Path(tmp) / f"{i}.yaml").write_text(text)
            names[str((Path(tmp) / f"{i}.yaml").resolve())] = str(path)
        try:
            load_manifests([Path(tmp)], check_local_paths=False)
        except ReconcileError as e:  # named as the files import would write, never the temporary ones
            def named(file: str) -> str:
                return names.get(str(Path(file).resolve()), file)

            raise ReconcileError([replace(d, span=replace(d.span, file=named(d.span.file)))
                                  if d.span is not None else d for d in e.diagnostics]) from None
    return ManifestFiles(files, added)


def write_manifests(files: ManifestFiles) -> Iterator[Path]:
    """Write ``files`` (folders made as needed), yielding each path once it is written."""
    for path, text in files.texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        yield path
