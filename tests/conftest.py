"""Shared fixtures: the ClearML server the tests talk to, a runner for clearml SDK code in subprocesses pointed at
it, and moto_server for S3.

The server is the embedded one (default: a fresh :class:`~reconciler.localserver.LocalServer` per test) or, with
``pytest --server=reference``, the real clearml-server shared by the whole session (see "Reference server" below).
Tests take it from ONE fixture, ``clearml_server`` (a :class:`ServerHandle`), and name their projects with
``unique_name`` so that they never meet another test's data on a shared server::

    def test_something(clearml_sdk, unique_name):       # clearml_sdk.server is the ServerHandle
        project = unique_name("proj")                   # "proj-1a2b3c4d"
        result = clearml_sdk.run_code(f"...Dataset.create(dataset_project={project!r}, ...)...")

The SDK caches its session and configuration per process and its downloads under ``$HOME`` keyed by dataset
id, so SDK code runs in a fresh subprocess with an isolated ``HOME`` (see :class:`SdkRunner`).

Fixtures: ``clearml_server`` (the :class:`ServerHandle`), ``clearml_sdk`` (an :class:`SdkRunner` bound to it with
a fresh HOME), ``unique_name``; embedded only: ``local_server`` (a started LocalServer, stopped afterwards) and
``sdk`` (an :class:`SdkRunner` bound to ``local_server``). ``sdk_env(server, home)`` gives the environment on its
own, for code that starts processes itself.

Reference server (``--server=reference``), taken from, in order:

1. ``RECONCILE_TEST_REFERENCE_API``, ``..._FILES``, ``..._ACCESS_KEY``, ``..._SECRET_KEY`` (and optionally
   ``..._WEB``): an already running server, e.g. your own test server;
2. otherwise the reference server in ``RECONCILE_REFERENCE_SERVER_DIR`` (default ``../shared/reference-server``
   next to the checkout), its state in ``CLEARML_REFERENCE_HOME`` (default ``~/.cache/clearml-reference-server``):
   used when running, else set up and started once for the session (``setup.sh``, ``start.sh``; a file lock
   makes concurrent sessions start it once) and stopped at the end by the last session using it.

Its database is shared by every test, both xdist workers and whoever else uses it: never assume it is empty.
The session exports ``RECONCILE_TEST_SERVER`` (``embedded`` or ``reference``) and, for the reference server,
the ``RECONCILE_TEST_REFERENCE_*`` variables above, for fixtures that need the address themselves.

Markers: tests that use ``clearml_server`` are marked ``integration``. ``embedded_only`` (set explicitly, and
implied by asking for ``local_server``) marks tests about the embedded server itself (its hooks, restart,
credentials file, the ``reconcile server`` command); ``--server=reference`` deselects them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from reconciler.localserver import LocalServer

SDK_TIMEOUT_S = 240
REPO = Path(__file__).resolve().parents[1]

# --- the server under test ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerHandle:
    """The ClearML server a test talks to: its addresses and credentials, and the LocalServer when embedded
    (``local``, for its test hooks: ``stats``, ``faults``, ``data_dir``)."""

    kind: str  # "embedded" or "reference"
    api_url: str
    files_url: str
    web_url: str
    access_key: str
    secret_key: str = field(repr=False)
    local: LocalServer | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self.local is not None

    @classmethod
    def of(cls, server: LocalServer) -> ServerHandle:
        return cls("embedded", server.api_url, server.files_url, server.web_url, server.access_key,
                   server.secret_key, server)

    def client_env(self) -> dict[str, str]:
        """The ``CLEARML_*`` environment that points clearml code (and ``reconcile``) at this server."""
        return {var: getattr(self, name) for name, var in CLIENT_VARS.items()}


CLIENT_VARS = {  # ServerHandle field -> the CLEARML_* variable giving it to clearml code (as in run/env.sh)
    "api_url": "CLEARML_API_HOST",
    "web_url": "CLEARML_WEB_HOST",
    "files_url": "CLEARML_FILES_HOST",
    "access_key": "CLEARML_API_ACCESS_KEY",
    "secret_key": "CLEARML_API_SECRET_KEY",
}


REFERENCE_VARS = {  # ServerHandle field -> the variable giving it
    "api_url": "RECONCILE_TEST_REFERENCE_API",
    "files_url": "RECONCILE_TEST_REFERENCE_FILES",
    "access_key": "RECONCILE_TEST_REFERENCE_ACCESS_KEY",
    "secret_key": "RECONCILE_TEST_REFERENCE_SECRET_KEY",
}
REFERENCE_WEB_VAR = "RECONCILE_TEST_REFERENCE_WEB"
REFERENCE_KEY = pytest.StashKey["ServerHandle"]()
ORIGIN_KEY = pytest.StashKey[str]()
STARTED_KEY = pytest.StashKey["_ReferenceLease"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server", choices=("embedded", "reference"), default="embedded",
        help="the ClearML server of the integration tests: a fresh embedded server per test (default), or the "
             "reference clearml-server shared by the session (RECONCILE_TEST_REFERENCE_* or "
             "RECONCILE_REFERENCE_SERVER_DIR; see tests/conftest.py)",
    )


def _reference_from_env() -> ServerHandle | None:
    values = {name: os.environ.get(var, "") for name, var in REFERENCE_VARS.items()}
    if not any(values.values()):
        return None
    missing = [REFERENCE_VARS[name] for name, value in values.items() if not value]
    if missing:
        raise pytest.UsageError(f"--server=reference: {', '.join(missing)} not set (set all of "
                                f"{', '.join(REFERENCE_VARS.values())}, or none to use the reference server)")
    web = os.environ.get(REFERENCE_WEB_VAR) or values["api_url"]
    return ServerHandle("reference", values["api_url"], values["files_url"], web, values["access_key"],
                        values["secret_key"])


def _reference_dir() -> Path:
    given = os.environ.get("RECONCILE_REFERENCE_SERVER_DIR")
    return Path(given).expanduser().resolve() if given else (REPO.parent / "shared" / "reference-server").resolve()


def _reference_home() -> Path:
    given = os.environ.get("CLEARML_REFERENCE_HOME")
    return Path(given).expanduser() if given else Path.home() / ".cache" / "clearml-reference-server"


def _read_env_sh(path: Path) -> ServerHandle | None:
    """The server that ``start.sh`` described in ``run/env.sh`` (``export NAME=value`` lines), if complete."""
    if not path.is_file():
        return None
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\s*export\s+([A-Z_]+)=(['\"]?)(.*)\2\s*", line)
        if match:
            found[match.group(1)] = match.group(3)
    values = {name: found.get(var, "") for name, var in CLIENT_VARS.items()}
    if not all(values[name] for name in REFERENCE_VARS):
        return None
    return ServerHandle("reference", values["api_url"], values["files_url"], values["web_url"] or values["api_url"],
                        values["access_key"], values["secret_key"])


def _answers(url: str) -> bool:
    """True when something answers HTTP at ``url`` (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _running(server: ServerHandle | None) -> bool:
    return server is not None and _answers(f"{server.api_url}/debug.ping") and _answers(f"{server.files_url}/")


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        yield handle


@dataclass
class _ReferenceLease:
    """This session's use of a reference server it may have to stop: a shared lock held for the whole session
    (``tests-users.lock``) tells the last session out, which stops the server when a test session started it
    (``tests-started-it``)."""

    home: Path
    directory: Path
    users: IO[str]

    def release(self) -> None:
        with _flock(self.home / "tests.lock", fcntl.LOCK_EX), self.users:
            try:
                fcntl.flock(self.users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another session still uses it: the last one out stops it
                return
            marker = self.home / "tests-started-it"
            if marker.exists():
                _run_script(self.directory / "stop.sh")
                marker.unlink()


def _run_script(script: Path) -> None:
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise pytest.UsageError(f"--server=reference: {script} failed with exit code {proc.returncode}:\n{tail}")


def _start_reference(config: pytest.Config) -> tuple[ServerHandle, str, _ReferenceLease]:
    """The reference server of ``run/env.sh``, set up and started first when it is not running."""
    directory, home = _reference_dir(), _reference_home()
    env_sh = home / "run" / "env.sh"
    with _flock(home / "tests.lock", fcntl.LOCK_EX):
        if _running(_read_env_sh(env_sh)):
            origin = f"already running (state in {home})"
        else:
            if not (directory / "start.sh").is_file():
                raise pytest.UsageError(
                    f"--server=reference: no reference server at {directory} (set RECONCILE_REFERENCE_SERVER_DIR to "
                    f"its folder, or {', '.join(REFERENCE_VARS.values())} to a running server)")
            capture = config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                print(f"starting the reference server from {directory} (setup.sh, start.sh)...", file=sys.stderr,
                      flush=True)
            _run_script(directory / "setup.sh")
            _run_script(directory / "start.sh")
            (home / "tests-started-it").touch()
            origin = f"started by the tests from {directory}"
        server = _read_env_sh(env_sh)
        if not _running(server):
            raise pytest.UsageError(f"--server=reference: the reference server of {env_sh} does not answer")
        users = (home / "tests-users.lock").open("a")
        fcntl.flock(users, fcntl.LOCK_SH)
    assert server is not None
    return server, origin, _ReferenceLease(home, directory, users)


def pytest_configure(config: pytest.Config) -> None:
    mode = config.getoption("server")
    os.environ["RECONCILE_TEST_SERVER"] = mode
    if mode != "reference":
        return
    server = _reference_from_env()  # given by the user, or exported by the controller to its xdist workers
    if server is not None:
        origin = "given by " + ", ".join(REFERENCE_VARS.values())
    elif hasattr(config, "workerinput"):
        raise pytest.UsageError("--server=reference: the RECONCILE_TEST_REFERENCE_* variables did not reach the "
                                "xdist worker")
    else:
        server, origin, lease = _start_reference(config)
        config.stash[STARTED_KEY] = lease
        os.environ.update({var: getattr(server, name) for name, var in REFERENCE_VARS.items()})
        os.environ[REFERENCE_WEB_VAR] = server.web_url
    config.stash[REFERENCE_KEY] = server
    config.stash[ORIGIN_KEY] = origin


def pytest_unconfigure(config: pytest.Config) -> None:
    lease = config.stash.get(STARTED_KEY, None)
    if lease is not None:
        lease.release()


def pytest_report_header(config: pytest.Config) -> str:
    server = config.stash.get(REFERENCE_KEY, None)
    if server is None:
        return "clearml server: embedded (a fresh one per test)"
    return f"clearml server: reference, API {server.api_url}, files {server.files_url}, {config.stash[ORIGIN_KEY]}"


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "clearml_server" in names:
            item.add_marker(pytest.mark.integration)
        elif "local_server" in names:
            item.add_marker(pytest.mark.embedded_only)
    if config.getoption("server") != "reference":
        return
    deselected = [item for item in items if item.get_closest_marker("embedded_only")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("embedded_only")]


@pytest.fixture
def clearml_server(request: pytest.FixtureRequest) -> ServerHandle:
    """THE server of the test: a fresh embedded server (``local_server``), or the reference server of the session
    with ``--server=reference``."""
    reference = request.config.stash.get(REFERENCE_KEY, None)
    if reference is not None:
        return reference
    return ServerHandle.of(request.getfixturevalue("local_server"))


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """``unique_name("proj")`` -> ``"proj-1a2b3c4d"``: the same random suffix for every name in one test."""
    suffix = secrets.token_hex(4)
    return lambda base: f"{base}-{suffix}"


# --- SDK code in subprocesses ---------------------------------------------------------------------------------


def sdk_env(server: ServerHandle | LocalServer, home: Path) -> dict[str, str]:
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
    """Runs Python code using the clearml SDK against ``server`` (a :class:`ServerHandle`, or a LocalServer) in
    subprocesses sharing ``home``.

    ``run*`` return the last stdout line that is JSON (the script's result); a non-zero exit raises
    :class:`SdkError` with the output.
    """

    server: ServerHandle | LocalServer
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
    """An :class:`SdkRunner` bound to ``local_server`` (embedded only) with ``HOME`` at ``tmp_path/home``."""
    return SdkRunner(local_server, tmp_path / "home")


@pytest.fixture
def clearml_sdk(clearml_server: ServerHandle, tmp_path: Path) -> SdkRunner:
    """An :class:`SdkRunner` bound to ``clearml_server`` with ``HOME`` at ``tmp_path/home``."""
    return SdkRunner(clearml_server, tmp_path / "home")


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
