"""A second cross-fit without the rows confident learning marks (cleanlab's CleanLearning, out of fold).

Flipped labels teach a model fitted on them their own pattern: a few
hundred rows of one label relabelled as another make the pooled model give
that other label a share of probability where they lie, and then the flips
look plausible to it. (On hpc_data, 5 % targeted flips were caught at 0.20
with a reference, where a model fitted on the clean labels ranks 0.96 of
them above 98 % of clean rows.) So the label detectors that fit on the
batch cross-fit twice: the rows cleanlab's ``find_label_issues`` marks on
the first out-of-fold probabilities are left out of the second fit, and
every row is scored again by a fold model that never saw it. The rule treats
trusted and batch rows alike, so a clean batch row's score stays
exchangeable with the trusted rows' and their calibration still holds.
"""
from __future__ import annotations

import threading

import cleanlab.filter
import numpy as np

from poisonguard.detectors._crossfit import fold_splits, sampled_cross_fitted_probabilities


def label_issues(codes: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """cleanlab's ``find_label_issues`` mask (one process), without the copy cleanlab keeps.

    cleanlab hands its per-class work to worker processes through module
    globals, and keeps them after it returns: a copy of the probabilities
    (40 MB for a million rows of five labels) held for the rest of the run.
    Those globals are also why two calls must not overlap: one thread's
    call could read the other's probabilities.
    """
    with _CLEANLAB_GLOBALS:
        try:
            return cleanlab.filter.find_label_issues(codes, probabilities, n_jobs=1)
        finally:
            for name in ("pred_probs_by_class", "prune_count_matrix_cols"):
                if hasattr(cleanlab.filter, name):
                    setattr(cleanlab.filter, name, {})


_CLEANLAB_GLOBALS = threading.Lock()


def refit_without_issues(
    matrix: np.ndarray, codes: np.ndarray, in_sample: np.ndarray, probabilities: np.ndarray, *,
    sample_weight=None, **options,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities from models fitted without cleanlab's label issues.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    codes : numpy.ndarray of int, shape (n_rows,)
    in_sample : numpy.ndarray of bool, shape (n_rows,)
        The rows that were cross-fitted (``sampled_cross_fitted_probabilities``);
        only they can be left out of the second fit.
    probabilities : numpy.ndarray, shape (n_rows, K)
        The first cross-fit's out-of-fold probabilities.
    sample_weight : array-like of float, shape (n_rows,), optional
    **options
        As for ``sampled_cross_fitted_probabilities`` (``n_folds`` and
        ``random_state`` included: the second fit uses the same folds).

    Returns
    -------
    (probabilities, issues): the second fit's probabilities, shape (n_rows,
    K), and cleanlab's mask on the first probabilities, shape (n_rows,).
    """
    issues = label_issues(codes, probabilities)
    left_out = issues & in_sample
    # A label whose marked rows are all of some fold's training rows would
    # get probability 0 from that fold's model, and every clean row of it a
    # score of 1: such a label keeps its rows.
    sample_codes, sample_left_out = codes[in_sample], left_out[in_sample]
    splits = fold_splits(
        len(sample_codes), n_folds=options["n_folds"], random_state=options["random_state"], labels=sample_codes,
    )
    starved = set()
    for train, _ in splits:
        starved |= set(sample_codes[train]) - set(sample_codes[train][~sample_left_out[train]])
    left_out &= ~np.isin(codes, list(starved))
    if not left_out.any():
        return probabilities, issues
    weights = np.ones(len(codes)) if sample_weight is None else np.asarray(sample_weight, dtype=float).copy()
    weights[left_out] = 0.0
    return sampled_cross_fitted_probabilities(matrix, codes, in_sample, sample_weight=weights, **options), issues
