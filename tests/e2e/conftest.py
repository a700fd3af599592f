from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.localserver import LocalServer

from .helpers import Env


@pytest.fixture
def env(tmp_path: Path):
    server = LocalServer(tmp_path / "server", port=0).start()
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    try:
        yield Env(server, home, work)
    finally:
        server.stop()
