"""Finding manifest files and reading them as safe YAML with the position of every node.

Documents are composed (not constructed) with ruamel.yaml's round-trip parser, then converted to plain
JSON-like values (:mod:`.yamlparse`, loaded only when a file is actually parsed): no YAML tag outside the JSON
set is ever constructed, so ``!!python/object`` and friends are diagnostics, never objects. Each document keeps
a map from a JSON path (the keys and indexes leading to a value) to the value's line and column, and one for
mapping keys, so any later check can point at the exact place.

Hostile input is bounded before it can cost much: a file is read only up to :data:`MAX_MANIFEST_BYTES` (a
larger one is refused without reading the rest and before any parsing), nesting deeper than
:data:`MAX_DEPTH` is refused by the composer as it reaches that depth (before the recursive composition or
conversion could exhaust the stack), and :data:`MAX_NODES` bounds alias expansion.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..diagnostics import Diagnostic, SourceSpan

JsonPath = tuple[str | int, ...]

MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_NODES = 200_000  # per document, after alias expansion; stops alias bombs
MAX_MANIFEST_BYTES = 1 << 20  # per file: 1 MiB of YAML takes ruamel about 20 s to compose
MAX_DEPTH = 64  # levels of nested values, the document itself being level 1


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """A manifest file: ``display`` is how diagnostics name it, ``path`` is absolute."""

    display: str
    path: Path


@dataclass(slots=True)
class Document:
    """One YAML document of a manifest file as JSON-like values, with 1-based positions of values and keys.

    ``values`` holds every value's position by JSON path (the root is ``()``); ``keys`` holds the position of
    each mapping key by the path of its value. Both are filled once by the reader and never change afterwards.
    """

    file: ManifestFile
    index: int
    data: Any
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.file.path.parent

    def span(self, path: JsonPath = (), *, key: bool = False) -> SourceSpan:
        """Where ``path`` is (its key when ``key``); a missing path points at its nearest ancestor."""
        if key and path in self.keys:
            return self._at(self.keys[path])
        cur = tuple(path)
        while cur and cur not in self.values:
            cur = cur[:-1]
        return self._at(self.values.get(cur, (1, 1)))

    def _at(self, pos: tuple[int, int]) -> SourceSpan:
        return SourceSpan(self.file.display, pos[0], pos[1])


def display_path(path: Path, cwd: Path) -> str:
    """``path`` relative to ``cwd`` when it is below it, else absolute; always with ``/``."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(cwd).as_posix()
    except ValueError:
        return absolute.as_posix()


def find_manifest_files(paths: Sequence[Path | str]) -> tuple[list[ManifestFile], list[Diagnostic]]:
    """Files named by ``paths``: files as given, directories searched recursively for ``*.yaml``/``*.yml``.

    Hidden entries (names starting with ``.``) inside a directory are skipped. The result has no
    duplicates and is sorted by display path.
    """
    cwd = Path(os.path.abspath(os.getcwd()))
    found: dict[Path, ManifestFile] = {}
    diags: list[Diagnostic] = []
    if not paths:
        diags.append(Diagnostic("no manifest files or directories given"))
    for given in paths:
        p = Path(given)
        here = SourceSpan(display_path(p, cwd))
        if p.is_dir():
            files = sorted(_walk(p))
            if not files:
                diags.append(Diagnostic("no manifest files (*.yaml, *.yml) in this directory", here))
        elif p.exists():
            files = [p]
        else:
            diags.append(Diagnostic("no such file or directory", here))
            continue
        for f in files:
            absolute = Path(os.path.abspath(f))
            found.setdefault(absolute, ManifestFile(display_path(f, cwd), absolute))
    return sorted(found.values(), key=lambda m: m.display), diags


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES):
                yield Path(root, name)


def read_manifest_bytes(mf: ManifestFile) -> tuple[bytes | None, Diagnostic | None]:
    """The bytes of ``mf``, or the one problem that stops it being read (unreadable, over the size limit).

    At most :data:`MAX_MANIFEST_BYTES` + 1 bytes are read: a larger file is refused without reading the rest.
    """
    try:
        with open(mf.path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        return None, Diagnostic(f"cannot read: {err.strerror or err}", SourceSpan(mf.display))
    if len(raw) > MAX_MANIFEST_BYTES:
        return None, _too_large(mf, raw)
    return raw, None


def read_documents(mf: ManifestFile) -> tuple[list[Document], list[Diagnostic]]:
    """Every non-empty document of ``mf``. A document with a YAML problem is reported and left out.

    A syntax error stops the file there: the documents before it are still returned.
    """
    raw, problem = read_manifest_bytes(mf)
    if raw is None:
        assert problem is not None
        return [], [problem]
    from .yamlparse import parse_documents  # ruamel.yaml: loaded only when a manifest is actually parsed

    return parse_documents(mf, raw)


def _too_large(mf: ManifestFile, head: bytes) -> Diagnostic:
    """The file is over the size limit: located where the limit is crossed (only that much has been read)."""
    before = head[:MAX_MANIFEST_BYTES]
    line, col = before.count(b"\n") + 1, MAX_MANIFEST_BYTES - before.rfind(b"\n")
    return Diagnostic(
        f"manifest larger than {MAX_MANIFEST_BYTES // (1 << 20)} MiB, the limit per file: split it into several files",
        SourceSpan(mf.display, line, col),
    )


def non_json_values(value: Any, path: JsonPath) -> Iterator[JsonPath]:
    """Paths below ``value`` holding a float JSON cannot represent (NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from non_json_values(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from non_json_values(v, (*path, i))
