"""Which ClearML tasks read a dataset version: :meth:`ServerReader.tasks_using` against what the real SDK records
when a task calls ``Dataset.get``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reconciler.clearml_backend import Backend, load_server_config

from .helpers import Env

pytestmark = pytest.mark.integration


def connect(env: Env) -> Backend:
    cfg = load_server_config({**env.vars()})
    assert cfg is not None
    return Backend.connect(cfg)


def test_tasks_using_names_the_tasks_that_called_dataset_get(env: Env) -> None:
    made = env.sdk("""
        from clearml import Task
        ids = []
        for n in range(3):
            ds = Dataset.create(dataset_project=PROJECT, dataset_name='uses', dataset_version=f'1.0.{n}')
            ds.finalize()
            ids.append(ds.id)
        task = Task.init(project_name=PROJECT + '/training', task_name='train on uses', auto_connect_arg_parser=False,
                         auto_resource_monitoring=False, auto_connect_frameworks=False)
        Dataset.get(dataset_id=ids[0], alias='train')
        Dataset.get(dataset_id=ids[1])
        task.close()
        other = Task.init(project_name=PROJECT + '/eval', task_name='eval', auto_connect_arg_parser=False,
                          auto_resource_monitoring=False, auto_connect_frameworks=False, reuse_last_task_id=False)
        Dataset.get(dataset_id=ids[1], alias='eval')
        other.mark_completed()
        result = dict(ids=ids, train=task.id, eval=other.id)
    """)
    assert isinstance(made, dict)
    ids, train, other = made["ids"], made["train"], made["eval"]
    backend = connect(env)
    before = sum(backend.api.requests.values())
    uses = backend.reader.tasks_using([*ids, "0" * 32])
    assert sum(backend.api.requests.values()) - before == 2  # one tasks.get_all, one projects.get_all
    assert set(uses) == {ids[0], ids[1]}  # the third version and the unknown id were read by nobody
    (first,) = uses[ids[0]]
    assert (first.id, first.name, first.project) == (train, "train on uses", f"{env.project}/training")
    assert first.status in ("completed", "stopped", "closed")
    assert first.last_update is not None
    assert abs(first.last_update - datetime.now(timezone.utc)) < timedelta(minutes=10)
    assert {u.id: u.project for u in uses[ids[1]]} == {train: f"{env.project}/training", other: f"{env.project}/eval"}
    newest_first = [u.last_update for u in uses[ids[1]]]
    assert newest_first == sorted(newest_first, reverse=True)  # type: ignore[type-var]
    assert backend.reader.tasks_using([]) == {}
