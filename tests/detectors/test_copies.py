import numpy as np
from scipy.stats import binom

from poisonguard.detectors._copies import independent_copies_p_values, same_label_copies_floor, value_groups
from poisonguard.detectors.features import source_columns


def test_value_groups_count_the_rows_holding_each_rows_exact_values():
    matrix = np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 1.0], [0.0, 1.5]])
    group, size = value_groups(matrix)
    np.testing.assert_array_equal(size, [2, 1, 2, 1])
    assert group[0] == group[2] and len({group[0], group[1], group[3]}) == 3


def test_copies_are_judged_against_the_product_of_their_input_columns_shares():
    # Input columns a (one-hot, two levels) and b: a = x on 3 of 4 rows, b = 5 on 3 of 4.
    names = ["a=x", "a=y", "b"]
    matrix = np.array([[1.0, 0.0, 5.0], [1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [1.0, 0.0, 7.0]])
    p_values = independent_copies_p_values(matrix, names)
    # Row 0 has 1 copy among 3 other rows, each its values with probability 3/4 * 3/4.
    expected = 1.0 - (1.0 - 9 / 16) ** 3
    np.testing.assert_allclose(p_values, [expected, expected, 1.0, 1.0])
    # Read as three independent columns, the one-hot pair would make copies rarer.
    assert independent_copies_p_values(matrix, ["p", "q", "b"])[0] < expected
    assert np.isclose(expected, binom.sf(0, 3, 9 / 16))
    assert independent_copies_p_values(np.empty((0, 3)), names).shape == (0,)


def test_source_columns_follow_the_encoders_names():
    names = ["age", "age__missing", "color=red", "color=<missing>", "city__rarity", "x=y=z"]
    np.testing.assert_array_equal(source_columns(names), ["age", "age", "color", "color", "city", "x"])


def test_same_label_copies_floor_is_the_share_of_a_rows_copies_with_its_label_less_poison():
    matrix = np.array([[0.0], [0.0], [0.0], [1.0], [1.0], [2.0]])
    labels = np.array(["a", "a", "b", "b", "a", "a"], dtype=object)
    # Rows 0 and 1: one of their two copies says a, (1/2 - 0.1) / 0.9; no copy says b for row 2 or 3.
    np.testing.assert_allclose(same_label_copies_floor(matrix, labels), [4 / 9, 4 / 9, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(same_label_copies_floor(matrix, labels, contamination=0.0), [0.5, 0.5, 0, 0, 0, 0])
    # One copy in nine is what a tenth of poison explains.
    matrix, labels = np.zeros((10, 1)), np.array(["b"] * 2 + ["a"] * 8, dtype=object)
    np.testing.assert_allclose(same_label_copies_floor(matrix, labels)[:2], [1 / 81, 1 / 81])
