from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .agents import AgentProcess, start_agent
from .helpers import Env
from .proxy import Proxies

if TYPE_CHECKING:
    from conftest import ServerHandle


@pytest.fixture
def env(clearml_server: ServerHandle, unique_name: Callable[[str], str], tmp_path: Path) -> Env:
    """The test's server, its own HOME and working folder, and its own project name."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    return Env(clearml_server, home, work, unique_name("proj"))


@pytest.fixture
def proxies(env: Env):
    """Fault-injecting proxies in front of the test's server (see :mod:`.proxy`), stopped afterwards."""
    p = Proxies(env.server.api_url, env.server.files_url, env.vars(), str(env.work))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def agents(env: Env, unique_name: Callable[[str], str], tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """``agents(queue)`` starts a real clearml-agent daemon on ``queue`` of the test's server (see agents.py);
    every one started is stopped after the test."""
    started: list[AgentProcess] = []

    def start(queue: str, *, api_host: str | None = None) -> AgentProcess:
        """``api_host``: where the agent sends its API calls (e.g. a proxy in front of the server)."""
        worker = unique_name(f"agent{len(started)}")
        server_env = {**env.server.client_env(), **({"CLEARML_API_HOST": api_host} if api_host else {})}
        agent = start_agent(server_env, queue, worker, tmp_path / worker)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


OLDEST = "1.16.5"  # the last release of the oldest minor setup.cfg accepts (clearml>=1.16,<3)


def _venvs() -> Path:
    given = os.environ.get("RECONCILE_TEST_VENVS")
    return Path(given).expanduser() if given else Path.home() / ".cache" / "clearml-reconciler-tests"


@pytest.fixture(scope="session")
def oldest_sdk_python() -> Path:
    """The python of a virtualenv with clearml ``OLDEST`` and boto3 (S3 read-backs), created under a file lock:
    xdist workers share it."""
    venv = _venvs() / f"clearml-{OLDEST}"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".clearml-{OLDEST}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
            pip = subprocess.run([str(python), "-m", "pip", "install", "-q", f"clearml=={OLDEST}", "boto3"],
                                 capture_output=True, text=True, timeout=900)
            assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-3000:]
            ready.touch()
        if subprocess.run([str(python), "-c", "import boto3"], capture_output=True).returncode:  # an older cache
            pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "boto3"], capture_output=True, text=True,
                                 timeout=900)
            assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-3000:]
    got = subprocess.run([str(python), "-c", "import clearml; print(clearml.__version__)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert got == OLDEST
    return python
