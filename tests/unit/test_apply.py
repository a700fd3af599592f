"""Apply against an in-memory server that fails at step k: the next plan resumes and converges. Milliseconds."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply import ApplyFailed, ApplyOptions, apply_plan
from reconciler.clearml_backend import codec
from reconciler.clearml_backend.api import BackendError
from reconciler.clearml_backend.draft import Draft
from reconciler.clearml_backend.upload import UploadOptions
from reconciler.events import AliasKept, Event
from reconciler.model import (
    Content,
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
from reconciler.plan.contents import SourceFiles, compute_contents
from reconciler.plan.observed import fingerprint
from reconciler.plan.planner import compute_plan
from reconciler.render.events import text_line
from reconciler.statistics import StatisticsCache

P, N = "proj", "ds"


class Injected(BackendError):
    pass


@dataclass
class Stored:
    key: VersionKey
    id: str
    status: str = "created"
    parents: tuple[str, ...] = ()
    props: Properties = Properties()
    entries: dict[str, codec.StateEntry] = field(default_factory=dict)
    links: dict[str, codec.StateLink] = field(default_factory=dict)
    chunks: set[str] = field(default_factory=set)
    content_digest: str | None = None
    statistics_digest: str | None = None
    archived: bool = False
    applied: Properties | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)


class MemoryWriter:
    """The apply-facing interface of a server, in memory; ``fail_at`` makes the k-th write raise."""

    def __init__(self, fail_at: int | None = None):
        self.versions: dict[str, Stored] = {}
        self.fail_at = fail_at
        self.writes = 0

    def _write(self, what: str) -> None:
        if self.fail_at is not None and self.writes == self.fail_at:
            self.writes += 1
            raise Injected(f"injected failure at {what}")
        self.writes += 1

    # --- Writer protocol ---
    def create_draft(self, key: VersionKey, parent_ids: Sequence[str], storage: str | None) -> str:
        self._write("create")
        vid = f"v{len(self.versions)}"
        self.versions[vid] = Stored(key, vid, parents=tuple(parent_ids))
        return vid

    def open_draft(self, key: VersionKey, version_id: str, parent_ids: Sequence[str], storage: str | None
                   ) -> Draft:
        draft = Draft(key, version_id, f"mem://{version_id}", tuple(parent_ids))
        for parent_id in parent_ids:
            parent = self.versions[parent_id]
            draft.inherited.update(parent.entries)
            draft.inherited_links.update(parent.links)
        return draft

    def discard_chunks(self, version_id: str) -> int:
        stored = self.versions[version_id]
        n = len(stored.chunks)
        stored.chunks.clear()
        return n

    def upload_files(self, draft: Draft, files: Sequence[FileEntry], options: UploadOptions,
                     progress: Any = None) -> None:
        for i, f in enumerate(files):
            self._write(f"upload {f.path}")
            name = codec.chunk_name(len(draft.chunks) + i)
            self.versions[draft.id].chunks.add(name)
            draft.own[f.path] = codec.StateEntry(f.path, f.size, f.sha256, draft.id, name)
            draft.inherited.pop(f.path, None)
            draft.uploaded_files.append(f)

    def set_properties(self, key: VersionKey, version_id: str, before: Properties, after: Properties,
                       aliases: Collection[str] = ()) -> None:
        self._write("properties")
        v = self.versions[version_id]
        v.props = after
        self._write("applied")
        v.applied = after

    def set_json_artifacts(self, key: VersionKey, version_id: str, storage: str | None,
                           values: Mapping[str, Any], bookkeeping: Mapping[str, str]) -> None:
        self._write("artifacts")
        v = self.versions[version_id]
        v.artifacts.update(values)
        if "metadata" in values:
            v.props = replace(v.props, metadata=freeze_json(values["metadata"]))
        if "statistics_digest" in bookkeeping:
            v.statistics_digest = bookkeeping["statistics_digest"]

    def report_plots(self, version_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        self._write("plots")


    def finalize(self, draft: Draft, content_digest: str) -> None:
        self._write("finalize")
        v = self.versions[draft.id]
        for e in draft.own.values():
            assert e.chunk in v.chunks, f"{e.path} points at a chunk that is not stored"
        v.entries, v.links = draft.entries(), draft.links()
        v.content_digest, v.status = content_digest, "completed"

    def publish(self, key: VersionKey, version_id: str) -> None:
        self._write("publish")
        self.versions[version_id].status = "published"

    def archive(self, key: VersionKey, version_id: str) -> None:
        self._write("archive")
        self.versions[version_id].archived = True

    def restore(self, key: VersionKey, version_id: str, system_tags: Sequence[str] = ()) -> None:
        self._write("restore")
        self.versions[version_id].archived = False

    def version_files(self, version_id: str) -> dict[str, Any]:
        v = self.versions[version_id]
        return codec.state_document(v.id, list(v.entries.values()), list(v.links.values()), {}, {})

    def fetch_files(self, state: Mapping[str, Any], paths: Sequence[str], dest: Path) -> dict[str, Path]:
        raise AssertionError("every file is local in these tests")

    # --- what observation would see ---
    def observed(self) -> ObservedState:
        out = []
        for v in self.versions.values():
            final = v.status in ("completed", "published")
            files = tuple(sorted(FileEntry(e.path, e.size, e.sha256) for e in v.entries.values())) if final else None
            out.append(ObservedVersion(
                key=v.key, id=v.id, status=v.status, properties=v.props,
                parent_ids=v.parents, files=files, links=() if final else None,
                managed=True, archived=v.archived, content_digest=v.content_digest,
                statistics_digest=v.statistics_digest, applied=v.applied,
            ))
        state = ObservedState(tuple(sorted(out, key=lambda o: (o.key, o.id))))
        return ObservedState(state.versions, fingerprint(state))


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


def _assert_finalized_versions_are_exact(server: MemoryWriter, contents: Mapping[VersionKey, Content]) -> None:
    for v in server.versions.values():
        if v.status in ("completed", "published"):
            built = Content({p: FileEntry(e.path, e.size, e.sha256) for p, e in v.entries.items()})
            assert built.digest() == contents[v.key].digest() == v.content_digest


def _apply(server: MemoryWriter, desired: DesiredState, contents: Mapping[VersionKey, Content], tmp: Path) -> Any:
    observed = server.observed()
    plan = compute_plan(desired, contents, observed)
    options = ApplyOptions(workers=1, statistics_cache=StatisticsCache(tmp / "stats"))
    return plan, apply_plan(plan, server, observed, options, local_contents=contents)


def test_a_clean_apply_converges_and_replans_empty(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path, stats=True)
    server = MemoryWriter()
    _, result = _apply(server, desired, contents, tmp_path)
    assert len(result.created) == 3 and result.uploaded_files == 4
    _assert_finalized_versions_are_exact(server, contents)
    assert compute_plan(desired, contents, server.observed()).actions == ()


@pytest.mark.parametrize("stats", [False, True])
def test_a_failure_at_every_write_is_finished_by_the_next_apply(tmp_path: Path, stats: bool) -> None:
    desired, contents = _desired(tmp_path, stats=stats)
    total = MemoryWriter()
    _apply(total, desired, contents, tmp_path)
    assert total.writes > 10
    for k in range(total.writes):
        server = MemoryWriter(fail_at=k)
        with pytest.raises(ApplyFailed) as failed:
            _apply(server, desired, contents, tmp_path)
        assert "injected failure" in str(failed.value)
        _assert_finalized_versions_are_exact(server, contents)  # nothing finalized that is not exact
        server.fail_at = None
        _apply(server, desired, contents, tmp_path)
        _assert_finalized_versions_are_exact(server, contents)
        live = [v for v in server.versions.values() if not v.archived]
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
    server = MemoryWriter(fail_at=1)  # the first upload of ds@1.0.0
    with pytest.raises(ApplyFailed) as failed:
        _apply(server, both, contents, tmp_path)
    lines = [d.message for d in failed.value.diagnostics]
    assert "injected failure at upload a.txt" in lines[0]
    assert lines[1].startswith("not applied because a parent failed: proj/ds@1.1.0, proj/ds@1.2.0")
    assert lines[-1].startswith("apply incomplete: 1 version failed")
    finished = {v.key for v in server.versions.values() if v.status == "completed"}
    assert finished == {other_key}  # the independent dataset was applied


def test_the_plan_is_checked_against_what_was_built(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path)
    server = MemoryWriter()
    observed = server.observed()
    plan = compute_plan(desired, contents, observed)
    wrong = tuple(replace(a, content_digest="0" * 64) if type(a).__name__ == "Finalize" else a for a in plan.actions)
    with pytest.raises(ApplyFailed) as failed:
        apply_plan(replace(plan, actions=wrong), server, observed, ApplyOptions(workers=1))
    assert "does not match the plan" in str(failed.value)
    assert not any(v.status == "completed" for v in server.versions.values())


def _aliased(desired: DesiredState, holder: str, upto: int) -> DesiredState:
    """``desired``'s first ``upto`` versions with the alias ``production`` on ``holder`` (as the loader tags it)."""
    ds = desired.datasets[0]
    versions = tuple(replace(v, properties=v.properties.replace(tags=v.properties.tags | {"production"}))
                     if v.key.version == holder else v for v in ds.versions[:upto])
    return DesiredState((replace(ds, versions=versions, aliases=freeze_json({"production": holder})),))


def _holders(server: MemoryWriter) -> dict[str, str]:
    return {v.key.version: v.status for v in server.versions.values()
            if "production" in v.props.tags and not v.archived}


def test_an_alias_only_ever_names_a_final_version_whatever_write_fails(tmp_path: Path) -> None:
    desired, contents = _desired(tmp_path)
    before, after = _aliased(desired, "1.1.0", 2), _aliased(desired, "1.2.0", 3)
    plan = compute_plan(after, contents, ObservedState())
    kinds = [(type(a).__name__, a.version.version, getattr(a, "alias", False)) for a in plan.actions]
    assert kinds[-1] == ("SetProperties", "1.2.0", True)  # after 1.2.0 is finalized and published
    assert kinds.index(("Publish", "1.2.0", False)) < len(kinds) - 1
    start = MemoryWriter()
    _apply(start, before, contents, tmp_path)
    writes = start.writes
    _apply(start, after, contents, tmp_path)
    moving = start.writes - writes
    assert _holders(start) == {"1.2.0": "published"} and moving > 5
    for k in range(moving):
        server = MemoryWriter()
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
    server = MemoryWriter()
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
    server = MemoryWriter()
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
    by_key = {v.key: v for v in server.versions.values()}
    assert by_key[k1].status == "created"  # never finalized; its children were not started
    assert {k.version for k in by_key if k.name == N} == {"1.0.0"}
    stored = by_key[k1].artifacts["checks"]
    assert stored["format_version"] == 1 and stored["checks"][0]["status"] == "fail"
    assert sorted(stored["checks"][0]["offending"]) == ["a.txt", "b.txt"]
    assert by_key[other.key].status == "completed"  # the other dataset went on

    verdict.write_text("pass")
    observed = server.observed()
    plan = compute_plan(desired, contents, observed, checks=check_versions(desired, contents, [k1], workers=1))
    apply_plan(plan, server, observed, options, local_contents=contents)
    by_key = {v.key: v for v in server.versions.values()}
    assert by_key[k1].status == "completed" and by_key[k1].artifacts["checks"]["checks"][0]["status"] == "pass"
    assert first.builds  # (the plan without checks builds the same versions)
