"""A saved plan is applied exactly as printed: every action type round-trips; an unknown one is refused."""

from __future__ import annotations

import typing

import pytest

from reconciler.checks import CheckResult, VersionChecks
from reconciler.diagnostics import ReconcileError, SourceSpan
from reconciler.model import CheckSpec, FileEntry, LinkEntry, Properties, StoredObject, VersionKey, freeze_json
from reconciler.plan.actions import (
    Action,
    Archive,
    CreateVersion,
    DeleteVersion,
    DiscardDraft,
    Finalize,
    Plan,
    Publish,
    RehomeVersion,
    Restore,
    ResumeVersion,
    SetChecks,
    SetProperties,
    SetStatistics,
    SyncFiles,
)
from reconciler.plancodec import action_from_json, action_to_json, plan_from_json, plan_to_json
from reconciler.render import render_human, render_markdown

V = VersionKey("p", "ds", "1.1.0")
PARENT = VersionKey("p", "ds", "1.0.0")

ONE_OF_EACH: tuple[Action, ...] = (
    CreateVersion(V, (PARENT,), "s3://bucket/prefix"),
    ResumeVersion(V, "draft-id", (PARENT,)),
    Restore(V, "archived-id"),
    DiscardDraft(V, "stray-id"),
    SyncFiles(V, upload=(FileEntry("a.txt", 1, "h", "/local/a.txt"),), modified=("a.txt",), remove=("b.txt",),
              add_links=(LinkEntry("l", "s3://b/l", 3, "e"),), remove_links=("m",), content_digest="d" * 64,
              file_count=2, total_size=4),
    SetStatistics(V, None, "d" * 64, plots=False),
    SetChecks(V, VersionChecks(V, "d" * 64, (
        CheckResult("no-empty", "empty_files", "error", "warn", 2, "!=0", ("a.txt", "b.txt"), 2, "2 empty",
                    SourceSpan("m.yaml", 7, 5)),)),
              (CheckSpec("no-empty", "empty_files", "warn", None, None, freeze_json({"glob": "*.txt"}),
                         SourceSpan("m.yaml", 7, 5)),)),
    SetProperties(V, Properties("old", frozenset({"a"}), freeze_json({"k": [1, 2]})),
                  Properties("new", frozenset({"b"}), freeze_json({"k": [1, 3], "n": None}))),
    SetProperties(V, Properties("d", frozenset({"a"})), Properties("d", frozenset({"a", "production"})), alias=True),
    Finalize(V, "d" * 64),
    Publish(V),
    Archive(V, "old-id"),
    Archive(V, "expired-id", "not among the 3 newest versions (keep_last)"),
    DeleteVersion(V, "expired-id", (StoredObject("data", "http://files/p/data.zip", 10),
                                    StoredObject("state", "http://files/p/state.json", 2)), "keep_last"),
    RehomeVersion(V, "kept-id", 18, 1800, ((VersionKey("p", "ds", "1.2.0"), "child-id"),), ("expired-id",),
                  ("kept-id", "child-id"), (StoredObject("state", "http://files/p/kept/state.json", 3),), 120),
)


def test_one_instance_of_every_action_type_is_listed() -> None:
    assert {type(a) for a in ONE_OF_EACH} == set(typing.get_args(Action))


@pytest.mark.parametrize("action", ONE_OF_EACH, ids=lambda a: type(a).__name__)
def test_every_action_round_trips(action: Action) -> None:
    assert action_from_json(action_to_json(action)) == action


def test_a_whole_plan_round_trips_and_renders() -> None:
    plan = Plan(actions=ONE_OF_EACH, observed_fingerprint="f", projects=("p",))
    assert plan_from_json(plan_to_json(plan)) == plan
    assert "restore archived version archived-id" in render_human(plan)
    assert "p/ds@1.1.0" in render_markdown(plan)


def test_an_unknown_action_type_is_refused_not_guessed() -> None:
    data = plan_to_json(Plan(actions=(Publish(V),), observed_fingerprint="f"))
    data["actions"][0]["type"] = "delete_everything"
    with pytest.raises(ReconcileError, match="unknown action type 'delete_everything'"):
        plan_from_json(data, source="plan.json")
