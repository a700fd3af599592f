"""The upload pipeline: a version's new files zipped into chunks and stored, zipping and uploading overlapped on
a bounded number of threads; every file's bytes hashed as they are zipped and compared with the plan."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..diagnostics import ReconcileError
from ..model import FileEntry
from . import codec
from .api import ApiClient, BackendError
from .draft import Chunk, Draft
from .reader import sha256_file
from .storage import Stores


class Progress(Protocol):
    """Told how an upload advances (from the upload's worker threads; it must be thread-safe)."""

    def __call__(self, files: int, nbytes: int) -> None:
        """``nbytes`` more of the sources' bytes (and ``files`` more files: whole chunks only) are on the server.
        While a chunk goes out, its bytes count in proportion to what was sent, so a big chunk shows progress
        too; the counts of all calls add up to the files and bytes uploaded."""

    def chunk(self, name: str, files: int, nbytes: int, stored_bytes: int) -> None:
        """The chunk ``name`` (``files`` files, ``nbytes`` of the sources' bytes) is stored (``stored_bytes``)."""

# extensions whose bytes are already compressed: stored as they are (deflating them costs CPU for nothing)
STORED_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".heic", ".jp2", ".mp4", ".mkv", ".webm", ".mov",
    ".avi", ".mp3", ".ogg", ".opus", ".flac", ".m4a", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z",
    ".rar", ".npz", ".parquet", ".pt", ".pth", ".tfrecord", ".whl", ".jar",
})
MIN_CHUNK = 8 << 20
MAX_CHUNK = 512 << 20
IN_MEMORY_BYTES = 128 << 20  # chunks held in memory by an upload at most (see _in_memory_limit)


class FileChanged(BackendError):
    """A source file's bytes are not what the plan hashed; ``local`` is the file on this machine."""

    def __init__(self, message: str, local: str):
        super().__init__(message)
        self.local = local


@dataclass(frozen=True, slots=True)
class _Stages:
    """How many chunks may be zipped, and how many uploaded, at the same time."""

    zip: threading.BoundedSemaphore
    upload: threading.BoundedSemaphore


@dataclass(frozen=True, slots=True)
class UploadOptions:
    workers: int = 4
    compression: str = "auto"  # auto | deflate | store
    chunk_bytes: int | None = None  # None: from the total size and the workers
    tmp_dir: Path | None = None
    # False: the caller registers the chunks (a finalized version takes them only in a forced edit of its whole
    # execution); their paths are then named by the chunk alone, so a rerun overwrites what a stopped one stored
    register: bool = True


def upload_files(api: ApiClient, stores: Stores, draft: Draft, files: Sequence[FileEntry], options: UploadOptions,
                 progress: Progress | None = None) -> None:
    """Zip ``files`` into chunks and store them; each file's bytes must hash to its planned sha256."""
    if not files:
        return
    for f in files:
        if f.local is None:
            raise ReconcileError(f"{f.path}: no local copy of the file to upload")
    total = sum(f.size for f in files)
    # 16 chunks a worker (within MIN_CHUNK..MAX_CHUNK): the first upload starts after one small chunk is zipped,
    # the last one leaves little to wait for, and up to about 1 GiB the chunks are zipped in memory
    chunk_bytes = options.chunk_bytes or max(MIN_CHUNK, min(MAX_CHUNK, total // max(1, options.workers * 16) + 1))
    groups = _group(sorted(files, key=lambda f: f.path), chunk_bytes)
    tmp_root = Path(tempfile.mkdtemp(prefix="reconcile-upload-", dir=options.tmp_dir))
    stop = threading.Event()

    def check() -> None:
        api.cancel.check()
        if stop.is_set():
            raise BackendError("stopped: another chunk of this version failed")

    # Zipping and uploading overlap: up to `workers` chunks are being zipped while up to `workers` others are
    # on the wire, so neither the disks and CPUs nor the network wait for the other.
    workers = max(1, options.workers)
    stages = _Stages(threading.BoundedSemaphore(workers), threading.BoundedSemaphore(workers))
    pool = ThreadPoolExecutor(max_workers=2 * workers, thread_name_prefix="upload")
    try:
        futures: list[Future[Chunk]] = [
            pool.submit(_store_chunk, api, stores, draft, draft.chunk_name(i), group, options, tmp_root,
                        progress, check, stages)
            for i, group in enumerate(groups)
        ]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f.exception() for f in futures if f.done() and f.exception() is not None]
        if failed:
            stop.set()
            raise failed[0]  # type: ignore[misc]
        chunks = [f.result() for f in futures]
    except BaseException:
        stop.set()
        # never wait for a chunk still on the wire: a signal or a failure must stop the run now
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    for chunk, group in zip(chunks, groups, strict=True):
        draft.stored(chunk, group)


def _store_chunk(api: ApiClient, stores: Stores, draft: Draft, name: str, group: Sequence[FileEntry],
                 options: UploadOptions, tmp_root: Path, progress: Progress | None, check: Callable[[], None],
                 stages: _Stages) -> Chunk:
    token = f".{secrets.token_hex(4)}" if options.register else ""
    uri = f"{draft.prefix}/{name}/dataset.{draft.id}{token}.zip"
    raw = sum(f.size for f in group)
    if stores.on_file_server(uri) and raw <= _in_memory_limit(options.workers):
        # a small chunk for the file server is zipped in memory: no temporary file written and read back
        with stages.zip:
            check()
            buffer = io.BytesIO()
            _write_zip(buffer, group, options.compression, check)
            data = buffer.getvalue()
            del buffer
        size = len(data)
        told = _ChunkShare(raw, size, progress)
        with stages.upload:
            check()
            digest = stores.upload_bytes(uri, data, progress=told.sent)  # the sha256 of the bytes sent
        del data
    else:
        local = tmp_root / f"{name}.zip"
        with stages.zip:
            check()
            _write_zip(local, group, options.compression, check)
        size = local.stat().st_size
        told = _ChunkShare(raw, size, progress)
        with stages.upload:
            check()
            sent = stores.upload(uri, local, size, progress=told.sent)  # the sha256 of the bytes sent, when known
        digest = sent or sha256_file(local)
        local.unlink()
    preview = "".join(f"{f.path} - {f.size} bytes\n" for f in group[:200])
    if len(group) > 200:
        preview += "...\ntruncated (too many files to preview)"
    entry = codec.artifact(name, kind="custom", uri=uri, size=size, sha256=digest, stamp=int(time.time()),
                           preview=preview, content_type="application/zip")
    if options.register:
        api.call("tasks.add_or_update_artifacts", write=True, task=draft.id, artifacts=[entry], force=True)
    if progress is not None:
        progress(len(group), raw - told.reported)
        progress.chunk(name, len(group), raw, size)
    return Chunk(name, uri, size, digest, len(group))


class _ChunkShare:
    """The sources' bytes a chunk's upload stands for so far: ``raw`` in proportion to the ``size`` stored bytes
    sent (a retried upload counts no further than the whole chunk)."""

    def __init__(self, raw: int, size: int, progress: Progress | None):
        self.raw, self.size, self.progress = raw, max(1, size), progress
        self.bytes_sent = 0
        self.reported = 0

    def sent(self, n: int) -> None:
        if self.progress is None:
            return
        self.bytes_sent = min(self.size, self.bytes_sent + n)
        share = self.raw * self.bytes_sent // self.size
        if share > self.reported:
            self.progress(0, share - self.reported)
            self.reported = share


def _group(files: Sequence[FileEntry], chunk_bytes: int) -> list[list[FileEntry]]:
    groups: list[list[FileEntry]] = [[]]
    size = 0
    for f in files:
        if groups[-1] and size + f.size > chunk_bytes:
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += f.size
    return groups


def _compress_type(path: str, compression: str) -> int:
    if compression == "store":
        return zipfile.ZIP_STORED
    if compression == "deflate":
        return zipfile.ZIP_DEFLATED
    return zipfile.ZIP_STORED if os.path.splitext(path)[1].lower() in STORED_EXTENSIONS else zipfile.ZIP_DEFLATED


def _in_memory_limit(workers: int) -> int:
    """The largest chunk zipped in memory: up to two chunks a worker are held at once (one being zipped, one on
    the wire), within :data:`IN_MEMORY_BYTES` in all."""
    return IN_MEMORY_BYTES // (2 * max(1, workers))


def _write_zip(target: Path | IO[bytes], files: Sequence[FileEntry], compression: str, check: Callable[[], None]
               ) -> None:
    """Write ``files`` into a zip, hashing each file's bytes as they are read; a mismatch raises FileChanged."""
    with zipfile.ZipFile(target, "w", allowZip64=True) as zf:
        for f in files:
            check()
            assert f.local is not None
            try:
                read, digest = _zip_one(zf, f, f.local, compression)
            except OSError as err:
                raise FileChanged(f"{f.path}: cannot read {f.local} ({err.strerror or err})", f.local) from None
            if read != f.size or digest != f.sha256:
                raise FileChanged(
                    f"{f.path}: the bytes of {f.local} are not what the plan hashed (planned {f.size} bytes, sha256 "
                    f"{f.sha256[:12]}; read {read} bytes, sha256 {digest[:12]}): the file changed, or its cached hash "
                    "was wrong; nothing of this version was finalized; run plan again", f.local)


def _zip_one(zf: zipfile.ZipFile, f: FileEntry, local: str, compression: str) -> tuple[int, str]:
    """Copy one file into the zip; the bytes read (at most one block past the planned size) and their sha256."""
    with open(local, "rb") as handle:
        info = zipfile.ZipInfo(f.path, date_time=time.localtime(os.fstat(handle.fileno()).st_mtime)[:6])
        info.compress_type = _compress_type(f.path, compression)
        info.file_size = f.size
        h = hashlib.sha256()
        read = 0
        with zf.open(info, "w", force_zip64=f.size >= (1 << 31)) as dst:
            while block := handle.read(1 << 20):
                h.update(block)
                dst.write(block)
                read += len(block)
                if read > f.size:
                    break
    return read, h.hexdigest()
