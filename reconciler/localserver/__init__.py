"""The embedded ClearML-compatible API server and file server (see :class:`LocalServer`)."""

from .gate import BodyLimits
from .hooks import FaultInjector, ServerStats
from .server import LocalServer
from .store import CorruptDatabase, DataDirError

__all__ = ["BodyLimits", "CorruptDatabase", "DataDirError", "FaultInjector", "LocalServer", "ServerStats"]
