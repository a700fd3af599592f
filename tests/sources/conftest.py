"""Fixtures for the sources tests: resolvers on private cache dirs, moto_server and a local HTTP server."""

from __future__ import annotations

import hashlib
import threading
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
