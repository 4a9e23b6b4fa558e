"""Exact copies among a batch's rows, and how many copies its columns' own frequencies explain.

Rows are grouped by a hash of their values, a column at a time: hashing the
matrix as a frame copied it (250 MB more at 200,000 rows of 150 encoded
features).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binom

from poisonguard.detectors._crossfit import MAX_CONTAMINATION
from poisonguard.detectors._unique import unique_values
from poisonguard.detectors.features import source_columns


def value_groups(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group of rows with its exact values, and that group's size.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)

    Returns
    -------
    group : numpy.ndarray of int, shape (n_rows,)
    size : numpy.ndarray of int, shape (n_rows,)
        How many rows (the row itself included) hold the row's values.
    """
    hashes = np.zeros(len(matrix), dtype=np.uint64)
    for column in range(matrix.shape[1]):
        hashes = hashes * np.uint64(1_000_003) ^ pd.util.hash_array(np.ascontiguousarray(matrix[:, column]))
    _, group, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    return group, counts[group]


def independent_copies_p_values(matrix: np.ndarray, feature_names) -> np.ndarray:
    """P-value of each row's count of exact copies if its input columns were independent.

    A row's values fall on another row with probability ``pi``, the
    product over its input columns (a one-hot block and a missing indicator
    are one column: ``features.source_columns``) of the share of rows
    holding its values of that column. Its ``m - 1`` copies among the other
    ``n - 1`` rows are then ``Binomial(n - 1, pi)``, and the p-value is
    ``P(Binomial(n - 1, pi) >= m - 1)``. Columns that depend on each other
    make copies more common than independence does, so this p-value is
    small for natural copies too; a large one means the columns' own
    frequencies alone explain the copies (a single two-valued feature:
    every row has hundreds).

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    feature_names : array-like of str, shape (n_features,)
        ``FeatureEncoder``'s names of the columns.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1]``
    """
    n_rows = len(matrix)
    if not n_rows:
        return np.zeros(0)
    sources = source_columns(feature_names)
    log_pi = np.zeros(n_rows)
    for source in dict.fromkeys(sources):
        _, size = value_groups(matrix[:, sources == source])
        log_pi += np.log(size / n_rows)
    _, copies = value_groups(matrix)
    return binom.sf(copies - 2, n_rows - 1, np.exp(log_pi))


def same_label_copies_floor(matrix: np.ndarray, labels, contamination: float = MAX_CONTAMINATION) -> np.ndarray:
    """The share of a row's exact copies (itself left out) that carry its label.

    Where rows repeat exactly, the other rows holding a row's very values
    estimate how often its label goes with them, leaving the row out. A
    row whose label ``m_c - 1`` of its ``m - 1`` copies carry has that
    label at least as often as they make it, whatever its neighbours say,
    less what poison among them could explain (``contamination``, as
    ``_crossfit.contamination_floor`` reads a share): ``(S - eps) / (1 -
    eps)`` for the share ``S = (m_c - 1) / (m - 1)``. Random flips of 5 %
    of a table put a second flip on a row's ten copies about a third of
    the time; a share of 1 in 9 is then no evidence.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    labels : array-like, shape (n_rows,)
    contamination : float
        ``eps``, the share of the copies that may be poisoned.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1]``
    """
    group, size = value_groups(matrix)
    codes = unique_values(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    _, with_label, shared = np.unique(group * (int(codes.max(initial=0)) + 1) + codes,
                                      return_inverse=True, return_counts=True)
    share = np.where(size > 1, (shared[with_label.reshape(-1)] - 1) / np.maximum(size - 1, 1), 0.0)
    return np.clip((share - contamination) / (1.0 - contamination), 0.0, 1.0)
