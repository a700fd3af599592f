"""Export a live version's description in other formats (Croissant): a use case over the reader.

What is gathered: the version, its files with the chunk that holds each (sha256 and size as the file list
records them, what ``get_local_copy()`` yields), the chunks' addresses and recorded sha256, its dataset card,
and the address of its page on the server's web host. The rendering is :mod:`reconciler.render.croissant`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .clearml_backend import ServerReader
from .model import LinkEntry, ObservedVersion, StoredChunk, StoredFile
from .observe import resolve_reference, state_cache_dir


@dataclass(frozen=True, slots=True)
class VersionExport:
    version: ObservedVersion
    files: tuple[StoredFile, ...]
    links: tuple[LinkEntry, ...]
    chunks: Mapping[tuple[str, str], StoredChunk] = field(hash=False)  # (version id, chunk name) -> chunk
    card: Mapping[str, Any] | None = field(default=None, hash=False)  # the card's front matter (metadata)
    card_text: str = ""
    page_url: str = ""  # the version's page on the server's web host


def version_export(reader: ServerReader, ref: str, *, cache_root: Path | None) -> VersionExport:
    """What exporting ``ref`` (``project/name@version`` or an id) needs; one-line errors for unknown versions."""
    version = resolve_reference(reader, ref, cache_root=cache_root)
    cache_dir = state_cache_dir(reader.api_host, cache_root) if cache_root else None
    files, links = reader.files_of(version, cache_dir)
    chunks = reader.stored_chunks({(f.owner_id, f.chunk) for f in files})
    raw = reader.card_json(version)
    card = raw.get("metadata") if isinstance(raw, dict) and isinstance(raw.get("metadata"), dict) else None
    text = str(raw.get("text") or "") if isinstance(raw, dict) else ""
    web = reader.api.cfg.web_host or reader.api_host
    return VersionExport(version, tuple(sorted(files, key=lambda f: f.path)), tuple(links),
                         MappingProxyType(chunks), MappingProxyType(card) if card is not None else None, text,
                         f"{web.rstrip('/')}/datasets/simple/*/experiments/{version.id}")
