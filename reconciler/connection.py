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
    from .clearml_backend import Backend, Cancel, WaitPolicy
    from .localserver import LocalServer

DEFAULT_DATA_DIR = Path(".reconcile")


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    local: bool = False
    data_dir: Path | None = None
    policy: WaitPolicy | None = None  # None: the defaults of clearml_backend.WaitPolicy
    cancel: Cancel | None = None


def explicit_configuration() -> str | None:
    """What names a ClearML server in this environment, or None."""
    from .clearml_backend.config import config_file

    if os.environ.get("CLEARML_API_HOST"):
        return "CLEARML_API_HOST"
    path = config_file(os.environ)
    return str(path) if path is not None else None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def connect(options: ConnectOptions, notice: Callable[[str], None]) -> Iterator[Connection]:
    """Yield a logged-in backend; the embedded server (if any) lives exactly as long as the block."""
    from .clearml_backend import Backend, load_server_config

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
        env = {**os.environ, **server.client_env()} if server is not None else dict(os.environ)
        if server is not None:
            env.pop("CLEARML_CONFIG_FILE", None)
        cfg = load_server_config(env)
        if cfg is None:
            raise ReconcileError("the ClearML configuration names no API server (api.api_server)")
        yield Connection(Backend.connect(cfg, policy=options.policy, cancel=options.cancel), server)
    finally:
        if server is not None:
            server.stop()


@dataclass(frozen=True, slots=True)
class Connection:
    backend: Backend
    server: LocalServer | None


def _start_local(data_dir: Path | None) -> LocalServer:
    from .localserver import LocalServer

    srv = LocalServer((data_dir or DEFAULT_DATA_DIR).resolve(), host="127.0.0.1", port=0)
    try:
        srv.start()
    except (OSError, ValueError) as err:
        raise ReconcileError(f"cannot start the embedded server: {err}") from None
    return srv
