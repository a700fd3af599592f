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
from .resolve import parse_parent, resolve
from .schema import SCHEMA_RESOURCE, manifest_schema, schema_diagnostics, schema_text
from .yamldoc import Document, ManifestFile, find_manifest_files, read_documents

__all__ = [
    "API_VERSION",
    "KIND",
    "SCHEMA_RESOURCE",
    "Document",
    "ManifestFile",
    "check_manifests",
    "find_manifest_files",
    "load_manifests",
    "manifest_schema",
    "parse_parent",
    "schema_text",
]


def load_manifests(paths: Sequence[Path | str], *, check_local_paths: bool = True) -> DesiredState:
    """The desired state the manifests under ``paths`` describe.

    ``paths`` are files or directories (searched recursively for ``*.yaml``/``*.yml``). Raises
    :class:`ReconcileError` with every diagnostic of every file, sorted by file, line and column, when any
    problem is found. ``check_local_paths=False`` skips the existence check of local ``path`` sources.
    """
    state, diags = check_manifests(paths, check_local_paths=check_local_paths)
    if diags:
        raise ReconcileError(diags)
    return state


def check_manifests(
    paths: Sequence[Path | str], *, check_local_paths: bool = True
) -> tuple[DesiredState, list[Diagnostic]]:
    """Like :func:`load_manifests` but returns the diagnostics (sorted, unique) instead of raising.

    The state is only meaningful when there are no diagnostics.
    """
    files, diags = find_manifest_files(paths)
    parts: list[DatasetPart] = []
    for mf in files:
        docs, problems = read_documents(mf)
        diags.extend(problems)
        for doc in docs:
            part, problems = _check_document(doc, check_local_paths)
            diags.extend(problems)
            if part is not None:
                parts.append(part)
    state, problems = resolve(parts)
    diags.extend(problems)
    return state, sorted(set(diags), key=Diagnostic.sort_key)


def _check_document(doc: Document, check_local_paths: bool) -> tuple[DatasetPart | None, list[Diagnostic]]:
    header = header_diagnostics(doc)
    if header:
        return None, header
    diags = schema_diagnostics(doc)
    part, problems = read_dataset(doc, check_local_paths=check_local_paths)
    return part, diags + problems
