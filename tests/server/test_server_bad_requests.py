"""Acceptance 5: bad requests get the real server's errors, and the server keeps serving."""

from __future__ import annotations

import http.client

import pytest
import requests
from server_helpers import call, login, token, write_tree

pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]  # about the embedded server itself


def _meta(response: requests.Response) -> tuple[int, int, int]:
    body = response.json()
    assert body["data"] == {}
    return response.status_code, body["meta"]["result_code"], body["meta"]["result_subcode"]


def test_wrong_credentials_are_refused(local_server):
    assert _meta(login(local_server, secret="wrong")) == (401, 401, 22)
    assert _meta(login(local_server, key="WRONG")) == (401, 401, 22)
    assert _meta(call(local_server, "tasks.get_all", {})) == (401, 401, 20)
    assert _meta(call(local_server, "tasks.get_all", {}, tok="not.a.token")) == (401, 401, 21)
    assert login(local_server).status_code == 200


def test_sdk_with_wrong_credentials_is_refused(sdk):
    result = sdk.run("wrong_credentials.py", CLEARML_API_SECRET_KEY="wrong")
    assert result["refused"] is True, result


def test_unknown_endpoint_is_an_error(local_server):
    tok = token(local_server)
    response = call(local_server, "tasks.frobnicate", {}, tok=tok)
    assert _meta(response) == (404, 404, 0)
    assert (
        response.json()["meta"]["result_msg"]
        == "Unable to find endpoint for name tasks.frobnicate and version 2.23"
    )
    bare = requests.get(f"{local_server.api_url}/nothing/here", timeout=30)
    assert bare.status_code == 404 and bare.json()["meta"]["result_code"] == 404


def test_editing_a_finalized_version_needs_force(sdk, tmp_path):
    dataset_id = sdk.run("finalized_dataset.py", str(write_tree(tmp_path / "src", {"f.txt": b"f"})))["id"]
    tok = token(sdk.server)
    refused = call(sdk.server, "tasks.edit", {"task": dataset_id, "tags": ["x"]}, tok=tok)
    assert _meta(refused) == (400, 400, 110)
    assert refused.json()["meta"]["result_msg"] == "Invalid task status: expected=created, status=completed"
    forced = call(sdk.server, "tasks.edit", {"task": dataset_id, "tags": ["x"], "force": True}, tok=tok)
    assert forced.status_code == 200 and forced.json()["data"]["fields"]["tags"] == ["x"]
    not_deleted = call(sdk.server, "tasks.delete", {"task": dataset_id}, tok=tok)
    assert _meta(not_deleted) == (400, 400, 123)


def test_malformed_json_gets_a_400_envelope_and_the_server_keeps_serving(local_server):
    tok = token(local_server)
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2", b'"a string"'):
        response = call(local_server, "tasks.get_all", tok=tok, raw=raw)
        assert _meta(response) == (400, 400, 0)
    assert call(local_server, "tasks.get_all", {}, tok=tok).json()["meta"]["result_code"] == 200


def _raw_file_request(server, method: str, path: str, tok: str | None) -> int:
    """Sends ``path`` byte for byte (no client-side normalisation of ``..``); returns the HTTP status."""
    conn = http.client.HTTPConnection("127.0.0.1", server.files_port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if tok:
            conn.putheader("Authorization", f"Bearer {tok}")
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/../server.sqlite3",
        "/a/../../credentials.json",
        "/%2e%2e/credentials.json",
        "/a/%2E%2E/%2e%2e/server.sqlite3",
        "/x%00y",
        "/a%5c..%5c..%5ccredentials.json",
    ],
)
def test_file_server_refuses_paths_escaping_its_root(local_server, path):
    tok = token(local_server)
    assert _raw_file_request(local_server, "GET", path, tok) == 400
    assert _raw_file_request(local_server, "DELETE", path, tok) == 400


@pytest.mark.parametrize(
    "name", ["../escape.txt", "/../escape.txt", "//etc/escape.txt", "a/../../escape.txt", "x\x00.txt"]
)
def test_file_server_refuses_uploads_escaping_its_root(local_server, tmp_path, name):
    headers = {"Authorization": f"Bearer {token(local_server)}"}
    response = requests.post(
        f"{local_server.files_url}/", files={name: (name, b"data")}, headers=headers, timeout=30
    )
    assert response.status_code == 400
    assert not list(local_server.data_dir.rglob("escape.txt"))
