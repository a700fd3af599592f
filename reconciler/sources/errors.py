"""The internal error of the sources package.

Code below :class:`reconciler.sources.SourceResolver` raises :class:`SourceError` with a message only; the
resolver turns it into a :class:`~reconciler.diagnostics.ReconcileError` carrying the source's manifest span,
so every problem is reported as one ``file:line:col: error: ...`` line.
"""

from __future__ import annotations


class SourceError(Exception):
    """A problem with one source that the user can fix (missing path, unreachable URL, ...)."""
