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
