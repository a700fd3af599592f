"""Golden plans: text, markdown and JSON of representative cases, kept in tests/golden/plan/<case>/.

Regenerate on purpose with ``UPDATE_GOLDEN=1`` and review the diff like code: a renderer change shows here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.model import (
    DatasetKey,
    DatasetSpec,
    DesiredState,
    FileEntry,
    ObservedState,
    ObservedVersion,
    Properties,
    VersionKey,
    VersionSpec,
    freeze_json,
)
from reconciler.plan.actions import Plan, PlanOptions
from reconciler.plan.contents import SourceFiles, compute_contents
from reconciler.plan.planner import compute_plan
from reconciler.plancodec import plan_to_json
from reconciler.render import render_human, render_markdown

GOLDEN = Path(__file__).parents[1] / "golden" / "plan"
P, N = "proj", "ds"
PROPS = Properties("images of things", frozenset({"a", "b"}), freeze_json({"k": 1, "source": "unit"}))


def vk(version: str) -> VersionKey:
    return VersionKey(P, N, version)


def f(path: str, content: str) -> FileEntry:
    return FileEntry(path, len(content), hashlib.sha256(content.encode()).hexdigest(), f"/data/{path}")


V1 = VersionSpec(vk("1.0.0"), properties=PROPS)
V2 = VersionSpec(vk("1.1.0"), parents=(vk("1.0.0"),), remove=("old/*",), publish=True, properties=PROPS)
OWN = {
    vk("1.0.0"): SourceFiles(files=(f("a.txt", "a"), f("old/x.txt", "x"), f("keep/y.txt", "y"))),
    vk("1.1.0"): SourceFiles(files=(f("a.txt", "A2"), f("b.txt", "b"))),
}


def desired(props: Properties = PROPS, stats: bool = False) -> DesiredState:
    versions = tuple(replace(v, properties=props) for v in (V1, V2))
    return DesiredState((DatasetSpec(DatasetKey(P, N), versions, props, statistics=stats),))


def applied(state: DesiredState) -> ObservedState:
    contents = compute_contents(state, OWN)
    out = []
    for i, spec in enumerate(state.all_versions()):
        c = contents[spec.key]
        out.append(ObservedVersion(
            key=spec.key, id=f"{i:032x}", status="published" if spec.publish else "completed",
            properties=spec.properties, files=tuple(c.files.values()), links=(), managed=True,
            content_digest=c.digest(), parent_ids=(f"{i - 1:032x}",) if spec.parent else (),
        ))
    return ObservedState(tuple(out))


def case_fresh() -> Plan:
    state = desired(stats=True)
    return compute_plan(state, compute_contents(state, OWN), ObservedState())


def case_tag_only() -> Plan:
    state = desired()
    changed = desired(Properties(PROPS.description, frozenset({"a", "production"}), PROPS.metadata))
    return compute_plan(changed, compute_contents(state, OWN), applied(state))


def case_conflict() -> Plan:
    state = desired()
    own = {**OWN, vk("1.0.0"): SourceFiles(files=(f("a.txt", "changed"), f("old/x.txt", "x")))}
    return compute_plan(state, compute_contents(state, own), applied(state))


def case_prune() -> Plan:
    state = desired()
    stale = ObservedVersion(key=vk("0.9.0"), id="9" * 32, status="completed", managed=True)
    foreign = ObservedVersion(key=vk("0.8.0"), id="8" * 32, status="completed", managed=False)
    observed = ObservedState(applied(state).versions + (stale, foreign))
    return compute_plan(state, compute_contents(state, OWN), observed, PlanOptions(prune=True))


def case_resume() -> Plan:
    state = desired()
    contents = compute_contents(state, OWN)
    v1 = applied(state).versions[0]
    draft = ObservedVersion(key=vk("1.1.0"), id="d" * 32, status="created", managed=True, parent_ids=(v1.id,))
    return compute_plan(state, contents, ObservedState((v1, draft)))


def case_checks() -> Plan:
    """1.1.0 fails an error-level check (held, its alias stays), warns on another; a hostile path is escaped."""
    from reconciler.checks import check_versions
    from reconciler.diagnostics import SourceSpan
    from reconciler.model import CheckSpec

    def check(name: str, rule: str, line: int, **kw: str) -> CheckSpec:
        return CheckSpec(name, rule, kw.pop("severity", "error"), kw.pop("error_if", None), None,
                         freeze_json(kw), SourceSpan("manifests/ds.yaml", line, 5))

    checks = (check("no-empty", "empty_files", 7), check("dupes", "duplicates", 9, severity="warn"),
              check("few", "files", 12, error_if=">10"))
    state = desired()
    v2 = replace(state.datasets[0].versions[1], checks=checks,
                 properties=PROPS.replace(tags=PROPS.tags | {"production"}))
    state = DesiredState((replace(state.datasets[0], versions=(state.datasets[0].versions[0], v2),
                                  aliases=freeze_json({"production": "1.1.0"})),))
    own = {**OWN, vk("1.1.0"): SourceFiles(files=(f("a.txt", "A2"), f("b.txt", "y"), f("evil `x` <b>|\n.txt", "")))}
    contents = compute_contents(state, own)
    observed = applied(desired())
    observed = ObservedState((replace(observed.versions[0], properties=PROPS.replace(
        tags=PROPS.tags | {"production"})),))
    results = check_versions(state, contents, [vk("1.1.0")], workers=1)
    return compute_plan(state, contents, observed, checks=results)


CASES = {"fresh": case_fresh, "tag-only": case_tag_only, "conflict": case_conflict, "prune": case_prune,
         "resume": case_resume, "checks": case_checks}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_its_golden_files(case: str) -> None:
    plan = CASES[case]()
    outputs = {
        "plan.txt": render_human(plan, color=False, file_limit=20),
        "plan.md": render_markdown(plan),
        "plan.json": json.dumps(plan_to_json(plan), indent=2, sort_keys=True) + "\n",
    }
    folder = GOLDEN / case
    for name, text in outputs.items():
        path = folder / name
        if os.environ.get("UPDATE_GOLDEN") == "1":
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.is_file(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
        assert text == path.read_text(), f"{case}/{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates)"
