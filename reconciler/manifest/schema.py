"""The manifest JSON Schema (shipped in ``reconciler/schemas/``) and its errors as located diagnostics.

The schema is the single source of truth for the shape of a document. jsonschema's messages are rewritten into
short ones that name the field (``versions[1].sources[0].dest: ...``); a subschema may carry
``x-messages: {keyword: text}`` whose text (with ``{value}`` standing for the offending value) replaces the
generic message for that keyword.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import Diagnostic
from .yamldoc import Document, JsonPath

if TYPE_CHECKING:  # jsonschema costs a tenth of a second to import: loaded only when a document is validated
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_RESOURCE = "schemas/manifest.v1.schema.json"
_JSON_TYPES = {
    "string": "a string",
    "boolean": "a boolean (true or false)",
    "object": "a map",
    "array": "a list",
    "integer": "an integer",
    "number": "a number",
    "null": "null",
}


@lru_cache(maxsize=4)
def schema_text(resource: str = SCHEMA_RESOURCE) -> str:
    """A schema file as shipped inside the ``reconciler`` package (the manifest's by default)."""
    return (Path(__file__).resolve().parents[1] / resource).read_text(encoding="utf-8")


def manifest_schema() -> dict[str, Any]:
    """A fresh copy of the manifest JSON Schema (draft 2020-12)."""
    schema: dict[str, Any] = json.loads(schema_text())
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(manifest_schema())


def format_path(path: Iterable[str | int]) -> str:
    """``("versions", 1, "dest")`` -> ``versions[1].dest``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def at(path: JsonPath, message: str) -> str:
    """``message`` prefixed with the field it is about (nothing for the document itself)."""
    where = format_path(path)
    return f"{where}: {message}" if where else message


def show(value: Any) -> str:
    """A value as a message quotes it: strings and numbers verbatim (Python repr), containers by kind."""
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def schema_diagnostics(doc: Document, validator: Draft202012Validator | None = None) -> list[Diagnostic]:
    """Every schema violation in ``doc`` (against the manifest schema, or ``validator``'s), one diagnostic per
    problem, at the offending key or value."""
    errors = list((validator or _validator()).iter_errors(doc.data))
    one_of_paths = {tuple(e.absolute_path) for e in errors if e.validator == "oneOf" and _custom(e)}
    diags: list[Diagnostic] = []
    for err in errors:
        path = tuple(err.absolute_path)
        if "propertyNames" in err.relative_schema_path and path in one_of_paths:
            continue  # two kinds in one source: said once by the oneOf message
        diags.extend(_translate(doc, err))
    return diags


def _custom(err: ValidationError) -> str | None:
    messages = err.schema.get("x-messages", {}) if isinstance(err.schema, dict) else {}
    text = messages.get(str(err.validator))
    return text.replace("{value}", show(err.instance)) if isinstance(text, str) else None


def _translate(doc: Document, err: ValidationError) -> Iterator[Diagnostic]:
    path: JsonPath = tuple(err.absolute_path)
    if "propertyNames" in err.relative_schema_path:
        key = str(err.instance)
        yield Diagnostic(
            at(path, _custom(err) or f"key {key!r} is not allowed"), doc.span((*path, key), key=True)
        )
        return
    custom = _custom(err)
    if custom is not None:
        yield Diagnostic(at(path, custom), doc.span(path))
    elif err.validator == "additionalProperties":
        yield from _unknown_keys(doc, err, path)
    elif err.validator == "uniqueItems":
        yield from _duplicates(doc, err, path)
    elif err.context:
        from jsonschema.exceptions import best_match

        yield from _translate(doc, best_match(err.context))
    else:
        yield Diagnostic(at(path, _message(err)), doc.span(path))


def _unknown_keys(doc: Document, err: ValidationError, path: JsonPath) -> Iterator[Diagnostic]:
    known = sorted(err.schema.get("properties", {}))
    for key in err.instance:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(known)})"
        yield Diagnostic(at(path, f"unknown key {key!r}{hint}"), doc.span((*path, key), key=True))


def _duplicates(doc: Document, err: ValidationError, path: JsonPath) -> Iterator[Diagnostic]:
    seen: list[Any] = []
    for i, item in enumerate(err.instance):
        if item in seen:
            yield Diagnostic(at((*path, i), f"{show(item)} is listed twice"), doc.span((*path, i)))
        seen.append(item)


def _message(err: ValidationError) -> str:
    v, inst, arg = err.validator, err.instance, err.validator_value
    if v == "required":
        missing = [k for k in arg if k not in inst]
        return f"missing required key {missing[0]!r}" if missing else err.message
    if v == "type":
        wanted = " or ".join(_JSON_TYPES.get(t, t) for t in ([arg] if isinstance(arg, str) else arg))
        return f"expected {wanted}, got {show(inst)}"
    if v == "const":
        return f"expected {arg!r}, got {show(inst)}"
    if v == "enum":
        return f"{show(inst)} is not one of {', '.join(repr(a) for a in arg)}"
    if v == "minItems":
        return "must not be empty" if arg == 1 else f"needs at least {arg} items"
    if v == "minLength":
        return "must not be empty" if arg == 1 else f"{show(inst)} is shorter than {arg} characters"
    return str(err.message)
