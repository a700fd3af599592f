"""The embedded ClearML-compatible API server and file server (see :class:`LocalServer`)."""

from .hooks import FaultInjector, ServerStats
from .server import LocalServer

__all__ = ["FaultInjector", "LocalServer", "ServerStats"]
