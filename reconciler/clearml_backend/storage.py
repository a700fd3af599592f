"""Where a version's bytes go: the ClearML file server (through :class:`ApiClient`), or another storage.

Objects on the configured file server are moved with this package's own HTTP client (bounded waits,
cancellable). Any other URI (``s3://``, ``gs://``, ``azure://``, another file server) goes through the clearml
SDK's ``StorageHelper``, so credentials come from clearml.conf exactly as they do for the SDK users who later
download the dataset; this is the only place the product imports the SDK.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..diagnostics import ReconcileError
from .api import ApiClient, BackendError

SUPPORTED_CLEARML = ((1, 16), (3, 0))  # [lowest, highest) SDK release used for non-file-server storage


def _sdk_helper(uri: str) -> Any:
    try:
        import clearml
        from clearml.storage.helper import StorageHelper
    except ImportError as err:  # pragma: no cover - clearml is a dependency
        raise ReconcileError(f"storing at {uri} needs the clearml package: {err}") from None
    check_sdk_version(str(getattr(clearml, "__version__", "0")))
    helper = StorageHelper.get(uri)  # type: ignore[no-untyped-call]
    if helper is None:
        raise BackendError(f"no storage driver for {uri} (check the storage credentials in clearml.conf)")
    return helper


def check_sdk_version(version: str) -> None:
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    low, high = SUPPORTED_CLEARML
    if not (low <= parts < high):
        raise ReconcileError(
            f"clearml {version} is installed; this tool supports clearml >= {low[0]}.{low[1]}, "
            f"< {high[0]}.{high[1]}"
        )


class Stores:
    def __init__(self, api: ApiClient):
        self.api = api

    def on_file_server(self, uri: str) -> bool:
        return uri.startswith(self.api.cfg.files_host + "/")

    def upload(self, uri: str, path: Path, size: int, progress: Callable[[int], None] | None = None) -> str | None:
        """Store the file ``path`` at ``uri``; the sha256 of the bytes sent when the upload computed it (the file
        server), else None."""
        if self.on_file_server(uri):
            return self.api.upload(uri, lambda: open(path, "rb"), size, progress=progress)  # noqa: SIM115 (closed by upload)
        self.api.cancel.check()
        if self.api.fence is not None:
            self.api.fence()
        try:
            stored = _sdk_helper(uri).upload(str(path), dest_path=uri)
        except ReconcileError:
            raise
        except Exception as err:  # noqa: BLE001 - any driver error is this upload's failure
            raise BackendError(f"upload to {uri} failed: {self.api.cfg.redact(str(err))}") from None
        if not stored:
            raise BackendError(f"upload to {uri} failed")
        if progress is not None:
            progress(size)
        return None

    def upload_bytes(self, uri: str, raw: bytes, progress: Callable[[int], None] | None = None) -> str:
        """Store ``raw`` at ``uri`` (from memory to the file server, through a temporary file elsewhere); the
        sha256 of the bytes sent."""
        if self.on_file_server(uri):
            return self.api.upload(uri, lambda: io.BytesIO(raw), len(raw), progress=progress)
        with tempfile.NamedTemporaryFile(prefix="reconcile-", delete=False) as tmp:
            tmp.write(raw)
        try:
            self.upload(uri, Path(tmp.name), len(raw), progress=progress)
        finally:
            os.unlink(tmp.name)
        return hashlib.sha256(raw).hexdigest()

    def read_bytes(self, uri: str) -> bytes:
        if self.on_file_server(uri):
            return self.api.download(uri)
        with tempfile.TemporaryDirectory(prefix="reconcile-") as tmp:
            target = Path(tmp) / "object"
            self.download(uri, target)
            return target.read_bytes()

    def download(self, uri: str, dest: Path) -> None:
        if self.on_file_server(uri):
            self.api.download_to(uri, dest)
            return
        try:
            got = _sdk_helper(uri).download_to_file(uri, str(dest), overwrite_existing=True, silence_errors=True)
        except ReconcileError:
            raise
        except Exception as err:  # noqa: BLE001
            raise BackendError(f"download of {uri} failed: {self.api.cfg.redact(str(err))}") from None
        if not got or not os.path.isfile(dest):
            raise BackendError(f"download of {uri} failed")

    def size(self, uri: str) -> int | None:
        """The stored size of ``uri``; None when it is not there (-1: there, size unknown)."""
        if self.on_file_server(uri):
            return self.api.stored_size(uri)
        try:
            size = _sdk_helper(uri).get_object_size_bytes(uri, silence_errors=True)
        except ReconcileError:
            raise
        except Exception:  # noqa: BLE001
            return None
        return None if size is None else int(size)

    def delete_all(self, uris: Iterable[str]) -> list[str]:
        """Delete every object of ``uris``; those still there afterwards, each checked (one already gone counts
        as deleted)."""
        uris = list(uris)
        for uri in uris:
            self.delete(uri)
        return [uri for uri in uris if self.size(uri) is not None]

    def delete(self, uri: str) -> bool:
        if self.on_file_server(uri):
            return self.api.delete_file(uri)
        try:
            return bool(_sdk_helper(uri).delete(uri))
        except ReconcileError:
            raise
        except Exception:  # noqa: BLE001 - best effort: an orphan object costs space, not correctness
            return False
