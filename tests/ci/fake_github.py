"""A tiny stand-in for GitHub's REST API on loopback: issue comments only, every request recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ghs_fake-token-for-tests-0123456789"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitHub:
    """Comments by id; ``issue_of[id]`` is the issue/PR number. ``refuse_writes`` answers 403 to POST and PATCH."""

    url: str = ""
    repository: str = "acme/datasets"
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    issue_of: dict[int, int] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    refuse_writes: bool = False
    next_id: int = 1000

    def add_comment(self, number: int, body: str, login: str = "someone") -> int:
        self.next_id += 1
        self.comments[self.next_id] = {"id": self.next_id, "body": body, "user": {"login": login, "type": "User"}}
        self.issue_of[self.next_id] = number
        return self.next_id

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        return [c for cid, c in sorted(self.comments.items()) if self.issue_of[cid] == number]

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PATCH")]


def _handler(gh: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    prefix = f"/repos/{gh.repository}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            gh.requests.append(Request(self.command, parts.path, parse_qs(parts.query),
                                       {k.lower(): v for k, v in self.headers.items()}, body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._reply(401, {"message": "Bad credentials"})
            if self.command in ("POST", "PATCH") and gh.refuse_writes:
                return self._reply(403, {"message": "Resource not accessible by integration"})
            segments = parts.path[len(prefix):].strip("/").split("/") if parts.path.startswith(prefix) else []
            match self.command, segments:
                case "GET", ["issues", number, "comments"]:
                    query = parse_qs(parts.query)
                    per_page = min(int(query.get("per_page", ["30"])[0]), 100)
                    page = int(query.get("page", ["1"])[0])
                    items = gh.comments_on(int(number))
                    return self._reply(200, items[(page - 1) * per_page: page * per_page])
                case "POST", ["issues", number, "comments"]:
                    cid = gh.add_comment(int(number), body["body"], login="github-actions[bot]")
                    return self._reply(201, gh.comments[cid])
                case "PATCH", ["issues", "comments", cid] if int(cid) in gh.comments:
                    gh.comments[int(cid)]["body"] = body["body"]
                    return self._reply(200, gh.comments[int(cid)])
            return self._reply(404, {"message": "Not Found"})

        do_GET = do_POST = do_PATCH = _handle

    return Handler


@contextmanager
def fake_github() -> Iterator[FakeGitHub]:
    gh = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gh))
    gh.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gh
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
