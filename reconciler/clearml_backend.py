"""The only module that imports ``clearml``: raw API calls for observation, the SDK for content changes.

Bookkeeping this tool keeps on every version it creates (so later runs can read state cheaply):
- system tag ``reconciler-managed`` (what --prune may archive);
- hyperparameter section ``Reconciler``: ``content_digest`` (Content.digest() of what was uploaded),
  ``parent_id``, ``metadata`` (canonical JSON of the manifest metadata, also stored as the dataset's
  ``metadata`` artifact for Dataset.get_metadata()), ``statistics_digest`` (the content digest the stored
  ``statistics`` artifact describes; also read back with Dataset.get_metadata("statistics")).
Credentials are read by the SDK from its usual configuration and never printed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .diagnostics import ReconcileError
from .model import FileEntry, LinkEntry, VersionKey, thaw_json
from .statistics import UiHistogram, UiTable

MANAGED_TAG = "reconciler-managed"
SECTION = "Reconciler"
LOCK_PROJECT = ".reconciler-lock"
_TASK_FIELDS = [
    "id", "name", "project", "status", "tags", "system_tags", "comment", "runtime", "last_update",
    f"hyperparams.{SECTION}", "execution.artifacts",
]


class BackendError(ReconcileError):
    """A ClearML server refused or failed a request."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    api_host: str
    files_host: str
    access_key: str
    secret_key: str

    def redact(self, text: str) -> str:
        for secret in (self.secret_key, self.access_key):
            if secret:
                text = text.replace(secret, "***")
        return text


def server_config_from_env() -> ServerConfig | None:
    """The server named by CLEARML_* variables or a clearml.conf, read the SDK's way; None if none is set."""
    from clearml.backend_api import Session  # noqa: F401  (loads the SDK's configuration)
    from clearml.config import config_obj

    api = os.environ.get("CLEARML_API_HOST") or config_obj.get("api.api_server", None)
    if not api:
        return None
    files = os.environ.get("CLEARML_FILES_HOST") or config_obj.get("api.files_server", "") or ""
    key = os.environ.get("CLEARML_API_ACCESS_KEY") or config_obj.get("api.credentials.access_key", "") or ""
    secret = os.environ.get("CLEARML_API_SECRET_KEY") or config_obj.get("api.credentials.secret_key", "") or ""
    return ServerConfig(str(api).rstrip("/"), str(files).rstrip("/"), str(key), str(secret))


def preflight(cfg: ServerConfig, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when the API server cannot be reached (a TCP connect, no request).

    The SDK itself retries an unreachable server for minutes; this check answers in seconds. Credentials are
    checked by the SDK's own login (see :class:`ClearMLBackend`), so a command costs no extra request.
    """
    parsed = urllib.parse.urlsplit(cfg.api_host)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ReconcileError(f"the ClearML API address {cfg.api_host!r} is not an http(s) URL")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise ReconcileError(f"cannot reach the ClearML server at {cfg.api_host}: {reason}") from None


def _quiet_sdk() -> None:
    """Keep the SDK's console chatter off stdout (which carries plans and JSON) and below WARNING."""
    import sys

    from clearml.debugging.log import LoggerRoot

    LoggerRoot.get_base_logger()
    for name in ("clearml", "clearml.storage", "clearml.Task", "clearml.Dataset"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)


class ClearMLBackend:
    """Thin, typed access to a ClearML server. Not thread-safe except where noted."""

    def __init__(self, cfg: ServerConfig):
        _quiet_sdk()
        self.cfg = cfg
        from clearml.backend_api.session.session import LoginError
        from clearml.backend_interface.base import InterfaceBase

        try:
            self._session = InterfaceBase._get_default_session()
        except LoginError as err:
            if "401" in str(err) or "nauthorized" in str(err):
                raise ReconcileError(
                    f"the ClearML server at {cfg.api_host} refused the credentials (HTTP 401); "
                    "check CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY or clearml.conf"
                ) from None
            raise ReconcileError(f"cannot log in to the ClearML server at {cfg.api_host}: "
                                 f"{cfg.redact(str(err))}") from None
        self.requests = 0

    # --- raw API ---------------------------------------------------------------------------------------------

    def call(self, endpoint: str, **body: Any) -> dict[str, Any]:
        service, action = endpoint.split(".", 1)
        self.requests += 1
        try:
            resp = self._session.send_request(service, action, method="post", json=body)
        except Exception as err:  # requests' connection errors, retries exhausted
            raise BackendError(f"{endpoint} failed: {self.cfg.redact(str(err))}") from None
        try:
            payload = resp.json()
        except ValueError:
            raise BackendError(f"{endpoint}: the server answered HTTP {resp.status_code} without JSON") from None
        meta = payload.get("meta") or {}
        if meta.get("result_code") != 200:
            raise BackendError(
                f"{endpoint}: {meta.get('result_msg') or 'error'} "
                f"(code {meta.get('result_code')}/{meta.get('result_subcode')})"
            )
        return payload.get("data") or {}

    def _get_all(self, endpoint: str, key: str, **body: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page, size = 0, 500
        while True:
            data = self.call(endpoint, page=page, page_size=size, **body)
            items = data.get(key) or []
            out.extend(items)
            if len(items) < size:
                return out
            page += 1

    # --- observation -----------------------------------------------------------------------------------------

    def dataset_projects(self, projects: Iterable[str]) -> dict[str, str]:
        """Hidden dataset projects (``<project>/.datasets/<name>``) under the given projects: id -> full name."""
        names = sorted(set(projects))
        if not names:
            return {}
        import re

        pattern = "^(" + "|".join(re.escape(p) for p in names) + r")/\.datasets/"
        rows = self._get_all("projects.get_all", "projects", name=pattern, search_hidden=True,
                             only_fields=["id", "name"])
        return {r["id"]: r["name"] for r in rows}

    def dataset_tasks(self, project_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not project_ids:
            return []
        return self._get_all(
            "tasks.get_all", "tasks", project=list(project_ids), type=["data_processing"],
            system_tags=["dataset"], search_hidden=True, only_fields=_TASK_FIELDS, order_by=["-last_update"],
        )

    def managed_tasks(self) -> list[dict[str, Any]]:
        return self._get_all(
            "tasks.get_all", "tasks", system_tags=["__$all", "dataset", MANAGED_TAG], type=["data_processing"],
            search_hidden=True, only_fields=_TASK_FIELDS, order_by=["-last_update"],
        )

    def project_names(self, project_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(project_ids))
        if not ids:
            return {}
        rows = self._get_all("projects.get_all", "projects", id=ids, search_hidden=True, only_fields=["id", "name"])
        return {r["id"]: r["name"] for r in rows}

    def task_by_id(self, task_id: str) -> dict[str, Any] | None:
        """The task (observation fields) with this id, or None when there is none."""
        rows = self.call("tasks.get_all", id=[task_id], search_hidden=True, only_fields=_TASK_FIELDS).get("tasks")
        return rows[0] if rows else None

    def read_state(self, task: Mapping[str, Any], cache_dir: Path | None) -> dict[str, Any] | None:
        """The ``state`` artifact of a version (its file list), or None when it has none.

        Finalized versions are immutable, so their state is cached under ``cache_dir`` by version id.
        """
        artifacts = ((task.get("execution") or {}).get("artifacts")) or []
        uri = next((a.get("uri") for a in artifacts if a.get("key") == "state"), None)
        if not uri:
            return None
        final = task.get("status") in ("completed", "published", "closed")
        cached = cache_dir / f"{task['id']}.json" if (cache_dir and final) else None
        if cached is not None and cached.exists():
            state: dict[str, Any] = json.loads(cached.read_text())
            return state
        from clearml.storage.helper import StorageHelper

        helper = StorageHelper.get(uri)  # type: ignore[no-untyped-call]
        if helper is None:
            raise BackendError(f"no storage helper for {uri}")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "state.json"
            got = helper.download_to_file(uri, str(target), overwrite_existing=True, silence_errors=True)
            if not got or not target.exists():
                raise BackendError(f"could not download the file list of version {task['id']} from {uri}")
            data: dict[str, Any] = json.loads(target.read_text())
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp_file = cached.with_suffix(".tmp")
            tmp_file.write_text(json.dumps(data))
            tmp_file.replace(cached)
        return data

    # --- mutation --------------------------------------------------------------------------------------------

    def create_version(self, key: VersionKey, parent_id: str | None, storage: str | None) -> Any:
        from clearml import Dataset

        try:
            ds = Dataset.create(
                dataset_name=key.name,
                dataset_project=key.project,
                dataset_version=key.version,
                parent_datasets=[parent_id] if parent_id else None,
                output_uri=storage,
            )
        except Exception as err:
            raise BackendError(f"creating {key} failed: {self.cfg.redact(str(err))}") from None
        task = ds._task
        task.set_system_tags(sorted(set(task.get_system_tags() or []) | {MANAGED_TAG}))
        task.set_comment("")  # the SDK writes "Auto-generated at ..."; the manifest's description follows
        self.set_bookkeeping(ds.id, {"parent_id": parent_id or "", "managed_by": "reconciler"})
        return ds

    def open_draft(self, version_id: str) -> Any:
        """A draft version as an SDK Dataset, without the entries an interrupted upload never stored."""
        from clearml import Dataset

        try:
            ds = Dataset.get(dataset_id=version_id)
        except Exception as err:
            raise BackendError(f"opening draft {version_id} failed: {self.cfg.redact(str(err))}") from None
        entries = ds._dataset_file_entries
        for path in [p for p, e in entries.items() if e.parent_dataset_id == ds.id and not e.artifact_name]:
            del entries[path]
        return ds

    def sync_files(self, ds: Any, *, upload: Sequence[FileEntry], remove: Sequence[str],
                   add_links: Sequence[LinkEntry], remove_links: Sequence[str]) -> None:
        """Change the SDK dataset's entries in memory (hashes are already known: nothing is re-hashed)."""
        from clearml.datasets.dataset import FileEntry as SdkFile
        from clearml.datasets.dataset import LinkEntry as SdkLink

        files, links = ds._dataset_file_entries, ds._dataset_link_entries
        for p in remove:
            files.pop(p, None)
        for p in remove_links:
            links.pop(p, None)
        for f in upload:
            if f.local is None:
                raise ReconcileError(f"{f.path}: no local copy of the file to upload")
            links.pop(f.path, None)
            files[f.path] = SdkFile(relative_path=f.path, hash=f.sha256, parent_dataset_id=ds.id, size=f.size,
                                    local_path=f.local)
        for lnk in add_links:
            files.pop(lnk.path, None)
            links[lnk.path] = SdkLink(link=lnk.url, relative_path=lnk.path, parent_dataset_id=ds.id,
                                      size=lnk.size, hash=lnk.etag)  # type: ignore[arg-type]  # None is allowed
        if upload or remove or add_links or remove_links:
            ds._dirty = True

    def upload(self, ds: Any, *, workers: int, total_bytes: int, show_progress: bool) -> None:
        """Zip and upload pending files in parallel chunks; raise unless every chunk is stored and verified."""
        chunk_mb = max(8, min(512, total_bytes // max(1, workers) // (1 << 20) + 1))
        ds._task.reload()  # the SDK's cached task lacks "Dataset Struct", which upload() reads back
        try:
            ok = ds.upload(show_progress=show_progress, max_workers=workers, chunk_size=chunk_mb, retries=2)
        except Exception as err:
            raise BackendError(f"upload of {ds.name} {ds.version} failed: {self.cfg.redact(str(err))}") from None
        if ok is False:
            raise BackendError(f"upload of {ds.name} {ds.version} failed")
        self.verify_uploaded(ds)

    def verify_uploaded(self, ds: Any) -> None:
        own = [e for e in ds._dataset_file_entries.values() if e.parent_dataset_id == ds.id]
        missing = [e.relative_path for e in own if not e.artifact_name or e.local_path]
        if missing:
            raise BackendError(f"{len(missing)} files of {ds.name} {ds.version} were not uploaded "
                               f"(first: {missing[0]})")
        task = self.call("tasks.get_by_id", task=ds.id).get("task") or {}
        stored = {a.get("key") for a in ((task.get("execution") or {}).get("artifacts") or [])}
        chunks = {e.artifact_name for e in own}
        if not chunks <= stored:
            raise BackendError(f"chunks {sorted(chunks - stored)} of {ds.name} {ds.version} are not on the server")

    def finalize(self, ds: Any) -> None:
        try:
            ds.finalize()
        except Exception as err:
            raise BackendError(f"finalizing {ds.name} {ds.version} failed: {self.cfg.redact(str(err))}") from None

    def set_bookkeeping(self, version_id: str, values: Mapping[str, str]) -> None:
        self.call(
            "tasks.edit_hyper_params", task=version_id, force=True, replace_hyperparams="none",
            hyperparams=[{"section": SECTION, "name": k, "value": v, "type": "str"} for k, v in values.items()],
        )

    def set_description(self, version_id: str, description: str) -> None:
        self.call("tasks.edit", task=version_id, force=True, comment=description)

    def set_tags(self, version_id: str, tags: Iterable[str]) -> None:
        self.call("tasks.edit", task=version_id, force=True, tags=sorted(tags))

    def set_metadata(self, version_id: str, metadata: Mapping[str, Any]) -> None:
        from clearml import Task

        plain = thaw_json(metadata)
        task: Any = Task.get_task(task_id=version_id)
        try:
            task.upload_artifact(name="metadata", artifact_object=plain, wait_on_upload=True)
        except Exception as err:
            raise BackendError(f"storing metadata of {version_id} failed: {self.cfg.redact(str(err))}") from None
        self.set_bookkeeping(version_id, {"metadata": json.dumps(plain, sort_keys=True, separators=(",", ":"))})

    def store_statistics(self, version_id: str, statistics: Mapping[str, Any], digest: str) -> None:
        """Store ``statistics`` as the version's ``statistics`` metadata, then record which content they describe."""
        from clearml import Task

        task: Any = Task.get_task(task_id=version_id)
        try:
            task.upload_artifact(name="statistics", artifact_object=thaw_json(statistics), wait_on_upload=True)
        except Exception as err:
            raise BackendError(f"storing statistics of {version_id} failed: {self.cfg.redact(str(err))}") from None
        self.set_bookkeeping(version_id, {"statistics_digest": digest})

    def report_statistics(self, version_id: str, tables: Sequence[UiTable],
                          histograms: Sequence[UiHistogram]) -> None:
        """Report tables and histograms on the version's Plots page in the ClearML UI (iteration 0)."""
        from clearml import Task

        task: Any = Task.get_task(task_id=version_id)
        logger = task.get_logger()
        try:
            for t in tables:
                logger.report_table(t.title, t.series, iteration=0, table_plot=[list(r) for r in t.rows])
            for h in histograms:
                logger.report_histogram(h.title, h.series, values=list(h.values), iteration=0,
                                        xlabels=list(h.labels), xaxis=h.xaxis, yaxis=h.yaxis)
            task.flush(wait_for_uploads=True)
        except Exception as err:
            raise BackendError(f"reporting statistics of {version_id} failed: {self.cfg.redact(str(err))}") from None

    def read_statistics(self, version_id: str) -> dict[str, Any] | None:
        """The version's stored ``statistics`` metadata, or None when it has none."""
        from clearml import Task

        task: Any = Task.get_task(task_id=version_id)
        artifact = task.artifacts.get("statistics")
        if artifact is None:
            return None
        try:
            value = artifact.get()
        except Exception as err:
            raise BackendError(f"reading statistics of {version_id} failed: {self.cfg.redact(str(err))}") from None
        return value if isinstance(value, dict) else None

    def local_copy(self, version_id: str) -> Path:
        """A read-only local copy of a finalized version's files (the SDK's cache)."""
        from clearml import Dataset

        try:
            return Path(Dataset.get(dataset_id=version_id).get_local_copy())
        except Exception as err:
            raise BackendError(f"downloading version {version_id} failed: {self.cfg.redact(str(err))}") from None

    def publish(self, version_id: str) -> None:
        self.call("tasks.publish", task=version_id, force=True)

    def archive(self, version_id: str) -> None:
        task = self.call("tasks.get_by_id", task=version_id).get("task") or {}
        tags = sorted(set(task.get("system_tags") or []) | {"archived"})
        self.call("tasks.edit", task=version_id, force=True, system_tags=tags)

    # --- lock ------------------------------------------------------------------------------------------------

    def acquire_lock(self, owner: str, ttl: float) -> str:
        """Create the lock project (atomic on the server); break it only when its lease has expired."""
        for _ in range(3):
            try:
                data = self.call("projects.create", name=LOCK_PROJECT, system_tags=["hidden"],
                                 description=json.dumps({"owner": owner, "expires": time.time() + ttl}))
                return str(data["id"])
            except BackendError as err:
                if "exists" not in str(err).lower() and "801" not in str(err):
                    raise
            held = self.lock_info()
            if held is None:
                continue
            if held["expires"] > time.time():
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held["expires"] - ttl))
                raise ReconcileError(
                    f"another apply holds the lock on {self.cfg.api_host} ({held['owner']}, "
                    f"renewed {since}); wait for it, or run 'reconcile unlock' if it crashed"
                )
            with contextlib.suppress(BackendError):  # someone else broke it first
                self.call("projects.delete", project=held["id"], force=True)
        raise ReconcileError("could not take the apply lock: it changed hands repeatedly; try again")

    def lock_info(self) -> dict[str, Any] | None:
        rows = self.call("projects.get_all", name=f"^{LOCK_PROJECT}$", search_hidden=True,
                         only_fields=["id", "name", "description"]).get("projects") or []
        if not rows:
            return None
        try:
            info = json.loads(rows[0].get("description") or "{}")
        except ValueError:
            info = {}
        return {"id": rows[0]["id"], "owner": str(info.get("owner", "unknown")),
                "expires": float(info.get("expires", 0))}

    def renew_lock(self, lock_id: str, owner: str, ttl: float) -> None:
        self.call("projects.update", project=lock_id,
                  description=json.dumps({"owner": owner, "expires": time.time() + ttl}))

    def release_lock(self, lock_id: str) -> None:
        self.call("projects.delete", project=lock_id, force=True)


class LockLease:
    """Holds the server lock while the ``with`` block runs, renewing it from a thread; released on exit.

    ``wait`` seconds are spent retrying while another run holds the lock (0: fail at once).
    """

    def __init__(self, backend: ClearMLBackend, owner: str, *, ttl: float = 120.0, wait: float = 0.0):
        self.backend, self.owner, self.ttl, self.wait = backend, owner, ttl, wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock_id = ""

    def __enter__(self) -> LockLease:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                self.lock_id = self.backend.acquire_lock(self.owner, self.ttl)
                break
            except ReconcileError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)
        self._thread = threading.Thread(target=self._renew, name="lock-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with contextlib.suppress(ReconcileError):  # a missed renewal is retried; the lease is 3x longer
                self.backend.renew_lock(self.lock_id, self.owner, self.ttl)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(ReconcileError):  # it expires on its own
            self.backend.release_lock(self.lock_id)
