"""One manifest document -> what it says about one dataset, with the checks a single document allows.

Runs after the schema check and tolerates documents that failed it: every reader looks only at values of the
right type, so one run reports the schema problems and the semantic ones together. Parents stay unresolved
references here; :mod:`.resolve` links them across documents.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..checks.catalog import COMMON_OPTIONS, MEASURE_RULES, RULE_NEEDS, RULE_OPTIONS, parse_condition
from ..diagnostics import Diagnostic
from ..model import (
    PROPERTY_FIELDS,
    TORCHVISION_SPLITS,
    URL_SCHEMES,
    CheckSpec,
    DatasetKey,
    PathSource,
    Source,
    TorchvisionSource,
    UrlSource,
    VersionKey,
    VersionSpec,
    freeze_json,
    normalize_dataset_path,
)
from .card import CARD_KEY, load_card
from .schema import at, manifest_schema, show
from .yamldoc import Document, JsonPath, display_path, non_json_values

API_VERSION = "reconciler/v1"
KIND = "Dataset"
STORAGE_SCHEMES = ("s3", "gs", "azure", "http", "https", "file")
VERSION_PROPERTY_FIELDS = PROPERTY_FIELDS  # a version may give its own
DATASET_FIELDS = (*PROPERTY_FIELDS, "statistics", "storage", "upload", "aliases", "checks", "retention")
T = TypeVar("T")


@dataclass(slots=True)
class Collector:
    """Diagnostics of one document; ``add`` locates a message at a JSON path of it."""

    doc: Document
    diags: list[Diagnostic] = field(default_factory=list)

    def add(self, path: JsonPath, message: str, *, key: bool = False) -> None:
        self.diags.append(Diagnostic(at(path, message), self.doc.span(path, key=key)))


@dataclass(frozen=True, slots=True)
class VersionPart:
    """A version as its document gives it; ``spec.parents`` is unset until resolved from ``parent_refs``
    (each with the JSON path of the reference, for errors)."""

    spec: VersionSpec
    parent_refs: tuple[tuple[str, JsonPath], ...]
    doc: Document
    path: JsonPath
    overrides: Mapping[str, Any] = field(default_factory=dict)  # the version's own description/tags/metadata
    checks: tuple[tuple[str, CheckSpec | None], ...] = ()  # the version's own checks by name (None: turned off)


@dataclass(frozen=True, slots=True)
class DatasetPart:
    """What one document says about one dataset: the dataset-level fields it gives, and its versions."""

    key: DatasetKey
    doc: Document
    fields: Mapping[str, Any]
    versions: tuple[VersionPart, ...]
    checks: tuple[CheckSpec, ...] = ()


@lru_cache(maxsize=1)
def parent_pattern() -> str:
    """The schema's pattern for ``parent`` (so the loader and the schema cannot disagree)."""
    pattern: str = manifest_schema()["$defs"]["parentRef"]["pattern"]
    return pattern


def _get(data: Any, key: str, kind: type[T]) -> T | None:
    """``data[key]`` when ``data`` is a map and the value has type ``kind`` (booleans are not ints)."""
    if not isinstance(data, dict):
        return None
    value = data.get(key)
    if isinstance(value, bool) and kind is not bool:
        return None
    return value if isinstance(value, kind) else None


def _strings(data: Any, key: str) -> list[str]:
    values = _get(data, key, list) or []
    return [v for v in values if isinstance(v, str)]


def header_diagnostics(doc: Document) -> list[Diagnostic]:
    """Problems meaning the document is no v1 Dataset manifest at all (then the rest is not read)."""
    out = Collector(doc)
    if not isinstance(doc.data, dict):
        out.add(
            (),
            f"a manifest document must be a map with apiVersion: {API_VERSION} and kind: {KIND}, "
            f"got {show(doc.data)}",
        )
        return out.diags
    api, kind = doc.data.get("apiVersion"), doc.data.get("kind")
    if isinstance(api, str) and api != API_VERSION:
        out.add(
            ("apiVersion",),
            f"unsupported apiVersion {api!r} (this version of reconcile reads {API_VERSION!r})",
        )
    if isinstance(kind, str) and kind != KIND:
        out.add(("kind",), f"unknown kind {kind!r} (expected {KIND!r})")
    return out.diags


def read_dataset(doc: Document, *, check_local_paths: bool) -> tuple[DatasetPart | None, list[Diagnostic]]:
    """The dataset of ``doc`` (None when project or name is unusable) and the single-document problems."""
    out = Collector(doc)
    data = doc.data
    _check_dataset_fields(out, data)
    project, name = _get(data, "project", str), _get(data, "name", str)
    if project is None or name is None:
        return None, out.diags
    key = DatasetKey(project, name)
    versions = []
    for i, raw in enumerate(_get(data, "versions", list) or []):
        part = _read_version(out, key, ("versions", i), raw, check_local_paths)
        if part is not None:
            versions.append(part)
    fields = {f: data[f] for f in DATASET_FIELDS if f in data}
    card_path = _get(data, "card", str)
    if card_path:
        card = _read_card(out, card_path)
        if card is not None:  # stored as the named metadata 'card' of every version, its own map included
            fields["metadata_artifacts"] = {**(_get(data, "metadata_artifacts", dict) or {}), CARD_KEY: card}
            versions = [replace(v, overrides={**v.overrides, "metadata_artifacts": {
                **v.overrides["metadata_artifacts"], CARD_KEY: card}}) if isinstance(
                v.overrides.get("metadata_artifacts"), dict) else v for v in versions]
    checks = tuple(c for _, c in read_checks(out, ("checks",), data, check_local_paths) if c is not None)
    return DatasetPart(key, doc, fields, tuple(versions), checks), out.diags


def _read_card(out: Collector, value: str) -> dict[str, Any] | None:
    """The card ``card: value`` names (relative to the manifest), or None after reporting its problems."""
    if "card" in (_get(out.doc.data, "metadata_artifacts", dict) or {}):
        out.add(("metadata_artifacts", CARD_KEY), "the name 'card' is the dataset card's (card:); give the card "
                "there, or name this metadata otherwise", key=True)
        return None
    path = _local(out, value)
    if not path.is_file():
        out.add(("card",), f"dataset card {value!r} not found (looked for {display_path(path, Path.cwd())})")
        return None
    card, problems = load_card(path, display_path(path, Path.cwd()))
    out.diags.extend(problems)
    return card


def _check_dataset_fields(out: Collector, data: Any) -> None:
    _check_json(out, data, ())
    storage = _get(data, "storage", str)
    if storage:
        problem = _storage_problem(storage)
        if problem:
            out.add(("storage",), problem)


def _check_json(out: Collector, data: Any, path: JsonPath) -> None:
    """NaN and infinity in the metadata of ``data`` (at ``path``): YAML reads them, JSON has no such numbers."""
    for name in ("metadata", "metadata_artifacts"):
        value = _get(data, name, dict)
        if value is not None:
            for bad in non_json_values(value, (*path, name)):
                out.add(bad, "NaN and infinity are not JSON numbers; quote them if they are text")


def _storage_problem(storage: str) -> str | None:
    if "://" in storage:
        scheme = storage.split("://", 1)[0].lower()
        if scheme not in STORAGE_SCHEMES:
            return f"unsupported storage scheme {scheme!r} (supported: {', '.join(STORAGE_SCHEMES)})"
        return None
    if not os.path.isabs(os.path.expanduser(storage)):
        return f"{storage!r} is a relative path; give a URL or an absolute folder"
    return None


def _read_version(
    out: Collector, dataset: DatasetKey, path: JsonPath, raw: Any, check_local_paths: bool
) -> VersionPart | None:
    version = _get(raw, "version", str)
    if version is None:
        return None
    refs: list[tuple[str, JsonPath]] = []
    single = _get(raw, "parent", str)
    if single is not None:
        refs.append((single, (*path, "parent")))
    if single is None:
        refs += [(r, (*path, "parents", i)) for i, r in enumerate(_get(raw, "parents", list) or [])
                 if isinstance(r, str)]
    parent_refs = tuple((r, where) for r, where in refs if re.fullmatch(parent_pattern(), r))  # the schema
    if isinstance(raw, dict) and "parent" in raw and "parents" in raw:  # reports the others
        out.add((*path, "parents"), "give either parent or parents, not both (parent: X is parents: [X])", key=True)
    remove = tuple(_dataset_paths(out, (*path, "remove"), _strings(raw, "remove")))
    if remove and "parent" not in raw and "parents" not in raw:
        out.add((*path, "remove"), "needs a parent: a version without one has nothing to remove", key=True)
    sources: list[Source] = []
    for i, src in enumerate(_get(raw, "sources", list) or []):
        source = _read_source(out, (*path, "sources", i), src, check_local_paths)
        if source is not None:
            sources.append(source)
    adopt = _get(raw, "id", str)
    if adopt is not None and not re.fullmatch(r"[0-9a-f]{32}", adopt):
        adopt = None  # the schema reports it
    if adopt is not None:
        for name in ("sources", "remove"):
            if name in raw:
                out.add((*path, name), f"an adopted version (id: {adopt}) keeps the content the server holds: "
                        f"it takes no {name}; add a new version on top of it for new files", key=True)
    _check_json(out, raw, path)
    spec = VersionSpec(
        key=VersionKey(dataset.project, dataset.name, version),
        sources=tuple(sources),
        remove=remove,
        publish=_get(raw, "publish", bool) or False,
        adopt=adopt,
        span=out.doc.span(path),
    )
    overrides = {name: raw[name] for name in VERSION_PROPERTY_FIELDS if isinstance(raw, dict) and name in raw}
    checks = tuple(read_checks(out, (*path, "checks"), raw, check_local_paths))
    return VersionPart(spec, parent_refs, out.doc, path, overrides, checks)


def read_checks(out: Collector, path: JsonPath, raw: Any, check_local_paths: bool
                ) -> list[tuple[str, CheckSpec | None]]:
    """The checks ``raw[path[-1]]`` gives, by name (None: ``enabled: false``), with their semantic problems:
    options of another rule, missing options, conditions a measure rule needs, schemas, paths."""
    result: list[tuple[str, CheckSpec | None]] = []
    seen: set[str] = set()
    for i, item in enumerate(_get(raw, str(path[-1]), list) or []):
        where = (*path, i)
        name = _get(item, "name", str)
        if name is None:
            continue
        if name in seen:
            out.add((*where, "name"), f"a check named {name!r} is already given in this list")
            continue
        seen.add(name)
        if item.get("enabled") is False:
            result.append((name, None))
            continue
        spec = _read_check(out, where, name, item, check_local_paths)
        if spec is not None:
            result.append((name, spec))
    return result


def _read_check(out: Collector, where: JsonPath, name: str, item: dict[str, Any], check_local_paths: bool
                ) -> CheckSpec | None:
    rule = _get(item, "rule", str)
    if rule is None or rule not in RULE_OPTIONS:
        return None  # the schema reports it
    ok = True
    for key in item:
        if key not in COMMON_OPTIONS and key not in RULE_OPTIONS[rule] and key in manifest_schema()["$defs"][
                "check"]["properties"]:
            mine = sorted(RULE_OPTIONS[rule])
            out.add((*where, key), f"{key!r} is not an option of rule {rule!r} "
                    f"({'its options: ' + ', '.join(mine) if mine else 'it takes none'})", key=True)
            ok = False
    for group in RULE_NEEDS.get(rule, ()):
        if not any(k in item for k in group):
            out.add(where, f"rule {rule!r} needs {' or '.join(repr(k) for k in group)}")
            ok = False
    if rule in MEASURE_RULES and "error_if" not in item and "warn_if" not in item:
        out.add(where, f"rule {rule!r} measures the {MEASURE_RULES[rule]}: give error_if or warn_if (e.g. '>5')")
        ok = False
    for key in ("error_if", "warn_if"):
        value = _get(item, key, str)
        if value is not None:
            try:
                parse_condition(value)
            except ValueError:
                ok = False  # the schema reports it
    params = {k: v for k, v in item.items() if k not in COMMON_OPTIONS}
    if isinstance(params.get("schema"), dict):
        problem = _schema_problem(params["schema"])
        if problem:
            out.add((*where, "schema"), problem)
            ok = False
    schema_file = _get(item, "schema_file", str)
    if schema_file:
        local = _local(out, schema_file)
        if check_local_paths and not local.is_file():
            out.add((*where, "schema_file"), f"{schema_file!r} does not exist "
                    f"(looked for {display_path(local, Path.cwd())})")
            ok = False
        params["schema_file"] = str(local)
    run = _strings(item, "run")
    if rule == "command" and run:
        if "/" in run[0] and not os.path.isabs(run[0]):
            run[0] = str(_local(out, run[0]))
        params["run"] = run
        params["cwd"] = str(out.doc.folder)
    if not ok:
        return None
    return CheckSpec(name, rule, _get(item, "severity", str) or "error", _get(item, "error_if", str),
                     _get(item, "warn_if", str), freeze_json(params), out.doc.span(where))


def _schema_problem(schema: Mapping[str, Any]) -> str | None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as err:
        return f"not a valid JSON Schema: {err.message}"
    return None


def _dataset_paths(out: Collector, path: JsonPath, values: list[str]) -> list[str]:
    """``values`` normalised; each absolute or escaping one is reported and dropped."""
    result = []
    for i, value in enumerate(values):
        norm = _dataset_path(out, (*path, i), value)
        if norm is not None:
            result.append(norm)
    return result


def _dataset_path(out: Collector, path: JsonPath, value: str) -> str | None:
    norm = normalize_dataset_path(value)
    if norm is None:
        why = (
            "escapes the dataset with '..'" if ".." in value.replace("\\", "/").split("/") else "is absolute"
        )
        out.add(path, f"{value!r} {why}; dataset paths are relative to the dataset root")
    return norm


def _read_source(out: Collector, path: JsonPath, raw: Any, check_local_paths: bool) -> Source | None:
    kinds = [k for k in ("path", "torchvision", "url") if isinstance(raw, dict) and k in raw]
    if len(kinds) != 1:
        return None
    dest = _dataset_path(out, (*path, "dest"), _get(raw, "dest", str) or "")
    if kinds[0] == "path":
        return _path_source(out, path, raw, dest, check_local_paths)
    if kinds[0] == "torchvision":
        return _torchvision_source(out, path, raw, dest)
    return _url_source(out, path, raw, dest)


def _local(out: Collector, value: str) -> Path:
    """A user-given local path as an absolute one, relative paths taken from the manifest file's folder."""
    return Path(os.path.abspath(out.doc.folder / os.path.expanduser(value)))


def _path_source(
    out: Collector, path: JsonPath, raw: dict[str, Any], dest: str | None, check_local_paths: bool
) -> PathSource | None:
    value = _get(raw, "path", str)
    if not value:
        return None
    local = _local(out, value)
    if check_local_paths and not local.exists():
        out.add((*path, "path"), f"{value!r} does not exist (looked for {display_path(local, Path.cwd())})")
    include = _dataset_paths(out, (*path, "include"), _strings(raw, "include"))
    exclude = _dataset_paths(out, (*path, "exclude"), _strings(raw, "exclude"))
    return PathSource(local, dest or "", tuple(include), tuple(exclude), span=out.doc.span(path))


def _torchvision_source(
    out: Collector, path: JsonPath, raw: dict[str, Any], dest: str | None
) -> TorchvisionSource | None:
    cls, split = _get(raw, "torchvision", str), _get(raw, "split", str)
    if not cls:
        return None
    if cls not in TORCHVISION_SPLITS:
        out.add(
            (*path, "torchvision"), f"unknown torchvision dataset {cls!r}{_suggest(cls, TORCHVISION_SPLITS)}"
        )
    elif split is not None and split not in TORCHVISION_SPLITS[cls]:
        out.add((*path, "split"), f"{cls} has no split {split!r}{_suggest(split, TORCHVISION_SPLITS[cls])}")
    layout = _get(raw, "layout", str) or "raw"
    root = _get(raw, "root", str)
    return TorchvisionSource(
        dataset=cls,
        split=split or "",
        layout="images" if layout == "images" else "raw",
        dest=dest or "",
        root=_local(out, root) if root else None,
        download=_get(raw, "download", bool) or False,
        span=out.doc.span(path),
    )


def _url_source(out: Collector, path: JsonPath, raw: dict[str, Any], dest: str | None) -> UrlSource | None:
    url = _get(raw, "url", str)
    if not url:
        return None
    problem = _url_problem(url)
    if problem:
        out.add((*path, "url"), problem)
    return UrlSource(url, dest or "", _get(raw, "copy", bool) or False, span=out.doc.span(path))


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        return f"{url!r} has {shown}; supported: {', '.join(f'{s}://' for s in URL_SCHEMES)}"
    if scheme == "s3" and not parts.netloc:
        return f"{url!r} names no bucket (s3://bucket/key)"
    if scheme in ("http", "https") and not parts.netloc:
        return f"{url!r} names no host"
    if scheme == "file" and not parts.path:
        return f"{url!r} names no file (file:///absolute/path)"
    return None


def _suggest(value: str, choices: Mapping[str, Any] | tuple[str, ...]) -> str:
    names = list(choices)
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (supported: {', '.join(names)})"


def dataset_field_value(fields: Mapping[str, Any], name: str) -> Any:
    """A dataset-level field in the form documents are compared by (tags as a set, metadata frozen)."""
    value = fields.get(name)
    if name == "tags" and isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return freeze_json(value)
