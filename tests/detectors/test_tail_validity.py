"""Conformal p-values with an extrapolated tail flag at most ``alpha`` of clean rows, whatever the score's tail.

Clean rows and calibration rows drawn from one distribution: the share of
p-values at most ``alpha`` must stay at ``alpha`` (in expectation over the
calibration draw). The exponential tail may only stand in where the counts
run out; taking the smaller of tail and counts inside the trusted scores'
range flagged 1.3-1.4 times ``alpha`` on heavy-tailed scores (and 1.1 times on
normal and exponential ones).
"""
import numpy as np
import pytest

from poisonguard.detectors.calibration import cross_conformal_p_values

ALPHA = 0.05 / 7  # a detector's level under the default decision rule
CALIBRATION_ROWS = 300
DRAWS = 200


def draw(name, rng, n):
    return {
        "lognormal": lambda: rng.lognormal(0.0, 1.5, n),
        "pareto": lambda: rng.pareto(1.5, n),
        "half-cauchy": lambda: np.abs(rng.standard_cauchy(n)),
        "normal": lambda: rng.normal(size=n),
        "exponential": lambda: rng.exponential(size=n),
    }[name]()


@pytest.mark.parametrize("distribution", ["lognormal", "pareto", "half-cauchy", "normal", "exponential"])
@pytest.mark.parametrize("n_folds", [1, 5])
def test_clean_rows_are_flagged_at_most_alpha(distribution, n_folds):
    rates = []
    for seed in range(DRAWS):
        rng = np.random.default_rng(seed)
        calibration = draw(distribution, rng, CALIBRATION_ROWS)
        folds = np.arange(CALIBRATION_ROWS) % n_folds
        # Every fold model scores a clean row alike here (one score distribution).
        scores = np.repeat(draw(distribution, rng, 2000)[:, None], n_folds, axis=1)
        rates.append(np.mean(cross_conformal_p_values(calibration, folds, scores) <= ALPHA))
    # Counts alone reach floor(301 * alpha) / 301 = 0.93 alpha; the mean of 200
    # draws has a standard error of about 0.05 alpha.
    assert np.mean(rates) <= 1.1 * ALPHA
    # ...and not vacuous: the rows past the two highest trusted scores are flagged.
    assert np.mean(rates) >= 0.5 * ALPHA


SMALL_REFERENCE = 150  # attrition's 10 % reference is 147 rows


def realised_rate(calibration, folds, n_folds, grid, survival, confidence):
    """The exact share of clean rows flagged at ``ALPHA`` with this calibration: the tail beyond the flag threshold."""
    p_values = cross_conformal_p_values(calibration, folds, np.repeat(grid[:, None], n_folds, axis=1),
                                        confidence=confidence)
    flagged = p_values <= ALPHA  # p falls as the score grows: the first flagged score is the threshold
    return survival(grid[np.argmax(flagged)]) if flagged.any() else 0.0


@pytest.mark.parametrize("distribution", ["exponential", "normal"])
@pytest.mark.parametrize("n_folds", [1, 5])
def test_with_a_confidence_the_rate_holds_for_all_but_that_share_of_references(distribution, n_folds):
    from scipy import stats

    # Tails the exponential model covers: exponential (exact) and normal (lighter).
    grid, survival = {
        "exponential": (np.linspace(0.0, 40.0, 8001), lambda s: float(np.exp(-s))),
        "normal": (np.linspace(-2.0, 12.0, 7001), lambda s: float(stats.norm.sf(s))),
    }[distribution]
    over = {None: 0, 0.9: 0}
    realised = {None: [], 0.9: []}
    for seed in range(DRAWS):
        calibration = draw(distribution, np.random.default_rng(seed), SMALL_REFERENCE)
        folds = np.arange(SMALL_REFERENCE) % n_folds
        for confidence in over:
            rate = realised_rate(calibration, folds, n_folds, grid, survival, confidence)
            realised[confidence].append(rate)
            over[confidence] += rate > ALPHA
    # On average both hold the level; one reference in three or more breaks it
    # without a confidence, and at most a tenth (plus 2 standard errors) with 0.9.
    assert np.mean(realised[None]) <= 1.15 * ALPHA
    assert over[None] / DRAWS >= 0.3
    assert over[0.9] / DRAWS <= 0.1 + 2 * np.sqrt(0.09 / DRAWS)
    # ...and the bound is not vacuous: it still flags the far tail.
    assert np.mean(realised[0.9]) >= 0.1 * ALPHA


def test_conformal_upper_bounds_are_the_beta_quantiles_of_the_tail_share():
    from scipy import stats

    from poisonguard.detectors.calibration import conformal_upper_bounds

    bounds = conformal_upper_bounds(np.array([0, 1, 9, 99, 100]), 100, 0.9)
    # Beyond the (j + 1)-th largest of 100 scores: Beta(j + 1, 100 - j); all 100 at least as high: 1.
    expected = [stats.beta.ppf(0.9, 1, 100), stats.beta.ppf(0.9, 2, 99), stats.beta.ppf(0.9, 10, 91),
                stats.beta.ppf(0.9, 100, 1), 1.0]
    np.testing.assert_allclose(bounds, expected)
    # The median-ish confidence sits near the conformal p-value (j + 1) / (n + 1); 0.9 above it.
    assert bounds[0] == pytest.approx(1 - 0.1 ** (1 / 100))
    assert np.all(bounds[:4] > (np.array([0, 1, 9, 99]) + 1) / 101)


def test_conformal_upper_bounds_read_counts_as_numbers_or_as_an_index():
    from poisonguard.detectors.calibration import conformal_upper_bounds

    # Integer counts are looked up by count, others go through numpy.unique: the same bounds, any shape.
    counts = np.array([[3, 0, 7], [7, 20, 3]])
    as_index = conformal_upper_bounds(counts, 20, 0.8)
    assert as_index.shape == (2, 3)
    assert as_index.tolist() == conformal_upper_bounds(counts.astype(float), 20, 0.8).tolist()
    assert float(conformal_upper_bounds(7, 20, 0.8)) == as_index[0, 2]
    assert as_index[1, 1] == 1.0


@pytest.mark.parametrize("confidence", [None, 0.75])
def test_cross_conformal_gives_the_counts_and_the_extrapolated_p_values_of_one_count(confidence):
    from poisonguard.detectors._crossfit import guarded_p_values
    from poisonguard.detectors.calibration import cross_conformal

    rng = np.random.default_rng(5)
    calibration, folds = rng.exponential(size=300), np.arange(300) % 3
    scores = np.concatenate([rng.exponential(size=(400, 3)), rng.exponential(size=(20, 3)) + 8])
    counted, p_values, extrapolated = cross_conformal(calibration, folds, scores, confidence=confidence)
    assert counted.tolist() == cross_conformal_p_values(calibration, folds, scores, extrapolate=False,
                                                        confidence=confidence).tolist()
    plain, plain_extrapolated = cross_conformal_p_values(calibration, folds, scores, return_extrapolated=True,
                                                         confidence=confidence)
    assert p_values.tolist() == plain.tolist() and extrapolated.tolist() == plain_extrapolated.tolist()
    # Only the 20 far rows are beyond every calibration score, and the tail lowers theirs.
    assert extrapolated[400:].all() and not extrapolated[:400].any()
    assert np.all(p_values[400:] < counted[400:])
    # The guard raises the far rows' p-values to the batch's tail, never above their counts.
    guarded, lowered = guarded_p_values(calibration, folds, scores, confidence=confidence)
    assert np.array_equal(guarded[:400], counted[:400])
    assert np.all((guarded[400:] >= p_values[400:]) & (guarded[400:] <= counted[400:]))
    assert lowered.tolist() == (guarded < counted).tolist()


@pytest.mark.parametrize("confidence", [0.5, 0.6, 0.9])
def test_a_confidence_never_lowers_a_p_value(confidence):
    rng = np.random.default_rng(3)
    calibration = rng.exponential(size=SMALL_REFERENCE)
    scores = np.concatenate([calibration, rng.exponential(size=500) * 3])[:, None]
    folds = np.zeros(SMALL_REFERENCE, dtype=int)
    plain = cross_conformal_p_values(calibration, folds, scores)
    held = cross_conformal_p_values(calibration, folds, scores, confidence=confidence)
    assert np.all(held >= plain)
    # At 0.5 the bounds are medians, under the mean count and the predictive tail: they add nothing.
    beyond = scores[:, 0] > calibration.max()
    assert np.any(held[beyond] > plain[beyond]) == (confidence > 0.5)
