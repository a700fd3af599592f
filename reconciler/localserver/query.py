"""Pure, MongoDB-like query helpers over JSON documents (tasks, projects).

Nothing here does IO. The semantics follow what the clearml SDK relies on:

* ``project(doc, only_fields)``: an inclusion projection on dotted paths; ``id`` only when asked for (as the real
  server: ``only_fields: ["status"]`` gives ``{"status": ...}``). A path whose
  parent exists but whose leaf does not yields the parent as an empty dict (``runtime.version`` on
  ``runtime: {}`` gives ``runtime: {}``); a missing top-level key is omitted. Lists of dicts are projected
  element-wise. If every field starts with ``-`` it is an exclusion projection instead.
* ``tags_match(terms, tags)``: ``__$all``/``__$and`` switch the following terms to AND, ``__$any``/``__$or``
  back to OR (the default); ``__$not`` negates the next term; ``-tag`` excludes. Within one operator group the
  included terms combine with the group's operator and excluded terms must all be absent; groups are ANDed.
* ``fields_match(any_or_all, spec, doc)``: the ``_any_``/``_all_`` filter ``{"fields": [...], "pattern": ...}``:
  a case-insensitive regex search in each dotted field (a list field matches when one of its strings does),
  combined with OR or AND. A spec without a pattern filters nothing here (the real server's datetime form is
  not served).
* ``sort_docs(docs, order_by)``: stable multi-key sort; ``-field`` descends; missing values sort first.
* ``page(docs, page, page_size)``: zero-based pages; no ``page_size`` means everything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Doc = dict[str, Any]

_MISSING = object()
_OPERATORS = {"__$all": "all", "__$and": "all", "__$any": "any", "__$or": "any"}


def get_path(doc: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted ``path`` of nested dicts, or ``default`` when any step is missing."""
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def _include(src: Any, parts: list[str], dst: Doc) -> None:
    key, rest = parts[0], parts[1:]
    if not isinstance(src, dict) or key not in src:
        return
    value = src[key]
    if not rest:
        dst[key] = value
    elif isinstance(value, dict):
        _include(value, rest, dst.setdefault(key, {}))
    elif isinstance(value, list):
        current = dst.get(key)
        items = current if isinstance(current, list) else [{} if isinstance(v, dict) else v for v in value]
        for item_src, item_dst in zip(value, items, strict=True):
            if isinstance(item_src, dict):
                _include(item_src, rest, item_dst)
        dst[key] = items
    else:
        dst[key] = value


def _exclude(doc: Doc, parts: list[str]) -> None:
    key, rest = parts[0], parts[1:]
    if key not in doc:
        return
    if not rest:
        del doc[key]
    elif isinstance(doc[key], dict):
        _exclude(doc[key], rest)


def _deep_copy(value: Doc) -> Doc:
    """A copy of ``value`` sharing no dict or list with it."""
    return dict(_copy(value))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def project(doc: Doc, only_fields: Sequence[str] | None) -> Doc:
    """A new document holding only ``only_fields`` of ``doc`` (see module docstring); ``doc`` is untouched."""
    if not only_fields:
        return _deep_copy(doc)
    fields = [f for f in only_fields if isinstance(f, str) and f]
    if fields and all(f.startswith("-") for f in fields):
        excluded = _deep_copy(doc)
        for field in fields:
            if field[1:] != "id":
                _exclude(excluded, field[1:].split("."))
        return excluded
    included: Doc = {}
    for field in fields:
        _include(doc, field.lstrip("-").split("."), included)
    return _deep_copy(included)


def _parse_tag_terms(terms: Iterable[str]) -> dict[str, tuple[list[str], list[str]]]:
    """Groups ``terms`` by operator: ``{"any"|"all": (included, excluded)}``."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    operator, negate_next = "any", False
    for term in terms:
        if term in _OPERATORS:
            operator = _OPERATORS[term]
            continue
        if term == "__$not":
            negate_next = True
            continue
        negated = negate_next or (term.startswith("-") and len(term) > 1)
        tag = term[1:] if term.startswith("-") and len(term) > 1 and not negate_next else term
        negate_next = False
        included, excluded = groups.setdefault(operator, ([], []))
        (excluded if negated else included).append(tag)
    return groups


def tags_match(terms: Sequence[str] | str | None, tags: Sequence[str] | None) -> bool:
    """Whether a document with ``tags`` passes the tag filter ``terms`` (see module docstring)."""
    if not terms:
        return True
    if isinstance(terms, str):
        terms = [terms]
    present = set(tags or ())
    for operator, (included, excluded) in _parse_tag_terms(terms).items():
        if any(tag in present for tag in excluded):
            return False
        if included:
            hits = [tag in present for tag in included]
            if not (all(hits) if operator == "all" else any(hits)):
                return False
    return True


def check_regex(pattern: str | None) -> None:
    """Compile ``pattern`` up front, as the real server does: a malformed one is refused even when nothing
    would be compared with it (an empty server). ``re.error`` propagates to the caller."""
    if pattern is not None:
        re.compile(pattern)


def regex_match(pattern: str | None, value: Any) -> bool:
    """Case-sensitive regex *search* of ``pattern`` in ``value``; ``re.error`` propagates to the caller."""
    if pattern is None:
        return True
    return isinstance(value, str) and bool(re.search(pattern, value))


MULTI_FIELD = {"_any_": any, "_or_": any, "_all_": all, "_and_": all}


def _field_matches(regex: re.Pattern[str], value: Any) -> bool:
    if isinstance(value, list):
        return any(isinstance(v, str) and regex.search(v) for v in value)
    return isinstance(value, str) and bool(regex.search(value))


def fields_match(combine: Callable[[Iterable[bool]], bool], spec: Any, doc: Doc) -> bool:
    """Whether ``doc`` passes one ``_any_``/``_all_`` filter (see module docstring); ``re.error`` propagates."""
    if not isinstance(spec, dict) or spec.get("pattern") is None or not spec.get("fields"):
        return True
    regex = re.compile(str(spec["pattern"]), re.IGNORECASE)
    return combine(_field_matches(regex, get_path(doc, str(f))) for f in spec["fields"])


def value_in(allowed: Any, value: Any) -> bool:
    """Equality filter: ``allowed`` is one value or a list of accepted values (empty list: no filter)."""
    if allowed is None:
        return True
    if isinstance(allowed, list):
        return not allowed or value in allowed
    return bool(value == allowed)


class _SortKey:
    """Orders values the way MongoDB does for the types we store: missing/None first, numbers, strings,
    rest."""

    __slots__ = ("rank", "value")
    rank: int
    value: Any

    def __init__(self, value: Any) -> None:
        if value is None or value is _MISSING:
            self.rank, self.value = 0, 0
        elif isinstance(value, bool | int | float):
            self.rank, self.value = 1, value
        elif isinstance(value, str):
            self.rank, self.value = 2, value
        else:
            self.rank, self.value = 3, repr(value)

    def __lt__(self, other: _SortKey) -> bool:
        return (self.rank, self.value) < (other.rank, other.value)


def _sort_key(path: str) -> Callable[[Doc], _SortKey]:
    return lambda doc: _SortKey(get_path(doc, path, _MISSING))


def sort_docs(docs: list[Doc], order_by: Sequence[str] | str | None) -> list[Doc]:
    """``docs`` sorted by the ``order_by`` fields, last key applied first so the sort stays stable."""
    if not order_by:
        return list(docs)
    if isinstance(order_by, str):
        order_by = [order_by]
    result = list(docs)
    for field in reversed([f for f in order_by if f]):
        descending = field.startswith("-")
        path = field.lstrip("-+")
        result.sort(key=_sort_key(path), reverse=descending)
    return result


def page(docs: list[Doc], page_number: int | None, page_size: int | None) -> list[Doc]:
    """The zero-based page ``page_number`` of ``page_size`` documents."""
    if not page_size or page_size <= 0:
        return docs
    start = max(int(page_number or 0), 0) * int(page_size)
    return docs[start : start + int(page_size)]
