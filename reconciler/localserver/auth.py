"""Credentials and API tokens of the embedded server.

The key pair, the JWT signing secret and the server's company/user ids live in ``<data_dir>/credentials.json``
(mode 0600), created on first start. Keys given explicitly replace the stored pair for that run only.
Tokens are HS256 JWTs carrying the claims the clearml SDK reads without verifying them: ``api_version`` (the
version negotiation), ``server_version``, ``feature_set`` ("basic": no vaults), ``exp`` and ``identity``. The
server itself verifies signature and expiry on every call.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from . import errors

API_VERSION = "2.31"
SERVER_VERSION = "2.0.0"
TOKEN_LIFETIME_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Identity:
    company: str
    user: str
    user_name: str = "reconcile"
    company_name: str = "reconcile"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    jwt_secret: str
    identity: Identity


def _create_file(path: Path) -> None:
    """Writes fresh credentials to ``path`` unless another process got there first (O_EXCL)."""
    doc = {
        "access_key": secrets.token_hex(10).upper(),
        "secret_key": secrets.token_urlsafe(30),
        "jwt_secret": secrets.token_urlsafe(48),
        "company": uuid.uuid4().hex,
        "user": uuid.uuid4().hex,
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)


def load_credentials(
    data_dir: Path, access_key: str | None = None, secret_key: str | None = None
) -> Credentials:
    """The stored credentials (created on first use), with the key pair overridden when both are given."""
    path = data_dir / "credentials.json"
    if not path.exists():
        _create_file(path)
    doc = _read_complete(path)
    if bool(access_key) != bool(secret_key):
        raise ValueError("give both the access key and the secret key, or neither")
    return Credentials(
        access_key=access_key or doc["access_key"],
        secret_key=secret_key or doc["secret_key"],
        jwt_secret=doc["jwt_secret"],
        identity=Identity(company=doc["company"], user=doc["user"]),
    )


def _read_complete(path: Path) -> dict[str, Any]:
    """Reads ``path``, waiting briefly if a concurrent creator has not finished writing it."""
    for _ in range(50):
        try:
            return dict(json.loads(path.read_text()))
        except json.JSONDecodeError:
            time.sleep(0.05)
    return dict(json.loads(path.read_text()))


class TokenService:
    """Checks key pairs (HTTP Basic) and issues/verifies bearer tokens."""

    def __init__(self, credentials: Credentials) -> None:
        self._cred = credentials

    @property
    def identity(self) -> Identity:
        return self._cred.identity

    def check_basic(self, authorization: str | None) -> None:
        """Raises 401 unless ``authorization`` is ``Basic base64(key:secret)`` of the server's key pair."""
        if not authorization or not authorization.lower().startswith("basic "):
            raise errors.missing_credentials()
        try:
            key, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise errors.invalid_credentials() from None
        ok_key = hmac.compare_digest(key.encode(), self._cred.access_key.encode())
        ok_secret = hmac.compare_digest(secret.encode(), self._cred.secret_key.encode())
        if not (ok_key and ok_secret):
            raise errors.invalid_credentials()

    def issue(self) -> str:
        now = int(time.time())
        ident = self._cred.identity
        claims = {
            "auth_type": "Bearer",
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "env": "<unknown>",
            "identity": {
                "company": ident.company,
                "company_name": ident.company_name,
                "user": ident.user,
                "user_name": ident.user_name,
                "role": "user",
            },
            "session_id": uuid.uuid4().hex,
            "api_version": API_VERSION,
            "server_version": SERVER_VERSION,
            "server_build": "",
            "feature_set": "basic",
        }
        return jwt.encode(claims, self._cred.jwt_secret, algorithm="HS256")

    def verify(self, token: str) -> None:
        """Raises 401 unless ``token`` was signed by this server and has not expired."""
        try:
            jwt.decode(token, self._cred.jwt_secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise errors.invalid_token("token expired") from None
        except jwt.InvalidTokenError:
            raise errors.invalid_token("invalid signature") from None

    def check_bearer(self, authorization: str | None) -> None:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise errors.missing_credentials()
        self.verify(authorization[7:].strip())
