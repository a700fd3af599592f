"""Shared fixtures: an embedded ClearML-compatible server on a free loopback port, and a runner for clearml
SDK code in subprocesses pointed at it.

The SDK caches its session and configuration per process and its downloads under ``$HOME`` keyed by dataset
id,
so SDK code runs in a fresh subprocess with an isolated ``HOME`` (see :class:`SdkRunner`). Typical use::

    def test_something(sdk):                     # sdk.server is the running LocalServer
        result = sdk.run_code("from clearml import Dataset; import json; print(json.dumps(...))")

Fixtures: ``local_server`` (a started :class:`~reconciler.localserver.LocalServer`, stopped afterwards) and
``sdk`` (an :class:`SdkRunner` bound to ``local_server`` with a fresh HOME). ``sdk_env(server, home)`` gives
the environment on its own, for code that starts processes itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
