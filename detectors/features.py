"""Turn a mixed-type batch into the numeric feature matrix detectors work on.

Detectors (``detectors.outliers``, ``detectors.label_flips``) expect a purely
numeric matrix whose columns a reviewer can read. ``FeatureEncoder`` builds it
from a typed pandas frame, fitted on the trusted reference so that every batch
is encoded against the same medians, scales and category levels:

* numeric column ``c``: missing values imputed with the reference median, then
  robust-scaled ``(x - median) / IQR`` (``robust_spread``: a column most of
  whose values are one value, like a debt that is 0 for most rows, is
  scaled by its mean absolute deviation, not by 1 in its own units), plus a
  ``c__missing`` 0/1 column for **every** numeric column. The indicator is
  kept even when the reference has no missing values in ``c``: a value missing
  where trusted data never misses one is evidence of tampering, and the
  indicator (constant 0 on trusted rows) is what lets detectors see it;
  imputation alone would hide it.
* categorical column ``c``: one-hot ``c=<value>`` for each value seen at fit,
  plus a ``c=<missing>`` level that is always present for the same reason.
  A value never seen at fit encodes as all zeros for that column. Values are
  compared as strings, so ``1`` and ``"1"`` are the same level.
* a categorical column with more than ``max_levels`` levels at fit (a
  merchant, a zip code) would one-hot into thousands of columns: it becomes
  one ``c__rarity`` column instead, ``-log10`` of the level's share of the
  fit rows (an unseen level counts as one row in ``n + 1``), so a rare or new
  value stands out and a common one does not;
* a column whose values are nearly all distinct (free text, ids) carries no
  level a detector could compare rows by: it is left out of the features
  (``text_columns_``); the expectations still check it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api.types import is_complex_dtype, is_numeric_dtype
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from poisonguard.detectors.base import DetectorError

MISSING_LEVEL = "<missing>"
MISSING_SUFFIX = "__missing"
RARITY_SUFFIX = "__rarity"
# More distinct values than this share of the present ones: free text, not categories.
TEXT_DISTINCT_SHARE = 0.5
# Scaled values are cut to this many spreads from the median. A finite cell
# of 1.7e308 in a column whose spread is below 1 scaled to inf, which every
# detector refuses (the run stopped); beyond a billion spreads a value is as
# far out as a value can be, and its square, summed over a thousand features,
# is still a finite distance.
MAX_SCALED = 1e9


def source_columns(feature_names) -> np.ndarray:
    """The input column each of ``FeatureEncoder``'s output features encodes, by its name.

    ``c=level`` (one-hot), ``c__missing`` and ``c__rarity`` come from ``c``;
    any other name is its own column. A column whose name holds ``=`` or
    ends in a suffix is read as the column before it: names alone cannot
    tell.

    Parameters
    ----------
    feature_names : array-like of str, shape (n_features,)

    Returns
    -------
    numpy.ndarray of str (object), shape (n_features,)
    """
    sources = []
    for name in map(str, feature_names):
        for suffix in (MISSING_SUFFIX, RARITY_SUFFIX):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        else:
            name = name.partition("=")[0]
        sources.append(name)
    return np.asarray(sources, dtype=object)


def imputed_as_missing(matrix: np.ndarray, feature_names) -> np.ndarray:
    """``matrix`` with NaN in every cell ``FeatureEncoder`` imputed (its ``c__missing`` indicator is 1).

    An imputed cell holds the reference median, not a value the row had:
    detectors that read exact values (shared, stamped) must not count it as
    one. Returns ``matrix`` itself when no cell was imputed, else a copy.

    Parameters
    ----------
    matrix : numpy.ndarray of float, shape (n_rows, n_features)
    feature_names : array-like of str, shape (n_features,)
    """
    names = [str(name) for name in feature_names]
    position = {name: index for index, name in enumerate(names)}
    pairs = [(position[name[: -len(MISSING_SUFFIX)]], index) for index, name in enumerate(names)
             if name.endswith(MISSING_SUFFIX) and name[: -len(MISSING_SUFFIX)] in position]
    pairs = [(column, indicator) for column, indicator in pairs if np.any(matrix[:, indicator] != 0.0)]
    if not pairs:
        return matrix
    masked = np.array(matrix, dtype=float)
    for column, indicator in pairs:
        masked[matrix[:, indicator] != 0.0, column] = np.nan
    return masked


def _as_frame(frame) -> pd.DataFrame:
    # scikit-learn's estimator checks pass numpy arrays; give them the column
    # names pandas would (0, 1, ...), so encoding stays name-based.
    if isinstance(frame, pd.DataFrame):
        return frame
    if issparse(frame):
        raise DetectorError("sparse input is not supported; pass a pandas DataFrame")
    array = np.asarray(frame)
    if array.ndim != 2:
        raise DetectorError(
            f"expected a 2-D table of features, got an array of shape {array.shape}; "
            "Reshape your data to one row per record and one column per feature"
        )
    return pd.DataFrame(array)


def _numeric_values(frame: pd.DataFrame, column) -> np.ndarray:
    if is_complex_dtype(frame[column]):
        raise DetectorError(f"Complex data not supported: column {column!r} holds complex numbers; expected real numbers")
    try:
        values = pd.to_numeric(frame[column], errors="raise")
    except (TypeError, ValueError) as error:
        raise DetectorError(
            f"column {column!r} should be numeric but holds a value that is not a number ({error})"
        ) from None
    values = values.to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(values).any():
        raise DetectorError(f"column {column!r} holds an infinite value; expected finite numbers")
    return values


def _category_strings(series: pd.Series) -> np.ndarray:
    missing = series.isna().to_numpy()
    strings = series.astype(str).to_numpy(dtype=object)
    strings[missing] = MISSING_LEVEL
    return strings


# The mean absolute deviation of a normal distribution, in interquartile
# ranges (1.349 / 0.7979 standard deviations).
MEAN_DEVIATION_TO_IQR = 1.349 / 0.7979


def robust_spread(observed: np.ndarray) -> float:
    """The interquartile range of ``observed``, or an equivalent where it is 0.

    A column that is one value on more than half the rows (a debt that is 0
    for most borrowers) has an interquartile range of 0. Scaled by 1 in its
    own units, its other values (thousands) then outweighed every other
    feature in every distance: credit_data's nearest neighbours became the
    rows with about the same debt, and ``label.knn`` flagged 12 times its
    share of clean rows at p <= 0.001. The mean absolute deviation from the
    median stands in, in interquartile units of a normal distribution (the
    fallback of the modified z-score): it grows smoothly with the share of
    rows off the common value, where a wider percentile range jumps as that
    share passes the percentile. 1 only for a constant (or empty) column.
    """
    observed = np.asarray(observed, dtype=float)
    if not observed.size:
        return 1.0
    low, high = np.percentile(observed, [25.0, 75.0])
    if high > low:
        return float(high - low)
    deviation = float(np.mean(np.abs(observed - np.median(observed))))
    return deviation * MEAN_DEVIATION_TO_IQR if deviation > 0 else 1.0


class FeatureEncoder(TransformerMixin, BaseEstimator):
    """Encode a mixed pandas frame as readable, robust-scaled numeric features.

    Parameters
    ----------
    numeric : list of str, optional
        Columns to treat as numbers. ``None`` infers them at fit: every column
        with a numeric (or boolean) dtype that is not listed in
        ``categorical``.
    categorical : list of str, optional
        Columns to one-hot encode. ``None`` infers them at fit: every column
        not treated as numeric. When ``categorical`` is given and ``numeric``
        is not, non-numeric columns outside ``categorical`` are ignored.
    max_levels : int
        A categorical column with more levels at fit is encoded by rarity
        (or left out as free text), not one-hot.

    Attributes
    ----------
    numeric_columns_ : list
        Numeric input columns, in output order.
    categorical_columns_ : list
        One-hot encoded categorical input columns, in output order.
    medians_ : dict
        Reference median of each numeric column (0 when all were missing).
    scales_ : dict
        Reference interquartile range of each numeric column (1 when 0).
    categories_ : dict
        Levels of each one-hot categorical column seen at fit, as strings,
        sorted, ending with ``"<missing>"``.
    rarity_columns_ : list
        Categorical columns with more than ``max_levels`` levels, encoded by rarity.
    rarities_, unseen_rarities_ : dict
        Per rarity column, ``-log10`` share of each level at fit, and that of an unseen level.
    text_columns_ : list
        Columns left out as free text (nearly every value distinct).
    feature_names_out_ : numpy.ndarray of str, shape (n_features_out,)
        Output column names: ``c``, ``c__missing`` for numeric columns, then
        ``c=<value>`` for categorical ones.
    n_features_in_ : int
        Number of columns of the fit frame.
    feature_names_in_ : numpy.ndarray of str
        Columns of the fit frame, when they were all strings.
    """

    def __init__(self, numeric=None, categorical=None, max_levels=50):
        self.numeric = numeric
        self.categorical = categorical
        self.max_levels = max_levels

    def fit(self, frame, y=None):
        """Learn medians, scales and category levels from a reference frame.

        Parameters
        ----------
        frame : pandas.DataFrame, shape (n_rows, n_columns)
            Trusted reference rows (array-likes get columns 0, 1, ...).
        y : ignored

        Returns
        -------
        self
        """
        frame = _as_frame(frame)
        # Message wording follows scikit-learn's, which its estimator checks expect.
        if frame.shape[0] == 0:
            raise DetectorError(
                f"cannot fit the feature encoder: found 0 sample(s) (shape={frame.shape}) "
                "while a minimum of 1 is required."
            )
        if frame.shape[1] == 0:
            raise DetectorError(
                f"cannot fit the feature encoder: found 0 feature(s) (shape={frame.shape}) "
                "while a minimum of 1 is required."
            )
        numeric, categorical = self._resolve_columns(frame)
        self.numeric_columns_ = numeric
        self.categorical_columns_ = categorical
        self.medians_, self.scales_ = {}, {}
        for column in numeric:
            values = _numeric_values(frame, column)
            observed = values[~np.isnan(values)]
            self.medians_[column] = float(np.median(observed)) if observed.size else 0.0
            self.scales_[column] = robust_spread(observed)
        self.categories_, self.rarities_, self.unseen_rarities_, self.text_columns_ = {}, {}, {}, []
        one_hot = []
        for column in categorical:
            strings = _category_strings(frame[column])
            shares = pd.Series(strings).value_counts()
            levels = set(shares.index) - {MISSING_LEVEL}
            if len(levels) <= self.max_levels:
                self.categories_[column] = sorted(levels) + [MISSING_LEVEL]
                one_hot.append(column)
            elif len(levels) > TEXT_DISTINCT_SHARE * (len(strings) - shares.get(MISSING_LEVEL, 0)):
                self.text_columns_.append(column)
            else:
                # log10(n + 1) - log10(count), one expression for both: an unseen
                # level is exactly as rare as a level seen once. Computed as
                # -log10(1 / (n + 1)) the two differed in the last bit, and the
                # batch rows with a new merchant (9 % of a synthetic 20,000-row
                # batch) lay "above the range of trusted rows" for ECOD.
                whole = np.log10(len(strings) + 1)
                self.rarities_[column] = (whole - np.log10(shares)).to_dict()
                self.unseen_rarities_[column] = float(whole - np.log10(1))
        self.categorical_columns_ = one_hot
        self.rarity_columns_ = list(self.rarities_)
        names = []
        for column in numeric:
            names += [str(column), f"{column}{MISSING_SUFFIX}"]
        for column in one_hot:
            names += [f"{column}={level}" for level in self.categories_[column]]
        names += [f"{column}{RARITY_SUFFIX}" for column in self.rarity_columns_]
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.n_features_in_ = frame.shape[1]
        if all(isinstance(column, str) for column in frame.columns):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        return self

    def transform(self, frame, *, without=()) -> pd.DataFrame:
        """Encode rows against the fitted reference.

        Parameters
        ----------
        frame : pandas.DataFrame, shape (n_rows, n_columns)
            Must hold every fitted column; extra columns are ignored.
        without : collection of str
            Output columns to leave out (``encode_features`` leaves out
            missing-value indicators that are 0 in every row): never
            written, rather than copied away afterwards.

        Returns
        -------
        pandas.DataFrame of float64, shape (n_rows, n_features_out), with
        columns ``feature_names_out_`` (less ``without``) and the index of ``frame``.
        """
        check_is_fitted(self, "feature_names_out_")
        is_frame = isinstance(frame, pd.DataFrame)
        frame = _as_frame(frame)
        if not is_frame and frame.shape[1] != self.n_features_in_:
            # Without names, columns are matched by position; a different
            # width means a different table.
            raise DetectorError(
                f"X has {frame.shape[1]} features, but FeatureEncoder is expecting "
                f"{self.n_features_in_} features as input"
            )
        self._check_columns(
            frame, list(self.numeric_columns_) + list(self.categorical_columns_) + list(self.rarity_columns_)
        )
        without = set(without)
        kept = [name not in without for name in self.feature_names_out_]
        # Output column i of feature_names_out_ goes to matrix column target[i] (if kept).
        target = np.cumsum(kept) - 1
        # Written column by column into one row-major matrix: no list of
        # column copies to stack, and row-major is what neighbour searches
        # and models read, so they need no copy of their own.
        matrix = np.empty((len(frame), int(sum(kept))))
        output = iter(range(len(kept)))

        def write(values):
            index = next(output)
            if kept[index]:
                matrix[:, target[index]] = values

        for column in self.numeric_columns_:
            values = _numeric_values(frame, column)
            missing = np.isnan(values)
            filled = np.where(missing, self.medians_[column], values)
            with np.errstate(over="ignore"):
                scaled = (filled - self.medians_[column]) / self.scales_[column]
            write(np.clip(scaled, -MAX_SCALED, MAX_SCALED))
            write(missing)
        for column in self.categorical_columns_:
            strings = _category_strings(frame[column])
            for level in self.categories_[column]:
                write(strings == level)
        for column in self.rarity_columns_:
            mapped = pd.Series(_category_strings(frame[column])).map(self.rarities_[column])
            write(mapped.fillna(self.unseen_rarities_[column]).to_numpy(dtype=float))
        names = [name for name, keep in zip(self.feature_names_out_, kept) if keep]
        return pd.DataFrame(matrix, columns=names, index=frame.index, copy=False)

    def gapless_indicators(self, *frames) -> list[str]:
        """The ``c__missing`` columns and ``c=<missing>`` levels that are 0 on every row of ``frames`` (``transform``'s ``without``).

        Written and then dropped as constant, a wide table's missing levels
        cost a copy of its whole matrix (250 MB at 200,000 rows of 159
        features).
        """
        check_is_fitted(self, "feature_names_out_")
        frames = [_as_frame(frame) for frame in frames]
        return [
            f"{column}{MISSING_SUFFIX}" for column in self.numeric_columns_
            if not any(np.isnan(_numeric_values(frame, column)).any() for frame in frames)
        ] + [
            f"{column}={MISSING_LEVEL}" for column in self.categorical_columns_
            if not any(frame[column].isna().any() for frame in frames)
        ]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Return the output column names, shape (n_features_out,)."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def _resolve_columns(self, frame: pd.DataFrame) -> tuple[list, list]:
        numeric = None if self.numeric is None else list(self.numeric)
        categorical = None if self.categorical is None else list(self.categorical)
        self._check_columns(frame, (numeric or []) + (categorical or []))
        if numeric is not None and categorical is not None:
            both = [column for column in numeric if column in categorical]
            if both:
                raise DetectorError(f"column {both[0]!r} is listed as both numeric and categorical")
        if numeric is None:
            excluded = set(categorical or [])
            numeric = [
                column
                for column in frame.columns
                if column not in excluded and is_numeric_dtype(frame[column])
            ]
        if categorical is None:
            excluded = set(numeric)
            categorical = [column for column in frame.columns if column not in excluded]
        return numeric, categorical

    @staticmethod
    def _check_columns(frame: pd.DataFrame, columns) -> None:
        present = set(frame.columns)
        for column in columns:
            if column not in present:
                raise DetectorError(
                    f"column {column!r} is missing from the frame; it has columns "
                    f"{', '.join(map(repr, frame.columns[:20]))}"
                )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Missing values are imputed (and flagged by indicator columns).
        tags.input_tags.allow_nan = True
        # transform always returns a float64 DataFrame, whatever came in.
        tags.transformer_tags.preserves_dtype = []
        return tags
