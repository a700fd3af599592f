"""The apply lock: a lease stored on the server, renewed while a run holds it, checked before every write.

The lock is the hidden project ``.reconciler-lock``; creating a project is atomic on the server (a second
create answers 400/801), so exactly one run holds it. Its description records the holder, a random token and
when the lease was renewed and expires. A crashed run's lease expires after ``ttl`` seconds; a live run renews it
every ``ttl / 3``.

Fencing: the API client calls :meth:`LockLease.fence` before every write. When the lease has not been
confirmed on the server for ``ttl / 3`` (the process was stopped, the machine slept, renewals failed), the fence
re-reads the lock synchronously; if another run holds it now, the write is refused with :class:`LeaseLost`.
Time is measured with the boot-time clock, which keeps counting while the machine sleeps.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..diagnostics import ReconcileError
from .api import ALREADY_EXISTS, AmbiguousWrite, ApiClient, ApiError, BackendError

LOCK_PROJECT = ".reconciler-lock"


def _clock() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return time.monotonic()


class LockHeld(ReconcileError):
    """Another run holds the lock."""


class LeaseLost(ReconcileError):
    """This run's lease expired and another run took the lock: it must not write any more."""


@dataclass(frozen=True, slots=True)
class LockInfo:
    id: str
    owner: str
    token: str
    renewed: float  # epoch seconds
    expires: float

    def describe(self, now: float) -> str:
        def at(t: float) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

        state = f"expires {at(self.expires)}" if self.expires > now else f"expired {at(self.expires)}"
        return f"held by {self.owner}, last renewed {at(self.renewed)}, {state}"


class Lock:
    """Raw lock operations on one server."""

    def __init__(self, api: ApiClient):
        self.api = api

    def info(self, *, cleanup: bool = False) -> LockInfo | None:
        rows = self.api.call("projects.get_all", name=f"^{LOCK_PROJECT}$", search_hidden=True, cleanup=cleanup,
                             only_fields=["id", "name", "description"]).get("projects") or []
        rows = [r for r in rows if r.get("name") == LOCK_PROJECT]
        if not rows:
            return None
        try:
            data = json.loads(rows[0].get("description") or "{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        expires = float(data.get("expires") or 0)
        return LockInfo(str(rows[0]["id"]), str(data.get("owner") or "unknown"), str(data.get("token") or ""),
                        float(data.get("renewed") or expires), expires)

    @staticmethod
    def _description(owner: str, token: str, ttl: float) -> str:
        now = time.time()
        return json.dumps({"owner": owner, "token": token, "renewed": now, "expires": now + ttl})

    def try_acquire(self, owner: str, ttl: float) -> LockInfo:
        """Take the lock, breaking it only when its lease has expired; :class:`LockHeld` when held."""
        for _ in range(5):
            token = secrets.token_hex(12)
            try:
                data = self.api.call("projects.create", create=True, name=LOCK_PROJECT, system_tags=["hidden"],
                                     description=self._description(owner, token, ttl))
                now = time.time()
                return LockInfo(str(data["id"]), owner, token, now, now + ttl)
            except ApiError as err:
                if not err.is_(ALREADY_EXISTS):
                    raise
            except AmbiguousWrite:
                pass
            held = self.info()
            if held is None:
                continue
            if held.token == token:  # our create went through although its answer was lost
                return held
            if held.expires > time.time():
                raise LockHeld(
                    f"another apply holds the lock on {self.api.cfg.api_host}: {held.describe(time.time())}; "
                    "wait for it (--lock-timeout SECONDS), or run 'reconcile unlock' if it crashed"
                )
            with contextlib.suppress(ApiError):  # expired: break it (someone else may break it first)
                self.api.call("projects.delete", project=held.id, force=True)
        raise ReconcileError("could not take the apply lock: it changed hands repeatedly; try again")

    def renew(self, held: LockInfo, ttl: float) -> LockInfo:
        current = self.info()
        if current is None or current.token != held.token:
            holder = f" ({current.describe(time.time())})" if current else ""
            raise LeaseLost(f"this run lost the apply lock: its lease expired and another run took it{holder}; "
                            "nothing more was written; run apply again")
        self.api.call("projects.update", project=held.id, description=self._description(held.owner, held.token, ttl))
        now = time.time()
        return LockInfo(held.id, held.owner, held.token, now, now + ttl)

    def release(self, held: LockInfo) -> None:
        """Give the lock back if this run still holds it (works after a cancel, within seconds)."""
        current = self.info(cleanup=True)
        if current is not None and current.token == held.token:
            self.api.call("projects.delete", project=held.id, force=True, cleanup=True)

    def break_lock(self) -> LockInfo | None:
        current = self.info()
        if current is not None:
            self.api.call("projects.delete", project=current.id, force=True)
        return current


class LockLease:
    """Holds the lock while the ``with`` block runs; renews it from a thread; fences every write of ``api``.

    ``wait`` seconds are spent retrying while another run holds the lock (0: fail at once); ``notice`` gets
    one line when waiting starts and a progress line every 30 seconds.
    """

    def __init__(self, api: ApiClient, owner: str, *, ttl: float = 120.0, wait: float = 0.0,
                 notice: Callable[[str], None] = lambda _m: None):
        self.api, self.owner, self.ttl, self.wait, self.notice = api, owner, ttl, wait, notice
        self.lock = Lock(api)
        self.held: LockInfo | None = None
        self._confirmed = 0.0
        self._lost: LeaseLost | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockLease:
        start = time.monotonic()
        announced = 0.0
        while True:
            try:
                self.held = self.lock.try_acquire(self.owner, self.ttl)
                break
            except LockHeld as err:
                waited = time.monotonic() - start
                if waited >= self.wait:
                    raise
                if not announced:
                    self.notice(f"waiting up to {self.wait:.0f}s for the apply lock ({err})")
                    announced = waited or 1e-9
                elif waited - announced >= 30:
                    self.notice(f"still waiting for the apply lock ({waited:.0f}s)")
                    announced = waited
                self.api.cancel.sleep(min(2.0, self.wait - waited))
        self._confirmed = _clock()
        self.api.fence = self.fence
        self._thread = threading.Thread(target=self._renew_loop, name="lock-lease", daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        with self._mutex:
            if self._lost is not None:
                raise self._lost
            assert self.held is not None
            try:
                self.held = self.lock.renew(self.held, self.ttl)
            except LeaseLost as err:
                self._lost = err
                raise
            self._confirmed = _clock()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._renew()
            except LeaseLost:
                return
            except ReconcileError:
                continue  # a missed renewal is retried; writes re-check through the fence

    def fence(self) -> None:
        """Refuse to write unless this run still holds the lease (re-checked on the server when stale)."""
        if self._lost is not None:
            raise self._lost
        if _clock() - self._confirmed > self.ttl / 3:
            try:
                self._renew()
            except LeaseLost:
                raise
            except BackendError as err:
                raise LeaseLost(f"cannot confirm this run's apply lock ({err}); stopping before writing") from None

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.api.fence == self.fence:
            self.api.fence = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.held is not None and self._lost is None:
            try:
                self.lock.release(self.held)
            except ReconcileError as err:
                self.notice(f"warning: could not release the apply lock ({err}); it expires on its own")
