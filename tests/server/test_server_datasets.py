"""Acceptance 1-3: dataset flows of the real clearml SDK against the embedded server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from server_helpers import random_bytes, read_tree, write_tree

pytestmark = [pytest.mark.integration, pytest.mark.embedded_only]  # about the embedded server itself

NESTED = {
    "top.txt": b"top level\n",
    "a/one.bin": random_bytes(1, 3000),
    "a/b/two.txt": b"two\n",
    "a/b/c/three.bin": random_bytes(3, 70_000),
}


def test_create_upload_finalize_tag_list_and_get(sdk, tmp_path):
    out = sdk.run("basic_flow.py", str(write_tree(tmp_path / "src", NESTED)))
    ids = out["ids"]
    assert out["files"] == sorted(NESTED)
    assert out["metadata"] == {"classes": ["circle", "square"], "count": 4}
    assert out["list_vision"] == [["shapes", "1.0.0"], ["shapes", "1.10.0"], ["shapes", "1.2.0"]]
    assert out["list_vision_all"] == [["shapes", v] for v in ("1.0.0", "1.10.0", "1.2.0", "2.0.0")]
    assert out["list_gold"] == [["shapes", "1.0.0"], ["shapes", "1.10.0"]]
    assert out["list_acme"] == [["beeps", "0.1.0"], *out["list_vision"]]
    assert out["get_latest"]["id"] == ids["v10"] and out["get_latest"]["version"] == "1.10.0"
    assert out["get_version"]["id"] == ids["v2"]
    assert out["get_id"] == {
        "id": ids["v10"],
        "name": "shapes",
        "project": "acme/vision",
        "version": "1.10.0",
        "tags": ["gold"],
    }
    assert out["get_tag"]["id"] == ids["v1"] and out["get_tag"]["tags"] == ["gold", "stable"]
    assert out["get_name_tag"]["id"] == ids["v10"]
    assert out["finalized"] == [True, False]


def test_child_version_changes_and_local_copies(sdk, tmp_path):
    v1 = {**NESTED, "gone.txt": b"removed in v2\n"}
    v2 = {k: v for k, v in v1.items() if k != "gone.txt"}
    v2["a/b/two.txt"] = b"two, modified\n"
    v2["new/deep/four.bin"] = random_bytes(4, 5000)
    v2["five.txt"] = b"added\n"
    out = sdk.run(
        "child_version.py",
        str(write_tree(tmp_path / "v1", v1)),
        str(write_tree(tmp_path / "v2", v2)),
        str(tmp_path / "mutable"),
    )
    assert out["added"] == ["five.txt", "new/deep/four.bin"]
    assert out["modified"] == ["a/b/two.txt"]
    assert out["removed"] == ["gone.txt"]
    assert out["graph"] == {out["parent"]: [], out["child"]: [out["parent"]]}
    assert read_tree(out["parent_copy"]) == v1
    assert read_tree(out["child_copy"]) == v2
    assert read_tree(out["mutable_copy"]) == v2


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server (no auth) serving ``tmp_path/www`` on a free loopback port."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_external_links_publish_squash_delete_and_auto_version(sdk, tmp_path, http_files):
    http_url, www = http_files
    linked = write_tree(tmp_path / "linked", {"l1.txt": b"linked one\n", "sub/l2.bin": random_bytes(7, 900)})
    (www / "remote.bin").write_bytes(random_bytes(8, 1200))
    local = write_tree(tmp_path / "local", {"local.txt": b"local\n"})
    out = sdk.run("external_publish_squash.py", linked.as_uri(), f"{http_url}/remote.bin", str(local))
    assert out["versions"] == ["1.0.0", "1.0.1"]
    assert out["link_entries"] == sorted(
        [(linked / "l1.txt").as_uri(), (linked / "sub/l2.bin").as_uri(), f"{http_url}/remote.bin"]
    )
    expected_links = {
        "l1.txt": b"linked one\n",
        "sub/l2.bin": random_bytes(7, 900),
        "remote.bin": random_bytes(8, 1200),
    }
    assert read_tree(out["published_copy"]) == expected_links
    assert read_tree(out["second_copy"]) == {**expected_links, "local.txt": b"local\n"}
    assert out["squashed"]["name"] == "links_squashed"
    assert read_tree(out["squashed_copy"]) == {**expected_links, "local.txt": b"local\n"}
    assert ["doomed", "1.0.0"] not in out["remaining"]
    assert ["links", "1.0.0"] in out["remaining"] and ["links", "1.0.1"] in out["remaining"]
