"""Which server and credentials, read the SDK's way; every mistake is one line naming the variable or file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.clearml_backend.config import load_server_config
from reconciler.diagnostics import ReconcileError

KEYS = {"CLEARML_API_ACCESS_KEY": "AK", "CLEARML_API_SECRET_KEY": "SK"}


def test_nothing_configured_is_none(tmp_path: Path) -> None:
    assert load_server_config({"HOME": str(tmp_path)}) is None


def test_environment_wins_and_the_files_host_is_derived_like_the_sdk(tmp_path: Path) -> None:
    cfg = load_server_config({"HOME": str(tmp_path), "CLEARML_API_HOST": "http://h:8008/", **KEYS})
    assert cfg is not None and (cfg.api_host, cfg.files_host) == ("http://h:8008", "http://h:8081")
    cfg = load_server_config({"HOME": str(tmp_path), "CLEARML_API_HOST": "https://api.example.com", **KEYS})
    assert cfg is not None and cfg.files_host == "https://files.example.com"
    assert "SK" not in repr(cfg) and cfg.redact("key SK and AK") == "key *** and ***"


@pytest.mark.parametrize("env,expected", [
    ({"CLEARML_API_HOST": "http://h:8008"},
     "CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY are not set"),
    ({"CLEARML_API_HOST": "http://h:8008", "CLEARML_API_ACCESS_KEY": "AK"}, "CLEARML_API_SECRET_KEY is not set"),
    ({"CLEARML_API_HOST": "h:8008", **KEYS}, "is not an http(s) URL"),
    ({"CLEARML_API_HOST": "http://h:9999", **KEYS}, "set CLEARML_FILES_HOST or api.files_server"),
    ({"CLEARML_CONFIG_FILE": "/does/not/exist"}, "CLEARML_CONFIG_FILE names /does/not/exist, which does not exist"),
])
def test_configuration_mistakes_are_one_line(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ReconcileError) as err:
        load_server_config({"HOME": str(tmp_path), **env})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_broken_clearml_conf_is_named_with_its_line(tmp_path: Path) -> None:
    conf = tmp_path / "clearml.conf"
    conf.write_text('api {\n  api_server: "http://h:8008"\n  credentials {\n    access_key: "AK"\n}\n')
    with pytest.raises(ReconcileError) as err:
        load_server_config({"HOME": str(tmp_path)})
    assert str(err.value).startswith(f"{conf}:") and "invalid ClearML configuration" in str(err.value)


def test_clearml_conf_gives_everything(tmp_path: Path) -> None:
    conf = tmp_path / "clearml.conf"
    conf.write_text('api {\n  api_server: "http://h:8008"\n  files_server: "http://f:1"\n'
                    '  credentials { access_key: "AK", secret_key: "SK" }\n  verify_certificate: false\n}\n')
    cfg = load_server_config({"CLEARML_CONFIG_FILE": str(conf)})
    assert cfg is not None and (cfg.api_host, cfg.files_host, cfg.access_key, cfg.verify_tls) == (
        "http://h:8008", "http://f:1", "AK", False)
    missing = tmp_path / "other.conf"
    missing.write_text('api { api_server: "http://h:8008" }\n')
    with pytest.raises(ReconcileError, match=f"nor api.credentials in {missing}"):
        load_server_config({"CLEARML_CONFIG_FILE": str(missing)})
