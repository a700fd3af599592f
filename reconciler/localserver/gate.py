"""Refusing a request before its body is read: credentials and size are checked as soon as the headers are in.

waitress reads a whole request body (spooling it to a temporary file past half a megabyte) before the WSGI
application runs, so an application-level check comes too late: an unauthenticated 1 GiB upload would be on
disk first. :func:`gated` makes a waitress server consult a :data:`Policy` when a request's headers are parsed;
a refused request is answered at once with the policy's response, its body is never read (the rest of the
connection's input is dropped) and the connection closes after the answer.

Invariants:

* A policy sees only the request line and headers (:class:`Head`) and runs on the server's I/O thread: it must
  be quick and must not block.
* A refused request never reaches the application, and no byte of its body is buffered.
* Requests the policy lets through are served exactly as before; chunked bodies stay bounded by waitress's
  ``max_request_body_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.utilities import Error


@dataclass(frozen=True, slots=True)
class Head:
    """What is known of a request when its headers are in: waitress's header keys (``AUTHORIZATION``,
    ``CONTENT_TYPE``...); ``content_length`` is None for a chunked body."""

    method: str
    path: str
    headers: Mapping[str, str]
    content_length: int | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """The complete answer to a refused request."""

    status: int
    reason: str
    body: bytes
    content_type: str = "application/json"


Policy = Callable[[Head], Refusal | None]


DEFAULT_API_BODY = 10 * 1024**2
DEFAULT_UPLOAD = 16 * 1024**3  # dataset chunks are at most a few hundred MB by default
DEFAULT_PUBLIC_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Largest request bodies, in bytes: ``api`` for authenticated API calls, ``upload`` for the file server,
    ``public`` for what anyone may send (unauthenticated endpoints, downloads)."""

    api: int = DEFAULT_API_BODY
    upload: int = DEFAULT_UPLOAD
    public: int = DEFAULT_PUBLIC_BODY

    def __post_init__(self) -> None:
        for name in ("api", "upload", "public"):
            if getattr(self, name) < 0:
                raise ValueError(f"the {name} body limit must not be negative")


class _Refused(Error):  # type: ignore[misc]
    """waitress answers a parser error with ``error.to_response``: here, the policy's answer."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        refusal = self.refusal
        return f"{refusal.status} {refusal.reason}", [("Content-Type", refusal.content_type)], refusal.body


class _GatedParser(HTTPRequestParser):  # type: ignore[misc]
    policy: Policy
    refused = False
    chunked: bool
    content_length: int

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        head = Head(
            method=self.command,
            path=self.path,
            headers=dict(self.headers),
            content_length=None if self.chunked else self.content_length,
        )
        refusal = type(self).policy(head)
        if refusal is None:
            return
        self.refused = True
        self.error = _Refused(refusal)
        self.completed = True
        self.content_length = 0  # nothing more of this request is read (and waitress's own size check is moot)
        self.body_rcv = None
        self.chunked = False
        self.expect_continue = False  # never invite the body with "100 Continue"
        self.connection_close = True

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        # what arrived after a refused request's headers is its body: claim it all, so the channel does not
        # parse it as a next request
        return len(data) if self.refused else consumed


class _GatedChannel(HTTPChannel):  # type: ignore[misc]
    """Drops all input after a refused request; the connection closes once the refusal is sent."""

    dropping = False

    def received(self, data: bytes) -> bool:
        if self.dropping:
            return True
        result: bool = super().received(data)
        if any(getattr(request, "refused", False) for request in self.requests):
            self.dropping = True
        return result


def gated(server: Any, policy: Policy) -> None:
    """Makes the waitress ``server`` (from ``create_server``) consult ``policy`` for every new connection."""
    parser = type("GatedParser", (_GatedParser,), {"policy": staticmethod(policy)})
    server.channel_class = type("GatedChannel", (_GatedChannel,), {"parser_class": parser})
