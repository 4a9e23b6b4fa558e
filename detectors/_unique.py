"""``numpy.unique`` for label columns, by hashing instead of sorting.

``numpy.unique`` sorts its input; on an object array (labels are text) every
comparison is a Python call, so a million labels take about a second, paid
again by each detector and each helper that groups rows by label. Hashing
them (``pandas.factorize``) takes a few milliseconds; only the handful of
distinct values is then sorted. The results are those of ``numpy.unique``:
sorted distinct values, and the same ``TypeError`` when the values cannot be
ordered (``1`` and ``"1"``). ``distinct_objects`` hashes a text column the
same way to hold one Python object per distinct value.
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
    """``numpy.isin(values, test_values)`` of a 1-D array, comparing each distinct value once.

    Numbers among numbers are hashed (``pandas``): ``numpy.isin`` compares
    every row with each of up to a few hundred test values, or sorts the rows
    (a million rows against 300 values: 0.33 s, hashed 0.02 s).
    """
    values = np.asarray(values)
    if values.ndim == 1 and values.dtype.kind in "fiu":
        tests = np.asarray(test_values).ravel()
        if tests.dtype.kind in "fiu":
            # pandas finds NaN in NaN; numpy (and a comparison) does not.
            tests = tests[~np.isnan(tests)] if tests.dtype.kind == "f" else tests
            return pd.Series(values, copy=False).isin(tests).to_numpy()
    if values.dtype != object or values.ndim != 1:
        return np.isin(values, test_values)
    distinct, inverse = unique_values(values, return_inverse=True)
    return np.isin(distinct, test_values)[inverse]


# Up to this many values a comparison of every row with each costs less than
# hashing every row once: on a million labels 13 ms a value against 110 ms.
COMPARED_VALUES_MAX = 8


def value_codes(values, distinct) -> np.ndarray:
    """Each value's position in ``distinct`` (no value twice), -1 for a value not there; shape (n,).

    Compared value by value for a few values; otherwise each row is hashed
    once (``pandas.factorize``) and only its distinct values are looked up.
    """
    values = np.asarray(values)
    if len(distinct) <= COMPARED_VALUES_MAX:
        codes = np.full(len(values), -1, dtype=np.intp)
        for code, value in enumerate(distinct):
            codes[values == value] = code
        return codes
    row_codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return pd.Index(np.asarray(distinct, dtype=object)).get_indexer(np.asarray(uniques, dtype=object))[row_codes]


def rows_of_each(values, distinct) -> list:
    """The positions of ``values`` equal to each of ``distinct`` (its distinct values), ascending.

    What ``numpy.flatnonzero(values == value)`` gives for each value, without
    a pass over every row per value (``value_codes``): 1,000 labels of a
    100,000-row batch were 100 million string comparisons per use. Values
    not among ``distinct`` are in no list.

    Parameters
    ----------
    values : array-like, shape (n,)
    distinct : array-like, shape (n_distinct,), no value twice

    Returns
    -------
    list of numpy.ndarray of int, one per value of ``distinct``.
    """
    values = np.asarray(values, dtype=object)
    if len(distinct) <= COMPARED_VALUES_MAX:
        return [np.flatnonzero(values == value) for value in distinct]
    codes = value_codes(values, distinct)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(distinct) + 1))
    return [order[bounds[code]:bounds[code + 1]] for code in range(len(distinct))]


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


def distinct_objects(series: pd.Series, convert=None, missing=None) -> np.ndarray:
    """``series``' values as an object array holding one Python object per distinct value.

    Equal cells share one object, so a column of few distinct values costs
    8 bytes a row rather than a string object a row.

    Parameters
    ----------
    series : pandas.Series
    convert : callable, optional
        Applied once to each distinct value (not to missing ones).
    missing : object
        What missing cells (None, NaN, pandas' NA) hold.

    Raises
    ------
    TypeError
        A present value is not text. Hashing calls 1, 1.0 and True (or 0.0
        and -0.0) one value, which ``convert`` would then read alike; and a
        list read from JSON Lines cannot be hashed. Callers read such a
        column cell by cell.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        # A Parquet dictionary column (pandas' ``category``): its categories'
        # own objects, one pointer a row, judged by what they hold.
        series = series.astype(object)
    if pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty"):
        raise TypeError("distinct_objects shares text values only")
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    table = np.empty(len(uniques) + 1, dtype=object)
    table[:-1] = [convert(value) for value in uniques] if convert is not None else np.asarray(uniques, dtype=object)
    table[-1] = missing  # code -1
    return table[codes]
