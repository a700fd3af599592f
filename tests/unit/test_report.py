"""The pure part of diff reports: deepdiff property changes, file and statistics deltas, the renderers."""

from __future__ import annotations

from types import MappingProxyType

from reconciler.model import Content, FileEntry, Properties, freeze_json
from reconciler.observe import parse_reference
from reconciler.render import render_report, report_to_json
from reconciler.report import DiffReport, Side, compare_versions, is_live_reference
from reconciler.statistics import ImageRecord, aggregate_images, file_statistics


def content(**files: int) -> Content:
    entries = {p.replace("__", "/"): FileEntry(p.replace("__", "/"), n, f"h{n}") for p, n in files.items()}
    return Content(MappingProxyType(entries))


def side(c: Content, label: str, *, tags=("a",), meta=None, desc="d", classes=()) -> Side:
    records = [(f"train/{cls}/{i}.png", ImageRecord(2, 2, "L", (i,), (i * i,))) for i, cls in enumerate(classes)]
    return Side(label, None, c, Properties(desc, frozenset(tags), freeze_json(meta or {"k": 1})),
                file_statistics(c, aggregate_images(records)))


def test_files_properties_and_classes_are_diffed():
    before = side(content(a=1, b=2, c=3), "x@1", tags=("a", "old"), classes=("cat", "cat", "dog"))
    after = side(content(a=1, b=5, d=4), "x@2", meta={"k": 2, "n": [1]}, desc="<new>", classes=("cat", "emu"))
    v = compare_versions(before, after, with_statistics=True)
    assert [(f.path, f.change, f.before_size, f.after_size) for f in v.files] == [
        ("b", "modified", 2, 5), ("c", "removed", 3, None), ("d", "added", None, 4)]
    assert [(p.path, p.change, p.before, p.after) for p in v.properties] == [
        ("description", "changed", "d", "<new>"), ("metadata['k']", "changed", 1, 2),
        ("metadata['n']", "added", None, [1]), ("tags", "removed", "old", None)]
    assert v.statistics is not None
    (split,) = v.statistics.splits
    assert [(c.key, c.before, c.after) for c in split.classes] == [("cat", 2, 1), ("dog", 1, 0), ("emu", 0, 1)]
    report = DiffReport("live-vs-live", (v,))
    assert not report.identical and report_to_json(report)["versions"][0]["identical"] is False
    html = render_report(report, "html")
    assert "&lt;new&gt;" in html and "<new>" not in html and html.count('class="chart class-chart"') == 1
    assert "x@1 and x@2 differ." in render_report(report, "text")


def test_identical_sides_say_so_in_every_format():
    s = side(content(a=1), "x@1")
    report = DiffReport("live-vs-live", (compare_versions(s, s, with_statistics=False),))
    assert report.identical
    for fmt in ("text", "markdown", "html"):
        assert "No differences: x@1 and x@1 are identical." in render_report(report, fmt)


def test_argument_forms():
    assert is_live_reference("p/n@1.0.0") and is_live_reference("0123456789abcdef0123456789ABCDEF")
    assert not is_live_reference("manifests/") and not is_live_reference("0123")
    assert parse_reference("a/b/name@1.2.3").project == "a/b"
