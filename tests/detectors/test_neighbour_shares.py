"""``neighbour_label_p_values``: a label's p-value from its share among a row's nearest rows."""
import numpy as np

from poisonguard.detectors import _neighbour_shares
from poisonguard.detectors._neighbour_shares import neighbour_label_p_values
from poisonguard.detectors._sampling import population_mask
from poisonguard.detectors.calibration import label_mass_p_values


def test_counts_each_rows_nearest_and_wider_neighbours(monkeypatch):
    # Each queried row's 20 nearest population rows and its wider 40 (a
    # tenth of 400), itself left out, counted by label; each label's mass
    # measured on a sample of 100 rows. Rows outside the population (and
    # so not among their own neighbours) are judged too.
    monkeypatch.setattr(_neighbour_shares, "MASS_SAMPLE_ROWS", 100)
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(600, 3))
    codes = rng.integers(0, 3, 600)
    in_population = np.zeros(600, dtype=bool)
    in_population[rng.choice(600, 400, replace=False)] = True
    members = np.flatnonzero(in_population)
    rows = np.sort(rng.choice(600, 50, replace=False))
    measured = members[population_mask(400, 0, codes[members], max_rows=100)]
    queried = np.union1d(measured, rows)
    distances = np.linalg.norm(matrix[queried][:, None, :] - matrix[members][None, :, :], axis=2)
    distances[queried[:, None] == members[None, :]] = np.inf  # itself
    order = members[np.argsort(distances, axis=1)]
    near = np.stack([np.bincount(codes[o[:20]], minlength=3) for o in order])
    wide = np.stack([np.bincount(codes[o[:40]], minlength=3) for o in order])
    shares = np.bincount(codes[members], minlength=3) / 400
    probabilities = (near + (wide + shares) / 41) / 21
    expected = label_mass_p_values(probabilities, codes[queried], np.isin(queried, measured))
    p_values = neighbour_label_p_values(matrix[in_population], codes[in_population], 3, matrix, codes,
                                        in_population, rows)
    np.testing.assert_allclose(p_values, expected[np.searchsorted(queried, rows)])


def test_a_label_no_neighbour_has_is_as_rare_as_its_wider_neighbourhood_says():
    # Two separated groups; three rows of the second group labelled like the
    # first. None of their 20 nearest rows and at most one of their wider 60
    # shares their label. Spread by the whole batch's shares, every row of
    # the second group would hold label 0 at the same small probability, and
    # these three would get p = 0.020.
    rng = np.random.default_rng(0)
    matrix = np.vstack([rng.normal(0.0, 1.0, (300, 2)), rng.normal(10.0, 1.0, (300, 2))])
    codes = np.repeat([0, 1], 300)
    codes[[300, 301, 302]] = 0
    everyone = np.ones(600, dtype=bool)
    p_values = neighbour_label_p_values(matrix, codes, 2, matrix, codes, everyone, np.arange(600))
    assert p_values[[300, 301, 302]].max() < 0.001
    assert np.quantile(p_values[:300], 0.05) > 0.05
