"""Fixtures of the server tests: which live reference server (the real clearml-server), if any, this session
compares the embedded server with.

The reference server is used when ``RECONCILE_TEST_REFERENCE_API`` (with ``..._ACCESS_KEY``/``..._SECRET_KEY``)
is set, or when ``RECONCILE_TEST_SERVER=reference`` or ``--server=reference`` asks for it (then the
``CLEARML_API_HOST``/key variables, or the reference server's ``env.sh``). Without one, the differential
catalogue compares the embedded server with the recorded answers only.
"""

from __future__ import annotations

import pytest
from differential import Target, reference_target

_REFERENCE = pytest.StashKey["Target | None"]()


def live_reference(config: pytest.Config) -> Target | None:
    if _REFERENCE not in config.stash:
        requested = config.getoption("server", default=None) == "reference"
        config.stash[_REFERENCE] = reference_target(requested)
    return config.stash[_REFERENCE]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``catalogue_server``: "embedded" always, "reference" too when a live reference server is given."""
    if "catalogue_server" in metafunc.fixturenames:
        servers = ["embedded"] + (["reference"] if live_reference(metafunc.config) else [])
        metafunc.parametrize("catalogue_server", servers)


@pytest.fixture(scope="session")
def reference_server(pytestconfig: pytest.Config) -> Target | None:
    """The live reference server of this session, or None."""
    return live_reference(pytestconfig)
