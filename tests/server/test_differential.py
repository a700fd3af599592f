"""The differential catalogue (``differential.py``): the embedded server answers every call as the real
clearml-server did -- same HTTP status, result code and subcode, message, shape of ``data`` and the values a step
reads back.

By default the embedded server is compared with the recorded answers (``data/differential-reference.json``,
made by ``record_differential.py``). When the session is given a live reference server (see ``conftest.py``),
each case also runs there, and both its answers and the embedded server's are compared with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from differential import (
    CASES,
    Answer,
    Case,
    Client,
    Target,
    differences,
    load_recording,
    new_suffix,
    run_case,
)

from reconciler.localserver import LocalServer

pytestmark = pytest.mark.integration

MIN_CASES = 40
MIN_REFUSED = 15


@pytest.fixture(scope="module")
def recording() -> dict[str, list[Answer]]:
    return load_recording()


@pytest.fixture(scope="module")
def embedded_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with LocalServer(Path(tmp_path_factory.mktemp("differential"))) as server:
        client = Client(Target("embedded", server.api_url, server.access_key, server.secret_key, server.files_url))
        yield client
        client.close()


@pytest.fixture(scope="module")
def reference_client(reference_server: Target | None) -> Iterator[Client | None]:
    client = Client(reference_server) if reference_server else None
    yield client
    if client is not None:
        client.close()


@pytest.fixture
def suffix() -> str:
    """Fresh per test: a case may run twice on one server (against the recording, and against a live one)."""
    return new_suffix()


def test_the_catalogue_is_recorded_and_large_enough(recording):
    assert sorted(recording) == sorted(case.name for case in CASES), "re-run record_differential.py"
    refused = [case.name for case in CASES if recording[case.name][case.under_test].status != 200]
    assert len(CASES) >= MIN_CASES and len(refused) >= MIN_REFUSED, (len(CASES), len(refused))
    for case in CASES:
        assert len(recording[case.name]) == len(case.steps), f"{case.name}: re-run record_differential.py"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_catalogue(case: Case, catalogue_server: str, recording, embedded_client, reference_client, suffix):
    ours = run_case(embedded_client, case, suffix)
    if catalogue_server == "embedded":
        found = differences(recording[case.name], ours)
        assert not found, "the embedded server differs from the recorded reference:\n" + "\n".join(found)
        return
    assert reference_client is not None
    theirs = run_case(reference_client, case, suffix)
    stale = differences(recording[case.name], theirs)
    found = differences(theirs, ours)
    assert not found, "the embedded server differs from the live reference:\n" + "\n".join(found)
    assert not stale, "the live reference differs from the recording (re-record):\n" + "\n".join(stale)
