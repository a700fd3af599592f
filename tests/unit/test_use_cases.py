"""``Run``, observe, report and import over the in-memory backend (tests/memory_backend.py): plain values, no server.

The same fake serves the reader and the writer, so a plan applied through it is observed back as the real
server would show it.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from memory_backend import MemoryBackend

from reconciler.apply import ApplyOptions, apply_plan
from reconciler.engine import Run
from reconciler.importer import gather, render_manifest, resolve_targets
from reconciler.model import (
    Content,
    DatasetKey,
    DatasetSpec,
    DesiredState,
    FileEntry,
    ObservedState,
    PathSource,
    Properties,
    VersionKey,
    VersionSpec,
    freeze_json,
)
from reconciler.observe import observe
from reconciler.plan.actions import CreateVersion, Finalize, PlanOptions
from reconciler.plan.contents import SourceFiles, compute_contents
from reconciler.plan.planner import compute_plan
from reconciler.report import DiffOptions, diff_desired, diff_live, live_statistics
from reconciler.statistics import StatisticsCache, statistics_for

P = "proj"
K1, K2 = VersionKey(P, "ds", "1.0.0"), VersionKey(P, "ds", "1.1.0")


def _entry(path: str, data: bytes, local: Path | None = None) -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).hexdigest(), str(local) if local else None)


def _png(shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (2, 2), shade).save(out, format="PNG")
    return out.getvalue()


def _tree(root: Path, files: dict[str, bytes]) -> tuple[FileEntry, ...]:
    out = []
    for path, data in sorted(files.items()):
        local = root / path
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        out.append(_entry(path, data, local))
    return tuple(out)


def _desired(*versions: VersionSpec, statistics: bool = False) -> DesiredState:
    props = Properties("d", frozenset({"t"}), freeze_json({"k": 1}))
    return DesiredState((DatasetSpec(DatasetKey(P, "ds"), tuple(versions), props, statistics=statistics),))


# --- observe ---------------------------------------------------------------------------------------------------


def test_observe_reads_file_lists_only_where_the_recorded_digest_cannot_decide() -> None:
    server = MemoryBackend()
    files = (_entry("a.txt", b"alpha"), _entry("b.txt", b"bravo"))
    mine = server.add(K1, files)
    foreign = server.add(VersionKey(P, "other", "1.0.0"), files, managed=False)
    contents = {K1: Content({f.path: f for f in files}), foreign.key: Content({f.path: f for f in files})}
    observed = observe(server, [P], contents, cache_root=None)
    by_id = {v.id: v for v in observed.versions}
    assert by_id[mine.id].files is None  # its recorded digest is the manifests': no file list read
    assert by_id[foreign.id].files == tuple(sorted(files))  # made by the SDK: read and compared
    assert observed.fingerprint and observe(server, [P], contents, cache_root=None).fingerprint == observed.fingerprint


# --- Run: plan, apply through the same fake, plan again --------------------------------------------------------


def test_a_run_plans_applies_and_then_plans_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "src"
    _tree(src, {"a.txt": b"alpha", "b.txt": b"bravo"})
    desired = _desired(VersionSpec(K1, sources=(PathSource(src),)))
    server = MemoryBackend()
    run = Run(server, desired, PlanOptions(), workers=1, progress=False)  # type: ignore[arg-type]
    plan = run.plan()
    assert [type(a) for a in plan.actions][:1] == [CreateVersion]
    assert any(isinstance(a, Finalize) for a in plan.actions)
    apply_plan(plan, server, run.observed(), ApplyOptions(workers=1), local_contents=run.contents())
    (made,) = server.records.values()
    assert made.status == "completed" and sorted(made.files) == ["a.txt", "b.txt"]
    again = Run(server, desired, PlanOptions(), workers=1, progress=False)  # type: ignore[arg-type]
    assert again.plan().actions == ()


# --- report ----------------------------------------------------------------------------------------------------


def test_diff_of_manifests_against_the_server_lists_file_changes(tmp_path: Path) -> None:
    server = MemoryBackend()
    server.add(K1, (_entry("a.txt", b"alpha"), _entry("b.txt", b"bravo")))
    desired = _desired(VersionSpec(K1))
    contents = {K1: Content({f.path: f for f in (_entry("a.txt", b"ALPHA"), _entry("c.txt", b"c"))})}
    observed = observe(server, [P], contents, cache_root=None)
    report = diff_desired(server, desired, contents, observed,  # type: ignore[arg-type]
                          DiffOptions(None, StatisticsCache(tmp_path / "stats"), workers=1))
    (pair,) = report.versions
    assert [(f.path, f.change) for f in pair.files] == [("a.txt", "modified"), ("b.txt", "removed"),
                                                        ("c.txt", "added")]


def test_live_diff_computes_statistics_from_files_fetched_back(tmp_path: Path) -> None:
    server = MemoryBackend()
    img1, img2 = _png(10), _png(200)
    server.add(K1, (_entry("train/cat/1.png", img1),), data={"train/cat/1.png": img1})
    server.add(K2, (_entry("train/cat/1.png", img1), _entry("train/dog/2.png", img2)),
               data={"train/cat/1.png": img1, "train/dog/2.png": img2})
    report = diff_live(server, str(K1), str(K2),  # type: ignore[arg-type]
                       DiffOptions(None, StatisticsCache(tmp_path / "stats"), workers=1))
    (pair,) = report.versions
    assert pair.statistics is not None and pair.statistics.splits
    (split,) = pair.statistics.splits
    assert [(c.key, c.before, c.after) for c in split.classes] == [("cat", 1, 1), ("dog", 0, 1)]
    assert sorted(server.fetched) == ["train/cat/1.png", "train/cat/1.png", "train/dog/2.png"]


def test_stored_statistics_that_describe_the_content_are_used_as_they_are(tmp_path: Path) -> None:
    server = MemoryBackend()
    img = _png(10)
    v = server.add(K1, (_entry("train/cat/1.png", img),), data={"train/cat/1.png": img})
    options = DiffOptions(None, StatisticsCache(tmp_path / "stats"), workers=1)
    version = server.with_files(server.version(v.id), None)  # type: ignore[arg-type]
    content = Content({f.path: f for f in version.files or ()})
    first = live_statistics(server, version, content, options)  # type: ignore[arg-type]
    assert server.fetched == ["train/cat/1.png"]
    from reconciler.model import statistics_key

    server.set_statistics(K1, v.id, first, statistics_key(content.digest(), {}), plots=False)
    options = DiffOptions(None, StatisticsCache(tmp_path / "other"), workers=1)  # an empty cache
    again = live_statistics(server, server.version(v.id), content, options)  # type: ignore[arg-type]
    assert again == first and server.fetched == ["train/cat/1.png"]  # read from the server, nothing fetched


# --- statistics_for: where a version's statistics come from ----------------------------------------------------


def test_statistics_for_fetches_the_images_without_a_local_copy_here(tmp_path: Path) -> None:
    img = _png(30)
    here = _tree(tmp_path / "here", {"train/cat/here.png": img})
    gone = _entry("train/cat/gone.png", img, tmp_path / "deleted.png")  # recorded, no longer on disk
    remote = _entry("train/dog/remote.png", img)  # no local copy at all
    text = _entry("notes.txt", b"n")
    content = Content({f.path: f for f in (*here, gone, remote, text)})
    asked: list[list[str]] = []

    def fetch(paths, dest):  # type: ignore[no-untyped-def]
        asked.append(sorted(paths))
        out = {}
        for p in paths:
            (dest / p).parent.mkdir(parents=True, exist_ok=True)
            (dest / p).write_bytes(img)
            out[p] = dest / p
        return out

    counts: list[int] = []
    cache = StatisticsCache(tmp_path / "stats")
    stats = statistics_for(content, {}, cache=cache, fetch=fetch, workers=1, fetching=counts.append)
    assert asked == [["train/cat/gone.png", "train/dog/remote.png"]] and counts == [2]
    assert stats.images is not None and stats.images.images == 3 and stats.images.unreadable == 0
    assert statistics_for(content, {}, cache=cache, fetch=fetch, workers=1) == stats and len(asked) == 1  # cached


# --- import ----------------------------------------------------------------------------------------------------


def test_import_writes_finalized_versions_parents_first_and_notes_drafts(tmp_path: Path) -> None:
    server = MemoryBackend()
    first = server.add(K1, (_entry("a.txt", b"a"),), managed=False)
    server.add(K2, (_entry("a.txt", b"a"), _entry("b.txt", b"b")), parents=(first.id,), managed=False)
    server.add(VersionKey(P, "ds", "2.0.0"), status="in_progress", managed=False)
    assert resolve_targets(server, [P]) == [DatasetKey(P, "ds")]  # type: ignore[arg-type]
    assert resolve_targets(server, [first.id]) == [DatasetKey(P, "ds")]  # type: ignore[arg-type]
    (item,) = gather(server, [DatasetKey(P, "ds")], tmp_path)  # type: ignore[arg-type]
    assert [v.key.version for v in item.versions] == ["1.0.0", "1.1.0"]
    assert [d.key.version for d in item.drafts] == ["2.0.0"]
    text = render_manifest(item, "test")
    assert text.index("1.0.0") < text.index("1.1.0") and first.id in text
    assert "a draft" in item.notes()[0]


def test_import_refuses_what_the_server_does_not_hold() -> None:
    from reconciler.diagnostics import ReconcileError

    with pytest.raises(ReconcileError, match="nothing to import for 'nope'"):
        resolve_targets(MemoryBackend(), ["nope"])  # type: ignore[arg-type]


def test_the_fake_and_a_fresh_plan_agree_on_an_empty_server() -> None:
    desired = _desired(VersionSpec(K1))
    contents = compute_contents(desired, {K1: SourceFiles(files=(_entry("a.txt", b"a"),))})
    assert compute_plan(desired, contents, MemoryBackend().observed()).actions == \
        compute_plan(desired, contents, ObservedState()).actions


def test_only_a_finalized_versions_recorded_digest_proves_its_content() -> None:
    from reconciler.model import ObservedVersion
    from reconciler.plan.observed import live_content, proves_content

    content = Content({"a.txt": _entry("a.txt", b"a")})
    final = ObservedVersion(K1, "x", "completed", content_digest=content.digest())
    assert proves_content(final, content) and live_content(final, content) is content
    for unproven in (ObservedVersion(K1, "x", "in_progress", content_digest=content.digest()),  # a draft
                     ObservedVersion(K1, "x", "completed"),  # made by the SDK: nothing recorded
                     ObservedVersion(K1, "x", "completed", content_digest="0" * 64)):
        assert not proves_content(unproven, content) and live_content(unproven, content) is None
    read = ObservedVersion(K1, "x", "completed", files=(_entry("b.txt", b"b"),), links=())
    assert live_content(read, content) == Content({"b.txt": _entry("b.txt", b"b")})
