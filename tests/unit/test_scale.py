"""Planning stays linear in the number of files, and the JSON plan is written as it is produced.

No clock is read: work is counted (Python and builtin calls, deterministic whatever the machine's load) and
memory is measured (tracemalloc).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tracemalloc
from collections.abc import Callable

from reconciler.model import DatasetKey, DatasetSpec, DesiredState, FileEntry, ObservedState, VersionKey, VersionSpec
from reconciler.plan.actions import PlanOptions
from reconciler.plan.contents import SourceFiles, compute_contents, content_memos
from reconciler.plan.planner import compute_plan
from reconciler.plancodec import plan_json_chunks, plan_to_json

K1, K2 = VersionKey("p", "big", "1.0.0"), VersionKey("p", "big", "1.1.0")
STATE = DesiredState((DatasetSpec(DatasetKey("p", "big"), (VersionSpec(K1), VersionSpec(K2, parents=(K1,)))),))


def _own(n: int) -> dict[VersionKey, SourceFiles]:
    files = tuple(FileEntry(f"d{i // 500:04d}/f{i:07d}.bin", i, hashlib.sha256(b"%d" % i).hexdigest(),
                            f"/data/d{i // 500:04d}/f{i:07d}.bin") for i in range(n))
    changed = tuple(FileEntry(f.path, f.size + 1, "0" * 64, f.local) for f in files[:: 100])
    return {K1: SourceFiles(files, memo="a"), K2: SourceFiles(changed, memo="b")}


def _plan_and_render(own: dict[VersionKey, SourceFiles]) -> None:
    contents = compute_contents(STATE, own)
    content_memos(STATE, own)
    plan = compute_plan(STATE, contents, ObservedState(), PlanOptions())
    for _ in plan_json_chunks(plan):
        pass


def _calls(run: Callable[[], None]) -> int:
    count = 0

    def profile(_frame: object, event: str, _arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return count


def test_the_work_of_a_plan_grows_linearly_with_its_files() -> None:
    small, large = _own(2_000), _own(20_000)
    ratio = _calls(lambda: _plan_and_render(large)) / _calls(lambda: _plan_and_render(small))
    assert 8 < ratio < 12, ratio  # ten times the files: ten times the calls (a quadratic step would give ~100)


def test_the_json_plan_streams_the_same_text_without_holding_it() -> None:
    own = _own(100_000)
    plan = compute_plan(STATE, compute_contents(STATE, own), ObservedState(), PlanOptions())
    tracemalloc.start()
    try:
        size = 0
        for chunk in plan_json_chunks(plan):
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 20_000_000  # 101,000 files to upload (the new version uploads only its changed 1%)
    assert peak < size / 10, (peak, size)  # the whole text, or a dict per file, would be more than size
    small = compute_plan(STATE, compute_contents(STATE, _own(3_000)), ObservedState(), PlanOptions())
    assert "".join(plan_json_chunks(small)) == json.dumps(plan_to_json(small), indent=2, sort_keys=True) + "\n"


def test_a_chain_of_thousands_of_versions_plans_without_deep_recursion() -> None:
    keys = [VersionKey("p", "long", f"1.0.{i}") for i in range(1200)]  # deeper than Python's recursion limit
    versions = tuple(VersionSpec(k, parents=(keys[i - 1],) if i else ()) for i, k in enumerate(keys))
    state = DesiredState((DatasetSpec(DatasetKey("p", "long"), versions),))
    assert [s.key for s in state.lineage(keys[-1])] == keys
    plan = compute_plan(state, compute_contents(state, {}), ObservedState(), PlanOptions())
    assert len({a.version for a in plan.actions}) == len(keys)
