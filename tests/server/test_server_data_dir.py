"""The data directory's credentials and database: rotating the key pair revokes tokens, a corrupt file is one line
naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from server_helpers import call, login, token

from reconciler.localserver import CorruptDatabase, DataDirError, LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]  # about the embedded server itself


def _refused(server: LocalServer, tok: str) -> bool:
    response = call(server, "tasks.get_all", {}, tok=tok)
    meta = response.json()["meta"]
    return (response.status_code, meta["result_code"], meta["result_subcode"]) == (401, 401, 21)


def _upload_refused(server: LocalServer, tok: str) -> bool:
    response = requests.post(
        f"{server.files_url}/",
        files={"/f.txt": ("f.txt", b"f")},
        headers={"Authorization": f"Bearer {tok}"},
        timeout=30,
    )
    return response.status_code == 401


def test_other_keys_at_start_revoke_tokens_of_the_old_pair(tmp_path):
    with LocalServer(tmp_path / "d") as first:
        old = token(first)
    with LocalServer(tmp_path / "d", access_key="NEWKEY", secret_key="new-secret") as rotated:
        assert _refused(rotated, old) and _upload_refused(rotated, old)
        assert login(rotated).status_code == 200 and not _refused(rotated, token(rotated))
    with LocalServer(tmp_path / "d") as back:  # the stored pair again: its tokens are valid again
        assert not _refused(back, old)


def test_editing_the_credentials_file_rotates_the_pair_while_running(tmp_path):
    with LocalServer(tmp_path / "d") as server:
        old_key, old_secret = server.access_key, server.secret_key
        old = token(server)
        assert not _refused(server, old)
        path = server.data_dir / "credentials.json"
        doc = json.loads(path.read_text())
        doc.update(access_key="ROTATEDKEY", secret_key="rotated-secret")
        path.write_text(json.dumps(doc))
        assert _refused(server, old) and _upload_refused(server, old)
        assert login(server, old_key, old_secret).status_code == 401
        fresh = login(server, "ROTATEDKEY", "rotated-secret")
        assert fresh.status_code == 200
        assert not _refused(server, fresh.json()["data"]["token"])
        path.write_text("{ half written")  # unusable: the rotated pair stays in force
        assert not _refused(server, fresh.json()["data"]["token"])


def _corrupt(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(os.urandom(8192))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:1500])
    else:
        raw = bytearray(path.read_bytes())
        raw[4096:8192] = os.urandom(4096)  # a page of the tasks table
        path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["garbage", "truncated", "scribbled"])
def test_a_corrupt_database_is_one_line_naming_the_file(tmp_path, how):
    data_dir = tmp_path / "d"
    with LocalServer(data_dir) as server:
        tok = token(server)
        for i in range(40):
            call(server, "projects.create", {"name": f"project {i} " + "x" * 200}, tok=tok)
    database = data_dir / "server.sqlite3"
    for leftover in ("server.sqlite3-wal", "server.sqlite3-shm"):
        (data_dir / leftover).unlink(missing_ok=True)
    _corrupt(database, how)
    server = LocalServer(data_dir)
    with pytest.raises(CorruptDatabase) as caught:
        server.start()
    message = str(caught.value)
    assert str(database) in message and "\n" not in message
    assert isinstance(caught.value, ValueError)
    server.stop()  # nothing was left running
    database.unlink()
    with LocalServer(data_dir) as fresh:  # moved away: the server starts empty, with the same credentials
        assert call(fresh, "projects.get_all", {}, tok=tok).json()["data"]["projects"] == []


def test_corrupt_credentials_are_one_line_naming_the_file(tmp_path):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "credentials.json").write_text('{"access_key": ')
    with pytest.raises(DataDirError, match="credentials.json"):
        LocalServer(data_dir).start()
    (data_dir / "credentials.json").write_text('{"access_key": "A"}')
    with pytest.raises(DataDirError, match="missing or empty secret_key"):
        LocalServer(data_dir).start()


def test_the_server_command_prints_one_line_for_a_corrupt_database(tmp_path):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "server.sqlite3").write_bytes(b"this is not a database" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "server", "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.sqlite3" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert "cannot join thread" not in result.stderr
