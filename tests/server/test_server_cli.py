"""``reconcile server`` runs in the foreground, prints pasteable exports and stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_server_command_prints_exports_that_work(tmp_path, stop):
    """Stopped as CI runners (SIGTERM) and terminals (SIGINT) stop it. The test's own process may ignore SIGINT
    (a background job in a shell): the server is started with SIGINT as a terminal gives it, and killed if a
    signal did not stop it, so that no server outlives the test."""
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
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
        process.send_signal(stop)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert (tmp_path / "d" / "credentials.json").exists()
