"""The built-in rules by name, what each measures, and the dbt-style conditions over a measure. Pure.

A condition is an operator and a number, with an optional unit: ``">5"``, ``"<100"``, ``">=10MiB"``, ``"!=0"``,
``">2.5%"``. Units scale the number (``KB`` 1000, ``KiB`` 1024, up to ``TB``/``TiB``; ``B`` and ``%`` are 1).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

# rule -> what its measure is. Rules whose measure is a count of offending files (or classes) default to
# error_if/warn_if "!=0"; the others need a condition.
COUNT_RULES: Mapping[str, str] = MappingProxyType({
    "empty_files": "files of 0 bytes",
    "extensions": "files whose extension is not allowed",
    "class_samples": "classes with fewer than min or more than max samples",
    "images": "images that do not decode or are out of bounds",
    "duplicates": "files whose content another file of the version has",
    "leakage": "files whose content is in another split or dataset",
    "annotations": "annotation files that do not parse or do not validate",
    "command": "files the command names as offending (1 when it names none)",
})
MEASURE_RULES: Mapping[str, str] = MappingProxyType({
    "files": "number of files (and links) in the version",
    "bytes": "total size of the version in bytes",
    "largest_file": "size of the largest file in bytes",
    "class_imbalance": "largest class over smallest class (samples), per split, the worst split",
    "change": "percentage of the parent's files removed or modified (see 'of')",
})
RULES: tuple[str, ...] = tuple(sorted({*COUNT_RULES, *MEASURE_RULES}))
DEFAULT_CONDITION = "!=0"

_OPS: Mapping[str, Callable[[float, float], bool]] = MappingProxyType({
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt,
    "<": operator.lt, "=": operator.eq})
_UNITS: Mapping[str, int] = MappingProxyType({
    "": 1, "B": 1, "%": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
_CONDITION = re.compile(r"\s*(>=|<=|==|!=|>|<|=)\s*(-?\d+(?:\.\d+)?)\s*([KMGT]i?B|B|%)?\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Condition:
    text: str
    op: str
    value: float

    def holds(self, measure: float) -> bool:
        return _OPS[self.op](measure, self.value)


def parse_condition(text: str) -> Condition:
    """The condition ``text`` says; ValueError (with what is expected) when it is not one."""
    found = _CONDITION.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a condition: expected an operator (>, >=, <, <=, ==, !=) and a number, "
                         "optionally with a unit (B, KB, MB, GB, KiB, MiB, GiB, %), e.g. '>5' or '>=10MiB'")
    op, number, unit = found.groups()
    return Condition(text.strip(), op, float(number) * _UNITS[(unit or "").upper()])


COMMON_OPTIONS = frozenset({"name", "rule", "description", "severity", "error_if", "warn_if", "enabled"})
RULE_OPTIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "files": frozenset(), "bytes": frozenset(), "largest_file": frozenset(),
    "empty_files": frozenset({"glob"}),
    "extensions": frozenset({"allowed", "glob"}),
    "class_samples": frozenset({"min", "max", "glob"}),
    "class_imbalance": frozenset({"glob"}),
    "images": frozenset({"glob", "min_width", "max_width", "min_height", "max_height", "modes"}),
    "duplicates": frozenset({"glob", "include_empty"}),
    "leakage": frozenset({"splits", "datasets", "include_empty"}),
    "annotations": frozenset({"glob", "format", "schema", "schema_file", "columns"}),
    "change": frozenset({"of"}),
    "command": frozenset({"run", "timeout"}),
})
# rule -> groups of options of which at least one must be given
RULE_NEEDS: Mapping[str, tuple[tuple[str, ...], ...]] = MappingProxyType({
    "extensions": (("allowed",),),
    "class_samples": (("min", "max"),),
    "annotations": (("glob",), ("schema", "schema_file", "columns")),
    "command": (("run",),),
})
