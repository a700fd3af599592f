"""What every endpoint handler shares: the call context, typed field access with the real server's validation
errors, ids and timestamps.

Handlers read request fields only through the typed accessors of :class:`Call`, so a field of the wrong JSON
type (a string page size, a list where a task id belongs, items that are not objects) is the real server's
400/12 validation error, never an exception inside a handler.
"""

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

    def string(self, name: str, *, required: bool = False) -> str | None:
        value = self.required(name) if required else self.field(name)
        if value is not None and not isinstance(value, str):
            raise errors.wrong_type(name, "str", value)
        return value

    def task_id(self) -> str:
        """The ``task`` field: a required string."""
        return str(self.string("task", required=True))

    def integer(self, name: str) -> int | None:
        value = self.field(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise errors.wrong_type(name, "int", value)
        return value

    def page(self) -> tuple[int | None, int | None]:
        """``page`` and ``page_size`` of a ``get_all``; a negative page is 400/12, as the real server says it."""
        number = self.integer("page")
        if number is not None and number < 0:
            raise errors.ApiError(400, 12, "Validation error (page must be >=0): field=page")
        return number, self.integer("page_size")

    def flag(self, name: str) -> bool:
        value = self.field(name, False)
        if value is None:
            return False
        if not isinstance(value, bool | int) or isinstance(value, int) and value not in (0, 1):
            raise errors.wrong_type(name, "bool", value)
        return bool(value)

    def mapping(self, name: str) -> Doc | None:
        value = self.field(name)
        if value is not None and not isinstance(value, dict):
            raise errors.wrong_type(name, "dict", value)
        return value

    def string_list(self, name: str) -> list[str] | None:
        """A list-of-strings field; a bare string is split into characters, as the real server does."""
        value = self.field(name)
        if value is None:
            return None
        if isinstance(value, str | list | tuple) and all(isinstance(v, str | int | float) for v in value):
            return [str(v) for v in value]
        raise errors.wrong_type(name, "list", value)

    def items(self, name: str, *, required: tuple[str, ...] = (), min_length: int = 0) -> list[Doc]:
        """A list of objects, each with the string fields ``required`` (400/12 in the real server's words)."""
        value = self.field(name)
        if value is None:
            if min_length:
                raise errors.validation_error(name)
            return []
        if not isinstance(value, list):
            raise errors.wrong_type(name, "list", value)
        if len(value) < min_length:
            raise errors.list_too_short(name, value)
        for item in value:
            if not isinstance(item, dict):
                raise errors.wrong_type(name, "dict", item)
            for key in required:
                if item.get(key) is None:
                    raise errors.item_field_required(name, key)
            for key, field_value in item.items():
                if key in required and not isinstance(field_value, str):
                    raise errors.wrong_type(f"{name}.{key}", "str", field_value)
        return [dict(item) for item in value]

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.field(name)
        if value is None:
            return default
        if value not in options:
            raise errors.not_a_choice(name, value)
        return str(value)


Handler = Callable[[Call], Doc]


def now() -> str:
    """The current UTC time as the ISO 8601 string the real server returns (microseconds, ``+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def load_task(tx: Tx, task_id: Any) -> Doc:
    """The task ``task_id`` for reading; 400/101 ``ids=(...)`` if there is none."""
    task = tx.get_task(task_id) if isinstance(task_id, str) else None
    if task is None:
        raise errors.invalid_task_id([str(task_id)])
    return task


def load_task_for_write(tx: Tx, call: Call) -> Doc:
    """The task named by the call's ``task`` field, for changing it; 400/101 ``id=..., company=...`` if there is
    none (the real server words the two cases differently)."""
    task_id = call.task_id()
    task = tx.get_task(task_id)
    if task is None:
        raise errors.invalid_task_id_for_write(task_id, call.identity.company)
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
