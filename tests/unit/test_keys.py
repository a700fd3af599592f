"""``DatasetKey.parse`` and ``VersionKey.parse``: the one reading of ``project/name`` and ``project/name@version``."""

from __future__ import annotations

import pytest

from reconciler.model import DatasetKey, VersionKey


@pytest.mark.parametrize(("text", "expected"), [
    ("p/n@1.0.0", VersionKey("p", "n", "1.0.0")),
    ("team/vision/Road signs@2024.06.01", VersionKey("team/vision", "Road signs", "2024.06.01")),
    ("p/n@a@v2", VersionKey("p", "n@a", "v2")),  # the version follows the last @
])
def test_version_key_parse(text: str, expected: VersionKey) -> None:
    assert VersionKey.parse(text) == expected
    assert str(VersionKey.parse(str(expected))) == str(expected)


def test_a_bare_version_belongs_to_the_given_dataset() -> None:
    own = DatasetKey("p", "n")
    assert VersionKey.parse("1.1.0", dataset=own) == VersionKey("p", "n", "1.1.0")
    assert VersionKey.parse("q/m@1.0.0", dataset=own) == VersionKey("q", "m", "1.0.0")


@pytest.mark.parametrize("text", ["", "1.0.0", "n@1.0.0", "p/@1.0.0", "/n@1.0.0", "p/n@", "p/n"])
def test_version_key_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="PROJECT/NAME"):
        VersionKey.parse(text)


def test_dataset_key_parse() -> None:
    assert DatasetKey.parse("a/b/c") == DatasetKey("a/b", "c")
    for bad in ("c", "a/", "/c", ""):
        with pytest.raises(ValueError):
            DatasetKey.parse(bad)


@pytest.mark.parametrize(("arg", "dataset", "version"), [
    ("p/n", DatasetKey("p", "n"), None),
    ("team/vision/Road signs@2024.06.01", DatasetKey("team/vision", "Road signs"), "2024.06.01"),
    ("p/n@stable", DatasetKey("p", "n"), "stable"),
])
def test_show_targets_read_references_as_version_keys(arg: str, dataset: DatasetKey, version: str | None) -> None:
    from reconciler.show import parse_targets

    (target,) = parse_targets([arg], lambda paths: None)
    assert (target.dataset, target.version) == (dataset, version)


@pytest.mark.parametrize(("arg", "message"), [
    ("p/n@", "no version or alias after '@'"),
    ("n@1.0.0", "neither a manifest path nor"),
    ("@1.0.0", "neither a manifest path nor"),
])
def test_show_targets_refuse_broken_references(arg: str, message: str) -> None:
    from reconciler.diagnostics import ReconcileError
    from reconciler.show import parse_targets

    with pytest.raises(ReconcileError, match=message):
        parse_targets([arg], lambda paths: None)
