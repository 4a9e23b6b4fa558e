"""Categories as the drift tests count them (detectors.drift._as_categories): text once per distinct value, the same as cell by cell."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonguard.detectors.drift import MISSING, _as_categories, category_counts

text_cell = st.one_of(st.none(), st.just(np.nan), st.sampled_from(["", " ", "\t\n", "a", " a ", "b", MISSING]),
                      st.text(max_size=4))


def cell_by_cell(values) -> pd.Series:
    series = pd.Series(values, dtype=object)
    missing = series.isna() | series.map(lambda v: isinstance(v, str) and not v.strip())
    return series.where(~missing, MISSING).map(str)


@settings(max_examples=300, deadline=None)
@given(st.lists(text_cell, max_size=30), st.sampled_from([object, "string[pyarrow]"]))
def test_text_categories_are_read_as_cell_by_cell(cells, dtype):
    values = pd.Series(cells, dtype=dtype) if dtype == object or all(
        c is None or c is np.nan or isinstance(c, str) for c in cells) else pd.Series(cells, dtype=object)
    pd.testing.assert_series_equal(_as_categories(values), cell_by_cell(values))


def test_numbers_and_lists_are_read_cell_by_cell():
    values = pd.Series([1, 1.0, True, "1", None, [1, 2], " "], dtype=object)
    assert _as_categories(values).tolist() == ["1", "1.0", "True", "1", MISSING, "[1, 2]", MISSING]
    categories, trusted, batch = category_counts(["a", " ", "a", None], ["b", "a", ""])
    assert categories == ["a", MISSING, "b"]
    assert trusted.tolist() == [2.0, 2.0, 0.0] and batch.tolist() == [1.0, 1.0, 1.0]
