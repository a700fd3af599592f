"""The JSON Schema: valid for its metaschema, shipped in the package, in step with the model and SDK."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from reconciler.manifest import SCHEMA_RESOURCE, manifest_schema, schema_text
from reconciler.model import TORCHVISION_LAYOUTS

ROOT = Path(__file__).parent.parent
SEMVER = ["0.0.0", "1.0.0", "1.2.3", "10.20.30", "1.0.0-rc.1", "1.0.0-alpha", "2.0.0-beta2", "1.1.0-rc1"]
# what scripts use too: the SDK accepts any string (it orders those that parse as PEP 440 versions)
OTHER_SCHEMES = ["1.0", "1", "v2", "v1.0.0", "01.0.0", "1.0.0.0", "2024.06.01", "1.0.0+build"]
NOT_ORDERED = ["latest", "1.0.0-foo", "nightly build 7"]
REFUSED = ["", " 1.0.0", "1.0.0 ", "a@b", "1.0\t", "1.\x00"]


def test_schema_is_valid_draft_2020_12() -> None:
    schema = manifest_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_package_copy_is_the_repository_file() -> None:
    assert schema_text() == (ROOT / "schemas" / "manifest.v1.schema.json").read_text(encoding="utf-8")


def test_every_object_refuses_unknown_keys() -> None:
    def objects(node: object) -> list[dict[str, object]]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                found.append(node)
            for value in node.values():
                found.extend(objects(value))
        elif isinstance(node, list):
            for value in node:
                found.extend(objects(value))
        return found

    schema_objects = objects(manifest_schema())
    assert len(schema_objects) == 7  # dataset, upload settings, retention, version, source, check, check column
    assert all(o["additionalProperties"] is False for o in schema_objects)


def test_layouts_match_the_model() -> None:
    assert tuple(manifest_schema()["$defs"]["source"]["properties"]["layout"]["enum"]) == TORCHVISION_LAYOUTS


@pytest.mark.parametrize("version", SEMVER + OTHER_SCHEMES + NOT_ORDERED)
def test_any_version_string_the_sdk_accepts_is_accepted(version: str) -> None:
    """The SDK takes any version string; semantic versions and the other PEP 440 forms are what it orders when
    it picks the latest (the others lose to them), as the README says."""
    from clearml.utilities.version import Version

    assert re.fullmatch(manifest_schema()["$defs"]["versionString"]["pattern"], version)
    assert re.fullmatch(manifest_schema()["$defs"]["parentRef"]["pattern"], version)
    assert re.fullmatch(manifest_schema()["$defs"]["parentRef"]["pattern"], f"p/q/name@{version}")
    assert Version.is_valid_version_string(version) is (version not in NOT_ORDERED)


@pytest.mark.parametrize("version", REFUSED)
def test_refused_versions(version: str) -> None:
    assert not re.fullmatch(manifest_schema()["$defs"]["versionString"]["pattern"], version)


@pytest.mark.parametrize("manifest", sorted((ROOT / "manifests").rglob("*.yaml")), ids=lambda p: p.name)
def test_repository_manifests_pass_the_bare_schema(manifest: Path) -> None:
    """Any JSON Schema tool (an editor, check-jsonschema) can validate manifests with the schema alone."""
    validator = Draft202012Validator(manifest_schema())
    for doc in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
        validator.validate(json.loads(json.dumps(doc)))


def _copy_project(dest: Path) -> None:
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "reconciler", dest / "reconciler", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "schemas", dest / "schemas", ignore=ignore)


def test_wheel_ships_the_schema(tmp_path: Path) -> None:
    """A non-editable install gets the schema: it is a regular file inside the built wheel."""
    src, out = tmp_path / "src", tmp_path / "dist"
    src.mkdir()
    _copy_project(src)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = zf.read(f"reconciler/{SCHEMA_RESOURCE}").decode("utf-8")
    assert shipped == schema_text()
