"""The apply lock: leases stored on the server, one per project, renewed while a run holds them, checked before
every write.

A run locks the projects it works in (the plan's scope), so runs of different repositories on one team server
never wait for each other. The lock of project ``P`` is the hidden project ``.reconciler-lock-<hash of P>``;
creating a project is atomic on the server (a second create answers 400/801), so exactly one run holds it. Its
description records the project, the holder, a random token and when the lease was renewed and expires. A
crashed run's lease expires after ``ttl`` seconds; a live run renews it every ``ttl / 3``. Several locks are
taken in a fixed order, all or none, so two runs never wait for each other in a circle.

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

LOCK_PREFIX = ".reconciler-lock-"


def lock_name(project: str) -> str:
    import hashlib

    return LOCK_PREFIX + hashlib.sha256(project.encode()).hexdigest()[:16]


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
    project: str  # the project it locks
    owner: str
    token: str
    renewed: float  # epoch seconds
    expires: float

    def describe(self, now: float) -> str:
        def at(t: float) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

        state = f"expires {at(self.expires)}" if self.expires > now else f"expired {at(self.expires)}"
        return f"lock of {self.project} held by {self.owner}, last renewed {at(self.renewed)}, {state}"


def _info(row: dict[str, object]) -> LockInfo:
    try:
        data = json.loads(str(row.get("description") or "{}"))
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    expires = float(data.get("expires") or 0)
    return LockInfo(str(row["id"]), str(data.get("project") or "?"), str(data.get("owner") or "unknown"),
                    str(data.get("token") or ""), float(data.get("renewed") or expires), expires)


def all_locks(api: ApiClient) -> list[LockInfo]:
    """Every apply lock on the server (held or expired)."""
    rows = api.call("projects.get_all", name=f"^{LOCK_PREFIX}[0-9a-f]{{16}}$", search_hidden=True,
                    only_fields=["id", "name", "description"]).get("projects") or []
    return sorted((_info(r) for r in rows if str(r.get("name", "")).startswith(LOCK_PREFIX)),
                  key=lambda i: i.project)


class Lock:
    """Raw operations on the lock of one project."""

    def __init__(self, api: ApiClient, project: str):
        self.api, self.project, self.name = api, project, lock_name(project)

    def info(self, *, cleanup: bool = False) -> LockInfo | None:
        rows = self.api.call("projects.get_all", name=f"^{self.name}$", search_hidden=True, cleanup=cleanup,
                             only_fields=["id", "name", "description"]).get("projects") or []
        rows = [r for r in rows if r.get("name") == self.name]
        return _info(rows[0]) if rows else None

    def _description(self, owner: str, token: str, ttl: float) -> str:
        now = time.time()
        return json.dumps({"project": self.project, "owner": owner, "token": token, "renewed": now,
                           "expires": now + ttl})

    def try_acquire(self, owner: str, ttl: float) -> LockInfo:
        """Take the lock, breaking it only when its lease has expired; :class:`LockHeld` when held."""
        for _ in range(5):
            token = secrets.token_hex(12)
            try:
                data = self.api.call("projects.create", create=True, name=self.name, system_tags=["hidden"],
                                     description=self._description(owner, token, ttl))
                now = time.time()
                return LockInfo(str(data["id"]), self.project, owner, token, now, now + ttl)
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
                    f"another apply holds the {held.describe(time.time())} on {self.api.cfg.api_host}; "
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
        return LockInfo(held.id, held.project, held.owner, held.token, now, now + ttl)

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


def break_locks(api: ApiClient, projects: list[str] | None) -> list[LockInfo]:
    """Break the locks of ``projects`` (None: every apply lock on the server); what was broken."""
    if projects is None:
        broken = all_locks(api)
        for held in broken:
            api.call("projects.delete", project=held.id, force=True)
        return broken
    return [found for p in sorted(set(projects)) if (found := Lock(api, p).break_lock()) is not None]


class LockLease:
    """Holds the locks of ``projects`` while the ``with`` block runs; renews them from a thread; fences every write.

    ``wait`` seconds are spent retrying while another run holds one of them (0: fail at once); ``notice`` gets
    one line when waiting starts and a progress line every 30 seconds. Locks are taken in a fixed order, all
    or none: while waiting, none is held.
    """

    def __init__(self, api: ApiClient, owner: str, projects: list[str] | tuple[str, ...], *, ttl: float = 120.0,
                 wait: float = 0.0, notice: Callable[[str], None] = lambda _m: None):
        self.api, self.owner, self.ttl, self.wait, self.notice = api, owner, ttl, wait, notice
        self.locks = [Lock(api, p) for p in sorted(set(projects))]
        self.held: list[LockInfo] = []
        self._confirmed = 0.0
        self._lost: LeaseLost | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _acquire_all(self) -> None:
        held: list[LockInfo] = []
        try:
            for lock in self.locks:
                held.append(lock.try_acquire(self.owner, self.ttl))
        except BaseException:
            for lock, info in zip(self.locks, held, strict=False):
                with contextlib.suppress(ReconcileError):
                    lock.release(info)
            raise
        self.held = held

    def __enter__(self) -> LockLease:
        start = time.monotonic()
        announced = 0.0
        while True:
            try:
                self._acquire_all()
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
            try:
                self.held = [lock.renew(info, self.ttl) for lock, info in zip(self.locks, self.held, strict=True)]
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
        """Refuse to write unless this run still holds its leases (re-checked on the server when stale)."""
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
        if self._lost is None:
            for lock, info in zip(self.locks, self.held, strict=False):
                try:
                    lock.release(info)
                except ReconcileError as err:
                    self.notice(f"warning: could not release the apply lock of {info.project} ({err}); "
                                "it expires on its own")


class LeaseFollower:
    """Fences the writes of a step an agent runs for an apply: they go on only while that apply still holds the
    lock of ``project`` with ``token`` (it renews the lease; the step only checks it).

    The lock is read again before a write when it was last confirmed more than ``every`` seconds ago. When the
    apply ended, was stopped, or lost its lease to another run, the write is refused with :class:`LeaseLost`.
    """

    def __init__(self, api: ApiClient, held: list[tuple[str, str]] | tuple[tuple[str, str], ...], *,
                 every: float = 10.0):
        self.api, self.held, self.every = api, tuple(held), every
        self._confirmed = -every - 1.0
        self._lost: LeaseLost | None = None
        self._mutex = threading.Lock()

    def fence(self) -> None:
        if self._lost is not None:
            raise self._lost
        if _clock() - self._confirmed <= self.every:
            return
        with self._mutex:
            if _clock() - self._confirmed <= self.every:
                return
            for project, token in self.held:
                current = Lock(self.api, project).info()
                if current is None or current.token != token:
                    self._lost = LeaseLost(f"the apply that queued this step no longer holds the lock of {project} "
                                           "(it ended, was stopped, or another run took over); nothing more is "
                                           "written")
                    raise self._lost
            self._confirmed = _clock()

    def __enter__(self) -> LeaseFollower:
        self.fence()
        self.api.fence = self.fence
        return self

    def __exit__(self, *exc: object) -> None:
        if self.api.fence == self.fence:
            self.api.fence = None
