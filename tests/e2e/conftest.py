from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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
