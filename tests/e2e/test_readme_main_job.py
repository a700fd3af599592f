"""The README's main job, as a newcomer runs it: the sample manifests against the embedded server, offline."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def readme_main_command() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"Run the main job.*?```bash\n(.*?)\n```", text, re.S)
    assert block, "README.md lost its main-job command"
    last = block.group(1).split("&&")[-1].strip()  # the part after the venv set-up
    words = shlex.split(last)
    assert words[0].endswith("reconcile"), last
    return words[1:]


@pytest.mark.embedded_only  # --local: the embedded server, its credentials file
def test_readme_main_job_runs_offline_and_is_idempotent(tmp_path: Path):
    args = readme_main_command()
    assert args[:3] == ["--local", "apply", "--auto-approve"] and args[-1] == "manifests/sample/"
    work = tmp_path / "checkout"
    shutil.copytree(REPO / "manifests", work / "manifests")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARML_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"), NO_COLOR="1",
               # no network: any attempt to reach outside loopback fails at once
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost")
    (tmp_path / "home").mkdir()

    def reconcile(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler.cli", *argv], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)

    first = reconcile(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 versions created" in first.stdout and "Traceback" not in first.stderr
    assert (work / ".reconcile" / "credentials.json").is_file()
    again = reconcile("--local", "plan", "--detailed-exitcode", "manifests/sample/")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
