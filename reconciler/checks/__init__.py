"""Validation gates (``checks:`` in the manifests): a version whose error-level checks fail is not created,
finalized, published, nor given an alias. Evaluation is a use case of its own, shared by ``plan``,
``reconcile check``, ``apply`` (which re-checks the bytes it uploads) and the agents' steps.

Modules: :mod:`.catalog` (rules and conditions, pure and cheap: the manifest loader reads it), :mod:`.rules`
(what each rule measures), :mod:`.evaluate` (conditions and severities), :mod:`.results` (the stored form). The
names below are loaded on first use, so that reading manifests does not pay for the rules' imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "catalog": ("COUNT_RULES", "MEASURE_RULES", "RULES", "Condition", "parse_condition"),
    "evaluate": ("check_versions", "evaluate_check", "evaluate_checks"),
    "results": ("CHECKS_FORMAT_VERSION", "CheckResult", "VersionChecks", "checks_from_json", "checks_to_json",
                "summary", "ui_rows"),
    "rules": ("BYTE_RULES", "COMMAND_FORMAT_VERSION", "CheckInput", "command_input"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = [  # the names _WHERE lists, loaded by __getattr__
    "BYTE_RULES",
    "CHECKS_FORMAT_VERSION",
    "COMMAND_FORMAT_VERSION",
    "COUNT_RULES",
    "CheckInput",
    "CheckResult",
    "Condition",
    "MEASURE_RULES",
    "RULES",
    "VersionChecks",
    "check_versions",
    "checks_from_json",
    "checks_to_json",
    "command_input",
    "evaluate_check",
    "evaluate_checks",
    "parse_condition",
    "summary",
    "ui_rows",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
