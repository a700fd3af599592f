"""``url:`` sources: objects in S3 and over HTTP(S), listed (never downloaded) unless ``copy: true``.

* ``s3://bucket/key`` is one object; ``s3://bucket/prefix/`` (a trailing ``/``) or ``s3://bucket`` is
  every object under the prefix, each at ``dest/<name relative to the prefix>`` (folder marker keys ending in
  ``/`` are skipped). A custom endpoint is written ``s3://host:port/bucket/...`` as ClearML writes it (a
  port marks an endpoint). Its scheme is taken from ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` when that
  names the same ``host:port`` (``http://127.0.0.1:9000`` for a local MinIO), else ``https``. Plain
  ``s3://bucket`` URLs use boto3's own configuration, which also honours ``AWS_ENDPOINT_URL``. Credentials
  and region come from the standard AWS environment variables, profiles and config files. Custom endpoints
  use path-style addressing.
* ``http(s)://`` URLs name one file each: a ``HEAD`` request gives its size (``Content-Length``) and ``ETag``
  (falling back to a one-byte ranged ``GET`` when the server refuses ``HEAD``). A URL ending in ``/`` is an
  error: HTTP cannot list a folder.
* ETags are recorded without their surrounding quotes; a weak ETag keeps its ``W/`` prefix.

Downloads (``copy: true``) go to ``<cache_dir>/downloads/<digest of the URL>/<name>`` through a temporary file
and a rename; an existing download is reused while the store reports the same size and ETag.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..model import normalize_dataset_path
from .errors import SourceError


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One object of a URL source. ``rel`` is its path relative to the source's ``dest``."""

    rel: str
    url: str
    size: int | None
    etag: str | None


def clean_etag(value: str | None) -> str | None:
    if not value:
        return None
    weak = value.startswith("W/")
    core = value[2:] if weak else value
    core = core.strip('"')
    return ("W/" if weak else "") + core


def _relative_name(name: str, url: str) -> str:
    rel = normalize_dataset_path(name)
    if not rel:
        raise SourceError(f"cannot derive a dataset path from {url} (object name {name!r})")
    return rel


# --- S3 -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Location:
    netloc: str  # what goes between s3:// and the bucket in URLs we write ("" for AWS/boto3 defaults)
    endpoint: str | None
    bucket: str
    key: str

    def url(self, key: str) -> str:
        host = f"{self.netloc}/" if self.netloc else ""
        return f"s3://{host}{self.bucket}/{key}"


def _endpoint_for(hostport: str) -> str:
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        configured = os.environ.get(var, "")
        if configured and urlsplit(configured).netloc == hostport:
            return configured.rstrip("/")
    return f"https://{hostport}"


def parse_s3(url: str) -> S3Location:
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    if parts.port is not None or ":" in parts.netloc:
        bucket, _, key = path.partition("/")
        loc = S3Location(parts.netloc, _endpoint_for(parts.netloc), bucket, key)
    else:
        loc = S3Location("", None, parts.netloc, path)
    if not loc.bucket:
        raise SourceError(f"no bucket in {url}")
    return loc


class S3Clients:
    """boto3 clients by endpoint, created on first use (creating one loads service models: slow)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._clients: dict[str | None, Any] = {}

    def get(self, loc: S3Location) -> Any:
        if loc.endpoint not in self._clients:
            self._clients[loc.endpoint] = _s3_client(loc, self.timeout)
        return self._clients[loc.endpoint]


def _s3_client(loc: S3Location, timeout: float) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise SourceError("s3:// sources need boto3: pip install 'clearml-dataset-reconciler[s3]'") from exc
    custom = loc.endpoint is not None or bool(
        os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"} if custom else None,
    )
    session = boto3.session.Session()
    region = session.region_name or ("us-east-1" if custom else None)
    return session.client("s3", endpoint_url=loc.endpoint, region_name=region, config=config)


def _s3_problem(exc: Exception, url: str, loc: S3Location) -> SourceError:
    """A user-facing message for a boto3/botocore exception."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = loc.endpoint or "AWS S3"
    if isinstance(exc, NoCredentialsError):
        return SourceError(f"no AWS credentials for {url} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, EndpointConnectionError):
        hint = ""
        if loc.endpoint and loc.endpoint.startswith("https://"):
            hint = f" (for a plain-http endpoint set AWS_ENDPOINT_URL=http://{loc.netloc})"
        return SourceError(f"cannot reach {where} for {url}: {exc}{hint}")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return SourceError(f"no bucket {loc.bucket!r} at {where} ({url})")
        if code in ("404", "NoSuchKey", "NotFound"):
            hint = "" if url.endswith("/") else "; to take every object under a prefix, end the URL with '/'"
            return SourceError(f"no object {url}{hint}")
        if status in (401, 403):
            return SourceError(f"access denied to {url} ({code or status}): check the AWS credentials")
        return SourceError(f"S3 error for {url}: {code or status} {err.get('Message', '')}".rstrip())
    return SourceError(f"S3 error for {url}: {exc}")


def s3_objects(url: str, clients: S3Clients) -> list[RemoteObject]:
    """The object (or every object under the prefix) ``url`` names, with size and ETag."""
    from botocore.exceptions import BotoCoreError, ClientError

    loc = parse_s3(url)
    client = clients.get(loc)
    try:
        if loc.key and not loc.key.endswith("/"):
            head = client.head_object(Bucket=loc.bucket, Key=loc.key)
            name = _relative_name(posixpath.basename(loc.key), url)
            return [RemoteObject(name, url, int(head["ContentLength"]), clean_etag(head.get("ETag")))]
        found: list[RemoteObject] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                rel = _relative_name(key[len(loc.key) :], url)
                found.append(RemoteObject(rel, loc.url(key), int(obj["Size"]), clean_etag(obj.get("ETag"))))
    except (BotoCoreError, ClientError) as exc:
        raise _s3_problem(exc, url, loc) from exc
    if not found:
        raise SourceError(f"no objects under {url}")
    return sorted(found, key=lambda o: o.rel)


def s3_download(obj: RemoteObject, target: Path, clients: S3Clients) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    loc = parse_s3(obj.url)
    try:
        clients.get(loc).download_file(loc.bucket, loc.key, str(target))
    except (BotoCoreError, ClientError) as exc:
        raise _s3_problem(exc, obj.url, loc) from exc


# --- HTTP -----------------------------------------------------------------------------------------------


def _http_error(exc: Exception, url: str) -> SourceError:
    if isinstance(exc, urllib.error.HTTPError):
        return SourceError(f"{url}: HTTP {exc.code} {exc.reason}")
    if isinstance(exc, urllib.error.URLError):
        return SourceError(f"cannot reach {url}: {exc.reason}")
    return SourceError(f"cannot reach {url}: {exc}")


def _size_from_headers(headers: Any) -> int | None:
    content_range = headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].strip().isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = headers.get("Content-Length")
    return int(length) if length and length.strip().isdigit() else None


def http_object(url: str, timeout: float) -> RemoteObject:
    """Size and ETag of one HTTP(S) file, by ``HEAD`` (or a ranged ``GET`` if ``HEAD`` is refused)."""
    path = urlsplit(url).path
    if not path or path.endswith("/"):
        raise SourceError(f"{url} names a folder, which HTTP cannot list; name each file, or use s3://")
    rel = _relative_name(unquote(posixpath.basename(path)), url)
    try:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
                headers = r.headers
        except urllib.error.HTTPError as exc:
            if exc.code not in (405, 501):
                raise
            ranged = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
            with urllib.request.urlopen(ranged, timeout=timeout) as r:
                headers = r.headers
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _http_error(exc, url) from exc
    return RemoteObject(rel, url, _size_from_headers(headers), clean_etag(headers.get("ETag")))


def http_download(obj: RemoteObject, target: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(obj.url, timeout=timeout) as r, open(target, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _http_error(exc, obj.url) from exc


# --- file:// --------------------------------------------------------------------------------------------


def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL (``file:///abs/path`` or ``file://localhost/abs/path``)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"{url}: only local file:// URLs are supported (host {parts.netloc!r})")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise SourceError(f"{url}: a file:// URL needs an absolute path")
    return Path(path)


# --- copy: true -----------------------------------------------------------------------------------------


def download_cached(obj: RemoteObject, downloads: Path, clients: S3Clients) -> Path:
    """A local copy of ``obj`` under ``downloads``, reused while the store reports the same size and ETag."""
    folder = downloads / hashlib.sha256(obj.url.encode()).hexdigest()[:32]
    target = folder / posixpath.basename(obj.rel)
    sidecar = folder / "object.json"
    want = {"url": obj.url, "size": obj.size, "etag": obj.etag}
    if obj.etag and target.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()) == want and target.stat().st_size == obj.size:
                return target
        except (OSError, ValueError):
            pass
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download.", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if obj.url.startswith("s3://"):
            s3_download(obj, tmp, clients)
        else:
            http_download(obj, tmp, clients.timeout)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    sidecar.write_text(json.dumps(want, sort_keys=True))
    return target
