"""``plan --format markdown`` writes only what it is asked to: a plan too long for a comment is trimmed, and the
note says how to get the full plan instead of pointing at a file written unasked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.planning import _print_plan
from reconciler.model import VersionKey
from reconciler.plan.actions import CreateVersion, Plan
from reconciler.plancodec import plan_from_json


def _long_plan() -> Plan:
    return Plan(actions=tuple(CreateVersion(VersionKey("proj", f"dataset-{i:04d}", "1.0.0"), ())
                              for i in range(3000)), observed_fingerprint="f")


def test_a_trimmed_markdown_plan_writes_no_file_unasked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _print_plan(_long_plan(), "markdown", None, "20")
    out = capsys.readouterr().out
    assert "plan trimmed to fit a comment" in out
    assert "Run `reconcile plan` locally for the full plan." in out
    assert list(tmp_path.iterdir()) == []


def test_a_trimmed_markdown_plan_points_at_the_plan_saved_with_out(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "plan.json"
    plan = _long_plan()
    _print_plan(plan, "markdown", saved, "20")
    assert f"The full plan is in `{saved}`." in capsys.readouterr().out
    assert plan_from_json(json.loads(saved.read_text())) == plan
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
