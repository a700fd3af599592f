"""What every endpoint handler shares: the call context, field access with the real server's validation
errors, ids and timestamps."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .. import errors
from ..auth import Identity
from ..store import Store, Tx

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    """One API call: ``data`` is the JSON body (a dict, or a list for json-lines endpoints)."""

    endpoint: str
    data: Any
    store: Store
    identity: Identity

    def field(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default) if isinstance(self.data, dict) else default

    def required(self, name: str) -> Any:
        """The field ``name``; a missing or null field is the real server's 400/12 validation error."""
        value = self.field(name)
        if value is None:
            raise errors.validation_error(name)
        return value

    def string_list(self, name: str) -> list[str] | None:
        """A list-of-strings field; a bare string is split into characters, as the real server does."""
        value = self.field(name)
        if value is None:
            return None
        if isinstance(value, str | list | tuple):
            return [str(v) for v in value]
        raise errors.validation_error(name, "expected a list")

    def flag(self, name: str) -> bool:
        return bool(self.field(name, False))


Handler = Callable[[Call], Doc]


def now() -> str:
    """The current UTC time as the ISO 8601 string the real server returns (microseconds, ``+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def load_task(tx: Tx, task_id: Any) -> Doc:
    """The task ``task_id``; 400/101 if there is none."""
    task = tx.get_task(task_id) if isinstance(task_id, str) else None
    if task is None:
        raise errors.invalid_task_id([str(task_id)])
    return task


def touch(doc: Doc, call: Call, *, update: bool = True) -> Doc:
    """Stamps ``last_change``/``last_changed_by`` (and ``last_update`` if ``update``); returns the stamped
    fields."""
    stamp = now()
    fields: Doc = {"last_change": stamp, "last_changed_by": call.identity.user}
    if update:
        fields["last_update"] = stamp
    doc.update(fields)
    return fields
