"""A recording, fault-injecting HTTP proxy on loopback, in front of any ClearML API or file server.

Tests point ``CLEARML_API_HOST`` / ``CLEARML_FILES_HOST`` at proxies, so the same fault reaches the embedded and
the reference server. A :class:`Rule` matches requests (endpoint path and a body substring, the n-th match) and
then acts: ``kill`` SIGKILLs a process after the server answered but before the answer is relayed (the write
happened; the client never learns it), ``stop`` SIGSTOPs it there (then relays the answer), ``stall`` holds the
request ``seconds`` before forwarding it, ``hold`` holds it until the test sets ``release`` (``passed`` is set once
the server answered it), ``fail`` answers 500 without forwarding, ``refuse`` answers as the real
server refuses a write to a finalized task (400, 400/110), ``drop`` closes the connection.
"""

from __future__ import annotations

import http.server
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import urllib3


@dataclass
class Rule:
    path: str  # a substring of the request path, e.g. "tasks.create" or "/" (file uploads)
    action: str  # kill | stop | stall | hold | fail | refuse | drop
    body: str = ""  # a substring the request body must contain
    method: str = ""  # "" matches any
    nth: int = 1  # act on the n-th matching request
    times: int = 1  # how many matches to act on from the n-th on (0: forever)
    pid: Callable[[], int | None] = lambda: None  # for kill and stop
    seconds: float = 0.0  # for stall
    release: threading.Event = field(default_factory=threading.Event)  # for hold
    passed: threading.Event = field(default_factory=threading.Event)  # for hold
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str, body: bytes) -> bool:
        if self.method and method != self.method:
            return False
        if self.path not in path or (self.body and self.body.encode() not in body):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times and self.fired >= self.times):
            return False
        self.fired += 1
        return True


@dataclass
class Proxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    closed: bool = False  # after stop(): connections still open are cut, as if the server process died
    _server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> Proxy:
        pool = urllib3.PoolManager(maxsize=16)
        proxy = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                if proxy.closed:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with lock:
                    proxy.log.append((self.command, self.path))
                    rule = next((r for r in proxy.rules if r.matches(self.command, self.path, body)), None)
                if rule is not None and rule.action == "fail":
                    self._reply(500, b'{"meta": {"result_code": 500, "result_subcode": 0, "result_msg": "injected"},'
                                     b' "data": {}}', "application/json")
                    return
                if rule is not None and rule.action == "refuse":
                    self._reply(400, b'{"meta": {"result_code": 400, "result_subcode": 110, "result_msg": '
                                     b'"Invalid task status: expected=created, status=completed"}, "data": {}}',
                                "application/json")
                    return
                if rule is not None and rule.action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if rule is not None and rule.action == "stall":
                    time.sleep(rule.seconds)
                if rule is not None and rule.action == "hold":
                    rule.release.wait(300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                resp = pool.request(self.command, proxy.upstream + self.path, body=body or None, headers=headers,
                                    retries=False, redirect=False, timeout=120, preload_content=True)
                if rule is not None:
                    rule.passed.set()
                if rule is not None and rule.action == "kill":
                    pid = rule.pid()
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if rule is not None and rule.action == "stop":
                    pid = rule.pid()
                    if pid:
                        os.kill(pid, signal.SIGSTOP)
                self._reply(resp.status, resp.data, resp.headers.get("Content-Type", "application/octet-stream"),
                            resp.headers.get("Content-Length") if self.command == "HEAD" else None)

            def _reply(self, status: int, data: bytes, ctype: str, length: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", length if length is not None else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = _handle

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self

    def stop(self) -> None:
        self.closed = True
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def count(self, path: str) -> int:
        return sum(1 for _, p in self.log if path in p)


class Proxies:
    """A proxy in front of the test's API server and one in front of its file server; ``vars()`` points the
    CLI and the SDK at them, ``start(...)`` runs the CLI without waiting (to signal or stop it)."""

    def __init__(self, api_url: str, files_url: str, env: dict[str, str], work: str):
        self.api = Proxy(api_url).start()
        self.files = Proxy(files_url).start()
        self._env, self._work = env, work

    def vars(self) -> dict[str, str]:
        return {**self._env, "CLEARML_API_HOST": self.api.url, "CLEARML_FILES_HOST": self.files.url}

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "reconciler.cli", *args], cwd=self._work, env=self.vars(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        self.api.stop()
        self.files.stop()
