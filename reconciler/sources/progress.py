"""A minimal progress reporter for long work, written to stderr.

On a terminal it redraws one line (at most ten times a second); otherwise it prints a plain line every few
seconds. Nothing is printed for work that finishes before ``delay`` seconds, so short runs stay silent.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Counts done items (and bytes) out of a known total. Thread-safe; ``close`` ends the line."""

    def __init__(
        self,
        label: str,
        total: int,
        total_bytes: int | None = None,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        delay: float = 1.0,
        plain_interval: float = 5.0,
    ) -> None:
        self._label = label
        self._total = total
        self._total_bytes = total_bytes
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._interval = 0.1 if self._tty else plain_interval
        self._start = time.monotonic()
        self._next_draw = self._start + delay
        self._done = 0
        self._bytes = 0
        self._drawn = False
        self._lock = threading.Lock()

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self._done += items
            self._bytes += nbytes
            now = time.monotonic()
            if self._enabled and now >= self._next_draw:
                self._next_draw = now + self._interval
                self._draw(now)

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        text = f"{self._label}: {self._done}/{self._total} files"
        if self._total_bytes is not None:
            text += f", {_human_bytes(self._bytes)}/{_human_bytes(self._total_bytes)}"
            text += f" ({_human_bytes(self._bytes / elapsed)}/s)"
        return text

    def _draw(self, now: float) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K" + self._line(now))
        else:
            self._stream.write(self._line(now) + "\n")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        with self._lock:
            if self._enabled and self._drawn:
                now = time.monotonic()
                if self._tty:
                    self._stream.write("\r\x1b[K" + self._line(now) + "\n")
                else:
                    self._stream.write(self._line(now) + " done\n")
                self._stream.flush()
            self._enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
