"""`reconcile show` and `reconcile graph` against a real server: a history with a merge (made with the plain SDK:
``Dataset.create(parent_datasets=[...])``), aliases, an archived version and a task that used a version."""

from __future__ import annotations

import json
import re

import pytest

from .browser import colours, dom, screenshot
from .helpers import Env, copy_sample

pytestmark = pytest.mark.integration

HISTORY = """
    from clearml import Task
    from clearml.backend_api.session.client import APIClient
    import pathlib
    ids = {v: Dataset.get(dataset_project=PROJECT, dataset_name='Shapes', dataset_version=v).id
           for v in ('1.0.0', '1.1.0')}
    side = Dataset.create(dataset_project=PROJECT, dataset_name='Shapes', dataset_version='1.0.1',
                          parent_datasets=[ids['1.0.0']])
    pathlib.Path('extra').mkdir(exist_ok=True)
    pathlib.Path('extra/notes.txt').write_text('hello')
    side.add_files('extra', dataset_path='docs')
    side.upload(); side.finalize()
    merged = Dataset.create(dataset_project=PROJECT, dataset_name='Shapes', dataset_version='2.0.0',
                            parent_datasets=[ids['1.1.0'], side.id])
    merged.upload(); merged.finalize()
    old = Dataset.create(dataset_project=PROJECT, dataset_name='Shapes', dataset_version='0.9.0')
    pathlib.Path('old').mkdir(exist_ok=True)
    pathlib.Path('old/a.txt').write_text('old')
    old.add_files('old'); old.upload(); old.finalize()
    APIClient().tasks.archive(tasks=[old.id])
    task = Task.init(project_name=PROJECT, task_name='train <b>model</b>', auto_connect_frameworks=False,
                     auto_resource_monitoring=False, auto_connect_arg_parser=False)
    Dataset.get(dataset_id=merged.id, alias='shapes')
    task.close()
    result = dict(ids, side=side.id, merged=merged.id, old=old.id, task=task.id)
"""


def make_history(env: Env) -> dict[str, str]:
    """The sample applied with two aliases, then with the SDK: 1.0.1 from 1.0.0 (one more file), 2.0.0 merging
    1.1.0 and 1.0.1, 0.9.0 archived, and a task that got 2.0.0 as ``shapes``. Version ids by name."""
    copy_sample(env)
    shapes = env.work / "manifests" / "shapes.yaml"
    shapes.write_text(shapes.read_text() + "aliases: {production: 1.1.0, staging: 1.0.0}\n")
    proc = env.reconcile("apply", "--auto-approve", "manifests")
    assert proc.returncode == 0, proc.stderr
    ids = env.sdk(HISTORY)
    assert isinstance(ids, dict)
    return ids


def test_show_and_graph_on_a_history_with_a_merge(env: Env) -> None:
    history = (env, make_history(env))
    check_show_json(history)
    check_show_one_version_by_alias(history)
    check_graph_formats(history)
    check_html_in_chromium(history)


def check_show_json(history: tuple[Env, dict[str, str]]) -> None:
    env, ids = history
    proc = env.reconcile("show", "manifests", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    [ds] = doc["datasets"]
    assert ds["dataset"] == f"{env.project}/Shapes"
    by_version = {v["version"]: v for v in ds["versions"]}
    assert sorted(by_version) == ["0.9.0", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    assert by_version["2.0.0"]["parents"] == [ids["1.1.0"], ids["side"]]
    assert by_version["1.0.1"]["parents"] == [ids["1.0.0"]]
    assert by_version["0.9.0"]["state"] == "archived"
    assert by_version["1.1.0"]["state"] == "published"
    assert by_version["1.0.0"]["state"] == "final"
    assert by_version["1.1.0"]["aliases"] == ["production"]
    assert by_version["1.0.0"]["aliases"] == ["staging"]
    merged = by_version["2.0.0"]["files"]
    one_one = by_version["1.1.0"]["files"]
    # 1.0.1 brings docs/notes.txt and 1.0.0's triangle_011.png, which 1.1.0 removed
    assert merged["count"] == one_one["count"] + 2 and merged["own_count"] == 0
    assert merged["inherited_count"] == merged["count"]
    assert by_version["1.0.1"]["files"]["own_count"] == 1 and by_version["1.0.1"]["files"]["own_bytes"] == 5
    assert by_version["1.1.0"]["statistics"]["images"] == one_one["count"]
    assert set(by_version["1.1.0"]["statistics"]["classes"]["train"]) == {"circle", "square", "triangle", "cross"}
    [use] = by_version["2.0.0"]["tasks"]
    assert use["id"] == ids["task"] and use["name"] == "train <b>model</b>" and use["project"] == env.project
    assert by_version["1.1.0"]["tasks"] == []
    edges = {(e["parent"], e["child"]) for e in ds["lineage"]["edges"]}
    assert {(ids["1.1.0"], ids["merged"]), (ids["side"], ids["merged"]), (ids["1.0.0"], ids["1.1.0"])} <= edges


def check_show_one_version_by_alias(history: tuple[Env, dict[str, str]]) -> None:
    env, ids = history
    proc = env.reconcile("show", f"{env.project}/Shapes@production")  # no manifests: aliases from the server
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "version 1.1.0" in out and "version 2.0.0" not in out
    assert "1.1.0 (published, alias production)  <== selected" in out
    assert "2.0.0 <- also from 1.0.1" in out
    assert "0.9.0 (archived)" in out
    bad = env.reconcile("show", f"{env.project}/Shapes@nope")
    assert bad.returncode == 1 and "has no version or alias 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def check_graph_formats(history: tuple[Env, dict[str, str]]) -> None:
    env, ids = history
    mermaid = env.reconcile("graph", "manifests")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD\n")
    assert "2.0.0" in mermaid.stdout and "#40;" not in mermaid.stdout.split("\n")[0]
    dot = env.reconcile("graph", f"{env.project}/Shapes", "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph lineage {")
    data = env.json("graph", "manifests", "--format", "json")
    assert {n["id"] for n in data["nodes"]} == {ids["1.0.0"], ids["1.1.0"], ids["side"], ids["merged"], ids["old"]}


def check_html_in_chromium(history: tuple[Env, dict[str, str]]) -> None:
    """The HTML page in real Chromium: no console message, the lineage drawn (every version a node, every
    trimmed parent edge an arrow, in the states' colours) and the class chart of the version with statistics."""
    env, ids = history
    page = env.work / "show.html"
    proc = env.reconcile("show", "manifests", "--format", "html", "--out", str(page))
    assert proc.returncode == 0, proc.stderr
    source = page.read_text()
    assert "<script" not in source and not re.search(r"""(src|href)=["']?(https?:|//)""", source)
    shot = page.with_suffix(".png")
    screenshot(page.as_uri(), shot)
    tree = dom(page.as_uri())
    nodes = re.findall(r'<g class="node state-(\w+)[^"]*" data-id="(\w+)"', tree)
    assert sorted(i for _, i in nodes) == sorted([ids["1.0.0"], ids["1.1.0"], ids["side"], ids["merged"], ids["old"]])
    assert dict((i, s) for s, i in nodes)[ids["old"]] == "archived"
    assert tree.count('class="edge"') == 4  # 1.0.0->1.1.0, 1.0.0->1.0.1, and the merge's two parents
    assert re.findall(r'<figure data-split="([^"]*)"><svg[^>]*class="chart class-chart"', tree) == ["train"] * 2
    drawn = colours(shot)
    assert {(0xDA, 0xFB, 0xE1), (0xDD, 0xF4, 0xFF), (0xF6, 0xF8, 0xFA)} <= drawn  # published, final, archived
