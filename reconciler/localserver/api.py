"""The API server as a Flask application: routing, authentication and the response envelope.

Every answer, success or error, is the real server's envelope ``{"meta": {...}, "data": {...}}`` with the HTTP
status equal to ``meta.result_code`` (never 503, which the SDK retries forever). ``/auth.login`` and any
``/v<major>.<minor>/<service>.<action>`` path are served; unknown endpoints answer the real server's 404.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request
from werkzeug.datastructures import MultiDict

from . import errors
from .auth import API_VERSION, TokenService
from .endpoints import PUBLIC_ENDPOINTS, Call, Handler, all_endpoints
from .gate import BodyLimits, Head, Refusal
from .hooks import ServerStats
from .store import Store

log = logging.getLogger(__name__)

_PATH = re.compile(r"^(?:api/)?(?:v(?P<version>\d+\.\d+)/)?(?P<endpoint>[A-Za-z_]+\.[A-Za-z_]+)/?$")
_ACTUAL_VERSIONS = {"tasks.completed": "2.2", "tasks.add_or_update_artifacts": "2.10"}
_JSON_LINES = ("application/json-lines", "application/x-ndjson", "application/jsonlines")
MAX_JSON_DEPTH = 64


def envelope(
    endpoint: str, requested: str, data: Any, error: errors.ApiError | None = None
) -> dict[str, Any]:
    """The response body; ``data`` is ``{}`` on error and ``error_stack`` null, as the real server sends."""
    trx = uuid.uuid4().hex
    known = error is None or error.code != 404
    return {
        "meta": {
            "id": trx,
            "trx": trx,
            "endpoint": {
                "name": endpoint,
                "requested_version": requested,
                "actual_version": _ACTUAL_VERSIONS.get(endpoint, "1.0") if known else None,
            },
            "result_code": error.code if error else 200,
            "result_subcode": error.subcode if error else 0,
            "result_msg": error.msg if error else "OK",
            "error_stack": None if error else "",
            "error_data": {},
        },
        "data": {} if error else data,
    }


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/objects deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _loads(text: str) -> Any:
    """One JSON document, at most :data:`MAX_JSON_DEPTH` deep; anything else is 400/0."""
    try:
        value = json.loads(text)
    except ValueError:  # not JSON, or an integer longer than Python converts (4300 digits): both 400/0 there
        raise errors.malformed_request() from None
    except RecursionError:
        raise errors.malformed_request(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if _too_deep(value, MAX_JSON_DEPTH):
        raise errors.malformed_request(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _convert(value: str) -> Any:
    """A query-string value as the real server reads it: digits are numbers, ``true``/``false`` booleans."""
    digits = value.replace(".", "", 1)
    if digits.isascii() and digits.isdigit():
        return float(value) if "." in value else int(value)
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    return value


def _merge_args(body: dict[str, Any], args: MultiDict[str, str]) -> None:
    """Query-string arguments into ``body``, as the real server merges them: ``a.b=1`` nests, ``k[]=`` or a
    repeated key makes a list. A key that is both a value and a parent is 400/12."""
    for key, values in args.lists():
        value = [_convert(v) for v in values] if len(values) > 1 or key.endswith("[]") else _convert(values[0])
        *parents, leaf = key.rstrip("[]").split(".")
        target = body
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise errors.validation_error(key, "conflicting query-string arguments")
        target[leaf] = value


def _parse_body(endpoint: str) -> Any:
    """The call data: the JSON body with the query-string arguments merged in; for ``events.add_batch`` sent as
    JSON lines, the list of events. Bad JSON is 400/0, as the real server answers it."""
    raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.malformed_request() from None
    if request.mimetype in _JSON_LINES:
        if endpoint != "events.add_batch":
            return {}
        return [_loads(line) for line in text.splitlines() if line.strip()]
    data = _loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise errors.malformed_request("Data should be a dict")
    _merge_args(data, request.args)
    return data


def _resolve(path: str) -> tuple[str, str, bool]:
    """The endpoint name, the requested version and whether the path has the shape of an API call."""
    match = _PATH.match(path)
    endpoint = match.group("endpoint") if match else path.strip("/")
    requested = (match.group("version") if match else None) or API_VERSION
    return endpoint, requested, match is not None


# the web host's pages: path -> (HTTP status, HTML), or None for a path that is not a page
PageHook = Callable[[str], "tuple[int, str] | None"]
PageSource = Callable[[], "PageHook | None"]  # the hook in effect now (None: no pages)
LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


class ApiApp:
    """Dispatches API calls to the endpoint handlers against one :class:`Store`.

    :meth:`admit` is the :mod:`gate` policy: before a body is read, a call that needs a token must carry a
    valid one, and the body must fit the limits (:class:`BodyLimits`): ``public`` for the endpoints anyone may
    call (``auth.login``, ``debug.ping``...) and for unknown ones, ``api`` for the rest. The application checks
    the token again itself.
    """

    def __init__(self, store: Store, tokens: TokenService, stats: ServerStats, limits: BodyLimits,
                 pages: PageSource | None = None) -> None:
        self._store = store
        self._tokens = tokens
        self._stats = stats
        self._limits = limits
        self._handlers: dict[str, Handler] = all_endpoints()
        self._pages = pages

    def wsgi(self) -> Flask:
        app = Flask("reconciler.localserver.api")
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        app.add_url_rule("/", "root", lambda: self._serve(""), methods=methods)
        app.add_url_rule("/<path:path>", "api", self._serve, methods=methods)
        return app

    def admit(self, head: Head) -> Refusal | None:
        endpoint, requested, known = _resolve(head.path.removeprefix("/"))
        public = not known or endpoint not in self._handlers or endpoint in PUBLIC_ENDPOINTS
        error: errors.ApiError | None = None
        if not public:
            try:
                self._tokens.check_bearer(head.headers.get("AUTHORIZATION"))
            except errors.ApiError as err:
                error = err
        limit = self._limits.public if public else self._limits.api
        if error is None and head.content_length is None and public:
            error = errors.ApiError(411, 0, "Length Required (a chunked body needs credentials)")
        elif error is None and head.content_length is not None and head.content_length > limit:
            error = errors.body_too_large(head.content_length, limit)
        if error is None:
            return None
        self._stats.count(endpoint)
        body = json.dumps(envelope(endpoint, requested, {}, error)).encode()
        return Refusal(error.code, HTTPStatus(error.code).phrase, body)

    def _page(self, path: str) -> Response | None:
        """The web page the SDK links to at ``path`` (its dataset and task pages), or None when there is none.

        Readable without credentials from this machine (the server binds 127.0.0.1 by default); from anywhere
        else with HTTP Basic credentials of the server's key pair (a browser asks for them).
        """
        if request.method != "GET" or self._pages is None:
            return None
        hook = self._pages()
        if hook is None:
            return None
        if request.remote_addr not in LOOPBACK:
            try:
                self._tokens.check_basic(request.headers.get("Authorization"))
            except errors.ApiError:
                return Response("credentials needed\n", status=401, mimetype="text/plain",
                                headers={"WWW-Authenticate": 'Basic realm="reconcile server"'})
        found = hook(path)
        if found is None:
            return None
        status, html = found
        self._stats.count("web.page")
        return Response(html, status=status, mimetype="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                            "img-src data:", "X-Content-Type-Options": "nosniff"})

    def _serve(self, path: str) -> Response:
        endpoint, requested, known = _resolve(path)
        if not known:
            page = self._page(path)
            if page is not None:
                return page
        self._stats.count(endpoint)
        parsed: Any = None
        try:
            data, parsed = self._dispatch(endpoint, requested, known_path=known)
            body = envelope(endpoint, requested, data)
        except errors.ApiError as err:
            if err.code == 404:
                log.warning("unknown endpoint %s requested", endpoint)
            body = envelope(endpoint, requested, {}, err)
        except Exception as exc:  # the envelope must survive any handler bug
            log.exception("endpoint %s failed", endpoint)
            body = envelope(endpoint, requested, {}, errors.ApiError(500, 0, f"Internal server error: {exc}"))
        status = body["meta"]["result_code"]
        self._stats.record(
            {
                "method": request.method,
                "path": request.path,
                "endpoint": endpoint,
                "request": parsed,
                "status": status,
                "response": body,
            }
        )
        return Response(json.dumps(body), status=status, mimetype="application/json")

    def _dispatch(self, endpoint: str, requested: str, *, known_path: bool) -> tuple[Any, Any]:
        """The response data and the parsed request body."""
        if endpoint == "auth.login":
            self._tokens.check_basic(request.headers.get("Authorization"))
            return {"token": self._tokens.issue()}, None
        handler = self._handlers.get(endpoint) if known_path else None
        if handler is None:
            raise errors.unknown_endpoint(endpoint, requested)
        if endpoint not in PUBLIC_ENDPOINTS:
            self._tokens.check_bearer(request.headers.get("Authorization"))
        data = _parse_body(endpoint)
        return handler(Call(endpoint, data, self._store, self._tokens.identity)), data
