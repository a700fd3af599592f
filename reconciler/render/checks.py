"""``reconcile check`` output: each version's checks, failures and warnings with their location and first
offending files. Every line of user data is escaped for where it lands (:mod:`reconciler.escape`)."""

from __future__ import annotations

from collections.abc import Sequence

from .. import escape
from ..checks.results import VersionChecks, summary
from ..model import VersionKey
from ..wording import counted

_MARK = {"pass": "ok  ", "warn": "WARN", "fail": "FAIL"}
_COLORS = {"pass": "\x1b[32m", "warn": "\x1b[33m", "fail": "\x1b[31;1m"}
SHOWN = 5


def render_checks_text(results: Sequence[VersionChecks], skipped: Sequence[VersionKey], *, color: bool = False
                       ) -> str:
    out: list[str] = []
    for c in results:
        out.append(escape.text(f"{c.version}:"))
        for r in c.results:
            line = escape.text(f"  {_MARK[r.status]} {r.name} ({r.rule}): {r.message}"
                               + (f"  [{r.location}]" if r.location and r.status != "pass" else ""))
            out.append(f"{_COLORS[r.status]}{line}\x1b[0m" if color else line)
            if r.status != "pass":
                out += [escape.text(f"         {p}") for p in r.offending[:SHOWN]]
                if r.offending_count > SHOWN:
                    out.append(f"         ... and {r.offending_count - SHOWN} more")
    for k in skipped:
        out.append(escape.text(f"{k}: not checked here (it stands on an adopted version whose files only the "
                               "server has); 'reconcile plan' checks it"))
    passed, warned, failed = summary(results)
    out.append(f"{counted(len(results), 'version')} checked: {passed} passed, {warned} warned, {failed} failed.")
    return "\n".join(out) + "\n"


def render_checks_markdown(results: Sequence[VersionChecks], skipped: Sequence[VersionKey]) -> str:
    passed, warned, failed = summary(results)
    out = ["### Dataset checks", "",
           f"{counted(len(results), 'version')} checked: {passed} passed, {warned} warned, {failed} failed.", "",
           "| version | check | status | where | first offending | message |", "|---|---|---|---|---|---|"]
    for c in results:
        for r in c.results:
            files = ", ".join(escape.code_span(p, table=True) for p in r.offending[:SHOWN])
            if r.offending_count > SHOWN:
                files += f" and {r.offending_count - SHOWN} more"
            out.append(f"| {escape.code_span(c.version, table=True)} | {escape.code_span(r.name, table=True)} | "
                       f"{r.status} | {escape.code_span(r.location, table=True)} | {files} | "
                       f"{escape.markdown(r.message)} |")
    out += [f"- {escape.code_span(k)}: not checked (stands on an adopted version)" for k in skipped]
    return "\n".join(out) + "\n"
