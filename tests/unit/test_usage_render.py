"""``reconcile usage`` views: totals add up, user data is escaped in text and markdown."""

from __future__ import annotations

import json

from reconciler.model import DatasetKey, VersionKey
from reconciler.render.usage import render_usage
from reconciler.usage import DatasetUsage, UsageReport, VersionUsage

HOSTILE = "evil\x1b[31m|`x`"


def report() -> UsageReport:
    key = DatasetKey("proj", HOSTILE)
    versions = (
        VersionUsage(VersionKey("proj", HOSTILE, "1.0.0"), "a" * 32, "completed", True, 1000, 2, 900, 0, True),
        VersionUsage(VersionKey("proj", HOSTILE, "1.0.1"), "b" * 32, "completed", False, 300, 2, 200, 700, False),
    )
    return UsageReport((DatasetUsage(key, versions, 1000),))


def test_json_has_every_number_and_the_totals() -> None:
    data = json.loads(render_usage(report(), "json"))
    assert (data["stored_bytes"], data["archived_bytes"], data["policy_frees_bytes"]) == (1300, 1000, 1000)
    (ds,) = data["datasets"]
    assert [(v["version"], v["own_bytes"], v["inherited_bytes"], v["freed"]) for v in ds["versions"]] == [
        ("1.0.0", 900, 0, True), ("1.0.1", 200, 700, False)]


def test_text_and_markdown_escape_the_dataset_name() -> None:
    for fmt in ("text", "markdown"):
        out = render_usage(report(), fmt)
        assert "\x1b" not in out
        assert "freed by retention" in out and "would free" in out
    assert "| `1.0.1` |" in render_usage(report(), "markdown")
