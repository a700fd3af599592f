"""Manifest files already read and found valid, remembered by their bytes.

Parsing YAML with positions (ruamel.yaml) and validating against the JSON Schema (jsonschema) cost more than the
rest of a small plan, while manifests rarely change. A file whose documents all parsed and passed the header and
schema checks is remembered under the sha256 of its bytes, of the schema and of this tool's version: its
documents (values with their positions) are stored with ``marshal``. The next run that reads the same bytes
takes the documents from there and loads neither library; the semantic checks (parents, local paths, ...)
always run. A file with any problem is never remembered, so every diagnostic is produced afresh.

A missing, unreadable or damaged entry is a miss. Entries are files under ``<cache>/manifests``; the oldest are
removed when there are more than :data:`MAX_ENTRIES`.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from .schema import schema_text
from .yamldoc import Document, ManifestFile

CACHE_FORMAT = 1
MAX_ENTRIES = 2000
_UNMARSHAL_ERRORS = (ValueError, EOFError, TypeError, MemoryError)

StoredDocument = tuple[int, Any, dict[Any, tuple[int, int]], dict[Any, tuple[int, int]]]


class ManifestCache:
    """Remembered manifest files under ``folder`` (None: remember nothing)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._salt: bytes | None = None

    def _key(self, raw: bytes) -> str:
        if self._salt is None:
            self._salt = f"{CACHE_FORMAT}\0{__version__}\0{schema_text()}\0".encode()
        return hashlib.sha256(self._salt + raw).hexdigest()

    def load(self, mf: ManifestFile, raw: bytes) -> list[Document] | None:
        """The documents of ``mf`` when its bytes ``raw`` were remembered as valid, else None."""
        if self.folder is None:
            return None
        try:
            stored = marshal.loads((self.folder / f"{self._key(raw)}.bin").read_bytes())
        except (OSError, *_UNMARSHAL_ERRORS):
            return None
        if not _well_formed(stored):
            return None
        return [Document(mf, index, data, values, keys) for index, data, values, keys in stored]

    def store(self, raw: bytes, docs: Sequence[Document]) -> None:
        """Remember ``docs`` (every document of a file that had no problem) for the bytes ``raw``. Best effort."""
        if self.folder is None:
            return
        stored: list[StoredDocument] = [(d.index, d.data, d.values, d.keys) for d in docs]
        try:
            blob = marshal.dumps(stored)
        except ValueError:  # a value marshal cannot store: simply not remembered
            return
        target = self.folder / f"{self._key(raw)}.bin"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            tmp.replace(target)
            self._trim()
        except OSError:
            return

    def _trim(self) -> None:
        assert self.folder is not None
        entries = list(os.scandir(self.folder))
        if len(entries) <= MAX_ENTRIES:
            return
        by_age = sorted(entries, key=lambda e: e.stat().st_mtime)
        for entry in by_age[: len(entries) - MAX_ENTRIES // 2]:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _well_formed(stored: Any) -> bool:
    """The shape :meth:`ManifestCache.store` writes: (index, data, values, keys) per document."""
    if type(stored) is not list:
        return False
    for item in stored:
        if type(item) is not tuple or len(item) != 4 or type(item[0]) is not int:
            return False
        if type(item[2]) is not dict or type(item[3]) is not dict or not _json_like(item[1]):
            return False
    return True


def _json_like(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and _json_like(v) for k, v in value.items())
    if kind is list:
        return all(_json_like(v) for v in value)
    return kind in (str, int, float, bool) or value is None


def default_manifest_cache() -> ManifestCache:
    """The cache under the user cache directory; ``RECONCILE_MANIFEST_CACHE=0`` turns it off."""
    if os.environ.get("RECONCILE_MANIFEST_CACHE", "").strip().lower() in ("0", "false", "no", "off"):
        return ManifestCache(None)
    from ..cachedir import default_cache_dir

    return ManifestCache(default_cache_dir() / "manifests")
