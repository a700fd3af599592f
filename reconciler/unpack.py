"""A chunk's small files written into a staging tree of their own, each checked against the version's file list
before it is written; by forked helper processes when the pull may fork.

A cold pull of many small files is mostly two costs: the kernel creating each file, and Python reading each member
of the zip. One process does both on one core at a time (threads only take turns holding the interpreter, and
taking turns costs more than it saves), so a pull that downloads two or more chunks forks helpers, one a core,
each unpacking whole chunks into their staging trees. The pull itself keeps what must be in one place: the
downloads, the move of each staged tree into DEST, the hash cache and the progress.

A helper receives (zip file, staging tree, indices of the files to take) on a pipe, writes the files, and answers
with their stat keys, or with the error that stopped it; it sends how far it got every few thousand files. It is
forked before the pull starts any thread (only from a process that runs no other thread, as
:mod:`reconciler.destwalk`), so it has the version's file list already and gets only indices. It keeps no other
file descriptor of the pull (not DEST's lock, not the server's connections), ignores SIGINT (the pull stops it),
and leaves with ``os._exit`` when its pipe closes: when the pull ends, is stopped, or is killed. What it wrote is
only in the staging folder, which a pull never trusts. A helper that fails leaves its chunk to be unpacked here.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import marshal
import os
import signal
import struct
import threading
import zipfile
import zlib
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .clearml_backend import BackendError
from .destwalk import can_fork
from .diagnostics import ReconcileError
from .model import StoredFile
from .sources.hashcache import stat_key

IN_MEMORY = 16 << 20  # chunks up to this size are read whole: members are then sliced out, not opened one by one
REPORT_EVERY = 4096  # a helper tells how far it got every this many files

Advance = Callable[[int, int], None]  # (files, bytes) written since the last call
Message = tuple[Any, ...]  # what goes through a helper's pipes (marshal)


# --- unpacking one chunk -------------------------------------------------------------------------------------------


def unpack(source: Path, files: Sequence[StoredFile], indices: Sequence[int], where: str, tree: str,
           advance: Advance) -> array[int]:
    """Write ``files[i]`` (small files, read whole) for each of ``indices`` from the zip ``source`` under the
    folder ``tree``, each checked against its recorded size and sha256 before it is written; their stat keys
    (five int64 a file, in the order of ``indices``). ``BackendError`` for a member missing or different,
    ``zipfile.BadZipFile`` for a file that is not a zip."""
    data = source.read_bytes() if source.stat().st_size <= IN_MEMORY else None
    keys = array("q")
    made: set[str] = set()
    done = done_bytes = 0
    with zipfile.ZipFile(io.BytesIO(data) if data is not None else source) as zf:
        read = _member_reader(zf, data)
        for i in indices:
            f = files[i]
            content = read(member(zf, f.path, where), f.size)
            digest = hashlib.sha256(content).hexdigest()
            if len(content) != f.size or digest != f.sha256:
                raise BackendError(f"{f.path} in {where} does not match the version's file list "
                                   f"({len(content)} bytes, sha256 {digest[:12]}; recorded {f.size} bytes, "
                                   f"sha256 {f.sha256[:12]})")
            path = os.path.join(tree, f.path)
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view):]
                keys.extend(stat_key(os.fstat(fd)))
            finally:
                os.close(fd)
            done += 1
            done_bytes += f.size
            if done == REPORT_EVERY:
                advance(done, done_bytes)
                done = done_bytes = 0
    if done:
        advance(done, done_bytes)
    return keys


def member(zf: zipfile.ZipFile, path: str, where: str) -> zipfile.ZipInfo:
    """The member ``path`` of the chunk ``zf``; ``BackendError`` naming the chunk when it lacks it."""
    try:
        return zf.getinfo(path)
    except KeyError:
        raise BackendError(f"{where} lacks {path}") from None


_LOCAL_HEADER = b"PK\x03\x04"


def _member_reader(zf: zipfile.ZipFile, data: bytes | None) -> Callable[[zipfile.ZipInfo, int], bytes]:
    """How to read a member whole, at most one byte more than ``expected``: from a chunk in memory, a stored or
    deflated member is sliced out (and inflated) directly, skipping the file object ``ZipFile.read`` opens for
    each; anything else goes through ``ZipFile.read``. Either way the caller checks the size and sha256, which
    covers the CRC."""

    def read(info: zipfile.ZipInfo, expected: int) -> bytes:
        method = info.compress_type
        if data is not None and method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) and not info.flag_bits & 0x1:
            at = info.header_offset
            if data[at : at + 4] == _LOCAL_HEADER:
                name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
                start = at + 30 + name_len + extra_len
                if method == zipfile.ZIP_STORED:
                    return data[start : start + min(info.compress_size, expected + 1)]
                raw = data[start : start + info.compress_size]
                try:
                    return zlib.decompressobj(-15).decompress(raw, expected + 1)
                except zlib.error:
                    raise zipfile.BadZipFile(f"{info.filename}: bad deflate data") from None
        with zf.open(info) as member:
            return member.read(expected + 1)

    return read


# --- the helpers ---------------------------------------------------------------------------------------------------


class Helpers:
    """Forked processes unpacking chunks (see the module). :meth:`unpack` is called from several threads, each
    taking an idle helper; :meth:`close` stops them all."""

    def __init__(self, helpers: list[_Helper]) -> None:
        self._idle = helpers
        self._busy: set[_Helper] = set()
        self._alive = len(helpers)
        self._closed = False
        self._changed = threading.Condition()

    @classmethod
    def start(cls, files: Sequence[StoredFile], count: int) -> Helpers | None:
        """Up to ``count`` helpers knowing ``files`` (when the process may fork and a helper could be started);
        None otherwise: the pull unpacks in its own threads."""
        if count < 1 or not can_fork():
            return None
        started = [h for h in (_Helper.start(files) for _ in range(count)) if h is not None]
        return cls(started) if started else None

    def unpack(self, source: Path, indices: array[int], where: str, tree: str, advance: Advance) -> array[int] | None:
        """As :func:`unpack`, by an idle helper (waiting for one); None when no helper could do it (none is left,
        or the one used ended without an answer): the caller unpacks the chunk itself, into an empty tree."""
        with self._changed:
            self._changed.wait_for(lambda: self._idle or not self._alive or self._closed)
            if self._closed:
                raise ReconcileError("the pull was stopped")
            if not self._idle:
                return None
            helper = self._idle.pop()
            self._busy.add(helper)
        answer = None
        try:
            answer = helper.run((str(source), indices.tobytes(), where, tree), advance)
        finally:
            with self._changed:
                self._busy.discard(helper)
                lost = answer is None or self._closed
                if lost:
                    self._alive -= 1
                else:
                    self._idle.append(helper)
                self._changed.notify_all()
            if lost:
                helper.stop()
        if answer is None:
            if self._closed:
                raise ReconcileError("the pull was stopped")
            return None
        kind, *args = answer
        if kind == "ok":
            return array("q", args[0])
        raise _error(kind, args)

    def close(self) -> None:
        """Stop every helper. An idle one is killed and waited for here; one unpacking is killed here (what it
        wrote is in the staging folder, never trusted) and waited for by the thread using it, which sees its
        pipe end: the pull waits for its threads after this."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._alive -= len(idle)
            for helper in self._busy:  # not waited for yet (that happens after it leaves _busy): its pid is its own
                helper.kill()
            self._changed.notify_all()
        for helper in idle:
            helper.stop()


def _error(kind: str, args: list[Any]) -> BaseException:
    """The exception a helper reported, raised again here."""
    if kind == "backend":
        return BackendError(args[0])
    if kind == "reconcile":
        return ReconcileError(args[0])
    if kind == "zip":
        return zipfile.BadZipFile(args[0])
    if kind == "os":
        return OSError(*args)
    return BackendError(f"unpacking failed: {args[0]}")


class _Helper:
    """One forked helper and its two pipes (tasks in, answers out)."""

    def __init__(self, pid: int, tasks: int, answers: int) -> None:
        self.pid, self._tasks, self._answers = pid, tasks, answers

    @classmethod
    def start(cls, files: Sequence[StoredFile]) -> _Helper | None:
        try:
            task_r, task_w = os.pipe()
            answer_r, answer_w = os.pipe()
        except OSError:
            return None
        try:
            pid = os.fork()
        except OSError:
            for fd in (task_r, task_w, answer_r, answer_w):
                os.close(fd)
            return None
        if pid == 0:  # the helper: serve until the pipe closes (never returns into the caller's code)
            code = 1
            try:
                _serve(files, task_r, answer_w)
                code = 0
            finally:
                os._exit(code)
        os.close(task_r)
        os.close(answer_w)
        return cls(pid, task_w, answer_r)

    def run(self, task: Message, advance: Advance) -> Message | None:
        """Send ``task``, pass on its progress; its answer, or None when the helper ended without one."""
        try:
            _send(self._tasks, task)
            while True:
                message = _receive(self._answers)
                if message is None:
                    return None
                if message[0] != "progress":
                    return message
                advance(message[1], message[2])
        except (BrokenPipeError, ConnectionResetError):
            return None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Kill the helper, wait for it, close its pipes (once, by whoever holds it)."""
        self.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self._tasks)
        os.close(self._answers)


def _serve(files: Sequence[StoredFile], tasks: int, answers: int) -> None:
    """The helper's loop: unpack each task received, answer, until the pull closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the pull stops its helpers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.freeze()  # the pull's objects are never collected here: none closes a descriptor this helper reuses
    keep = sorted((tasks, answers))
    os.closerange(3, keep[0])  # nothing of the pull's: DEST's lock, connections, the hash cache
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, 1 << 20)

    def advance(count: int, size: int) -> None:
        _send(answers, ("progress", count, size))

    while (task := _receive(tasks)) is not None:
        source, raw, where, tree = task
        indices = array("q")
        indices.frombytes(raw)
        try:
            answer: Message = ("ok", unpack(Path(source), files, indices, where, tree, advance).tobytes())
        except BackendError as err:  # the message again, not its "error: " form
            answer = ("backend", "; ".join(d.message for d in err.diagnostics))
        except ReconcileError as err:
            answer = ("reconcile", "; ".join(d.message for d in err.diagnostics))
        except zipfile.BadZipFile as err:
            answer = ("zip", str(err))
        except OSError as err:
            answer = ("os", err.errno, err.strerror, err.filename)
        except Exception as err:  # noqa: BLE001 - reported to the pull, which stops with it
            answer = ("other", f"{type(err).__name__}: {err}")
        _send(answers, answer)


_FRAME = struct.Struct("<Q")


def _send(fd: int, message: Message) -> None:
    data = marshal.dumps(message)
    _write_all(fd, _FRAME.pack(len(data)) + data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int) -> Message | None:
    """The next message on ``fd``; None at its end."""
    head = _read_exactly(fd, _FRAME.size)
    if head is None:
        return None
    body = _read_exactly(fd, _FRAME.unpack(head)[0])
    return None if body is None else marshal.loads(body)  # a tuple: see _send


def _read_exactly(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        part = os.read(fd, min(size, 1 << 20))
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)
