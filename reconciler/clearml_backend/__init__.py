"""The one boundary to a ClearML server: configuration, HTTP, the stored format, reading and writing.

- :mod:`.config`: which server and credentials (environment and clearml.conf, read the SDK's way);
- :mod:`.api`: HTTP calls with one envelope check, errors by code, bounded and cancellable waits, fenced writes;
- :mod:`.codec`: what the tool stores on a version and how it is read back (pure; private to this package);
- :mod:`.reader`: versions, their contents and file lists, stored statistics, checks and cards, file bytes (no
  writes);
- :mod:`.writer`: versions created, uploaded, given statistics and check results, finalized, published in the
  order the real server accepts;
- :mod:`.draft`: what a version being built holds; :mod:`.upload`: its new files zipped into chunks and stored;
- :mod:`.agenttask`: a version's task made ready for an agent (``apply --queue``), and its progress there;
- :mod:`.lock`: the apply lock (a lease with fencing);
- :mod:`.storage`: the file server, or other storage through the clearml SDK (its only use in the product).

Observation, planning and reports take a :class:`ServerReader`; only apply (on this machine, or through dispatch and
agent-step on agents) writes, through a :class:`ServerWriter`. Both speak the project's types
(:mod:`reconciler.model`): no task dict, artifact list or file-list document leaves this package.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api import ApiClient, ApiError, BackendError, Cancel, Interrupted, WaitPolicy
from .config import ServerConfig, load_server_config
from .lock import LeaseLost, Lock, LockLease, all_locks, break_locks
from .reader import ServerReader
from .rehome import Rehomed
from .storage import Stores
from .upload import UploadOptions
from .writer import ServerWriter


@dataclass(frozen=True, slots=True)
class Backend:
    api: ApiClient
    reader: ServerReader
    writer: ServerWriter

    @classmethod
    def connect(cls, cfg: ServerConfig, *, policy: WaitPolicy | None = None, cancel: Cancel | None = None
                ) -> Backend:
        """Log in (a refused key or an unreachable server is one line) and build the reader and writer."""
        api = ApiClient(cfg, policy=policy or WaitPolicy(), cancel=cancel)
        api.login()
        stores = Stores(api)
        reader = ServerReader(api, stores)
        return cls(api, reader, ServerWriter(api, reader, stores))


__all__ = [
    "ApiClient", "ApiError", "Backend", "BackendError", "Cancel", "Interrupted", "LeaseLost", "Lock", "LockLease",
    "all_locks", "break_locks",
    "Rehomed", "ServerConfig", "ServerReader", "ServerWriter", "UploadOptions", "WaitPolicy", "load_server_config",
]
