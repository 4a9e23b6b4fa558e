"""A batch as its own reference: p-values never claim a tail thinner than the batch shows."""
import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors._crossfit import (
    MAX_CONTAMINATION,
    bulk_calibrated_p_values,
    contamination_floor,
    single_fold_p_values,
    tied_bulk_p_values,
)
from poisonguard.detectors.calibration import conformal_p_values, cross_conformal_p_values
from poisonguard.detectors.errors import NotEnoughData
from poisonguard.detectors.label_knn import KNNLabelDetector


def test_the_floor_is_the_share_a_poisoned_tenth_cannot_explain():
    batch = np.arange(100.0)
    floor = contamination_floor(batch, [95.0, 80.0, 50.0, 0.0])
    # 5, 20, 50 and 100 of 100 rows score at least that; a tenth may be poison.
    expected = [0.0, (20 / 101 - 0.1) / 0.9, (50 / 101 - 0.1) / 0.9, (100 / 101 - 0.1) / 0.9]
    np.testing.assert_allclose(floor, expected)
    assert MAX_CONTAMINATION == 0.1


@pytest.mark.parametrize("calibrate", [
    bulk_calibrated_p_values,
    lambda scores: single_fold_p_values(scores, scores, self_referential=True),
])
def test_a_heavy_clean_tail_is_not_flagged_but_a_poisoned_twentieth_is(calibrate):
    rng = np.random.default_rng(0)
    # 15 % of clean rows share one far score (a column of few distinct values):
    # the robust bulk alone would put them all beyond its tail.
    clean = np.concatenate([rng.normal(size=1700), np.full(300, 6.0)])
    p_clean, _ = calibrate(clean)
    assert np.mean(p_clean <= 0.01) <= 0.01
    assert p_clean[-300:].min() == pytest.approx((300 / 2001 - 0.1) / 0.9)
    # A twentieth of the batch poisoned far out stays flagged: the floor is 0 there.
    poisoned = np.concatenate([rng.normal(size=1900), np.full(100, 20.0)])
    p_poisoned, _ = calibrate(poisoned)
    assert np.all(p_poisoned[-100:] <= 0.01)
    assert np.mean(p_poisoned[:1900] <= 0.01) <= 0.02


def test_scores_bunched_below_the_90th_percentile_do_not_thin_the_tail_beyond():
    rng = np.random.default_rng(1)
    # Coarse repeated values bunch a fifth of the clean rows just below the
    # 90th percentile, and a twentieth run on beyond it (shared exact values
    # on real tables): the 75th-90th spacing alone is 0.06 wide.
    bulk, bunch = rng.normal(size=1500), rng.uniform(2.0, 2.1, size=400)
    clean = np.concatenate([bulk, bunch, rng.uniform(2.1, 4.0, size=100)])
    p_clean, _ = single_fold_p_values(clean, clean, self_referential=True)
    # From the 75th-90th spacing alone, 106 rows (5 %) were below 0.01.
    assert np.sum(p_clean <= 0.01) == 0
    poisoned = np.concatenate([bulk, bunch, np.full(100, 20.0)])
    p_poisoned, _ = single_fold_p_values(poisoned, poisoned, self_referential=True)
    assert np.all(p_poisoned[-100:] <= 1e-6)


def test_a_tie_from_the_75th_to_the_90th_percentile_takes_the_tail_from_the_median():
    # Scores 0 on over half the rows and one value from the 75th to past the
    # 90th percentile: the bulk's tail gave every one of the 100 rows just
    # above the tie p = 0.0009 (causaldata's abortion: 444 clean rows
    # flagged by backdoor.trigger above such a tie).
    rng = np.random.default_rng(2)
    clean = np.concatenate([np.zeros(1100), np.full(800, 0.5), rng.uniform(0.51, 0.6, 100)])
    p_clean, _ = single_fold_p_values(clean, clean, self_referential=True)
    # Through the median (0) and the 90th percentile (0.5): 0.1 * exp(-(s - 0.5) / (0.5 / log 5)).
    expected = 0.1 * np.exp(-(clean[-100:] - 0.5) / (0.5 / np.log(5.0)))
    np.testing.assert_allclose(p_clean[-100:], expected)
    assert np.sum(p_clean <= 0.01) == 0
    poisoned = np.concatenate([np.zeros(1100), np.full(800, 0.5), np.full(100, 5.0)])
    p_poisoned, _ = single_fold_p_values(poisoned, poisoned, self_referential=True)
    assert np.all(p_poisoned[-100:] <= 1e-3)


def test_a_bulk_of_ties_gives_ranks_not_the_smallest_p_value():
    # 80 of 100 scores tie at 0 (neighbours at distance 0 in a table of few
    # distinct rows): no spread to draw a tail from. Each of the 20 others was
    # given 1 / 81 against the tied bulk; its share of the batch is what holds.
    scores = np.concatenate([np.zeros(80), np.arange(1.0, 21.0)])
    p_values, extrapolated = bulk_calibrated_p_values(scores)
    np.testing.assert_allclose(p_values[80:], (1.0 + np.arange(20.0, 0.0, -1.0)) / 101.0)
    np.testing.assert_allclose(p_values[:80], 1.0)
    assert not extrapolated.any()
    np.testing.assert_array_equal(tied_bulk_p_values(scores, scores)[0], p_values)


def coarse_table(seed, n_rows=5000):
    """A table of few distinct rows (ages and two-level categories), labels drawn at random (40 % 'yes')."""
    rng = np.random.default_rng(seed)
    ethnicity = rng.choice(["none", "afam", "other"], size=n_rows, p=[0.9, 0.05, 0.05])
    table = pd.DataFrame({
        "age": rng.integers(21, 36, n_rows).astype(float),
        "work": np.where(rng.random(n_rows) < 0.5, 0.0, rng.integers(1, 53, n_rows)).astype(float),
    })
    for level in ["none", "afam", "other"]:
        table[f"ethnicity={level}"] = (ethnicity == level).astype(float)
    male = rng.random(n_rows) < 0.5
    table["sex=m"], table["sex=f"] = male.astype(float), 1.0 - male
    return table, np.where(rng.random(n_rows) < 0.4, "yes", "no").astype(object)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_without_a_reference_on_a_table_of_few_distinct_rows(seed):
    # Most rows have five neighbours of each label at distance 0, so most
    # scores tie at 0; the rest were all given the tied bulk's smallest
    # p-value, and 17-20 % of these clean rows were flagged (AER's Fertility: 17 %).
    table, labels = coarse_table(seed)
    findings = KNNLabelDetector(alpha=0.01).self_findings(table, labels)
    assert findings["flagged"].mean() <= 0.01


def survey_like_table(seed, n_rows=5000):
    """Ages and categories only (few distinct rows); the label's shares depend on the country."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"age": rng.integers(18, 40, n_rows).astype(float)})
    country = rng.choice(4, n_rows)
    for code in range(4):
        table[f"country={code}"] = (country == code).astype(float)
    for name in ["religion", "degree", "gender"]:
        yes = rng.random(n_rows) < 0.5
        table[f"{name}=yes"], table[f"{name}=no"] = yes.astype(float), 1.0 - yes
    shares = np.array([[0.7, 0.25, 0.05], [0.3, 0.5, 0.2], [0.5, 0.35, 0.15], [0.2, 0.3, 0.5]])
    codes = (rng.random(n_rows)[:, None] > shares[country].cumsum(axis=1)).sum(axis=1)
    return table, np.array(["too little", "about right", "too much"], dtype=object)[codes]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_does_not_read_a_distance_below_the_datas_spacing_as_evidence(seed):
    # Another label's five rows at distance 0 and the row's own label's one
    # year of age away scored log(1000) with a floor of 1e-3 of the spacing: a
    # second mode of clean rows, 18-20 % of them flagged without a reference.
    table, labels = survey_like_table(seed)
    findings = KNNLabelDetector(alpha=0.01).self_findings(table, labels)
    assert findings["flagged"].mean() <= 0.01


def test_a_batch_whose_most_scores_are_infinite_is_calibrated_not_refused():
    # Most rows beyond any measure (a backdoor group test beyond a float on
    # most of a batch): their median is inf, and the cut above it left no
    # bulk ("cannot calibrate: no calibration scores").
    scores = np.r_[np.random.default_rng(0).exponential(size=400), np.full(600, np.inf)]
    p_values, _ = single_fold_p_values(scores, scores, self_referential=True)
    assert np.all((p_values > 0.5) & (p_values <= 1.0))


def test_nothing_to_calibrate_on_is_too_little_data_not_a_misuse():
    # The pipeline skips a detector for NotEnoughData, and names it in the report; a bare DetectorError stopped the run.
    with pytest.raises(NotEnoughData):
        conformal_p_values([], [0.5])
    with pytest.raises(NotEnoughData):
        cross_conformal_p_values([], [], np.zeros((1, 1)))
