"""Terraform-like text: ``+`` create, ``~`` update, ``-`` archive, ``!`` conflict; colour only when asked.

Every line is escaped (:func:`reconciler.escape.text`) before it is coloured: user data cannot move the cursor,
colour the output or start a line of its own.
"""

from __future__ import annotations

from .. import escape
from ..plan.actions import Plan
from .common import (
    alias_lines,
    check_items,
    checks_summary,
    drift_lines,
    import_hint,
    retention_lines,
    summary_line,
    version_blocks,
)

_COLORS = {"+": "\x1b[32m", "-": "\x1b[31m", "~": "\x1b[33m", "!": "\x1b[31;1m", "?": "\x1b[36m"}
_RESET = "\x1b[0m"


def render_human(plan: Plan, *, color: bool = False, file_limit: int | None = 20) -> str:
    def paint(sign: str, text: str) -> str:
        text = escape.text(text)
        if color and sign in _COLORS:
            return f"{_COLORS[sign]}{text}{_RESET}"
        return text

    out: list[str] = []
    blocks = version_blocks(plan, file_limit)
    if blocks:
        out.append("The reconciler will perform the following actions:")
        out.append("")
    for b in blocks:
        out.append(escape.text(f"  # {b.version} will be {b.verb}"))
        out.append(paint(b.sign, f"  {b.sign} version {b.version}"))
        for line in b.lines:
            out.append(paint(line.sign, f"      {line.sign} {line.text}"))
            for sign, text in line.detail:
                out.append(paint(sign, f"          {sign} {text}"))
        out.append("")
    if plan.aliases:
        out.append("Aliases:")
        out += [paint("~", f"  ~ {line}") for line in alias_lines(plan)]
        out.append("")
    if plan.retention:
        out.append("Retention (versions out of their dataset's policy):")
        for sign, head, notes in retention_lines(plan):
            out.append(paint(sign, f"  {sign} {head}"))
            out += [escape.text(f"      {text}") for text in notes]
        out.append("")
    if plan.drift:
        out.append("Drift (changed on the server since the last apply; the plan puts the manifests back):")
        for where, what, detail in drift_lines(plan):
            out.append(paint("!", f"  ! {where}: {what}"))
            out += [paint(sign, f"      {sign} {text}") for sign, text in detail]
        out.append("")
    if plan.conflicts:
        out.append("Conflicts (nothing will be changed for these versions):")
        for c in plan.conflicts:
            ident = f" (id {c.version_id})" if c.version_id else ""
            out.append(paint("!", f"  ! {c.version}{ident}: {c.reason}"))
            for label, sign, paths in (("modified", "~", c.modified), ("added", "+", c.added),
                                       ("removed", "-", c.removed)):
                shown = paths if file_limit is None else paths[:file_limit]
                for p in shown:
                    out.append(paint(sign, f"      {sign} {p} ({label})"))
                if len(paths) > len(shown):
                    out.append(f"        ... and {len(paths) - len(shown)} more {label}")
            out.append(escape.text(f"      hint: {c.hint}"))
        out.append("")
    if plan.checks:
        out.append(f"Checks ({checks_summary(plan)}):")
        for item in check_items(plan):
            sign = "!" if item.status == "fail" else "~"
            where = f"{item.location}: " if item.location else ""
            word = "failed" if item.status == "fail" else "warns"
            out.append(paint(sign, f"  {sign} {item.version}: {where}check {item.name!r} ({item.rule}) {word}: "
                                   f"{item.message}"))
            shown = item.offending if file_limit is None else item.offending[:file_limit]
            out += [paint(sign, f"      {sign} {p}") for p in shown]
            if item.offending_count > len(shown):
                out.append(f"        ... and {item.offending_count - len(shown)} more")
        for h in plan.held:
            out.append(paint("!", f"  ! {h.version} is held (not created, finalized, published nor aliased): "
                                  f"{h.reason}"))
        out.append("")
    reported = [u for u in plan.unmanaged if not any(a.version == u.version for a in plan.actions)]
    if reported:
        out.append("On the server but in no manifest (left alone):")
        for u in reported:
            why = f"; {u.reason}" if u.reason else ("" if u.managed else "; not created by this tool")
            out.append(paint("?", f"  ? {u.version} (id {u.version_id}{why})"))
        if hint := import_hint(reported):
            out.append(escape.text(f"  To manage them: {hint[0]} ({hint[1]})"))
        out.append("")
    if plan.prune:
        out.append(escape.text(f"Prune scope: {', '.join(plan.projects)} (versions this tool made there that no "
                               "manifest names are archived)"))
    if not plan.actions and not plan.conflicts and not plan.held:
        out.append("No changes. The datasets match the manifests.")
    out.append(summary_line(plan.summary()))
    return "\n".join(out) + "\n"
