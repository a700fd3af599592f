"""HTTP access to a ClearML API server and its file server, without the clearml SDK.

Every answer goes through one envelope check: success is ``meta.result_code == 200``; anything else is an
:class:`ApiError` carrying the endpoint, HTTP status, result code and subcode, so callers classify errors by
code (see the ``*_CODE`` constants), never by message text.

Waits are bounded (:class:`WaitPolicy`): a call is retried on connection failures, timeouts and 5xx answers
with back-off until its deadline, then fails with one line. Calls that create something are not blindly
retried after an ambiguous failure (the request may have been applied): they raise :class:`AmbiguousWrite`
and the caller looks the object up. A :class:`Cancel` set by a signal handler stops waits and uploads within
a fraction of a second. Every write first calls the client's ``fence`` (the apply lock's check), so a run that
lost its lease cannot write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..diagnostics import ReconcileError
from .config import ServerConfig

API_VERSION = "2.23"

ALREADY_EXISTS = (400, 801)  # "Project with the same name already exists"


class BackendError(ReconcileError):
    """A ClearML server refused or failed a request."""


class ApiError(BackendError):
    def __init__(self, endpoint: str, http_status: int, code: int, subcode: int, message: str):
        self.endpoint, self.http_status, self.code, self.subcode, self.message = (
            endpoint, http_status, code, subcode, message)
        super().__init__(f"{endpoint}: {message or 'error'} (code {code}/{subcode})")

    def is_(self, code: tuple[int, int]) -> bool:
        return (self.code, self.subcode) == code


class AmbiguousWrite(BackendError):
    """A create request failed in a way that leaves open whether the server applied it."""


class Interrupted(ReconcileError):
    """The run was stopped by a signal (``signal_name``: SIGINT or SIGTERM)."""

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        super().__init__(f"interrupted by {signal_name}")


class Cancel:
    """Set once, from a signal handler or another thread; every wait and every upload block checks it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name = ""

    def set(self, signal_name: str) -> None:
        self.signal_name = self.signal_name or signal_name
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Interrupted(self.signal_name or "a signal")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once when cancelled (then raise :class:`Interrupted`)."""
        if self._event.wait(max(0.0, seconds)):
            self.check()


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How long server calls may take. ``deadline`` bounds one call including its retries."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    deadline: float = 120.0
    first_backoff: float = 0.25
    max_backoff: float = 8.0


_RETRY_HTTP = frozenset({429, 500, 502, 503, 504})
CLEANUP_DEADLINE = 5.0


class _Retry(Exception):
    def __init__(self, reason: str, sent: bool):
        super().__init__(reason)
        self.reason, self.sent = reason, sent


class ApiClient:
    """One logged-in client for one server. Thread-safe (the connection pool is shared)."""

    def __init__(self, cfg: ServerConfig, *, policy: WaitPolicy = WaitPolicy(), cancel: Cancel | None = None):
        import urllib3

        self.cfg = cfg
        self.policy = policy
        self.cancel = cancel or Cancel()
        self.fence: Callable[[], None] | None = None
        self.requests: Counter[str] = Counter()
        self._urllib3 = urllib3
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=16, block=False,
            cert_reqs="CERT_REQUIRED" if cfg.verify_tls else "CERT_NONE",
        )
        self._token: str | None = None
        self._logged_in = False
        self._down_since: dict[str, float] = {}  # host -> when it stopped answering (cleared by any answer)
        self._answered: set[str] = set()  # hosts that answered in this run
        self._token_lock = threading.Lock()

    # --- transport --------------------------------------------------------------------------------------------

    def _timeout(self, remaining: float) -> Any:
        return self._urllib3.Timeout(connect=min(self.policy.connect_timeout, max(0.1, remaining)),
                                     read=min(self.policy.read_timeout, max(0.1, remaining)))

    def _send(self, method: str, url: str, *, body: Any = None, headers: Mapping[str, str] | None = None,
              remaining: float, stream: bool = False) -> Any:
        """One HTTP exchange. Connection problems raise :class:`_Retry` (``sent``: the request may have arrived)."""
        u3 = self._urllib3
        try:
            return self._pool.request(method, url, body=body, headers=dict(headers or {}), retries=False,
                                      redirect=False, timeout=self._timeout(remaining),
                                      preload_content=not stream)
        except u3.exceptions.NewConnectionError as err:
            raise _Retry(_reason(err), sent=False) from None
        except u3.exceptions.ConnectTimeoutError:
            raise _Retry("connection timed out", sent=False) from None
        except u3.exceptions.ReadTimeoutError:
            raise _Retry("no answer in time", sent=True) from None
        except (u3.exceptions.ProtocolError, u3.exceptions.SSLError, u3.exceptions.HTTPError, OSError) as err:
            raise _Retry(_reason(err), sent=True) from None

    def _with_retries(self, what: str, attempt: Callable[[float], Any], *, ambiguous_ok: bool,
                      cleanup: bool = False, host: str | None = None) -> Any:
        """Run ``attempt(remaining_seconds)`` until it returns, raising after the deadline.

        The deadline bounds the whole outage of ``host`` (the API server unless given), not each call: once the
        host stopped answering, every call waits only for what is left of the deadline counted from then, so a
        dead server ends the run after ``deadline`` seconds however many calls were still to make. A host that
        has not answered once in this run and refuses the connection is a configuration error, said at once.
        ``cleanup``: a call made while stopping (releasing the lock): it runs even when cancelled, within a
        short deadline.
        """
        host = host or self.cfg.api_host
        start = time.monotonic()
        deadline = min(self.policy.deadline, CLEANUP_DEADLINE) if cleanup else self.policy.deadline
        ends = start + deadline
        if not cleanup and host in self._down_since:
            ends = min(ends, self._down_since[host] + deadline)
        # a cleanup call to a host down for longer than the deadline gets one attempt, no retries
        once = cleanup and host in self._down_since and start - self._down_since[host] >= self.policy.deadline
        delay = self.policy.first_backoff
        last = "it stopped answering earlier in this run"
        while True:
            if not cleanup:
                self.cancel.check()
            remaining = ends - time.monotonic()
            if remaining <= 0:
                raise BackendError(f"{what}: {_server_name(self.cfg, host)} at {host} did not answer within "
                                   f"{deadline:.0f}s ({last}); the next run resumes")
            try:
                result = attempt(remaining)
            except _Retry as err:
                self._down_since.setdefault(host, time.monotonic())
                if not err.sent and host not in self._answered and host != self.cfg.api_host:
                    raise ReconcileError(f"{what}: cannot reach {_server_name(self.cfg, host)} at {host}: "
                                         f"{err.reason}{_check_config(self.cfg, host)}") from None
                if err.sent and not ambiguous_ok:
                    raise AmbiguousWrite(f"{what}: {err.reason}") from None
                last = err.reason
                if once:
                    raise BackendError(f"{what}: {_server_name(self.cfg, host)} at {host} is not answering "
                                       f"({last})") from None
            except BackendError:
                self._answered.add(host)  # it answered (with an error) or the run stops
                self._down_since.pop(host, None)
                raise
            else:
                self._answered.add(host)
                self._down_since.pop(host, None)
                return result
            pause = min(delay, max(0.0, deadline - (time.monotonic() - start)))
            if cleanup:
                time.sleep(pause)
            else:
                self.cancel.sleep(pause)
            delay = min(self.policy.max_backoff, delay * 2)

    # --- API ---------------------------------------------------------------------------------------------------

    def login(self) -> str:
        basic = base64.b64encode(f"{self.cfg.access_key}:{self.cfg.secret_key}".encode()).decode()

        def attempt(remaining: float) -> str:
            resp = self._send("GET", f"{self.cfg.api_host}/auth.login",
                              headers={"Authorization": f"Basic {basic}"}, remaining=remaining)
            self.requests["auth.login"] += 1
            if resp.status == 401:
                raise ReconcileError(
                    f"the ClearML server at {self.cfg.api_host} refused the credentials (HTTP 401); check "
                    "CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY or clearml.conf"
                )
            if resp.status in _RETRY_HTTP:
                raise _Retry(f"HTTP {resp.status}", sent=False)
            data = _envelope("auth.login", resp.status, resp.data)
            token = data.get("token")
            if not isinstance(token, str):
                raise BackendError(f"auth.login: the server at {self.cfg.api_host} sent no token")
            return token

        if not self._logged_in:  # first contact: an unreachable server is a configuration error, said at once
            try:
                token = attempt(self.policy.connect_timeout + self.policy.read_timeout)
            except _Retry as err:
                raise ReconcileError(f"cannot reach the ClearML server at {self.cfg.api_host}: {err.reason}") from None
        else:
            token = self._with_retries("auth.login", attempt, ambiguous_ok=True)
        self._token = token
        self._logged_in = True
        return str(token)

    def _bearer(self) -> str:
        with self._token_lock:
            if self._token is None:
                self.login()
            assert self._token is not None
            return self._token

    def call(self, endpoint: str, *, write: bool = False, create: bool = False, cleanup: bool = False,
             **body: Any) -> dict[str, Any]:
        """``endpoint`` (``service.action``) with a JSON body; the ``data`` of a successful answer.

        ``write``: the call changes the server (the fence is checked first). ``create``: it creates something,
        so a failure after the request was sent raises :class:`AmbiguousWrite` instead of being retried.
        ``cleanup``: runs even after a cancel, within a few seconds (see :meth:`_with_retries`).
        """
        payload = json.dumps(body).encode()
        return self._call(endpoint, payload, "application/json", write=write or create, ambiguous_ok=not create,
                          cleanup=cleanup)

    def call_lines(self, endpoint: str, lines: list[Mapping[str, Any]]) -> dict[str, Any]:
        """A ``json-lines`` request (``events.add_batch``)."""
        payload = "\n".join(json.dumps(line) for line in lines).encode()
        return self._call(endpoint, payload, "application/json-lines", write=True, ambiguous_ok=True)

    def _call(self, endpoint: str, payload: bytes, content_type: str, *, write: bool,
              ambiguous_ok: bool, cleanup: bool = False) -> dict[str, Any]:
        url = f"{self.cfg.api_host}/v{API_VERSION}/{endpoint}"
        relogged = False

        def attempt(remaining: float) -> dict[str, Any]:
            nonlocal relogged
            if write and self.fence is not None:
                self.fence()
            headers = {"Authorization": f"Bearer {self._bearer()}", "Content-Type": content_type}
            resp = self._send("POST", url, body=payload, headers=headers, remaining=remaining)
            self.requests[endpoint] += 1
            if resp.status == 401 and not relogged:
                relogged = True
                with self._token_lock:
                    self._token = None
                raise _Retry("token expired", sent=False)
            if resp.status in _RETRY_HTTP and not _has_envelope(resp.data, client_error=True):
                raise _Retry(f"HTTP {resp.status}", sent=True)
            return _envelope(endpoint, resp.status, resp.data)

        result: dict[str, Any] = self._with_retries(endpoint, attempt, ambiguous_ok=ambiguous_ok, cleanup=cleanup)
        return result

    # --- file server -------------------------------------------------------------------------------------------

    def files_url(self, path: str) -> str:
        return f"{self.cfg.files_host}/{path.lstrip('/')}"

    def _files_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._bearer()}"}

    def upload(self, url: str, source: Callable[[], BinaryIO], size: int, *,
               progress: Callable[[int], None] | None = None) -> str:
        """Store ``size`` bytes from ``source()`` (opened afresh for each attempt) at ``url`` on the file server;
        the sha256 of the bytes stored (hashed as they were sent)."""
        base = self.cfg.files_host + "/"
        if not url.startswith(base):
            raise BackendError(f"{url} is not on the files server {self.cfg.files_host}")
        path = url[len(base):]
        boundary = uuid.uuid4().hex

        def attempt(remaining: float) -> str:
            if self.fence is not None:
                self.fence()
            with source() as stream:
                body = _Multipart(boundary, path, stream, size, self.cancel, progress)
                headers = {**self._files_headers(), "Content-Type": f"multipart/form-data; boundary={boundary}",
                           "Content-Length": str(len(body))}
                resp = self._send("POST", base, body=body, headers=headers, remaining=remaining)
                self.requests["files.upload"] += 1
                self.cancel.check()
                if resp.status in _RETRY_HTTP:
                    raise _Retry(f"file server answered HTTP {resp.status}", sent=True)
                if resp.status != 200:
                    raise BackendError(f"upload of {url} refused: HTTP {resp.status} {_short(resp.data)}")
                return body.sha256()

        digest: str = self._with_retries(f"upload of {path}", attempt, ambiguous_ok=True, host=_host_of(base))
        return digest

    def download(self, url: str, *, limit: int = 1 << 30) -> bytes:
        """The bytes at ``url`` on the file server (small objects: state, metadata)."""

        def attempt(remaining: float) -> bytes:
            resp = self._send("GET", url, headers=self._files_headers(), remaining=remaining)
            self.requests["files.download"] += 1
            if resp.status in _RETRY_HTTP:
                raise _Retry(f"file server answered HTTP {resp.status}", sent=False)
            if resp.status != 200:
                raise BackendError(f"cannot download {url}: HTTP {resp.status}")
            data: bytes = resp.data
            if len(data) > limit:
                raise BackendError(f"{url} is larger than expected ({len(data)} bytes)")
            return data

        result: bytes = self._with_retries(f"download of {url}", attempt, ambiguous_ok=True, host=_host_of(url))
        return result

    def download_to(self, url: str, dest: Path) -> int:
        """Stream ``url`` into ``dest``; the number of bytes written."""

        def attempt(remaining: float) -> int:
            resp = self._send("GET", url, headers=self._files_headers(), remaining=remaining, stream=True)
            try:
                self.requests["files.download"] += 1
                if resp.status in _RETRY_HTTP:
                    raise _Retry(f"file server answered HTTP {resp.status}", sent=False)
                if resp.status != 200:
                    raise BackendError(f"cannot download {url}: HTTP {resp.status}")
                written = 0
                with open(dest, "wb") as out:
                    for block in resp.stream(1 << 20):
                        self.cancel.check()
                        out.write(block)
                        written += len(block)
                return written
            finally:
                resp.release_conn()

        result: int = self._with_retries(f"download of {url}", attempt, ambiguous_ok=True, host=_host_of(url))
        return result

    def stored_size(self, url: str) -> int | None:
        """The size of the object at ``url`` on the file server, or None when there is none."""

        def attempt(remaining: float) -> int | None:
            resp = self._send("HEAD", url, headers=self._files_headers(), remaining=remaining)
            self.requests["files.head"] += 1
            if resp.status == 404:
                return None
            if resp.status in _RETRY_HTTP:
                raise _Retry(f"file server answered HTTP {resp.status}", sent=False)
            if resp.status != 200:
                raise BackendError(f"cannot check {url}: HTTP {resp.status}")
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None and length.isdigit() else -1

        result: int | None = self._with_retries(f"check of {url}", attempt, ambiguous_ok=True, host=_host_of(url))
        return result

    def delete_file(self, url: str) -> bool:
        """Delete ``url`` from the file server; False when it was not there."""

        def attempt(remaining: float) -> bool:
            if self.fence is not None:
                self.fence()
            resp = self._send("DELETE", url, headers=self._files_headers(), remaining=remaining)
            self.requests["files.delete"] += 1
            if resp.status == 404:
                return False
            if resp.status in _RETRY_HTTP:
                raise _Retry(f"file server answered HTTP {resp.status}", sent=True)
            if resp.status != 200:
                raise BackendError(f"cannot delete {url}: HTTP {resp.status}")
            return True

        result: bool = self._with_retries(f"delete of {url}", attempt, ambiguous_ok=True, host=_host_of(url))
        return result


def _host_of(url: str) -> str:
    """``scheme://host:port`` of ``url`` (how the configuration names a server)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if rest else url


def _server_name(cfg: ServerConfig, host: str) -> str:
    if host == cfg.api_host:
        return "the ClearML API server"
    if host == _host_of(cfg.files_host):
        return "the ClearML file server"
    return "the server"


def _check_config(cfg: ServerConfig, host: str) -> str:
    if host == _host_of(cfg.files_host):
        return "; check files_server in clearml.conf (or CLEARML_FILES_HOST)"
    return ""


class _Multipart:
    """A ``multipart/form-data`` body with one file part, read in blocks (cancellable, with progress)."""

    BLOCK = 1 << 20

    def __init__(self, boundary: str, name: str, stream: BinaryIO, size: int, cancel: Cancel,
                 progress: Callable[[int], None] | None):
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        self._head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{quoted}\"; "
                      f"filename=\"{quoted}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._stream, self._size, self._cancel, self._progress = stream, size, cancel, progress
        self._hash = hashlib.sha256()
        self._sent = 0

    def sha256(self) -> str:
        """The sha256 of the file's bytes, once all of them were sent."""
        if self._sent != self._size:
            raise BackendError("the upload ended before the whole file was sent")
        return self._hash.hexdigest()

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        left = self._size
        while left > 0:
            self._cancel.check()
            block = self._stream.read(min(self.BLOCK, left))
            if not block:
                raise BackendError("a file being uploaded got shorter while it was read")
            left -= len(block)
            self._hash.update(block)
            self._sent += len(block)
            if self._progress is not None:
                self._progress(len(block))
            yield block
        yield self._tail


def _reason(err: BaseException) -> str:
    text = str(err)
    for marker in ("Connection refused", "Name or service not known", "Connection reset", "timed out",
                   "Remote end closed connection", "Broken pipe"):
        if marker.lower() in text.lower():
            return marker.lower()
    return type(err).__name__


def _short(data: bytes) -> str:
    return data[:200].decode("utf-8", "replace").replace("\n", " ")


def _has_envelope(data: bytes, *, client_error: bool) -> bool:
    """True when ``data`` is a ClearML envelope whose result code is a client error (not worth retrying)."""
    try:
        meta = json.loads(data).get("meta") or {}
    except (ValueError, AttributeError):
        return False
    code = meta.get("result_code")
    return isinstance(code, int) and (400 <= code < 500 if client_error else True)


def _envelope(endpoint: str, http_status: int, data: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError:
        raise BackendError(f"{endpoint}: the server answered HTTP {http_status} without JSON") from None
    meta = payload.get("meta") if isinstance(payload, dict) else None
    if not isinstance(meta, dict):
        raise BackendError(f"{endpoint}: the server answered HTTP {http_status} without a ClearML envelope")
    code, subcode = meta.get("result_code"), meta.get("result_subcode") or 0
    if code != 200:
        raise ApiError(endpoint, http_status, int(code or http_status), int(subcode),
                       str(meta.get("result_msg") or ""))
    result = payload.get("data")
    return result if isinstance(result, dict) else {}
