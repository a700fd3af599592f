"""The order ``reconcile import`` writes versions in: parents first, then ClearML's order for the latest."""

from __future__ import annotations

import pytest
from clearml.utilities.version import Version

from reconciler.importer import parents_first, version_order
from reconciler.model import ObservedVersion, VersionKey


def test_versions_order_as_the_sdk_picks_the_latest() -> None:
    mixed = ["latest", "2024.06.01", "v2", "1.10", "1.9", "1.0.0", "2.1.0rc1", "nightly build 7"]
    ordered = sorted(mixed, key=version_order)
    assert ordered == ["latest", "nightly build 7", "1.0.0", "1.9", "1.10", "v2", "2.1.0rc1", "2024.06.01"]
    parsed = [v for v in ordered if Version.is_valid_version_string(v)]  # the SDK's own comparison agrees
    assert all(Version(a) < Version(b) for a, b in zip(parsed, parsed[1:], strict=False))


@pytest.mark.parametrize(("a", "b"), [("latest", "zzz"), ("1.0", "1.0.0")])
def test_unordered_or_equal_versions_go_by_their_last_update(a: str, b: str) -> None:
    assert version_order(a, "2026-01-02") > version_order(b, "2026-01-01")


def test_a_version_comes_after_its_parents_whatever_its_string() -> None:
    def v(version: str, vid: str, *parents: str) -> ObservedVersion:
        return ObservedVersion(VersionKey("p", "d", version), vid, "completed", parent_ids=parents)

    base, merge, other = v("2.0.0", "b"), v("1.0.0", "m", "b", "o"), v("1.5.0", "o")
    ordered = parents_first(sorted([base, merge, other], key=lambda x: version_order(x.key.version)))
    assert [x.id for x in ordered] == ["b", "o", "m"]
