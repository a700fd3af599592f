"""A plan of 100,000 files, then a pull of them, as a user runs them: their memory stays bounded (measured, never
timed).

The JSON plan of a new dataset lists every file to upload; it is written as it is produced, so the process never
holds its text or a dict per file. Measured on Linux with CPython 3.11: about 120 MiB for the JSON plan (235 MiB
when the whole text and a dict per file were held), 170 MiB for the first plan, which hashes every file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import Env, manifest

# about this tool's own memory, whatever the server: run once, against the embedded server
pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]

FILES = 100_000
JSON_PLAN_MIB = 190  # above what streaming needs, below what holding the text costs
FIRST_PLAN_MIB = 256
PULL_MIB = 160  # about 120: the file list decoded piece by piece into a compact list (200 when it was read whole)


# Started from a small process of its own: a child of the test process would count the test process's memory as its
# own peak (Linux keeps the high-water mark of the memory a process had before exec).
MEASURE = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def _peak_mib(env: Env, *args: str) -> tuple[int, float]:
    """Exit code and peak resident memory (MiB) of ``reconcile *args``."""
    measured = env.work / "measured.txt"
    with open(env.work / "stdout.txt", "wb") as stdout:
        subprocess.run([sys.executable, "-I", "-S", "-c", MEASURE, str(measured), sys.executable, "-m",
                        "reconciler.cli", *args], cwd=env.work, env=env.vars(), stdout=stdout, check=True)
    code, kib = measured.read_text().split()
    return int(code), int(kib) / 1024


def test_the_plan_of_a_hundred_thousand_files_streams_in_bounded_memory(env: Env) -> None:
    data = env.work / "data"
    for i in range(FILES):
        folder = data / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.bin").write_bytes(b"%d" % i)
    (env.work / "manifests").mkdir()
    (env.work / "manifests" / "big.yaml").write_text(manifest(env.project, "big", "- version: 1.0.0\n  sources:\n"
                                                                  "    - path: ../data\n"))
    code, cold = _peak_mib(env, "plan", "manifests")  # hashes every file
    assert code == 0
    code, peak = _peak_mib(env, "plan", "--format", "json", "--out", "plan.json", "manifests")
    assert code == 0, (env.work / "stdout.txt").read_text()[-2000:]
    saved = json.loads(Path(env.work / "plan.json").read_text())
    printed = json.loads((env.work / "stdout.txt").read_text())
    assert saved == printed
    [sync] = [a for a in saved["actions"] if a["type"] == "sync_files"]
    assert len(sync["upload"]) == FILES and saved["summary"]["upload_files"] == FILES
    text_mib = (env.work / "plan.json").stat().st_size / 2**20
    assert text_mib > 20
    assert peak < JSON_PLAN_MIB and cold < FIRST_PLAN_MIB, (peak, cold, text_mib)
    assert env.reconcile("apply", "--auto-approve", "manifests", timeout=600).returncode == 0
    code, pulled = _peak_mib(env, "pull", f"{env.project}/big@1.0.0", "pulled", "--format", "json")
    assert code == 0, (env.work / "stdout.txt").read_text()[-2000:]
    assert json.loads((env.work / "stdout.txt").read_text())["fetched"] == FILES
    assert (env.work / "pulled" / "d099" / "f099999.bin").read_bytes() == b"99999"
    assert pulled < PULL_MIB, pulled
