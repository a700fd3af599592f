"""``reconcile server`` runs in the foreground, prints pasteable exports and stops cleanly on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import requests


def test_server_command_prints_exports_that_work(tmp_path):
    argv = [
        sys.executable,
        "-m",
        "reconciler.cli",
        "server",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "d"),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(5)]
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        assert all(line.startswith("export CLEARML_") for line in lines), lines
        login = requests.get(
            f"{exports['CLEARML_API_HOST']}/auth.login",
            timeout=30,
            auth=(exports["CLEARML_API_ACCESS_KEY"], exports["CLEARML_API_SECRET_KEY"]),
        )
        assert login.status_code == 200 and login.json()["data"]["token"]
        assert exports["CLEARML_FILES_HOST"] != exports["CLEARML_API_HOST"]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert (tmp_path / "d" / "credentials.json").exists()
