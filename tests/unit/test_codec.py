"""What the tool stores on a version, checked against traffic recorded from the real clearml-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.clearml_backend import codec
from reconciler.model import FileEntry, LinkEntry, Properties, VersionKey, freeze_json

RECORDING = Path(__file__).parents[1] / "server" / "data" / "real-server-calls.jsonl"


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in RECORDING.read_text().splitlines() if line.strip()]


def _requests(endpoint: str) -> list[Any]:
    return [r["request"] for r in _records() if r["path"].endswith("/" + endpoint)]


def _dataset_tasks() -> list[dict[str, Any]]:
    """Finalized dataset tasks as the real server returned them (``tasks.get_by_id``)."""
    out = []
    for r in _records():
        if r["path"].endswith("tasks.get_by_id") and r["response"]["meta"]["result_code"] == 200:
            task = r["response"]["data"]["task"]
            if task.get("status") in ("completed", "published") and "dataset" in task.get("system_tags", []):
                out.append(task)
    return out


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_real_dataset_tasks_decode_to_versions() -> None:
    tasks = _dataset_tasks()
    assert tasks
    for task in tasks:
        version = codec.task_summary(task, f"rec/.datasets/{task['name']}")
        assert version is not None
        assert version.key == VersionKey("rec", task["name"], task["runtime"]["version"])
        assert version.id == task["id"] and version.status == task["status"] and version.finalized
        assert version.properties.tags == frozenset(task["tags"])
        assert version.file_count == task["runtime"]["ds_file_count"]
        assert not version.managed  # made by a plain SDK script
        assert codec.task_summary(task, "rec/not-a-dataset-project") is None


def test_artifact_entries_have_the_sdks_shape() -> None:
    sdk = {a["key"]: a for req in _requests("tasks.add_or_update_artifacts") for a in req["artifacts"]}
    ours = {
        "data": codec.artifact("data", kind="custom", uri="http://f/x.zip", size=1, sha256="ab", stamp=1,
                               preview="p", content_type="application/zip"),
        "metadata": codec.artifact("metadata", kind="dict", uri="http://f/m.json", size=1, sha256="ab", stamp=1,
                                   preview="{}", content_type="application/json"),
        "state": codec.artifact("state", kind="dict", uri="http://f/s.json", size=1, sha256="ab", stamp=1,
                                preview="p", content_type="application/json", display=codec.Changes().display()),
    }
    for key, entry in ours.items():
        recorded = dict(sdk[key])
        recorded.setdefault("mode", "output")  # the server fills it in; we send it
        assert _shape(entry) == _shape(recorded), key
        assert entry["type"] == recorded["type"] and entry["type_data"]["content_type"] == (
            recorded["type_data"]["content_type"])
    assert sdk["state"]["display_data"] == codec.Changes().display() or _shape(sdk["state"]["display_data"]) == (
        _shape(codec.Changes().display()))


def test_runtime_and_lineage_configuration_have_the_sdks_keys() -> None:
    edits = _requests("tasks.edit")
    recorded_runtime = [e["runtime"] for e in edits if "runtime" in e and "ds_file_count" in e["runtime"]][-1]
    ours = codec.runtime("ds1", "1.0.0", "id", file_count=1, link_count=0, total_size=1, compressed=1,
                         changes=codec.Changes(added=1, size=1))
    assert set(ours) == set(recorded_runtime)
    recorded_struct = [e["configuration"] for e in edits if "configuration" in e][-1]["Dataset Struct"]
    struct = codec.dataset_struct({"child": ["parent"], "parent": []}, {
        "child": {"status": "completed", "last_update": 1, "job_size": 2, "name": "ds1", "version": "1.1.0"}})
    item = struct["Dataset Struct"]
    assert {k: v for k, v in item.items() if k != "value"} == {k: v for k, v in recorded_struct.items()
                                                              if k != "value"}
    nodes = json.loads(item["value"])
    assert set(nodes["0"]) == set(json.loads(recorded_struct["value"])["0"])
    assert nodes["0"]["parents"] == ["1"] and nodes["1"]["job_id"] == "parent"
    assert codec.struct_parents(item, "child") == ["parent"] and codec.struct_parents(item, "parent") == []
    assert codec.struct_node({"status": "completed", "last_update": "2026-01-01T00:00:01+00:00", "name": "ds1",
                              "runtime": {"ds_total_size": 2, "version": "1.1.0"}}) == {
        "status": "completed", "last_update": 1767225601, "job_size": 2, "name": "ds1", "version": "1.1.0"}


def test_version_hyperparameter_is_where_the_sdk_puts_it() -> None:
    recorded = [r for r in _requests("tasks.edit_hyper_params") if r["hyperparams"][0]["section"] == "properties"][0]
    ours = codec.hyperparams(codec.Bookkeeping(), "1.0.0")["properties"]["version"]
    assert {k: ours[k] for k in ("section", "name", "value")} == recorded["hyperparams"][0]


def test_bookkeeping_round_trips_through_a_task() -> None:
    book = codec.Bookkeeping(parent_ids=("p1",), content_digest="c" * 64, metadata_json='{"k":1}',
                             statistics_digest="s" * 64, run_token="t")
    task = {"id": "x", "name": "ds1", "status": "completed", "system_tags": ["dataset", codec.MANAGED_TAG],
            "comment": "about", "tags": ["b", "a"], "runtime": {"version": "2.0.0"},
            "hyperparams": {codec.SECTION: book.to_section()}}
    assert codec.read_bookkeeping(task) == book
    version = codec.task_summary(task, "p/.datasets/ds1")
    assert version is not None and version.managed and version.parent_ids == ("p1",)
    assert version.properties == Properties("about", frozenset({"a", "b"}))  # no metadata artifact: no metadata
    assert version.content_digest == "c" * 64 and version.statistics_digest == "s" * 64


def _artifact(key: str, value: object) -> dict[str, object]:
    return codec.artifact(key, kind="dict", uri=f"http://files/{key}.json", size=1,
                          sha256=codec.json_artifact_hash(value), stamp=0, preview="", content_type="application/json")


def test_metadata_are_the_artifacts_and_only_changed_ones_are_left_to_read() -> None:
    applied = Properties("about", frozenset(), {"k": 1}, {"info": {"a": 1}})
    book = codec.Bookkeeping(metadata_json='{"k":1}', applied_json=codec.applied_json(applied))
    task = {"id": "x", "name": "ds1", "status": "completed", "system_tags": ["dataset", codec.MANAGED_TAG],
            "comment": "about", "runtime": {"version": "2.0.0"}, "hyperparams": {codec.SECTION: book.to_section()},
            "execution": {"artifacts": [_artifact("metadata", {"k": 1}), _artifact("info", {"a": 2}),
                                        _artifact("state", {}), _artifact("data_001", {}),
                                        _artifact("statistics", {})]}}
    version = codec.task_summary(task, "p/.datasets/ds1")
    assert version is not None and version.unread_metadata == ("info",)
    assert version.properties.metadata == freeze_json({"k": 1}) and not version.properties.metadata_artifacts
    read = codec.with_metadata(version.properties, {"metadata": {"k": 1}, "info": {"a": 2}, "table": [1, 2]})
    assert read == applied.replace(metadata_artifacts={"info": {"a": 2}})  # a non-object value is left out


def test_state_document_round_trips() -> None:
    entries = [codec.StateEntry("b.txt", 2, "h2", "parent", "data"), codec.StateEntry("a.txt", 1, "h1", "me", "data")]
    links = [codec.StateLink(LinkEntry("l.bin", "s3://b/l.bin", 3, "etag"), "me")]
    doc = codec.state_document("me", entries, links, {"me": ["parent"], "parent": []}, {"me": 1, "parent": 1})
    assert [e["relative_path"] for e in doc["dataset_file_entries"]] == ["a.txt", "b.txt"]
    assert doc["file_count"] == 3 and doc["total_size"] == 6 and doc["dirty"] is False
    back, back_links, graph = codec.read_state(json.loads(json.dumps(doc)))
    assert sorted(back, key=lambda e: e.path) == sorted(entries, key=lambda e: e.path)
    assert back_links == links and graph == {"me": ["parent"], "parent": []}
    assert codec.state_files(back) == (FileEntry("a.txt", 1, "h1"), FileEntry("b.txt", 2, "h2"))


@pytest.mark.parametrize("n_entries,n_links", [(0, 0), (1, 0), (300, 2)])
def test_the_state_is_written_as_json_dumps_writes_the_document(n_entries: int, n_links: int) -> None:
    entries = [codec.StateEntry(f"d\u00fc/f\"{i}\\.bin", i * 7, f"{i:064x}", "p" * 32, codec.chunk_name(i % 3))
               for i in range(n_entries, 0, -1)]
    links = [codec.StateLink(LinkEntry(f"l/{i}", f"s3://b/{i}", i or None, None if i else "e"), "me")
             for i in range(n_links)]
    graph, counts = {"me": ["p" * 32], "p" * 32: []}, {"me": 1, "p" * 32: 3}
    raw = codec.state_json("me", entries, links, graph, counts)
    assert raw == json.dumps(codec.state_document("me", entries, links, graph, counts)).encode()


@pytest.mark.parametrize("name,index", [("data", 0), ("data_001", 1), ("data_123", 123), ("state", None),
                                        ("data_x", None), ("metadata", None)])
def test_chunk_names_follow_the_sdk(name: str, index: int | None) -> None:
    assert codec.chunk_index(name) == index
    if index is not None:
        assert codec.chunk_name(index) == name


def test_lineage_graph_keeps_only_versions_that_hold_files() -> None:
    parent_graph = {"p": ["g"], "g": ["gg"], "gg": []}
    graph = codec.lineage_graph("me", ("p",), parent_graph, used={"me", "g"})
    assert graph == {"g": [], "me": ["p"]}  # as the SDK prunes it; the lineage view still shows p


def test_hidden_project_names() -> None:
    assert codec.hidden_project("a/b", "ds") == "a/b/.datasets/ds"
    assert codec.split_hidden_project("a/b/.datasets/ds") == ("a/b", "ds")
    assert codec.split_hidden_project("a/b/.datasets/ds/deeper") is None
    assert codec.split_hidden_project("a/b") is None
