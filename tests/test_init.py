"""``reconcile init``: a starter manifest that validates, tells editors where its schema is, and overwrites nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from reconciler.manifest import manifest_schema, schema_text

CORPUS = Path(__file__).parent / "manifests"


def reconcile(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.pop("CI", None)
    env.update(HOME=str(cwd / "home"), XDG_CACHE_HOME=str(cwd / "home" / ".cache"), NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "reconciler.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def schema_path_of(manifest: Path) -> Path:
    """Where yaml-language-server looks: the modeline's path, relative to the manifest's folder."""
    first = manifest.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    return (manifest.parent / match.group(1)).resolve()


def test_init_writes_a_commented_starter_that_validates(tmp_path: Path):
    done = reconcile(tmp_path, "init", "manifests")
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / "manifests" / "my_dataset.yaml"
    assert done.stdout.splitlines()[0] == "wrote manifests/my_dataset.yaml"
    assert (tmp_path / "manifests" / "data" / "my_dataset").is_dir()

    schema = schema_path_of(manifest)
    assert schema == (tmp_path / "manifests" / "manifest.v1.schema.json").resolve()
    assert schema.read_text(encoding="utf-8") == schema_text()

    text = manifest.read_text(encoding="utf-8")
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 20  # it explains itself
    checked = reconcile(tmp_path, "validate", "manifests")
    assert checked.returncode == 0 and checked.stdout.strip() == "ok: 1 dataset, 1 version", checked.stderr

    document = yaml.safe_load(text)
    assert document["project"] == "datasets" and document["name"] == "my_dataset"
    assert document["versions"][0]["sources"] == [{"path": "data/my_dataset"}]
    for validator in (Draft202012Validator, Draft7Validator):  # what editors run, with the schema alone
        assert list(validator(json.loads(schema.read_text())).iter_errors(document)) == []


def test_the_starter_plans_against_the_embedded_server(tmp_path: Path):
    assert reconcile(tmp_path, "init", ".", "--project", "team/vision", "--name", "Road signs").returncode == 0
    (tmp_path / "data" / "road-signs" / "stop.txt").write_text("a file")
    planned = reconcile(tmp_path, "--local", "plan", "--detailed-exitcode", "road-signs.yaml")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "team/vision/Road signs@1.0.0" in planned.stdout and "1 to create" in planned.stdout


def test_init_overwrites_nothing(tmp_path: Path):
    assert reconcile(tmp_path, "init", "m").returncode == 0
    manifest = tmp_path / "m" / "my_dataset.yaml"
    manifest.write_text(manifest.read_text() + "# my edits\n")
    before = manifest.read_text()

    again = reconcile(tmp_path, "init", "m")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.strip() == "error: m/my_dataset.yaml already exists: not overwritten " \
                                   "(use --name for another dataset)"
    assert manifest.read_text() == before

    other = reconcile(tmp_path, "init", "m", "--name", "Second")  # the identical schema copy is kept
    assert other.returncode == 0 and "kept (identical) m/manifest.v1.schema.json" in other.stdout
    assert reconcile(tmp_path, "validate", "m").stdout.strip() == "ok: 2 datasets, 2 versions"

    schema = tmp_path / "m" / "manifest.v1.schema.json"
    schema.write_text(schema.read_text().replace("Format version", "An older format version"))
    third = reconcile(tmp_path, "init", "m", "--name", "Third")
    assert third.returncode == 1 and "m/manifest.v1.schema.json differs from the schema" in third.stderr
    assert not (tmp_path / "m" / "third.yaml").exists(), "a refused init wrote something"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--name", "a/b", "name: 'a/b' is not a dataset name"),
    ("--name", "ab", "name: 'ab' is shorter than 3 characters"),
    ("--project", "team//vision", "project: 'team//vision' is not a project"),
])
def test_a_bad_project_or_name_is_one_line(tmp_path: Path, option: str, value: str, message: str):
    done = reconcile(tmp_path, "init", "m", option, value)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m").exists()


def test_a_name_yaml_would_misread_is_quoted(tmp_path: Path):
    assert reconcile(tmp_path, "init", ".", "--name", "yes: #1 'quoted'").returncode == 0
    (manifest,) = tmp_path.glob("*.yaml")
    assert yaml.safe_load(manifest.read_text())["name"] == "yes: #1 'quoted'"


def test_draft_07_editors_judge_the_corpus_as_the_tool_does():
    """The schema says draft 2020-12 but uses nothing draft-07 lacks: most editors' validators agree with ours."""
    schema = manifest_schema()
    Draft7Validator.check_schema(schema)
    newer, older = Draft202012Validator(schema), Draft7Validator(schema)
    checked = 0
    for path in sorted(CORPUS.rglob("*.y*ml")):
        try:
            documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # not YAML text: no schema involved
        for doc in documents:
            try:
                doc = json.loads(json.dumps(doc))
            except (TypeError, ValueError):
                continue
            assert sorted(e.message for e in older.iter_errors(doc)) == \
                   sorted(e.message for e in newer.iter_errors(doc)), path
            checked += 1
    assert checked > 50
