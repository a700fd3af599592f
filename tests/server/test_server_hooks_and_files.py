"""The file server round trip, the request counter and the upload fault injector."""

from __future__ import annotations

import requests
from server_helpers import call, random_bytes, token

from reconciler.localserver import LocalServer


def _auth(server: LocalServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(server)}"}


def _upload(server: LocalServer, name: str, content: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{server.files_url}/", files={name: (name, content)}, headers=headers, timeout=30)


def test_upload_download_head_delete(local_server):
    headers = _auth(local_server)
    content = random_bytes(5, 100_000)
    assert _upload(local_server, "/p/.datasets/x/blob.bin", content, headers).status_code == 200
    url = f"{local_server.files_url}/p/.datasets/x/blob.bin"
    assert requests.get(url, headers=headers, timeout=30).content == content
    head = requests.head(url, headers=headers, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(content)
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer forged"}, timeout=30).status_code == 401
    assert _upload(local_server, "/unauthorized.bin", b"x", {}).status_code == 401
    assert requests.delete(url, headers=headers, timeout=30).status_code == 200
    assert requests.get(url, headers=headers, timeout=30).status_code == 404
    assert requests.delete(url, headers=headers, timeout=30).status_code == 404


def test_request_counter_counts_per_endpoint_and_resets(local_server):
    tok = token(local_server)
    local_server.stats.reset()
    call(local_server, "tasks.get_all", {}, tok=tok)
    call(local_server, "tasks.get_all", {}, tok=tok)
    call(local_server, "projects.get_all", {}, tok=tok)
    _upload(local_server, "/a.txt", b"a", {"Authorization": f"Bearer {tok}"})
    assert local_server.stats.requests == {"tasks.get_all": 2, "projects.get_all": 1, "files.upload": 1}
    assert local_server.stats.total() == 4
    local_server.stats.reset()
    assert local_server.stats.total() == 0


def test_fault_injector_fails_uploads_after_n(local_server):
    headers = _auth(local_server)
    local_server.faults.fail_file_uploads_after = 2
    statuses = [_upload(local_server, f"/f{i}.txt", b"x", headers).status_code for i in range(4)]
    assert statuses == [200, 200, 500, 500]
    assert not (local_server.data_dir / "files" / "f2.txt").exists()
    local_server.faults.fail_file_uploads_after = None
    assert _upload(local_server, "/f9.txt", b"x", headers).status_code == 200


def test_stop_releases_the_data_dir_and_a_new_server_serves_it(tmp_path):
    server = LocalServer(tmp_path / "d").start()
    tok = token(server)
    assert call(server, "projects.create", {"name": "kept"}, tok=tok).status_code == 200
    server.stop()
    server.stop()  # idempotent
    with LocalServer(tmp_path / "d") as again:
        projects = call(again, "projects.get_all", {}, tok=token(again)).json()["data"]["projects"]
        assert [p["name"] for p in projects] == ["kept"]
