"""Histories made by plain SDK scripts, in the shapes of ClearML's own ``examples/datasets`` scripts (local files in
place of their downloads), adopted with ``reconcile import`` and continued with a new version below each dataset's
finalized ones; and the same shapes declared directly in manifests. Each is read back from an empty cache by both
supported SDKs (``get_local_copy()``, ``verify_dataset_hash()``, ``clearml-data get`` and ``clearml-data verify``).

Every shape is built in one project, with tiny files, and read back by as few SDK processes as possible: one SDK
script builds the whole corpus, and per SDK one process reads every version and one runs the ``clearml-data``
commands (each from its own empty cache).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .helpers import Env, write_tree

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Made:
    """A version a script makes: ``parents`` are ``(name, version)``, merged in order (a later parent's file
    wins); then ``remove`` is applied, then ``files`` added."""

    name: str
    version: str
    parents: tuple[tuple[str, str], ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    publish: bool = False
    metadata: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # set_metadata(value, name)
    archived: bool = False  # archived after it is finalized (in the UI, say)
    draft: bool = False  # never finalized: a script's unfinished work

    @property
    def live(self) -> bool:
        """Finalized and not archived: what import adopts and the SDK reads."""
        return not (self.draft or self.archived)


CORPUS: tuple[Made, ...] = (
    # a linear chain: adds, a modify, removes, and a removed file added back with the same bytes
    Made("Chain", "1.0.0", files={"a.txt": "a1", "b.txt": "b1", "c.txt": "c1"}),
    Made("Chain", "1.1.0", (("Chain", "1.0.0"),), {"a.txt": "a2", "d/e.txt": "e1"}, remove=("c.txt",)),
    Made("Chain", "1.2.0", (("Chain", "1.1.0"),), {"c.txt": "c1"}, remove=("b.txt",)),
    # examples/datasets/multi_parent_child_dataset.py: a child of a train and a test dataset, no files of its own
    Made("Train", "1.0.0", files={"train/0.png": "t0", "train/1.png": "t1"}),
    Made("Test", "1.0.0", files={"test/0.png": "s0"}),
    Made("TrainTest", "1.0.0", (("Train", "1.0.0"), ("Test", "1.0.0"))),
    # the merge ClearML's docs show (parents from other datasets, one of them published), no files of its own
    Made("Images", "1.0.0", files={"img/a.png": "a", "img/b.png": "b", "img/c.png": "c"}),
    Made("Images", "1.1.0", (("Images", "1.0.0"),), {"img/d.png": "d"}, remove=("img/c.png",)),
    Made("Labels", "1.0.0", files={"labels.csv": "a,1"}, publish=True),
    Made("Merged", "1.0.0", (("Images", "1.1.0"), ("Labels", "1.0.0"))),
    # three parents and files of its own
    Made("Three", "1.0.0", (("Train", "1.0.0"), ("Test", "1.0.0"), ("Labels", "1.0.0")), {"README.md": "three"}),
    # a diamond inside one dataset: A; B and C on A; D = B + C
    Made("Diamond", "1.0.0", files={"base.txt": "base", "both.txt": "A"}),
    Made("Diamond", "1.1.0", (("Diamond", "1.0.0"),), {"b.txt": "B", "both.txt": "B"}),
    Made("Diamond", "1.2.0", (("Diamond", "1.0.0"),), {"c.txt": "C"}, remove=("base.txt",)),
    Made("Diamond", "2.0.0", (("Diamond", "1.1.0"), ("Diamond", "1.2.0"))),
    # parents holding the same path with different bytes, merged in both orders
    Made("Left", "1.0.0", files={"shared.txt": "left", "l.txt": "l"}),
    Made("Right", "1.0.0", files={"shared.txt": "right", "r.txt": "r"}),
    Made("LeftRight", "1.0.0", (("Left", "1.0.0"), ("Right", "1.0.0"))),
    Made("RightLeft", "1.0.0", (("Right", "1.0.0"), ("Left", "1.0.0")), {"own.txt": "own"}),
    # metadata under two names besides the default one; published, archived and draft versions side by side
    Made("Meta", "1.0.0", files={"m.txt": "m1"}, publish=True,
         metadata={"metadata": {"k": 1}, "info": {"rows": 1}, "schema": {"columns": ["m"]}}),
    Made("Meta", "1.1.0", (("Meta", "1.0.0"),), {"gone.txt": "g"}, archived=True,
         metadata={"metadata": {"k": 2}, "info": {"rows": 2}}),
    Made("Meta", "1.2.0", (("Meta", "1.0.0"),), {"n.txt": "n"},
         metadata={"metadata": {"k": 3}, "info": {"rows": 2}, "schema": {"columns": ["m", "n"]}}),
    Made("Meta", "1.3.0", (("Meta", "1.2.0"),), {"wip.txt": "w"}, draft=True),
    # version strings other than semantic versions (the SDK takes any), merged with a semantic one
    Made("Schemes", "v1", files={"one.txt": "1"}),
    Made("Schemes", "1.1", (("Schemes", "v1"),), {"two.txt": "2"}),
    Made("Schemes", "2024.06.01", (("Schemes", "1.1"), ("Chain", "1.2.0")), remove=("one.txt",)),
)

BUILD = """
import os, tempfile
made = {}
root = tempfile.mkdtemp()
for i, v in enumerate(SPEC):
    ds = Dataset.create(dataset_project=PROJECT, dataset_name=v["name"], dataset_version=v["version"],
                        parent_datasets=[made[tuple(p)] for p in v["parents"]])
    for path in v["remove"]:
        ds.remove_files(path)
    if v["files"]:
        folder = os.path.join(root, str(i))
        for rel, text in v["files"].items():
            os.makedirs(os.path.dirname(os.path.join(folder, rel)), exist_ok=True)
            open(os.path.join(folder, rel), "w").write(text)
        ds.add_files(folder)
    for name, value in v["metadata"].items():
        ds.set_metadata(value, metadata_name=name, ui_visible=False)
    ds.upload()
    if v["draft"]:
        continue
    ds.finalize()
    if v["publish"]:
        ds.publish()
    if v["archived"]:
        from clearml.backend_api.session.client import APIClient
        APIClient().tasks.archive_many(ids=[ds.id])
    else:
        made[(v["name"], v["version"])] = ds.id
result = {f"{k[0]}@{k[1]}": i for k, i in made.items()}
"""

# per SDK, one process reads every version from an empty cache, and another runs clearml-data get and verify on
# each (from its own empty cache); argv[1]: [[key, project, name, version], ...]
READ_BACK = """
import hashlib, json, os, sys
from clearml import Dataset
out = {}
for key, project, name, version in json.loads(sys.argv[1]):
    try:
        ds = Dataset.get(dataset_project=project, dataset_name=name, dataset_version=version)
        local = ds.get_local_copy()
        out[key] = {
            "files": {os.path.relpath(os.path.join(d, f), local):
                      hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
                      for d, _, fs in os.walk(local) for f in fs},
            "listed": sorted(ds.list_files()),
            "verify": ds.verify_dataset_hash(),
        }
    except Exception as err:
        out[key] = {"error": repr(err)[:500]}
print("@@" + json.dumps(out))
"""

CLEARML_DATA = """
import contextlib, io, json, sys
from clearml import Dataset
from clearml.cli.data.__main__ import main
out = {}
for key, project, name, version in json.loads(sys.argv[1]):
    version_id = Dataset.get(dataset_project=project, dataset_name=name, dataset_version=version).id
    for command in ("get", "verify"):
        sys.argv = ["clearml-data", command, "--id", version_id]
        text = io.StringIO()
        code = 0
        with contextlib.redirect_stdout(text):
            try:
                main()
            except SystemExit as stop:
                code = stop.code or 0
        out[f"{key} {command}"] = {"code": code, "tail": text.getvalue()[-400:]}
print("@@" + json.dumps(out))
"""


def expected(corpus: Sequence[Made]) -> dict[str, dict[str, str]]:
    """The content of every version (path -> text), by the SDK's rules."""
    out: dict[str, dict[str, str]] = {}
    for v in corpus:
        content: dict[str, str] = {}
        for p in v.parents:
            content.update(out[f"{p[0]}@{p[1]}"])
        for path in v.remove:
            content.pop(path)
        content.update(v.files)
        out[f"{v.name}@{v.version}"] = content
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_back(env: Env, pythons: Mapping[str, Path], want: Mapping[str, Mapping[str, str]],
              commands: Sequence[str]) -> None:
    """Every version in ``want`` (``name@version`` of the test's project -> its files) read by each SDK from an
    empty cache holds exactly those files and verifies; clearml-data gets and verifies each of ``commands`` (the
    newest version of each shape: it reads its whole lineage).

    Versions are read in the order of ``want``: reading a version fills the cache folders of the versions it
    reads from, and a later reader could find files there that its own lineage does not lead to; so none of
    the versions read is an ancestor of one read after it."""
    keys = {"read": [[key, env.project, *key.split("@")] for key in want],
            "cli": [[key, env.project, *key.split("@")] for key in commands]}
    procs = {}
    for sdk, python in pythons.items():
        for kind, script in (("read", READ_BACK), ("cli", CLEARML_DATA)):
            home = env.work / f"home-{sdk}-{kind}"
            home.mkdir()
            procs[sdk, kind] = subprocess.Popen(
                [str(python), "-c", script, json.dumps(keys[kind])], cwd=env.work,
                env={**env.vars(), "PYTHONPATH": "", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for (sdk, kind), proc in procs.items():
        stdout, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, (sdk, kind, stderr[-3000:])
        got = json.loads([ln for ln in stdout.splitlines() if ln.startswith("@@")][-1][2:])
        for key, files in want.items():
            if kind == "cli" and key not in commands:
                continue
            if kind == "read":
                assert "error" not in got[key], (sdk, key, got[key])
                assert got[key]["files"] == {p: _sha(t) for p, t in files.items()}, (sdk, key)
                assert got[key]["listed"] == sorted(files), (sdk, key)
                assert got[key]["verify"] == [], (sdk, key)
            else:
                for command in ("get", "verify"):
                    run = got[f"{key} {command}"]
                    assert run["code"] == 0, (sdk, key, command, run["tail"])
                assert "no errors found" in got[f"{key} verify"]["tail"], (sdk, key, got[f"{key} verify"])


def _tips(corpus: Sequence[Made]) -> dict[str, Made]:
    """The newest live version of each dataset (what a new version goes below)."""
    tips: dict[str, Made] = {}
    for v in corpus:
        if v.live:
            tips[v.name] = v
    return tips


NEW_VERSION = "9.0.0"
DECLARED = "D"  # the declared copy of a shape is the dataset "D<name>", next to the script-made one


def _declared(project: str, corpus: Sequence[Made]) -> dict[str, str]:
    """The manifests (file name -> YAML) declaring the live versions of ``corpus`` as datasets ``D<name>``;
    every version's own files under data/<i>/."""
    docs: dict[str, list[str]] = {}
    for i, v in enumerate(corpus):
        if not v.live:
            continue
        lines = [f'  - version: "{v.version}"']
        refs = [p[1] if p[0] == v.name else f"{project}/{DECLARED}{p[0]}@{p[1]}" for p in v.parents]
        if refs:
            lines.append(f"    parents: [{', '.join(json.dumps(r) for r in refs)}]")
        if v.remove:
            lines.append(f"    remove: {json.dumps(list(v.remove))}")
        if v.files:
            lines.append(f"    sources: [{{path: ../data/{i}}}]")
        if v.publish:
            lines.append("    publish: true")
        meta = dict(v.metadata)
        lines.append(f"    metadata: {json.dumps(meta.pop('metadata', {}))}")
        if meta:
            lines.append(f"    metadata_artifacts: {json.dumps(meta)}")
        docs.setdefault(DECLARED + v.name, []).extend(lines)
    return {f"{name}.yaml": f"apiVersion: reconciler/v1\nkind: Dataset\nproject: {project}\nname: {name}\n"
            "versions:\n" + "\n".join(lines) + "\n" for name, lines in docs.items()}


def test_script_made_and_declared_histories_build_and_read_back(env: Env, oldest_sdk_python: Path) -> None:
    """Script-made: imported (plan then shows no change), continued with a new version below each dataset's
    finalized ones (a child of its newest). Declared: the same shapes written in manifests, built by one apply
    that uploads only each version's own files. Then every version this tool made reads back with both SDKs."""
    spec = [dict(name=v.name, version=v.version, parents=v.parents, files=dict(v.files), remove=v.remove,
                 publish=v.publish, metadata={k: dict(m) for k, m in v.metadata.items()}, archived=v.archived,
                 draft=v.draft) for v in CORPUS]
    env.sdk(f"SPEC = json.loads({json.dumps(spec)!r})\n" + BUILD, timeout=900)
    res = env.reconcile("import", env.project, "--out", "imported")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"note: {env.project}/Meta@1.3.0: a draft" in res.stderr, res.stderr  # said, not adopted
    folder = env.work / "imported" / env.project
    merged = (folder / "Merged.yaml").read_text()
    assert f'parents: ["{env.project}/Images@1.1.0", "{env.project}/Labels@1.0.0"]' in merged, merged
    assert 'parents: ["1.1.0", "1.2.0"]' in (folder / "Diamond.yaml").read_text()
    plan = env.reconcile("plan", "--detailed-exitcode", "imported")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # adopting changes nothing

    want = expected(CORPUS)
    new: dict[str, dict[str, str]] = {}
    for name, tip in _tips(CORPUS).items():
        write_tree(env.work / "data" / name, {f"new-{name}.txt": f"new {name}"})
        path = folder / f"{name}.yaml"
        path.write_text(path.read_text() + f'  - version: "{NEW_VERSION}"\n    parent: "{tip.version}"\n'
                        f"    sources: [{{path: ../../data/{name}}}]\n")
        new[f"{name}@{NEW_VERSION}"] = {**want[f"{name}@{tip.version}"], f"new-{name}.txt": f"new {name}"}
    for i, v in enumerate(CORPUS):
        write_tree(env.work / "data" / str(i), dict(v.files))
    (env.work / "declared").mkdir()
    for name, text in _declared(env.project, CORPUS).items():
        (env.work / "declared" / name).write_text(text)
    plan = env.reconcile("plan", "imported", "declared")
    assert f"merging {env.project}/DTrain@1.0.0, {env.project}/DTest@1.0.0" in plan.stdout, plan.stdout
    diff = env.reconcile("diff", "declared")  # a new merge against its parents merged: nothing of its own
    merge = diff.stdout.split(f"~ {env.project}/DTrain@1.0.0 + {env.project}/DTest@1.0.0 (parents, merged) -> "
                              f"{env.project}/DTrainTest@1.0.0 (manifests)\n")[1]
    assert merge.startswith("  note: not on the server: apply creates it on top of its parents, merged\n"
                            "  files: unchanged (3 files, 6 B)"), diff.stdout
    res = env.reconcile("apply", "--auto-approve", "imported", "declared")
    assert res.returncode == 0, res.stdout + res.stderr
    live = [v for v in CORPUS if v.live]
    own = sum(len(v.files) for v in live) + len(new)  # a merge uploads only its own files, never its parents'
    assert f"{len(live) + len(new)} versions created, {own} files uploaded" in res.stdout, res.stdout
    plan = env.reconcile("plan", "--detailed-exitcode", "imported", "declared")
    assert plan.returncode == 0, plan.stdout + plan.stderr

    declared = {f"{DECLARED}{v.name}@{v.version}": want[f"{v.name}@{v.version}"] for v in live}
    order = {**new, **dict(reversed(declared.items()))}  # children before their parents (see read_back)
    tips = [*new, *(f"{DECLARED}{v.name}@{v.version}" for v in _tips(CORPUS).values())]
    read_back(env, {"installed": Path(sys.executable), "oldest": oldest_sdk_python}, order, tips)
    # every metadata artifact came through import, and the new version carries its dataset's (the newest's);
    # the declared versions carry theirs
    metadata = env.sdk(f"""
        result = {{}}
        for name, version in (("Meta", "1.0.0"), ("Meta", "1.2.0"), ("Meta", {NEW_VERSION!r}), ("DMeta", "1.2.0")):
            ds = Dataset.get(dataset_project=PROJECT, dataset_name=name, dataset_version=version)
            result[f"{{name}}@{{version}}"] = {{n: ds.get_metadata(metadata_name=n)
                                               for n in ("metadata", "info", "schema")}}
    """)
    meta = {v.version: dict(v.metadata) for v in CORPUS if v.name == "Meta"}
    assert metadata == {"Meta@1.0.0": meta["1.0.0"], "Meta@1.2.0": meta["1.2.0"],
                        f"Meta@{NEW_VERSION}": meta["1.2.0"], "DMeta@1.2.0": meta["1.2.0"]}
