"""Histogram edges: numpy's where numpy can draw them, and never an error where it cannot."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.histograms import histogram

finite = st.floats(allow_nan=False, allow_infinity=False)  # up to the largest floats: their span is not one


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.integers(1, 25))
def test_edges_increase_and_count_every_value(values, bins):
    values = np.asarray(values)
    counts, edges = histogram(values, bins)
    assert np.all(edges[1:] > edges[:-1])  # not np.diff: the span of the largest floats overflows it
    assert 1 <= len(counts) <= bins
    assert counts.sum() == len(values)
    assert edges[0] <= values.min() and values.max() <= edges[-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30), st.integers(1, 25))
def test_ordinary_values_get_numpys_histogram(values, bins):
    values = np.asarray(values)
    counts, edges = histogram(values, bins)
    expected_counts, expected_edges = np.histogram(values, bins=bins)
    assert counts.tolist() == expected_counts.tolist()
    assert edges.tolist() == expected_edges.tolist()


def test_values_a_float_cannot_tell_apart_share_the_bins_it_can():
    codes = (np.uint64(2**63) + np.arange(0, 600, 7, dtype=np.uint64)).astype(float)
    counts, edges = histogram(codes, 20)  # numpy.histogram: "Too many bins for data range"
    assert counts.sum() == len(codes) and len(edges) - 1 <= 20
    single = np.full(5, 2.0**62)
    counts, edges = histogram(single, 20)
    assert counts.sum() == 5 and len(counts) == 20 and edges[0] < 2.0**62 < edges[-1]  # half a unit is below its precision
