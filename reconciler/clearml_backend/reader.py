"""Reading a ClearML server: listings for observation, file lists, small JSON artifacts, file bytes.

Nothing here writes. Observation costs one ``projects.get_all`` and one ``tasks.get_all`` per 500 versions;
file lists (``state`` artifacts) of finalized versions are cached on disk by version id (immutable).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..model import normalize_dataset_path
from . import codec
from .api import ApiClient, BackendError
from .storage import Stores

PAGE_SIZE = 500


class ServerReader:
    def __init__(self, api: ApiClient, stores: Stores):
        self.api = api
        self.stores = stores

    @property
    def api_host(self) -> str:
        return self.api.cfg.api_host

    def _get_all(self, endpoint: str, key: str, **body: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 0
        while True:
            items = self.api.call(endpoint, page=page, page_size=PAGE_SIZE, **body).get(key) or []
            out.extend(items)
            if len(items) < PAGE_SIZE:
                return out
            page += 1

    # --- listings ----------------------------------------------------------------------------------------------

    def dataset_projects(self, projects: Iterable[str]) -> dict[str, str]:
        """Hidden dataset projects (``<project>/.datasets/<name>``) under the given projects: id -> full name."""
        names = sorted(set(projects))
        if not names:
            return {}
        pattern = "^(" + "|".join(re.escape(p) for p in names) + r")/\.datasets/[^/]+$"
        rows = self._get_all("projects.get_all", "projects", name=pattern, search_hidden=True,
                             only_fields=["id", "name"])
        return {str(r["id"]): str(r["name"]) for r in rows}

    def dataset_tasks(self, project_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not project_ids:
            return []
        return self._get_all(
            "tasks.get_all", "tasks", project=list(project_ids), type=[codec.TASK_TYPE],
            system_tags=[codec.DATASET_TAG], search_hidden=True, only_fields=list(codec.TASK_FIELDS),
            order_by=["-last_update"],
        )

    def managed_tasks(self) -> list[dict[str, Any]]:
        return self._get_all(
            "tasks.get_all", "tasks", system_tags=["__$all", codec.DATASET_TAG, codec.MANAGED_TAG],
            type=[codec.TASK_TYPE], search_hidden=True, only_fields=list(codec.TASK_FIELDS),
            order_by=["-last_update"],
        )

    def project_names(self, project_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(project_ids))
        if not ids:
            return {}
        rows = self._get_all("projects.get_all", "projects", id=ids, search_hidden=True, only_fields=["id", "name"])
        return {str(r["id"]): str(r["name"]) for r in rows}

    def task(self, task_id: str, fields: Sequence[str] = codec.TASK_FIELDS) -> dict[str, Any] | None:
        """The task with this id (projected to ``fields``), or None when there is none."""
        rows = self.api.call("tasks.get_all", id=[task_id], search_hidden=True,
                             only_fields=list(fields)).get("tasks") or []
        return dict(rows[0]) if rows else None

    def tasks(self, task_ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """The tasks with these ids (projected to ``fields``) that exist, in one paged listing."""
        if not task_ids:
            return []
        return self._get_all("tasks.get_all", "tasks", id=list(task_ids), search_hidden=True, only_fields=list(fields))

    def full_task(self, task_id: str) -> dict[str, Any]:
        return dict(self.api.call("tasks.get_by_id", task=task_id).get("task") or {})

    # --- artifacts ---------------------------------------------------------------------------------------------

    def read_state(self, task: Mapping[str, Any], cache_dir: Path | None) -> dict[str, Any] | None:
        """The ``state`` artifact of a version (its file list), or None when it has none.

        Finalized versions are immutable, so their state is cached under ``cache_dir`` by version id.
        """
        uri = codec.artifact_uri(task, codec.STATE_KEY)
        if not uri:
            return None
        final = task.get("status") in codec.FINAL_STATUSES
        cached = cache_dir / f"{task['id']}.json" if (cache_dir and final) else None
        if cached is not None and cached.exists():
            try:
                state: dict[str, Any] = json.loads(cached.read_text())
                return state
            except (OSError, ValueError):
                pass  # a broken cache file is a miss
        raw = self.stores.read_bytes(uri)
        try:
            data = json.loads(raw)
        except ValueError:
            raise BackendError(f"the file list of version {task['id']} ({uri}) is not valid JSON") from None
        if not isinstance(data, dict):
            raise BackendError(f"the file list of version {task['id']} ({uri}) is not a JSON object")
        if cached is not None:
            remember_state(cached, raw)
        return data

    def read_json(self, uri: str, what: str) -> Any:
        raw = self.stores.read_bytes(uri)
        try:
            return json.loads(raw)
        except ValueError:
            raise BackendError(f"{what} ({uri}) is not valid JSON") from None

    def read_json_artifact(self, task: Mapping[str, Any], key: str) -> Any | None:
        uri = codec.artifact_uri(task, key)
        return None if not uri else self.read_json(uri, f"the {key} of version {task.get('id')}")

    def fetch_files(self, state: Mapping[str, Any], paths: Iterable[str], dest: Path) -> dict[str, Path]:
        """Extract ``paths`` of a version (given its ``state``) under ``dest``; path -> local file.

        Downloads only the chunks that hold the wanted files, from whichever version stored them.
        """
        entries, _, _ = codec.read_state(state)
        wanted = set(paths)
        by_chunk: dict[tuple[str, str], list[codec.StateEntry]] = {}
        for e in entries:
            if e.path in wanted:
                by_chunk.setdefault((e.owner_id, e.chunk), []).append(e)
        owners: dict[str, dict[str, Any]] = {}
        out: dict[str, Path] = {}
        for (owner, chunk), items in sorted(by_chunk.items()):
            if owner not in owners:
                owners[owner] = self.full_task(owner)
            uri = codec.artifact_uri(owners[owner], chunk)
            if not uri:
                raise BackendError(f"chunk {chunk} of version {owner} is not on the server")
            with tempfile.TemporaryDirectory(prefix="reconcile-chunk-") as tmp:
                local_zip = Path(tmp) / "chunk.zip"
                self.stores.download(uri, local_zip)
                with zipfile.ZipFile(local_zip) as zf:
                    names = set(zf.namelist())
                    for e in items:
                        if e.path not in names:
                            raise BackendError(f"chunk {chunk} of version {owner} lacks {e.path}")
                        if normalize_dataset_path(e.path) != e.path or not e.path:
                            raise BackendError(f"version {owner} holds an unsafe path {e.path!r}")
                        target = dest / e.path
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(e.path) as src, open(target, "wb") as dst:
                            while block := src.read(1 << 20):
                                dst.write(block)
                        out[e.path] = target
        return out


def remember_state(cached: Path, raw: bytes) -> None:
    """Keep the file list ``raw`` of a finalized version at ``cached`` (written whole, then renamed)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{hashlib.sha256(raw[:4096]).hexdigest()[:8]}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    tmp.replace(cached)
