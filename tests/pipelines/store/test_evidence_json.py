"""evidence_json serialises shared histograms once and must write exactly what dumps would."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.jsonable import STORED_CELL_LIMIT, capped_cells, dumps, evidence_json, plain_dumps

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6))
names = st.text(min_size=0, max_size=8)


@settings(max_examples=150, deadline=None)
@given(
    head=st.dictionaries(names.filter(lambda k: k != "histograms"), st.one_of(numbers, st.text(max_size=20)), max_size=4),
    columns=st.lists(names, min_size=1, max_size=3, unique=True),
    edges=st.lists(numbers, max_size=5),
)
def test_same_text_as_dumps_with_shared_histograms(head, columns, edges):
    shared = {column: {"edges": [*edges, np.float64(0.5)], "counts": [np.int64(3)]} for column in columns}
    texts: dict[int, str] = {}
    for _ in range(3):  # several rows showing the same histogram objects
        evidence = {**head, "histograms": dict(shared)}
        assert evidence_json(evidence, texts) == dumps(capped_cells(evidence))
        assert evidence_json(evidence, {}, text_keys=True) == dumps(capped_cells(evidence))


# What core.evidence builds, and what it must never write differently from dumps:
# str-keyed dicts of numbers (numpy's too, NaN and inf among them), text, None and lists.
leaves = st.one_of(
    numbers, st.text(max_size=10), st.none(), st.booleans(),
    numbers.map(np.float64), st.integers(-1000, 1000).map(np.int64), st.floats(width=32).map(np.float32),
)
plain = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(names, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=plain)
def test_plain_dumps_writes_what_dumps_writes(value):
    assert plain_dumps(value) == dumps(value)


def test_long_cells_are_cut_and_other_layouts_fall_back():
    long = "x" * (STORED_CELL_LIMIT + 5)
    texts: dict[int, str] = {}
    for evidence in (
        {"label": long, "histograms": {"a": {"edges": [1.0, long], "counts": [1]}}},
        {"histograms": {"a": {"edges": [], "counts": []}}, "label": "after"},  # histograms not last
        {"histograms": {}},
        {},
    ):
        assert evidence_json(evidence, texts) == dumps(capped_cells(evidence))


def test_values_orjson_refuses_are_written_by_json_the_same_way():
    import json

    deep: list = []
    for _ in range(300):  # past orjson's 255 levels
        deep = [deep]
    cases = [
        ({"big": 2**70, "x": 1.5}, {"big": 2**70, "x": 1.5}),
        ({"text": "lone \ud800 surrogate"}, {"text": "lone \ud800 surrogate"}),
        (deep, deep),
        ([np.float64(0.25), {1: "a"}, float("nan")], [0.25, {"1": "a"}, None]),
    ]
    for value, parsed in cases:
        text = plain_dumps(value)
        assert text == dumps(value)
        assert json.loads(text) == parsed
        assert ", " not in text and ": " not in text  # compact, as orjson writes
