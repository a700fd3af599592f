"""Glob patterns over POSIX relative paths: a path source's ``include``/``exclude`` and a version's ``remove``.

Rules (the same everywhere the manifests take globs; a pure module, no IO):

* ``*`` matches any run of characters except ``/``; ``?`` one such character; ``[...]`` a character class.
* ``**`` as a whole segment matches any number of segments, including none (``a/**/b`` matches ``a/b``).
* A pattern without ``/`` matches the base name at any depth (``*.png`` matches ``x/y/z.png``), as in
  ``.gitignore``; a pattern with ``/`` is anchored at the source root. A leading ``/`` or ``./`` is dropped.
* A pattern that matches a folder matches everything below it (``exclude: [cache]`` drops ``cache/**``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


def _segment_regex(segment: str) -> str:
    """The regex for one path segment without ``/``; translates ``*``, ``?`` and ``[...]``."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = segment[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def glob_to_regex(pattern: str) -> str:
    """A regex (for ``re.fullmatch``) equivalent to ``pattern`` under the module rules."""
    pat = pattern.strip()
    while pat.startswith("./"):
        pat = pat[2:]
    pat = pat.lstrip("/").rstrip("/")
    segments = [s for s in pat.split("/") if s not in ("", ".")]
    if not segments:
        return ".*"
    anchored = "/" in pat
    parts: list[str] = [] if anchored else ["(?:.*/)?"]
    for index, seg in enumerate(segments):
        last = index == len(segments) - 1
        if seg == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(seg) + ("" if last else "/"))
    return "".join(parts) + "(?:/.*)?"


@dataclass(frozen=True, slots=True)
class GlobSet:
    """A compiled set of patterns; an empty set matches nothing."""

    patterns: tuple[str, ...]
    _regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, patterns: Iterable[str]) -> GlobSet:
        pats = tuple(patterns)
        if not pats:
            return cls(pats, None)
        return cls(pats, re.compile("|".join(f"(?:{glob_to_regex(p)})" for p in pats), re.DOTALL))

    def __bool__(self) -> bool:
        return self._regex is not None

    def matches(self, rel_path: str) -> bool:
        return self._regex is not None and self._regex.fullmatch(rel_path) is not None
