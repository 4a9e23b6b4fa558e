"""Input checks shared by every detector: features, labels and row ids.

``Detector`` (``detectors.base``) calls these from its ``_validate_*``
helpers, so each detector validates its input the same way and names the
column or row at fault in a ``DetectorError``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import issparse

from poisonguard.detectors._unique import unique_values
from poisonguard.detectors.errors import DetectorError


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
    if issparse(X):
        raise DetectorError("sparse feature tables are not supported; pass a dense array or DataFrame")
    if isinstance(X, pd.DataFrame):
        if feature_names is not None:
            # Names are kept as text, so match a frame's columns (e.g. 0, 1, 2) as text too.
            columns = {str(column): column for column in X.columns}
            missing = [name for name in feature_names if name not in columns]
            if missing:
                raise DetectorError(
                    f"feature column {missing[0]!r} is missing; the detector was fitted on "
                    f"{len(feature_names)} columns"
                )
            ordered = [columns[name] for name in feature_names]
            if list(X.columns) != ordered:  # (reordering copies every row)
                X = X[ordered]
        names = [str(column) for column in X.columns]
        complex_columns = [name for name, dtype in zip(names, X.dtypes) if pd.api.types.is_complex_dtype(dtype)]
        if complex_columns:
            raise DetectorError(f"Complex data not supported: feature column {complex_columns[0]!r} is complex")
        try:
            matrix = X.to_numpy(dtype=float)
        except (TypeError, ValueError):
            bad = [column for column in X.columns if not pd.api.types.is_numeric_dtype(X[column])]
            raise DetectorError(
                f"feature column {bad[0] if bad else '?'!r} is not numeric; "
                "encode the frame with detectors.features.FeatureEncoder first"
            ) from None
    else:
        # Casting complex values to float would silently drop their imaginary part.
        if pd.api.types.is_complex_dtype(getattr(X, "dtype", None)):
            raise DetectorError(f"Complex data not supported: features must be real numbers, got {X.dtype}")
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
        unique_values(labels)
    except TypeError:
        # Mixed label types (e.g. 1 and "1") cannot be sorted; compare as text.
        labels = labels.astype(str).astype(object)
    return labels


def row_id_array(row_ids, X, n_rows: int) -> np.ndarray:
    """Return row ids as an object array of str; default to the DataFrame index or 0..n-1.

    An object array of str is returned as it is: a million-row batch's ids
    are one array the pipeline shares with every detector's findings, where
    a text copy per detector cost tens of MB each.
    """
    if row_ids is None:
        row_ids = X.index if isinstance(X, pd.DataFrame) else np.arange(n_rows)
    ids = np.asarray(row_ids, dtype=object)
    if ids.ndim != 1 or not all(type(value) is str for value in ids):
        ids = ids.astype(str).astype(object)
    if ids.shape[0] != n_rows:
        raise DetectorError(f"got {ids.shape[0]} row ids for {n_rows} rows")
    return ids
