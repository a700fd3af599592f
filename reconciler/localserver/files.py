"""The file server as a Flask application: ``POST /`` (multipart upload), ``GET``/``HEAD``/``DELETE /<path>``.

Invariants:

* A stored file lives at exactly ``<root>/<path>`` for the URL ``{FILES}/<path>``.
* Uploads are written to a temporary file and renamed into place: a reader never sees a partial file.
* No path leaves ``root``: ``..`` parts, absolute paths, NUL bytes, backslashes and symlinks out of the root
  are refused with 400. An upload's field name carries one leading ``/`` by the SDK's convention, so only a
  second one makes it absolute.
* Every request needs a bearer token issued by the API server (the SDK sends it on downloads too), checked
  before any of its body is read (:meth:`FilesApp.admit`), as the real fileserver (``auth.enabled``, its
  default) checks it on uploads, downloads and deletes. The one exception is its ping, ``GET /``: open without
  a token, checked when one is sent.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from http import HTTPStatus
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_file
from werkzeug.datastructures import FileStorage

from . import errors
from .auth import TokenService
from .gate import BodyLimits, Head, Refusal
from .hooks import FaultInjector, ServerStats

log = logging.getLogger(__name__)


class UnsafePath(ValueError):
    """A requested path that would escape the storage root."""


def resolve(root: Path, relpath: str) -> Path:
    """The absolute location of ``relpath`` under ``root``; raises :class:`UnsafePath` if it would escape."""
    if not relpath or relpath.startswith("/") or "\x00" in relpath or "\\" in relpath:
        raise UnsafePath(relpath)
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or ":" in parts[0]:
        raise UnsafePath(relpath)
    base = root.resolve()
    target = base.joinpath(*parts)
    if not target.resolve().is_relative_to(base):
        raise UnsafePath(relpath)
    return target


def _upload_path(prefix: str, field_name: str) -> str:
    """The stored path of an upload: the part's field name (one leading ``/`` by SDK convention) below the
    URL path it was posted to."""
    name = field_name[1:] if field_name.startswith("/") else field_name
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


def _save(storage: FileStorage, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            storage.save(fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_open_ping(method: str, path: str, authorization: str | None) -> bool:
    return method == "GET" and path == "/" and not authorization


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def _refusal(status: int, message: str) -> Refusal:
    return Refusal(status, HTTPStatus(status).phrase, json.dumps({"error": message}).encode())


class FilesApp:
    """Serves the files under ``root``.

    :meth:`admit` is the :mod:`gate` policy: every request needs a valid bearer token before its body is read;
    an upload may carry ``limits.upload`` bytes, any other request ``limits.public``.
    """

    def __init__(
        self, root: Path, tokens: TokenService, stats: ServerStats, faults: FaultInjector, limits: BodyLimits
    ) -> None:
        self._root = root
        self._tokens = tokens
        self._stats = stats
        self._faults = faults
        self._limits = limits

    def admit(self, head: Head) -> Refusal | None:
        try:
            if not _is_open_ping(head.method, head.path, head.headers.get("AUTHORIZATION")):
                self._tokens.check_bearer(head.headers.get("AUTHORIZATION"))
        except errors.ApiError as err:
            return _refusal(401, err.msg)
        limit = self._limits.upload if head.method == "POST" else self._limits.public
        if head.content_length is not None and head.content_length > limit:
            return _refusal(413, f"request body too large: {head.content_length} bytes (the limit is {limit})")
        return None

    def wsgi(self) -> Flask:
        app = Flask("reconciler.localserver.files")
        app.add_url_rule("/", "upload_root", lambda: self._serve(""), methods=["POST"])
        app.add_url_rule("/", "ping", self._ping, methods=["GET"])
        app.add_url_rule("/<path:path>", "file", self._serve, methods=["GET", "HEAD", "POST", "DELETE"])
        return app

    def _ping(self) -> Response:
        """``GET /``: "OK"; a token, when one is sent, must be valid."""
        authorization = request.headers.get("Authorization")
        if authorization:
            try:
                self._tokens.check_bearer(authorization)
            except errors.ApiError as err:
                return _error(401, err.msg)
        return Response("OK", mimetype="text/plain")

    def _serve(self, path: str) -> Response:
        action = {"POST": "upload", "DELETE": "delete", "HEAD": "head"}.get(request.method, "download")
        self._stats.count(f"files.{action}")
        try:
            self._tokens.check_bearer(request.headers.get("Authorization"))
        except errors.ApiError as err:
            return _error(401, err.msg)
        try:
            if action == "upload":
                return self._upload(path)
            target = resolve(self._root, path)
        except UnsafePath as exc:
            return _error(400, f"invalid path: {exc.args[0]!r}")
        if not target.is_file():
            return _error(404, f"not found: {path}")
        if action == "delete":
            target.unlink(missing_ok=True)
            return jsonify({"deleted": path})
        return send_file(target, conditional=True, download_name=target.name)

    def _upload(self, prefix: str) -> Response:
        if not request.files:
            return _error(400, "no file in the request")
        targets = [
            (resolve(self._root, _upload_path(prefix, name)), storage)
            for name, storage in request.files.items()
        ]
        if not self._faults.upload_allowed():
            log.warning("injected fault: refusing upload of %s", [name for name in request.files])
            return _error(500, "injected upload failure")
        for target, storage in targets:
            _save(storage, target)
        return jsonify({name: name for name in request.files})
