"""Markdown for a pull-request comment; stays under ``max_chars`` (GitHub's limit is 65,536)."""

from __future__ import annotations

from ..plan import Plan, human_size
from .common import alias_lines, drift_lines, summary_line, version_blocks

MAX_COMMENT_CHARS = 65_000


def _section(plan: Plan, file_limit: int | None) -> list[str]:
    out: list[str] = []
    for b in version_blocks(plan, file_limit):
        out.append(f"<details><summary><code>{b.sign} {b.version}</code> will be {b.verb}</summary>")
        out.append("")
        out.append("```diff")
        for line in b.lines:
            out.append(f"{line.sign} {line.text}".replace("~ ", "! ", 1) if line.sign == "~" else
                       f"{line.sign} {line.text}")
            for sign, text in line.detail:
                shown = "!" if sign == "~" else sign
                out.append(f"{shown}     {text}")
        out.append("```")
        out.append("</details>")
        out.append("")
    return out


def render_markdown(plan: Plan, *, max_chars: int = MAX_COMMENT_CHARS, full_plan_path: str | None = None) -> str:
    s = plan.summary()
    head = [
        "### Dataset plan",
        "",
        f"**{summary_line(s)}**" + (f" Upload: {s.upload_files} files, {human_size(s.upload_bytes)}."
                                    if s.upload_files else ""),
        "",
    ]
    tail: list[str] = []
    if plan.aliases:
        tail += ["#### Aliases", ""] + [f"- `{line}`" for line in alias_lines(plan)] + [""]
    if plan.drift:
        tail += ["#### :mag: Drift (changed on the server since the last apply)", ""]
        for where, what, detail in drift_lines(plan):
            tail.append(f"- `{where}`: {what}")
            tail += [f"  - `{sign} {text}`" for sign, text in detail]
        tail.append("")
    if plan.prune:
        tail += [f"Prune scope: {', '.join(f'`{p}`' for p in plan.projects)}", ""]
    if plan.conflicts:
        tail += ["#### :warning: Conflicts", "", "| version | problem | files | what to do |", "|---|---|---|---|"]
        for c in plan.conflicts:
            files = ", ".join(f"`{p}`" for p in (c.modified + c.added + c.removed)[:10])
            more = len(c.modified + c.added + c.removed) - 10
            files += f" and {more} more" if more > 0 else ""
            tail.append(f"| `{c.version}` | {c.reason} | {files} | {c.hint} |")
        tail.append("")
    reported = [u for u in plan.unmanaged if not any(a.version == u.version for a in plan.actions)]
    if reported:
        tail += ["#### On the server but in no manifest", ""]
        tail += [f"- `{u.version}` (id `{u.version_id}`){' — ' + u.reason if u.reason else ''}" for u in reported]
        tail.append("")
    if not plan.actions and not plan.conflicts:
        head += ["No changes. The datasets match the manifests.", ""]

    for limit in (20, 5, 0):
        body = _section(plan, limit)
        text = "\n".join(head + body + tail)
        if len(text) <= max_chars:
            if limit != 20:
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
    where = f" The full plan is in `{path}`." if path else " Run `reconcile plan` locally for the full plan."
    return f"\n> **Note:** {what} to fit a comment.{where}\n"
