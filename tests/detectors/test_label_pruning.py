"""``detectors._label_pruning.refit_without_issues``: the second cross-fit leaves out what cleanlab marks; and the sampled cross-fitting it repeats."""
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from poisonguard.detectors._crossfit import cross_fit_classifiers, fold_splits, sampled_cross_fitted_probabilities
from poisonguard.detectors._label_pruning import refit_without_issues

OPTIONS = {"make_classifier": lambda: LogisticRegression(max_iter=1000), "n_folds": 5, "random_state": 0}


def targeted(n_rows=600, flipped=60, seed=0):
    """Two labels on one feature (label 1 right of 0); ``flipped`` rows far left relabelled 1."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2, n_rows)
    matrix = (codes * 2.0 + rng.normal(size=n_rows))[:, None]
    left = np.argsort(matrix[:, 0])[: 3 * flipped]
    rows = rng.choice(left[codes[left] == 0], flipped, replace=False)
    codes[rows] = 1
    return matrix, codes, rows


def test_flips_the_first_model_learnt_look_less_plausible_to_the_second():
    matrix, codes, flipped = targeted()
    in_sample = np.ones(len(codes), dtype=bool)
    first = sampled_cross_fitted_probabilities(matrix, codes, in_sample, **OPTIONS)
    second, issues = refit_without_issues(matrix, codes, in_sample, first, **OPTIONS)
    # cleanlab marks every flip (and 36 clean rows of the overlap).
    assert int(issues[flipped].sum()) == 60 and int(issues.sum()) == 96
    given = np.arange(len(codes)), codes
    # The first models learnt the flips (label 1 gets 0.30 where they lie); the second did not.
    assert round(float(np.mean(first[given][flipped])), 2) == 0.30
    assert round(float(np.mean(second[given][flipped])), 2) == 0.01
    # Out of fold still: every row's probabilities come from a model that did not see it, summing to 1.
    np.testing.assert_allclose(second.sum(axis=1), 1.0)


def test_without_issues_the_first_fit_stands():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2, 200)
    matrix = (codes * 20.0 + rng.normal(size=200))[:, None]  # no label overlaps another
    in_sample = np.ones(200, dtype=bool)
    first = sampled_cross_fitted_probabilities(matrix, codes, in_sample, **OPTIONS)
    second, issues = refit_without_issues(matrix, codes, in_sample, first, **OPTIONS)
    assert not issues.any() and second is first


def test_a_label_is_never_left_without_training_rows():
    # Label 2 lives on 10 rows inside label 0's region: cleanlab marks 9, and
    # the fold model fitted without the 10th would give label 2 probability 0
    # and every row of it the highest score.
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 2, 300)
    matrix = (codes * 4.0 + rng.normal(size=300))[:, None]
    rare = np.flatnonzero(codes == 0)[:10]
    codes[rare] = 2
    in_sample = np.ones(300, dtype=bool)
    first = sampled_cross_fitted_probabilities(matrix, codes, in_sample, **OPTIONS)
    second, issues = refit_without_issues(matrix, codes, in_sample, first, **OPTIONS)
    assert int(issues[rare].sum()) == 9
    # Label 2 kept its rows in every fit: its probabilities move only with the other labels' left-out rows.
    np.testing.assert_allclose(second[rare, 2], first[rare, 2], atol=0.02)
    assert second[rare, 2].min() > 0.01


def test_cross_fitting_stops_when_asked_and_says_so():
    matrix, codes, _ = targeted()
    in_sample = np.ones(len(codes), dtype=bool)
    seen = []

    def abandon(probabilities, scored):
        seen.append(int(scored.sum()))
        # Rows not scored yet are NaN; scored rows are probabilities.
        assert np.isnan(probabilities[~scored]).all() and not np.isnan(probabilities[scored]).any()
        return len(seen) == 2

    assert sampled_cross_fitted_probabilities(matrix, codes, in_sample, abandon=abandon, **OPTIONS) is None
    assert seen == [120, 240]  # two folds of 600 rows, then no more
    never = sampled_cross_fitted_probabilities(matrix, codes, in_sample, abandon=lambda *_: False, **OPTIONS)
    np.testing.assert_array_equal(never, sampled_cross_fitted_probabilities(matrix, codes, in_sample, **OPTIONS))


def test_rows_of_weight_zero_are_left_out_of_training():
    # Left out, not weighted: each fold model is the one fitted on its training rows without them.
    matrix, codes, flipped = targeted()
    weights = np.ones(len(codes))
    weights[flipped] = 0.0
    make = lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0)  # noqa: E731
    fitted = cross_fit_classifiers(matrix, codes, make_classifier=make, n_folds=5, random_state=0, sample_weight=weights)
    splits = fold_splits(len(codes), n_folds=5, random_state=0, labels=codes)
    for model, (train, test) in zip(fitted.models, splits):
        kept = train[weights[train] > 0]
        assert model.n_features_in_ == 1 and len(kept) == len(train) - np.isin(train, flipped).sum()
        expected = make().fit(matrix[kept], codes[kept]).predict_proba(matrix[test])
        np.testing.assert_array_equal(model.predict_proba(matrix[test]), expected)


def test_cleanlab_keeps_no_copy_of_the_probabilities():
    import cleanlab.filter

    from poisonguard.detectors._label_pruning import label_issues

    matrix, codes, rows = targeted()
    probabilities = sampled_cross_fitted_probabilities(matrix, codes, np.ones(len(codes), dtype=bool), **OPTIONS)
    issues = label_issues(codes, probabilities)
    assert issues.sum() > 0 and np.array_equal(issues, cleanlab.filter.find_label_issues(codes, probabilities, n_jobs=1))
    label_issues(codes, probabilities)
    assert not getattr(cleanlab.filter, "pred_probs_by_class", {})
