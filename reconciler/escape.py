"""Escaping of user data for each output medium: terminal text, GitHub markdown and HTML.

Anything printed that comes from a manifest, a file name, the server or a command-line argument (paths, tags,
metadata keys and values, names, descriptions, URLs, ids) goes through one of these functions, so that a
crafted value can neither fake lines in a plan nor structure in the markdown posted to a pull request.

* :func:`text` shows control characters as escapes: C0 (newline, CR, ESC, ...), DEL, C1, the Unicode line
  and paragraph separators and the bidirectional formatting characters (which reorder what a reader sees).
  ``\\n``, ``\\r`` and ``\\t`` keep their usual names; the others are ``\\xHH`` or ``\\uHHHH``. Everything else,
  backslashes included, is left as it is.
* :func:`markdown` makes a value inert in inline markdown (a paragraph, a heading, a list item or a table
  cell): :func:`text`, then a backslash before every character that opens an inline construct (emphasis,
  code, links, images, raw HTML, entities, strike-through, math, table cell boundaries, and the ``:`` of
  ``scheme://`` and the ``.`` of ``www.`` that GitHub would turn into links), and before a first character that
  would open a block (heading, quote, list) were the value to start a line.
* :func:`code_span` puts a value in an inline code span that no backtick in it can close.
* :func:`html` is :func:`text` then HTML escaping (quotes included, so it also fits attribute values).
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MD_INLINE = re.compile(r"([\\`*_\[\]<>&|~$])")
_MD_AUTOLINK = re.compile(r"(?i)(?<=www)(\.)|(:)(?=//)")  # GitHub links bare www.x and scheme://x
_MD_BLOCK_START = re.compile(r"^(\s*)([#>+=-])|^(\s*\d+)([.)])(?=\s|$)")
_BACKTICKS = re.compile("`+")


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text(value: Any) -> str:
    """``value`` as one line of terminal text: no control, separator or bidi character left raw."""
    s = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape_char, s) if _UNSAFE.search(s) else s


def _escape_block_start(match: re.Match[str]) -> str:
    lead, mark = (match.group(1), match.group(2)) if match.group(2) else (match.group(3), match.group(4))
    return f"{lead}\\{mark}"


def markdown(value: Any) -> str:
    """``value`` as inert inline markdown (safe in a paragraph, a heading, a list item and a table cell)."""
    s = _MD_AUTOLINK.sub(lambda m: "\\" + m.group(), _MD_INLINE.sub(r"\\\1", text(value)))
    return _MD_BLOCK_START.sub(_escape_block_start, s, count=1)


def code_span(value: Any, *, table: bool = False) -> str:
    """``value`` in an inline code span; ``table`` also escapes ``|``, which would end a table cell."""
    s = text(value)
    longest = max((len(run) for run in _BACKTICKS.findall(s)), default=0)
    fence = "`" * (longest + 1)
    if not s or s.startswith("`") or s.endswith("`"):
        s = f" {s} "
    if table:
        s = s.replace("|", "\\|")
    return f"{fence}{s}{fence}"


def html(value: Any) -> str:
    """``value`` as HTML text or attribute value."""
    return _html.escape(text(value), quote=True)
