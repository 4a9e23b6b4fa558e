"""``label_mass_p_values``: a label's p-value from calibrated class probabilities alone (Bayes' rule)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from poisonguard.detectors.calibration import label_mass_p_values

PROBABILITIES = np.array([
    [0.9, 0.1],
    [0.6, 0.4],
    [0.2, 0.8],
    [0.1, 0.9],
])


def test_the_share_of_a_labels_mass_at_most_the_rows_own_probability():
    codes = np.array([0, 1, 0, 1])
    # Label 0's mass: 0.9 + 0.6 + 0.2 + 0.1 = 1.8; row 2 has P = 0.2, and 0.1 + 0.2 lie at most there.
    # Label 1's mass: 2.2; row 1 has P = 0.4: 0.1 + 0.4 of it; row 3 has P = 0.9: all of it.
    expected = [1.8 / 1.8, 0.5 / 2.2, 0.3 / 1.8, 2.2 / 2.2]
    np.testing.assert_allclose(label_mass_p_values(PROBABILITIES, codes), expected)


def test_a_row_outside_the_population_counts_its_own_mass():
    codes = np.array([0, 1, 0, 1])
    population = np.array([True, True, False, True])
    # Row 2 (label 0, P = 0.2) is not in the population: label 0's mass there is
    # 0.9 + 0.6 + 0.1 = 1.6, of which 0.1 lies below 0.2; its own 0.2 is added to both.
    p_values = label_mass_p_values(PROBABILITIES, codes, population)
    assert p_values[2] == pytest.approx((0.1 + 0.2) / (1.6 + 0.2))
    # Rows in the population are measured against the population's mass alone:
    # label 1's is 0.1 + 0.4 + 0.9 = 1.4 without row 2, and 0.5 of it lies at most at row 1's 0.4.
    assert p_values[1] == pytest.approx(0.5 / 1.4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_drawn_from_the_probabilities_get_uniform_p_values(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(20_000, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    codes = (rng.random(len(probabilities))[:, None] > np.cumsum(probabilities, axis=1)).sum(axis=1)
    p_values = label_mass_p_values(probabilities, codes)
    for level in (0.001, 0.01, 0.05, 0.2):
        share = np.mean(p_values <= level)
        noise = 3.0 * np.sqrt(level * (1 - level) / len(codes))
        assert abs(share - level) <= noise + 1 / len(codes), (level, share)
    # A seeded tenth of the rows as the population measures the same mass.
    population = rng.random(len(codes)) < 0.1
    sampled = label_mass_p_values(probabilities, codes, population)
    assert np.median(np.abs(np.log(sampled[p_values > 0.001] / p_values[p_values > 0.001]))) < 0.1


def test_a_label_the_model_gives_far_less_than_its_rows_usually_get_is_rare():
    rng = np.random.default_rng(0)
    probabilities = np.column_stack([np.full(1000, 0.99), np.full(1000, 0.01)])
    probabilities[:500] = probabilities[:500, ::-1]
    codes = np.r_[np.ones(500, dtype=int), np.zeros(500, dtype=int)]
    codes[rng.choice(1000, 3, replace=False)] ^= 1
    p_values = label_mass_p_values(probabilities, codes)
    # Three labels against a 0.99 model: 5 of label 1's 500 units of mass, 1 %, sit at P = 0.01.
    assert np.sum(p_values <= 0.011) == 3


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 30).flatmap(lambda n: st.tuples(
        arrays(np.float64, (n, 3), elements=st.floats(0.0, 1.0)),
        arrays(np.int64, n, elements=st.integers(0, 2)),
        arrays(np.bool_, n),
    ))
)
def test_p_values_are_probabilities_for_any_input(case):
    probabilities, codes, population = case
    for chosen in (None, population):
        p_values = label_mass_p_values(probabilities, codes, chosen)
        assert p_values.shape == codes.shape
        assert np.all((p_values > 0) & (p_values <= 1))
