"""Exact copies among a batch's rows, and how many copies its columns' own frequencies explain.

Rows are grouped by a hash of their values, a column at a time: hashing the
matrix as a frame copied it (250 MB more at 200,000 rows of 150 encoded
features).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binom

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
