"""The logistic regression the label detectors fit (``detectors._classifiers``)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from poisonguard.detectors._classifiers import WideColumnsToUnitSpread, logistic_regression
from poisonguard.detectors._crossfit import fit_weighted
from poisonguard.detectors.label_flips import ConfidentLearningLabelDetector


def heavy_columns(n_rows=2000, seed=0):
    """Three normal columns, three robust-scaled ones that are 0 on 99 % of rows and far out on
    the rest (debts, counts), four rare 0/1 indicators; the label depends on two of them."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n_rows, 3))
    heavy = np.where(rng.random((n_rows, 3)) < 0.01, rng.exponential(300.0, (n_rows, 3)), 0.0)
    rare = (rng.random((n_rows, 4)) < 0.01).astype(float)
    labels = (normal[:, 0] + 0.05 * heavy[:, 0] + rng.logistic(size=n_rows) > 0).astype(int)
    return np.hstack([normal, heavy, rare]), labels


def test_only_columns_wider_than_one_are_divided():
    matrix = np.array([[0.0, 0.0, 1.0], [0.0, 8.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    scaler = WideColumnsToUnitSpread().fit(matrix)
    # Standard deviations 0.5, sqrt(12), 0: only the second is over 1.
    np.testing.assert_allclose(scaler.divisors_, [1.0, np.sqrt(12.0), 1.0])
    np.testing.assert_allclose(scaler.transform(matrix)[:, 1], [0.0, 8.0 / np.sqrt(12.0), 0.0, 0.0])
    np.testing.assert_array_equal(scaler.transform(matrix)[:, [0, 2]], matrix[:, [0, 2]])


def test_far_out_columns_no_longer_slow_lbfgs_and_the_model_barely_moves():
    matrix, labels = heavy_columns()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = LogisticRegression(max_iter=1000).fit(matrix, labels)
    ours = logistic_regression().fit(matrix, labels)
    # Iterations, not seconds (here 153 against 17).
    assert plain.n_iter_[0] > 5 * ours[-1].n_iter_[0]
    moved = np.abs(plain.predict_proba(matrix) - ours.predict_proba(matrix)).max()
    assert moved < 0.05


def test_row_weights_reach_the_model_of_a_pipeline():
    matrix, labels = heavy_columns(300, seed=1)
    weights = np.random.default_rng(2).uniform(0.5, 3.0, len(labels))
    fitted = fit_weighted(logistic_regression(), matrix, labels, weights)
    # The divisors come from the unweighted rows; the weights go to the regression only.
    divisors = WideColumnsToUnitSpread().fit(matrix).divisors_
    expected = LogisticRegression(max_iter=1000).fit(matrix / divisors, labels, sample_weight=weights)
    np.testing.assert_allclose(fitted[-1].coef_, expected.coef_)
    unweighted = logistic_regression().fit(matrix, labels)
    assert not np.allclose(fitted[-1].coef_, unweighted[-1].coef_)
    # A plain estimator takes them as sample_weight.
    plain = fit_weighted(LogisticRegression(max_iter=1000), matrix / divisors, labels, weights)
    np.testing.assert_allclose(plain.coef_, expected.coef_)


def test_confident_learning_weighs_trusted_rows_through_the_pipeline():
    matrix, labels = heavy_columns(600, seed=3)
    frame = pd.DataFrame(matrix, columns=[f"x{i}" for i in range(matrix.shape[1])])
    trusted, batch = frame.iloc[:200], frame.iloc[200:]
    batch_labels = labels[200:].copy()
    batch_labels[:20] = 1 - batch_labels[:20]
    scores = {
        weight: ConfidentLearningLabelDetector(trusted_weight=weight).fit(trusted, labels[:200])
        .findings(batch, batch_labels)["score"].to_numpy()
        for weight in (1.0, "balanced")
    }
    assert not np.allclose(scores[1.0], scores["balanced"])
