"""Tests of detectors.outliers on small seeded Gaussian data."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pyod.models.ecod import ECOD
from sklearn.base import clone

from poisonguard.detectors.base import FINDING_COLUMNS, DetectorError
from poisonguard.detectors.calibration import conformal_p_values, cross_conformal_p_values, peaks_over_threshold
from poisonguard.detectors.features import FeatureEncoder
from poisonguard.detectors.registry import get_detector, registered_detectors
from poisonguard.detectors import outliers
from poisonguard.detectors.outliers import (
    ECODOutlierDetector,
    IForestOutlierDetector,
    copies_floor,
    fold_tail_scores,
    redundancy_weights,
)

DETECTORS = [ECODOutlierDetector, IForestOutlierDetector]
COLUMNS = ["bill_length_mm", "body_mass_g"]


def gaussian(n_rows, seed, columns=COLUMNS):
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n_rows, len(columns))), columns=columns)


@pytest.fixture(scope="module")
def trusted():
    return gaussian(1000, seed=0)


@pytest.fixture(scope="module")
def batch():
    far = pd.DataFrame([[8.0, 8.0], [-7.0, 9.0], [9.0, -8.0]], columns=COLUMNS)
    frame = pd.concat([gaussian(100, seed=2), far], ignore_index=True)
    frame.index = [f"row-{index}" for index in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def fitted(trusted):
    return {cls: cls(alpha=0.01).fit(trusted) for cls in DETECTORS}


@pytest.mark.parametrize(
    "cls, expected, far_p_value",
    [
        # Clean row 33 is lower than 99.4 % of trusted rows on one feature
        # (p=0.006): at alpha=0.01 about 1 in 100 clean rows is flagged.
        # ECOD's score saturates beyond the trusted range; the tail fitted to
        # the 100 largest trusted scores would put the far rows at 5.8e-05,
        # but the batch's own tail (guarded_p_values) only confirms 6.7e-04.
        (ECODOutlierDetector, {33, 100, 101, 102}, 6.6955e-04),
        # Isolation-forest scores are bounded: the tail fitted to the
        # trusted scores does not go below the smallest count, 1/1001.
        (IForestOutlierDetector, {100, 101, 102}, 1 / 1001),
    ],
)
def test_far_rows_are_flagged_exactly(fitted, batch, cls, expected, far_p_value):
    findings = fitted[cls].findings(batch)
    assert set(np.flatnonzero(findings["flagged"])) == expected
    np.testing.assert_allclose(findings["p_value"].iloc[100:], far_p_value, rtol=1e-3)


@pytest.mark.parametrize("cls", DETECTORS)
def test_findings_table_shape(fitted, batch, cls):
    findings = fitted[cls].findings(batch)
    assert list(findings.columns) == FINDING_COLUMNS
    assert len(findings) == len(batch)
    assert list(findings["row_id"]) == list(batch.index)
    assert (findings["check"] == cls.name).all()
    assert ((findings["p_value"] > 0) & (findings["p_value"] <= 1)).all()
    np.testing.assert_allclose(findings["score"], fitted[cls].score(batch))
    explicit = fitted[cls].findings(batch, row_ids=[f"id{i}" for i in range(len(batch))])
    assert explicit["row_id"].iloc[0] == "id0"


@pytest.mark.parametrize("cls", DETECTORS)
def test_reasons_name_features_and_p_value(fitted, batch, cls):
    findings = fitted[cls].findings(batch)
    far = findings["reason"].iloc[100]
    head = {
        ECODOutlierDetector: "unusual against trusted rows (p≈0.00067, extrapolated beyond the trusted scores): ",
        IForestOutlierDetector: "unusual against trusted rows (p=0.001): ",
    }[cls]
    assert far.startswith(head)
    assert "body_mass_g far above the range of trusted rows" in far
    assert "bill_length_mm far above the range of trusted rows" in far
    calm = findings.loc[~findings["flagged"], "reason"].iloc[0]
    assert calm.startswith("within the trusted distribution (p=")


def test_reason_describes_indicator_columns():
    rng = np.random.default_rng(3)
    trusted = pd.DataFrame(rng.normal(size=(500, 2)), columns=COLUMNS)
    trusted["body_mass_g__missing"] = 0.0
    odd = pd.DataFrame([[4.0, 0.0, 1.0]], columns=trusted.columns)
    findings = ECODOutlierDetector(alpha=0.05).fit(trusted).findings(odd)
    assert findings["flagged"].iloc[0]
    assert "'body_mass_g missing' (no trusted rows are like this)" in findings["reason"].iloc[0]


@pytest.mark.parametrize("cls", DETECTORS)
def test_calibration_on_clean_rows(trusted, cls):
    # Clean rows from the trusted distribution: about alpha of them flagged.
    clean = gaussian(2000, seed=7)
    findings = cls(alpha=0.05).fit(trusted).findings(clean)
    assert 0.02 <= findings["flagged"].mean() <= 0.09


TEN_COLUMNS = [f"x{index}" for index in range(10)]


@pytest.mark.parametrize("cls", DETECTORS)
# At alpha=0.01 the lower bound is one row of the 10 000: below 1/51 only
# the extrapolated tail can flag, so a share of 0 would mean it never does.
@pytest.mark.parametrize("alpha, low, high", [(0.05, 0.02, 0.09), (0.01, 0.5e-4, 0.03)])
def test_calibration_with_a_small_reference(cls, alpha, low, high):
    # 50 trusted rows, 10 features. Cross-conformal p-values: each fold model
    # scores batch rows as it scored its held-out trusted rows; below 1/51
    # the p-value comes from the tail. Given one reference of 50 rows the
    # flagged share varies a lot (about Beta(2.5, 48.5) at alpha=0.05), so
    # the test averages over five references.
    shares = []
    for seed in range(5):
        detector = cls(alpha=alpha, random_state=seed).fit(gaussian(50, seed, TEN_COLUMNS))
        shares.append(detector.findings(gaussian(2000, 100 + seed, TEN_COLUMNS))["flagged"].mean())
    assert low <= np.mean(shares) <= high


@pytest.mark.parametrize("cls", DETECTORS)
def test_far_row_is_flagged_at_alpha_below_one_over_n_plus_one(cls):
    trusted = gaussian(50, seed=1, columns=TEN_COLUMNS)
    far = pd.DataFrame(np.full((1, 10), 6.0), columns=TEN_COLUMNS)
    findings = cls(alpha=0.01).fit(trusted).findings(far)
    assert findings["flagged"].iloc[0]
    assert findings["p_value"].iloc[0] < 1 / 51  # the smallest count-based p-value
    assert "extrapolated beyond the trusted scores" in findings["reason"].iloc[0]


def test_cross_conformal_counts_per_fold():
    calibration = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    folds = np.array([0, 0, 0, 1, 1])
    # row scores under fold model 0 and fold model 1
    scores = np.array([[2.0, 15.0], [0.0, 0.0], [4.0, 30.0]])
    p_values = cross_conformal_p_values(calibration, folds, scores, extrapolate=False)
    # (1 + #{fold 0 >= s_0} + #{fold 1 >= s_1}) / 6
    np.testing.assert_allclose(p_values, [(1 + 2 + 1) / 6, (1 + 3 + 2) / 6, 1 / 6])
    one_fold = cross_conformal_p_values(calibration, np.zeros(5, int), scores[:, :1], extrapolate=False)
    np.testing.assert_allclose(one_fold, conformal_p_values(calibration, scores[:, 0]))


def test_peaks_over_threshold_tail():
    calibration = np.arange(1.0, 21.0)  # n=20: k=5, threshold = 16, excesses 1..4
    tail = peaks_over_threshold(calibration)
    assert (tail.threshold, tail.probability, tail.scale, tail.excesses) == (16.0, 5 / 21, 2.5, 4)
    # Predictive (Lomax) form with m = 4 excesses: (1 + x / (4 * 2.5)) ** -4.
    expected = [1.0, 1.0, 5 / 21 * 1.25**-4, 5 / 21 * (1 + (1e9 - 16) / 10) ** -4]
    np.testing.assert_allclose(tail.p_values([10.0, 16.0, 18.5, 1e9]), expected, rtol=1e-9)
    assert (tail.p_values([1e9]) > 0).all()
    # Two folds of ten: the tail lowers only p-values beyond every calibration
    # score, and never raises one. 18.5 is past the tail's threshold but below
    # two calibration scores (19 and 20): its counts stand, though the tail is lower.
    folds = np.arange(20) % 2
    scores = np.array([[10.0, 10.0], [18.5, 18.5], [25.0, 25.0], [25.0, 5.0], [22.0, 22.0]])
    counted = cross_conformal_p_values(calibration, folds, scores, extrapolate=False)
    p_values, extrapolated = cross_conformal_p_values(calibration, folds, scores, return_extrapolated=True)
    assert float(tail.p_values(18.5)) < counted[1] == 3 / 21
    np.testing.assert_allclose(
        p_values, [counted[0], counted[1], tail.p_values(25.0), counted[3], tail.p_values(22.0)]
    )
    assert extrapolated.tolist() == [False, False, True, False, True]
    assert peaks_over_threshold(np.ones(30)) is None  # all tied: no tail
    assert peaks_over_threshold(np.arange(4.0)) is None  # too few rows


def test_infinite_calibration_scores_count_in_the_tail_but_not_its_scale():
    # A trusted row whose binomial tail underflowed scores inf (backdoor.trigger
    # on a trusted row beside a stamped trigger): the scale stays finite, and
    # an infinite batch score gets the smallest p-value, not NaN.
    calibration = np.concatenate([np.arange(1.0, 20.0), [np.inf]])  # threshold 16; excesses 1, 2, 3, inf
    tail = peaks_over_threshold(calibration)
    assert (tail.threshold, tail.probability, tail.scale, tail.excesses) == (16.0, 5 / 21, 2.0, 3)
    with np.errstate(all="raise"):
        p_values = tail.p_values([10.0, 18.0, np.inf])
    np.testing.assert_allclose(p_values, [1.0, 5 / 21 * (1 + 2 / 6) ** -3, np.finfo(float).tiny])
    assert peaks_over_threshold(np.concatenate([np.arange(15.0), np.full(5, np.inf)])) is None


def test_ecod_scores_match_pyod_row_by_row(trusted, batch):
    detector = ECODOutlierDetector().fit(trusted)
    pyod = ECOD().fit(trusted.to_numpy())
    rows = batch.to_numpy()[[0, 1, 33, 100, 102]]
    expected = [pyod.decision_function(row[None, :])[0] for row in rows]
    np.testing.assert_allclose(detector.score(pd.DataFrame(rows, columns=COLUMNS)), expected, rtol=1e-12)


@pytest.mark.parametrize("chunk_rows", [7, 65_536])
def test_ecod_scores_every_fold_model_at_once_exactly(monkeypatch, chunk_rows):
    # Ties (a coarse column), values beyond both ends, infinities, and reference rows themselves;
    # correlated columns, so that the features' weights differ.
    rng = np.random.default_rng(4)
    reference = np.column_stack([rng.normal(size=300), rng.integers(0, 5, 300).astype(float)])
    reference[:, 1] += np.round(reference[:, 0])
    queries = np.vstack([rng.normal(size=(40, 2)) * 2, [[-9.0, 9.0], [9.0, -9.0], [np.inf, -np.inf]]])
    queries[:, 1] = np.round(queries[:, 1])
    queries = np.vstack([queries, reference[:5]])
    detector = ECODOutlierDetector(alpha=0.01, discount_correlated=True).fit(pd.DataFrame(reference, columns=COLUMNS))
    monkeypatch.setattr(outliers, "SCORE_CHUNK_ROWS", chunk_rows)
    assert 0.5 < detector.feature_weights_.min() < 0.8
    scores, per_fold = fold_tail_scores(
        detector.reference_sorted_, detector.reference_sorted_folds_, len(detector.fold_models_), queries,
        weights=detector.feature_weights_,
    )
    # Bit for bit what each fitted model gives: p-values count ties with trusted scores.
    np.testing.assert_array_equal(scores, detector._model_scores(detector.model_, queries))
    expected = np.column_stack([detector._model_scores(model, queries) for model in detector.fold_models_])
    np.testing.assert_array_equal(per_fold, expected)


def test_ecod_scores_a_large_reference_model_by_model(monkeypatch, trusted, batch):
    shared = ECODOutlierDetector(alpha=0.01).fit(trusted).findings(batch)
    monkeypatch.setattr(outliers, "MAX_RUNNING_COUNTS", 0)
    detector = ECODOutlierDetector(alpha=0.01).fit(trusted)
    assert detector.reference_sorted_folds_ is None
    np.testing.assert_array_equal(detector.findings(batch)["p_value"], shared["p_value"])


@pytest.mark.parametrize("cls", DETECTORS)
def test_scores_do_not_depend_on_the_rest_of_the_batch(fitted, batch, cls):
    detector = fitted[cls]
    together = detector.score(batch)
    alone = np.concatenate([detector.score(batch.iloc[[i]]) for i in (0, 50, 101)])
    np.testing.assert_allclose(alone, together[[0, 50, 101]])


@pytest.mark.parametrize("cls", DETECTORS)
def test_self_findings_catch_a_poisoned_cluster(cls):
    rng = np.random.default_rng(11)
    clean = rng.normal(size=(1000, 2))
    cluster = rng.normal(loc=4.0, scale=0.3, size=(50, 2))  # 5 % similar poisoned rows
    batch = pd.DataFrame(np.vstack([clean, cluster]), columns=COLUMNS)
    detector = cls(alpha=0.01)
    findings = detector.self_findings(batch)
    assert list(findings.columns) == FINDING_COLUMNS and len(findings) == len(batch)
    assert detector.self_referential_
    assert findings["flagged"].iloc[1000:].all()
    assert findings["flagged"].iloc[:1000].mean() <= 0.03
    assert ((findings["p_value"] > 0) & (findings["p_value"] <= 1)).all()
    assert findings["reason"].iloc[1000].startswith(
        "unusual against the rest of the batch (p≈"
    ) and "extrapolated beyond the bulk of this batch" in findings["reason"].iloc[1000]
    # the fitted state is usable for later batches
    assert detector.findings(batch.iloc[1000:])["flagged"].all()


@pytest.mark.parametrize("cls", DETECTORS)
def test_without_a_reference_a_value_many_rows_hold_is_no_outlier(cls):
    # openintro's cancer_in_dogs: one two-valued feature, its rarer value on a third of the rows.
    # Those rows sat above a robust cut at the tied median and were judged by models that never saw them.
    rng = np.random.default_rng(0)
    common = pd.DataFrame({"a": (rng.random(1436) < 0.34).astype(float), "b": np.zeros(1436)})
    assert cls(alpha=0.01).self_findings(common)["flagged"].sum() == 0
    # A few far copies of one row keep their evidence: their floor, 2 / 1004, is below the rate.
    continuous = pd.DataFrame(rng.normal(size=(1000, 2)), columns=COLUMNS)
    far = pd.DataFrame([[9.0, 9.0]] * 3, columns=COLUMNS)
    findings = cls(alpha=0.01).self_findings(pd.concat([continuous, far], ignore_index=True))
    assert findings["flagged"].iloc[1000:].all() and findings["p_value"].iloc[1000:].ge(2 / 1004).all()


def test_the_copies_floor_counts_the_other_rows_holding_a_rows_values():
    matrix = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [2.0, 1.0], [2.0, 1.5]])
    np.testing.assert_array_equal(copies_floor(matrix), [2 / 6, 2 / 6, 2 / 6, 0.0, 0.0])
    assert copies_floor(np.empty((0, 3))).shape == (0,)


def test_self_findings_calibration_on_a_clean_batch():
    findings = ECODOutlierDetector(alpha=0.01).self_findings(gaussian(2000, seed=5))
    assert findings["flagged"].mean() <= 0.03


def test_redundancy_weights_count_features_that_repeat_each_other_once():
    rng = np.random.default_rng(0)
    size = rng.gamma(2.0, size=5000)
    level = rng.integers(0, 2, 5000).astype(float)
    matrix = np.column_stack([
        size, np.exp(size), -size,  # monotone in one another: Spearman's rho is +-1
        rng.normal(size=5000),  # independent
        level, 1.0 - level,  # the two columns of a two-level one-hot
        np.zeros(5000),  # constant
    ])
    weights = redundancy_weights(matrix)
    np.testing.assert_allclose(weights[:3], 1 / 3, rtol=1e-3)
    np.testing.assert_allclose(weights[3], 1.0, rtol=0.01)  # chance correlations
    np.testing.assert_allclose(weights[4:6], 0.5, rtol=1e-3)
    assert weights[6] == 1.0


@settings(max_examples=100, deadline=None)
@given(matrix=st.integers(1, 6).flatmap(lambda columns: arrays(
    float, st.tuples(st.integers(2, 40), st.just(columns)),
    elements=st.one_of(st.sampled_from([0.0, 1.0, -2.5]), st.floats(-1e6, 1e6, allow_nan=False)),
)))
def test_redundancy_weights_are_in_zero_one_for_any_matrix(matrix):
    # Constant, binary, repeated and wildly scaled columns alike.
    weights = redundancy_weights(matrix)
    assert weights.shape == (matrix.shape[1],)
    assert np.all(np.isfinite(weights)) and np.all(weights > 0) and np.all(weights <= 1 + 1e-12)


def test_redundancy_weights_read_a_seeded_sample_of_a_large_matrix():
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(50_000, 2))
    matrix[:, 1] += matrix[:, 0]
    weights = redundancy_weights(matrix, random_state=3)
    np.testing.assert_array_equal(weights, redundancy_weights(matrix, random_state=3))
    np.testing.assert_allclose(weights, 1 / (1 + 0.68 ** 2), rtol=0.02)  # Spearman's rho of (x, x + y)


def correlated_clean_batch(seed):
    """Five columns of one skewed size (a diamond's carat, price and sizes) and two independent ones."""
    rng = np.random.default_rng(seed)
    size = rng.gamma(2.0, size=3000)
    columns = {f"size{i}": size * rng.lognormal(0.0, 0.05, 3000) for i in range(5)}
    columns |= {"a": rng.normal(size=3000), "b": rng.normal(size=3000)}
    return pd.DataFrame(columns)


@pytest.mark.parametrize("seed", [0, 1])
def test_self_findings_do_not_count_correlated_features_five_times(seed):
    # Without a reference, ECOD's plain sum counts a large size five times; the
    # rows above the robust cut then fall beyond the bulk's range on all five, and
    # 3.7 % and 3.6 % of these clean rows are flagged (4.9 and 5.6 % when the
    # tail drawn from the bulk was not guarded by the batch's own).
    batch = correlated_clean_batch(seed)
    plain = ECODOutlierDetector(alpha=0.01, discount_correlated=False).self_findings(batch)
    discounted = ECODOutlierDetector(alpha=0.01).self_findings(batch)
    assert plain["flagged"].mean() > 0.035  # 0.049 and 0.056 before the batch's tail guarded it
    assert discounted["flagged"].mean() <= 0.01
    assert (discounted["score"] < plain["score"]).all()


def rare_levels_table(seed, n_rows=5000):
    """Ages, four two-level categories and an ethnicity whose two rare levels each 5 % of rows carry."""
    rng = np.random.default_rng(seed)
    ethnicity = rng.choice(["none", "afam", "other"], size=n_rows, p=[0.9, 0.05, 0.05])
    table = pd.DataFrame({"age": rng.integers(21, 36, n_rows).astype(float)})
    for level in ["none", "afam", "other"]:
        table[f"ethnicity={level}"] = (ethnicity == level).astype(float)
    for column in range(3):
        male = rng.random(n_rows) < 0.5
        table[f"sex{column}=m"], table[f"sex{column}=f"] = male.astype(float), 1.0 - male
    return table, ethnicity != "none"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_findings_keep_a_rare_category_level(seed):
    # Every row of the two rare levels scored above the robust cut, so the
    # bulk had none of them, and every one (10 % of the batch) was flagged.
    table, rare = rare_levels_table(seed)
    findings = ECODOutlierDetector(alpha=0.01).self_findings(table)
    assert findings["flagged"].mean() <= 0.02
    assert findings["flagged"][rare].mean() <= 0.2


def rare_merchants_table(seed, n_rows=3000, once=9):
    """One number and a 69-level merchant, as ``FeatureEncoder`` encodes it: 60 common levels and ``once`` seen once."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"amount": rng.normal(size=n_rows)})
    merchants = np.char.add("m", rng.integers(0, 60, n_rows).astype(str)).astype(object)
    merchants[:once] = [f"once{i}" for i in range(once)]
    frame["merchant"] = merchants
    encoder = FeatureEncoder(numeric=["amount"], categorical=["merchant"]).fit(frame)
    return encoder.transform(frame, without=encoder.gapless_indicators(frame))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_findings_keep_the_rarest_merchants(seed):
    # The rows with a merchant seen once scored above the robust cut, so the
    # bulk's rarities stopped short of theirs and all nine were flagged
    # (on a 200,000-row mixed batch: 1.1 % of clean rows, ECOD alone). Now
    # only one with an unusual amount too may be.
    table = rare_merchants_table(seed)
    assert table.columns[-1] == "merchant__rarity"
    detector = ECODOutlierDetector(alpha=0.01)
    findings = detector.self_findings(table)
    assert detector.reference_sorted_[-1, -1] == table["merchant__rarity"].max()
    assert findings["flagged"][:9].sum() <= 3
    assert 0.002 <= findings["flagged"].mean() <= 0.015


def sick_days_table(seed, n_rows=5000):
    """Three counts one illness drives (visits, days off, bad-health days), two coarse numbers, five answers."""
    rng = np.random.default_rng(seed)
    severity = np.where(rng.random(n_rows) < 0.2, rng.gamma(1.0, 2.0, n_rows), 0.0)
    table = pd.DataFrame({name: rng.poisson(0.1 + severity).astype(float) for name in ["visits", "reduced", "health"]})
    table["age"] = rng.choice(np.arange(0.19, 0.73, 0.05), n_rows)
    table["income"] = rng.choice(np.linspace(0.0, 1.5, 14), n_rows)
    for answer, share in enumerate([0.4, 0.1, 0.05, 0.3, 0.1]):
        yes = rng.random(n_rows) < share
        table[f"answer{answer}=yes"], table[f"answer{answer}=no"] = yes.astype(float), 1.0 - yes
    return table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_findings_are_guarded_by_the_batchs_own_tail(monkeypatch, seed):
    # Sums of a few discrete counts run on beyond the exponential through the
    # bulk's median and quartile: 4.0-4.6 % of these clean rows were flagged at
    # alpha = 0.01 (AER's DoctorVisits: 3.0 % at 0.007), 1.7-2.0 % guarded.
    table = sick_days_table(seed)
    guarded = ECODOutlierDetector(alpha=0.01).self_findings(table)["flagged"].mean()
    monkeypatch.setattr(ECODOutlierDetector, "_guard_self_tail", False)
    unguarded = ECODOutlierDetector(alpha=0.01).self_findings(table)["flagged"].mean()
    assert unguarded > 0.035 and guarded <= 0.022


def test_trusted_rows_are_summed_as_pyod_does_unless_asked():
    trusted = correlated_clean_batch(2)
    assert (ECODOutlierDetector().fit(trusted).feature_weights_ == 1.0).all()
    weights = ECODOutlierDetector(discount_correlated=True).fit(trusted).feature_weights_
    np.testing.assert_allclose(weights, [0.2] * 5 + [1.0] * 2, rtol=0.02)


def test_registry_and_params():
    assert registered_detectors()["outlier.ecod"] is ECODOutlierDetector
    assert registered_detectors()["outlier.iforest"] is IForestOutlierDetector
    detector = get_detector("outlier.iforest", alpha=0.05, n_folds=3)
    assert isinstance(detector, IForestOutlierDetector)
    assert detector.get_params() == {"alpha": 0.05, "n_folds": 3, "random_state": 0, "confidence": None}


@pytest.mark.parametrize("cls", DETECTORS)
def test_clone_round_trip(fitted, cls):
    copy = clone(fitted[cls])
    assert copy.get_params() == fitted[cls].get_params()
    assert not hasattr(copy, "model_")
    own = {"discount_correlated": None} if cls is ECODOutlierDetector else {}
    assert clone(cls(alpha=0.2, n_folds=4, random_state=9, confidence=0.9)).get_params() == {
        "alpha": 0.2,
        "n_folds": 4,
        "random_state": 9,
        "confidence": 0.9,
        **own,
    }


def test_missing_feature_column_is_named(fitted, batch):
    with pytest.raises(DetectorError, match="body_mass_g"):
        fitted[ECODOutlierDetector].findings(batch.drop(columns=["body_mass_g"]))


def test_missing_value_is_named(trusted):
    broken = trusted.copy()
    broken.iloc[3, 1] = np.nan
    with pytest.raises(DetectorError, match="body_mass_g"):
        ECODOutlierDetector().fit(broken)


def test_too_few_rows_for_the_folds():
    with pytest.raises(DetectorError, match="at least 5"):
        ECODOutlierDetector().fit(gaussian(3, seed=0))


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # PyOD's skew of a constant
def test_warns_when_no_row_can_be_flagged():
    # Identical reference rows: every calibration score ties, so no tail can
    # be fitted and 1/21 is the smallest p-value.
    constant = pd.DataFrame(np.ones((20, 2)), columns=COLUMNS)
    with pytest.warns(UserWarning, match="no row will be flagged"):
        ECODOutlierDetector(alpha=0.01).fit(constant)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_alpha_outside_zero_one_is_an_error(trusted, alpha):
    with pytest.raises(DetectorError, match="alpha must be between 0 and 1"):
        IForestOutlierDetector(alpha=alpha).fit(trusted)


# --- outlier.class_conditional -----------------------------------------------------


def labelled_blobs(n_rows, seed):
    """Three labels in two features, with a one-hot 'island' that one label never shows."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n_rows)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    frame = pd.DataFrame(centres[codes] + rng.normal(size=(n_rows, 2)), columns=COLUMNS)
    frame["island=Biscoe"] = np.where(codes == 2, 1.0, (rng.random(n_rows) < 0.5).astype(float))
    return frame, np.array(["Adelie", "Chinstrap", "Gentoo"], dtype=object)[codes]


def test_class_conditional_finds_rows_impossible_for_their_label():
    from poisonguard.detectors.class_conditional import ClassConditionalOutlierDetector

    trusted = labelled_blobs(600, seed=0)
    features, labels = labelled_blobs(200, seed=1)
    gentoo = np.flatnonzero(labels == "Gentoo")
    features.loc[gentoo[0], "island=Biscoe"] = 0.0  # a level Gentoo never shows
    adelie = np.flatnonzero(labels == "Adelie")
    labels[adelie[0]] = "Gentoo"  # normal overall, impossible for its label (off Biscoe, at Adelie's centre)
    features.loc[adelie[0], "island=Biscoe"] = 0.0
    features.loc[adelie[1], "body_mass_g"] = 40.0  # one wild cell
    findings = ClassConditionalOutlierDetector(alpha=0.01).fit(*trusted).findings(features, labels)
    flagged = set(np.flatnonzero(findings["flagged"]))
    assert flagged == {gentoo[0], adelie[0], adelie[1]} | {42, 87}  # and 2 of 197 clean rows (alpha = 0.01)
    assert findings["reason"].iloc[gentoo[0]].startswith("impossible for label 'Gentoo' against trusted and batch rows")
    assert "not 'island=Biscoe', which no trusted rows labelled 'Gentoo' show" in findings["reason"].iloc[gentoo[0]]
    assert "it fits label 'Adelie' better" in findings["reason"].iloc[adelie[0]]
    assert "body_mass_g" in findings["reason"].iloc[adelie[1]] and "interquartile ranges above" in findings["reason"].iloc[adelie[1]]
    assert list(findings.columns) == FINDING_COLUMNS


@pytest.mark.parametrize("alpha, low, high", [(0.05, 0.015, 0.09), (0.01, 0.002, 0.025)])
def test_class_conditional_calibration_on_clean_rows(alpha, low, high):
    from poisonguard.detectors.class_conditional import ClassConditionalOutlierDetector

    findings = ClassConditionalOutlierDetector(alpha=alpha).fit(*labelled_blobs(1000, seed=2)).findings(
        *labelled_blobs(2000, seed=3)
    )
    assert low <= findings["flagged"].mean() <= high


def test_class_conditional_self_findings():
    from poisonguard.detectors.class_conditional import ClassConditionalOutlierDetector

    features, labels = labelled_blobs(1000, seed=4)
    features.loc[:19, "bill_length_mm"] += 15.0  # 20 corrupted cells
    labels[20] = "Emperor"  # a label on one row only
    findings = ClassConditionalOutlierDetector(alpha=0.01).self_findings(features, labels)
    assert findings["flagged"].iloc[:21].mean() >= 0.8
    assert findings["flagged"].iloc[21:].mean() <= 0.02
    assert "label 'Emperor' never occurs in the rows of the batch" in findings["reason"].iloc[20]


def test_class_conditional_measures_each_described_row_on_its_folds_profile_or_the_whole_one():
    from types import SimpleNamespace

    from poisonguard.detectors.class_conditional import ClassConditionalOutlierDetector

    whole = SimpleNamespace(labels=np.array(["a", "b", "c"], dtype=object))
    fold_without_c = SimpleNamespace(labels=np.array(["a", "b"], dtype=object))
    fold = SimpleNamespace(labels=np.array(["a", "b", "c"], dtype=object))
    detector = ClassConditionalOutlierDetector()
    detector.fold_models_ = [fold_without_c, fold]
    labels = np.array(["a", "c", "c", "b", "a", "c"], dtype=object)
    judged_by = np.array([0, 0, 1, -1, 1, 1])
    groups = detector._rows_by_judge(np.array([0, 1, 2, 3, 5]), labels, whole, judged_by)
    # Row 1's fold has no profile of 'c'; row 3 has no fold; row 4 is not described.
    assert [(judge, rows.tolist()) for judge, rows in groups] == [(fold_without_c, [0]), (fold, [2, 5]), (whole, [1, 3])]
    assert [(judge, rows.tolist()) for judge, rows in detector._rows_by_judge(np.array([4, 1]), labels, whole, None)] == [
        (whole, [4, 1])
    ]
    assert detector._rows_by_judge(np.array([], dtype=int), labels, whole, judged_by) == []


def test_tie_floor_is_the_share_of_the_label_that_shares_the_score_under_the_same_profile():
    from poisonguard.detectors.class_conditional import UNSEEN_LEVEL, tie_floor

    labels = np.array(["a", "a", "a", "a", "b", "b", "b"], dtype=object)
    folds = np.array([0, 0, 1, 1, 0, 1, 1])
    fold_scores = np.array([
        [1.0, 5.0], [1.0, 6.0], [1.0, 1.0], [2.0, 1.0],  # a: three 1s under fold 0, two under fold 1
        [UNSEEN_LEVEL, 4.0], [3.0, 3.0], [UNSEEN_LEVEL, 3.0],
    ])
    unseen = np.array([False, False, False, False, True, False, True])
    floor = tie_floor(fold_scores, labels, folds, unseen)
    # Row 4 ties with row 6 under fold 0, but an unseen level is rare by construction.
    np.testing.assert_allclose(floor, [2 / 5, 2 / 5, 1 / 5, 1 / 5, 0.0, 1 / 4, 1 / 4])
    # The same scores from a number that sits UNSEEN_LEVEL spreads out: a tie like any other.
    floor = tie_floor(fold_scores, labels, folds, np.zeros(len(labels), dtype=bool))
    np.testing.assert_allclose(floor, [2 / 5, 2 / 5, 1 / 5, 1 / 5, 1 / 4, 1 / 4, 1 / 4])


def test_class_conditional_self_findings_keep_rows_of_levels_their_label_never_shows_otherwise():
    # Five Adelie rows of one fold on an island no other row is on: under
    # that fold's profile all five sit at UNSEEN_LEVEL, a tie by
    # construction that must not floor their p-values (at 4 / 335 it would).
    from poisonguard.detectors.class_conditional import ClassConditionalOutlierDetector

    features, labels = labelled_blobs(1000, seed=6)
    # Folds depend on the labels and the seed only.
    detector = ClassConditionalOutlierDetector(alpha=0.01)
    detector.self_findings(features, labels)
    strays = np.flatnonzero((labels == "Adelie") & (detector.calibration_folds_ == 0))[:5]
    features["island=Stray"] = 0.0
    features.loc[strays, "island=Stray"] = 1.0
    findings = ClassConditionalOutlierDetector(alpha=0.01).self_findings(features, labels)
    assert findings["flagged"].iloc[strays].all()
    # Named under the fold profile that judged the row; the whole batch's shows the island.
    assert "'island=Stray', which no rows of the batch labelled 'Adelie' show" in findings["reason"].iloc[strays[0]]


def bracketed_incomes(n_rows, seed):
    """Two labels; income in six brackets, the top one far above the median and held by 6 % of rows."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n_rows) < 0.5, "yes", "no").astype(object)
    brackets = np.array([2.5, 7.5, 15.0, 25.0, 35.0, 75.0])
    income = brackets[rng.choice(len(brackets), n_rows, p=[0.25, 0.25, 0.2, 0.15, 0.09, 0.06])]
    return pd.DataFrame({"age": rng.normal(40, 10, n_rows) + 5 * (labels == "yes"), "income": income}), labels


@pytest.mark.parametrize("seed", [0, 1])
def test_class_conditional_self_findings_keep_a_bracket_many_rows_share(seed):
    # Chile's case: every top-bracket row of a label sits at one distance from
    # its median, which the batch's smooth tail called rare (35 and 22 of
    # about 60 flagged before the tie floor, for seeds 0 and 1).
    from poisonguard.detectors.class_conditional import ClassConditionalOutlierDetector

    features, labels = bracketed_incomes(1000, seed)
    features.loc[0, "age"] = 400.0  # one far cell, unique: still impossible
    findings = ClassConditionalOutlierDetector(alpha=0.01).self_findings(features, labels)
    assert list(np.flatnonzero(findings["flagged"])) == [0]


def test_shows_unseen_level_reads_the_0_1_columns_only():
    from poisonguard.detectors.class_conditional import label_profile, shows_unseen_level

    matrix = np.array([[0.0, 5.0], [0.0, 7.0], [1.0, 6.0], [0.0, 6.0]])
    profile = label_profile(matrix, np.array(["a", "a", "b", "b"], dtype=object))
    rows = np.array([[1.0, 6.0], [0.0, 60.0], [1.0, 6.0], [0.0, 6.0]])
    np.testing.assert_array_equal(
        shows_unseen_level(profile, rows, np.array(["a", "a", "b", "c"], dtype=object)), [True, False, False, False]
    )
    # Only the rows asked for, in their order.
    np.testing.assert_array_equal(
        shows_unseen_level(profile, rows, np.array(["a", "a"], dtype=object), rows=np.array([2, 1])), [True, False]
    )


def test_class_conditional_params_and_clone():
    from poisonguard.detectors.class_conditional import ClassConditionalOutlierDetector

    assert registered_detectors()["outlier.class_conditional"] is ClassConditionalOutlierDetector
    fitted = get_detector("outlier.class_conditional", n_folds=3).fit(*labelled_blobs(100, seed=5))
    assert fitted.get_params() == {"alpha": 0.01, "n_folds": 3, "random_state": 0, "pool_batch": True,
                                   "confidence": None}
    assert not hasattr(clone(fitted), "profile_")
