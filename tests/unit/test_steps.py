"""apply --queue, the parts without a server: how a plan splits into the command's actions and the agents' steps,
what a step checks against the plan, the step's stored form, and which sources agents can see."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import MappingProxyType

import pytest

from reconciler.checkout import agent_sources, find_checkout
from reconciler.diagnostics import ReconcileError, SourceSpan
from reconciler.model import (
    Content,
    FileEntry,
    LinkEntry,
    PathSource,
    Properties,
    TorchvisionSource,
    UrlSource,
    VersionKey,
)
from reconciler.plan.actions import (
    Archive,
    Build,
    CreateVersion,
    Finalize,
    Plan,
    Publish,
    ResumeVersion,
    SetProperties,
    SyncFiles,
)
from reconciler.plancodec import plan_from_json, plan_to_json
from reconciler.stepcodec import INLINE_LIMIT, decode_step, encode_step
from reconciler.steps import Step, content_mismatches, mismatch_error, planned_content, split_for_queue, upload_from

P1 = VersionKey("p", "ds", "1.0.0")
P2 = VersionKey("p", "ds", "1.1.0")
OTHER = VersionKey("p", "other", "1.0.0")
DONE = VersionKey("p", "old", "1.0.0")
A = FileEntry("a.txt", 1, "a" * 64, "/here/a.txt")
B = FileEntry("b.txt", 2, "b" * 64, "/here/b.txt")


def content(*files: FileEntry, links: tuple[LinkEntry, ...] = ()) -> Content:
    return Content(MappingProxyType({f.path: f for f in files}), MappingProxyType({lnk.path: lnk for lnk in links}))


def test_versions_to_build_become_steps_and_the_rest_stays_with_the_command() -> None:
    props = SetProperties(DONE, Properties("x"), Properties("y"))
    plan = Plan(
        actions=(CreateVersion(P1, ()), SyncFiles(P1, upload=(A,)), Finalize(P1, "d1"),
                 CreateVersion(P2, (P1,)), SyncFiles(P2, upload=(B,)), Finalize(P2, "d2"), Publish(P2),
                 ResumeVersion(OTHER, "draft", ()), Finalize(OTHER, "d3"),
                 props, Publish(DONE), Archive(VersionKey("p", "gone", "1.0.0"), "g")),
        builds=(Build(P1, (PathSource(Path("/data/a")),)), Build(P2, (), ("x/*",)), Build(OTHER)),
    )
    split = split_for_queue(plan)
    assert split.local == (props, Publish(DONE), Archive(VersionKey("p", "gone", "1.0.0"), "g"))
    assert [q.step.version for q in split.steps] == [P1, P2, OTHER]
    two = split.steps_by_version[P2]
    assert two.opening == CreateVersion(P2, (P1,)) and two.publish and two.step.parents == (P1,)
    assert two.step.actions == (SyncFiles(P2, upload=(B,)), Finalize(P2, "d2")) and two.step.remove == ("x/*",)
    assert split.steps_by_version[P1].step.sources == (PathSource(Path("/data/a")),)
    assert isinstance(split.steps_by_version[OTHER].opening, ResumeVersion)


def test_a_saved_plan_without_builds_cannot_go_to_agents() -> None:
    with pytest.raises(ReconcileError, match=r"does not say what p/ds@1.0.0 is made of .* run 'reconcile plan' again"):
        split_for_queue(Plan(actions=(CreateVersion(P1, ()), Finalize(P1, "d"))))


def test_the_planned_content_is_the_parent_with_the_delta() -> None:
    link = LinkEntry("l.bin", "s3://b/l.bin", 5, "e")
    base = content(A, FileEntry("gone.txt", 3, "c" * 64), links=(LinkEntry("old.lnk", "s3://b/o", 1),))
    sync = SyncFiles(P2, upload=(B, FileEntry("old.lnk", 4, "d" * 64)), remove=("gone.txt",), add_links=(link,))
    got = planned_content(base, sync)
    assert sorted(got.files) == ["a.txt", "b.txt", "old.lnk"] and sorted(got.links) == ["l.bin"]
    assert planned_content(base, None) is base


def test_a_changed_source_is_named_with_its_sizes_and_hashes() -> None:
    planned = content(A, B)
    now = content(FileEntry("a.txt", 9, "f" * 64), FileEntry("new.txt", 1, "e" * 64))
    found = content_mismatches(planned, now)
    assert found == [f"a.txt (planned 1 bytes, sha256 {'a' * 12}; the sources now give 9 bytes, sha256 {'f' * 12})",
                     "new.txt (not in the plan; the sources now give it)",
                     "b.txt (in the plan; the sources no longer give it)"]
    assert content_mismatches(planned, content(A, B)) == []
    message = str(mismatch_error(P1, found))
    assert message.startswith("error: the sources of p/ds@1.0.0 changed since the plan: a.txt (planned 1 bytes")
    assert "; and 2 more; nothing of this version was uploaded or finalized" in message
    assert "\n" not in message


def test_files_are_uploaded_from_where_the_sources_are_on_the_agent() -> None:
    sync = SyncFiles(P1, upload=(A,))
    moved = upload_from(sync, content(FileEntry("a.txt", 1, "a" * 64, "/agent/checkout/a.txt")))
    assert moved.upload[0].local == "/agent/checkout/a.txt" and moved.upload[0] == A


def test_a_step_round_trips_without_local_paths_and_large_ones_are_compressed() -> None:
    sources = (PathSource(Path("data/a"), "d", ("*.png",), ("x",)),
               TorchvisionSource("MNIST", "train", "raw", "", None, True),
               TorchvisionSource("CIFAR10", "test", "images", "c", Path("/mnt/tv"), False),
               UrlSource("s3://bucket/p/", "remote", True))
    step = Step(P2, (P1,), (SyncFiles(P2, upload=(A,)), Finalize(P2, "d")), sources, ("old/*",), (("p", "token"),))
    back = decode_step(encode_step(step))
    assert back.actions[0].upload[0].local is None  # type: ignore[union-attr]
    assert back == step  # local paths are not compared
    big = Step(P1, (), (SyncFiles(P1, upload=tuple(FileEntry(f"f{i:06d}", i, f"{i:064x}") for i in range(5000))),))
    text = encode_step(big)
    assert text.startswith('{"gzip_base64": ') and len(text) < INLINE_LIMIT
    assert decode_step(text) == big
    with pytest.raises(ReconcileError, match="not a step of format_version 1"):
        decode_step('{"format_version": 99}')
    with pytest.raises(ReconcileError, match="not a readable step"):
        decode_step("{not json")


def test_a_saved_plan_carries_what_its_versions_are_made_of() -> None:
    build = Build(P1, (PathSource(Path("/data/a"), "x", ("*.txt",)), UrlSource("https://h/f.bin"),
                       TorchvisionSource("KMNIST", "test", "images", "", Path("/tv"), True)), ("*.tmp",))
    plan = Plan(actions=(CreateVersion(P1, ()), Finalize(P1, "d")), builds=(build,))
    assert plan_from_json(plan_to_json(plan)) == plan
    old = plan_to_json(plan)
    del old["builds"]
    assert plan_from_json(old).builds == ()


# --- which sources agents see --------------------------------------------------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with ``data/`` committed and pushed to a bare remote; ``data/ignored/`` is git-ignored."""
    work, remote = tmp_path / "work", tmp_path / "remote.git"
    (work / "data").mkdir(parents=True)
    (work / "data" / "a.txt").write_text("a\n")
    (work / ".gitignore").write_text("ignored/\n")
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "data")
    git(work, "push", "-q", "origin", "main")
    return work


def build(*paths: Path) -> Build:
    return Build(P1, tuple(PathSource(p, span=SourceSpan("m.yaml", 3 + i, 7)) for i, p in enumerate(paths)))


def test_committed_sources_go_relative_to_the_checkout_and_mounted_ones_as_they_are(repo: Path,
                                                                                     tmp_path: Path) -> None:
    mount = tmp_path / "nfs"
    (mount / "x").mkdir(parents=True)
    seen = agent_sources([build(repo / "data", mount / "x")], queue="q", mounts=[mount], cwd=repo)
    assert seen.sources[P1] == (PathSource(Path("data")), PathSource(mount / "x"))
    assert seen.checkout is not None and seen.checkout.remote == str(tmp_path / "remote.git")
    assert seen.checkout.branch == "main" and len(seen.checkout.commit) == 40
    only_mounted = agent_sources([build(mount / "x")], queue="q", mounts=[mount], cwd=repo)
    assert only_mounted.checkout == seen.checkout  # sent anyway: venv agents install its requirements.txt
    (repo / "data" / "b.txt").write_text("b\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "local only")
    assert agent_sources([build(mount / "x")], queue="q", mounts=[mount], cwd=repo).checkout is None


def test_sources_agents_cannot_see_are_one_line_each(repo: Path, tmp_path: Path) -> None:
    (repo / "data" / "new.txt").write_text("new\n")
    elsewhere = tmp_path / "laptop"
    elsewhere.mkdir()
    with pytest.raises(ReconcileError) as err:
        agent_sources([build(repo / "data", elsewhere)], queue="gpu", mounts=[], cwd=repo)
    lines = str(err.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"m.yaml:3:7: error: path source {repo / 'data'}: data/new.txt is not committed, so "
                               "agents on queue 'gpu', which check out "), lines[0]
    assert lines[0].endswith("would not get it; commit it, or use --shared-mount")
    assert lines[1] == (f"m.yaml:4:7: error: path source {elsewhere}: agents on queue 'gpu' cannot see it: it is "
                        f"outside the repository {repo} and no --shared-mount covers it; move it into the "
                        "repository, pass --shared-mount DIR for a folder the agents have at the same path, or use "
                        "a url: source")


def test_a_git_ignored_file_is_not_what_agents_get(repo: Path) -> None:
    (repo / "data" / "ignored").mkdir()
    (repo / "data" / "ignored" / "big.bin").write_text("x")
    with pytest.raises(ReconcileError, match=r"data/ignored/ is ignored by git, so agents on queue 'q'"):
        agent_sources([build(repo / "data")], queue="q", mounts=[], cwd=repo)


def test_an_unpushed_commit_is_refused(repo: Path) -> None:
    (repo / "data" / "b.txt").write_text("b\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "local only")
    with pytest.raises(ReconcileError, match=r"commit [0-9a-f]{12} of .* is not on its remote .*: agents check out "
                                             r"that commit; push it first"):
        agent_sources([build(repo / "data")], queue="q", mounts=[], cwd=repo)


def test_without_a_repository_only_mounts_and_urls_are_visible(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    assert find_checkout(tmp_path) is None
    with pytest.raises(ReconcileError, match="the command does not run in a git repository with a remote"):
        agent_sources([build(tmp_path / "d")], queue="q", mounts=[], cwd=tmp_path)
    urls = Build(P1, (UrlSource("s3://b/p/"), UrlSource(f"file://{tmp_path}/d/"),
                      TorchvisionSource("MNIST", "train", download=True)))
    with pytest.raises(ReconcileError, match=r"url source file://.*: agents on queue 'q' read file:// URLs only "
                                             r"under a --shared-mount"):
        agent_sources([urls], queue="q", mounts=[], cwd=tmp_path)
    seen = agent_sources([urls], queue="q", mounts=[tmp_path], cwd=tmp_path)
    assert seen.sources[P1] == urls.sources


def test_alias_moves_wait_for_every_step_to_be_built() -> None:
    take = SetProperties(DONE, Properties("d", frozenset({"production"})), Properties("d"), alias=True)
    give = SetProperties(P1, Properties("d"), Properties("d", frozenset({"production"})), alias=True)
    plan = Plan(actions=(CreateVersion(P1, ()), SyncFiles(P1, upload=(A,)), Finalize(P1, "d1"), Publish(P1),
                         give, take),
                builds=(Build(P1, (PathSource(Path("/data/a")),)),))
    split = split_for_queue(plan)
    assert split.local == () and split.after == (give, take)  # not before the steps, nor in P1's step
    assert split.steps_by_version[P1].step.actions == (SyncFiles(P1, upload=(A,)), Finalize(P1, "d1"))
