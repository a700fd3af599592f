"""Hostile input at the edges of the embedded server, over real HTTP on a loopback port.

* Credentials are checked when the headers are in: an unauthenticated request announcing a 1 GiB body is
  answered at once, without the server reading (spooling, buffering) the body.
* Bodies are capped: small for API calls and for anything unauthenticated, configurable for uploads.
* Malformed JSON, JSON nested 100,000 deep, wrongly typed fields and odd query strings get 400 in the real
  envelope, never 500 and never a traceback in the log.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from server_helpers import call, token

from reconciler.localserver import LocalServer
from reconciler.localserver.endpoints import all_endpoints

pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]  # about the embedded server itself

GIB = 1024**3


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A server with small limits: 4 KiB API bodies, 64 KiB uploads."""
    with LocalServer(tmp_path / "data", max_api_body=4096, max_upload=65536) as server:
        yield server


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="reconciler.localserver")
    caplog.set_level(logging.INFO, logger="waitress")
    return caplog


def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


def _exchange(port: int, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Sends ``head`` (request line and headers) and ``body`` on a fresh connection; returns the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def _meta(body: bytes) -> tuple[int, int]:
    doc = json.loads(body)
    assert doc["data"] == {}
    return doc["meta"]["result_code"], doc["meta"]["result_subcode"]


def _huge_post(path: str, *, auth: str = "", length: int = GIB, extra: str = "") -> str:
    authorization = f"Authorization: {auth}\n" if auth else ""
    return (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"{authorization}Content-Length: {length}\n{extra}"
    )


# ------------------------------------------------------------------ nothing is read before the credentials
@pytest.mark.parametrize("auth", ["", "Bearer not.a.token", "Basic AAAA"])
def test_unauthenticated_gigabyte_api_request_is_refused_from_its_headers(local_server, auth):
    # the body is never sent: an answer proves the server did not wait for (read) it
    status, headers, body = _exchange(local_server.port, _huge_post("/v2.23/tasks.get_all", auth=auth))
    assert status == 401 and headers["connection"] == "close"
    assert _meta(body) == (401, 21 if auth.startswith("Bearer") else 20)


def test_unauthenticated_upload_is_refused_from_its_headers(local_server):
    head = _huge_post("/datasets/x.zip", extra="Expect: 100-continue\n").replace(
        "application/json", "multipart/form-data; boundary=b"
    )
    status, headers, body = _exchange(local_server.files_port, head)
    assert status == 401 and headers["connection"] == "close"
    assert "missing credentials" in json.loads(body)["error"]


def test_the_server_stops_taking_a_refused_body(local_server):
    """Streaming 256 MiB after refused headers: the connection is closed long before it is all sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", local_server.port), timeout=10) as sock:
        sock.sendall(_huge_post("/v2.23/tasks.create").replace("\n", "\r\n").encode() + b"\r\n")
        chunk = b"x" * 1024**2
        with pytest.raises(OSError):  # broken pipe / reset once the server has answered and closed
            for _ in range(256):
                sock.sendall(chunk)
                sent += len(chunk)
    assert sent < 64 * 1024**2, sent


def test_public_endpoints_cap_their_bodies(local_server):
    status, _, body = _exchange(local_server.port, _huge_post("/debug.ping"))
    assert status == 413 and _meta(body) == (413, 0)
    status, _, body = _exchange(local_server.port, _huge_post("/auth.login"))
    assert status == 413 and _meta(body) == (413, 0)
    chunked = "POST /debug.ping HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
    status, _, body = _exchange(local_server.port, chunked)
    assert status == 411 and _meta(body) == (411, 0)
    small = json.dumps({"x": "y" * 1000}).encode()
    status, _, body = _exchange(local_server.port, _huge_post("/debug.ping", length=len(small)), small)
    assert status == 200 and json.loads(body)["data"] == {"msg": "ClearML server"}


def test_many_refused_gigabyte_requests_at_once_leave_the_server_serving(local_server):
    def refused() -> int:
        return _exchange(local_server.port, _huge_post("/debug.ping"))[0]

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(refused())) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [413] * 12
    assert call(local_server, "tasks.get_all", {}, tok=token(local_server)).status_code == 200


# ------------------------------------------------------------------ limits for authenticated requests
def test_api_bodies_over_the_limit_are_refused(small_server):
    tok = token(small_server)
    fits = {"name": "y" * 3000}
    assert call(small_server, "projects.create", fits, tok=tok).status_code == 200
    over = call(small_server, "projects.create", {"name": "y" * 5000}, tok=tok)
    assert over.status_code == 413 and _meta(over.content) == (413, 0)
    assert "4096" in over.json()["meta"]["result_msg"]


def test_uploads_over_the_limit_are_refused(small_server):
    headers = {"Authorization": f"Bearer {token(small_server)}"}
    url = f"{small_server.files_url}/"
    ok = requests.post(url, files={"/a.bin": ("a.bin", b"a" * 30000)}, headers=headers, timeout=30)
    assert ok.status_code == 200
    try:
        over = requests.post(url, files={"/b.bin": ("b.bin", b"b" * 4 * 1024**2)}, headers=headers, timeout=30)
    except requests.ConnectionError:
        pass  # the server answered 413 and closed while the client was still sending
    else:
        assert over.status_code == 413
    head = _huge_post("/c.bin", auth=headers["Authorization"], length=70000)
    status, _, body = _exchange(small_server.files_port, head)
    assert status == 413 and "65536" in json.loads(body)["error"]
    assert not (small_server.data_dir / "files" / "b.bin").exists()


def test_limits_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONCILE_SERVER_MAX_API_BODY", "2K")
    monkeypatch.setenv("RECONCILE_SERVER_MAX_UPLOAD", "1M")
    server = LocalServer(tmp_path / "d")
    assert (server.limits.api, server.limits.upload) == (2048, 1024**2)
    monkeypatch.setenv("RECONCILE_SERVER_MAX_UPLOAD", "lots")
    with pytest.raises(ValueError, match="RECONCILE_SERVER_MAX_UPLOAD"):
        LocalServer(tmp_path / "d")


# ------------------------------------------------------------------ malformed requests: 400, never 500
def test_json_nested_100000_deep_is_a_400(local_server, server_log):
    tok = token(local_server)
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"[" * 100_000):
        response = call(local_server, "tasks.get_all", tok=tok, raw=raw)
        assert response.status_code == 400 and _meta(response.content) == (400, 0)
    deep_but_fine = {"runtime": json.loads('{"a":' * 40 + "1" + "}" * 40)}
    assert call(local_server, "tasks.get_all", deep_but_fine, tok=tok).status_code == 200
    lines = b'{"type": "log", "task": "x"}\n' + b"[" * 100_000
    batch = requests.post(
        f"{local_server.api_url}/v2.23/events.add_batch",
        data=lines,
        headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json-lines"},
        timeout=30,
    )
    assert batch.status_code == 400
    _no_errors_logged(server_log)


@pytest.mark.parametrize(
    "query",
    [
        "page_size=abc",
        "page=-1&page_size=x",
        "a=2&a.b=1",
        "id[]=x&id[]=y&only_fields=id",
        "name=%5B",
        "order_by=%00",
        "search_text=%ff%fe",
        "only_fields[]=&only_fields[]=.",
        "tags=__$not&tags=__$all",
        "page_size=1.5",
        "page_size=%C2%B2",
        "%5B%5D=1",
        ".=1",
        "a..b=1",
    ],
)
def test_odd_query_strings_are_never_a_500(local_server, server_log, query):
    tok = token(local_server)
    for endpoint in ("tasks.get_all", "projects.get_all", "events.get_task_log", "tasks.get_by_id"):
        response = requests.get(
            f"{local_server.api_url}/v2.23/{endpoint}?{query}", headers={"Authorization": f"Bearer {tok}"}, timeout=30
        )
        assert response.status_code in (200, 400), (endpoint, response.text)
        assert response.json()["meta"]["result_code"] == response.status_code
    _no_errors_logged(server_log)


FIELDS = (
    "task",
    "tasks",
    "id",
    "ids",
    "project",
    "name",
    "type",
    "tags",
    "system_tags",
    "comment",
    "parent",
    "hyperparams",
    "configuration",
    "artifacts",
    "execution",
    "runtime",
    "script",
    "models",
    "container",
    "requirements",
    "only_fields",
    "order_by",
    "page",
    "page_size",
    "batch_size",
    "scroll_id",
    "metrics",
    "event_type",
    "force",
    "publish",
    "replace_hyperparams",
    "replace_configuration",
    "status",
    "status_reason",
    "output_dest",
    "search_hidden",
    "search_text",
    "names",
    "model",
    "description",
    "delete_contents",
    "clear_all",
    "navigate_earlier",
)
ODD_VALUES = (5, -1, 1.5, "x", "", True, None, [1], ["a", 2], [{"a": []}], {"a": 1}, {"$gt": 1}, [[["deep"]]])


def test_every_endpoint_answers_odd_field_types_without_a_500(local_server, server_log):
    """Each endpoint with each field set to odd values (two per pair, every value in turn; the other fields valid,
    ``force`` on, a fresh task per endpoint): the answer is an envelope with a status below 500, and nothing is
    logged as an error."""
    tok = token(local_server)
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
    failures = []
    index = 0
    for endpoint in sorted(all_endpoints()):
        project = call(local_server, "projects.create", {"name": f"odd-types/{endpoint}"}, tok=tok).json()["data"]
        created = {"name": "odd types", "type": "training", "project": project["id"]}
        task = call(local_server, "tasks.create", created, tok=tok).json()["data"]["id"]
        for field in FIELDS:
            if endpoint in ("tasks.delete", "projects.delete") and field not in ("task", "project"):
                continue  # a valid call would delete the fixtures
            index += 1
            for value in (ODD_VALUES[(2 * index) % len(ODD_VALUES)], ODD_VALUES[(2 * index + 1) % len(ODD_VALUES)]):
                body = {"task": task, "project": project["id"], "name": "odd name", "force": True, field: value}
                url = f"{local_server.api_url}/v2.23/{endpoint}"
                response = session.post(url, data=json.dumps(body), timeout=30)
                if response.status_code >= 500 or response.json()["meta"]["result_code"] != response.status_code:
                    failures.append((endpoint, field, value, response.text[:200]))
    assert not failures, failures[:20]
    _no_errors_logged(server_log)


def test_json_lines_that_are_not_objects_are_a_400(local_server, server_log):
    tok = token(local_server)
    for lines in (b"[1, 2]\n[3]", b'"text"', b"{not json}", b"\xff\xfe"):
        response = requests.post(
            f"{local_server.api_url}/v2.23/events.add_batch",
            data=lines,
            headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json-lines"},
            timeout=30,
        )
        assert response.status_code == 400 and response.json()["meta"]["result_code"] == 400, lines
    _no_errors_logged(server_log)
