"""Which ClearML server, with which credentials: read the way the clearml SDK reads them, without importing it.

Sources, highest first: ``CLEARML_*`` environment variables, then the configuration file named by
``CLEARML_CONFIG_FILE`` or ``~/clearml.conf`` (HOCON: ``api.api_server``, ``api.files_server``,
``api.web_server``, ``api.credentials.access_key|secret_key``, ``api.verify_certificate``). A missing or broken
piece is one line naming the variable, or the file and line. Credentials never appear in messages.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..diagnostics import ReconcileError, SourceSpan

ENV_API = "CLEARML_API_HOST"
ENV_FILES = "CLEARML_FILES_HOST"
ENV_WEB = "CLEARML_WEB_HOST"
ENV_KEY = "CLEARML_API_ACCESS_KEY"
ENV_SECRET = "CLEARML_API_SECRET_KEY"
ENV_CONFIG = "CLEARML_CONFIG_FILE"
ENV_VERIFY = "CLEARML_API_HOST_VERIFY_CERT"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    api_host: str
    files_host: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    web_host: str = ""
    verify_tls: bool = True
    source: str = ""  # where the address came from, for messages

    def redact(self, text: str) -> str:
        for secret in (self.secret_key, self.access_key):
            if secret:
                text = text.replace(secret, "***")
        return text


def config_file(env: Mapping[str, str]) -> Path | None:
    """The clearml.conf in effect, or None. ``CLEARML_CONFIG_FILE`` naming a missing file is an error."""
    named = env.get(ENV_CONFIG)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ReconcileError(f"{ENV_CONFIG} names {named}, which does not exist")
        return path
    home = Path(env.get("HOME") or Path.home())
    for candidate in (home / "clearml.conf", home / ".clearml.conf"):
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path) -> Mapping[str, Any]:
    """The parsed HOCON file; a syntax error is ``path:line:col: error: ...``."""
    try:
        from pyhocon import ConfigFactory
        from pyhocon.exceptions import ConfigException
        from pyparsing import ParseBaseException
    except ImportError as err:  # pragma: no cover - pyhocon is a dependency
        raise ReconcileError(f"reading {path} needs pyhocon: {err}") from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ReconcileError(f"cannot read the ClearML configuration: {err}", SourceSpan(str(path))) from None
    try:
        tree = ConfigFactory.parse_string(text, resolve=True)
    except ParseBaseException as err:
        raise ReconcileError(f"invalid ClearML configuration ({err.msg})",
                             SourceSpan(str(path), err.lineno, err.col)) from None
    except (ConfigException, ValueError, TypeError, KeyError) as err:
        raise ReconcileError(f"invalid ClearML configuration ({err})", SourceSpan(str(path))) from None
    return tree.as_plain_ordered_dict() if hasattr(tree, "as_plain_ordered_dict") else dict(tree)


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _check_url(url: str, what: str, source: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ReconcileError(f"the ClearML {what} address {url!r} ({source}) is not an http(s) URL")
    return url.rstrip("/")


def _derived_files_host(api: str) -> str:
    """What the SDK assumes when no files server is named: ``api.`` -> ``files.``, port 8008 -> 8081."""
    parsed = urllib.parse.urlsplit(api)
    if parsed.hostname and parsed.hostname.startswith("api."):
        return api.replace("://api.", "://files.", 1)
    if parsed.port == 8008:
        return api.replace(":8008", ":8081", 1)
    return ""


def load_server_config(env: Mapping[str, str] | None = None) -> ServerConfig | None:
    """The configured server, or None when neither the environment nor a config file names one."""
    env = os.environ if env is None else env
    path = config_file(env)
    tree: Mapping[str, Any] = read_config_file(path) if path is not None else {}
    where = str(path) if path is not None else ""

    def pick(var: str, key: str) -> tuple[str, str]:
        if _text(env.get(var)):
            return _text(env.get(var)), var
        value = _text(_lookup(tree, key))
        return value, (f"{key} in {where}" if value else "")

    api, api_src = pick(ENV_API, "api.api_server")
    if not api:
        api, api_src = _text(_lookup(tree, "api.host")), f"api.host in {where}"
    if not api:
        return None
    api = _check_url(api, "API", api_src)
    key, _ = pick(ENV_KEY, "api.credentials.access_key")
    secret, _ = pick(ENV_SECRET, "api.credentials.secret_key")
    if not key or not secret:
        missing = [name for name, value in ((ENV_KEY, key), (ENV_SECRET, secret)) if not value]
        file_hint = f" nor api.credentials in {where}" if where else ""
        raise ReconcileError(
            f"the ClearML server {api} is configured ({api_src}) but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set{file_hint}"
        )
    files, files_src = pick(ENV_FILES, "api.files_server")
    if not files:
        files, files_src = _derived_files_host(api), f"derived from {api_src}"
    if not files:
        raise ReconcileError(f"no ClearML files server is configured for {api}: set {ENV_FILES} "
                             f"or api.files_server{' in ' + where if where else ''}")
    files = _check_url(files, "files server", files_src)
    web, _ = pick(ENV_WEB, "api.web_server")
    verify_raw = _text(env.get(ENV_VERIFY)) or _text(_lookup(tree, "api.verify_certificate"))
    verify = verify_raw.lower() not in ("0", "false", "no", "off") if verify_raw else True
    return ServerConfig(api, files, key, secret, web.rstrip("/"), verify, api_src)
