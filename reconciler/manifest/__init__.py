"""Manifests -> :class:`~reconciler.model.DesiredState`, or every problem in every file at once.

The pipeline, per document: safe YAML with positions (:mod:`.yamldoc`), apiVersion/kind, the JSON Schema
(:mod:`.schema`), single-document semantics (:mod:`.build`); then across documents: field agreement, duplicate
versions, parents and cycles (:mod:`.resolve`). Nothing is reported until everything has been checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..diagnostics import Diagnostic, ReconcileError
from ..model import DesiredState
from .build import API_VERSION, KIND, DatasetPart, header_diagnostics, read_dataset
from .cache import ManifestCache, default_manifest_cache
from .resolve import parse_parent, resolve
from .schema import SCHEMA_RESOURCE, manifest_schema, schema_diagnostics, schema_text
from .yamldoc import Document, ManifestFile, find_manifest_files, read_manifest_bytes

__all__ = [
    "API_VERSION",
    "KIND",
    "SCHEMA_RESOURCE",
    "Document",
    "ManifestCache",
    "ManifestFile",
    "check_manifests",
    "find_manifest_files",
    "load_manifests",
    "manifest_schema",
    "parse_parent",
    "schema_text",
]


def load_manifests(paths: Sequence[Path | str], *, check_local_paths: bool = True,
                   cache: ManifestCache | None = None) -> DesiredState:
    """The desired state the manifests under ``paths`` describe.

    ``paths`` are files or directories (searched recursively for ``*.yaml``/``*.yml``). Raises
    :class:`ReconcileError` with every diagnostic of every file, sorted by file, line and column, when any
    problem is found. ``check_local_paths=False`` skips the existence check of local ``path`` sources.
    ``cache``: where files already found valid are remembered (default: the user cache directory; see
    :mod:`.cache`).
    """
    state, diags = check_manifests(paths, check_local_paths=check_local_paths, cache=cache)
    if diags:
        raise ReconcileError(diags)
    return state


def check_manifests(
    paths: Sequence[Path | str], *, check_local_paths: bool = True, cache: ManifestCache | None = None
) -> tuple[DesiredState, list[Diagnostic]]:
    """Like :func:`load_manifests` but returns the diagnostics (sorted, unique) instead of raising.

    The state is only meaningful when there are no diagnostics.
    """
    cache = cache if cache is not None else default_manifest_cache()
    files, diags = find_manifest_files(paths)
    parts: list[DatasetPart] = []
    for mf in files:
        raw, problem = read_manifest_bytes(mf)
        if raw is None:
            assert problem is not None
            diags.append(problem)
            continue
        remembered = cache.load(mf, raw)
        if remembered is not None:  # parsed and checked against the schema before: only the semantics again
            for doc in remembered:
                part, problems = read_dataset(doc, check_local_paths=check_local_paths)
                diags.extend(problems)
                if part is not None:
                    parts.append(part)
            continue
        from .yamlparse import parse_documents

        docs, file_problems = parse_documents(mf, raw)
        for doc in docs:
            header = header_diagnostics(doc)
            file_problems.extend(header or schema_diagnostics(doc))
            if header:  # not a v1 Dataset manifest: the rest is not read
                continue
            part, problems = read_dataset(doc, check_local_paths=check_local_paths)
            diags.extend(problems)
            if part is not None:
                parts.append(part)
        diags.extend(file_problems)
        if not file_problems:
            cache.store(raw, docs)
    state, problems = resolve(parts)
    diags.extend(problems)
    return state, sorted(set(diags), key=Diagnostic.sort_key)
