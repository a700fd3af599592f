"""Credentials and API tokens of the embedded server.

The key pair, the JWT secret and the server's company/user ids live in ``<data_dir>/credentials.json``
(mode 0600), created on first start. Keys given explicitly replace the stored pair for that run only.
Tokens are HS256 JWTs carrying the claims the clearml SDK reads without verifying them: ``api_version`` (the
version negotiation), ``server_version``, ``feature_set`` ("basic": no vaults), ``exp`` and ``identity``. The
server itself verifies signature and expiry on every call.

Invariants:

* Tokens are signed with a key derived from the JWT secret *and* the key pair in force, so a token is valid only
  while the pair it was issued under is: rotating the pair (editing ``credentials.json``, or starting with other
  keys) revokes every token issued before, while a restart with the same pair keeps them valid.
* ``credentials.json`` is re-read when it changes on disk (checked on every authentication), so a rotation takes
  effect without a restart; a file that cannot be read or parsed keeps the last good credentials in force.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from . import errors
from .store import DataDirError

log = logging.getLogger(__name__)

API_VERSION = "2.31"
SERVER_VERSION = "2.0.0"
TOKEN_LIFETIME_S = 30 * 24 * 3600
CREDENTIALS_FILE = "credentials.json"


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

    @property
    def signing_key(self) -> bytes:
        """The token signing key: bound to the JWT secret and to this key pair."""
        pair = f"{self.access_key}\0{self.secret_key}".encode()
        return hmac.new(self.jwt_secret.encode(), pair, hashlib.sha256).digest()


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


def _credentials(doc: dict[str, Any], path: Path, access_key: str | None, secret_key: str | None) -> Credentials:
    fields = ("access_key", "secret_key", "jwt_secret", "company", "user")
    if not all(isinstance(doc.get(key), str) and doc[key] for key in fields):
        missing = [key for key in fields if not (isinstance(doc.get(key), str) and doc[key])]
        raise DataDirError(f"{path}: missing or empty {', '.join(missing)}; delete the file to get new credentials")
    return Credentials(
        access_key=access_key or doc["access_key"],
        secret_key=secret_key or doc["secret_key"],
        jwt_secret=doc["jwt_secret"],
        identity=Identity(company=doc["company"], user=doc["user"]),
    )


def _read_complete(path: Path) -> dict[str, Any]:
    """Reads ``path``, waiting briefly if a concurrent creator has not finished writing it."""
    problem = ""
    for _ in range(50):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            problem = str(exc)
            time.sleep(0.05)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise DataDirError(f"{path}: cannot be read ({exc})") from None
        if isinstance(doc, dict):
            return doc
        problem = "not a JSON object"
        break
    raise DataDirError(f"{path}: not valid credentials ({problem}); delete the file to get new credentials")


def load_credentials(
    data_dir: Path, access_key: str | None = None, secret_key: str | None = None
) -> Credentials:
    """The stored credentials (created on first use), with the key pair overridden when both are given."""
    if bool(access_key) != bool(secret_key):
        raise ValueError("give both the access key and the secret key, or neither")
    path = data_dir / CREDENTIALS_FILE
    if not path.exists():
        _create_file(path)
    return _credentials(_read_complete(path), path, access_key, secret_key)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class CredentialSource:
    """The credentials in force: those of ``data_dir/credentials.json`` as it is now (see module docstring)."""

    def __init__(self, data_dir: Path, access_key: str | None = None, secret_key: str | None = None) -> None:
        self._path = data_dir / CREDENTIALS_FILE
        self._keys = (access_key, secret_key)
        self._lock = threading.Lock()
        self._current = load_credentials(data_dir, access_key, secret_key)
        self._stamp = _stamp(self._path)

    def current(self) -> Credentials:
        stamp = _stamp(self._path)
        if stamp == self._stamp or stamp is None:
            return self._current
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    doc = json.loads(self._path.read_text())
                    if not isinstance(doc, dict):
                        raise ValueError("not a JSON object")
                    self._current = _credentials(doc, self._path, *self._keys)
                except (OSError, ValueError) as exc:
                    log.warning("%s changed but cannot be used (%s); the previous credentials stay", self._path, exc)
            return self._current


class TokenService:
    """Checks key pairs (HTTP Basic) and issues/verifies bearer tokens against the credentials in force."""

    def __init__(self, source: CredentialSource) -> None:
        self._source = source

    @property
    def identity(self) -> Identity:
        return self._source.current().identity

    def check_basic(self, authorization: str | None) -> None:
        """Raises 401 unless ``authorization`` is ``Basic base64(key:secret)`` of the server's key pair."""
        if not authorization or not authorization.lower().startswith("basic "):
            raise errors.missing_credentials()
        try:
            key, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise errors.invalid_credentials() from None
        cred = self._source.current()
        ok_key = hmac.compare_digest(key.encode(), cred.access_key.encode())
        ok_secret = hmac.compare_digest(secret.encode(), cred.secret_key.encode())
        if not (ok_key and ok_secret):
            raise errors.invalid_credentials()

    def issue(self) -> str:
        now = int(time.time())
        cred = self._source.current()
        ident = cred.identity
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
        return jwt.encode(claims, cred.signing_key, algorithm="HS256")

    def verify(self, token: str) -> None:
        """Raises 401 unless ``token`` was signed under the credentials in force and has not expired."""
        try:
            jwt.decode(token, self._source.current().signing_key, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise errors.invalid_token("token expired") from None
        except jwt.InvalidTokenError:
            raise errors.invalid_token("invalid signature") from None

    def check_bearer(self, authorization: str | None) -> None:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise errors.missing_credentials()
        self.verify(authorization[7:].strip())
