"""Declarative reconciler for ClearML Datasets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__version__ = "0.1.0"
__all__ = ["__version__", "pull"]


def pull(ref: str, dest: str | os.PathLike[str], *, split: str | None = None, include: Sequence[str] = (),
         delete: bool = False, workers: int = 8, progress: bool | None = None) -> Path:
    """Make ``dest`` hold the files of the version ``ref`` (``project/name@version``, ``project/name@alias`` or a
    dataset id), verified against their sha256, and return the folder (what ``reconcile pull`` does).

    ``split`` takes a split the version declares (``splits:`` in its manifest), ``include`` globs (any of them);
    both: the files of the split that match. Files already in ``dest`` are kept when their bytes are right, files
    the selection does not hold are left alone unless ``delete``. ``progress`` (default: when stderr is a
    terminal) draws a progress line. Errors raise :class:`reconciler.diagnostics.ReconcileError` (one line).
    The server comes from the environment, as for the CLI (``CLEARML_API_HOST`` and keys, or clearml.conf).
    """
    from .pulling import pull_folder

    return pull_folder(ref, dest, split=split, include=include, delete=delete, workers=workers, progress=progress)
