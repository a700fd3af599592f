"""Acceptance 6: concurrent SDK processes against one server; atomic project creation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from server_helpers import SdkRunner, call, random_bytes, read_tree, token, write_tree

pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]  # about the embedded server itself


def test_two_sdk_processes_create_and_upload_at_once(local_server, tmp_path):
    trees = {
        name: write_tree(
            tmp_path / name, {f"{name}/{i}.bin": random_bytes(seed * 100 + i, 300_000) for i in range(8)}
        )
        for seed, name in enumerate(("left", "right"))
    }
    runners = {name: SdkRunner(local_server, tmp_path / f"home-{name}") for name in trees}
    processes = {
        name: runners[name].start("create_named.py", "shared/space", name, str(trees[name])) for name in trees
    }
    results = {name: SdkRunner.result(proc) for name, proc in processes.items()}
    assert results["left"]["id"] != results["right"]["id"]
    for name, result in results.items():
        assert result["back_id"] == result["id"]
        assert read_tree(result["copy"]) == read_tree(trees[name])


def test_projects_create_is_atomic_under_concurrency(local_server):
    tok = token(local_server)

    def create(_: int) -> tuple[int, int]:
        meta = call(
            local_server, "projects.create", {"name": "locks/one", "description": "x"}, tok=tok
        ).json()["meta"]
        return meta["result_code"], meta["result_subcode"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(create, range(16)))
    assert outcomes == [(200, 0)] + [(400, 801)] * 15
    projects = call(local_server, "projects.get_all", {"name": "^locks"}, tok=tok).json()["data"]["projects"]
    assert sorted(p["name"] for p in projects) == ["locks", "locks/one"]
