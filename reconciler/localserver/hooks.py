"""Test hooks of :class:`~reconciler.localserver.LocalServer`: a request counter and a fault injector.

Both are thread-safe and live as long as the server object; neither changes behaviour unless a test asks.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class ServerStats:
    """Counts requests per endpoint name (``tasks.get_all``, ``auth.login``, ``files.upload`` ...).

    ``requests`` is a :class:`collections.Counter`; read it directly or via :meth:`snapshot`, and call
    :meth:`reset` before the code you want to measure. With ``record_traffic = True`` every API exchange is
    also appended to ``traffic`` as ``{"method", "path", "endpoint", "request", "status", "response"}`` (the
    shape of the recorded real-server traffic), for conformance checks.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.record_traffic = False
        self.traffic: list[dict[str, Any]] = []

    def count(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def record(self, exchange: dict[str, Any]) -> None:
        if self.record_traffic:
            with self._lock:
                self.traffic.append(exchange)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.requests)

    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.traffic.clear()


class FaultInjector:
    """Simulated failures. ``fail_file_uploads_after = N``: the next N uploads succeed, every later one gets
    HTTP 500 until it is set back to ``None`` (the default: no faults)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fail_file_uploads_after: int | None = None

    def upload_allowed(self) -> bool:
        """Consumes one allowed upload; False when uploads are set to fail."""
        with self._lock:
            remaining = self.fail_file_uploads_after
            if remaining is None:
                return True
            if remaining <= 0:
                return False
            self.fail_file_uploads_after = remaining - 1
            return True
