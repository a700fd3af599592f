"""Hostile names through the real renderers: a crafted file name, tag, metadata key or value, description, URL
or version name can neither fake lines in text output nor structure (lines, headings, table cells, links, HTML,
code fences) in the markdown posted to a pull request or in the HTML report.

The markdown is rendered with cmark-gfm (GitHub's own parser, raw HTML allowed so that injected HTML would
show) and the HTML is parsed: the hostile rendering must have exactly the structure of the same plan or report
with harmless names, and must show every hostile value as its escaped text."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from types import MappingProxyType

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from reconciler import escape
from reconciler.diagnostics import Diagnostic, ReconcileError, SourceSpan
from reconciler.model import Content, DatasetKey, FileEntry, LinkEntry, Properties, VersionKey, freeze_json
from reconciler.plan.actions import (
    AliasMove,
    Archive,
    Conflict,
    CreateVersion,
    Drift,
    Plan,
    SetProperties,
    SyncFiles,
    Unmanaged,
)
from reconciler.render import render_human, render_markdown, render_report
from reconciler.report import DiffReport, Side, compare_versions
from reconciler.statistics import ImageRecord, aggregate_images, file_statistics

HOSTILE = (
    "evil\nPlan: 0 to create, 0 to update, 0 to archive, 0 conflicts.",
    "pipe|cell`tick``s`",
    "<script>alert(1)</script>",
    "[click me](javascript:alert(1))",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "\rcarriage\x00nul\x7fdel\x85nel\x9bcsi",
    "rtl\u202eexe.txt\u2028line\u2029para\u2066iso\u2069",
    "```\n</details>\n# Heading\n| a | b |",
    "www.evil.com https://evil.com/x <b>bold</b> **strong** ![img](http://x/y.png) &amp; $x$ ~~s~~",
    "- item\n> quote\n1. one\n    code",
)
BENIGN = tuple(f"benign-value-{i}" for i in range(len(HOSTILE)))
NAMES = tuple(v.replace("/", "\\") for v in HOSTILE)  # file and folder names: anything but '/'

RAW_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_text_escapes_every_control_separator_and_bidi_character() -> None:
    assert escape.text("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert escape.text("\x00\x1b\x7f\x85\x9f") == "\\x00\\x1b\\x7f\\x85\\x9f"
    assert escape.text("\u2028\u2029\u202e\u2066\u200f\u061c") == "\\u2028\\u2029\\u202e\\u2066\\u200f\\u061c"
    assert escape.text("plain/path-1.0_x.png é 猫 👍 a\\b") == "plain/path-1.0_x.png é 猫 👍 a\\b"
    assert escape.text(42) == "42"


def test_markdown_and_code_spans_render_as_the_escaped_text() -> None:
    for value in HOSTILE + ("`", "``", " ` ", "", "#1", "12. x", "1.0.0"):
        html = gfm(f"x {escape.markdown(value)} y")
        assert tags(html) == ["p"], (value, html)
        assert texts(html) == f"x {escape.text(value)} y".strip(), value
        html = gfm(f"x {escape.code_span(value)} y")
        assert tags(html) == ["p", "code"], (value, html)
    assert escape.markdown("1.0.0 and www") == "1.0.0 and www"  # nothing escaped that needs no escaping


def test_diagnostics_are_one_line_whatever_they_quote() -> None:
    d = Diagnostic("cannot read folder /data/evil\nerror: fake\x1b[2J", SourceSpan("m\n.yaml", 3, 4))
    assert str(d) == "m\\n.yaml:3:4: error: cannot read folder /data/evil\\nerror: fake\\x1b[2J"
    assert "\n" not in str(ReconcileError(d)) and str(ReconcileError(d)) == str(d)


# --- the plan renderers ---------------------------------------------------------------------------------------


def hostile_plan(values: tuple[str, ...]) -> Plan:
    new = VersionKey("proj", "data", "1.0.0")
    odd = VersionKey(f"proj{values[2]}", f"name{values[0]}", f"1.0.0{values[3]}")
    files = tuple(FileEntry(f"dir/{v}.txt", 10 + i, f"{i:064x}") for i, v in enumerate(values))
    meta_before = freeze_json({f"key{v}": f"old{v}" for v in values})
    meta_after = freeze_json({f"key{v}": f"new{v}" for v in values[::2]} | {"added": values[1]})
    return Plan(
        actions=(
            CreateVersion(new, ()),
            SyncFiles(new, upload=files, remove=tuple(f"gone/{v}" for v in values),
                      add_links=tuple(LinkEntry(f"link/{v}", f"https://example.com/{v}", 5) for v in values),
                      file_count=len(values), total_size=100),
            CreateVersion(odd, (new,)),
            SetProperties(odd, Properties(values[0], frozenset(values[:5]), meta_before),
                          Properties(values[1], frozenset(values[5:]), meta_after)),
            Archive(VersionKey("proj", values[4], values[5]), f"id{values[6]}"),
        ),
        drift=(Drift(odd, f"id{values[2]}", "properties", f"tags changed {values[3]}",
                     Properties(values[4], frozenset(values[:2])), Properties(values[5], frozenset(values[2:4]))),),
        aliases=(AliasMove(DatasetKey("proj", values[8]), values[9], (values[1],), values[2]),),
        conflicts=(Conflict(VersionKey("proj", values[7], "2.0.0"), f"reason {values[8]}", f"hint {values[9]}",
                            f"id{values[0]}", added=tuple(f"a/{v}" for v in values), modified=values[:3]),),
        unmanaged=(Unmanaged(VersionKey(values[3], values[2], "0.1"), f"id{values[1]}", False, values[0]),),
    )


@pytest.mark.parametrize("file_limit", [None, 20, 3])
def test_the_text_plan_has_the_lines_of_a_harmless_one(file_limit: int | None) -> None:
    hostile = render_human(hostile_plan(HOSTILE), file_limit=file_limit)
    benign = render_human(hostile_plan(BENIGN), file_limit=file_limit)
    assert hostile.count("\n") == benign.count("\n")
    assert not RAW_UNSAFE.search(hostile)
    assert "Plan: 2 to create, 0 to update, 1 to archive, 1 conflict." in hostile.splitlines()[-1]
    if file_limit is None:
        for v in HOSTILE:
            assert f"dir/{escape.text(v)}.txt (" in hostile


def test_the_coloured_text_plan_carries_only_its_own_escapes() -> None:
    coloured = render_human(hostile_plan(HOSTILE), color=True)
    assert not RAW_UNSAFE.search(re.sub(r"\x1b\[[0-9;]*m", "", coloured))
    assert set(re.findall(r"\x1b\[[0-9;]*m", coloured)) <= {"\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[31;1m",
                                                             "\x1b[36m", "\x1b[0m"}


@pytest.mark.parametrize("file_limit", [None, 20, 3, 0])
def test_the_markdown_plan_has_the_structure_of_a_harmless_one(file_limit: int | None) -> None:
    hostile = render_markdown(hostile_plan(HOSTILE), file_limit=file_limit)
    benign = render_markdown(hostile_plan(BENIGN), file_limit=file_limit)
    assert hostile.count("\n") == benign.count("\n") and not RAW_UNSAFE.search(hostile)
    hostile_html, benign_html = gfm(hostile), gfm(benign)
    assert tags(hostile_html) == tags(benign_html)
    assert "script" not in tags(hostile_html) and "a" not in tags(hostile_html)
    shown = texts(hostile_html)
    for v in HOSTILE:
        assert escape.text(v) in shown, v


def test_markdown_honours_the_file_limit() -> None:
    plan = hostile_plan(BENIGN)
    assert render_markdown(plan, file_limit=None).count("dir/benign") == len(BENIGN)
    assert render_markdown(plan, file_limit=3).count("dir/benign") <= 3
    assert "... and 27 more" in render_markdown(plan, file_limit=3)  # 10 uploads, 10 links, 10 removed
    assert "dir/benign" not in render_markdown(plan, file_limit=0)


# --- the diff report renderers --------------------------------------------------------------------------------


def report(values: tuple[str, ...]) -> DiffReport:
    def side(label: str, names: tuple[str, ...], **kw: object) -> Side:
        files = {f"train/{v}/{i}.png": FileEntry(f"train/{v}/{i}.png", 10 + i, f"{i:064x}")
                 for i, v in enumerate(names)}
        files |= {f"{v}.txt": FileEntry(f"{v}.txt", 5, f"{i + 99:064x}") for i, v in enumerate(names)}
        c = Content(MappingProxyType(files))
        records = [(f"{v}/{i}.png", ImageRecord(2, 2, "L", (i,), (i * i,))) for i, v in enumerate(names)]
        return Side(label, f"id{values[0]}", c, statistics=file_statistics(c, aggregate_images(records)),
                    **kw)  # type: ignore[arg-type]

    before = side(f"proj/{values[3]}@1.0.0", values[:6], properties=Properties(
        values[1], frozenset(values[:3]), freeze_json({f"k{v}": v for v in values})))
    after = side(f"proj/{values[3]}@{values[2]}", values[4:], properties=Properties(
        values[7], frozenset(values[2:]), freeze_json({f"k{v}": [v] for v in values[::2]})))
    v = compare_versions(before, after, with_statistics=True)
    assert v.statistics is not None and v.statistics.splits
    return DiffReport("live-vs-live", (v,))


def test_the_text_report_has_the_lines_of_a_harmless_one() -> None:
    hostile, benign = render_report(report(NAMES), "text"), render_report(report(BENIGN), "text")
    assert hostile.count("\n") == benign.count("\n") and not RAW_UNSAFE.search(hostile)
    assert f"+ {escape.text(NAMES[9])}.txt (5 B)" in hostile


def test_the_markdown_report_has_the_structure_of_a_harmless_one() -> None:
    hostile, benign = render_report(report(NAMES), "markdown"), render_report(report(BENIGN), "markdown")
    assert hostile.count("\n") == benign.count("\n") and not RAW_UNSAFE.search(hostile)
    hostile_html = gfm(hostile)
    assert tags(hostile_html) == tags(gfm(benign))
    shown = texts(hostile_html)
    for v in NAMES[4:]:
        assert f"{escape.text(v)}.txt" in shown, v


def test_the_html_report_has_the_structure_of_a_harmless_one() -> None:
    hostile, benign = render_report(report(NAMES), "html"), render_report(report(BENIGN), "html")
    assert tags(hostile) == tags(benign) and "script" not in tags(hostile)
    assert not RAW_UNSAFE.search(hostile.replace("\n", ""))
    shown = texts(hostile)
    for v in NAMES[4:]:
        assert f"{escape.text(v)}.txt" in shown, v


# --- helpers --------------------------------------------------------------------------------------------------


def gfm(markdown: str) -> str:
    """GitHub's rendering of ``markdown``, raw HTML passed through (so injected HTML would show as tags)."""
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.tags += [f"@{name}" for name, _ in attrs if name in ("href", "src", "onerror", "onclick")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    c.close()
    return c


def tags(html: str) -> list[str]:
    return _parse(html).tags


def texts(html: str) -> str:
    return "".join(_parse(html).text).strip()
