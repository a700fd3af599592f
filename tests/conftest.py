"""Shared fixtures: an embedded ClearML-compatible server on a free loopback port, and a runner for clearml
SDK code in subprocesses pointed at it.

The SDK caches its session and configuration per process and its downloads under ``$HOME`` keyed by dataset
id, so SDK code runs in a fresh subprocess with an isolated ``HOME`` (see :class:`SdkRunner`). Typical use::

    def test_something(sdk):                     # sdk.server is the running LocalServer
        result = sdk.run_code("from clearml import Dataset; import json; print(json.dumps(...))")

Fixtures: ``local_server`` (a started :class:`~reconciler.localserver.LocalServer`, stopped afterwards) and
``sdk`` (an :class:`SdkRunner` bound to ``local_server`` with a fresh HOME). ``sdk_env(server, home)`` gives
the environment on its own, for code that starts processes itself.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.localserver import LocalServer

SDK_TIMEOUT_S = 240


def sdk_env(server: LocalServer, home: Path) -> dict[str, str]:
    """This process's environment without ClearML settings, plus ``server``'s ``CLEARML_*`` and ``HOME``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.update(server.client_env())
    env.update(
        HOME=str(home),
        CLEARML_LOG_LEVEL="WARNING",
        CLEARML_API_DEFAULT_REQ_METHOD="POST",
        PYTHONUNBUFFERED="1",
        PYTHONWARNINGS="ignore",
    )
    return env


class SdkError(AssertionError):
    """An SDK subprocess failed; the message carries its output."""


def _last_json_line(stdout: str) -> Any:
    for line in reversed(stdout.splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


@dataclass
class SdkRunner:
    """Runs Python code using the clearml SDK against ``server`` in subprocesses sharing ``home``.

    ``run*`` return the last stdout line that is JSON (the script's result); a non-zero exit raises
    :class:`SdkError` with the output.
    """

    server: LocalServer
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**sdk_env(self.server, self.home), **extra}

    def start(self, script: str | Path, *args: str, **env: str) -> subprocess.Popen[str]:
        """Starts ``script`` (a path, or a file name under ``tests/server/scenarios``) without waiting."""
        path = Path(script)
        if not path.is_absolute():
            path = Path(__file__).parent / "server" / "scenarios" / path
        return self._popen([sys.executable, str(path), *args], env)

    def _popen(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        self.home.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            argv,
            env=self.env(**env),
            cwd=self.home,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    @staticmethod
    def result(process: subprocess.Popen[str], timeout: float = SDK_TIMEOUT_S) -> Any:
        """Waits for ``process`` and returns its JSON result."""
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise SdkError(f"timed out after {timeout}s\n{stdout}\n{stderr}") from None
        if process.returncode != 0:
            raise SdkError(f"exit code {process.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
        try:
            return _last_json_line(stdout)
        except ValueError:
            raise SdkError(f"no JSON result\n--- stdout\n{stdout}\n--- stderr\n{stderr}") from None

    def run(self, script: str | Path, *args: str, **env: str) -> Any:
        return self.result(self.start(script, *args, **env))

    def run_code(self, code: str, **env: str) -> Any:
        return self.result(self._popen([sys.executable, "-c", code], env))


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A started LocalServer with its data in ``tmp_path/server-data``; stopped after the test."""
    server = LocalServer(tmp_path / "server-data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sdk(local_server: LocalServer, tmp_path: Path) -> SdkRunner:
    """An :class:`SdkRunner` bound to ``local_server`` with ``HOME`` at ``tmp_path/home``."""
    return SdkRunner(local_server, tmp_path / "home")


# --- S3 (moto_server on loopback) ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (free a moment ago)."""
    return free_port()


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on port {port}")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto_server subprocess (fake AWS S3)."""
    exe = Path(sys.executable).with_name("moto_server")
    command = str(exe) if exe.exists() else shutil.which("moto_server")
    assert command, "moto_server is not installed (pip install 'moto[server]')"
    port = free_port()
    proc = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
