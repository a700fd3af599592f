"""Links from URL sources are downloadable through clearml's ``get_local_copy`` (the test's ClearML server, moto
S3, local HTTP server), so what the sources register is what a dataset consumer gets."""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from reconciler.model import UrlSource
from reconciler.sources import SourceResolver

MakeResolver = Callable[..., SourceResolver]
pytestmark = pytest.mark.integration

SCRIPT = """
import hashlib, json, os, posixpath
from clearml import Dataset
links = json.loads(os.environ["LINKS"])
ds = Dataset.create(dataset_project=os.environ["PROJECT"], dataset_name="external")
for link in links:
    ds.add_external_files(source_url=link["url"], dataset_path=posixpath.dirname(link["path"]) or None)
ds.upload()
ds.finalize()
root = Dataset.get(dataset_id=ds.id).get_local_copy()
found = {}
for folder, _, names in os.walk(root):
    for name in names:
        path = os.path.join(folder, name)
        found[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
print(json.dumps(found))
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_s3_and_http_links_download_through_clearml(
    clearml_sdk: Any,
    unique_name: Callable[[str], str],
    aws_env: str,
    http_files: Any,
    tmp_path: Path,
    make_resolver: MakeResolver,
) -> None:
    hostport = urlsplit(aws_env).netloc
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    s3.create_bucket(Bucket="linked")
    s3.put_object(Bucket="linked", Key="raw/one.bin", Body=b"first object")
    s3.put_object(Bucket="linked", Key="raw/two.bin", Body=b"second")
    http_files.files["/web/three.txt"] = b"over http"

    resolver = make_resolver()
    links = [
        *resolver.resolve(UrlSource(f"s3://{hostport}/linked/raw/", dest="s3")).links,
        *resolver.resolve(UrlSource(f"{http_files.base_url}/web/three.txt", dest="web")).links,
    ]
    assert all(posixpath.basename(link.url) == posixpath.basename(link.path) for link in links)

    config = tmp_path / "clearml.conf"
    credentials = {
        "host": hostport,
        "key": "testing",
        "secret": "testing",
        "secure": False,
        "multipart": False,
    }
    config.write_text(json.dumps({"sdk": {"aws": {"s3": {"credentials": [credentials]}}}}))
    payload = json.dumps([{"path": link.path, "url": link.url} for link in links])
    got = clearml_sdk.run_code(SCRIPT, LINKS=payload, PROJECT=unique_name("links"), CLEARML_CONFIG_FILE=str(config))
    assert got == {
        "s3/one.bin": sha(b"first object"),
        "s3/two.bin": sha(b"second"),
        "web/three.txt": sha(b"over http"),
    }
