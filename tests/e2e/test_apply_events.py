"""What apply tells while it works: the JSON event stream (golden), and upload progress on a pseudo-terminal and
in a log (the CLI against the test's server; uploads slowed by a proxy in front of its file server).

``RECONCILE_PROGRESS_INTERVAL`` forces the progress interval so that small uploads show progress quickly.
Regenerate the golden stream on purpose with ``UPDATE_GOLDEN=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .helpers import Env, manifest, read_terminal, write_tree
from .proxy import Proxies, Rule

GOLDEN = Path(__file__).parents[1] / "golden" / "apply" / "events.jsonl"
MIB = 1 << 20

VERSIONS = """\
- version: 1.0.0
  sources: [{path: ../data/v1}]
- version: 1.1.0
  parent: 1.0.0
  sources: [{path: ../data/v2}]
  remove: [old]
  publish: true
"""


def _normalised(line: str, project: str) -> dict[str, Any]:
    obj = json.loads(line)
    obj["@timestamp"] = "<time>"
    for key in ("seconds", "rate", "reconcile"):
        if key in obj:
            obj[key] = "<n>"
    if obj.get("type") == "chunk_uploaded":
        obj["stored_bytes"] = "<n>"  # a zip's size depends on the zlib at hand
    text = json.dumps(obj, sort_keys=False).replace(project, "<project>")
    text = re.sub(r"\b[0-9a-f]{32}\b", "<id>", text)
    text = re.sub(r"(done in|in) \d+\.\d+s", r"\1 <t>s", text)
    text = re.sub(r"\d+(\.\d)? [KMGT]?i?B/s(, \w+ left)?", "<rate>", text)
    text = re.sub(r"; \d+(\.\d)? [KMG]?i?B stored\)", "; <n> stored)", text)
    text = re.sub(r"reconcile \d+\.\d+\.\d+[\w.+-]*", "reconcile <v>", text)
    return json.loads(text)


def test_apply_format_json_is_one_event_per_line_as_the_golden_stream(env: Env) -> None:
    write_tree(env.work / "data" / "v1", {"a.txt": "alpha", "old/x.txt": "x-ray", "sub/b.txt": "bravo"})
    write_tree(env.work / "data" / "v2", {"a.txt": "ALPHA v2", "new/d.txt": "delta"})
    write_tree(env.work / "manifests", {"ds.yaml": manifest(env.project, "things", VERSIONS)})
    vars_ = {**env.vars(), "RECONCILE_PROGRESS_INTERVAL": "0"}
    first = env.reconcile("apply", "--auto-approve", "--format", "json", "--workers", "1", "manifests", env=vars_)
    assert first.returncode == 0, first.stdout + first.stderr
    again = env.reconcile("apply", "--auto-approve", "--format", "json", "manifests", env=vars_)
    assert again.returncode == 0, again.stdout + again.stderr
    unconfirmed = env.reconcile("apply", "--format", "json", "manifests", env=vars_)
    assert unconfirmed.returncode == 1 and "--auto-approve" in unconfirmed.stderr, unconfirmed.stderr
    assert first.stderr == "" and again.stderr == ""  # everything is on stdout, as events

    stream = [_normalised(line, env.project) for run in (first, again) for line in run.stdout.splitlines()]
    got = "".join(json.dumps(e) + "\n" for e in stream)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text(), "the event stream differs from tests/golden/apply/events.jsonl " \
                                      "(UPDATE_GOLDEN=1 regenerates it)"
    assert [e["type"] for e in stream].count("start") == 2
    assert stream[-1]["type"] == "apply_complete" and stream[-1]["changed"] is False


def _slow_upload_project(env: Env, proxies: Proxies) -> dict[str, str]:
    """4 MiB in 1 MiB chunks, each held 0.4 s by the proxy in front of the file server: a 2-second upload."""
    write_tree(env.work / "data" / "big", {f"part{i}.bin": os.urandom(MIB) for i in range(4)})
    write_tree(env.work / "manifests", {"big.yaml": manifest(env.project, "big", """\
        - version: 1.0.0
          sources: [{path: ../data/big}]
        """).replace("versions:\n", "upload: {chunk_size_mb: 1}\nversions:\n")})
    proxies.files.rules.append(Rule("/", "stall", method="POST", seconds=0.4, times=0))
    return proxies.vars()


def test_a_terminal_shows_live_progress_of_an_upload(env: Env, proxies: Proxies) -> None:
    vars_ = {**_slow_upload_project(env, proxies), "RECONCILE_PROGRESS_INTERVAL": "0", "COLUMNS": "200"}
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "apply", "--auto-approve", "--workers", "1",
                             "manifests"], cwd=env.work, env=vars_, stdin=subprocess.DEVNULL, stdout=secondary,
                            stderr=secondary)
    os.close(secondary)
    seen = read_terminal(primary, proc, timeout=240)
    assert proc.returncode == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    env.assert_no_secret(text)
    label = f"uploading {env.project}/big@1.0.0: "
    draws = [d for d in text.split("\r\x1b[K") if d.startswith(label)]
    assert len(draws) >= 2, text  # redrawn while the upload runs
    assert any(re.search(r"MiB/4\.0 MiB \(\d+%\), [\d.]+ [KM]i?B/s, \S+ left", d) for d in draws), draws
    assert "Apply complete!" in text


def test_without_a_terminal_progress_is_a_plain_line_per_version_per_interval(env: Env, proxies: Proxies) -> None:
    vars_ = {**_slow_upload_project(env, proxies), "RECONCILE_PROGRESS_INTERVAL": "0.5"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "apply", "--auto-approve", "--workers", "1",
                           "manifests"], cwd=env.work, env=vars_, capture_output=True, text=True, timeout=240)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"uploading {env.project}/big@1.0.0: ")]
    assert 1 <= len(lines) <= took / 0.5 + 1, proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert "uploading" not in proc.stdout.replace("  uploading 4 files", "")  # stdout keeps its lines

    quiet = {**vars_}
    quiet.pop("RECONCILE_PROGRESS_INTERVAL")  # the default: one line per version per 10 s at most
    write_tree(env.work / "data" / "more", {f"part{i}.bin": os.urandom(MIB) for i in range(4)})
    big = env.work / "manifests" / "big.yaml"
    big.write_text(big.read_text() + "  - version: 1.1.0\n    parent: 1.0.0\n    sources: [{path: ../data/more}]\n")
    proc = subprocess.run([sys.executable, "-m", "reconciler.cli", "apply", "--auto-approve", "--workers", "1",
                           "manifests"], cwd=env.work, env=quiet, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "uploading" not in proc.stderr, proc.stderr  # a second's upload: under 10 s, no progress line
