"""What evaluating checks gives, and its stored form (the ``checks`` artifact of a version). Pure.

The stored JSON shape is a contract (``reconcile show`` and reviewers read it; documented in README.md)::

    {"format_version": 1, "version": "project/name@1.0.0", "content_digest": "...",
     "checks": [{"name", "rule", "severity": "error|warn", "status": "pass|warn|fail", "measure",
                 "threshold", "offending": [first paths], "offending_count", "message", "location"}]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..diagnostics import SourceSpan
from ..model import VersionKey

CHECKS_FORMAT_VERSION = 1
SHOWN_OFFENDING = 20  # offending paths kept per check


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome. ``status``: pass, warn or fail (fail: an error-severity condition held).
    ``threshold``: the condition that decided the status (the error condition when it passed)."""

    name: str
    rule: str
    severity: str
    status: str
    measure: float | None
    threshold: str | None
    offending: tuple[str, ...] = ()
    offending_count: int = 0
    message: str = ""
    span: SourceSpan | None = None

    @property
    def location(self) -> str:
        return str(self.span) if self.span is not None else ""

    def line(self) -> str:
        """``file:line:col: check 'name' (rule) failed: message`` — how a failure is shown in one line."""
        word = {"fail": "failed", "warn": "warns", "pass": "passed"}[self.status]
        head = f"{self.location}: " if self.location else ""
        return f"{head}check {self.name!r} ({self.rule}) {word}: {self.message}"


@dataclass(frozen=True, slots=True)
class VersionChecks:
    """Every check of one version, in manifest order, and the content they were evaluated on."""

    version: VersionKey
    content_digest: str
    results: tuple[CheckResult, ...]

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status == "fail")

    @property
    def warned(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status == "warn")


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(float(value), 6)


def result_to_json(r: CheckResult) -> dict[str, Any]:
    return {"name": r.name, "rule": r.rule, "severity": r.severity, "status": r.status,
            "measure": _number(r.measure), "threshold": r.threshold, "offending": list(r.offending),
            "offending_count": r.offending_count, "message": r.message, "location": r.location}


def checks_to_json(checks: VersionChecks) -> dict[str, Any]:
    return {"format_version": CHECKS_FORMAT_VERSION, "version": str(checks.version),
            "content_digest": checks.content_digest, "checks": [result_to_json(r) for r in checks.results]}


def _span(location: str) -> SourceSpan | None:
    if not location:
        return None
    parts = location.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return SourceSpan(parts[0], int(parts[1]), int(parts[2]))
    return SourceSpan(location)


def checks_from_json(data: Mapping[str, Any]) -> VersionChecks:
    """The inverse of :func:`checks_to_json`; ValueError when ``data`` is not of this format."""
    if not isinstance(data, Mapping) or data.get("format_version") != CHECKS_FORMAT_VERSION:
        raise ValueError(f"not check results of format_version {CHECKS_FORMAT_VERSION}")
    try:
        key = VersionKey.parse(str(data["version"]))
        results = tuple(
            CheckResult(str(c["name"]), str(c["rule"]), str(c["severity"]), str(c["status"]), c.get("measure"),
                        c.get("threshold"), tuple(str(p) for p in c.get("offending", ())),
                        int(c.get("offending_count", 0)), str(c.get("message", "")),
                        _span(str(c.get("location") or "")))
            for c in data["checks"])
        return VersionChecks(key, str(data.get("content_digest", "")), results)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed check results ({type(err).__name__}: {err})") from None


def ui_rows(checks: VersionChecks) -> tuple[tuple[str | int | float, ...], ...]:
    """The table the ClearML UI shows (first row: the header)."""
    rows: list[tuple[str | int | float, ...]] = [
        ("check", "rule", "severity", "status", "measure", "threshold", "offending", "first offending", "message")]
    for r in checks.results:
        measure = _number(r.measure)
        rows.append((r.name, r.rule, r.severity, r.status, "" if measure is None else measure, r.threshold or "",
                     r.offending_count, ", ".join(r.offending[:3]), r.message))
    return tuple(rows)


def summary(checks: Sequence[VersionChecks]) -> tuple[int, int, int]:
    """(passed, warned, failed) over every check of ``checks``."""
    flat = [r.status for c in checks for r in c.results]
    return flat.count("pass"), flat.count("warn"), flat.count("fail")
