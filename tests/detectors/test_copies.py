import numpy as np
import pytest
from scipy.stats import binom

from poisonguard.detectors import _copies as copies
from poisonguard.detectors._copies import (
    independent_copies_p_values,
    natural_copies_p_values,
    tree_copies_p_values,
    value_groups,
)
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


def _survey(n_rows=1500, seed=0):
    """Three answers on a four-point scale that mostly agree with each other, as related survey items do."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 4, n_rows)
    answers = [first]
    for _ in range(2):
        agrees = rng.random(n_rows) < 0.8
        answers.append(np.where(agrees, first, rng.integers(0, 4, n_rows)))
    return np.column_stack(answers).astype(float), ["q1", "q2", "q3"]


def test_a_tree_of_the_columns_dependence_explains_copies_independence_cannot():
    matrix, names = _survey()
    agreeing = np.all(matrix == matrix[:, :1], axis=1)
    independent = independent_copies_p_values(matrix, names)
    tree = tree_copies_p_values(matrix, names)
    # About 160 rows give each of the four agreeing answers; independence expects 23.
    assert (independent[agreeing] < 1e-6).all()
    assert (tree[agreeing] > 0.2).all()
    np.testing.assert_array_equal(natural_copies_p_values(matrix, names), np.maximum(independent, tree))


def test_a_flood_does_not_explain_its_own_copies():
    matrix, names = _survey()
    # Forty copies of one disagreeing answer set, which 8 of the 1,500 rows give.
    rare = np.flatnonzero(np.all(matrix == [0.0, 3.0, 0.0], axis=1))
    assert 5 <= len(rare) <= 12
    flooded = np.vstack([matrix, np.repeat(matrix[rare[:1]], 40, axis=0)])
    p_values = natural_copies_p_values(flooded, names)
    assert (p_values[len(matrix):] < 1e-4).all() and (p_values[rare] < 1e-4).all()


def _earnings(n_rows=3000, seed=0):
    """Age group, schooling and three years' earnings: zero or top-coded in all three on the same people."""
    rng = np.random.default_rng(seed)
    age, school = rng.integers(0, 5, n_rows), rng.integers(0, 4, n_rows)
    earnings = np.round(rng.lognormal(9, 0.5, (n_rows, 3)), 2)
    kind = rng.choice(3, n_rows, p=[0.3, 0.05, 0.65])
    earnings[kind == 0] = 0.0
    earnings[kind == 1] = [25862.32, 25243.55, 25564.67]
    return np.column_stack([age, school, earnings]), ["age", "school", "re74", "re75", "re78"], kind


@pytest.mark.parametrize("atoms", [True, False])
def test_atoms_of_a_column_of_many_values_join_the_tree(monkeypatch, atoms):
    # causaldata's cps_mixtape: top-coded earnings in three years, on the
    # same people, made copies of (age, schooling, top codes) independence
    # cannot explain; 7.4 % of the clean table was flagged as a flood.
    if not atoms:
        monkeypatch.setattr(copies, "ATOM_SHARE", 2.0)
    matrix, names, kind = _earnings()
    top = kind == 1
    tree = tree_copies_p_values(matrix, names)
    if atoms:
        assert np.median(tree[top]) > 0.1 and tree[top].min() > 1e-3 and tree[kind == 0].min() > 1e-3
    else:
        assert np.median(tree[top]) < 1e-6
    # Forty copies of one row of distinct earnings are still no one's atoms.
    flooded = np.vstack([matrix, np.repeat(matrix[np.flatnonzero(kind == 2)[:1]], 40, axis=0)])
    assert (natural_copies_p_values(flooded, names)[len(matrix):] < 1e-4).all()
