"""Fixtures for the sources tests: resolvers on private cache dirs, moto_server and a local HTTP server."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.diagnostics import SourceSpan
from reconciler.sources import ResolveOptions, SourceResolver

MakeResolver = Callable[..., SourceResolver]


@pytest.fixture
def span() -> SourceSpan:
    return SourceSpan("manifests/example.yaml", 12, 7)


@pytest.fixture
def make_resolver(tmp_path: Path) -> Iterator[MakeResolver]:
    """Resolvers on ``tmp_path/cache`` unless another cache dir is given; all closed at teardown."""
    opened: list[SourceResolver] = []

    def make(cache_dir: Path | None = None, **kwargs: object) -> SourceResolver:
        options = ResolveOptions(cache_dir=cache_dir or tmp_path / "cache", **kwargs)  # type: ignore[arg-type]
        resolver = SourceResolver(options)
        opened.append(resolver)
        return resolver

    yield make
    for r in opened:
        r.close()


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


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path) -> str:
    """Fake credentials and the moto endpoint in the environment; returns the endpoint."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return moto_endpoint


@dataclass
class HttpFiles:
    """A local HTTP server's content: path -> bytes, editable while it runs. ETag = sha1 of the bytes."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    allow_head: bool = True


def _handler(content: HttpFiles) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, body: bool) -> None:
            data = content.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", '"' + hashlib.sha1(data).hexdigest() + '"')
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self) -> None:
            if content.allow_head:
                self._send(body=False)
            else:
                self.send_error(405)

        def do_GET(self) -> None:
            self._send(body=True)

    return Handler


@pytest.fixture
def http_files() -> Iterator[HttpFiles]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    content = HttpFiles(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(content)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield content
    finally:
        server.shutdown()
        server.server_close()
