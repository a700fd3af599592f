"""Sizes and counts as people read them: "1.5 MiB", "1 file", "3 files"."""

from __future__ import annotations


def human_size(n: int) -> str:
    """``n`` bytes in B, KiB, MiB or GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the right number: "1 file", "2 files", "0 files"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
