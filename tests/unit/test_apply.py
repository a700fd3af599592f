"""Apply against the in-memory backend failing at write k: the next plan resumes and converges. Milliseconds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from memory_backend import MemoryBackend

from reconciler.apply import ApplyFailed, ApplyOptions, apply_plan
from reconciler.events import AliasKept, Event
from reconciler.model import (
    Content,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    FileEntry,
    ObservedState,
    Properties,
    VersionKey,
    VersionSpec,
    freeze_json,
)
from reconciler.plan.contents import SourceFiles, compute_contents
from reconciler.plan.planner import compute_plan
from reconciler.render.events import text_line
from reconciler.statistics import StatisticsCache

P, N = "proj", "ds"


def _file(tmp: Path, path: str, data: str) -> FileEntry:
    local = tmp / "src" / path
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(data)
    return FileEntry(path, len(data.encode()), hashlib.sha256(data.encode()).hexdigest(), str(local))


def _desired(tmp: Path, *, stats: bool = False) -> tuple[DesiredState, dict[VersionKey, Content]]:
    props = Properties("d", frozenset({"a"}), freeze_json({"k": 1}))
    k1, k2, k3 = (VersionKey(P, N, v) for v in ("1.0.0", "1.1.0", "1.2.0"))
    versions = (VersionSpec(k1, properties=props), VersionSpec(k2, (k1,), remove=("b.txt",), properties=props),
                VersionSpec(k3, (k2,), publish=True, properties=props))
    desired = DesiredState((DatasetSpec(DatasetKey(P, N), versions, props, statistics=stats),))
    own = {
        k1: SourceFiles(files=(_file(tmp, "a.txt", "alpha"), _file(tmp, "b.txt", "bravo"))),
        k2: SourceFiles(files=(_file(tmp, "c.txt", "charlie"),)),
        k3: SourceFiles(files=(_file(tmp, "a.txt", "ALPHA"),)),
    }
    return desired, compute_contents(desired, own)


def _assert_finalized_versions_are_exact(server: MemoryBackend, contents: Mapping[VersionKey, Content]) -> None:
    for v in server.records.values():
        if v.status in ("completed", "published"):
            built = Content({p: FileEntry(e.path, e.size, e.sha256) for p, e in v.files.items()})
            assert built.digest() == contents[v.key].digest() == v.content_digest


def _apply(server: MemoryBackend, desired: DesiredState, contents: Mapping[VersionKey, Content], tmp: Path) -> Any:
    observed = server.observed()
    plan = compute_plan(desired, contents, observed)
    options = ApplyOptions(workers=1, statistics_cache=StatisticsCache(tmp / "stats"))
    return plan, apply_plan(plan, server, observed, options, local_contents=contents)


def test_a_clean_apply_converges_and_replans_empty(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path, stats=True)
    server = MemoryBackend()
    _, result = _apply(server, desired, contents, tmp_path)
    assert len(result.created) == 3 and result.uploaded_files == 4
    _assert_finalized_versions_are_exact(server, contents)
    assert compute_plan(desired, contents, server.observed()).actions == ()


@pytest.mark.parametrize("stats", [False, True])
def test_a_failure_at_every_write_is_finished_by_the_next_apply(tmp_path: Path, stats: bool) -> None:
    desired, contents = _desired(tmp_path, stats=stats)
    total = MemoryBackend()
    _apply(total, desired, contents, tmp_path)
    assert total.writes > 10
    for k in range(total.writes):
        server = MemoryBackend(fail_at=k)
        with pytest.raises(ApplyFailed) as failed:
            _apply(server, desired, contents, tmp_path)
        assert "injected failure" in str(failed.value)
        _assert_finalized_versions_are_exact(server, contents)  # nothing finalized that is not exact
        server.fail_at = None
        _apply(server, desired, contents, tmp_path)
        _assert_finalized_versions_are_exact(server, contents)
        live = [v for v in server.records.values() if not v.archived]
        assert sorted(v.key.version for v in live) == ["1.0.0", "1.1.0", "1.2.0"], f"step {k}: a duplicate"
        assert all(v.status in ("completed", "published") for v in live)
        assert compute_plan(desired, contents, server.observed()).actions == (), f"step {k}: not converged"


def test_a_failed_version_stops_its_children_but_not_other_datasets(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path)
    other_key = VersionKey(P, "other", "1.0.0")
    other = DatasetSpec(DatasetKey(P, "other"), (VersionSpec(other_key),))
    both = DesiredState((*desired.datasets, other))
    own_other = {other_key: SourceFiles(files=(_file(tmp_path, "z.txt", "zulu"),))}
    contents = {**contents, **compute_contents(DesiredState((other,)), own_other)}
    server = MemoryBackend(fail_at=1)  # the first upload of ds@1.0.0
    with pytest.raises(ApplyFailed) as failed:
        _apply(server, both, contents, tmp_path)
    lines = [d.message for d in failed.value.diagnostics]
    assert "injected failure at upload a.txt" in lines[0]
    assert lines[1].startswith("not applied because a parent failed: proj/ds@1.1.0, proj/ds@1.2.0")
    assert lines[-1].startswith("apply incomplete: 1 version failed")
    finished = {v.key for v in server.records.values() if v.status == "completed"}
    assert finished == {other_key}  # the independent dataset was applied


def test_the_plan_is_checked_against_what_was_built(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path)
    server = MemoryBackend()
    observed = server.observed()
    plan = compute_plan(desired, contents, observed)
    wrong = tuple(replace(a, content_digest="0" * 64) if type(a).__name__ == "Finalize" else a for a in plan.actions)
    with pytest.raises(ApplyFailed) as failed:
        apply_plan(replace(plan, actions=wrong), server, observed, ApplyOptions(workers=1))
    assert "does not match the plan" in str(failed.value)
    assert not any(v.status == "completed" for v in server.records.values())


def _aliased(desired: DesiredState, holder: str, upto: int) -> DesiredState:
    """``desired``'s first ``upto`` versions with the alias ``production`` on ``holder`` (as the loader tags it)."""
    ds = desired.datasets[0]
    versions = tuple(replace(v, properties=v.properties.replace(tags=v.properties.tags | {"production"}))
                     if v.key.version == holder else v for v in ds.versions[:upto])
    return DesiredState((replace(ds, versions=versions, aliases=freeze_json({"production": holder})),))


def _holders(server: MemoryBackend) -> dict[str, str]:
    return {v.key.version: v.status for v in server.records.values()
            if "production" in v.properties.tags and not v.archived}


def test_an_alias_only_ever_names_a_final_version_whatever_write_fails(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path)
    before, after = _aliased(desired, "1.1.0", 2), _aliased(desired, "1.2.0", 3)
    plan = compute_plan(after, contents, ObservedState())
    kinds = [(type(a).__name__, a.version.version, getattr(a, "alias", False)) for a in plan.actions]
    assert kinds[-1] == ("SetProperties", "1.2.0", True)  # after 1.2.0 is finalized and published
    assert kinds.index(("Publish", "1.2.0", False)) < len(kinds) - 1
    start = MemoryBackend()
    _apply(start, before, contents, tmp_path)
    writes = start.writes
    _apply(start, after, contents, tmp_path)
    moving = start.writes - writes
    assert _holders(start) == {"1.2.0": "published"} and moving > 5
    for k in range(moving):
        server = MemoryBackend()
        _apply(server, before, contents, tmp_path)
        server.fail_at = server.writes + k
        with pytest.raises(ApplyFailed):
            _apply(server, after, contents, tmp_path)
        held = _holders(server)
        assert held and set(held.values()) <= {"completed", "published"}, f"write {k}: {held}"
        if "1.2.0" not in held:  # the old holder kept it because the new one never got it
            assert held == {"1.1.0": "completed"}
        server.fail_at = None
        _apply(server, after, contents, tmp_path)
        assert _holders(server) == {"1.2.0": "published"}, f"write {k}"
        assert compute_plan(after, contents, server.observed()).actions == (), f"write {k}: not converged"


def test_an_alias_stays_on_its_old_holder_when_the_new_one_fails_to_finalize(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path)
    before, after = _aliased(desired, "1.1.0", 2), _aliased(desired, "1.2.0", 3)
    server = MemoryBackend()
    _apply(server, before, contents, tmp_path)
    observed = server.observed()
    plan = compute_plan(after, contents, observed)
    wrong = tuple(replace(a, content_digest="0" * 64) if type(a).__name__ == "Finalize" else a for a in plan.actions)
    events: list[Event] = []
    with pytest.raises(ApplyFailed):
        apply_plan(replace(plan, actions=wrong), server, observed, ApplyOptions(workers=1), emit=events.append)
    assert _holders(server) == {"1.1.0": "completed"}
    kept = [e for e in events if isinstance(e, AliasKept)]
    assert [(e.version, e.aliases) for e in kept] == [(VersionKey(P, N, "1.1.0"), ("production",))], events
    lines = [line[1] for e in events if (line := text_line(e)) is not None]
    assert any("kept alias production on proj/ds@1.1.0" in line for line in lines), lines


def test_apply_checks_again_on_the_bytes_it_uploads_and_stores_the_results(tmp_path: Path) -> None:
    import sys
    import textwrap

    from reconciler.checks import check_versions
    from reconciler.model import CheckSpec

    verdict = tmp_path / "verdict"
    verdict.write_text("pass")
    program = tmp_path / "gate.py"
    program.write_text(textwrap.dedent(f"""\
        import json, sys
        files = json.load(sys.stdin)["files"]
        ok = open({str(verdict)!r}).read() == "pass" and all(open(f["local"]).read() for f in files)
        print(json.dumps({{"status": "pass" if ok else "fail", "message": "gate", "offending": [] if ok else
                          [f["path"] for f in files]}}))
        """))
    gate = CheckSpec("gate", "command", params=freeze_json({"run": [sys.executable, str(program)]}))
    desired, contents = _desired(tmp_path)
    (ds,) = desired.datasets
    k1 = VersionKey(P, N, "1.0.0")
    other = VersionSpec(VersionKey(P, "other", "1.0.0"), properties=ds.properties)
    desired = DesiredState((replace(ds, versions=(replace(ds.versions[0], checks=(gate,)), *ds.versions[1:])),
                            DatasetSpec(DatasetKey(P, "other"), (other,), ds.properties)))
    contents = compute_contents(desired, {k1: SourceFiles(files=tuple(contents[k1].files.values())),
                                          other.key: SourceFiles(files=(_file(tmp_path, "o.txt", "o"),))})
    server = MemoryBackend()
    observed = server.observed()
    first = compute_plan(desired, contents, observed)
    results = check_versions(desired, contents, [k1], workers=1)
    plan = compute_plan(desired, contents, observed, checks=results)
    assert not plan.held and results[k1].results[0].status == "pass"

    verdict.write_text("fail")  # the gate answers otherwise at apply (a saved plan applied later, an agent)
    options = ApplyOptions(workers=1, statistics_cache=StatisticsCache(tmp_path / "stats"))
    with pytest.raises(ApplyFailed) as err:
        apply_plan(plan, server, observed, options, local_contents=contents)
    assert "check 'gate' (command) failed on the bytes uploaded" in str(err.value)
    by_key = {v.key: v for v in server.records.values()}
    assert by_key[k1].status == "created"  # never finalized; its children were not started
    assert {k.version for k in by_key if k.name == N} == {"1.0.0"}
    stored = by_key[k1].stored["checks"]
    assert stored["format_version"] == 1 and stored["checks"][0]["status"] == "fail"
    assert sorted(stored["checks"][0]["offending"]) == ["a.txt", "b.txt"]
    assert by_key[other.key].status == "completed"  # the other dataset went on

    verdict.write_text("pass")
    observed = server.observed()
    plan = compute_plan(desired, contents, observed, checks=check_versions(desired, contents, [k1], workers=1))
    apply_plan(plan, server, observed, options, local_contents=contents)
    by_key = {v.key: v for v in server.records.values()}
    assert by_key[k1].status == "completed" and by_key[k1].stored["checks"]["checks"][0]["status"] == "pass"
    assert first.builds  # (the plan without checks builds the same versions)


def test_a_failed_rehome_holds_back_the_deletions_it_was_to_allow(tmp_path: Path) -> None:
    from reconciler.model import ObservedState, StoredObject
    from reconciler.plan.actions import DeleteVersion, Plan, RehomeVersion

    files = [_file(tmp_path, p, p * 10) for p in ("a", "b", "c")]
    keys = [VersionKey("p", "ds", f"1.0.{i}") for i in range(3)]
    for fail_at in (0, None):
        server = MemoryBackend(fail_at=fail_at)
        v0 = server.add(keys[0], files)
        v1 = server.add(keys[1], parents=(v0.id,))
        v2 = server.add(keys[2], parents=(v1.id,))
        v1.files.update(v0.files)
        v2.files.update(v0.files)
        plan = Plan(actions=(
            RehomeVersion(keys[1], v1.id, 3, 30, ((keys[2], v2.id),), (v0.id,), (v1.id, v2.id)),
            DeleteVersion(keys[0], v0.id, (StoredObject("data", "memory://data", 30),), "keep_last"),
        ))
        if fail_at is None:
            apply_plan(plan, server, ObservedState())
            assert v0.id not in server.records  # deleted only after the re-home
            assert {f.owner_id for f in v2.files.values()} == {v1.id}
        else:
            with pytest.raises(ApplyFailed) as failed:
                apply_plan(plan, server, ObservedState())
            assert v0.id in server.records  # the kept versions still read it: not deleted
            assert "re-home" in str(failed.value) and str(keys[0]) in str(failed.value)
