"""The manifest corpus: every case in tests/manifests/invalid/ fails with exactly its expected diagnostics.

A case is a ``*.yaml`` file or a folder; its expected output, one ``file:line:col: error: message`` line per
diagnostic as ``reconcile validate`` prints it from inside tests/manifests/invalid/, is the sibling
``<case>.expected``. Set ``RECONCILE_REGEN_EXPECTED=1`` to rewrite the expectations, then review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.diagnostics import ReconcileError
from reconciler.manifest import load_manifests

CORPUS = Path(__file__).parent / "manifests"
INVALID = CORPUS / "invalid"
VALID = CORPUS / "valid"
REPO_MANIFESTS = Path(__file__).parent.parent / "manifests"
REGEN = os.environ.get("RECONCILE_REGEN_EXPECTED") == "1"


def _cases() -> list[str]:
    return sorted(p.name for p in INVALID.iterdir() if p.is_dir() or p.suffix in (".yaml", ".yml"))


def _expected(case: str) -> list[str]:
    return (INVALID / f"{Path(case).stem}.expected").read_text(encoding="utf-8").splitlines()


def test_corpus_has_at_least_40_distinct_cases() -> None:
    cases = _cases()
    assert len(cases) >= 40
    expectations = {tuple(_expected(c)) for c in cases}
    assert len(expectations) == len(cases), "two cases expect the same diagnostics"


@pytest.mark.parametrize("case", _cases())
def test_invalid_case_reports_expected_diagnostics(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    with pytest.raises(ReconcileError) as caught:
        load_manifests([case])
    lines = [str(d) for d in caught.value.diagnostics]
    if REGEN:
        (INVALID / f"{Path(case).stem}.expected").write_text("".join(f"{line}\n" for line in lines))
    assert lines == _expected(case)
    assert all(
        d.span is not None and d.span.file.startswith(Path(case).stem) for d in caught.value.diagnostics
    )


@pytest.mark.parametrize("case", _cases())
def test_invalid_case_exits_1_without_traceback(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    result = CliRunner().invoke(cli, ["validate", case])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == _expected(case)


def test_cli_json_format_lists_every_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    result = CliRunner().invoke(cli, ["validate", "--format", "json", "multi-document-errors.yaml"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert [(d["line"], d["col"]) for d in report["diagnostics"]] == [(17, 13), (26, 15)]


@pytest.mark.parametrize(
    "case",
    [
        "yaml-tab-indentation.yaml",
        "yaml-python-object-tag.yaml",
        "not-utf8.yaml",
        "unknown-source-key.yaml",
        "parent-cycle-across-datasets",
    ],
)
def test_installed_command_exits_1_without_traceback(case: str) -> None:
    """The real console script in a fresh process, on a case of each stage (YAML, tags, schema, semantics)."""
    command = Path(sys.executable).with_name("reconcile")
    proc = subprocess.run(
        [str(command), "validate", case], cwd=INVALID, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == _expected(case)


@pytest.mark.parametrize(
    "target",
    [VALID, REPO_MANIFESTS, REPO_MANIFESTS / "sample", REPO_MANIFESTS / "torchvision"],
    ids=["tests-valid", "manifests", "manifests-sample", "manifests-torchvision"],
)
def test_valid_folders_exit_0(target: Path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ")


@pytest.mark.parametrize(
    "case", sorted(p.name for p in VALID.iterdir() if p.name not in ("data",) and not p.name.startswith("."))
)
def test_each_valid_case_alone(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every valid case is self-contained except where it names another case's dataset as a parent."""
    monkeypatch.chdir(VALID)
    needs = {"subprojects.yml": ["full.yaml"]}
    state = load_manifests([case, *needs.get(case, [])])
    assert state.datasets
