"""Retention planning on plain values: what is archived, deleted and kept, and why; never a chunk a staying
version reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

from reconciler.model import (
    DAY,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    ObservedState,
    ObservedVersion,
    Properties,
    Retention,
    StoredObject,
    TaskUse,
    VersionKey,
    VersionSpec,
)
from reconciler.plan.actions import Archive, DeleteVersion, SetProperties
from reconciler.plan.contents import compute_contents
from reconciler.plan.planner import compute_plan
from reconciler.plancodec import plan_from_json, plan_to_json
from reconciler.render import render_human, render_markdown
from reconciler.retention import RetentionInputs, plan_retention

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
P, N = "proj", "ds"


def vk(i: int) -> VersionKey:
    return VersionKey(P, N, f"1.0.{i}")


def chain(n: int, policy: Retention, aliases: dict[str, str] | None = None, publish: int | None = None,
          roots: tuple[int, ...] = (0,)) -> DesiredState:
    """Versions 1.0.0 .. 1.0.<n-1>, each on the one before, but the ``roots``."""
    versions = tuple(VersionSpec(vk(i), parents=() if i in roots else (vk(i - 1),), publish=i == publish)
                     for i in range(n))
    return DesiredState((DatasetSpec(DatasetKey(P, N), versions, aliases=MappingProxyType(aliases or {}),
                                     retention=policy),))


def version(i: int, *, reads: tuple[tuple[str, str], ...] | None = None, archived: bool = False,
            expired_at: str = "", status: str = "completed", root: bool = False) -> ObservedVersion:
    """Version i (on version i - 1 unless ``root``) owns ``data`` (100 bytes) and ``state`` (10 bytes); by
    default it reads only its own files."""
    vid = f"id{i}"
    return ObservedVersion(
        key=vk(i), id=vid, status=status, managed=True, archived=archived, expired_at=expired_at,
        parent_ids=(f"id{i - 1}",) if i and not root else (), created="2026-01-01T00:00:00+00:00",
        objects=(StoredObject("data", f"http://files/{vid}/data.zip", 100),
                 StoredObject("state", f"http://files/{vid}/state.json", 10)),
        reads=() if reads is None else reads,
    )


def test_keep_last_with_grace_zero_archives_and_deletes_the_old_versions_in_one_plan():
    desired = chain(5, Retention(keep_last=2, grace=0), roots=(0, 3))  # 1.0.3 starts a new lineage
    observed = ObservedState(tuple(version(i, root=i == 3) for i in range(5)))
    plan = compute_plan(desired, compute_contents(desired, {}), observed, retention=RetentionInputs(NOW))
    archives = [a for a in plan.actions if isinstance(a, Archive)]
    deletes = [a for a in plan.actions if isinstance(a, DeleteVersion)]
    assert [a.version for a in archives] == [vk(0), vk(1), vk(2)]
    assert all("keep_last" in a.retention for a in archives)
    assert [a.version for a in deletes] == [vk(2), vk(1), vk(0)]  # children first
    assert plan.actions.index(archives[-1]) < plan.actions.index(deletes[0])  # archive before delete
    assert sum(a.freed_bytes for a in deletes) == 330 == plan.summary().freed_bytes
    assert [(e.version, e.stage, e.freed_bytes) for e in plan.retention] == [
        (vk(0), "delete", 110), (vk(1), "delete", 110), (vk(2), "delete", 110)]
    assert not plan.conflicts  # the kept versions' lineage to retired parents is not a conflict
    assert "3 to delete, 330 B of storage to free" in render_human(plan)
    assert "Retention" in render_markdown(plan)
    assert plan_from_json(plan_to_json(plan)) == plan


def test_ancestors_of_kept_versions_keep_their_file_lists_and_owners_of_their_files_everything():
    desired = chain(5, Retention(keep_last=2, grace=0))
    # 1.0.3 and 1.0.4 still hold files stored by 1.0.0 (inherited across the whole chain); the SDK downloads
    # every chunk of an owner and loads the file list of every ancestor
    observed = ObservedState((version(0), version(1), version(2), version(3, reads=(("id0", "*"), ("id2", "state"))),
                              version(4, reads=(("id0", "*"), ("id3", "state")))))
    ret = plan_retention(desired, observed, RetentionInputs(NOW))
    stages = {e.version: (e.stage, e.freed_bytes, e.kept_bytes) for e in ret.entries}
    assert stages == {vk(0): ("kept", 0, 110), vk(1): ("free", 100, 10), vk(2): ("free", 100, 10)}
    entries = {e.version: e for e in ret.entries}
    assert entries[vk(0)].reasons[0] == f"all of it (the SDK downloads it as part of the lineage of {vk(3)}, {vk(4)})"
    assert entries[vk(1)].reasons == (f"its file list (the SDK loads it while reading {vk(3)}, {vk(4)})",)
    assert {v.key: ([o.key for o in objects], whole) for v, _, objects, whole in ret.delete} == {
        vk(1): (["data"], False), vk(2): (["data"], False)}
    assert [v.key for v, _ in ret.archive] == [vk(0), vk(1), vk(2)]  # all archived: out of the policy


def test_what_only_a_deleted_version_reads_goes_with_it():
    desired = chain(4, Retention(keep_last=1, grace=0), roots=(0, 3))
    observed = ObservedState((version(0), version(1), version(2, reads=(("id0", "*"),)), version(3, root=True)))
    ret = plan_retention(desired, observed, RetentionInputs(NOW))
    assert {e.version: e.stage for e in ret.entries} == {vk(0): "delete", vk(1): "delete", vk(2): "delete"}
    assert [v.key for v, *_ in ret.delete] == [vk(2), vk(1), vk(0)]  # children first


def test_a_staying_version_whose_file_list_is_unknown_keeps_all_its_ancestors_and_asks_for_it():
    desired = chain(3, Retention(keep_last=1, grace=0))
    observed = ObservedState((version(0), version(1), replace(version(2), reads=None)))
    ret = plan_retention(desired, observed, RetentionInputs(NOW))
    assert ret.unread == {"id2"}
    assert {e.version: e.stage for e in ret.entries} == {vk(0): "kept", vk(1): "kept"}


def test_alias_published_and_task_use_keep_a_version_with_the_reason_and_the_tasks():
    recent = TaskUse("t1", "train resnet", "vision/train", "completed", NOW - timedelta(days=2))
    old = TaskUse("t0", "old eval", "vision/eval", "completed", NOW - timedelta(days=90))
    desired = chain(5, Retention(keep_last=1, grace=0), aliases={"production": "1.0.0"}, publish=1, roots=(0, 4))
    observed = ObservedState(tuple(version(i, status="published" if i == 1 else "completed", root=i == 4)
                                   for i in range(5)))
    uses = MappingProxyType({"id2": (recent,), "id3": (old,)})
    plan = compute_plan(desired, compute_contents(desired, {}), observed, retention=RetentionInputs(NOW, uses))
    entries = {e.version: e for e in plan.retention}
    assert entries[vk(0)].stage == "kept" and entries[vk(0)].reasons == ("holds the alias production",)
    assert entries[vk(1)].stage == "kept" and "published" in entries[vk(1)].reasons[0]
    assert entries[vk(2)].stage == "kept" and entries[vk(2)].tasks == (recent,)
    assert "'train resnet' (vision/train, t1)" in entries[vk(2)].reasons[0]
    assert entries[vk(3)].stage == "delete"  # its only use is older than used_within (30d)
    assert entries[vk(3)].freed_bytes == 110
    assert {a.version for a in plan.actions} == {vk(3)}
    text = render_human(plan)
    assert "holds the alias production" in text and "train resnet" in text
    assert plan_from_json(plan_to_json(plan)) == plan
    assert plan_to_json(plan)["retention"][2]["tasks"][0]["name"] == "train resnet"


def test_the_grace_period_archives_first_and_deletes_when_it_is_over():
    desired = chain(3, Retention(keep_last=1, grace=14 * DAY))
    observed = ObservedState(tuple(version(i) for i in range(3)))
    first = plan_retention(desired, observed, RetentionInputs(NOW))
    assert [v.key for v, _ in first.archive] == [vk(0), vk(1)] and first.delete == ()
    assert {e.stage for e in first.entries} == {"archive"}
    archived_at = (NOW - timedelta(days=3)).isoformat()
    waiting = ObservedState(tuple(version(i, archived=i < 2, expired_at=archived_at if i < 2 else "")
                                  for i in range(3)))
    later = plan_retention(desired, waiting, RetentionInputs(NOW))
    assert later.archive == () and later.delete == ()
    assert {e.stage for e in later.entries} == {"waiting"}
    assert later.entries[0].delete_after == (NOW + timedelta(days=11)).isoformat(timespec="seconds")
    due = plan_retention(desired, waiting, RetentionInputs(NOW + timedelta(days=12)))
    assert [v.key for v, *_ in due.delete] == [vk(1), vk(0)]


def test_retired_versions_are_not_built_again_and_a_second_plan_after_the_delete_is_empty():
    desired = chain(5, Retention(keep_last=2, grace=0))
    contents = compute_contents(desired, {})
    kept = ObservedState((version(3), version(4)))  # 1.0.0 .. 1.0.2 were deleted
    plan = compute_plan(desired, contents, kept, retention=RetentionInputs(NOW))
    assert plan.actions == () and plan.conflicts == () and plan.retention == ()


def test_a_parent_a_new_version_still_needs_is_not_retired():
    desired = chain(4, Retention(keep_last=1, grace=0))
    observed = ObservedState((version(0), version(1), version(2)))  # 1.0.3 is still to be built on 1.0.2
    ret = plan_retention(desired, observed, RetentionInputs(NOW))
    assert vk(2) not in ret.retired and {vk(0), vk(1)} <= ret.retired


def test_max_age_retires_only_what_no_rule_keeps():
    desired = chain(3, Retention(keep_last=1, max_age=90 * DAY, grace=0))
    young = "2026-05-20T00:00:00+00:00"
    observed = ObservedState((version(0), replace(version(1), created=young), version(2)))
    ret = plan_retention(desired, observed, RetentionInputs(NOW))
    assert ret.retired == {vk(0)}
    assert "max_age" in ret.entries[0].why and "keep_last" in ret.entries[0].why


def test_no_clock_no_retention():
    desired = chain(3, Retention(keep_last=1, grace=0))
    observed = ObservedState(tuple(version(i) for i in range(3)))
    assert plan_retention(desired, observed, RetentionInputs(None)).retired == frozenset()


def test_an_alias_moved_off_a_retired_version_is_taken_off_it_before_it_goes():
    desired = chain(3, Retention(keep_last=1, grace=0), aliases={"production": "1.0.2"}, roots=(0, 1, 2))
    contents = compute_contents(desired, {})
    tagged = replace(version(0), properties=Properties(tags=frozenset({"production"})))
    plan = compute_plan(desired, contents, ObservedState((tagged, version(1), version(2))),
                        retention=RetentionInputs(NOW))
    untag = [a for a in plan.actions if isinstance(a, SetProperties) and a.version == vk(0)]
    assert [a.after.tags for a in untag] == [frozenset()]
    order = [type(a).__name__ for a in plan.actions if a.version == vk(0)]
    assert order.index("SetProperties") < order.index("Archive") < order.index("DeleteVersion")


def rehome_chain() -> tuple[DesiredState, list[ObservedVersion]]:
    """Five versions, keep_last 2, rehome: 1.0.3 inherits from 1.0.0 and 1.0.2, 1.0.4 from 1.0.0 and 1.0.3."""
    desired = chain(5, Retention(keep_last=2, grace=0, rehome=True))
    observed = [version(0), version(1, reads=(("id0", "*"),)), version(2, reads=(("id0", "*"),)),
                replace(version(3, reads=(("id0", "*"), ("id2", "*"), ("id2", "state"))), inherited=(7, 700)),
                version(4, reads=(("id0", "*"), ("id3", "*"), ("id3", "state")))]
    return desired, observed


def test_rehome_copies_what_the_oldest_kept_version_inherits_so_the_versions_before_it_go_whole():
    desired, observed = rehome_chain()
    without = plan_retention(chain(5, Retention(keep_last=2, grace=0)), ObservedState(tuple(observed)),
                             RetentionInputs(NOW))
    assert {e.version: e.stage for e in without.entries} == {vk(0): "kept", vk(1): "free", vk(2): "kept"}
    ret = plan_retention(desired, ObservedState(tuple(observed)), RetentionInputs(NOW))
    (rehome,) = ret.rehome
    assert (rehome.version, rehome.files, rehome.copy_bytes) == (vk(3), 7, 700)
    assert rehome.rewrites == ((vk(4), "id4"),) and rehome.group == ("id3", "id4")
    assert rehome.detached == ("id0", "id1", "id2")
    assert {e.version: (e.stage, e.freed_bytes) for e in ret.entries} == {
        vk(0): ("delete", 110), vk(1): ("delete", 110), vk(2): ("delete", 110)}
    assert all(whole for *_, whole in ret.delete)
    assert rehome.frees_bytes == 330 - sum(e.freed_bytes for e in without.entries)
    plan = compute_plan(desired, compute_contents(desired, {}), ObservedState(tuple(observed)),
                        retention=RetentionInputs(NOW))
    kinds = [type(a).__name__ for a in plan.actions]
    assert kinds == ["Archive", "Archive", "Archive", "RehomeVersion", "DeleteVersion", "DeleteVersion",
                     "DeleteVersion"]  # copied and rewritten before anything is deleted
    text = render_human(plan)
    assert "RE-HOME version id3" in text and "copy the 7 files it inherits (700 B)" in text
    assert "no longer in their lineage: id0, id1, id2" in text and "700 B of files to copy by re-homes" in text
    assert "Retention" in render_markdown(plan)
    assert plan_from_json(plan_to_json(plan)) == plan


def test_after_a_rehome_stopped_halfway_the_next_plan_rewrites_only_what_is_left():
    desired, observed = rehome_chain()
    done = replace(observed[3], reads=(), parent_ids=(), inherited=(0, 0))  # re-homed; 1.0.4 not rewritten yet
    ret = plan_retention(desired, ObservedState((*observed[:3], done, observed[4])), RetentionInputs(NOW))
    (rehome,) = ret.rehome
    assert (rehome.files, rehome.copy_bytes, rehome.rewrites) == (0, 0, ((vk(4), "id4"),))
    assert all(whole for *_, whole in ret.delete)
    finished = replace(observed[4], reads=(("id3", "*"), ("id3", "state")))
    ret = plan_retention(desired, ObservedState((*observed[:3], done, finished)), RetentionInputs(NOW))
    assert ret.rehome == () and all(whole for *_, whole in ret.delete)


def test_no_rehome_when_a_version_built_on_the_oldest_kept_one_cannot_follow():
    desired, observed = rehome_chain()
    foreign = replace(observed[4], managed=False)  # not this tool's: its file list is not rewritten
    ret = plan_retention(desired, ObservedState((*observed[:4], foreign)), RetentionInputs(NOW))
    assert ret.rehome == ()
    assert {e.version: e.stage for e in ret.entries}[vk(0)] == "kept"


def test_an_interrupted_rehome_is_finished_before_anything_is_deleted():
    desired, observed = rehome_chain()
    done = replace(observed[3], reads=(), parent_ids=(), inherited=(0, 0), rehome_pending=True)
    clean = replace(observed[4], reads=(("id3", "*"), ("id3", "state")))  # its file list follows; its struct may not
    ret = plan_retention(desired, ObservedState((*observed[:3], done, clean)), RetentionInputs(NOW))
    (rehome,) = ret.rehome
    assert rehome.version == vk(3) and rehome.rewrites == ((vk(4), "id4"),)  # apply checks and finishes it
    foreign = replace(clean, managed=False)  # cannot be finished: nothing of the dataset is deleted
    ret = plan_retention(desired, ObservedState((*observed[:3], done, foreign)), RetentionInputs(NOW))
    assert ret.rehome == () and ret.delete == ()
    assert all("interrupted" in e.reasons[0] for e in ret.entries if e.version in (vk(0), vk(1), vk(2)))
