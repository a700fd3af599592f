"""The views of apply's events, on plain values and a fake clock: the human lines, progress on a terminal and in
logs, the JSON stream, and the step failure the dispatcher reads back from an agent's log."""

from __future__ import annotations

import io
import json
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any, get_args

import pytest

from reconciler.dispatch import step_event
from reconciler.events import (
    ApplyComplete,
    Event,
    PlanReady,
    StepError,
    StepProgress,
    UploadDone,
    UploadProgress,
    UploadStarted,
    event_fields,
    event_from_json,
)
from reconciler.model import VersionKey
from reconciler.render.events import AgentStepView, ConsoleView, JsonView, event_to_json, progress_interval, text_line

V1 = VersionKey("proj", "ds", "1.0.0")
V2 = VersionKey("proj", "other", "2.0.0")
GIB = 1 << 30


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sample(cls: Any) -> Event:
    """An instance of an event class with a value of the right type in every field."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        t = str(f.type)
        if t == "VersionKey":
            values[f.name] = V1
        elif t == "tuple[VersionKey, ...]":
            values[f.name] = (V1, V2)
        elif t.startswith("tuple["):
            values[f.name] = ("a", "b")
        elif t.startswith("int"):
            values[f.name] = 3
        elif t.startswith("float"):
            values[f.name] = 1.5
        elif t == "bool":
            values[f.name] = True
        else:
            values[f.name] = "x y\n" if cls is PlanReady else "x"
    event: Event = cls(**values)
    return event


@pytest.mark.parametrize("cls", get_args(Event), ids=lambda c: c.type)
def test_every_event_goes_through_json_and_back(cls: Any) -> None:
    event = _sample(cls)
    obj = json.loads(json.dumps(event_to_json(event)))
    assert obj["type"] == cls.type and obj["@level"] in ("info", "warn", "error") and obj["@message"]
    assert event_from_json(obj) == event
    text_line(event)  # every event has a human rendering (maybe none)


def test_event_types_are_unique_and_unknown_ones_are_ignored() -> None:
    types = [c.type for c in get_args(Event)]
    assert len(types) == len(set(types))
    assert event_from_json({"type": "from_the_future", "x": 1}) is None
    assert event_from_json({"type": "upload_progress", "version": "no version"}) is None
    assert event_fields(UploadDone(V1, 2, 10, 0.12345)) == {"type": "upload_done", "version": "proj/ds@1.0.0",
                                                           "files": 2, "bytes": 10, "seconds": 0.123}


def test_the_human_lines_are_the_ones_apply_always_printed() -> None:
    assert text_line(UploadStarted(V1, 36, 114176, 4)) == (
        False, "  uploading 36 files of proj/ds@1.0.0 (111.5 KiB, 4 workers)")
    assert text_line(ApplyComplete(True, 11, 2, 49, 155443, 0.4)) == (
        False, "Apply complete! 11 actions, 2 versions created, 49 files uploaded (151.8 KiB) in 0.4s.")
    assert text_line(ApplyComplete(False, 0, 0, 0, 0, 0.0)) is None
    assert text_line(StepProgress(V1, "uploading", "40")) == (False, "  proj/ds@1.0.0: uploading 40%")
    assert text_line(StepError("boom")) == (True, "reconcile step failed: boom")


def _upload(view: Any, clock: Clock, versions: tuple[VersionKey, ...], seconds: float, step: float) -> None:
    """Each of ``versions`` uploads 1 GiB evenly over ``seconds``, a progress event every ``step`` seconds."""
    for v in versions:
        view(UploadStarted(v, 100, GIB, 4))
    t = 0.0
    while t < seconds:
        clock.now = t
        for v in versions:
            view(UploadProgress(v, int(100 * t / seconds), int(GIB * t / seconds), 100, GIB, t, GIB / seconds))
        t += step
    clock.now = seconds
    for v in versions:
        view(UploadDone(v, 100, GIB, seconds))


def test_without_a_terminal_progress_is_one_plain_line_per_version_every_10_seconds() -> None:
    out, err, clock = io.StringIO(), io.StringIO(), Clock()
    view = ConsoleView(out, err, tty=False, interval=10.0, clock=clock)
    _upload(view, clock, (V1, V2), seconds=35, step=0.25)
    lines = err.getvalue().splitlines()
    for v in (V1, V2):
        mine = [ln for ln in lines if ln.startswith(f"uploading {v}: ")]
        assert len(mine) == 3, lines  # at 10, 20 and 30 s
    assert "\r" not in err.getvalue() and "\x1b" not in err.getvalue()
    assert lines[0] == "uploading proj/ds@1.0.0: 28/100 files, 292.6 MiB/1.0 GiB (28%), 29.3 MiB/s, 25s left"
    assert out.getvalue().count("uploading") == 2  # the "uploading N files" line of each version, on stdout


def test_the_default_interval_is_10_seconds_and_the_environment_can_change_it() -> None:
    assert progress_interval({}) == 10.0
    assert progress_interval({"RECONCILE_PROGRESS_INTERVAL": "0.5"}) == 0.5
    assert progress_interval({"RECONCILE_PROGRESS_INTERVAL": "soon"}) == 10.0


def test_on_a_terminal_progress_is_redrawn_at_most_five_times_a_second() -> None:
    out, err, clock = io.StringIO(), io.StringIO(), Clock()
    view = ConsoleView(out, err, tty=True, interval=10.0, clock=clock, width=lambda: 200)
    _upload(view, clock, (V1,), seconds=5, step=0.01)
    draws = err.getvalue().split("\r\x1b[K")[1:]
    assert 15 <= len(draws) <= 21, len(draws)  # from 1 s on (shorter uploads stay silent), every 0.2 s
    assert draws[0].startswith("uploading proj/ds@1.0.0: ") and draws[0].endswith(", 204.8 MiB/s, 4s left")
    assert draws[-1] == "uploading proj/ds@1.0.0: 100/100 files, 1.0 GiB/1.0 GiB (100%), 204.8 MiB/s\n"


def test_a_line_printed_during_an_upload_clears_the_progress_line_first() -> None:
    out, clock = io.StringIO(), Clock()
    view = ConsoleView(out, out, tty=True, interval=0.0, clock=clock, width=lambda: 200)
    view(UploadStarted(V1, 2, GIB, 1))
    clock.now = 1.0
    view(UploadProgress(V1, 1, GIB // 2, 2, GIB, 1.0))
    view(StepError("boom"))
    assert out.getvalue().endswith("\r\x1b[Kreconcile step failed: boom\n")


def test_the_json_stream_starts_with_its_schema_version_and_throttles_progress() -> None:
    out, clock = io.StringIO(), Clock()
    view = JsonView(out, tool_version="9.9", interval=10.0, clock=clock,
                    now=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    _upload(view, clock, (V1,), seconds=25, step=0.5)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows[0] == {"@level": "info", "@message": "reconcile 9.9", "@module": "reconcile",
                       "@timestamp": "2026-01-02T03:04:05.000000Z", "type": "start", "format_version": "1.0",
                       "reconcile": "9.9"}
    assert [r["type"] for r in rows[1:]] == ["upload_started", "upload_progress", "upload_progress", "upload_done"]
    assert [r["seconds"] for r in rows[2:4]] == [10.0, 20.0]
    assert all(list(r)[:5] == ["@level", "@message", "@module", "@timestamp", "type"] for r in rows)


def test_the_dispatcher_reads_a_step_failure_from_the_agents_log() -> None:
    out, err = io.StringIO(), io.StringIO()
    AgentStepView(out, err, tty=False)(StepError('the sources changed: "a.txt" {planned 4 bytes}'))
    (line,) = out.getvalue().splitlines()
    assert err.getvalue() == 'reconcile step failed: the sources changed: "a.txt" {planned 4 bytes}\n'
    assert step_event(line) == StepError('the sources changed: "a.txt" {planned 4 bytes}')
    assert step_event("2026-01-01 12:00:00 " + line) is not None  # a prefix the agent's log may add
    assert step_event('reconcile step failed: {"type": "step_error"') is None
    assert step_event("nothing here") is None


def test_the_readme_documents_every_event_type() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Apply events as JSON"):]
    missing = [c.type for c in get_args(Event) if f"`{c.type}`" not in section]
    assert not missing, f"README 'Apply events as JSON' does not list {missing}"


def test_a_chunk_reports_its_sources_bytes_as_its_stored_bytes_go_out_and_a_retry_counts_no_further() -> None:
    from reconciler.apply import UploadTracker
    from reconciler.clearml_backend.upload import _ChunkShare
    from reconciler.events import ChunkUploaded

    events: list[Event] = []
    tracker = UploadTracker(V1, 10, 1000, events.append)
    share = _ChunkShare(1000, 400, tracker)  # 1000 bytes of sources in a 400-byte zip
    for _ in range(3):
        share.sent(100)
    share.sent(100)
    share.sent(400)  # a retry sends it all again: already counted
    tracker(10, 1000 - share.reported)
    tracker.chunk("data", 10, 1000, 400)
    progress = [e for e in events if isinstance(e, UploadProgress)]
    assert [e.bytes for e in progress] == [250, 500, 750, 1000, 1000]
    assert all(e.rate == 0 for e in progress)  # all within half a second: no rate yet
    assert [e.files for e in progress] == [0, 0, 0, 0, 10]
    assert events[-1] == ChunkUploaded(V1, "data", 10, 1000, 400)


def test_the_rate_is_measured_over_the_last_seconds_from_the_first_bytes_on() -> None:
    from reconciler.apply import UploadTracker

    events: list[Event] = []
    clock = Clock()
    tracker = UploadTracker(V1, 1, 100 * MIB_, events.append, clock=clock)
    clock.now = 30.0  # zipping the first chunk took 30 s: no byte went out before
    for i in range(1, 41):
        clock.now = 30.0 + i * 0.5
        tracker(0, MIB_ if i <= 20 else 2 * MIB_)  # 2 MiB/s for 10 s, then 4 MiB/s
    rates = [e.rate for e in events if isinstance(e, UploadProgress)]
    assert rates[0] == 0 and rates[9] == pytest.approx(2 * MIB_)
    assert rates[-1] == pytest.approx(4 * MIB_)  # the last 10 s only


MIB_ = 1 << 20
