"""Acceptance 4: state survives a restart of the server on the same data directory (on other ports)."""

from __future__ import annotations

import pytest
from server_helpers import SdkRunner, call, random_bytes, read_tree, token, write_tree

from reconciler.localserver import LocalServer

pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]  # about the embedded server itself

V1 = {"docs/a.txt": b"alpha\n", "docs/deep/b.bin": random_bytes(11, 4096), "c.txt": b"gamma\n"}
V2 = {"docs/a.txt": b"alpha v2\n", "docs/deep/b.bin": random_bytes(11, 4096), "d.bin": random_bytes(12, 777)}


def test_everything_survives_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    with LocalServer(data_dir) as first:
        ids = SdkRunner(first, tmp_path / "home1").run(
            "tagged_versions.py", str(write_tree(tmp_path / "v1", V1)), str(write_tree(tmp_path / "v2", V2))
        )
        before = SdkRunner(first, tmp_path / "home1").run("describe_datasets.py", ids["parent"], ids["child"])

    with LocalServer(data_dir) as second:  # new free ports: stored file URLs must follow
        after = SdkRunner(second, tmp_path / "home2").run("describe_datasets.py", ids["parent"], ids["child"])

    parent, child = after[ids["parent"]], after[ids["child"]]
    assert parent["tags"] == ["kept"] and parent["status"] == "published" and parent["version"] == "1.0.0"
    assert child["status"] == "completed" and child["version"] == "2.0.0"
    assert parent["metadata"] == {"source": "restart test"}
    assert "state" in parent["artifacts"] and "about" in parent["artifacts"] and "data" in parent["artifacts"]
    assert after["listed"] == [["corpus", "1.0.0"], ["corpus", "2.0.0"]]
    for key in ("name", "version", "tags", "status", "artifacts", "files"):
        assert after[ids["parent"]][key] == before[ids["parent"]][key]
        assert after[ids["child"]][key] == before[ids["child"]][key]
    assert read_tree(parent["copy"]) == V1
    assert read_tree(child["copy"]) == V2


def test_restart_keeps_credentials_and_tokens_are_bound_to_their_data_dir(tmp_path):
    with LocalServer(tmp_path / "a") as first:
        keys = (first.access_key, first.secret_key)
        old_token = token(first)
    with LocalServer(tmp_path / "a") as again, LocalServer(tmp_path / "b") as other:
        assert (again.access_key, again.secret_key) == keys
        assert (other.access_key, other.secret_key) != keys
        assert call(again, "tasks.get_all", {}, tok=old_token).status_code == 200
        refused = call(other, "tasks.get_all", {}, tok=old_token)
        assert refused.status_code == 401 and refused.json()["meta"]["result_code"] == 401
