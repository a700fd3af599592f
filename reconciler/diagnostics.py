"""Source locations and user-facing errors.

Every error a user can cause is a :class:`ReconcileError` carrying one or more :class:`Diagnostic`, each
rendered on one line as ``file:line:col: error: message`` (the location is omitted when there is none).
That line is escaped (:func:`reconciler.escape.text`): a file name or value quoted in a message cannot break
it into several lines or carry terminal escapes. The CLI catches only this type; anything else is a bug and
shows a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .escape import text


@dataclass(frozen=True, slots=True, order=True)
class SourceSpan:
    """A position in a manifest file. ``line`` and ``col`` are 1-based."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    message: str
    span: SourceSpan | None = None
    severity: str = "error"

    def sort_key(self) -> tuple[str, int, int, str]:
        if self.span is None:
            return ("", 0, 0, self.message)
        return (self.span.file, self.span.line, self.span.col, self.message)

    def __str__(self) -> str:
        if self.span is None:
            return text(f"{self.severity}: {self.message}")
        return text(f"{self.span}: {self.severity}: {self.message}")

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.span.file if self.span else None,
            "line": self.span.line if self.span else None,
            "col": self.span.col if self.span else None,
            "severity": self.severity,
            "message": self.message,
        }


class ReconcileError(Exception):
    """An error the user can fix. Its string form is one line per diagnostic, sorted by location."""

    def __init__(self, diagnostics: str | Diagnostic | Iterable[Diagnostic], span: SourceSpan | None = None):
        if isinstance(diagnostics, str):
            items: list[Diagnostic] = [Diagnostic(diagnostics, span)]
        elif isinstance(diagnostics, Diagnostic):
            items = [diagnostics]
        else:
            items = list(diagnostics)
        self.diagnostics: tuple[Diagnostic, ...] = tuple(sorted(items, key=Diagnostic.sort_key))
        super().__init__("\n".join(str(d) for d in self.diagnostics))
