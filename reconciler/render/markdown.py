"""Markdown for a pull-request comment; stays under ``max_chars`` (GitHub's limit is 65,536).

User data is escaped for where it lands (:mod:`reconciler.escape`): HTML in ``<summary>``, text inside the
``diff`` code fences (no line of user data can close a fence), code spans and inert markdown in the tables.
"""

from __future__ import annotations

from .. import escape
from ..lineage import Node, build_graph
from ..model import VersionKey
from ..plan.actions import Archive, CreateVersion, Plan, ResumeVersion
from ..wording import counted, human_size
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
from .graph import graph_to_mermaid

MAX_COMMENT_CHARS = 65_000
MAX_LINEAGE_NODES = 60  # a larger chart is unreadable in a comment (and costs its room)


def _section(plan: Plan, file_limit: int | None) -> list[str]:
    out: list[str] = []
    for b in version_blocks(plan, file_limit):
        out.append(f"<details><summary><code>{escape.html(f'{b.sign} {b.version}')}</code> will be {b.verb}"
                   "</summary>")
        out.append("")
        out.append("```diff")
        for line in b.lines:
            shown = "!" if line.sign == "~" else line.sign
            out.append(escape.text(f"{shown} {line.text}"))
            for sign, text in line.detail:
                shown = "!" if sign == "~" else sign
                out.append(escape.text(f"{shown}     {text}"))
        out.append("```")
        out.append("</details>")
        out.append("")
    return out


def lineage_lines(plan: Plan) -> list[str]:
    """A Mermaid chart of the versions the plan creates (with their parents) and of the others it changes or
    archives (GitHub draws it in the comment); nothing when the plan creates no version."""
    states: dict[VersionKey, str] = {}
    parents: dict[str, tuple[str, ...]] = {}
    for a in plan.actions:
        if isinstance(a, (CreateVersion, ResumeVersion)):
            states[a.version] = "new"
            if a.parents:
                parents[str(a.version)] = tuple(str(p) for p in a.parents)
                for p in a.parents:
                    states.setdefault(p, "final")
        elif isinstance(a, Archive):
            states[a.version] = "archived"
        else:
            states.setdefault(a.version, "changed")
    if "new" not in states.values():
        return []
    if len(states) > MAX_LINEAGE_NODES:
        return ["#### Lineage", "", f"_{len(states)} versions, too many to draw here: `reconcile graph` draws them._",
                ""]
    nodes = [Node(str(k), str(k), state, dataset=str(k.dataset), version=k.version) for k, state in states.items()]
    chart = graph_to_mermaid(build_graph(nodes, parents), direction="LR")
    return ["#### Lineage", "", "```mermaid", *chart.rstrip("\n").split("\n"), "```", ""]


def _conflicts(plan: Plan, file_limit: int | None) -> list[str]:
    if not plan.conflicts:
        return []
    out = ["#### :warning: Conflicts", "", "| version | problem | files | what to do |", "|---|---|---|---|"]
    for c in plan.conflicts:
        paths = c.modified + c.added + c.removed
        shown = paths if file_limit is None else paths[:file_limit]
        files = ", ".join(escape.code_span(p, table=True) for p in shown)
        more = len(paths) - len(shown)
        if more > 0:
            files += (" and " if files else "") + f"{more} more"
        out.append(f"| {escape.code_span(c.version, table=True)} | {escape.markdown(c.reason)} | {files} | "
                   f"{escape.markdown(c.hint)} |")
    out.append("")
    return out


def _checks(plan: Plan, file_limit: int | None) -> list[str]:
    if not plan.checks:
        return []
    items = check_items(plan)
    icon = ":no_entry:" if any(i.status == "fail" for i in items) else ":white_check_mark:"
    out = [f"#### {icon} Checks", "", escape.markdown(checks_summary(plan)) + ".", ""]
    if items:
        out += ["| version | check | status | where | first offending | message |", "|---|---|---|---|---|---|"]
        for i in items:
            shown = i.offending if file_limit is None else i.offending[:max(file_limit, 5)]
            files = ", ".join(escape.code_span(p, table=True) for p in shown)
            if i.offending_count > len(shown):
                files += (" and " if files else "") + f"{i.offending_count - len(shown)} more"
            status = "**fail**" if i.status == "fail" else "warn"
            out.append(f"| {escape.code_span(i.version, table=True)} | {escape.code_span(i.name, table=True)} "
                       f"({escape.markdown(i.rule)}) | {status} | {escape.code_span(i.location, table=True)} | "
                       f"{files} | {escape.markdown(i.message)} |")
        out.append("")
    for h in plan.held:
        out.append(f"- {escape.code_span(h.version)} is held (not created, finalized, published nor aliased): "
                   f"{escape.markdown(h.reason)}")
    if plan.held:
        out.append("")
    return out


def render_markdown(plan: Plan, *, max_chars: int = MAX_COMMENT_CHARS, full_plan_path: str | None = None,
                    file_limit: int | None = 20) -> str:
    """The plan as markdown listing up to ``file_limit`` files per version (None: all of them).

    When the result would exceed ``max_chars``, file lists are shortened (5, then none), then whole versions
    are left out, with a note pointing at ``full_plan_path``.
    """
    s = plan.summary()
    head = [
        "### Dataset plan",
        "",
        f"**{summary_line(s)}**" + (f" Upload: {counted(s.upload_files, 'file')}, {human_size(s.upload_bytes)}."
                                    if s.upload_files else ""),
        "",
    ]
    unmanaged: list[str] = []
    if plan.aliases:
        unmanaged += ["#### Aliases", ""] + [f"- {escape.code_span(line)}" for line in alias_lines(plan)] + [""]
    if plan.retention:
        unmanaged += ["#### :wastebasket: Retention", ""]
        for sign, headline, notes in retention_lines(plan):
            unmanaged.append(f"- {escape.code_span(sign)} {escape.markdown(headline)}")
            unmanaged += [f"  - {escape.markdown(text)}" for text in notes]
        unmanaged.append("")
    if plan.drift:
        unmanaged += ["#### :mag: Drift (changed on the server since the last apply)", ""]
        for where, what, detail in drift_lines(plan):
            unmanaged.append(f"- {escape.code_span(where)}: {escape.markdown(what)}")
            unmanaged += [f"  - {escape.code_span(f'{sign} {text}')}" for sign, text in detail]
        unmanaged.append("")
    if plan.prune:
        unmanaged += ["Prune scope: " + ", ".join(escape.code_span(p) for p in plan.projects), ""]
    reported = [u for u in plan.unmanaged if not any(a.version == u.version for a in plan.actions)]
    if reported:
        unmanaged += ["#### On the server but in no manifest", ""]
        unmanaged += [f"- {escape.code_span(u.version)} (id {escape.code_span(u.version_id)})"
                      + (f" — {escape.markdown(u.reason)}" if u.reason else "") for u in reported]
        if hint := import_hint(reported):
            unmanaged += ["", f"To manage them: {escape.code_span(hint[0])} ({escape.markdown(hint[1])})"]
        unmanaged.append("")
    if not plan.actions and not plan.conflicts and not plan.held:
        head += ["No changes. The datasets match the manifests.", ""]

    limits = [file_limit] + [n for n in (5, 0) if file_limit is None or n < file_limit]
    for limit in limits:
        tail = _checks(plan, limit) + _conflicts(plan, limit) + unmanaged + lineage_lines(plan)
        text = "\n".join(head + _section(plan, limit) + tail)
        if len(text) <= max_chars:
            if limit != file_limit:
                text += _trim_note(full_plan_path, "file lists shortened")
            return text
    note = _trim_note(full_plan_path, "plan trimmed")
    budget = max_chars - len(note) - len("\n".join(head + tail)) - 200
    kept: list[str] = []
    used = 0
    for line in _section(plan, 0):
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    if kept and kept[-1] != "</details>":
        while kept and kept[-1] != "</details>":
            kept.pop()
    return "\n".join(head + kept + ["", "_… more versions not shown …_", ""] + tail) + note


def _trim_note(path: str | None, what: str) -> str:
    where = (f" The full plan is in {escape.code_span(path)}." if path
             else " Run `reconcile plan` locally for the full plan.")
    return f"\n> **Note:** {what} to fit a comment.{where}\n"
