"""Writing dataset versions to a ClearML server in the order the real server accepts, checking every write.

A new version goes: ``create`` (a draft, already marked as this tool's in the creating call) -> ``upload``
(zip chunks; every file's bytes hashed as they are zipped and compared with the plan) -> properties and
statistics (artifacts, hyper-parameters and UI plots, all while the draft is still editable) -> ``finalize``
(the ``state`` file list, ``runtime`` summary and lineage; every chunk checked on the server; then the status
change, read back) -> ``publish`` (read back).

A finalized version accepts only what the real clearml-server allows on it: tags and description through
``tasks.edit`` with ``force``; metadata and statistics through ``tasks.edit`` with ``force`` of the whole
``execution``/``hyperparams`` (artifact list and bookkeeping replaced together); UI plots only until it is
published. Every call's answer is checked (the envelope), so nothing fails in silence.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..diagnostics import ReconcileError
from ..gcpause import gc_paused
from ..model import (
    DRAFT_STATUSES,
    EDITABLE_STATUSES,
    FINAL_STATUSES,
    STEP_LEFT_STATUSES,
    Content,
    FileEntry,
    Properties,
    StoredFile,
    StoredObject,
    VersionKey,
    canonical_json,
    thaw_json,
)
from ..properties import changed_fields
from . import codec
from .api import ALREADY_EXISTS, AmbiguousWrite, ApiClient, ApiError, BackendError
from .draft import Draft
from .reader import ServerReader, remember_state, state_cache_file
from .storage import Stores
from .upload import Progress, UploadOptions, upload_files

if TYPE_CHECKING:
    from ..checks.results import VersionChecks
    from ..statistics import Statistics
    from .rehome import Rehomed


class ServerWriter:
    def __init__(self, api: ApiClient, reader: ServerReader, stores: Stores):
        self.api, self.reader, self.stores = api, reader, stores
        self._projects: dict[str, str] = {}
        self.state_cache: Path | None = None  # where finalized file lists are cached (set by the caller)

    # --- projects and drafts ------------------------------------------------------------------------------------

    def dataset_project(self, key: VersionKey) -> str:
        """The id of ``<project>/.datasets/<name>``, created (hidden, tagged ``dataset``) when missing."""
        full = codec.hidden_project(key.project, key.name)
        if full in self._projects:
            return self._projects[full]
        found = self._find_project(full)
        if found is None:
            try:
                found = str(self.api.call("projects.create", create=True, name=full, description="",
                                          system_tags=[codec.DATASET_TAG, codec.HIDDEN_TAG])["id"])
            except ApiError as err:
                if not err.is_(ALREADY_EXISTS):
                    raise
            except AmbiguousWrite:
                pass
            found = found or self._find_project(full)
            if found is None:
                raise BackendError(f"cannot create the project {full}")
        self._hide_parent(f"{key.project}/.datasets")
        self._projects[full] = found
        return found

    def _find_project(self, full: str) -> str | None:
        import re

        rows = self.api.call("projects.get_all", name=f"^{re.escape(full)}$", search_hidden=True,
                             only_fields=["id", "name", "system_tags"]).get("projects") or []
        exact = [r for r in rows if r.get("name") == full]
        return str(exact[0]["id"]) if exact else None

    def _hide_parent(self, full: str) -> None:
        import re

        rows = self.api.call("projects.get_all", name=f"^{re.escape(full)}$", search_hidden=True,
                             only_fields=["id", "name", "system_tags"]).get("projects") or []
        for row in rows:
            tags = list(row.get("system_tags") or [])
            if row.get("name") == full and codec.HIDDEN_TAG not in tags:
                self.api.call("projects.update", write=True, project=row["id"],
                              system_tags=sorted({*tags, codec.HIDDEN_TAG}))

    def create_draft(self, key: VersionKey, parent_ids: Sequence[str], storage: str | None) -> str:
        """A new draft version (``parent_ids`` in merge order), marked as this tool's in the same call that
        creates it; its id."""
        project_id = self.dataset_project(key)
        run_token = secrets.token_hex(8)
        book = codec.Bookkeeping(parent_ids=tuple(parent_ids), run_token=run_token)
        body: dict[str, Any] = dict(
            name=key.name, type=codec.TASK_TYPE, project=project_id,
            system_tags=[codec.DATASET_TAG, codec.MANAGED_TAG], comment="",
            hyperparams=codec.hyperparams(book, key.version),
            runtime={"version": key.version, "orig_dataset_name": key.name},
        )
        if storage:
            body["output_dest"] = storage
        try:
            version_id = str(self.api.call("tasks.create", create=True, **body)["id"])
        except AmbiguousWrite:
            version_id = self._find_created(project_id, key, run_token) or str(
                self.api.call("tasks.create", create=True, **body)["id"])
        # the SDK keeps the id in runtime too; tasks.create cannot know it yet
        self.api.call("tasks.edit", write=True, task=version_id, force=True,
                      runtime={"version": key.version, "orig_dataset_name": key.name,
                               "orig_dataset_id": version_id})
        return version_id

    def _find_created(self, project_id: str, key: VersionKey, run_token: str) -> str | None:
        rows = self.api.call("tasks.get_all", project=[project_id], search_hidden=True,
                             system_tags=[codec.MANAGED_TAG],
                             only_fields=["id", f"hyperparams.{codec.SECTION}"]).get("tasks") or []
        for row in rows:
            if codec.read_bookkeeping(row).run_token == run_token:
                return str(row["id"])
        return None

    def open_draft(self, key: VersionKey, version_id: str, parent_ids: Sequence[str], storage: str | None
                   ) -> Draft:
        """The draft ``version_id`` ready to take files: its inherited entries read from its parents' states,
        merged in order as the SDK's ``Dataset.create(parent_datasets=[...])`` does (a later parent's entry at
        the same path wins; their dependency graphs and chunk counts united; compressed sizes summed).

        ``storage``: where its chunks go; None: the draft's own output destination, else the file server.
        """
        if storage is None:
            storage = output_base(self.reader.task(version_id, ("id", "output")) or {}) or None
        base = storage or self.api.cfg.files_host
        draft = Draft(key, version_id, codec.storage_prefix(base, key, version_id), tuple(parent_ids))
        with gc_paused():  # an entry per inherited file
            for parent_id in parent_ids:
                self._inherit(draft, parent_id)
        return draft

    def _inherit(self, draft: Draft, parent_id: str) -> None:
        """Let ``draft`` take the files and links of its parent ``parent_id`` (see :meth:`open_draft`)."""
        key = draft.key
        parent = self.reader.task(parent_id, (*codec.TASK_FIELDS, "runtime"))
        if parent is None:
            raise BackendError(f"the parent version {parent_id} of {key} is not on the server")
        state = self.reader.read_state(parent, self.state_cache)
        if state is None:
            raise BackendError(f"the parent version {parent_id} of {key} has no file list")
        entries, links, graph = codec.read_state(state)
        draft.parent_graph.update(graph or {parent_id: []})
        draft.inherit(entries, ((s.link, s.owner_id) for s in links))
        lookup = state.get("dependency_chunk_lookup")
        if isinstance(lookup, Mapping):
            draft.parent_chunks.update({str(k): int(v) for k, v in lookup.items() if isinstance(v, int)})
        else:
            draft.parent_chunks[parent_id] = _count_chunks(parent)
        compressed = (parent.get("runtime") or {}).get("ds_total_size_compressed")
        draft.parent_compressed += compressed if isinstance(compressed, int) else 0

    def discard_chunks(self, version_id: str) -> int:
        """Remove every data chunk and file list an interrupted run left on a draft; how many there were.

        A draft an agent's step left ``failed`` or ``stopped`` (or still ``queued``) is made editable again first.
        """
        task = self.reader.full_task(version_id)
        if str(task.get("status")) in STEP_LEFT_STATUSES:
            self.reopen_draft(version_id, str(task.get("status")))
            task = self.reader.full_task(version_id)
        stale = [k for k in codec.artifacts(task) if codec.chunk_index(k) is not None or k == codec.STATE_KEY]
        if stale:
            self.api.call("tasks.delete_artifacts", write=True, task=version_id, force=True,
                          artifacts=[{"key": k, "mode": "output"} for k in stale])
            for key in stale:
                uri = codec.artifact_uri(task, key)
                if uri:
                    self.stores.delete(uri)  # best effort: an orphan object costs space only
        return len(stale)

    def reopen_draft(self, version_id: str, status: str) -> None:
        """A draft left by a step (queued, failed, stopped) back to ``in_progress``, where it takes writes."""
        if status == "queued":
            self._transition("tasks.dequeue", version_id, status_not("queued"), task=version_id,
                             status_reason="resumed by reconcile apply")
        self._transition("tasks.started", version_id, status_in("in_progress"), task=version_id, force=True,
                         status_reason="resumed by reconcile apply")

    # --- content -----------------------------------------------------------------------------------------------

    def upload_files(self, draft: Draft, files: Sequence[FileEntry], options: UploadOptions,
                     progress: Progress | None = None) -> None:
        """Zip ``files`` into chunks and store them on the draft (:func:`.upload.upload_files`)."""
        upload_files(self.api, self.stores, draft, files, options, progress)

    # --- properties --------------------------------------------------------------------------------------------

    def set_properties(self, key: VersionKey, version_id: str, before: Properties, after: Properties,
                       aliases: Collection[str] = ()) -> None:
        """Write the properties that differ (only those calls), record what was applied, and read it back.

        Metadata are artifacts: each one that differs is stored again; empty metadata and a named metadata the
        manifests no longer give are removed (``get_metadata()`` then finds none).
        """
        edits: dict[str, Any] = {}
        store: dict[str, Any] = {}
        drop: list[str] = []
        for name in changed_fields(before, after):
            if name == "tags":
                edits["tags"] = sorted(after.tags)
            elif name == "description":
                edits["comment"] = after.description
            elif name == "metadata":
                if after.metadata:
                    store[codec.METADATA_KEY] = thaw_json(after.metadata)
                else:
                    drop.append(codec.METADATA_KEY)
            elif name == "metadata_artifacts":
                store.update({k: thaw_json(v) for k, v in after.metadata_artifacts.items()
                              if canonical_json(v) != canonical_json(before.metadata_artifacts.get(k))})
                drop += [k for k in before.metadata_artifacts if k not in after.metadata_artifacts]
            elif name == "splits":
                self.set_bookkeeping(version_id, {"splits": after.splits_json if after.splits else ""})
            else:  # pragma: no cover - a new property needs its write here
                raise BackendError(f"no writer for the property {name!r}")
        if store or drop:
            self.set_json_artifacts(key, version_id, None, store, {"metadata": after.metadata_json}, remove=drop)
        if isinstance(store.get(codec.CARD_KEY), dict):
            self.report_card(key, version_id, store[codec.CARD_KEY])
        if edits:
            self.api.call("tasks.edit", write=True, task=version_id, force=True, **edits)
        extra = {}
        if "tags" in edits or aliases:  # the tags that are aliases (``aliases``: those this change adds)
            recorded = codec.read_bookkeeping(self.reader.full_task(version_id)).aliases
            now = sorted((set(recorded) & after.tags) | set(aliases))
            if now != sorted(recorded):
                extra["aliases"] = codec.aliases_json(now)
        self.record_applied(version_id, after, extra)

    def set_json_artifacts(self, key: VersionKey, version_id: str, storage: str | None,
                           values: Mapping[str, Any], bookkeeping: Mapping[str, str], *,
                           remove: Sequence[str] = ()) -> None:
        """Store ``values`` (artifact key -> JSON value) as dict artifacts, drop the artifacts ``remove`` names,
        and update bookkeeping keys.

        A draft takes ``add_or_update_artifacts``, ``delete_artifacts`` and ``edit_hyper_params``; a finalized
        version only a forced ``tasks.edit`` of the whole ``execution`` and ``hyperparams`` (read, changed,
        written back).
        """
        task = self.reader.full_task(version_id)
        prefix = codec.storage_prefix(storage or output_base(task) or self.api.cfg.files_host, key, version_id)
        entries = []
        for art_key, value in values.items():
            raw = codec.json_bytes(value)
            digest = hashlib.sha256(raw).hexdigest()
            uri = f"{prefix}/{art_key}/{art_key}.{digest[:12]}.json"
            self._store_bytes(uri, raw)
            entries.append(codec.artifact(art_key, kind="dict", uri=uri, size=len(raw), sha256=digest,
                                          stamp=int(time.time()), preview=raw[:4096].decode(errors="replace"),
                                          content_type="application/json"))
        remove = [k for k in remove if k in codec.artifacts(task)]
        if entries or remove:
            self._write_artifacts(task, entries, remove)
        if bookkeeping:
            self.set_bookkeeping(version_id, bookkeeping, task=None if (entries or remove) else task)
        after = self.reader.full_task(version_id)
        stored = codec.artifacts(after)
        for entry in entries:
            got = stored.get(entry["key"])
            if got is None or got.get("uri") != entry["uri"]:
                raise BackendError(f"the server did not keep the {entry['key']} of version {version_id}")
        if any(k in stored for k in remove):
            raise BackendError(f"the server kept the removed artifacts {', '.join(sorted(remove))} of version "
                               f"{version_id}")

    def _write_artifacts(self, task: Mapping[str, Any], entries: Sequence[Mapping[str, Any]],
                         remove: Sequence[str] = ()) -> None:
        """Add, replace or remove artifacts: the artifact calls on a draft, a forced edit of ``execution`` after."""
        version_id = str(task["id"])
        if str(task.get("status")) in EDITABLE_STATUSES:
            if entries:
                self.api.call("tasks.add_or_update_artifacts", write=True, task=version_id,
                              artifacts=list(entries), force=True)
            if remove:
                self.api.call("tasks.delete_artifacts", write=True, task=version_id, force=True,
                              artifacts=[{"key": k, "mode": "output"} for k in remove])
            return
        keys = {e["key"] for e in entries} | set(remove)
        execution = dict(task.get("execution") or {})
        execution["artifacts"] = [a for a in execution.get("artifacts") or [] if a.get("key") not in keys]
        execution["artifacts"] += list(entries)
        self.api.call("tasks.edit", write=True, task=version_id, force=True, execution=execution)

    def record_applied(self, version_id: str, properties: Properties, extra: Mapping[str, str] | None = None
                       ) -> None:
        """Record what this run wrote (later differences are drift), with ``extra`` bookkeeping, and check the
        server shows it."""
        self.set_bookkeeping(version_id, {"applied": codec.applied_json(properties), **(extra or {})})
        task = self.reader.task(version_id, ("id", "tags", "comment"))
        if task is None or frozenset(task.get("tags") or ()) != properties.tags or (
                str(task.get("comment") or "") != properties.description):
            raise BackendError(f"the server did not keep the tags or description of version {version_id}")

    def set_bookkeeping(self, version_id: str, values: Mapping[str, str], *,
                        task: Mapping[str, Any] | None = None) -> None:
        """Set keys of the ``Reconciler`` section, and read them back.

        A draft takes ``edit_hyper_params``; a finalized version only a forced ``tasks.edit`` of the whole
        ``hyperparams`` (read, changed, written back).
        """
        task = task or self.reader.full_task(version_id)
        if str(task.get("status")) in EDITABLE_STATUSES:
            self.api.call("tasks.edit_hyper_params", write=True, task=version_id, force=True,
                          replace_hyperparams="none",
                          hyperparams=[{"section": codec.SECTION, "name": k, "value": v, "type": "str"}
                                       for k, v in values.items()])
        else:
            params = {s: dict(v) for s, v in (task.get("hyperparams") or {}).items()}
            section = params.setdefault(codec.SECTION, {})
            for k, v in values.items():
                section[k] = {"section": codec.SECTION, "name": k, "value": v, "type": "str"}
            self.api.call("tasks.edit", write=True, task=version_id, force=True, hyperparams=params)
        kept = codec.section_values(self.reader.full_task(version_id))
        for k, v in values.items():
            if kept.get(k, "") != v:
                raise BackendError(f"the server did not keep {codec.SECTION}.{k} of version {version_id}")

    def report_card(self, key: VersionKey, version_id: str, card: Mapping[str, Any]) -> None:
        """The card's page as a debug sample, where the UI shows a dataset version's preview; only while the
        version is a draft (the server takes no new events of a finalized one: the ``card`` artifact is then the
        card)."""
        task = self.reader.full_task(version_id)
        if str(task.get("status")) not in EDITABLE_STATUSES:
            return
        raw = codec.card_html(card)
        prefix = codec.storage_prefix(output_base(task) or self.api.cfg.files_host, key, version_id)
        uri = f"{prefix}/{codec.CARD_KEY}/card.{hashlib.sha256(raw).hexdigest()[:12]}.html"
        self._store_bytes(uri, raw)
        metric, variant = codec.CARD_SAMPLE
        event = codec.debug_sample_event(version_id, metric, variant, uri, int(time.time() * 1000))
        data = self.api.call_lines("events.add_batch", [event])
        if int(data.get("errors") or 0) or int(data.get("added") or 0) != 1:
            raise BackendError(f"the server did not keep the card page of version {version_id}")

    def set_statistics(self, key: VersionKey, version_id: str, stats: Statistics, digest: str, *,
                       plots: bool) -> None:
        """Store ``stats`` (the ``statistics`` artifact) as describing ``digest`` (recorded with them); with
        ``plots`` also as the version's tables and histograms in the UI (only until it is published)."""
        from ..statistics import statistics_to_json, ui_histograms, ui_tables

        if plots:
            stamp = int(time.time() * 1000)
            events = [codec.table_event(version_id, t.title, t.series, t.rows, stamp) for t in ui_tables(stats)]
            events += [codec.histogram_event(version_id, h.title, h.series, h.labels, h.values, h.xaxis, h.yaxis,
                                             stamp) for h in ui_histograms(stats)]
            self.report_plots(version_id, events)
        self.set_json_artifacts(key, version_id, None, {codec.STATISTICS_KEY: statistics_to_json(stats)},
                                {"statistics_digest": digest})

    def set_checks(self, key: VersionKey, version_id: str, checks: VersionChecks) -> None:
        """Store the results of the version's checks: the ``checks`` artifact and a table in the UI."""
        from ..checks.results import checks_to_json, ui_rows

        event = codec.table_event(version_id, "Checks", "results", ui_rows(checks), int(time.time() * 1000))
        self.report_plots(version_id, [event])
        self.set_json_artifacts(key, version_id, None, {codec.CHECKS_KEY: checks_to_json(checks)}, {})

    def report_plots(self, version_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        data = self.api.call_lines("events.add_batch", list(events))
        if int(data.get("errors") or 0) or int(data.get("added") or 0) != len(events):
            raise BackendError(f"the server kept {data.get('added')} of {len(events)} statistics plots of "
                               f"version {version_id}")

    def _store_bytes(self, uri: str, raw: bytes) -> None:
        self.stores.upload_bytes(uri, raw)

    # --- finalize, publish, archive ------------------------------------------------------------------------------

    def finalize(self, draft: Draft, content_digest: str) -> None:
        """Write the file list and summary, check every chunk on the server, then complete the version."""
        task = self.reader.full_task(draft.id)
        stored = codec.artifacts(task)
        mine = {c.name: c for c in draft.chunks}
        stale = [k for k in stored if codec.chunk_index(k) is not None and k not in mine]
        if stale:
            self.api.call("tasks.delete_artifacts", write=True, task=draft.id, force=True,
                          artifacts=[{"key": k, "mode": "output"} for k in stale])
        for chunk in draft.chunks:
            art = stored.get(chunk.name)
            if art is None or art.get("uri") != chunk.uri or art.get("hash") != chunk.sha256:
                raise BackendError(f"chunk {chunk.name} of {draft.key} is not registered on the server as uploaded")
            size = self.stores.size(chunk.uri)
            if size is None:
                raise BackendError(f"chunk {chunk.name} of {draft.key} is missing from storage ({chunk.uri})")
            if size >= 0 and size != chunk.size:
                raise BackendError(f"chunk {chunk.name} of {draft.key} is {size} bytes in storage, "
                                   f"{chunk.size} were uploaded")
        with gc_paused():  # a line per file
            entries, links = draft.entries(), draft.links()
            for e in entries.values():
                if e.owner_id == draft.id and e.chunk not in mine:
                    raise BackendError(f"{e.path} of {draft.key} points at chunk {e.chunk}, which this run did "
                                       "not store")
            used = {e.owner_id for e in entries.values()} | {s.owner_id for s in links.values()}
            graph = codec.lineage_graph(draft.id, draft.parent_ids, draft.parent_graph, used)
            chunk_counts = {k: v for k, v in draft.parent_chunks.items() if k in graph}
            chunk_counts[draft.id] = len(draft.chunks)
            raw = codec.state_json(draft.id, list(entries.values()), list(links.values()), graph, chunk_counts)
        digest = hashlib.sha256(raw).hexdigest()
        uri = f"{draft.prefix}/{codec.STATE_KEY}/{codec.STATE_KEY}.json"
        self._store_bytes(uri, raw)
        preview = (f"Dataset state\nFiles added/modified: {draft.changes.added + draft.changes.modified}\n"
                   f"Current dependency graph: {json.dumps(graph, indent=2, sort_keys=True)}\n")
        self.api.call("tasks.add_or_update_artifacts", write=True, task=draft.id, force=True, artifacts=[
            codec.artifact(codec.STATE_KEY, kind="dict", uri=uri, size=len(raw), sha256=digest,
                           stamp=int(time.time()), preview=preview, content_type="application/json",
                           display=draft.changes.display())])
        total = sum(e.size for e in entries.values()) + sum(s.link.size or 0 for s in links.values())
        compressed = draft.parent_compressed + sum(c.size for c in draft.chunks)
        self.api.call(
            "tasks.edit", write=True, task=draft.id, force=True,
            runtime=codec.runtime(draft.key.name, draft.key.version, draft.id, file_count=len(entries),
                                  link_count=len(links), total_size=total, compressed=compressed,
                                  changes=draft.changes),
            configuration=self.struct_lineage(draft, graph, {
                "status": "completed", "last_update": int(time.time()), "job_size": total, "name": draft.key.name,
                "version": draft.key.version}),
        )
        self.set_bookkeeping(draft.id, {"content_digest": content_digest, "parent_id": ",".join(draft.parent_ids)})
        check = self.reader.full_task(draft.id)
        if codec.artifact_uri(check, codec.STATE_KEY) != uri:
            raise BackendError(f"the server did not keep the file list of {draft.key}")
        if codec.read_bookkeeping(check).content_digest != content_digest:
            raise BackendError(f"the server did not keep the content digest of {draft.key}")
        if (check.get("runtime") or {}).get("version") != draft.key.version:
            raise BackendError(f"the server did not keep the version string of {draft.key}")
        status = str(check.get("status"))
        if status == "created":
            self._transition("tasks.started", draft.id, status_in("in_progress", *FINAL_STATUSES),
                             task=draft.id)
        if status in EDITABLE_STATUSES:
            self._transition("tasks.completed", draft.id, status_in(*FINAL_STATUSES), task=draft.id,
                             status_reason="completed", publish=False)
        self.expect_status(draft.id, FINAL_STATUSES, f"finalizing {draft.key}")
        if self.state_cache is not None:  # the next version on top of this one reads it from here
            with contextlib.suppress(OSError):
                remember_state(state_cache_file(self.state_cache, draft.id, digest), raw)

    def _transition(self, endpoint: str, version_id: str, reached: Callable[[Mapping[str, Any] | None], bool],
                    **body: Any) -> None:
        transition(self.api, self.reader, endpoint, version_id, reached, **body)

    def struct_lineage(self, draft: Draft, graph: Mapping[str, Sequence[str]], own: dict[str, Any]
                       ) -> dict[str, Any]:
        """The ``Dataset Struct`` of a draft, as the SDK's ``_report_dataset_struct`` builds it: the pruned
        ``graph``, every parent named there as a node, and each node's parents taken from its own struct too,
        transitively, so that the whole ancestry is there (a merge with no files of its own included: the SDK
        2.x finds where each file's bytes are through it). One batched read per generation of ancestors."""
        lineage = {k: list(v) for k, v in graph.items()}
        for parents in graph.values():
            for p in parents:
                lineage.setdefault(p, [])
        nodes: dict[str, dict[str, Any]] = {draft.id: own}
        pending = [k for k in lineage if k != draft.id]
        while pending:
            rows = self.reader.tasks(pending, ("id", "name", "status", "last_update", "runtime",
                                               f"configuration.{codec.STRUCT_CONFIG}"))
            found = {str(r.get("id")): r for r in rows}
            discovered: list[str] = []
            for vid in pending:
                row = found.get(vid)
                if row is None:
                    continue
                nodes[vid] = codec.struct_node(row)
                for p in codec.struct_parents((row.get("configuration") or {}).get(codec.STRUCT_CONFIG), vid):
                    if p not in lineage:
                        lineage[p] = []
                        discovered.append(p)
                    if p not in lineage[vid]:
                        lineage[vid].append(p)
            pending = discovered
        return codec.dataset_struct(lineage, nodes)

    def expect_status(self, version_id: str, allowed: frozenset[str] | set[str], what: str) -> str:
        row = self.reader.task(version_id, ("id", "status"))
        status = str((row or {}).get("status"))
        if status not in allowed:
            raise BackendError(f"{what}: the version is {status} on the server afterwards")
        return status

    def publish(self, key: VersionKey, version_id: str) -> None:
        status = self.expect_status(version_id, FINAL_STATUSES, f"publishing {key}")
        if status != "published":
            self._transition("tasks.publish", version_id, status_in("published"), task=version_id)
        self.expect_status(version_id, {"published"}, f"publishing {key}")

    def archive(self, key: VersionKey, version_id: str) -> None:
        """Archive a version this tool prunes (recorded, so that restoring it later is no drift)."""
        self.set_bookkeeping(version_id, {"pruned": "1"})
        self._transition("tasks.archive", version_id, _archived(True), tasks=[version_id])
        row = self.reader.task(version_id, ("id", "system_tags"))
        if codec.ARCHIVED_TAG not in set((row or {}).get("system_tags") or []):
            raise BackendError(f"archiving {key}: the server did not archive it")

    def expire(self, key: VersionKey, version_id: str, at: str) -> None:
        """Archive a version its retention policy lets go, recording ``at`` first (its grace period starts
        then). Idempotent: an interrupted run archives again with a later time."""
        self.set_bookkeeping(version_id, {codec.EXPIRED_AT: at})
        self.archive(key, version_id)

    def delete_version(self, key: VersionKey, version_id: str, objects: Sequence[StoredObject], *,
                       whole: bool = True) -> None:
        """Delete stored ``objects`` of an archived version (each checked gone afterwards); with ``whole`` every
        object it lists and then its task, else only ``objects``, recorded as freed on the task.

        Objects go first, the task (or the record) last: an interrupted run leaves the archived task listing
        what is left, and the next plan deletes it again (an object already gone counts as deleted). Objects
        still there after the delete are an error that names them, and the task is then left as it is.
        """
        task = self.reader.task(version_id, ("id", "system_tags", "execution.artifacts",
                                             f"hyperparams.{codec.SECTION}"))
        if task is None:
            return  # an interrupted run deleted it already
        if codec.ARCHIVED_TAG not in set(task.get("system_tags") or []):
            raise BackendError(f"deleting {key}: version {version_id} is not archived; only archived versions "
                               "are deleted")
        listed = codec.stored_objects(task) if whole else ()
        uris = sorted({o.uri for o in objects} | {o.uri for o in listed})
        left = self.stores.delete_all(uris)
        if left:
            raise BackendError(f"deleting {key}: {len(left)} stored objects are still there after the delete: "
                               + ", ".join(left))
        if not whole:
            freed = sorted(codec.freed_keys(task) | {o.key for o in objects})
            self.set_bookkeeping(version_id, {codec.FREED: ",".join(freed)})
            return
        self.api.call("tasks.delete", write=True, task=version_id, force=True)
        if self.reader.task(version_id, ("id",)) is not None:
            raise BackendError(f"deleting {key}: the server still has version {version_id} after the delete")

    def rehome(self, key: VersionKey, version_id: str, rewrites: Sequence[tuple[VersionKey, str]],
               group: Sequence[str], *, workers: int = 4) -> Rehomed:
        """Copy what ``version_id`` inherits into chunks of its own and make ``rewrites`` read it there (see
        :mod:`.rehome`)."""
        from .rehome import rehome_version

        return rehome_version(self, key, version_id, rewrites, group, workers=workers)

    def restore(self, key: VersionKey, version_id: str, system_tags: Sequence[str] = ()) -> None:
        """Unarchive a version (when archived) and give it back ``system_tags``; read back."""
        row = self.reader.task(version_id, ("id", "system_tags"))
        if codec.ARCHIVED_TAG in set((row or {}).get("system_tags") or []):
            self._transition("tasks.unarchive_many", version_id, _archived(False), ids=[version_id])
            row = self.reader.task(version_id, ("id", "system_tags"))
        have = list((row or {}).get("system_tags") or [])
        if any(t not in have for t in system_tags):
            self.api.call("tasks.edit", write=True, task=version_id, force=True,
                          system_tags=have + [t for t in system_tags if t not in have])
            row = self.reader.task(version_id, ("id", "system_tags"))
        now = set((row or {}).get("system_tags") or [])
        if codec.ARCHIVED_TAG in now or not now.issuperset(system_tags):
            raise BackendError(f"restoring {key}: the server did not unarchive it or give back its system tags")
        if codec.read_bookkeeping(self.reader.full_task(version_id)).pruned:
            self.set_bookkeeping(version_id, {"pruned": ""})

    def version_content(self, version_id: str) -> tuple[Content, tuple[StoredFile, ...]]:
        """The content of a finalized version and where each of its files' bytes are."""
        task = self.reader.task(version_id)
        state = self.reader.read_state(task, self.state_cache) if task else None
        if state is None:
            raise BackendError(f"version {version_id} has no file list on the server")
        entries, _, _ = codec.read_state(state)
        return codec.state_content(state), tuple(sorted(codec.stored_file(e, version_id) for e in entries))

    def fetch_files(self, files: Sequence[StoredFile], dest: Path) -> dict[str, Path]:
        """Extract ``files`` (from whichever versions' chunks hold them) under ``dest``; path -> local file."""
        return self.reader.fetch(files, dest)

    def check_writable(self, key: VersionKey, version_id: str) -> None:
        """This machine can write where the version's data goes (a bucket needs credentials here too)."""
        base = self.reader.output_destination(version_id)
        if not base or self.stores.on_file_server(base.rstrip("/") + "/"):
            return
        probe = f"{codec.storage_prefix(base, key, version_id)}/.reconcile-probe"
        with tempfile.NamedTemporaryFile(prefix="reconcile-probe-") as tmp:
            tmp.write(b"probe")
            tmp.flush()
            try:
                self.stores.upload(probe, Path(tmp.name), 5)
            except ReconcileError as err:
                raise ReconcileError(f"this agent cannot write to {base} ({err}); give it credentials for that "
                                     "storage (sdk.aws.s3 in its clearml.conf, or the AWS_* variables)") from None
        self.stores.delete(probe)

    def delete_draft(self, version_id: str) -> None:
        task = self.reader.full_task(version_id)
        if task.get("status") not in DRAFT_STATUSES:
            raise BackendError(f"version {version_id} is {task.get('status')}: only drafts are discarded")
        for art in codec.artifacts(task).values():
            uri = art.get("uri")
            if uri:
                self.stores.delete(str(uri))
        self._transition("tasks.delete", version_id, lambda row: row is None, task=version_id, force=True)
        if self.reader.task(version_id, ("id",)) is not None:
            raise BackendError(f"discarding draft {version_id}: it is still on the server afterwards")


def transition(api: ApiClient, reader: ServerReader, endpoint: str, version_id: str,
               reached: Callable[[Mapping[str, Any] | None], bool], **body: Any) -> None:
    """A state change (status, archive, delete). When the server refuses it, the task's state is read back: a
    refusal because the change already happened (a retry after the first answer was lost) is success."""
    try:
        api.call(endpoint, write=True, **body)
    except ApiError:
        if not reached(reader.task(version_id, ("id", "status", "system_tags"))):
            raise


def status_in(*statuses: str) -> Callable[[Mapping[str, Any] | None], bool]:
    return lambda row: row is not None and str(row.get("status")) in statuses


def status_not(status: str) -> Callable[[Mapping[str, Any] | None], bool]:
    return lambda row: row is not None and str(row.get("status")) != status


def _archived(archived: bool) -> Callable[[Mapping[str, Any] | None], bool]:
    return lambda row: row is not None and (codec.ARCHIVED_TAG in set(row.get("system_tags") or ())) == archived


def output_base(task: Mapping[str, Any]) -> str:
    return str((task.get("output") or {}).get("destination") or "")


def _count_chunks(task: Mapping[str, Any]) -> int:
    return sum(1 for k in codec.artifacts(task) if codec.chunk_index(k) is not None)
