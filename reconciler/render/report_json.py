"""The JSON form of a diff report: ``format_version``, stable keys, every change with its before and after."""

from __future__ import annotations

from typing import Any

from ..report import REPORT_FORMAT_VERSION, CountChange, DiffReport, StatisticsDiff, VersionDiff


def _count(c: CountChange) -> dict[str, Any]:
    return {"key": c.key, "before": c.before, "after": c.after, "delta": c.delta}


def _statistics(s: StatisticsDiff) -> dict[str, Any]:
    return {
        "changed": s.changed,
        "before_available": s.before_available,
        "after_available": s.after_available,
        "summary": [_count(c) for c in s.summary],
        "extensions": [_count(c) for c in s.extensions],
        "folders": [_count(c) for c in s.folders],
        "sizes": [_count(c) for c in s.sizes],
        "splits": [{"split": sp.split, "classes": [_count(c) for c in sp.classes]} for sp in s.splits],
        "channels": [
            {"mode": ch.mode, "channel": ch.channel, "before_mean": ch.before_mean, "after_mean": ch.after_mean,
             "before_std": ch.before_std, "after_std": ch.after_std}
            for ch in s.channels
        ],
    }


def _version(v: VersionDiff) -> dict[str, Any]:
    return {
        "before": v.before,
        "after": v.after,
        "before_id": v.before_id,
        "after_id": v.after_id,
        "identical": v.identical,
        "note": v.note,
        "file_count": _count(v.file_count),
        "total_size": _count(v.total_size),
        "files": [{"path": f.path, "change": f.change, "before_size": f.before_size, "after_size": f.after_size}
                  for f in v.files],
        "properties": [{"field": p.field, "path": p.path, "change": p.change, "before": p.before, "after": p.after}
                       for p in v.properties],
        "statistics": _statistics(v.statistics) if v.statistics is not None else None,
    }


def report_to_json(report: DiffReport) -> dict[str, Any]:
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "mode": report.mode,
        "identical": report.identical,
        "versions": [_version(v) for v in report.versions],
    }
