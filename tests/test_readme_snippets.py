"""The README's configuration snippets parse, and name only what exists (action inputs, hook ids, SDK settings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    rest = README[start + len(title) + 2:]
    level = title.split(" ", 1)[0]
    ends = [m.start() for m in re.finditer(r"^#{2,3} ", rest, re.M)
            if len(rest[m.start():].split(" ", 1)[0]) <= len(level)]
    return rest[: ends[0]] if ends else rest


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_the_action_snippet_uses_declared_inputs():
    action = yaml.safe_load((REPO / "action.yml").read_text())
    (snippet,) = blocks(section("### GitHub Action"), "yaml")
    workflow = yaml.safe_load(snippet)
    (job,) = workflow["jobs"].values()
    (step,) = [s for s in job["steps"] if "clearml-dataset-reconciler@" in s.get("uses", "")]
    assert set(step.get("with", {})) <= set(action["inputs"])
    text = section("### GitHub Action")
    for name in ("saved-plan", "fail-on-drift", "python-version", "extras", "github-token", "comment-key",
                 "working-directory", "global-args", "args", "comment", "mode"):
        assert f"`{name}" in text and name in action["inputs"], name  # every input is documented
    for output in action["outputs"]:
        assert f"`{output}`" in text, output


def test_the_pre_commit_snippet_names_the_hook():
    hooks = {h["id"] for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    (snippet,) = blocks(section("### pre-commit"), "yaml")
    config = yaml.safe_load(snippet)
    assert [h["id"] for r in config["repos"] for h in r["hooks"]] == ["reconcile-validate"]
    assert {"reconcile-validate"} <= hooks


def test_the_clearml_conf_snippet_is_what_the_sdk_reads(monkeypatch: pytest.MonkeyPatch):
    from clearml.backend_config.bucket_config import S3BucketConfigurations
    from clearml.utilities.pyhocon import ConfigFactory

    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN", "DEFAULT_REGION", "PROFILE"):
        monkeypatch.delenv(f"AWS_{name}", raising=False)  # the SDK's fallbacks: only the snippet counts here
    (snippet,) = [b for b in re.findall(r"```\n(.*?)```", section("## S3"), re.S) if b.startswith("sdk {")]
    s3 = ConfigFactory.parse_string(snippet)["sdk"]["aws"]["s3"].as_plain_ordered_dict()
    buckets = S3BucketConfigurations.from_config(s3)
    config = buckets.get_config_by_uri("s3://minio.example.com:9000/datasets/store/x.zip")
    assert (config.host, config.key, config.secret, config.secure) == (
        "minio.example.com:9000", "ACCESS_KEY", "SECRET_KEY", False)
    assert buckets.get_config_by_uri("s3://some-aws-bucket/x.zip").region == "eu-west-1"
