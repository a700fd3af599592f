"""Hostile manifests are refused cheaply with one located line: too large (before parsing), nested too deep
(before the recursion that would exhaust the stack), or nested too deep through aliases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.diagnostics import ReconcileError
from reconciler.manifest import load_manifests
from reconciler.manifest.yamldoc import MAX_DEPTH, MAX_MANIFEST_BYTES

REPO = Path(__file__).resolve().parents[1]
HEADER = "apiVersion: reconciler/v1\nkind: Dataset\nproject: proj\nname: things\n"
VERSIONS = "versions:\n  - version: 1.0.0\n    sources:\n      - {url: 'https://example.com/a.bin'}\n"


def validate(tmp_path: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "reconciler.cli", "validate", *files], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[:2000]
    return lines[0]


def nested_metadata(levels: int) -> str:
    """A manifest whose deepest value sits ``levels`` levels down (the document itself is level 1)."""
    inner = "1"
    for _ in range(levels - 3):  # the document, its 'metadata' map and the innermost value are three levels
        inner = "{k: " + inner + "}"
    return HEADER + VERSIONS + f"metadata: {{k: {inner}}}\n"


@pytest.mark.parametrize("name,text,where", [
    ("flow.yaml", "x: " + "[" * 400 + "]" * 400 + "\n", "flow.yaml:1:67:"),
    ("block-list.yaml", "x:\n" + "".join("  " * i + "-\n" for i in range(400)), "block-list.yaml:65:"),
    ("block-map.yaml", "".join("  " * i + f"k{i}:\n" for i in range(400)), "block-map.yaml:64:"),
    ("very-deep.yaml", "x: " + "[" * 100_000 + "\n", "very-deep.yaml:1:67:"),
])
def test_deep_nesting_is_one_located_line(tmp_path: Path, name: str, text: str, where: str) -> None:
    (tmp_path / name).write_text(text)
    line = one_line(validate(tmp_path, name))
    assert line.startswith(where) and f"error: values nested more than {MAX_DEPTH} levels deep" in line, line


def test_the_depth_limit_is_exact(tmp_path: Path) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text(nested_metadata(MAX_DEPTH))
    assert len(load_manifests([ok]).all_versions()) == 1
    deep = tmp_path / "deep.yaml"
    deep.write_text(nested_metadata(MAX_DEPTH + 1))
    with pytest.raises(ReconcileError) as err:
        load_manifests([deep])
    last = deep.read_text().splitlines()[-1]  # the key of the innermost map is the first value too deep
    assert str(err.value) == (f"{deep}:{len(deep.read_text().splitlines())}:{last.rindex('k') + 1}: error: values "
                              f"nested more than {MAX_DEPTH} levels deep")


def test_aliases_cannot_nest_deeper_than_the_limit(tmp_path: Path) -> None:
    lines = [f"a0: &a0 {'[' * 40}1{']' * 40}"]
    lines += [f"a{i}: &a{i} {'[' * 40}*a{i - 1}{']' * 40}" for i in range(1, 30)]
    (tmp_path / "aliases.yaml").write_text("\n".join(lines) + "\n")
    line = one_line(validate(tmp_path, "aliases.yaml"))
    assert line.startswith("aliases.yaml:") and "levels deep (after expanding aliases)" in line, line


def test_a_50_mb_manifest_is_refused_at_once_and_located(tmp_path: Path) -> None:
    row = "      - {url: 'https://example.com/some/long/path/to/a/file.bin'}\n"
    big = tmp_path / "big.yaml"
    with open(big, "w") as f:
        f.write(HEADER + "versions:\n  - version: 1.0.0\n    sources:\n")
        f.write(row * (50_000_000 // len(row)))
    assert big.stat().st_size > 50_000_000
    start = time.monotonic()
    with pytest.raises(ReconcileError) as err:
        load_manifests([big])
    assert time.monotonic() - start < 0.5
    head = big.read_bytes()[:MAX_MANIFEST_BYTES]
    line, col = head.count(b"\n") + 1, MAX_MANIFEST_BYTES - head.rfind(b"\n")
    assert str(err.value) == (f"{big}:{line}:{col}: error: manifest larger than 1 MiB, the limit per file: "
                              "split it into several files")
    start = time.monotonic()
    cli_line = one_line(validate(tmp_path, "big.yaml"))
    assert time.monotonic() - start < 5  # a fresh interpreter included; parsing it took minutes
    assert cli_line.startswith(f"big.yaml:{line}:{col}: error: manifest larger than 1 MiB"), cli_line


def test_one_byte_over_the_limit_is_refused_and_at_the_limit_is_read(tmp_path: Path) -> None:
    comment = "#" * 99 + "\n"
    body = HEADER + VERSIONS
    at_limit = body + comment * ((MAX_MANIFEST_BYTES - len(body)) // len(comment))
    at_limit += "#" * (MAX_MANIFEST_BYTES - len(at_limit) - 1) + "\n"
    assert len(at_limit) == MAX_MANIFEST_BYTES
    (tmp_path / "at.yaml").write_text(at_limit)
    assert len(load_manifests([tmp_path / "at.yaml"]).all_versions()) == 1
    (tmp_path / "over.yaml").write_text(at_limit + "\n")
    with pytest.raises(ReconcileError, match="manifest larger than 1 MiB"):
        load_manifests([tmp_path / "over.yaml"])
