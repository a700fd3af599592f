"""``LocalServer``: the embedded ClearML-compatible API server and file server, run by waitress in threads."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from .api import ApiApp
from .auth import TokenService, load_credentials
from .files import FilesApp
from .hooks import FaultInjector, ServerStats
from .store import Store

log = logging.getLogger(__name__)
logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Canceling N pending task(s)" at shutdown

DB_NAME = "server.sqlite3"
FILES_DIR = "files"
MAX_BODY_BYTES = 16 * 1024**3  # dataset chunks are at most a few hundred MB by default


class _Listener:
    """One waitress server on its own thread; :meth:`close` stops it from any thread."""

    def __init__(self, app: Any, host: str, port: int, threads: int, name: str) -> None:
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="reconcile",
            channel_timeout=120,
            clear_untrusted_proxy_headers=True,
            max_request_body_size=MAX_BODY_BYTES,
            expose_tracebacks=False,
        )
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
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self._requested_ports = (port, files_port if files_port is not None else (port + 1 if port else 0))
        self._keys = (access_key, secret_key)
        self._threads = threads
        self.stats = ServerStats()
        self.faults = FaultInjector()
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
        credentials = load_credentials(self.data_dir, *self._keys)
        self.access_key, self.secret_key = credentials.access_key, credentials.secret_key
        tokens = TokenService(credentials)
        files_app = FilesApp(self.data_dir / FILES_DIR, tokens, self.stats, self.faults)
        files = _Listener(
            files_app.wsgi(), self.host, self._requested_ports[1], max(2, self._threads // 2), "files"
        )
        self.files_port = files.port
        try:
            self._store = Store(self.data_dir / DB_NAME, self.files_url)
            api = _Listener(
                ApiApp(self._store, tokens, self.stats).wsgi(),
                self.host,
                self._requested_ports[0],
                self._threads,
                "api",
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
        """There is no web UI; the SDK only needs a plausible address, so it is the API address."""
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
