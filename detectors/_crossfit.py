"""Cross-fitting and the calibration helpers built on it, shared by the detectors.

Every detector calibrates the same way: split the reference rows into folds,
fit a model on the other folds, score the held-out fold, and keep both the
fold models and those out-of-fold scores. A new row is then scored by every
fold model and compared with that fold's held-out scores
(``detectors.calibration.cross_conformal_p_values``), so calibration and
scoring use models fitted on the same number of rows. This module holds that
loop (and its classifier form), the robust cut and tail-extrapolated p-values
of the self-referential mode and the batch's guard on extrapolated tails, so
the detectors do not each carry a copy. Input checks live in ``detectors.validation``.
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple, Optional

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from poisonguard.detectors._row_blocks import row_blocks
from poisonguard.detectors._threads import map_in_threads, one_blas_thread
from poisonguard.detectors._unique import unique_values
from poisonguard.detectors.calibration import (
    CrossConformal,
    ExponentialTail,
    conformal_p_values,
    cross_conformal,
    cross_conformal_p_values,
    fold_weighted,
    mondrian_groups,
)
from poisonguard.detectors.errors import DetectorError, NotEnoughData

# A robust cut at median + 3 scaled MADs: for a normal score it keeps 99.87 %
# of clean rows (fewer for skewed scores); when a batch must be its own
# reference, rows beyond it are kept out of the reference model.
ROBUST_CUT_MADS = 3.0
# Scales a median absolute deviation to a standard deviation for normal data.
MAD_TO_SD = 1.4826


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
            raise NotEnoughData(f"need at least {n_folds} reference rows for {n_folds} folds, got {n_rows}")
        splitter = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
        return list(splitter.split(np.zeros((n_rows, 1))))
    values, counts = unique_values(labels, return_counts=True)
    if values.size < 2:
        if label_names is not None:
            values = np.asarray(label_names)[values.astype(int)]  # codes of no rows are floats
        found = ", ".join(f"'{value}'" for value in values) or "none"
        raise NotEnoughData(f"need at least two labels (each on 2+ rows) to find label errors, got {found}")
    smallest = int(counts.min())
    if smallest < 2:
        rare = values[counts.argmin()]
        if label_names is not None:
            rare = label_names[rare]
        raise NotEnoughData(
            f"label '{rare}' has only 1 reference row; cross-fitting needs at least 2 rows of every label"
        )
    splitter = StratifiedKFold(n_splits=min(n_folds, smallest), shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros((n_rows, 1)), labels))


class CrossFit(NamedTuple):
    """Fold models and what they said about their held-out rows.

    Attributes
    ----------
    models : list, shape (K,)
        Model ``k`` was fitted on every row outside fold ``k``.
    out_of_fold : numpy.ndarray, shape (n_rows,) or (n_rows, m)
        Each row's value from the model that did not see it.
    folds : numpy.ndarray of int, shape (n_rows,)
        The fold (0..K-1) of each row, i.e. which model scored it.
    """

    models: list
    out_of_fold: np.ndarray
    folds: np.ndarray


def cross_fit(
    splits,
    fit: Callable[[np.ndarray], object],
    predict: Callable[[object, np.ndarray], np.ndarray],
    n_rows: int,
    abandon: Optional[Callable[[np.ndarray, np.ndarray], bool]] = None,
) -> Optional[CrossFit]:
    """Score every row with a model fitted without it; keep the models.

    Parameters
    ----------
    splits : list of (train_indices, test_indices)
        From ``fold_splits``; the test parts must cover every row once.
    fit : callable ``(train_indices) -> model``
    predict : callable ``(model, test_indices) -> array``
        One value (or row of values) per test row.
    n_rows : int
    abandon : callable ``(out_of_fold, scored) -> bool``, optional
        Asked after each fold with the values so far and a boolean mask of
        the rows they cover; True stops the loop (the caller has learnt
        enough, e.g. that this model cannot win a comparison).

    Returns
    -------
    CrossFit, or None when ``abandon`` stopped the loop.
    """
    models, out, folds = [], None, np.full(n_rows, -1)
    for fold, (train, test) in enumerate(splits):
        model = fit(train)
        values = np.asarray(predict(model, test), dtype=float)
        if out is None:
            out = np.full((n_rows,) + values.shape[1:], np.nan)
        out[test] = values
        folds[test] = fold
        models.append(model)
        if abandon is not None and fold < len(splits) - 1 and abandon(out, folds >= 0):
            return None
    return CrossFit(models, out, folds)


def fold_scores(models, score: Callable[[object, np.ndarray], np.ndarray], matrix: np.ndarray) -> np.ndarray:
    """Score ``matrix`` with every fold model: shape (n_rows, K), column k = model k."""
    if not len(matrix):
        return np.empty((0, len(models)))
    # Models at once (detectors._threads): scoring is numpy and compiled code.
    return np.column_stack(map_in_threads(lambda model: score(model, matrix), models))


def class_probabilities(classifier, matrix: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per label code 0..n_classes-1.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows, n_classes); a class the classifier
    never saw gets probability 0.
    """
    probabilities = np.zeros((len(matrix), n_classes))
    # A block of rows at a time: ``predict_proba``'s own temporaries (the
    # decision values, the softmax) are then a block's, not three million
    # rows' times the classes, several times over.
    for block in row_blocks(len(matrix)):
        probabilities[block, classifier.classes_] = classifier.predict_proba(matrix[block])
    return probabilities


def label_probabilities(classifier, matrix: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``P(code | row)`` of each row's own label code under ``classifier``, shape (n_rows,).

    The column of ``class_probabilities`` each row's code picks, a block of
    rows at a time, so that the (n_rows, n_classes) table is never whole:
    five fold models scoring a three-million-row batch of five labels at
    once held 0.6 GB of them, and ``predict_proba``'s temporaries besides.
    """
    chosen = np.empty(len(matrix))
    for block in row_blocks(len(matrix)):
        probabilities = class_probabilities(classifier, matrix[block], n_classes)
        chosen[block] = probabilities[np.arange(len(probabilities)), codes[block]]
    return chosen


def fit_weighted(classifier, matrix: np.ndarray, codes: np.ndarray, weights: np.ndarray):
    """``classifier.fit`` with row weights; a pipeline's go to its last step (the model)."""
    if isinstance(classifier, Pipeline):
        return classifier.fit(matrix, codes, **{f"{classifier.steps[-1][0]}__sample_weight": weights})
    return classifier.fit(matrix, codes, sample_weight=weights)


def cross_fit_classifiers(
    matrix: np.ndarray, codes: np.ndarray, *, make_classifier, n_folds: int, random_state, classes=None,
    sample_weight=None, abandon=None,
) -> Optional[CrossFit]:
    """Stratified cross-fitting of a classifier: fold models and out-of-fold probabilities.

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
    sample_weight : array-like of float, shape (n_rows,), optional
        Training weight of each row (when it is in a training part); rows
        of weight zero are left out of the training parts.
    abandon : callable, optional
        See ``cross_fit``: asked with the probabilities so far.

    Returns
    -------
    CrossFit whose ``out_of_fold`` has shape (n_rows, K), rows summing to 1;
    None when ``abandon`` stopped it.
    """
    splits = fold_splits(
        len(matrix), n_folds=n_folds, random_state=random_state, labels=codes, label_names=classes
    )
    n_classes = int(codes.max()) + 1

    def fit(train):
        with one_blas_thread():
            if sample_weight is None:
                return make_classifier().fit(matrix[train], codes[train])
            # Rows of weight zero are left out, not weighted: scikit-learn's boosting bins
            # weighted rows one quantile at a time in Python (breast cancer: 2 s a fit, not
            # 0.2 s), and a left-out row should not count towards its leaf's minimum size.
            weights = np.asarray(sample_weight, dtype=float)[train]
            train, weights = train[weights > 0], weights[weights > 0]
            if np.all(weights == 1.0):
                return make_classifier().fit(matrix[train], codes[train])
            return fit_weighted(make_classifier(), matrix[train], codes[train], weights)

    return cross_fit(
        splits,
        fit,
        lambda classifier, test: class_probabilities(classifier, matrix[test], n_classes),
        len(matrix),
        abandon,
    )


def cross_fitted_probabilities(matrix: np.ndarray, codes: np.ndarray, **options) -> np.ndarray:
    """Out-of-fold class probabilities, shape (n_rows, K); see ``cross_fit_classifiers``."""
    return cross_fit_classifiers(matrix, codes, **options).out_of_fold


def sampled_cross_fitted_probabilities(
    matrix: np.ndarray, codes: np.ndarray, in_sample: np.ndarray, *, sample_weight=None, **options
) -> Optional[np.ndarray]:
    """Class probabilities of every row from models that never saw it, cross-fitted on a sample.

    The rows of ``in_sample`` are cross-fitted (``cross_fit_classifiers``);
    every other row is predicted by one fold model, in turn, so that it too
    comes from a model fitted on the same number of rows without it, and
    its score is exchangeable with a sampled row's.

    Parameters
    ----------
    matrix : numpy.ndarray or detectors._row_blocks.StackedRows, shape (n_rows, n_features)
    codes : numpy.ndarray of int, shape (n_rows,)
    in_sample : numpy.ndarray of bool, shape (n_rows,)
    sample_weight : array-like of float, shape (n_rows,), optional
    **options
        As for ``cross_fit_classifiers``; an ``abandon`` hook sees the
        sampled rows only, in their order.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows, K), or None when ``abandon`` stopped the cross-fitting.
    """
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight)[in_sample]
    fitted = cross_fit_classifiers(matrix[in_sample], codes[in_sample], sample_weight=sample_weight, **options)
    if fitted is None:
        return None
    n_classes = fitted.out_of_fold.shape[1]
    probabilities = np.zeros((len(matrix), n_classes))
    probabilities[in_sample] = fitted.out_of_fold
    outside = np.flatnonzero(~in_sample)
    for fold, model in enumerate(fitted.models):
        rows = outside[fold::len(fitted.models)]
        for block in row_blocks(len(rows)):  # a copy of one block's rows at a time, not a fifth of the batch
            probabilities[rows[block]] = class_probabilities(model, matrix[rows[block]], n_classes)
    return probabilities


def robust_cut(scores) -> float:
    """``median + ROBUST_CUT_MADS * scaled MAD`` of ``scores`` (a float).

    Median and MAD each tolerate up to half the rows being contaminated, so
    the cut stays near the clean bulk even when many rows are poisoned.
    """
    scores = np.asarray(scores, dtype=float)
    median = float(np.median(scores))
    if np.isinf(median):  # most rows beyond any measure: they are the bulk, and no cut lies above it
        return median
    spread = MAD_TO_SD * float(np.median(np.abs(scores - median)))
    return median + ROBUST_CUT_MADS * spread


def check_calibration(n_calibration: int, alpha: float, check: str, *, conformal: bool = True) -> None:
    """Check ``alpha``; warn when no conformal p-value can reach it.

    Pass ``conformal=False`` when the p-values have an extrapolated tail
    (they can go below ``1 / (n_calibration + 1)``); then only ``alpha`` is
    checked.
    """
    if not 0.0 < alpha < 1.0:
        raise DetectorError(f"{check}: alpha must be between 0 and 1, got {alpha!r}")
    if conformal and 1.0 / (n_calibration + 1.0) > alpha:
        warnings.warn(
            f"{check}: {n_calibration} calibration rows cannot give a p-value as small as "
            f"alpha={alpha}; no row will be flagged (need at least {int(np.ceil(1 / alpha - 1))})",
            stacklevel=3,
        )



def robust_tail(calibration_scores) -> ExponentialTail | None:
    """An exponential tail from the robust middle of a truncated sample.

    ``P(score >= s) = 0.5 * 2 ** (-(s - median) / (q3 - median))`` above the
    upper quartile ``q3`` (0.25 there; every further ``q3 - median`` of score
    halves it). Unlike ``detectors.calibration.peaks_over_threshold`` it does not
    read the largest scores, which a robust cut has removed. None when the
    sample has no spread (``q3 == median``).
    """
    calibration = np.asarray(calibration_scores, dtype=float)
    if calibration.size == 0:
        return None
    median = float(np.median(calibration))
    upper_quartile = float(np.quantile(calibration, 0.75))
    half_life = upper_quartile - median
    if half_life <= 0:
        return None
    return ExponentialTail(threshold=upper_quartile, probability=0.25, scale=half_life / np.log(2.0))


def tail_extrapolated_p_values(calibration_scores, scores, *, calibration_folds=None, return_extrapolated=False):
    """P-values against a calibration sample whose upper tail was cut off.

    When a batch is its own reference, the calibration sample is the rows
    below a robust cut, so it lacks the clean upper tail, and plain conformal
    p-values would give every clean row beyond the cut the smallest p-value.
    Above the calibration upper quartile the p-value instead comes from the
    exponential tail of ``robust_tail`` (it replaces the counts, which are
    too small there); at or below it (p >= 0.25, never flagged) the plain
    conformal p-value is used. That is conservative for scores whose tail is
    at most exponential (ECOD's sum of ``-log`` tails, isolation-forest path
    scores) and optimistic for heavier tails. With no spread it falls back to
    conformal p-values.

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)
    scores : array-like of float, shape (n_rows,) or (n_rows, K)
        With K columns (one per fold model), the p-value is the mean of the
        per-column p-values weighted by fold size.
    calibration_folds : array-like of int, shape (n_calibration,), optional
        Fold of each calibration score; needed for 2-D ``scores``.
    return_extrapolated : bool
        Also return which rows were above the quartile (on any fold model).

    Returns
    -------
    p_values : numpy.ndarray of float, shape (n_rows,), values in ``(0, 1]``
    extrapolated : numpy.ndarray of bool, shape (n_rows,)
        Only with ``return_extrapolated``.
    """
    calibration = np.asarray(calibration_scores, dtype=float)
    scores = np.asarray(scores, dtype=float)
    columns = scores if scores.ndim == 2 else scores[:, None]
    p_values = conformal_p_values(calibration, columns.ravel()).reshape(columns.shape)
    tail = robust_tail(calibration)
    upper = np.zeros(columns.shape, dtype=bool)
    if tail is not None:
        upper = columns > tail.threshold
        p_values = np.where(upper, tail.p_values(columns), p_values)
    if scores.ndim == 2:
        weights = np.bincount(np.asarray(calibration_folds, dtype=int), minlength=columns.shape[1])
        p_values = fold_weighted(p_values, weights / weights.sum())
    else:
        p_values = p_values[:, 0]
    extrapolated = upper.any(axis=1)
    return (p_values, extrapolated) if return_extrapolated else p_values


# The batch's own guard on extrapolation: an exponential tail through the
# 75th and the 90th percentiles of the batch's scores (the upper tail's own
# shape, not the bulk's). Up to a tenth of the batch can be poisoned without
# moving either.
GUARD_QUANTILES = (0.75, 0.9)
# A batch that is its own reference is assumed to be at most this share
# poisoned (the share GUARD_QUANTILES[1] leaves above the 90th percentile).
MAX_CONTAMINATION = 0.1
# Fewer batch rows than this say too little about a tail to guard it.
GUARD_MIN_ROWS = 30
# Without a reference, a label is calibrated on its own rows when it has this many.
SELF_MONDRIAN_MIN_ROWS = GUARD_MIN_ROWS
# A reference of fewer trusted rows than this calibrates a detector's
# p-values on too few scores to show their upper tail or a label's common
# values (a few dozen rows show five scores above their 90th percentile);
# detectors then lean on the batch as well (``label.confident_learning``,
# ``backdoor.trigger``).
SMALL_REFERENCE_ROWS = 100


def batch_tail(scores, *, at_least_from_median: bool = False) -> ExponentialTail | None:
    """Exponential tail through the 75th and 90th percentiles of ``scores``.

    ``P(score >= s) = 0.1 * exp(-(s - q90) / scale)`` above ``q90``, with
    ``scale = (q90 - q75) / log(2.5)``, so that it also passes ``P = 0.25``
    at ``q75``. None when ``q90 <= q75``.

    With ``at_least_from_median``, the scale is at least that of the
    exponential through the median and ``q90``, ``(q90 - q50) / log(5)``.
    Scores over coarse, repeated values (shared exact values, natural
    duplicates) bunch up below ``q90`` and then run on: their 75th-90th
    percentile spacing is far narrower than the tail beyond. Without a
    reference nothing above ``q90`` can be read (a poisoned tenth may sit
    there), so the wider of the two spacings is the assumption that holds.
    """
    values = np.asarray(scores, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size < 10:
        return None
    lower, upper = np.quantile(values, GUARD_QUANTILES)
    if upper <= lower:
        return None
    low_share, high_share = 1.0 - GUARD_QUANTILES[0], 1.0 - GUARD_QUANTILES[1]
    scale = float(upper - lower) / np.log(low_share / high_share)
    wide = median_tail(values) if at_least_from_median else None
    if wide is not None:
        scale = max(scale, wide.scale)
    return ExponentialTail(threshold=float(upper), probability=high_share, scale=scale)


def median_tail(scores) -> ExponentialTail | None:
    """Exponential tail through the median and the 90th percentile of ``scores``; None when they tie.

    ``P(score >= s) = 0.1 * exp(-(s - q90) / scale)`` above ``q90``, with
    ``scale = (q90 - q50) / log(5)``.
    """
    values = np.asarray(scores, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size < 10:
        return None
    middle, upper = np.quantile(values, [0.5, GUARD_QUANTILES[1]])
    if upper <= middle:
        return None
    high_share = 1.0 - GUARD_QUANTILES[1]
    scale = float(upper - middle) / np.log(0.5 / high_share)
    return ExponentialTail(threshold=float(upper), probability=high_share, scale=scale)


def guarded_p_values(calibration_scores, calibration_folds, fold_scores, *, confidence=None):
    """Cross-conformal p-values whose extrapolated tail the batch must confirm.

    Below the trusted scores the p-value is the cross-conformal count
    (``detectors.calibration.cross_conformal_p_values``). Beyond them, the tail
    fitted to the largest trusted scores rests on a handful of rows when the
    reference is small (with 30 trusted rows, on 5), and one unlucky
    reference flags several times ``alpha``. So the extrapolated p-value is
    raised to the batch's own tail (``batch_tail``) where that is larger:
    the batch rows are scored by the same models, clean ones like trusted
    rows, and there are many more of them. Never below the trusted tail, so
    never less conservative than calibrating on trusted rows alone. A batch
    of fewer than ``GUARD_MIN_ROWS`` rows is not used as a guard.

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)
    calibration_folds : array-like of int, shape (n_calibration,)
    fold_scores : array-like of float, shape (n_rows, K)
        Scores of the batch rows under each fold model.
    confidence : float, optional
        Calibration-conditional counts and trusted tail (see
        ``detectors.calibration.cross_conformal_p_values``).

    Returns
    -------
    p_values : numpy.ndarray of float, shape (n_rows,)
    extrapolated : numpy.ndarray of bool, shape (n_rows,)
    """
    fold_scores = np.asarray(fold_scores, dtype=float)
    counted = cross_conformal(calibration_scores, calibration_folds, fold_scores, confidence=confidence)
    return batch_guarded(counted, calibration_folds, fold_scores)


def batch_guarded(counted: CrossConformal, calibration_folds, fold_scores):
    """The p-values of ``guarded_p_values`` from its counts (``cross_conformal``) of the same rows.

    The guard is read from every row's ``fold_scores`` (shape (n_rows, K)),
    so it needs the whole batch's; it only ever raises a p-value, up to the
    row's count. Returns ``p_values`` and ``extrapolated`` as
    ``guarded_p_values`` does.
    """
    counts, p_values, extrapolated = counted
    tail = batch_tail(fold_scores) if len(fold_scores) >= GUARD_MIN_ROWS else None
    if tail is not None:
        folds = np.asarray(calibration_folds, dtype=int)
        weights = np.bincount(folds, minlength=fold_scores.shape[1]) / folds.size
        # Elsewhere the p-value is the count's already.
        rows = np.flatnonzero(extrapolated)
        tail_p_values = fold_weighted(tail.p_values(fold_scores[rows]), weights)
        guarded = np.minimum(counts[rows], np.maximum(p_values[rows], tail_p_values))
        p_values = p_values.copy()
        p_values[rows] = guarded
    return p_values, p_values < counts


def single_fold_p_values(calibration_scores, scores, *, self_referential: bool, guard: bool = True,
                         confidence=None):
    """Calibrated p-values for scores that come from one model (no fold models).

    For detectors whose score of a trusted row is computed exactly as that of
    a batch row (nearest neighbours with the row itself left out, counts over
    the batch): with a trusted reference, conformal counts against the
    trusted scores with the batch-guarded extrapolated tail of
    ``guarded_p_values``; without one (``self_referential``),
    ``calibration_scores`` are the batch's own scores: conformal counts
    against those below ``robust_cut`` up to the batch's 90th percentile, and
    the exponential tail of ``batch_tail`` above it, never narrower than
    the one from the median (``at_least_from_median``).

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)
    scores : array-like of float, shape (n_rows,)
    self_referential : bool
    guard : bool
        With a trusted reference, check the extrapolated tail against the
        batch's (``guarded_p_values``); without, the trusted tail alone.
    confidence : float, optional
        With a trusted reference, calibration-conditional p-values (see
        ``detectors.calibration.cross_conformal_p_values``). Without one the
        batch calibrates itself and this does not apply.

    Returns
    -------
    p_values : numpy.ndarray of float, shape (n_rows,)
    extrapolated : numpy.ndarray of bool, shape (n_rows,)
    """
    calibration = np.asarray(calibration_scores, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if self_referential:
        bulk = calibration[calibration <= robust_cut(calibration)]
        tail = batch_tail(calibration, at_least_from_median=True)
        if tail is None:
            p_values, upper = tail_extrapolated_p_values(bulk, scores, return_extrapolated=True)
            # The 75th and 90th percentiles tie. Where the median is below
            # them, the tail through the median and the 90th can be wider
            # than the bulk's: causaldata's abortion lost 444 clean rows to
            # backdoor.trigger, heplots' AddHealth 100 to duplicates.flood,
            # above such a tie; now none and 26. Only ever wider:
            # the median's tail alone flagged 8 % of AER's STAR.
            wide = median_tail(calibration)
            if wide is not None:
                p_values = np.where(scores > wide.threshold, np.maximum(p_values, wide.p_values(scores)), p_values)
            return np.maximum(p_values, contamination_floor(calibration, scores)), upper
        # Above the batch's 90th percentile the tail through its 75th and 90th
        # (``batch_tail``): it follows the upper tail's own shape, where one
        # from the median and quartile is too light for skewed scores; and
        # where scores bunch up below the 90th, the one from the median.
        upper = scores > tail.threshold
        p_values = np.where(upper, tail.p_values(scores), conformal_p_values(bulk, scores))
        return np.maximum(p_values, contamination_floor(calibration, scores)), upper
    folds = np.zeros(len(calibration), dtype=int)
    if not guard:
        return cross_conformal_p_values(calibration, folds, scores[:, None], return_extrapolated=True,
                                        confidence=confidence)
    return guarded_p_values(calibration, folds, scores[:, None], confidence=confidence)


def bulk_calibrated_p_values(batch_scores, scores=None, *, contamination: float = MAX_CONTAMINATION):
    """P-values of a batch's own scores against its robust bulk, for scores from cross-fitted models.

    The rows below ``robust_cut`` calibrate; above their upper quartile the
    exponential tail of ``tail_extrapolated_p_values`` takes over, and
    ``contamination_floor`` keeps it from claiming less than the batch shows.
    For the classifier label detectors without a reference this tail, through
    the bulk's median and quartile, is the conservative one: the batch's own
    75th-90th percentile tail (``single_fold_p_values``) flagged 2 % of clean
    hpc_data rows per detector, this one 0.4 %.

    Parameters
    ----------
    batch_scores : array-like of float, shape (n,)
        The scores that calibrate (a batch's, or one label's rows of it).
    scores : array-like of float, shape (n_rows,), optional
        The scores to give p-values; ``batch_scores`` themselves by default.
    contamination : float
        The share of ``batch_scores`` that may be poisoned (``contamination_floor``).

    Returns
    -------
    p_values, extrapolated : numpy.ndarray, shape (n_rows,)
    """
    batch = np.asarray(batch_scores, dtype=float)
    scores = batch if scores is None else np.asarray(scores, dtype=float)
    bulk = batch[batch <= robust_cut(batch)]
    if robust_tail(bulk) is None:
        return tied_bulk_p_values(batch, scores)
    p_values, extrapolated = tail_extrapolated_p_values(bulk, scores, return_extrapolated=True)
    return np.maximum(p_values, contamination_floor(batch, scores, contamination)), extrapolated


def tied_bulk_p_values(batch_scores, scores):
    """P-values when the batch's bulk has no spread: each score's rank among all of ``batch_scores``.

    When more than half of a batch's scores are one value (a table of few
    distinct rows, whose nearest neighbours lie at distance 0), the robust cut
    is that value and the bulk below it has no tail to extrapolate: every
    score above it would get the smallest p-value the bulk allows. On
    AER's Fertility (254,654 rows, 9,276 distinct) that flagged 17 % of the
    clean rows for ``label.knn``. The share of the batch at or above a score
    is the one statement left; a flip among the batch's top ``alpha`` of
    scores is still found.

    Returns
    -------
    p_values : numpy.ndarray of float, shape (n_rows,)
    extrapolated : numpy.ndarray of bool, shape (n_rows,), all False
    """
    scores = np.asarray(scores, dtype=float)
    return conformal_p_values(batch_scores, scores), np.zeros(scores.shape, dtype=bool)


def label_contamination(rows) -> float:
    """The share of one label's rows that may be poisoned when ``MAX_CONTAMINATION`` of the batch may.

    All of the batch's poison can sit in one label (targeted flips do), so a
    label holding a share ``q`` of the batch may be ``MAX_CONTAMINATION / q``
    poisoned; capped at a half, beyond which a label's median is no longer
    its clean rows'.

    Parameters
    ----------
    rows : numpy.ndarray of bool, shape (n,)
        The label's rows among the batch's.
    """
    return min(0.5, MAX_CONTAMINATION * len(rows) / max(int(np.sum(rows)), 1))


def contamination_floor(batch_scores, scores, contamination: float = MAX_CONTAMINATION) -> np.ndarray:
    """The smallest tail p-value a clean row can have, whatever the poison in the batch.

    If at most ``MAX_CONTAMINATION`` (``eps``) of a batch is poisoned and a
    share ``S`` of its rows scores ``s`` or more, at least ``(S - eps) / (1 -
    eps)`` of its clean rows do. A tail extrapolated from the batch's bulk
    cannot claim less: clean scores with a heavier tail than the bulk implies
    (distances on a column of few distinct values, natural exact duplicates)
    were flagged by the dozen per hundred (12 % of clean hpc_data rows by
    ``outlier.class_conditional``). Below the share a poisoned tenth can
    explain it is 0 and changes nothing.

    Parameters
    ----------
    batch_scores : array-like of float, shape (n,)
        Every row's score, poisoned ones included.
    scores : array-like of float, shape (n_rows,)
    contamination : float
        ``eps``, the share of ``batch_scores`` that may be poisoned.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1)``
    """
    ordered = np.sort(np.asarray(batch_scores, dtype=float))
    at_least = (len(ordered) - np.searchsorted(ordered, np.asarray(scores, dtype=float), side="left")) / (len(ordered) + 1.0)
    return np.clip((at_least - contamination) / (1.0 - contamination), 0.0, 1.0)


def label_conditional_p_values(calibrate, calibration_labels, labels, *, min_rows: int):
    """P-values computed label by label (Mondrian conformal), pooled for labels with too few calibration rows.

    Parameters
    ----------
    calibrate : callable ``(calibration_mask, row_mask) -> (p_values, extrapolated)``
        P-values of the rows in ``row_mask`` against the calibration rows in
        ``calibration_mask``.
    calibration_labels : array-like, shape (n_calibration,)
    labels : array-like, shape (n_rows,)
    min_rows : int
        A label with fewer calibration rows is judged against all of them.

    Returns
    -------
    p_values, extrapolated : numpy.ndarray, shape (n_rows,)
    """
    labels = np.asarray(labels, dtype=object)
    p_values = np.ones(len(labels))
    extrapolated = np.zeros(len(labels), dtype=bool)
    for same, rows in mondrian_groups(calibration_labels, labels, min_rows=min_rows):
        p_values[rows], extrapolated[rows] = calibrate(same, rows)
    return p_values, extrapolated

