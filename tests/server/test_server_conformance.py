"""Acceptance 7: the embedded server answers like the real clearml-server, endpoint by endpoint.

``data/real-server-calls.jsonl`` is traffic of the real server (SDK dataset flows, then raw error cases). The
same kinds of SDK flows run against the embedded server with traffic recording on, and the raw error cases are
replayed request by request; then, per endpoint, the envelope, ``meta``, the shape of ``data`` (key paths and
JSON types) and error statuses/subcodes are compared. Values (ids, times, tokens) are not compared.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import differential
import pytest
import requests
from server_helpers import SdkRunner, random_bytes, write_tree

from reconciler.localserver import LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]  # about the embedded server itself

RECORDING = Path(__file__).parent / "data" / "real-server-calls.jsonl"
FIRST_RAW_CASE = 773  # records before this index are SDK flows, from it on raw error cases
# keys whose children are user data (names chosen by the client), compared as a whole; the SDK flows' "fields"
# answers carry whole documents
OPAQUE = differential.OPAQUE | {"fields"}
MAX_DEPTH = 4
Shape = dict[str, set[str]]


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDING.read_text().splitlines() if line.strip()]


def shape(value: Any) -> Shape:
    return differential.shape(value, opaque=OPAQUE, max_depth=MAX_DEPTH)


def _endpoint_shapes(exchanges: list[dict[str, Any]]) -> dict[str, Shape]:
    shapes: dict[str, Shape] = defaultdict(dict)
    for exchange in exchanges:
        if exchange["status"] == 200:
            name = exchange["response"]["meta"]["endpoint"]["name"]
            for path, kinds in shape(exchange["response"]["data"]).items():
                shapes[name].setdefault(path, set()).update(kinds)
    return shapes


def _meta_shape(response: dict[str, Any]) -> dict[str, Any]:
    meta = response["meta"]
    return {
        "top": sorted(response),
        "meta": {k: differential.json_type(v) for k, v in meta.items()},
        "endpoint": {k: differential.json_type(v) for k, v in meta["endpoint"].items()},
        "data": differential.json_type(response["data"]),
    }


@pytest.fixture
def recording_server(tmp_path: Path):
    server = LocalServer(tmp_path / "data").start()
    server.stats.record_traffic = True
    try:
        yield server
    finally:
        server.stop()


def _run_sdk_flows(server: LocalServer, tmp_path: Path) -> None:
    sdk = SdkRunner(server, tmp_path / "home")
    tree = {"f1.txt": b"one\n", "sub/f2.bin": random_bytes(21, 2000), "sub/deep/f3.txt": b"three\n"}
    v2 = {
        **{k: v for k, v in tree.items() if k != "f1.txt"},
        "sub/f2.bin": random_bytes(22, 2100),
        "new.txt": b"n",
    }
    sdk.run("basic_flow.py", str(write_tree(tmp_path / "v1", tree)))
    sdk.run(
        "child_version.py",
        str(tmp_path / "v1"),
        str(write_tree(tmp_path / "v2", v2)),
        str(tmp_path / "mutable"),
    )
    file_url = (tmp_path / "v2").as_uri()
    sdk.run("external_publish_squash.py", file_url, f"{file_url}/new.txt", str(tmp_path / "v1"))


def test_sdk_flows_match_the_real_server_shapes(recording_server, tmp_path):
    _run_sdk_flows(recording_server, tmp_path)
    ours = recording_server.stats.traffic
    recorded = _records()[:FIRST_RAW_CASE]
    assert all(e["status"] == 200 for e in ours), [e for e in ours if e["status"] != 200][:3]

    recorded_meta = {json.dumps(_meta_shape(r["response"])) for r in recorded}
    assert {json.dumps(_meta_shape(e["response"])) for e in ours} <= recorded_meta

    expected, actual = _endpoint_shapes(recorded), _endpoint_shapes(ours)
    missing_endpoints = set(expected) - set(actual)
    assert not missing_endpoints, f"the SDK flows did not exercise {missing_endpoints}"
    problems = {}
    for endpoint, paths in expected.items():
        missing = sorted(set(paths) - set(actual[endpoint]))
        wrong = {
            p: (sorted(paths[p]), sorted(actual[endpoint][p]))
            for p in paths
            if p in actual[endpoint] and not actual[endpoint][p] <= paths[p] | {"null"}
        }
        if missing or wrong:
            problems[endpoint] = {"missing": missing, "wrong_types": wrong}
    assert not problems, json.dumps(problems, indent=1)


class _Replayer:
    """Sends the recorded raw requests to ``server``, mapping recorded ids to the ids ``server`` created."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.ids: dict[str, str] = {}
        basic = base64.b64encode(f"{server.access_key}:{server.secret_key}".encode()).decode()
        self.token = requests.get(
            f"{server.api_url}/auth.login", headers={"Authorization": f"Basic {basic}"}, timeout=30
        ).json()["data"]["token"]

    def _body(self, record: dict[str, Any]) -> bytes:
        request = record["request"]
        if isinstance(request, dict) and "_raw_len" in request:
            return b"{not json"[: request["_raw_len"]]
        text = json.dumps(request or {})
        for old, new in self.ids.items():
            text = text.replace(old, new)
        return text.encode()

    def _headers(self, record: dict[str, Any]) -> dict[str, str]:
        endpoint = record["path"].rsplit("/", 1)[-1]
        if endpoint == "auth.login":
            key = self.server.access_key if record["status"] == 200 else "WRONG"
            return {
                "Authorization": "Basic "
                + base64.b64encode(f"{key}:{self.server.secret_key}".encode()).decode()
            }
        if record["status"] == 401:
            return {}
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def replay(self, record: dict[str, Any]) -> requests.Response:
        response = requests.request(
            record["method"],
            self.server.api_url + record["path"],
            data=self._body(record),
            headers=self._headers(record),
            timeout=30,
        )
        recorded_id = (record["response"].get("data") or {}).get("id")
        if recorded_id and response.status_code == 200:
            self.ids[recorded_id] = response.json()["data"]["id"]
        return response


def test_raw_error_cases_match_the_real_server(recording_server):
    replayer = _Replayer(recording_server)
    for index, record in enumerate(_records()[FIRST_RAW_CASE:], start=FIRST_RAW_CASE):
        response = replayer.replay(record)
        body, expected = response.json(), record["response"]
        where = f"record {index}: {record['method']} {record['path']} {record['request']}"
        assert response.status_code == record["status"], where
        assert body["meta"]["result_code"] == expected["meta"]["result_code"], where
        assert body["meta"]["result_subcode"] == expected["meta"]["result_subcode"], where
        assert _meta_shape(body) == _meta_shape(expected), where
        if record["status"] != 200 and expected["meta"]["result_subcode"] in (20, 22, 110, 123):
            assert body["meta"]["result_msg"].split(":")[0] == expected["meta"]["result_msg"].split(":")[0], (
                where
            )
        if record["status"] == 200:
            ours, theirs = shape(body["data"]), shape(expected["data"])
            # tasks.get_all {} lists the whole database, which held the recorded flows' tasks there only
            assert set(theirs) <= set(ours) or record["path"].endswith("tasks.get_all"), where


def test_short_task_name_is_a_data_validation_error(recording_server):
    replayer = _Replayer(recording_server)
    response = requests.post(
        f"{recording_server.api_url}/v2.23/tasks.create",
        json={"name": "x", "type": "training"},
        headers={"Authorization": f"Bearer {replayer.token}"},
        timeout=30,
    )
    meta = response.json()["meta"]
    assert (response.status_code, meta["result_code"], meta["result_subcode"]) == (400, 400, 800)
    assert meta["result_msg"] == "Data validation error: name=String value is too short"
