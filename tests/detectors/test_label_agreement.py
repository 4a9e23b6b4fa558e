import numpy as np
import pytest

from poisonguard.detectors._label_agreement import label_agreement_p_value

NAMES = ["rating_a", "rating_b", "attitude", "attitude__missing", "region=north", "region=south"]


def ratings_table(n_rows=1500, seed=0):
    """Three parties; two 1-5 ratings and an attitude scale lean with the party, as BEPS's do."""
    rng = np.random.default_rng(seed)
    party = rng.integers(0, 3, n_rows)
    rating_a = np.clip(np.round(rng.normal(2 + party, 1.0)), 1, 5)
    rating_b = np.clip(np.round(rng.normal(4 - party, 1.0)), 1, 5)
    attitude = np.round(rng.normal(2.0 * party, 1.5), 1)
    north = rng.random(n_rows) < 0.5
    matrix = np.column_stack([rating_a, rating_b, attitude, np.zeros(n_rows), north, ~north]).astype(float)
    return matrix, np.array(["Labour", "LibDem", "Conservative"], dtype=object)[party]


def test_a_labels_natural_group_looks_like_its_label():
    matrix, labels = ratings_table()
    group = np.flatnonzero((matrix[:, 0] == 4) & (matrix[:, 1] == 2) & (labels == "Conservative"))
    assert len(group) > 50
    assert label_agreement_p_value(matrix, labels, group, "Conservative", [0, 1], NAMES) < 1e-6


@pytest.mark.parametrize("seed", range(10))
def test_rows_of_other_labels_given_the_values_and_the_label_do_not(seed):
    # A dirty-label trigger: the stamped rows still look like where they came from.
    matrix, labels = ratings_table()
    rows = np.random.default_rng(seed).choice(np.flatnonzero(labels != "Conservative"), 60, replace=False)
    matrix[rows, 0], matrix[rows, 1], labels[rows] = 4, 2, "Conservative"
    assert label_agreement_p_value(matrix, labels, rows, "Conservative", [0, 1], NAMES) > 1e-3


def test_every_column_encoding_a_left_out_input_column_is_left_out():
    # Past the ratings only the attitude scale tells the label. Naming its
    # missing indicator leaves out the scale too, and the region (no signal) is all that is left.
    matrix, labels = ratings_table()
    group = np.flatnonzero((matrix[:, 0] == 4) & (matrix[:, 1] == 2) & (labels == "Conservative"))
    assert label_agreement_p_value(matrix, labels, group, "Conservative", [0, 1, 4], NAMES) < 1e-6
    assert label_agreement_p_value(matrix, labels, group, "Conservative", [0, 1, 3], NAMES) > 1e-3


def test_nothing_left_to_compare_gives_one():
    matrix, labels = ratings_table(200)
    group = np.flatnonzero(labels == "Conservative")[:10]
    assert label_agreement_p_value(matrix, labels, group, "Conservative", [0, 1, 2, 4], NAMES) == 1.0
    assert label_agreement_p_value(matrix, np.full(200, "Conservative", dtype=object), group, "Conservative",
                                   [0], NAMES) == 1.0
