"""Input checks, cross-fitting and calibration helpers shared by the detectors.

Every detector calibrates the same way: split the reference rows into folds,
fit on the other folds, score the held-out fold, and use those out-of-fold
scores as the calibration sample for ``detectors.base.conformal_p_values``.
This module holds that loop (and its classifier form, out-of-fold class
probabilities), the robust cut and tail-extrapolated p-values of the
self-referential mode, and the input checks around them, so the outlier and
label-flip detectors do not each carry a copy.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from detectors.base import DetectorError, conformal_p_values

# A robust cut at median + 3 scaled MADs: for a normal score it keeps 99.87 %
# of clean rows (fewer for skewed scores); when a batch must be its own
# reference, rows beyond it are kept out of the reference model.
ROBUST_CUT_MADS = 3.0
# Scales a median absolute deviation to a standard deviation for normal data.
MAD_TO_SD = 1.4826


def feature_matrix(X, *, feature_names=None) -> tuple[np.ndarray, list[str]]:
    """Validate a numeric feature table and return it as a float matrix.

    Parameters
    ----------
    X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        Numeric features (see ``detectors.features.FeatureEncoder``).
    feature_names : sequence of str, optional
        Columns fitted on. A DataFrame is reordered to them (a missing column
        raises ``DetectorError`` naming it); an array must have that many.

    Returns
    -------
    matrix : numpy.ndarray of float, shape (n_rows, n_features)
    names : list of str, shape (n_features,)
    """
    if isinstance(X, pd.DataFrame):
        if feature_names is not None:
            missing = [name for name in feature_names if name not in X.columns]
            if missing:
                raise DetectorError(
                    f"feature column {missing[0]!r} is missing; the detector was fitted on "
                    f"{len(feature_names)} columns"
                )
            X = X[list(feature_names)]
        names = [str(column) for column in X.columns]
        try:
            matrix = X.to_numpy(dtype=float)
        except (TypeError, ValueError):
            bad = [column for column in X.columns if not pd.api.types.is_numeric_dtype(X[column])]
            raise DetectorError(
                f"feature column {bad[0] if bad else '?'!r} is not numeric; "
                "encode the frame with detectors.features.FeatureEncoder first"
            ) from None
    else:
        try:
            matrix = np.asarray(X, dtype=float)
        except (TypeError, ValueError):
            raise DetectorError("features must be numeric; encode them with FeatureEncoder") from None
        if matrix.ndim != 2:
            raise DetectorError(f"features must be a 2-D table, got shape {matrix.shape}")
        names = [f"feature {index}" for index in range(matrix.shape[1])]
        if feature_names is not None:
            if matrix.shape[1] != len(feature_names):
                raise DetectorError(
                    f"got {matrix.shape[1]} feature columns, the detector was fitted on "
                    f"{len(feature_names)}"
                )
            names = list(feature_names)
    if matrix.shape[1] == 0:
        raise DetectorError("the feature table has no columns")
    not_finite = ~np.isfinite(matrix)
    if not_finite.any():
        row, column = np.argwhere(not_finite)[0]
        raise DetectorError(
            f"feature column {names[column]!r} has a missing or infinite value (row {row}); "
            "encode the frame with detectors.features.FeatureEncoder first"
        )
    return matrix, names


def label_array(y, n_rows: int) -> np.ndarray:
    """Return labels as a 1-D object array of length ``n_rows`` (checked)."""
    if y is None:
        raise DetectorError("this detector needs the labels (y), got None")
    labels = np.asarray(y, dtype=object).ravel()
    if labels.shape[0] != n_rows:
        raise DetectorError(f"got {labels.shape[0]} labels for {n_rows} feature rows")
    missing = pd.isna(labels)
    if missing.any():
        raise DetectorError(f"label of row {int(np.argmax(missing))} is missing")
    try:
        np.unique(labels)
    except TypeError:
        # Mixed label types (e.g. 1 and "1") cannot be sorted; compare as text.
        labels = labels.astype(str).astype(object)
    return labels


def row_id_array(row_ids, X, n_rows: int) -> np.ndarray:
    """Return row ids as strings; default to the DataFrame index or 0..n-1."""
    if row_ids is None:
        row_ids = X.index if isinstance(X, pd.DataFrame) else np.arange(n_rows)
    ids = np.asarray(row_ids, dtype=object).astype(str)
    if ids.shape[0] != n_rows:
        raise DetectorError(f"got {ids.shape[0]} row ids for {n_rows} rows")
    return ids


def fold_splits(n_rows: int, *, n_folds: int, random_state, labels=None, label_names=None) -> list:
    """Shuffled K-fold splits, stratified by ``labels`` when given.

    With labels, the number of folds is ``min(n_folds, smallest class
    count)`` so that every class appears in every training part.
    ``label_names`` (indexed by label code) names labels in error messages.

    Returns
    -------
    list of (train_indices, test_indices) pairs.
    """
    if not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise DetectorError(f"n_folds must be an integer of at least 2, got {n_folds!r}")
    if labels is None:
        if n_rows < n_folds:
            raise DetectorError(f"need at least {n_folds} reference rows for {n_folds} folds, got {n_rows}")
        splitter = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
        return list(splitter.split(np.zeros((n_rows, 1))))
    values, counts = np.unique(labels, return_counts=True)
    if values.size < 2:
        if label_names is not None:
            values = np.asarray(label_names)[values]
        found = ", ".join(f"'{value}'" for value in values) or "none"
        raise DetectorError(f"need at least two labels (each on 2+ rows) to find label errors, got {found}")
    smallest = int(counts.min())
    if smallest < 2:
        rare = values[counts.argmin()]
        if label_names is not None:
            rare = label_names[rare]
        raise DetectorError(
            f"label '{rare}' has only 1 reference row; cross-fitting needs at least 2 rows of every label"
        )
    splitter = StratifiedKFold(n_splits=min(n_folds, smallest), shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros((n_rows, 1)), labels))


def cross_fit(splits, fit_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray], n_rows: int):
    """Score every row with a model fitted without it.

    Parameters
    ----------
    splits : list of (train_indices, test_indices)
        From ``fold_splits``; the test parts must cover every row once.
    fit_and_score : callable ``(train_indices, test_indices) -> array``
        Fits on the training rows and returns one value (or row) per test row.
    n_rows : int

    Returns
    -------
    numpy.ndarray, shape (n_rows,) or (n_rows, k): the out-of-fold values.
    """
    out = None
    for train, test in splits:
        values = np.asarray(fit_and_score(train, test), dtype=float)
        if out is None:
            out = np.full((n_rows,) + values.shape[1:], np.nan)
        out[test] = values
    return out


def class_probabilities(classifier, matrix: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per label code 0..n_classes-1.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows, n_classes); a class the classifier
    never saw gets probability 0.
    """
    probabilities = np.zeros((len(matrix), n_classes))
    if len(matrix):
        probabilities[:, classifier.classes_] = classifier.predict_proba(matrix)
    return probabilities


def cross_fitted_probabilities(
    matrix: np.ndarray, codes: np.ndarray, *, make_classifier, n_folds: int, random_state, classes=None
) -> np.ndarray:
    """Out-of-fold class probabilities from stratified cross-fitting.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    codes : numpy.ndarray of int, shape (n_rows,), labels encoded 0..K-1
    make_classifier : callable returning an unfitted classifier
    n_folds : int
        Upper bound on folds; see ``detectors._crossfit.fold_splits``.
    random_state : int or None
    classes : array-like, shape (K,), optional
        The labels the codes stand for (named in error messages).

    Returns
    -------
    numpy.ndarray of float, shape (n_rows, K), rows summing to 1.
    """
    splits = fold_splits(
        len(matrix), n_folds=n_folds, random_state=random_state, labels=codes, label_names=classes
    )
    n_classes = int(codes.max()) + 1

    def fit_and_predict(train, test):
        classifier = make_classifier().fit(matrix[train], codes[train])
        return class_probabilities(classifier, matrix[test], n_classes)

    return cross_fit(splits, fit_and_predict, len(matrix))


def robust_cut(scores) -> float:
    """``median + ROBUST_CUT_MADS * scaled MAD`` of ``scores`` (a float).

    Median and MAD each tolerate up to half the rows being contaminated, so
    the cut stays near the clean bulk even when many rows are poisoned.
    """
    scores = np.asarray(scores, dtype=float)
    median = float(np.median(scores))
    spread = MAD_TO_SD * float(np.median(np.abs(scores - median)))
    return median + ROBUST_CUT_MADS * spread


def check_calibration(n_calibration: int, alpha: float, check: str, *, conformal: bool = True) -> None:
    """Check ``alpha``; warn when no conformal p-value can reach it.

    With ``conformal=False`` (tail-extrapolated p-values, which can go below
    ``1 / (n_calibration + 1)``) only ``alpha`` is checked.
    """
    if not 0.0 < alpha < 1.0:
        raise DetectorError(f"{check}: alpha must be between 0 and 1, got {alpha!r}")
    if conformal and 1.0 / (n_calibration + 1.0) > alpha:
        warnings.warn(
            f"{check}: {n_calibration} calibration rows cannot give a p-value as small as "
            f"alpha={alpha}; no row will be flagged (need at least {int(np.ceil(1 / alpha - 1))})",
            stacklevel=3,
        )


def format_p(p_value: float) -> str:
    """Format a p-value for a reason sentence, e.g. ``"p=0.004"``."""
    return f"p={p_value:.2g}"


def tail_extrapolated_p_values(calibration_scores, scores) -> np.ndarray:
    """P-values against a calibration sample whose upper tail was cut off.

    When a batch is its own reference, the calibration sample is the rows
    below a robust cut, so it lacks the clean upper tail, and plain conformal
    p-values would give every clean row beyond the cut the smallest p-value.
    Above the calibration upper quartile ``q3`` this instead extrapolates an
    exponential tail from the robust middle of the sample:
    ``p = 0.5 * 2 ** (-(score - median) / (q3 - median))`` (it equals 0.25 at
    ``q3``: every further ``q3 - median`` of score halves the tail). That is
    conservative for scores whose tail is at most exponential (ECOD's sum of
    ``-log`` tails, isolation-forest path scores) and optimistic for heavier
    tails. At or below ``q3`` (p >= 0.25, never flagged) the plain conformal
    p-value is used. With no spread (``q3 == median``) it falls back to
    conformal p-values.

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)
    scores : array-like of float, shape (n_rows,)

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), values in ``(0, 1]``.
    """
    calibration = np.asarray(calibration_scores, dtype=float)
    scores = np.asarray(scores, dtype=float)
    p_values = conformal_p_values(calibration, scores)
    if calibration.size == 0:
        return p_values
    median = float(np.median(calibration))
    upper_quartile = float(np.quantile(calibration, 0.75))
    half_life = upper_quartile - median
    if half_life <= 0:
        return p_values
    upper = scores > upper_quartile
    extrapolated = 0.5 * np.exp2(-(scores[upper] - median) / half_life)
    p_values[upper] = np.maximum(extrapolated, np.finfo(float).tiny)
    return p_values
