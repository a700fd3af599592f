"""A plan that only needs to observe loads neither the clearml SDK nor deepdiff (each costs a fifth of a second), and
once its manifests are remembered, neither the YAML parser nor the schema validator."""

from __future__ import annotations

import json
import subprocess
import sys

from .helpers import Env, manifest, write_tree

PROBE = """
import json, sys
from reconciler.cli import main
sys.argv = ["reconcile", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exit:
    code = exit.code
print("@@" + json.dumps({"code": code, "clearml": any(m == "clearml" or m.startswith("clearml.") for m in sys.modules),
                         "deepdiff": "deepdiff" in sys.modules,
                         "parser": any(m.split(".")[0] in ("ruamel", "jsonschema") for m in sys.modules)}))
"""


def _plan_modules(env: Env, *args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], cwd=env.work, env=env.vars(),
                          capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1]
    return dict(json.loads(line[2:]))


def test_plan_and_apply_do_not_import_the_sdk_and_a_no_op_plan_not_deepdiff(env: Env) -> None:
    write_tree(env.work / "data", {"a.txt": "alpha"})
    m = env.work / "manifests" / "ds.yaml"
    m.parent.mkdir()
    m.write_text(manifest(env.project, "things", "- version: 1.0.0\n  sources: [{path: ../data}]\n"))
    applied = _plan_modules(env, "apply", "--auto-approve", "manifests")
    assert applied["code"] == 0 and applied["clearml"] is False  # deepdiff shows the property changes
    assert applied["parser"] is True  # the first read of the manifests parses and validates them
    assert _plan_modules(env, "plan", "--detailed-exitcode", "manifests") == {"code": 0, "clearml": False,
                                                                             "deepdiff": False, "parser": False}
