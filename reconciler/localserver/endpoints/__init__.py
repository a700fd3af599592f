"""Endpoint handlers by name (``service.action``); each takes a :class:`Call` and returns the ``data``
dict."""

from __future__ import annotations

from . import events, misc, projects, queues, tasks, workers
from .common import Call, Handler

PUBLIC_ENDPOINTS = frozenset({"debug.ping", "login.supported_modes", "server.info"})


def all_endpoints() -> dict[str, Handler]:
    """A fresh name -> handler map of every implemented endpoint."""
    return {**projects.ENDPOINTS, **tasks.ENDPOINTS, **events.ENDPOINTS, **misc.ENDPOINTS, **queues.ENDPOINTS,
            **workers.ENDPOINTS}


__all__ = ["Call", "Handler", "PUBLIC_ENDPOINTS", "all_endpoints"]
