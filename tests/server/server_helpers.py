"""File-tree and raw-HTTP helpers shared by the server tests."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import requests

from reconciler.localserver import LocalServer


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
