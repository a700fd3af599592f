"""The pure query helpers: projection, tag operators, ordering, paging."""

from __future__ import annotations

import pytest

from reconciler.localserver import query

TASK = {
    "id": "t1",
    "name": "ds",
    "runtime": {},
    "execution": {"artifacts": [{"key": "a", "uri": "u"}, {"key": "b"}]},
    "hyperparams": {"properties": {"version": {"value": "1.0.0"}}},
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (None, TASK),
        (["name"], {"name": "ds"}),
        (["id", "name"], {"id": "t1", "name": "ds"}),
        (["runtime.version"], {"runtime": {}}),
        (["missing", "missing.deeper"], {}),
        (["execution.artifacts.key"], {"execution": {"artifacts": [{"key": "a"}, {"key": "b"}]}}),
        (
            ["hyperparams.properties.version.value", "name"],
            {"name": "ds", "hyperparams": {"properties": {"version": {"value": "1.0.0"}}}},
        ),
        (["-execution", "-hyperparams"], {"id": "t1", "name": "ds", "runtime": {}}),
    ],
)
def test_projection(fields, expected):
    assert query.project(TASK, fields) == expected


def test_projection_does_not_share_structure():
    projected = query.project(TASK, ["execution.artifacts.key"])
    projected["execution"]["artifacts"][0]["key"] = "changed"
    assert TASK["execution"]["artifacts"][0]["key"] == "a"


@pytest.mark.parametrize(
    ("terms", "tags", "expected"),
    [
        (["a", "b"], ["b"], True),
        (["a", "b"], ["c"], False),
        (["__$all", "a", "b"], ["a"], False),
        (["__$all", "a", "b"], ["a", "b", "c"], True),
        (["__$and", "dataset", "__$not", "archived"], ["dataset"], True),
        (["__$and", "dataset", "__$not", "archived"], ["dataset", "archived"], False),
        (["__$all", "a", "__$any", "b", "c"], ["a", "c"], True),
        (["__$all", "a", "__$or", "b", "c"], ["b", "c"], False),
        (["-archived"], ["x"], True),
        (["-archived"], ["archived"], False),
        (["a", "-b"], ["a", "b"], False),
        ([], ["anything"], True),
        (None, [], True),
    ],
)
def test_tag_operators(terms, tags, expected):
    assert query.tags_match(terms, tags) is expected


def test_sort_and_page():
    docs = [
        {"id": str(i), "v": v, "n": {"k": k}}
        for i, (v, k) in enumerate([(2, "b"), (1, "z"), (2, "a"), (None, "c")])
    ]
    assert [d["id"] for d in query.sort_docs(docs, ["-v", "n.k"])] == ["2", "0", "1", "3"]
    assert [d["id"] for d in query.sort_docs(docs, ["v"])] == ["3", "1", "0", "2"]
    assert [d["id"] for d in query.page(docs, 1, 3)] == ["3"]
    assert query.page(docs, None, None) == docs


def test_name_regex_is_a_case_sensitive_search():
    assert query.regex_match(r"^p/\.datasets/n$", "p/.datasets/n")
    assert not query.regex_match(r"^p/\.datasets/n$", "p/xdatasets/n")
    assert query.regex_match("data", "my-dataset")
    assert not query.regex_match("Data", "my-dataset")
