"""Table-driven cases of the pure planner on plain values."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from reconciler.describe import describe
from reconciler.globs import GlobSet
from reconciler.model import (
    Content,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    FileEntry,
    LinkEntry,
    ObservedState,
    ObservedVersion,
    Properties,
    StoredObject,
    VersionKey,
    VersionSpec,
    freeze_json,
)
from reconciler.plan.actions import (
    Archive,
    CreateVersion,
    DiscardDraft,
    Finalize,
    PlanOptions,
    Publish,
    Restore,
    ResumeVersion,
    SetProperties,
    SetStatistics,
    SyncFiles,
)
from reconciler.plan.contents import SourceFiles, compute_contents
from reconciler.plan.observed import FINGERPRINT_EXCLUDED, fingerprint
from reconciler.plan.planner import compute_plan, unknown_targets
from reconciler.plancodec import plan_from_json, plan_to_json
from reconciler.render import render_human, render_markdown

P, N = "proj", "ds"


def vk(version: str, name: str = N) -> VersionKey:
    return VersionKey(P, name, version)


def f(path: str, content: str) -> FileEntry:
    import hashlib

    return FileEntry(path, len(content), hashlib.sha256(content.encode()).hexdigest(), f"/data/{path}")


def dataset(*versions: VersionSpec, tags=("a", "b"), meta=None, desc="d", name=N, stats=False) -> DatasetSpec:
    props = Properties(desc, frozenset(tags), freeze_json(meta or {"k": 1}))
    return DatasetSpec(DatasetKey(P, name), tuple(replace(v, properties=props) for v in versions),
                       properties=props, statistics=stats)


V1 = VersionSpec(vk("1.0.0"))
V2 = VersionSpec(vk("1.1.0"), parents=(vk("1.0.0"),), remove=("old/*",))
OWN = {
    vk("1.0.0"): SourceFiles(files=(f("a.txt", "a"), f("old/x.txt", "x"), f("keep/y.txt", "y"))),
    vk("1.1.0"): SourceFiles(files=(f("a.txt", "A2"), f("b.txt", "b"))),
}


def observed_from(desired: DesiredState, contents, *, status="completed", managed=True) -> ObservedState:
    """What the server would hold after a successful apply of ``desired``."""
    out = []
    for i, spec in enumerate(desired.all_versions()):
        ds = desired.dataset(spec.key.dataset)
        c = contents[spec.key]
        out.append(ObservedVersion(
            key=spec.key, id=f"id{i}", status="published" if spec.publish else status,
            properties=spec.properties, files=tuple(c.files.values()),
            links=tuple(c.links.values()), managed=managed, content_digest=c.digest(),
            parent_ids=(f"id{i - 1}",) if spec.parent else (),
            statistics_digest=c.digest() if ds.statistics else None,
        ))
    return ObservedState(tuple(out))


def test_content_follows_parent_chain_with_remove_and_override():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    assert sorted(contents[vk("1.0.0")].files) == ["a.txt", "keep/y.txt", "old/x.txt"]
    c2 = contents[vk("1.1.0")]
    assert sorted(c2.files) == ["a.txt", "b.txt", "keep/y.txt"]
    assert c2.files["a.txt"].size == 2


def test_fresh_server_creates_parents_first_with_delta_sync():
    desired = DesiredState((dataset(V2, V1),))  # the child first: the plan still puts the parent first
    contents = compute_contents(desired, OWN)
    plan = compute_plan(desired, contents, ObservedState())
    kinds = [(type(a).__name__, a.version.version) for a in plan.actions]
    assert kinds == [  # everything a version carries is written before it is finalized
        ("CreateVersion", "1.0.0"), ("SyncFiles", "1.0.0"), ("SetProperties", "1.0.0"), ("Finalize", "1.0.0"),
        ("CreateVersion", "1.1.0"), ("SyncFiles", "1.1.0"), ("SetProperties", "1.1.0"), ("Finalize", "1.1.0"),
    ]
    sync2 = plan.actions[5]
    assert isinstance(sync2, SyncFiles)
    assert [x.path for x in sync2.upload] == ["a.txt", "b.txt"]
    assert sync2.modified == ("a.txt",)
    assert sync2.remove == ("old/x.txt",)
    assert plan.summary().create == 2


def test_a_merge_lays_later_parents_over_earlier_ones_and_uploads_only_its_own_files():
    left = VersionSpec(vk("1.0.0", "left"))
    right = VersionSpec(vk("1.0.0", "right"))
    both = VersionSpec(vk("1.0.0", "both"), parents=(left.key, right.key))
    other = VersionSpec(vk("2.0.0", "both"), parents=(right.key, left.key), remove=("l.txt",))
    own = {left.key: SourceFiles(files=(f("shared.txt", "left"), f("l.txt", "l"))),
           right.key: SourceFiles(files=(f("shared.txt", "right"), f("r.txt", "r"))),
           other.key: SourceFiles(files=(f("own.txt", "own"),))}
    desired = DesiredState((dataset(both, other, name="both"), dataset(left, name="left"),
                            dataset(right, name="right")))
    contents = compute_contents(desired, own)
    assert contents[both.key].files["shared.txt"] == f("shared.txt", "right")
    assert sorted(contents[both.key].files) == ["l.txt", "r.txt", "shared.txt"]
    assert contents[other.key].files["shared.txt"] == f("shared.txt", "left")
    assert sorted(contents[other.key].files) == ["own.txt", "r.txt", "shared.txt"]
    plan = compute_plan(desired, contents, ObservedState())
    creates = [a for a in plan.actions if isinstance(a, CreateVersion)]
    assert [c.version.name for c in creates][-2:] == ["both", "both"]  # parents first
    assert creates[-2].parents == (left.key, right.key) and creates[-1].parents == (right.key, left.key)
    syncs = {a.version: a for a in plan.actions if isinstance(a, SyncFiles)}
    assert both.key not in syncs  # nothing of its own: nothing to upload
    assert [x.path for x in syncs[other.key].upload] == ["own.txt"] and syncs[other.key].remove == ("l.txt",)
    assert "create version merging proj/left@1.0.0, proj/right@1.0.0" in render_human(plan)
    assert describe(creates[-2]) == "create proj/both@1.0.0 (parents proj/left@1.0.0, proj/right@1.0.0)"
    assert plan_from_json(plan_to_json(plan)) == plan
    replan = compute_plan(desired, contents, observed_merges(desired, contents))
    assert replan.actions == () and replan.conflicts == ()


def observed_merges(desired: DesiredState, contents) -> ObservedState:
    ids = {spec.key: f"id{i}" for i, spec in enumerate(desired.all_versions())}
    return ObservedState(tuple(
        ObservedVersion(key=spec.key, id=ids[spec.key], status="completed", properties=spec.properties,
                        files=tuple(contents[spec.key].files.values()), links=(), managed=True,
                        content_digest=contents[spec.key].digest(), parent_ids=tuple(ids[p] for p in spec.parents))
        for spec in desired.all_versions()))


def test_replanning_after_apply_is_empty():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    plan = compute_plan(desired, contents, observed_from(desired, contents))
    assert plan.actions == () and plan.conflicts == ()
    assert "No changes" in render_human(plan)


def test_tag_and_metadata_change_only_updates_properties():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    observed = observed_from(desired, contents)
    changed = DesiredState((dataset(V1, V2, tags=("a", "c"), meta={"k": 2}),))
    plan = compute_plan(changed, contents, observed)
    assert {type(a) for a in plan.actions} == {SetProperties}
    first = plan.actions[0]
    assert first.before.tags == frozenset({"a", "b"}) and first.after.tags == frozenset({"a", "c"})
    assert [(c.field, c.path, c.change) for c in first.changes()] == [
        ("metadata", "metadata['k']", "changed"), ("tags", "tags", "added"), ("tags", "tags", "removed")]
    assert describe(first) == "set tags, metadata of proj/ds@1.0.0"
    assert plan.summary().update == 2 and plan.summary().upload_files == 0


def test_changed_finalized_content_is_a_conflict_and_blocks_children():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    observed = observed_from(desired, contents)
    own = dict(OWN)
    own[vk("1.0.0")] = SourceFiles(files=(f("a.txt", "changed"), f("old/x.txt", "x")))
    plan = compute_plan(desired, compute_contents(desired, own), observed)
    assert [c.version for c in plan.conflicts] == [vk("1.0.0"), vk("1.1.0")]
    first = plan.conflicts[0]
    assert first.modified == ("a.txt",) and first.removed == ("keep/y.txt",) and first.added == ()
    assert not any(isinstance(a, (SyncFiles, CreateVersion, Finalize)) for a in plan.actions)
    assert "add a new version" in render_human(plan)


def test_new_child_on_existing_parent_uploads_only_delta():
    desired1 = DesiredState((dataset(V1),))
    contents1 = compute_contents(desired1, OWN)
    observed = observed_from(desired1, contents1)
    desired = DesiredState((dataset(V1, V2),))
    plan = compute_plan(desired, compute_contents(desired, OWN), observed)
    assert [type(a) for a in plan.actions] == [CreateVersion, SyncFiles, SetProperties, Finalize]
    assert all(a.version == vk("1.1.0") for a in plan.actions)
    sync = plan.actions[1]
    assert [x.path for x in sync.upload] == ["a.txt", "b.txt"]


def test_managed_draft_is_resumed_not_duplicated():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    draft = ObservedVersion(key=vk("1.0.0"), id="draft1", status="in_progress", managed=True)
    plan = compute_plan(desired, contents, ObservedState((draft,)))
    assert isinstance(plan.actions[0], ResumeVersion) and plan.actions[0].version_id == "draft1"
    sync = plan.actions[1]  # an interrupted run's chunks are not trusted: the whole delta is uploaded again
    assert [x.path for x in sync.upload] == ["a.txt", "keep/y.txt", "old/x.txt"]
    assert not any(isinstance(a, CreateVersion) for a in plan.actions)


def test_foreign_draft_is_a_conflict():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    draft = ObservedVersion(key=vk("1.0.0"), id="d", status="created", managed=False, files=(), links=())
    plan = compute_plan(desired, contents, ObservedState((draft,)))
    assert plan.actions == () and "draft" in plan.conflicts[0].reason


def test_publish_and_prune():
    v1 = VersionSpec(vk("1.0.0"), publish=True)
    desired = DesiredState((dataset(v1),))
    contents = compute_contents(desired, OWN)
    stale = ObservedVersion(key=vk("0.9.0"), id="old", status="completed", managed=True)
    foreign = ObservedVersion(key=vk("0.8.0"), id="foreign", status="completed", managed=False)
    observed = ObservedState(observed_from(DesiredState((dataset(VersionSpec(vk("1.0.0"))),)),
                                           contents).versions + (stale, foreign))
    plan = compute_plan(desired, contents, observed)
    assert [type(a) for a in plan.actions] == [Publish]
    assert {u.version_id for u in plan.unmanaged} == {"old", "foreign"}
    assert plan.projects == (P,)
    pruned = compute_plan(desired, contents, observed, PlanOptions(prune=True))
    assert [a for a in pruned.actions if isinstance(a, Archive)] == [Archive(vk("0.9.0"), "old")]


def test_prune_never_archives_a_parent_of_a_kept_version():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    base = observed_from(desired, contents).versions[0]
    parent = ObservedVersion(key=vk("0.1.0"), id="p", status="completed", managed=True)
    child = replace(base, parent_ids=("p",))
    plan = compute_plan(desired, contents, ObservedState((child, parent)), PlanOptions(prune=True))
    assert not any(isinstance(a, Archive) for a in plan.actions)
    assert plan.unmanaged[0].reason == "parent of a version that is kept"


def test_targets_pull_in_ancestors_only():
    other = VersionSpec(VersionKey(P, "other", "1.0.0"))
    desired = DesiredState((dataset(V1, V2), dataset(other, name="other")))
    own = dict(OWN)
    own[other.key] = SourceFiles(files=(f("z", "z"),))
    plan = compute_plan(desired, compute_contents(desired, own), ObservedState(),
                        PlanOptions(targets=("proj/ds@1.1.0",)))
    assert {a.version for a in plan.actions} == {vk("1.0.0"), vk("1.1.0")}


def test_link_drift_in_a_finalized_version_is_a_conflict():
    spec = VersionSpec(vk("1.0.0"))
    desired = DesiredState((dataset(spec),))
    own = {spec.key: SourceFiles(links=(LinkEntry("l.bin", "s3://b/l.bin", 10, "e1"),))}
    contents = compute_contents(desired, own)
    observed = observed_from(desired, contents)
    own2 = {spec.key: SourceFiles(links=(LinkEntry("l.bin", "s3://b/l.bin", 11, "e2"),))}
    plan = compute_plan(desired, compute_contents(desired, own2), observed)
    assert plan.conflicts[0].modified == ("l.bin",)


@pytest.mark.parametrize("path,globs,expected", [
    ("old/x.txt", ("old/*",), True), ("old/x.txt", ("old",), True), ("older/x", ("old",), False),
    ("a/b/c.png", ("*.png",), True), ("a/b/c.png", ("a/*/c.png",), True), ("a.txt", (), False),
])
def test_remove_globs(path, globs, expected):
    assert GlobSet.compile(globs).matches(path) is expected


def test_json_round_trip_and_renderers():
    desired = DesiredState((dataset(V1, V2),))
    plan = compute_plan(desired, compute_contents(desired, OWN), ObservedState())
    data = plan_to_json(plan)
    assert data["format_version"] == 2 and data["summary"]["create"] == 2
    assert plan_from_json(data) == plan
    text = render_human(plan)
    assert "+ version proj/ds@1.0.0" in text and text.rstrip().endswith(
        "Plan: 2 to create, 0 to update, 0 to archive, 0 conflicts.")
    md = render_markdown(plan)
    assert "### Dataset plan" in md and "proj/ds@1.1.0" in md


def test_markdown_is_trimmed_under_the_limit():
    files = tuple(f(f"dir{i // 100}/file{i:05d}.bin", str(i)) for i in range(50))
    specs = [VersionSpec(vk(f"1.{i}.0", name=f"ds{i}")) for i in range(300)]
    desired = DesiredState(tuple(dataset(s, name=s.key.name) for s in specs))
    own = {s.key: SourceFiles(files=files) for s in specs}
    plan = compute_plan(desired, compute_contents(desired, own), ObservedState())
    md = render_markdown(plan, full_plan_path="plan.json")
    assert len(md) <= 65_000
    assert "plan.json" in md


def test_description_change_in_place():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    observed = observed_from(desired, contents)
    plan = compute_plan(DesiredState((dataset(V1, desc="new"),)), contents, observed)
    (action,) = plan.actions
    assert isinstance(action, SetProperties) and action.before.description == "d" and action.after.description == "new"
    assert [(c.path, c.before, c.after) for c in action.changes()] == [("description", "d", "new")]
    assert Content().file_count == 0


def test_statistics_are_written_before_finalize_and_not_again_after_apply():
    desired = DesiredState((dataset(V1, V2, stats=True),))
    contents = compute_contents(desired, OWN)
    plan = compute_plan(desired, contents, ObservedState())
    kinds = [type(a).__name__ for a in plan.actions if a.version == vk("1.1.0")]
    assert kinds == ["CreateVersion", "SyncFiles", "SetStatistics", "SetProperties", "Finalize"]
    stats = [a for a in plan.actions if isinstance(a, SetStatistics)]
    assert [a.version for a in stats] == [vk("1.0.0"), vk("1.1.0")]
    second = stats[1]
    assert second.before_digest is None and second.after_digest == contents[vk("1.1.0")].digest() and second.plots
    assert compute_plan(desired, contents, observed_from(desired, contents)).actions == ()


def test_statistics_turned_on_for_existing_versions_is_the_only_change():
    desired = DesiredState((dataset(V1, V2.__class__(V2.key, V2.parents, remove=V2.remove, publish=True)),))
    contents = compute_contents(desired, OWN)
    observed = observed_from(desired, contents)
    plan = compute_plan(DesiredState((dataset(V1, desired.datasets[0].versions[1], stats=True),)), contents, observed)
    assert [type(a) for a in plan.actions] == [SetStatistics, SetStatistics]
    assert [a.plots for a in plan.actions] == [True, False]  # ClearML takes no plots on a published version
    assert plan.summary().update == 2
    text = render_human(plan)
    assert "statistics: compute for content" in text and "no plots on a published version" in text
    assert describe(plan.actions[0]).startswith("compute statistics of proj/ds@1.0.0")


def test_stale_statistics_digest_is_recomputed_and_the_plan_round_trips():
    desired = DesiredState((dataset(V1, stats=True),))
    contents = compute_contents(desired, OWN)
    base = observed_from(desired, contents).versions[0]
    plan = compute_plan(desired, contents, ObservedState((replace(base, statistics_digest="old"),)))
    assert len(plan.actions) == 1 and isinstance(plan.actions[0], SetStatistics)
    assert plan.actions[0].before_digest == "old"
    data = plan_to_json(plan)
    assert data["actions"][0]["type"] == "set_statistics" and "files" not in data["actions"][0]
    assert plan_from_json(data) == plan
    assert "statistics" in render_markdown(plan)


def test_an_archived_version_named_again_is_restored_not_duplicated():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    archived = replace(observed_from(desired, contents).versions[0], archived=True)
    plan = compute_plan(desired, contents, ObservedState((archived,)))
    assert plan.actions == (Restore(vk("1.0.0"), "id0"),)
    assert plan.summary().restore == 1 and plan.summary().create == 0
    assert "restore" in render_human(plan) and plan.unmanaged == ()


def test_publish_false_on_a_published_version_is_a_conflict():
    published = DesiredState((dataset(VersionSpec(vk("1.0.0"), publish=True)),))
    contents = compute_contents(published, OWN)
    observed = observed_from(published, contents)
    plan = compute_plan(DesiredState((dataset(V1),)), contents, observed)
    assert plan.actions == () and "publish: false" in plan.conflicts[0].reason
    assert "cannot unpublish" in plan.conflicts[0].hint


def test_a_finalized_version_whose_parent_is_gone_is_a_conflict():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    v1, v2 = observed_from(desired, contents).versions
    recreated = replace(v1, id="new-parent")  # the old parent was deleted and the manifests made it again
    plan = compute_plan(desired, contents, ObservedState((recreated, replace(v2, parent_ids=("id0",)))))
    (conflict,) = plan.conflicts
    assert conflict.version == vk("1.1.0") and "gone from the server" in conflict.reason


def test_prune_stays_inside_the_manifests_projects_unless_widened():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    elsewhere = ObservedVersion(key=VersionKey("other-repo", "x", "1.0.0"), id="theirs", status="completed",
                                managed=True)
    observed = ObservedState(observed_from(desired, contents).versions + (elsewhere,))
    plan = compute_plan(desired, contents, observed, PlanOptions(prune=True))
    assert plan.actions == () and plan.unmanaged == () and plan.projects == (P,)
    wide = compute_plan(desired, contents, observed, PlanOptions(prune=True, prune_scope=("other-repo",)))
    assert wide.actions == (Archive(VersionKey("other-repo", "x", "1.0.0"), "theirs"),)
    assert wide.projects == ("other-repo", P)


def test_unknown_targets_are_named_with_close_matches():
    desired = DesiredState((dataset(V1, V2),))
    assert unknown_targets(desired, ("proj/ds@1.1.0", "proj/ds")) == {}
    unknown = unknown_targets(desired, ("proj/dss", "@7.0.0", "nothing-like-it"))
    assert list(unknown) == ["proj/dss", "@7.0.0", "nothing-like-it"]
    assert unknown["proj/dss"][0] == "proj/ds" and unknown["nothing-like-it"] == ()


@pytest.mark.parametrize("name", [f.name for f in fields(ObservedVersion) if f.name not in FINGERPRINT_EXCLUDED])
def test_every_observed_field_makes_a_saved_plan_stale(name):
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    base = observed_from(desired, contents).versions[0]
    changed_values = {
        "key": vk("9.9.9"), "id": "other", "status": "published",
        "properties": Properties("other", frozenset({"z"}), freeze_json({"k": 1})),
        "parent_ids": ("p",), "file_count": 99, "total_size": 99, "managed": False, "archived": True,
        "last_update": "2026-01-01", "content_digest": "x", "statistics_digest": "y",
        "applied": Properties("applied", frozenset({"z"})), "unread_metadata": ("info",), "pruned": True,
        "lost_system_tags": ("dataset",), "aliases": ("production",),
        "created": "2026-01-01", "objects": (StoredObject("data", "s3://b/data.zip", 3),),
        "expired_at": "2026-01-02T00:00:00+00:00", "freed": ("data",), "rehome_pending": True,
    }
    assert set(changed_values) == {f.name for f in fields(ObservedVersion)} - FINGERPRINT_EXCLUDED
    before = fingerprint(ObservedState((base,)))
    after = fingerprint(ObservedState((replace(base, **{name: changed_values[name]}),)))
    assert before != after


@pytest.mark.parametrize("field_name,value", [
    ("description", "x"), ("tags", frozenset({"t"})), ("metadata", freeze_json({"k": True})),
    ("metadata_artifacts", freeze_json({"info": {"k": 1}}))])
def test_each_property_alone_makes_a_saved_plan_stale(field_name, value):
    base = ObservedVersion(key=vk("1.0.0"), id="i", status="completed",
                           properties=Properties("d", frozenset(), freeze_json({"k": 1})))
    props = replace(base.properties, **{field_name: value})
    assert fingerprint(ObservedState((base,))) != fingerprint(ObservedState((replace(base, properties=props),)))


def test_a_version_whose_chunks_are_gone_from_storage_is_a_conflict():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    v1, v2 = observed_from(desired, contents).versions
    plan = compute_plan(desired, contents, ObservedState((replace(v1, missing_chunks=("data",)), v2)))
    assert [c.version for c in plan.conflicts] == [vk("1.0.0"), vk("1.1.0")]
    assert plan.conflicts[0].reason == ("1 data chunk of it is missing from storage (data), so the version cannot "
                                        "be downloaded")


def test_properties_edited_on_the_server_are_drift_and_put_back():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    base = observed_from(desired, contents).versions[0]
    edited = Properties(base.properties.description, base.properties.tags | {"ui-tag"}, base.properties.metadata)
    plan = compute_plan(desired, contents, ObservedState((replace(base, properties=edited,
                                                                  applied=base.properties),)))
    (drift,) = plan.drift
    assert drift.what == "properties" and drift.before == base.properties and drift.after == edited
    assert "tags changed on the server" in drift.detail
    assert plan.actions == (SetProperties(vk("1.0.0"), edited, base.properties),)
    text = render_human(plan)
    assert "Drift" in text and '+ tag "ui-tag"' in text
    assert plan_from_json(plan_to_json(plan)) == plan


def test_a_manifest_change_alone_is_not_drift():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    base = observed_from(desired, contents).versions[0]
    changed = DesiredState((dataset(V1, tags=("a", "b", "new")),))
    plan = compute_plan(changed, contents, ObservedState((replace(base, applied=base.properties),)))
    assert plan.drift == () and len(plan.actions) == 1


def test_an_archived_version_is_drift():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    archived = replace(observed_from(desired, contents).versions[0], archived=True)
    plan = compute_plan(desired, contents, ObservedState((archived,)))
    assert [(d.what, d.version_id) for d in plan.drift] == [("archived", "id0")]


def test_a_version_this_tool_pruned_is_restored_without_drift():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    pruned = replace(observed_from(desired, contents).versions[0], archived=True, pruned=True)
    plan = compute_plan(desired, contents, ObservedState((pruned,)))
    assert plan.actions == (Restore(vk("1.0.0"), "id0"),) and plan.drift == ()


V3 = VersionSpec(vk("1.2.0"), parents=(vk("1.1.0"),))


@pytest.mark.parametrize("archived,pruned", [(("id0",), False), (("id0", "id1", "id2"), True),
                                             (("id1",), False)])
def test_archived_parents_are_restored_with_their_children_in_one_plan(archived, pruned):
    desired = DesiredState((dataset(V1, V2, V3),))
    contents = compute_contents(desired, OWN)
    observed = ObservedState(tuple(replace(v, archived=v.id in archived, pruned=pruned)
                                   for v in observed_from(desired, contents).versions))
    plan = compute_plan(desired, contents, observed)
    assert plan.conflicts == ()
    assert plan.actions == tuple(Restore(v.key, v.id) for v in observed.versions if v.id in archived)
    assert [d.version_id for d in plan.drift] == ([] if pruned else list(archived))


def test_a_parent_gone_for_good_still_blocks_its_child():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    child = observed_from(desired, contents).versions[1]
    plan = compute_plan(desired, contents, ObservedState((child,)))
    assert [(c.version, "gone from the server" in c.reason) for c in plan.conflicts] == [(vk("1.1.0"), True)]


def test_an_alias_dropped_from_the_manifests_is_taken_off_and_listed():
    desired = DesiredState((dataset(V1, V2),))
    contents = compute_contents(desired, OWN)
    v1, v2 = observed_from(desired, contents).versions
    tagged = replace(v1, properties=v1.properties.replace(tags=v1.properties.tags | {"production"}),
                     aliases=("production",))
    plan = compute_plan(desired, contents, ObservedState((tagged, v2)))
    assert [(m.alias, m.before, m.after) for m in plan.aliases] == [("production", ("1.0.0",), "")]
    assert [a for a in plan.actions if isinstance(a, SetProperties)] == [
        SetProperties(vk("1.0.0"), tagged.properties, v1.properties)]
    assert "production: 1.0.0 -> none (dropped from the manifests)" in render_human(plan)


def test_aliases_move_as_tags_and_leave_exactly_one_holder():
    v2 = VersionSpec(vk("1.1.0"), parents=(vk("1.0.0"),))
    props = Properties("d", frozenset({"a"}), freeze_json({"k": 1}))
    before = DesiredState((DatasetSpec(DatasetKey(P, N), (
        replace(V1, properties=Properties("d", frozenset({"a", "production"}), freeze_json({"k": 1}))),
        replace(v2, parents=(vk("1.0.0"),), properties=props)), props, aliases=freeze_json({"production": "1.0.0"})),))
    contents = compute_contents(before, OWN)
    observed = observed_from(before, contents)
    stray = ObservedVersion(key=vk("0.9.0"), id="old", status="completed", managed=True,
                            properties=Properties("d", frozenset({"production"})))
    after = DesiredState((DatasetSpec(DatasetKey(P, N), (
        replace(V1, properties=props),
        replace(v2, parents=(vk("1.0.0"),), properties=Properties("d", frozenset({"a", "production"}),
                                                             freeze_json({"k": 1})))),
        props, aliases=freeze_json({"production": "1.1.0"})),))
    plan = compute_plan(after, contents, ObservedState(observed.versions + (stray,)))
    moves = {(a.version.version, tuple(sorted(a.before.tags)), tuple(sorted(a.after.tags)))
             for a in plan.actions if isinstance(a, SetProperties)}
    assert moves == {("1.0.0", ("a", "production"), ("a",)), ("1.1.0", ("a",), ("a", "production")),
                     ("0.9.0", ("production",), ())}
    order = [(a.version.version, a.alias) for a in plan.actions]
    assert order == [("1.1.0", True), ("1.0.0", True), ("0.9.0", True)]  # the new holder gets it first
    (move,) = plan.aliases
    assert (move.alias, move.before, move.after) == ("production", ("0.9.0", "1.0.0"), "1.1.0")
    assert plan_from_json(plan_to_json(plan)) == plan
    assert describe(plan.actions[0]) == "move alias production to proj/ds@1.1.0"
    assert describe(plan.actions[2]) == "take alias production off proj/ds@0.9.0"
    # a new holder in conflict: the alias stays where it is
    changed = {**contents, vk("1.1.0"): Content({"other.txt": f("other.txt", "o")})}
    blocked = compute_plan(after, changed, ObservedState(observed.versions + (stray,)))
    assert [c.version for c in blocked.conflicts] == [vk("1.1.0")]
    assert not any(isinstance(a, SetProperties) and "production" in a.before.tags - a.after.tags
                   for a in blocked.actions)
    assert "production: 0.9.0, 1.0.0 -> 1.1.0" in render_human(plan)


def test_an_adopted_version_is_taken_as_the_server_holds_it():
    adopted = replace(V1, adopt="a" * 32, publish=True)  # import writes publish: true for a published one
    child = VersionSpec(vk("1.1.0"), parents=(vk("1.0.0"),))
    desired = DesiredState((dataset(adopted, child),))
    live = (f("made/by/script.txt", "s"),)
    server = ObservedVersion(key=vk("1.0.0"), id="a" * 32, status="published", managed=False,
                             properties=Properties("d", frozenset({"a", "b"}), freeze_json({"k": 1})),
                             files=live, links=())
    own = {child.key: SourceFiles(files=(f("new.txt", "n"),))}
    contents = compute_contents(desired, own, {adopted.key: Content({x.path: x for x in live})})
    plan = compute_plan(desired, contents, ObservedState((server,)))
    assert [type(a).__name__ for a in plan.actions] == ["CreateVersion", "SyncFiles", "SetProperties", "Finalize"]
    sync = plan.actions[1]
    assert [x.path for x in sync.upload] == ["new.txt"]  # only the delta on top of what the server holds
    assert plan.unmanaged == () and plan.conflicts == ()
    missing = compute_plan(desired, contents, ObservedState())
    assert "not on the server" in missing.conflicts[0].reason


def test_a_saved_plan_of_a_100000_file_version_with_statistics_stays_small():
    import json

    files = tuple(FileEntry(f"d{i // 1000}/f{i:06d}.png", 1000 + i, f"{i:064x}", f"/data/d{i // 1000}/f{i:06d}.png")
                  for i in range(100_000))
    spec = VersionSpec(vk("1.0.0"))
    desired = DesiredState((dataset(spec, stats=True),))
    plan = compute_plan(desired, compute_contents(desired, {spec.key: SourceFiles(files=files)}), ObservedState())
    size = len(json.dumps(plan_to_json(plan)))
    assert size < 25_000_000  # the upload list once; statistics reference the content by digest
    assert sum(1 for a in plan.actions if isinstance(a, SetStatistics)) == 1


def test_a_stray_draft_of_a_finalized_version_is_discarded_and_then_the_plan_is_empty():
    desired = DesiredState((dataset(V1),))
    contents = compute_contents(desired, OWN)
    final = observed_from(desired, contents).versions[0]
    stray = replace(final, id="stray", status="created", files=None, links=None, content_digest=None)
    foreign = replace(final, id="foreign", status="in_progress", files=None, links=None, managed=False)
    plan = compute_plan(desired, contents, ObservedState((final, stray, foreign)))
    assert plan.actions == (DiscardDraft(vk("1.0.0"), "stray"),)  # a draft not made by this tool is left alone
    assert [u.version_id for u in plan.unmanaged] == ["foreign"]
    assert "discard draft stray: a stray copy of this finalized version" in render_human(plan, color=False)
    assert plan_from_json(plan_to_json(plan)) == plan
    assert compute_plan(desired, contents, ObservedState((final, foreign))).actions == ()
