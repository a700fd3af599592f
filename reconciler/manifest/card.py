"""Dataset cards: a markdown file with Hugging Face-style YAML front matter, checked with located errors.

``---`` on the first line opens the front matter and the next ``---`` line closes it; the markdown after it is
the card's text. The front matter is read like a manifest (safe YAML, positions kept) and checked against
``schemas/card.v1.schema.json``: unknown keys get a suggestion, and ``license`` must be an SPDX licence id
(the SPDX list of the ``license-expression`` package; case does not matter, it is stored as SPDX spells it) or
``other`` with ``license_name`` and ``license_link``. Every problem is one diagnostic at ``card.md:line:col``.

What a version stores (its named metadata ``card``, what ``Dataset.get_metadata(metadata_name="card")``
returns) is :func:`card_document`: ``{"format_version": 1, "metadata": {...}, "text": "..."}``, where the
metadata gains ``size_categories`` computed from the version's file count (:func:`with_size_category`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import replace as dc_replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic, SourceSpan
from ..model import DesiredState, VersionKey, thaw_json
from .schema import schema_diagnostics, schema_text
from .yamldoc import MAX_MANIFEST_BYTES, Document, ManifestFile

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

CARD_SCHEMA_RESOURCE = "schemas/card.v1.schema.json"
CARD_KEY = "card"  # the named metadata a version stores its card in
FORMAT_VERSION = 1
OTHER = "other"
# Hugging Face's size categories, by number of files (n)
SIZE_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
)


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_text(CARD_SCHEMA_RESOURCE)))


@lru_cache(maxsize=1)
def spdx_ids() -> dict[str, str]:
    """Lower-cased SPDX licence id -> its SPDX spelling."""
    from license_expression import get_spdx_licensing

    out: dict[str, str] = {}
    for symbol in get_spdx_licensing().known_symbols.values():
        key = str(symbol.key)
        if not key.startswith("LicenseRef-") and not getattr(symbol, "is_exception", False):
            out[key.lower()] = key
    return out


def size_category(file_count: int) -> str:
    for limit, name in SIZE_CATEGORIES:
        if file_count < limit:
            return name
    return "n>1T"


def load_card(path: Path, display: str) -> tuple[dict[str, Any] | None, list[Diagnostic]]:
    """The card at ``path`` (named ``display`` in diagnostics) as :func:`card_document` gives it, or None and
    the problems."""
    try:
        raw = path.read_bytes()[: MAX_MANIFEST_BYTES + 1]
    except OSError as err:
        return None, [Diagnostic(f"cannot read the dataset card: {err.strerror or err}", SourceSpan(display, 1, 1))]
    if len(raw) > MAX_MANIFEST_BYTES:
        return None, [Diagnostic("dataset card larger than 1 MiB", SourceSpan(display, 1, 1))]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, [Diagnostic("the dataset card is not UTF-8 text", SourceSpan(display, 1, 1))]
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r") != "---":
        return None, [Diagnostic("a dataset card starts with '---' and its YAML front matter (license, "
                                 "pretty_name, ...), closed by another '---' line", SourceSpan(display, 1, 1))]
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r") == "---"), None)
    if end is None:
        return None, [Diagnostic("the front matter is not closed by a '---' line", SourceSpan(display, 1, 1))]
    from .yamlparse import parse_documents

    # the opening '---' becomes an empty line: positions in the front matter are positions in the card
    front = "\n" + "\n".join(lines[1:end]) + "\n"
    docs, diags = parse_documents(ManifestFile(display, path), front.encode())
    if diags:
        return None, diags
    doc = docs[0] if docs else Document(ManifestFile(display, path), 0, {})
    if doc.data is None:
        doc.data = {}
    diags = schema_diagnostics(doc, _validator())
    if isinstance(doc.data, dict) and isinstance(doc.data.get("license"), str) and doc.data["license"]:
        diags += _licence_diagnostics(doc)
    if diags:
        return None, diags
    return card_document(doc.data, "\n".join(lines[end + 1:]).strip("\n") + "\n"), []


def _licence_diagnostics(doc: Document) -> list[Diagnostic]:
    data: dict[str, Any] = doc.data
    licence = str(data["license"])
    if licence.lower() == OTHER:
        missing = [k for k in ("license_name", "license_link") if k not in data]
        return [Diagnostic(f"license: 'other' needs {' and '.join(missing)}", doc.span(("license",)))] if missing \
            else []
    ids = spdx_ids()
    if licence.lower() in ids:
        data["license"] = ids[licence.lower()]
        return []
    close = difflib.get_close_matches(licence.lower(), list(ids), n=1, cutoff=0.75)
    hint = f" (did you mean {ids[close[0]]!r}?)" if close else ""
    return [Diagnostic(f"license: {licence!r} is not an SPDX licence id{hint}; use 'other' with license_name and "
                       "license_link for any other licence", doc.span(("license",)))]


def card_document(metadata: Mapping[str, Any], text: str) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "metadata": dict(metadata), "text": text}


def with_size_category(card: Mapping[str, Any], file_count: int) -> dict[str, Any]:
    """``card`` with ``metadata.size_categories`` for a version of ``file_count`` files."""
    metadata = dict(card.get("metadata") or {})
    metadata["size_categories"] = [size_category(file_count)]
    return {**card, "metadata": metadata}


def with_card_sizes(state: DesiredState, file_counts: Mapping[VersionKey, int]) -> DesiredState:
    """``state`` whose versions' cards carry the size category of their file count (versions without a card, or
    without a known count, unchanged; ``state`` itself when no version has a card)."""
    if not any(CARD_KEY in v.properties.metadata_artifacts for v in state.all_versions()):
        return state
    datasets = []
    for ds in state.datasets:
        versions = []
        for v in ds.versions:
            card = v.properties.metadata_artifacts.get(CARD_KEY)
            if isinstance(card, Mapping) and v.key in file_counts:
                artifacts = {**thaw_json(v.properties.metadata_artifacts),
                             CARD_KEY: with_size_category(thaw_json(card), file_counts[v.key])}
                v = dc_replace(v, properties=v.properties.replace(metadata_artifacts=artifacts))
            versions.append(v)
        datasets.append(dc_replace(ds, versions=tuple(versions)))
    return DesiredState(tuple(datasets))
