"""Helpers for the scenario scripts (each run by the tests in its own process against the embedded server)."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(result: Any) -> None:
    """Prints ``result`` as the last stdout line, where the test reads it."""
    sys.stdout.flush()
    print(json.dumps(result, default=str), flush=True)


def summary(ds: Any) -> dict[str, Any]:
    return {
        "id": ds.id,
        "name": ds.name,
        "project": ds.project,
        "version": ds.version,
        "tags": sorted(ds.tags),
    }


def new_version(
    project: str,
    name: str,
    version: str | None,
    tree: str,
    *,
    parents: list[str] | None = None,
    sync: bool = False,
) -> Any:
    """A finalized dataset version holding ``tree`` (added, or synced against the parents when ``sync``)."""
    from clearml import Dataset

    ds = Dataset.create(
        dataset_project=project, dataset_name=name, dataset_version=version, parent_datasets=parents
    )
    if sync:
        ds.sync_folder(tree)
    else:
        ds.add_files(tree)
    ds.upload()
    ds.finalize()
    return ds
