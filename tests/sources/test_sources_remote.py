"""URL sources: S3 against a local moto_server, HTTP against a local server, file:// on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from reconciler.diagnostics import ReconcileError, SourceSpan
from reconciler.model import LinkEntry, UrlSource
from reconciler.sources import SourceResolver

MakeResolver = Callable[..., SourceResolver]
HttpFiles = Any  # conftest.HttpFiles: base_url, files (path -> bytes), allow_head


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def assert_url_error(resolver: SourceResolver, url: str, expected: str) -> None:
    """Resolving ``url`` fails with one line: the manifest span, then ``url source: <expected>...``."""
    with pytest.raises(ReconcileError) as info:
        resolver.resolve(UrlSource(url, span=SourceSpan("manifests/example.yaml", 12, 7)))
    message = str(info.value)
    assert message.startswith("manifests/example.yaml:12:7: error: url source: " + expected), message
    assert "\n" not in message


@pytest.fixture
def bucket(aws_env: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket with ``data/a.txt``, ``data/sub/b.bin``, a folder marker and ``other.txt``."""
    name = "b-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    client = s3_client(aws_env)
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="data/a.txt", Body=b"alpha")
    client.put_object(Bucket=name, Key="data/sub/b.bin", Body=b"bravo!!")
    client.put_object(Bucket=name, Key="data/empty-folder/", Body=b"")
    client.put_object(Bucket=name, Key="other.txt", Body=b"other")
    return name


def test_s3_prefix_lists_every_object_as_a_link(bucket: str, make_resolver: MakeResolver) -> None:
    content = make_resolver().resolve(UrlSource(f"s3://{bucket}/data/", dest="ext"))
    assert content.files == ()
    assert content.links == (
        LinkEntry("ext/a.txt", f"s3://{bucket}/data/a.txt", 5, md5(b"alpha")),
        LinkEntry("ext/sub/b.bin", f"s3://{bucket}/data/sub/b.bin", 7, md5(b"bravo!!")),
    )


def test_s3_custom_endpoint_url_form(aws_env: str, bucket: str, make_resolver: MakeResolver) -> None:
    hostport = urlsplit(aws_env).netloc  # s3://127.0.0.1:PORT/bucket/key, as ClearML writes endpoints
    content = make_resolver().resolve(UrlSource(f"s3://{hostport}/{bucket}/other.txt"))
    assert content.links == (LinkEntry("other.txt", f"s3://{hostport}/{bucket}/other.txt", 5, md5(b"other")),)
    prefix = make_resolver().resolve(UrlSource(f"s3://{hostport}/{bucket}/data/"))
    assert [link.url for link in prefix.links] == [
        f"s3://{hostport}/{bucket}/data/a.txt",
        f"s3://{hostport}/{bucket}/data/sub/b.bin",
    ]


def test_s3_changed_object_changes_the_link(aws_env: str, bucket: str, make_resolver: MakeResolver) -> None:
    source = UrlSource(f"s3://{bucket}/data/a.txt", dest="x")
    before = make_resolver().resolve(source).links
    assert before == (LinkEntry("x/a.txt", f"s3://{bucket}/data/a.txt", 5, md5(b"alpha")),)
    s3_client(aws_env).put_object(Bucket=bucket, Key="data/a.txt", Body=b"ALPHA")  # same size, new ETag
    same_size = make_resolver().resolve(source).links
    assert same_size[0].size == 5 and same_size[0].etag == md5(b"ALPHA") != before[0].etag
    s3_client(aws_env).put_object(Bucket=bucket, Key="data/a.txt", Body=b"alpha, longer")
    assert make_resolver().resolve(source).links[0].size == 13


def test_s3_copy_downloads_and_hashes(aws_env: str, bucket: str, make_resolver: MakeResolver) -> None:
    source = UrlSource(f"s3://{bucket}/data/", dest="c", copy=True)
    resolver = make_resolver()
    content = resolver.resolve(source)
    assert content.links == ()
    assert [(f.path, f.size, f.sha256) for f in content.files] == [
        ("c/a.txt", 5, hashlib.sha256(b"alpha").hexdigest()),
        ("c/sub/b.bin", 7, hashlib.sha256(b"bravo!!").hexdigest()),
    ]
    assert Path(content.files[1].local or "").read_bytes() == b"bravo!!"
    assert resolver.hashed_files == 2
    assert resolver.resolve(source) == content  # unchanged objects: the downloads are reused
    assert resolver.hashed_files == 2
    s3_client(aws_env).put_object(Bucket=bucket, Key="data/a.txt", Body=b"ALPHA")
    changed = resolver.resolve(source)
    assert changed.files[0].sha256 == hashlib.sha256(b"ALPHA").hexdigest()
    assert Path(changed.files[0].local or "").read_bytes() == b"ALPHA"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("data/missing.txt", "no object s3://{bucket}/data/missing.txt; to take every object under a prefix"),
        ("data", "no object s3://{bucket}/data; to take every object under a prefix, end the URL with '/'"),
        ("nothing-here/", "no objects under s3://{bucket}/nothing-here/"),
    ],
)
def test_s3_missing_objects_are_one_error_line(
    bucket: str, key: str, expected: str, make_resolver: MakeResolver
) -> None:
    assert_url_error(make_resolver(), f"s3://{bucket}/{key}", expected.format(bucket=bucket))


def test_s3_missing_bucket(aws_env: str, make_resolver: MakeResolver) -> None:
    assert_url_error(make_resolver(), "s3://no-such-bucket/x/", "no bucket 'no-such-bucket'")


def test_s3_unreachable_endpoint(
    monkeypatch: pytest.MonkeyPatch,
    aws_env: str,
    make_resolver: MakeResolver,
    unused_port: int,
) -> None:
    dead = f"127.0.0.1:{unused_port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{dead}")
    resolver = make_resolver(timeout=2.0)
    assert_url_error(resolver, f"s3://{dead}/bucket/key", f"cannot reach http://{dead}")


def test_http_link_records_size_and_etag(http_files: HttpFiles, make_resolver: MakeResolver) -> None:
    http_files.files["/files/img%201.png"] = b"png bytes"
    url = f"{http_files.base_url}/files/img%201.png"
    content = make_resolver().resolve(UrlSource(url, dest="web"))
    assert content.links == (LinkEntry("web/img 1.png", url, 9, hashlib.sha1(b"png bytes").hexdigest()),)

    http_files.files["/files/img%201.png"] = b"PNG BYTES"  # same size, new ETag
    changed = make_resolver().resolve(UrlSource(url, dest="web")).links[0]
    assert (changed.size, changed.etag) == (9, hashlib.sha1(b"PNG BYTES").hexdigest())


def test_http_without_head_falls_back_to_ranged_get(http_files: HttpFiles, make_resolver: MakeResolver) -> None:
    http_files.allow_head = False
    http_files.files["/a.bin"] = b"12345"
    link = make_resolver().resolve(UrlSource(f"{http_files.base_url}/a.bin")).links[0]
    assert (link.path, link.size) == ("a.bin", 5)


def test_http_copy_downloads(http_files: HttpFiles, make_resolver: MakeResolver) -> None:
    http_files.files["/d/model.bin"] = b"weights"
    content = make_resolver().resolve(UrlSource(f"{http_files.base_url}/d/model.bin", dest="m", copy=True))
    assert [(f.path, f.size, f.sha256) for f in content.files] == [
        ("m/model.bin", 7, hashlib.sha256(b"weights").hexdigest())
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing.bin", "{base}/missing.bin: HTTP 404"),
        ("/folder/", "{base}/folder/ names a folder, which HTTP cannot list"),
    ],
)
def test_http_problems_are_one_error_line(
    http_files: HttpFiles, path: str, expected: str, make_resolver: MakeResolver
) -> None:
    assert_url_error(make_resolver(), http_files.base_url + path, expected.format(base=http_files.base_url))


def test_http_unreachable(make_resolver: MakeResolver, unused_port: int) -> None:
    url = f"http://127.0.0.1:{unused_port}/x.bin"
    assert_url_error(make_resolver(timeout=2.0), url, f"cannot reach {url}:")


def test_file_url_folder_links_carry_sha256(tmp_path: Path, make_resolver: MakeResolver) -> None:
    folder = tmp_path / "shared"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"a")
    (folder / "sub" / "b.txt").write_bytes(b"bb")
    content = make_resolver().resolve(UrlSource(f"file://{folder}/", dest="f"))
    assert content.links == (
        LinkEntry("f/a.txt", f"file://{folder}/a.txt", 1, hashlib.sha256(b"a").hexdigest()),
        LinkEntry("f/sub/b.txt", f"file://{folder}/sub/b.txt", 2, hashlib.sha256(b"bb").hexdigest()),
    )
    copied = make_resolver().resolve(UrlSource(f"file://{folder}/sub/b.txt", copy=True))
    assert [(f.path, f.local) for f in copied.files] == [("b.txt", str(folder / "sub" / "b.txt"))]


def test_file_url_missing(tmp_path: Path, make_resolver: MakeResolver) -> None:
    assert_url_error(make_resolver(), f"file://{tmp_path}/nope", f"{tmp_path}/nope does not exist")
