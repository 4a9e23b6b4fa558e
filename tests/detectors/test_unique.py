"""unique_values must give numpy.unique's answer on every label array; isin_values numpy.isin's;
text_values numpy's text conversion; rows_of_each what comparing every row with each value gives."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonguard.detectors import _unique
from poisonguard.detectors._unique import distinct_objects, isin_values, rows_of_each, text_values, unique_values

labels = st.lists(st.one_of(st.text(max_size=3), st.sampled_from(["a", "b", "setosa"])), max_size=40)


@settings(max_examples=200, deadline=None)
@given(labels, st.booleans(), st.booleans())
def test_matches_numpy_unique_on_text_labels(values, inverse, counts):
    array = np.asarray(values, dtype=object)
    expected = np.unique(array, return_inverse=inverse, return_counts=counts)
    got = unique_values(array, return_inverse=inverse, return_counts=counts)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert mine.tolist() == theirs.tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, 3), max_size=30))
def test_matches_numpy_unique_on_integer_labels_held_as_objects(values):
    array = np.asarray(values, dtype=object)
    got, inverse, counts = unique_values(array, return_inverse=True, return_counts=True)
    expected, expected_inverse, expected_counts = np.unique(array, return_inverse=True, return_counts=True)
    assert got.tolist() == expected.tolist()
    assert inverse.tolist() == expected_inverse.tolist()
    assert counts.tolist() == expected_counts.tolist()


def test_unorderable_labels_raise_like_numpy():
    mixed = np.asarray([1, "1", 2], dtype=object)
    with pytest.raises(TypeError):
        np.unique(mixed)
    with pytest.raises(TypeError):
        unique_values(mixed)


mixed = st.lists(
    st.one_of(st.text(max_size=3), st.integers(-2, 2), st.floats(allow_nan=True), st.booleans(), st.none()), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(mixed)
def test_text_values_are_each_values_text(values):
    array = np.asarray(values, dtype=object)
    converted = text_values(array)
    assert converted.dtype == object
    assert converted.tolist() == [str(value) for value in values]


def test_text_values_keep_a_trailing_nul():
    # numpy's astype(str) would make 'a\x00' the label 'a'.
    assert text_values(np.array(["a\x00", 1], dtype=object)).tolist() == ["a\x00", "1"]


def test_text_labels_are_not_copied():
    # The pipeline's labels are already text: a three-million-row batch's
    # labels as numpy text were 84 MB a detector, and sorted by each.
    labels = np.array(["spam", "ham", "spam"], dtype=object)
    assert text_values(labels) is labels
    assert text_values(np.array([], dtype=object)).shape == (0,)


def test_distinct_objects_reads_a_category_column_by_its_categories():
    column = pd.Series(pd.Categorical(["b", "a", None, "b"]))
    texts = distinct_objects(column, convert=str.upper, missing=None)
    assert texts.tolist() == ["B", "A", None, "B"]
    assert texts[0] is texts[3]  # one object per distinct value
    with pytest.raises(TypeError):  # numbers are read cell by cell by the callers
        distinct_objects(pd.Series(pd.Categorical([1, 2, 1])))


@settings(max_examples=200, deadline=None)
@given(labels, st.lists(st.sampled_from(["a", "b", "setosa", "", "zz"]), unique=True), st.sampled_from([8, 0]))
def test_rows_of_each_are_the_rows_equal_to_each_value(values, distinct, compared_max):
    # Both ways: comparing each value (few values) and hashing every row.
    array = np.asarray(values, dtype=object)
    original, _unique.COMPARED_VALUES_MAX = _unique.COMPARED_VALUES_MAX, compared_max
    try:
        found = rows_of_each(array, np.asarray(distinct, dtype=object))
    finally:
        _unique.COMPARED_VALUES_MAX = original
    assert [rows.tolist() for rows in found] == [np.flatnonzero(array == value).tolist() for value in distinct]


@pytest.mark.parametrize("compared_max", [8, 0])
def test_rows_of_each_reads_integer_labels(monkeypatch, compared_max):
    monkeypatch.setattr(_unique, "COMPARED_VALUES_MAX", compared_max)
    assert [rows.tolist() for rows in rows_of_each(np.array([3, 1, 3, 2]), np.array([1, 3, 5]))] == [[1], [0, 2], []]


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.0, 0.5, float("nan")]),
)


small_integers = st.lists(st.integers(-3, 3), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(numbers, max_size=40), small_integers),
       st.one_of(st.lists(numbers, max_size=10), small_integers))
def test_isin_values_is_numpys_on_numbers(values, tests):
    # Hashed, NaN must still be in no set, -0.0 the same number as 0.0, and 1 as 1.0.
    values, tests = np.asarray(values), np.asarray(tests)
    assert isin_values(values, tests).tolist() == np.isin(values, tests).tolist()


def test_isin_values_reads_text_and_number_mixes_as_numpy():
    labels = np.array(["a", "b", "a"], dtype=object)
    assert isin_values(labels, ["a"]).tolist() == [True, False, True]
    assert isin_values(np.array([1, 2, 3]), np.array([2.0, 2.5])).tolist() == [False, True, False]
