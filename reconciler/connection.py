"""Which ClearML server a command talks to.

1. ``--local``: the embedded server, started in this process on a free port, data in ``./.reconcile/``.
2. An explicit ClearML configuration (``CLEARML_API_HOST``, ``CLEARML_CONFIG_FILE``, ``~/clearml.conf``):
   that server.
3. Nothing configured, outside CI: the embedded server, with a one-line notice.
4. Nothing configured, ``CI`` set: an error; CI never silently runs against a throw-away server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .diagnostics import ReconcileError

if TYPE_CHECKING:
    from .clearml_backend import ClearMLBackend
    from .localserver import LocalServer

DEFAULT_DATA_DIR = Path(".reconcile")


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    local: bool = False
    data_dir: Path | None = None


def explicit_configuration() -> str | None:
    """What names a ClearML server in this environment, or None."""
    if os.environ.get("CLEARML_API_HOST"):
        return "CLEARML_API_HOST"
    cfg = os.environ.get("CLEARML_CONFIG_FILE")
    if cfg:
        if not Path(cfg).expanduser().is_file():
            raise ReconcileError(f"CLEARML_CONFIG_FILE names {cfg}, which does not exist")
        return f"CLEARML_CONFIG_FILE={cfg}"
    for candidate in (Path.home() / "clearml.conf", Path.home() / ".clearml.conf"):
        if candidate.is_file():
            return str(candidate)
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def connect(options: ConnectOptions, notice: Callable[[str], None]) -> Iterator[Connection]:
    """Yield a connected backend; the embedded server (if any) lives exactly as long as the block."""
    from . import clearml_backend

    server = None
    if options.local:
        server = _start_local(options.data_dir)
    else:
        source = explicit_configuration()
        if source is None:
            if in_ci():
                raise ReconcileError(
                    "no ClearML server is configured (CI is set): set CLEARML_API_HOST and credentials or "
                    "CLEARML_CONFIG_FILE, or pass --local to use the embedded server"
                )
            server = _start_local(options.data_dir)
            notice(f"note: no ClearML server configured; using the embedded server (data in "
                   f"{(options.data_dir or DEFAULT_DATA_DIR).resolve()}); pass --local to silence this")
    try:
        if server is not None:
            os.environ.update(server.client_env())
        cfg = clearml_backend.server_config_from_env()
        if cfg is None:
            raise ReconcileError("the ClearML configuration names no API server (api.api_server)")
        clearml_backend.preflight(cfg)
        yield Connection(clearml_backend.ClearMLBackend(cfg), server)
    finally:
        if server is not None:
            server.stop()


@dataclass(frozen=True, slots=True)
class Connection:
    backend: ClearMLBackend
    server: LocalServer | None


def _start_local(data_dir: Path | None) -> LocalServer:
    from .localserver import LocalServer

    srv = LocalServer((data_dir or DEFAULT_DATA_DIR).resolve(), host="127.0.0.1", port=0)
    srv.start()
    return srv
