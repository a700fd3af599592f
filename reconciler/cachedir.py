"""Where this tool keeps what it remembers between runs (hashes, file lists, manifests, statistics)."""

from __future__ import annotations

from pathlib import Path


def default_cache_dir() -> Path:
    """The user cache directory of this tool (``~/.cache/clearml-reconciler`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("clearml-reconciler", appauthor=False))
