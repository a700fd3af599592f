"""Validation gates (``checks:`` in the manifests): a version whose error-level checks fail is not created,
finalized, published, nor given an alias. Evaluation is a use case of its own, shared by ``plan``,
``reconcile check``, ``apply`` (which re-checks the bytes it uploads) and the agents' steps.
"""

from __future__ import annotations

from .catalog import COUNT_RULES, MEASURE_RULES, RULES, Condition, parse_condition
from .evaluate import check_versions, evaluate_check, evaluate_checks
from .results import (
    CHECKS_FORMAT_VERSION,
    CheckResult,
    VersionChecks,
    checks_from_json,
    checks_to_json,
    summary,
    ui_rows,
)
from .rules import BYTE_RULES, COMMAND_FORMAT_VERSION, CheckInput, command_input

__all__ = [
    "BYTE_RULES",
    "CHECKS_FORMAT_VERSION",
    "COMMAND_FORMAT_VERSION",
    "COUNT_RULES",
    "MEASURE_RULES",
    "RULES",
    "CheckInput",
    "CheckResult",
    "Condition",
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
