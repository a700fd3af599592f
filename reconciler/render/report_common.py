"""What the text, markdown and html diff renderers share: labels, rows and the one-line verdicts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..properties import PropertyChange
from ..report import CountChange, DiffReport, FileChange, StatisticsDiff, VersionDiff
from ..wording import counted, human_size

SIGNS = {"added": "+", "removed": "-", "modified": "~", "changed": "~"}


@dataclass(frozen=True, slots=True)
class Row:
    """One statistic: a label and its before/after values, already formatted; ``sign`` as in the file list."""

    sign: str
    label: str
    before: str
    after: str
    delta: str


def value(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def signed(n: int, *, size: bool = False) -> str:
    text = human_size(abs(n)) if size else str(abs(n))
    return ("+" if n > 0 else "-" if n < 0 else "±") + text


def count_sign(c: CountChange) -> str:
    return "+" if c.before == 0 else "-" if c.after == 0 else "~"


def count_row(label: str, c: CountChange, *, size: bool = False) -> Row:
    fmt = human_size if size else str
    return Row(count_sign(c), label, fmt(c.before), fmt(c.after), signed(c.delta, size=size))


def file_size(c: FileChange) -> str:
    if c.change == "added":
        return _size(c.after_size)
    if c.change == "removed":
        return _size(c.before_size)
    if _size(c.before_size) == _size(c.after_size):
        return f"{c.before_size} B -> {c.after_size} B"
    return f"{_size(c.before_size)} -> {_size(c.after_size)}"


def _size(n: int | None) -> str:
    return "unknown size" if n is None else human_size(n)


def property_text(c: PropertyChange) -> str:
    if c.change == "added":
        return f"{c.path}: {value(c.after)}" if c.field == "tags" else f"{c.path} = {value(c.after)}"
    if c.change == "removed":
        return f"{c.path}: {value(c.before)}" if c.field == "tags" else f"{c.path} = {value(c.before)}"
    return f"{c.path}: {value(c.before)} -> {value(c.after)}"


def _mean_std(mean: float | None, std: float | None) -> str:
    return "none" if mean is None or std is None else f"mean {mean:.6f}, std {std:.6f}"


def statistics_rows(s: StatisticsDiff) -> list[Row]:
    """Every changed statistic except the per-class counts (see :func:`class_rows`)."""
    rows: list[Row] = []
    if s.before_available != s.after_available:
        rows.append(Row("+" if s.after_available else "-", "statistics",
                        "available" if s.before_available else "none", "available" if s.after_available else "none",
                        ""))
    rows += [count_row(c.key, c, size=c.key == "total size") for c in s.summary]
    rows += [count_row(f"extension {c.key}", c) for c in s.extensions]
    rows += [count_row(f"folder {c.key}", c) for c in s.folders]
    rows += [count_row(f"image size {c.key}", c) for c in s.sizes]
    for ch in s.channels:
        sign = "+" if ch.before_mean is None else "-" if ch.after_mean is None else "~"
        rows.append(Row(sign, f"channel {ch.mode}[{ch.channel}]", _mean_std(ch.before_mean, ch.before_std),
                        _mean_std(ch.after_mean, ch.after_std), ""))
    return rows


def class_rows(s: StatisticsDiff, *, changed_only: bool) -> list[tuple[str, list[Row]]]:
    """Per split, the class counts (only the changed ones when asked); splits without rows are left out."""
    out = []
    for split in s.splits:
        rows = [count_row(c.key, c) for c in (split.changed if changed_only else split.classes)]
        if rows:
            out.append((split.split, rows))
    return out


def version_title(v: VersionDiff) -> str:
    before = v.before + (f" (id {v.before_id})" if v.before_id else "")
    after = v.after + (f" (id {v.after_id})" if v.after_id else "")
    return f"{before} -> {after}"


def files_summary(v: VersionDiff) -> str:
    if not v.files:
        return f"unchanged ({counted(v.file_count.after, 'file')}, {human_size(v.total_size.after)})"
    kinds = {k: sum(1 for f in v.files if f.change == k) for k in ("added", "removed", "modified")}
    return (f"{kinds['added']} added, {kinds['removed']} removed, {kinds['modified']} modified; "
            f"files {v.file_count.before} -> {v.file_count.after} ({signed(v.file_count.delta)}), "
            f"total size {human_size(v.total_size.before)} -> {human_size(v.total_size.after)} "
            f"({signed(v.total_size.delta, size=True)})")


def verdict(report: DiffReport) -> str:
    """The last line of every format: identical or how many pairs differ."""
    n = len(report.versions)
    differ = sum(1 for v in report.versions if not v.identical)
    if report.mode == "live-vs-live":
        v = report.versions[0]
        if v.identical:
            return f"No differences: {v.before} and {v.after} are identical."
        return f"{v.before} and {v.after} differ."
    if not differ:
        return f"No differences: the server matches the manifests ({counted(n, 'version')} compared)."
    return f"{differ} of {counted(n, 'version')} {'differs' if differ == 1 else 'differ'} from the manifests."
