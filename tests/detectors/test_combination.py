"""Exact results of the decision helpers in ``detectors.calibration``.

Simes' and Bonferroni's combination of a row's p-values, which checks carry
a rejection, Good-Turing's unseen mass, the p-value of a property no trusted
row shows, and the label-by-label (Mondrian) calibration groups.
"""
import numpy as np
import pytest

from poisonguard.detectors import _row_blocks, _unique
from poisonguard.detectors.calibration import (
    combine_p_values,
    combined_contributors,
    good_turing_unseen_mass,
    mondrian_groups,
    unseen_property_p_value,
)
from poisonguard.detectors.errors import DetectorError

P = np.array([
    [0.01, 0.02, 0.03, 0.90],  # three checks agree
    [0.001, 1.0, 1.0, 1.0],  # one strong check
    [0.5, 0.5, np.nan, 0.5],  # nothing; NaN counts as 1
    [0.04, 0.9, 0.9, 0.9],
])


def test_simes_is_min_of_m_p_k_over_k():
    # Row 0: min(4*.01/1, 4*.02/2, 4*.03/3, 4*.9/4) = 0.04; Bonferroni 4*.01 = 0.04 too.
    # Row 2: sorted .5, .5, .5, 1 -> min(2, 1, 0.667, 1) = 2/3.
    np.testing.assert_allclose(combine_p_values(P), [0.04, 0.004, 2 / 3, 0.16])
    np.testing.assert_allclose(combine_p_values(P, method="bonferroni"), [0.04, 0.004, 1.0, 0.16])


def test_simes_gains_when_checks_agree_and_never_loses_to_bonferroni():
    agree = np.array([[0.02, 0.02, 0.02, 1.0]])
    assert combine_p_values(agree)[0] == pytest.approx(4 * 0.02 / 3)
    assert combine_p_values(agree, method="bonferroni")[0] == pytest.approx(0.08)
    rng = np.random.default_rng(0)
    random = rng.uniform(size=(500, 7))
    assert np.all(combine_p_values(random) <= combine_p_values(random, method="bonferroni") + 1e-15)


def test_simes_holds_its_level_on_independent_uniform_p_values():
    rng = np.random.default_rng(1)
    combined = combine_p_values(rng.uniform(size=(200_000, 7)))
    # Exact under independence: P(combined <= t) = t.
    assert np.mean(combined <= 0.02) == pytest.approx(0.02, abs=0.0015)


def test_contributors_are_the_checks_carrying_the_rejection():
    carries = combined_contributors(P, 0.05)
    # Row 0: p_(3) = 0.03 <= 3 * 0.05 / 4, so k* = 3 and the three small ones carry it.
    assert carries.tolist() == [
        [True, True, True, False],
        [True, False, False, False],
        [False, False, False, False],
        [False, False, False, False],
    ]
    assert combined_contributors(P, 0.05, method="bonferroni")[0].tolist() == [True, False, False, False]
    # A row is carried by some check exactly when its combined p-value is within the level.
    rng = np.random.default_rng(2)
    random = rng.uniform(0, 0.1, size=(300, 5))
    np.testing.assert_array_equal(combined_contributors(random, 0.05).any(axis=1), combine_p_values(random) <= 0.05)


def test_combination_rejects_bad_input():
    with pytest.raises(DetectorError, match="unknown combination"):
        combine_p_values(P, method="fisher")
    with pytest.raises(DetectorError, match="table"):
        combine_p_values([0.1, 0.2])
    assert combine_p_values(np.empty((3, 0))).tolist() == [1.0, 1.0, 1.0]


def test_good_turing_unseen_mass_is_singletons_over_rows():
    assert good_turing_unseen_mass(["a", "a", "b", "c", None, "a", "d", "d"]) == pytest.approx(2 / 7)
    assert good_turing_unseen_mass(["x", "x", "y", "y"]) == 0.0
    assert good_turing_unseen_mass([None, float("nan")]) == 0.0
    # 1 and "1" are one value, as categories are compared as text.
    assert good_turing_unseen_mass([1, "1", 2]) == pytest.approx(1 / 3)


def test_good_turing_matches_the_missing_mass_on_average():
    rng = np.random.default_rng(3)
    probabilities = np.array([0.5, 0.3, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01])
    estimates, missing = [], []
    for _ in range(3000):
        sample = rng.choice(len(probabilities), 100, p=probabilities)
        estimates.append(good_turing_unseen_mass(sample))
        missing.append(probabilities[~np.isin(np.arange(len(probabilities)), sample)].sum())
    assert np.mean(estimates) == pytest.approx(np.mean(missing), abs=0.003)


def test_unseen_property_p_value_and_its_rate():
    assert unseen_property_p_value(99) == pytest.approx(0.01)
    assert unseen_property_p_value(0) == 1.0
    # The chance that n clean rows show no empty cell and the next one does is below 1 / (n + 1).
    n = 50
    rates = np.linspace(0, 1, 2001)
    assert np.max(rates * (1 - rates) ** n) <= unseen_property_p_value(n)


@pytest.mark.parametrize("compared_max", [8, 0])  # labels compared one by one, or hashed
def test_mondrian_groups_pool_labels_with_few_trusted_rows(monkeypatch, compared_max):
    monkeypatch.setattr(_unique, "COMPARED_VALUES_MAX", compared_max)
    trusted = np.array(["a"] * 10 + ["b"] * 3)
    batch = np.array(["a", "b", "c", "a"])
    pairs = mondrian_groups(trusted, batch, min_rows=8)
    assert [(t.sum(), r.tolist()) for t, r in pairs] == [
        (10, [True, False, False, True]),  # label 'a' against its own 10 rows
        (13, [False, True, True, False]),  # 'b' (3 rows) and unseen 'c' against all
    ]


@pytest.mark.parametrize("method", ["simes", "bonferroni"])
def test_a_block_of_rows_at_a_time_changes_nothing(monkeypatch, method):
    rng = np.random.default_rng(4)
    p_values = rng.uniform(size=(1_000, 7)) ** 3  # many rows rejected at 0.05
    p_values[rng.uniform(size=p_values.shape) < 0.1] = np.nan
    whole = combine_p_values(p_values, method=method), combined_contributors(p_values, 0.05, method=method)
    monkeypatch.setattr(_row_blocks, "BLOCK_ROWS", 64)
    blocked = combine_p_values(p_values, method=method), combined_contributors(p_values, 0.05, method=method)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])
    assert 0 < whole[1].any(axis=1).sum() < len(p_values)
