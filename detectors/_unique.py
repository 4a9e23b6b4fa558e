"""``numpy.unique`` for label columns, by hashing instead of sorting.

``numpy.unique`` sorts its input; on an object array (labels are text) every
comparison is a Python call, so a million labels take about a second, paid
again by each detector and each helper that groups rows by label. Hashing
them (``pandas.factorize``) takes a few milliseconds; only the handful of
distinct values is then sorted. The results are those of ``numpy.unique``:
sorted distinct values, and the same ``TypeError`` when the values cannot be
ordered (``1`` and ``"1"``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def unique_values(values, *, return_inverse: bool = False, return_counts: bool = False):
    """``numpy.unique(values, return_inverse=..., return_counts=...)`` of a 1-D array.

    Parameters
    ----------
    values : array-like, shape (n,)
    return_inverse, return_counts : bool
        As ``numpy.unique``'s.

    Returns
    -------
    numpy.ndarray, or a tuple of it with the inverse (shape (n,)) and/or the
    counts, as ``numpy.unique`` returns them.
    """
    values = np.asarray(values)
    if values.dtype != object or values.ndim != 1:
        return np.unique(values, return_inverse=return_inverse, return_counts=return_counts)
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    distinct = np.asarray(distinct, dtype=object)
    order = np.argsort(distinct, kind="stable")  # raises TypeError as numpy.unique would
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    extras = []
    inverse = rank[codes]
    if return_inverse:
        extras.append(inverse)
    if return_counts:
        extras.append(np.bincount(inverse, minlength=len(order)))
    return (distinct[order], *extras) if extras else distinct[order]


def isin_values(values, test_values) -> np.ndarray:
    """``numpy.isin(values, test_values)`` of a 1-D array, comparing each distinct value once."""
    values = np.asarray(values)
    if values.dtype != object or values.ndim != 1:
        return np.isin(values, test_values)
    distinct, inverse = unique_values(values, return_inverse=True)
    return np.isin(distinct, test_values)[inverse]


def text_values(values) -> np.ndarray:
    """``str(value)`` of each value, as an object array.

    Labels arrive as text (the pipeline reads them so): they are returned as
    they are, not copied. numpy's own text array (``astype(str)``) would be
    as wide as the longest value in every row (28 bytes for seven
    characters), ``numpy.unique`` would sort it (on three million labels,
    84 MB and a second per call, paid by every detector that groups rows by
    label), and it drops a value's trailing NUL characters.

    Parameters
    ----------
    values : array-like, shape (n,)

    Returns
    -------
    numpy.ndarray of object (each a ``str``), shape (n,)
    """
    values = np.asarray(values, dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values
    texts = np.empty(values.shape, dtype=object)
    texts.ravel()[:] = [str(value) for value in values.ravel()]
    return texts
