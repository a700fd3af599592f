"""``LocalServer``: the embedded ClearML-compatible API server and file server, run by waitress in threads."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from .api import ApiApp, PageHook
from .auth import CredentialSource, TokenService
from .files import FilesApp
from .gate import DEFAULT_API_BODY, DEFAULT_UPLOAD, BodyLimits, Policy, gated
from .hooks import FaultInjector, ServerStats
from .store import Store

log = logging.getLogger(__name__)
logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Canceling N pending task(s)" at shutdown

DB_NAME = "server.sqlite3"
FILES_DIR = "files"
MAX_API_BODY_ENV = "RECONCILE_SERVER_MAX_API_BODY"
MAX_UPLOAD_ENV = "RECONCILE_SERVER_MAX_UPLOAD"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str, name: str) -> int:
    """``"10M"``, ``"16G"``, ``"65536"`` as bytes (binary units, an optional trailing ``B``)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"{name}: not a size ({text!r}; e.g. 10M, 16G or a number of bytes)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _limit(given: int | None, env: str, default: int) -> int:
    if given is not None:
        return given
    text = os.environ.get(env)
    return parse_size(text, env) if text else default


class _Listener:
    """One waitress server on its own thread, refusing requests its ``policy`` refuses before reading their
    bodies (see :mod:`gate`); :meth:`close` stops it from any thread, started or not."""

    def __init__(
        self, app: Any, host: str, port: int, threads: int, name: str, *, policy: Policy, max_body: int
    ) -> None:
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="reconcile",
            channel_timeout=120,
            clear_untrusted_proxy_headers=True,
            max_request_body_size=max_body + 1,  # waitress refuses a body of exactly its limit
            expose_tracebacks=False,
        )
        gated(self._server, policy)
        self.port: int = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Let requests in flight finish (their responses still flow), then close every socket.

        Closing sockets first would leave worker threads writing to closed channels (tracebacks on
        stderr); a client still sending afterwards (an SDK background thread) just sees the connection close.
        """
        server = self._server
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
        if self._thread.is_alive():
            try:
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            except OSError:  # the loop already closed its trigger while tearing down: close from here
                pass
            else:
                self._thread.join(timeout)
        if self._thread.is_alive() or server._map:
            with contextlib.suppress(OSError):
                wasyncore.close_all(server._map)
            if self._thread.ident is not None:  # never started: nothing to join
                self._thread.join(timeout)


class LocalServer:
    """A ClearML-compatible server whose state lives in ``data_dir`` (``server.sqlite3`` + ``files/``).

    ``LocalServer(data_dir, host="127.0.0.1", port=0)``: ``port=0`` picks a free port; ``files_port`` defaults
    to ``port + 1`` (a free port when ``port`` is 0). Credentials are read from ``data_dir/credentials.json``
    (generated on first start) unless ``access_key``/``secret_key`` are given.

    Lifecycle: :meth:`start` returns once both ports accept connections; :meth:`stop` lets requests in flight
    finish, closes the listeners, joins their threads and closes SQLite, after which another ``LocalServer``
    may open the same ``data_dir``. Also a context manager.

    After :meth:`start`: ``api_url``, ``files_url``, ``web_url``, ``port``, ``files_port``; :meth:`client_env`
    gives the ``CLEARML_*`` variables pointing any clearml code at this server.

    Hostile input: credentials are checked before a request body is read, and bodies are capped
    (``max_api_body``, default 10 MiB or ``$RECONCILE_SERVER_MAX_API_BODY``; ``max_upload``, default 16 GiB or
    ``$RECONCILE_SERVER_MAX_UPLOAD``; 64 KiB for unauthenticated endpoints), see :mod:`.gate`. Rotating the key
    pair revokes the tokens issued under the old one (see :mod:`.auth`). A data directory whose database or
    credentials cannot be used makes :meth:`start` raise :class:`DataDirError` (a ``ValueError``) naming the
    file.

    Test hooks:

    * ``stats`` (:class:`ServerStats`): ``stats.requests`` counts requests per endpoint name (API endpoints by
      ``service.action``, file server as ``files.upload|download|head|delete``); ``stats.reset()`` zeroes it.
    * ``faults`` (:class:`FaultInjector`): ``faults.fail_file_uploads_after = N`` lets N more uploads succeed,
      then the file server answers 500 to uploads; ``None`` (default) disables.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        files_port: int | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        threads: int = 8,
        max_api_body: int | None = None,
        max_upload: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self._requested_ports = (port, files_port if files_port is not None else (port + 1 if port else 0))
        self._keys = (access_key, secret_key)
        self._threads = threads
        self.limits = BodyLimits(
            api=_limit(max_api_body, MAX_API_BODY_ENV, DEFAULT_API_BODY),
            upload=_limit(max_upload, MAX_UPLOAD_ENV, DEFAULT_UPLOAD),
        )
        self.stats = ServerStats()
        self.faults = FaultInjector()
        self.pages: PageHook | None = None  # the web host's pages (the SDK's dataset and task links), if any
        self._store: Store | None = None
        self._listeners: list[_Listener] = []
        self._stopped = threading.Event()
        self.access_key = ""
        self.secret_key = ""
        self.port = 0
        self.files_port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalServer:
        if self._listeners:
            raise RuntimeError("server already started")
        (self.data_dir / FILES_DIR).mkdir(parents=True, exist_ok=True)
        source = CredentialSource(self.data_dir, *self._keys)
        credentials = source.current()
        self.access_key, self.secret_key = credentials.access_key, credentials.secret_key
        tokens = TokenService(source)
        files_app = FilesApp(self.data_dir / FILES_DIR, tokens, self.stats, self.faults, self.limits)
        files = _Listener(
            files_app.wsgi(),
            self.host,
            self._requested_ports[1],
            max(2, self._threads // 2),
            "files",
            policy=files_app.admit,
            max_body=self.limits.upload,
        )
        self.files_port = files.port
        try:
            self._store = Store(self.data_dir / DB_NAME, self.files_url)
            api_app = ApiApp(self._store, tokens, self.stats, self.limits, pages=lambda: self.pages)
            api = _Listener(
                api_app.wsgi(),
                self.host,
                self._requested_ports[0],
                self._threads,
                "api",
                policy=api_app.admit,
                max_body=self.limits.api,
            )
        except BaseException:
            files.close()
            if self._store is not None:
                self._store.close()
            raise
        self.port = api.port
        self._listeners = [api, files]
        self._stopped.clear()
        for listener in self._listeners:
            listener.start()
        log.info("ClearML-compatible server on %s, files on %s", self.api_url, self.files_url)
        return self

    def stop(self) -> None:
        """Stops serving and releases the data directory; calling it again does nothing."""
        for listener in self._listeners:
            listener.close()
        self._listeners = []
        if self._store is not None:
            self._store.close()
            self._store = None
        self._stopped.set()

    def wait(self) -> None:
        """Blocks until :meth:`stop` is called (from another thread) or the process is interrupted."""
        while not self._stopped.wait(0.5):
            pass

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    def _url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self._url(self.port)

    @property
    def web_url(self) -> str:
        """The API address: it also serves the pages the SDK links to when :attr:`pages` is set (and JSON 404s
        for every other non-API path)."""
        return self.api_url

    @property
    def files_url(self) -> str:
        return self._url(self.files_port)

    def client_env(self) -> dict[str, str]:
        """The ``CLEARML_*`` environment that points clearml code at this server."""
        return {
            "CLEARML_API_HOST": self.api_url,
            "CLEARML_WEB_HOST": self.web_url,
            "CLEARML_FILES_HOST": self.files_url,
            "CLEARML_API_ACCESS_KEY": self.access_key,
            "CLEARML_API_SECRET_KEY": self.secret_key,
        }
