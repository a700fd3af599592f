"""File-tree and raw-HTTP helpers shared by the server tests, and ``SdkRunner`` of ``tests/conftest.py``.

Test modules take ``SdkRunner`` from here, not with ``from conftest import``: pytest imports every
``conftest.py`` outside a package under the one module name ``conftest``, so which file that name means
depends on what was collected last (``tests/server/conftest.py``, ``tests/sources/conftest.py``...).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from reconciler.localserver import LocalServer


def _tests_conftest() -> ModuleType:
    """``tests/conftest.py`` as a module of its own name (pytest's copy is registered as a plugin only)."""
    name = "reconcile_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


SdkRunner = _tests_conftest().SdkRunner


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def read_tree(root: str | Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by its POSIX relative path."""
    base = Path(root)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def login(server: LocalServer, key: str | None = None, secret: str | None = None) -> requests.Response:
    basic = base64.b64encode(f"{key or server.access_key}:{secret or server.secret_key}".encode()).decode()
    return requests.get(
        f"{server.api_url}/auth.login", headers={"Authorization": f"Basic {basic}"}, timeout=30
    )


def token(server: LocalServer) -> str:
    return str(login(server).json()["data"]["token"])


def call(
    server: LocalServer,
    endpoint: str,
    body: Any = None,
    *,
    tok: str | None = None,
    raw: bytes | None = None,
    version: str = "2.23",
) -> requests.Response:
    """POSTs ``body`` (JSON) or ``raw`` bytes to ``/v<version>/<endpoint>`` with the bearer token ``tok``."""
    headers = {"Content-Type": "application/json"}
    if tok:
        headers["Authorization"] = f"Bearer {tok}"
    data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    return requests.post(f"{server.api_url}/v{version}/{endpoint}", data=data, headers=headers, timeout=30)
