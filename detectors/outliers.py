"""Outlier detectors: rows unlike the trusted reference, with calibrated p-values.

Three registered detectors:

``outlier.ecod`` (:class:`ECODOutlierDetector`)
    ECOD: each feature's empirical tail probability against the reference,
    summed as ``-log``. Parameter-free and explainable feature by feature.
``outlier.iforest`` (:class:`IForestOutlierDetector`)
    Isolation forest: also catches unusual *combinations* of values.
``outlier.class_conditional`` (:class:`ClassConditionalOutlierDetector`)
    A row judged against the trusted rows *of its own label*: the largest
    robust distance (``|x - median| / IQR``) over its features, or a
    category the label never shows. Catches rows that are ordinary overall
    but impossible for their label, and single wild cells.

Calibration (``fit``): the trusted rows are split into ``n_folds``; each fold
is scored by a model fitted on the other folds, and both the fold models and
those out-of-fold scores are kept. A batch row's p-value is cross-conformal:
it is scored by every fold model and compared with that fold's held-out
scores (``detectors.base.cross_conformal_p_values``), so calibration rows and
batch rows are scored by models fitted on equally many rows. (Scoring batch
rows with a model fitted on all trusted rows instead is biased upwards for
small references: ECOD's tail probability beyond the training maximum is
``1 / (n + 1)``, smaller for more rows.) Beyond the most outlying trusted
rows, the p-value comes from an exponential tail fitted to their scores, so
a far-away row can be flagged at ``alpha`` below ``1 / (n + 1)``, as far as
the batch's own tail confirms (``detectors._crossfit.guarded_p_values``).

The reported ``score`` is that of a final model fitted on all trusted rows
(it ranks rows and, for ECOD, equals PyOD's score); it need not order rows
exactly as the p-values do.

Scores are row-independent: a row's score does not depend on which other rows
are scored with it. PyOD's ``ECOD.decision_function`` re-ranks the training
rows together with the *whole* scored batch, so a batch full of similar
poisoned rows would mask itself, and chunked scoring would change scores.
``ECODOutlierDetector`` therefore computes, vectorised, exactly what
``ECOD.decision_function`` returns for one row scored on its own.

Self-referential mode (``self_findings``, no trusted reference): the batch
is cross-fitted against itself twice, the second time without the rows above
a robust cut; see :meth:`_CrossFittedOutlierDetector.self_findings`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from pyod.models.ecod import ECOD
from pyod.models.iforest import IForest
from sklearn.utils.validation import check_is_fitted

from detectors._crossfit import (
    check_calibration,
    cross_fit,
    feature_matrix,
    fold_scores,
    fold_splits,
    format_p,
    guarded_p_values,
    label_array,
    robust_cut,
    row_id_array,
    tail_extrapolated_p_values,
)
from detectors.base import (
    Detector,
    make_findings,
    peaks_over_threshold,
    register,
)

# A feature is named in a reason when at most this share of reference rows is
# as extreme as the row on that feature (two-sided ECDF tail).
UNUSUAL_TAIL = 0.05
MAX_NAMED_FEATURES = 3


def tail_probabilities(sorted_reference: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature empirical tail probability of each row against a reference.

    For row value ``x`` of a feature with reference values ``r`` (``n`` rows):
    ``tail = (1 + min(#{r <= x}, #{r >= x})) / (n + 1)``, the ECDF that PyOD's
    ECOD computes when ``x`` is appended to the reference.

    Parameters
    ----------
    sorted_reference : numpy.ndarray, shape (n_reference, n_features)
        Reference rows, each column sorted ascending.
    X : numpy.ndarray, shape (n_rows, n_features)

    Returns
    -------
    tails : numpy.ndarray of float, shape (n_rows, n_features), in ``(0, 1]``
    above : numpy.ndarray of bool, shape (n_rows, n_features)
        Whether the row is in the upper tail of that feature.
    """
    n_reference = sorted_reference.shape[0]
    at_most = np.empty(X.shape, dtype=float)
    at_least = np.empty(X.shape, dtype=float)
    for column in range(X.shape[1]):
        values = sorted_reference[:, column]
        at_most[:, column] = np.searchsorted(values, X[:, column], side="right")
        at_least[:, column] = n_reference - np.searchsorted(values, X[:, column], side="left")
    tails = (1.0 + np.minimum(at_most, at_least)) / (n_reference + 1.0)
    return tails, at_least < at_most


class _CrossFittedOutlierDetector(Detector):
    """Shared machinery: cross-fitted calibration, findings, reasons.

    Subclasses set ``name`` and implement ``_fit_model(matrix)`` and
    ``_model_scores(model, matrix)`` (higher = more outlying).

    Parameters
    ----------
    alpha : float
        Flag a row when its p-value is at most ``alpha`` (about that fraction
        of clean rows gets flagged).
    n_folds : int
        Folds for cross-fitted calibration (at least 2).
    random_state : int or None
        Seeds the fold split and any randomised model.

    Attributes
    ----------
    model_ : PyOD detector fitted on all reference rows (gives ``score``).
    fold_models_ : list of PyOD detectors, shape (n_folds,)
        Model ``k`` was fitted on the reference rows outside fold ``k``;
        they give the p-values.
    calibration_scores_ : numpy.ndarray, shape (n_calibration,)
        Out-of-fold scores of reference rows.
    calibration_folds_ : numpy.ndarray of int, shape (n_calibration,)
        Which fold model scored each calibration row.
    reference_sorted_ : numpy.ndarray, shape (n_reference, n_features)
        Reference rows with each column sorted (explains reasons).
    feature_names_in_ : numpy.ndarray of str, shape (n_features,)
    n_features_in_ : int
    self_referential_ : bool
        True when fitted by ``self_findings`` (the batch was its own reference).
    """

    def __init__(self, alpha=0.01, n_folds=5, random_state=0):
        self.alpha = alpha
        self.n_folds = n_folds
        self.random_state = random_state

    def _fit_model(self, matrix: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError

    def _model_scores(self, model, matrix: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def fit(self, X, y=None):
        """Fit on trusted rows and calibrate by cross-fitting.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
            Numeric features of trusted rows.
        y : ignored

        Returns
        -------
        self
        """
        matrix, names = feature_matrix(X)
        self._fit_reference(matrix, names, self_referential=False)
        return self

    def score(self, X, y=None) -> np.ndarray:
        """Outlier score of each row, shape (n_rows,); higher = more outlying."""
        check_is_fitted(self, "model_")
        matrix, _ = feature_matrix(X, feature_names=list(self.feature_names_in_))
        return self._model_scores(self.model_, matrix)

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Score and judge batch rows against the fitted reference.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : ignored
        row_ids : array-like of str, shape (n_rows,), optional
            Defaults to the DataFrame index.

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        check_is_fitted(self, "model_")
        matrix, _ = feature_matrix(X, feature_names=list(self.feature_names_in_))
        scores = self._model_scores(self.model_, matrix)
        p_values, extrapolated = self._p_values(matrix)
        return self._findings(matrix, scores, p_values, extrapolated, row_id_array(row_ids, X, len(matrix)))

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge a batch against itself when there is no trusted reference.

        Two passes, so that poisoned rows neither train the reference model
        nor sit in the calibration sample:

        1. Cross-fit on the whole batch (each row scored by a model that did
           not see it) and set aside the rows above a robust cut,
           ``median + 3 * 1.4826 * MAD`` of those scores. Median and MAD
           ignore up to half the rows, so the cut stays near the clean bulk
           however the poisoned rows score. Without this pass, a cluster of
           similar poisoned rows teaches the model that its region is normal.
        2. Fit as on trusted data, on the rows below the cut: their
           cross-fitted scores are the calibration sample (and give their
           p-values), and the rows set aside are judged by the fold models,
           as ``findings`` judges later batches.

        The calibration sample lacks the clean upper tail that was set aside,
        so p-values above its upper quartile come from an exponential tail
        extrapolated from its middle (see
        ``detectors._crossfit.tail_extrapolated_p_values``). They are
        estimates, not conformal guarantees: on clean Gaussian batches of
        2000 rows the flagged share measured 0.1-1.3 % at ``alpha=0.01``, but
        up to 10 % at ``alpha=0.05`` for the isolation forest in 2-D. Later
        ``score``/``findings`` calls use this fitted state the same way.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : ignored
        row_ids : array-like of str, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        matrix, names = feature_matrix(X)
        first_pass = self._cross_fit(matrix).out_of_fold
        bulk = first_pass <= robust_cut(first_pass)
        self._fit_reference(matrix[bulk], names, self_referential=True)
        scores = np.empty(len(matrix))
        p_values = np.empty(len(matrix))
        extrapolated = np.zeros(len(matrix), dtype=bool)
        scores[bulk] = self.calibration_scores_
        p_values[bulk], extrapolated[bulk] = tail_extrapolated_p_values(
            self.calibration_scores_, self.calibration_scores_, return_extrapolated=True
        )
        if not bulk.all():
            scores[~bulk] = self._model_scores(self.model_, matrix[~bulk])
            p_values[~bulk], extrapolated[~bulk] = self._p_values(matrix[~bulk])
        return self._findings(matrix, scores, p_values, extrapolated, row_id_array(row_ids, X, len(matrix)))

    def _cross_fit(self, matrix: np.ndarray):
        splits = fold_splits(len(matrix), n_folds=self.n_folds, random_state=self.random_state)
        return cross_fit(
            splits,
            lambda train: self._fit_model(matrix[train]),
            lambda model, test: self._model_scores(model, matrix[test]),
            len(matrix),
        )

    def _fit_reference(self, matrix: np.ndarray, names, *, self_referential: bool) -> None:
        fitted = self._cross_fit(matrix)
        self.fold_models_ = fitted.models
        self.calibration_scores_ = fitted.out_of_fold
        self.calibration_folds_ = fitted.folds
        # A tail (trusted: fitted to the largest scores; self-referential:
        # from the middle) lets p-values go below 1 / (n + 1).
        has_tail = self_referential or peaks_over_threshold(self.calibration_scores_) is not None
        check_calibration(len(self.calibration_scores_), self.alpha, self.name, conformal=not has_tail)
        self.model_ = self._fit_model(matrix)
        self.reference_sorted_ = np.sort(matrix, axis=0)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = matrix.shape[1]
        self.self_referential_ = self_referential

    def _p_values(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cross-conformal p-values of rows from the fold models, and which were extrapolated."""
        per_fold = fold_scores(self.fold_models_, self._model_scores, matrix)
        if self.self_referential_:
            return tail_extrapolated_p_values(
                self.calibration_scores_, per_fold, calibration_folds=self.calibration_folds_,
                return_extrapolated=True,
            )
        return guarded_p_values(self.calibration_scores_, self.calibration_folds_, per_fold)

    def _findings(self, matrix, scores, p_values, extrapolated, row_ids) -> pd.DataFrame:
        flagged = p_values <= self.alpha
        bulk = "the bulk of this batch" if self.self_referential_ else "the trusted distribution"
        beyond = "the bulk of this batch" if self.self_referential_ else "the trusted scores"
        p_texts = [format_p(p, beyond if tail else None) for p, tail in zip(p_values, extrapolated)]
        reasons = np.array([f"within {bulk} ({text})" for text in p_texts], dtype=object)
        for row in np.flatnonzero(flagged):
            reasons[row] = self._flagged_reason(matrix[row], p_texts[row])
        return make_findings(
            row_ids=row_ids,
            check=self.name,
            scores=scores,
            p_values=p_values,
            flagged=flagged,
            reasons=reasons,
        )

    def _flagged_reason(self, row: np.ndarray, p_text: str) -> str:
        population = "the rest of the batch" if self.self_referential_ else "trusted rows"
        head = f"unusual against {population} ({p_text})"
        details = self._unusual_features(row, population)
        if not details:
            return (
                f"{head}: an unusual combination of values; no single feature is "
                f"outside the central {1 - 2 * UNUSUAL_TAIL:.0%} of {population}"
            )
        return f"{head}: " + "; ".join(details)

    def _unusual_features(self, row: np.ndarray, population: str) -> list[str]:
        reference = self.reference_sorted_
        n_reference = reference.shape[0]
        tails, above = tail_probabilities(reference, row[None, :])
        tails, above = tails[0], above[0]
        low, high = reference[int(0.25 * (n_reference - 1))], reference[int(0.75 * (n_reference - 1))]
        spread = np.where(high - low > 0, high - low, 1.0)
        distance = np.maximum(row - reference[-1], reference[0] - row) / spread
        order = np.lexsort((-distance, tails))
        details = []
        for column in order[:MAX_NAMED_FEATURES]:
            if tails[column] > UNUSUAL_TAIL:
                break
            details.append(
                self._describe_feature(column, row[column], bool(above[column]), distance[column], population)
            )
        return details

    def _describe_feature(self, column: int, value: float, above: bool, distance: float, population: str) -> str:
        name = str(self.feature_names_in_[column])
        values = self.reference_sorted_[:, column]
        n_reference = len(values)
        is_binary = np.isin(values, (0.0, 1.0)).all() and value in (0.0, 1.0)
        if is_binary:
            # One-hot and missing-indicator columns read better as presence.
            same = int(np.sum(values == value))
            share = "no" if same == 0 else f"only {same / n_reference:.1%} of"
            if name.endswith("__missing"):
                name = name[: -len("__missing")] + " missing"
            subject = f"'{name}'" if value == 1.0 else f"not '{name}'"
            return f"{subject} ({share} {population} are like this)"
        direction = "above" if above else "below"
        if distance > 1.0:
            return f"{name} far {direction} the range of {population}"
        if distance > 0.0:
            return f"{name} {direction} the range of {population}"
        if above:
            share = np.searchsorted(values, value, side="left") / n_reference
            return f"{name} higher than {share:.1%} of {population}"
        share = (n_reference - np.searchsorted(values, value, side="right")) / n_reference
        return f"{name} lower than {share:.1%} of {population}"


@register
class ECODOutlierDetector(_CrossFittedOutlierDetector):
    """ECOD outliers (PyOD), calibrated on trusted rows; registered as ``outlier.ecod``.

    Score of a row: ``sum over features of -log(tail)`` with the tail of
    :func:`tail_probabilities`, identical to ``pyod.models.ecod.ECOD`` scoring
    that row alone against the reference. A feature's contribution saturates
    at ``log(n_reference + 1)`` once the value is beyond every reference
    value, however far beyond: one wild feature among many ordinary ones may
    not reach ``alpha``. Range expectations catch those rows; so does
    ``outlier.iforest`` when the value also breaks the joint structure. See
    :class:`_CrossFittedOutlierDetector` for parameters and attributes.
    """

    name = "outlier.ecod"

    def _fit_model(self, matrix):
        # n_jobs=1: the pipeline parallelises over chunks, not inside a model.
        model = ECOD(n_jobs=1).fit(matrix)
        # Scores rank rows against the training rows (ECOD's X_train): sort
        # them once here rather than once per scored chunk and fold model.
        model.sorted_train_ = np.sort(matrix, axis=0)
        return model

    def _model_scores(self, model, matrix):
        tails, _ = tail_probabilities(model.sorted_train_, matrix)
        return -np.log(tails).sum(axis=1)


@register
class IForestOutlierDetector(_CrossFittedOutlierDetector):
    """Isolation-forest outliers (PyOD), registered as ``outlier.iforest``.

    Score of a row: PyOD ``IForest.decision_function`` (higher = shorter
    average isolation path). See :class:`_CrossFittedOutlierDetector` for
    parameters and attributes.
    """

    name = "outlier.iforest"

    def _fit_model(self, matrix):
        return IForest(n_estimators=100, random_state=self.random_state, n_jobs=1).fit(matrix)

    def _model_scores(self, model, matrix):
        return model.decision_function(matrix)


# Per-label scales are floored at this share of the feature's overall spread
# (and at MIN_SCALE encoded units), so a label whose few trusted rows share
# one value does not make every other value infinitely far.
SCALE_FLOOR_SHARE = 0.1
MIN_SCALE = 0.05
# Distance of a 0/1 value (category level, missing indicator) that a label's
# trusted rows never show: as unusual as a number 10 interquartile ranges out.
UNSEEN_LEVEL = 10.0
# Batch rows that must show a 0/1 level before it counts as seen for a label
# (see pooled_profile).
MIN_SEEN_BATCH_ROWS = 3


class _LabelProfile(NamedTuple):
    """Per-label medians and scales of every feature (one fold model)."""

    labels: np.ndarray  # (K,)
    medians: np.ndarray  # (K, n_features)
    scales: np.ndarray  # (K, n_features)
    binary: np.ndarray  # (n_features,) 0/1 columns (one-hot levels, missing indicators)
    seen: np.ndarray  # (K, n_features, 2) whether the label's rows show 0 / 1 there


def label_profile(matrix: np.ndarray, labels: np.ndarray) -> _LabelProfile:
    """Medians and floored interquartile ranges of each feature within each label.

    For 0/1 columns an interquartile range says little (it jumps from 0 to 1
    as a level passes a quarter of the rows); they keep which values each
    label shows instead.
    """
    values = np.unique(labels)
    overall = np.subtract(*np.percentile(matrix, [75, 25], axis=0))
    floor = np.maximum(SCALE_FLOOR_SHARE * overall, MIN_SCALE)
    binary = np.all((matrix == 0.0) | (matrix == 1.0), axis=0)
    medians = np.empty((len(values), matrix.shape[1]))
    scales = np.empty_like(medians)
    seen = np.zeros((len(values), matrix.shape[1], 2), dtype=bool)
    for index, value in enumerate(values):
        rows = matrix[labels == value]
        medians[index] = np.median(rows, axis=0)
        scales[index] = np.maximum(np.subtract(*np.percentile(rows, [75, 25], axis=0)), floor)
        seen[index, :, 0] = np.any(rows == 0.0, axis=0)
        seen[index, :, 1] = np.any(rows == 1.0, axis=0)
    return _LabelProfile(values, medians, scales, binary, seen)


def pooled_profile(trusted, trusted_labels, batch, batch_labels) -> _LabelProfile:
    """Medians and scales from trusted and batch rows, for each label.

    A 0/1 level (a category, a missing value) counts as seen for a label when
    a trusted row of that label shows it, or at least ``MIN_SEEN_BATCH_ROWS``
    batch rows do: one poisoned row must not make its own level ordinary,
    and a small reference misses levels that clean rows show now and then.
    """
    if not len(batch):
        return label_profile(trusted, trusted_labels)
    pooled = label_profile(np.vstack([trusted, batch]), np.concatenate([trusted_labels, batch_labels]))
    alone = label_profile(trusted, trusted_labels)
    seen = np.zeros_like(pooled.seen)
    for index, label in enumerate(pooled.labels):
        match = np.flatnonzero(alone.labels == label)
        if match.size:
            seen[index] = alone.seen[match[0]]
        rows = batch[batch_labels == label]
        seen[index, :, 0] |= np.sum(rows == 0.0, axis=0) >= MIN_SEEN_BATCH_ROWS
        seen[index, :, 1] |= np.sum(rows == 1.0, axis=0) >= MIN_SEEN_BATCH_ROWS
    return pooled._replace(seen=seen)


def feature_distances(profile: _LabelProfile, matrix: np.ndarray, code: int) -> np.ndarray:
    """Per-feature robust distance of rows from label ``code``, shape (n_rows, n_features).

    ``|x - median| / scale``; for 0/1 columns ``UNSEEN_LEVEL`` where the
    label's rows never show the row's value, else 0.
    """
    distances = np.abs(matrix - profile.medians[code]) / profile.scales[code]
    if profile.binary.any():
        columns = np.flatnonzero(profile.binary)
        level = (matrix[:, columns] != 0.0).astype(int)
        unseen = ~profile.seen[code, columns, :][np.arange(len(columns)), level]
        distances[:, columns] = np.where(unseen, UNSEEN_LEVEL, 0.0)
    return distances


def profile_distances(profile: _LabelProfile, matrix: np.ndarray) -> np.ndarray:
    """Robust distance of each row to each label: the largest of ``feature_distances``.

    Returns
    -------
    numpy.ndarray, shape (n_rows, K)
    """
    if not len(matrix):
        return np.empty((0, len(profile.labels)))
    return np.stack(
        [feature_distances(profile, matrix, k).max(axis=1) for k in range(len(profile.labels))], axis=1
    )


@register
class ClassConditionalOutlierDetector(Detector):
    """Rows impossible for their own label; registered as ``outlier.class_conditional``.

    A row can be ordinary overall but impossible for its label: a flipped
    label, a corrupted feature that is still inside the overall range, a
    category the label never has. Score: the largest, over features, of
    ``|x - median| / scale`` where median and scale (interquartile range,
    floored) come from the trusted rows *of the row's label*. The score is
    unbounded, so a cell scaled by 10 stands out however many ordinary
    features the row has (unlike ECOD's sum, which saturates per feature).

    Calibration as for the other outlier detectors: stratified cross-fitting
    keeps per-fold label profiles and the trusted rows' out-of-fold scores,
    and batch rows get cross-conformal p-values. Without a reference the batch
    is cross-fitted against itself (medians and interquartile ranges ignore a
    poisoned minority) and calibrated on its robust bulk. Rows whose label the
    trusted rows never show are flagged.

    With ``pool_batch`` (the default), ``findings`` fits the per-label medians
    and scales on the trusted rows *and* the batch rows of known labels (fold
    ``k``'s profile: every batch row plus the trusted rows outside fold
    ``k``), and calibrates on the trusted rows' out-of-fold scores as before.
    A 10 % reference has a handful of rows per label, whose quartiles are
    too rough to call one cell impossible; medians and quartiles of the
    pooled rows ignore a poisoned minority. Batch rows are in every fold's
    profile, so their scores lean low: conservative. ``score`` judges against
    the trusted rows alone.

    Parameters
    ----------
    alpha : float
    n_folds : int
    random_state : int or None
    pool_batch : bool
        Fit the profiles on the batch rows too (see above).

    Attributes
    ----------
    profile_ : per-label medians and scales from all trusted rows (reasons, ``score``)
    fold_models_ : list of per-label profiles, one per fold
    calibration_scores_, calibration_folds_ : numpy.ndarray, shape (n_trusted,)
    classes_ : numpy.ndarray, shape (K,)
    feature_names_in_, n_features_in_, self_referential_
    """

    name = "outlier.class_conditional"

    def __init__(self, alpha=0.01, n_folds=5, random_state=0, pool_batch=True):
        self.alpha = alpha
        self.n_folds = n_folds
        self.random_state = random_state
        self.pool_batch = pool_batch

    def fit(self, X, y):
        """Fit per-label profiles on trusted rows and calibrate by cross-fitting.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,)

        Returns
        -------
        self
        """
        matrix, names = feature_matrix(X)
        labels = label_array(y, len(matrix)).astype(str)
        self._fit_reference(matrix, labels, names, self_referential=False)
        return self

    def score(self, X, y) -> np.ndarray:
        """Largest robust distance from the row's own label, shape (n_rows,); inf for unseen labels."""
        check_is_fitted(self, "profile_")
        matrix, _ = feature_matrix(X, feature_names=list(self.feature_names_in_))
        labels = label_array(y, len(matrix)).astype(str)
        return self._own(self.profile_, matrix, labels)

    def findings(self, X, y, row_ids=None) -> pd.DataFrame:
        """Judge batch rows against the trusted rows of their own label.

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        check_is_fitted(self, "profile_")
        matrix, _ = feature_matrix(X, feature_names=list(self.feature_names_in_))
        labels = label_array(y, len(matrix)).astype(str)
        fitted, profile = (self.fold_models_, self.calibration_scores_, self.calibration_folds_), self.profile_
        if self.pool_batch and not self.self_referential_:
            usable = np.isin(labels, self.classes_)
            extra = (matrix[usable], labels[usable])
            cross = self._cross_fit(self.reference_, self.reference_labels_, extra)
            fitted = (cross.models, cross.out_of_fold, cross.folds)
            profile = pooled_profile(self.reference_, self.reference_labels_, *extra)
        scores = self._own(profile, matrix, labels)
        p_values, extrapolated = self._p_values(matrix, labels, *fitted)
        return self._findings(
            matrix, labels, scores, p_values, extrapolated, row_id_array(row_ids, X, len(matrix)), profile
        )

    def self_findings(self, X, y, row_ids=None) -> pd.DataFrame:
        """Judge a batch against the profiles of its own labels (no trusted reference)."""
        matrix, names = feature_matrix(X)
        labels = label_array(y, len(matrix)).astype(str)
        ids = row_id_array(row_ids, X, len(matrix))
        values, counts = np.unique(labels, return_counts=True)
        lone = np.isin(labels, values[counts < 2])
        self._fit_reference(matrix[~lone], labels[~lone], names, self_referential=True)
        scores = np.full(len(matrix), np.inf)
        p_values = np.full(len(matrix), np.finfo(float).tiny)
        extrapolated = np.zeros(len(matrix), dtype=bool)
        scores[~lone] = self.calibration_scores_
        logged = np.log1p(self.calibration_scores_)
        p_values[~lone], extrapolated[~lone] = tail_extrapolated_p_values(
            logged[logged <= robust_cut(logged)], logged, return_extrapolated=True,
        )
        return self._findings(matrix, labels, scores, p_values, extrapolated, ids, self.profile_)

    def _cross_fit(self, matrix, labels, extra=None):
        """Fold profiles (each also fitted on ``extra`` rows, if any) and out-of-fold scores."""
        codes = np.searchsorted(self.classes_, labels)
        splits = fold_splits(
            len(matrix), n_folds=self.n_folds, random_state=self.random_state, labels=codes,
            label_names=self.classes_,
        )
        extra_matrix, extra_labels = extra if extra is not None else (matrix[:0], labels[:0])
        return cross_fit(
            splits,
            lambda train: pooled_profile(matrix[train], labels[train], extra_matrix, extra_labels),
            lambda profile, test: self._own(profile, matrix[test], labels[test]),
            len(matrix),
        )

    def _fit_reference(self, matrix, labels, names, *, self_referential: bool) -> None:
        self.classes_ = np.unique(labels)
        fitted = self._cross_fit(matrix, labels)
        self.fold_models_ = fitted.models
        self.calibration_scores_ = fitted.out_of_fold
        self.calibration_folds_ = fitted.folds
        check_calibration(len(matrix), self.alpha, self.name, conformal=False)
        self.profile_ = label_profile(matrix, labels)
        self.reference_ = matrix
        self.reference_labels_ = labels
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = matrix.shape[1]
        self.self_referential_ = self_referential

    @staticmethod
    def _own(profile: _LabelProfile, matrix: np.ndarray, labels: np.ndarray) -> np.ndarray:
        distances = profile_distances(profile, matrix)
        position = np.searchsorted(profile.labels, labels)
        known = (position < len(profile.labels)) & (profile.labels[np.minimum(position, len(profile.labels) - 1)] == labels)
        own = np.full(len(matrix), np.inf)
        own[known] = distances[np.flatnonzero(known), position[known]]
        return own

    def _p_values(self, matrix, labels, fold_models, calibration_scores, calibration_folds):
        per_fold = fold_scores(fold_models, lambda profile, rows: self._own(profile, rows, labels), matrix)
        # P-values on log(1 + score): the same ranks, but a tail that the
        # largest distances (sparse features, a level a label never shows)
        # do not stretch into flagging ordinary rows.
        per_fold = np.log1p(np.where(np.isfinite(per_fold), per_fold, np.finfo(float).max))
        calibration = np.log1p(calibration_scores)
        if self.self_referential_:
            return tail_extrapolated_p_values(
                calibration, per_fold, calibration_folds=calibration_folds, return_extrapolated=True,
            )
        return guarded_p_values(calibration, calibration_folds, per_fold)

    def _describe(self, profile, column: int, value: float, z: float, code: int, population: str, seen_in: str) -> str:
        name = str(self.feature_names_in_[column])
        label = self.classes_[code]
        if profile.binary[column]:
            if name.endswith("__missing"):
                subject = f"{name[: -len('__missing')]} is {'missing' if value else 'present'}"
            else:
                subject = f"'{name}'" if value else f"not '{name}'"
            return f"{subject}, which no {seen_in} labelled '{label}' show"
        side = "above" if value > profile.medians[code, column] else "below"
        return f"{name} {z:.1f} interquartile ranges {side} the median of {population} labelled '{label}'"

    def _findings(self, matrix, labels, scores, p_values, extrapolated, row_ids, profile) -> pd.DataFrame:
        known = np.isin(labels, self.classes_)
        flagged = (p_values <= self.alpha) | ~known
        population = "rows of the batch" if self.self_referential_ else "trusted rows"
        beyond = "the bulk of this batch" if self.self_referential_ else "the trusted scores"
        texts = [format_p(p, beyond if tail else None) for p, tail in zip(p_values, extrapolated)]
        reasons = np.array([f"typical of {population} with its label ({text})" for text in texts], dtype=object)
        distances = profile_distances(profile, matrix)
        # Whose medians and scales the distances are measured in.
        measured_on = "trusted and batch rows" if self.pool_batch and not self.self_referential_ else population
        for row in np.flatnonzero(flagged):
            label = labels[row]
            if not known[row]:
                reasons[row] = f"label '{label}' never occurs in the {population}" if label else (
                    f"the label is empty; every one of the {population} has one"
                )
                continue
            code = int(np.searchsorted(profile.labels, label))
            z = feature_distances(profile, matrix[row][None, :], code)[0]
            worst = [c for c in np.argsort(-z)[:MAX_NAMED_FEATURES] if z[c] >= 1.0]
            parts = [self._describe(profile, c, matrix[row, c], z[c], code, measured_on, population) for c in worst]
            believed = self.classes_[int(np.argmin(distances[row]))]
            fits = f"; it fits label '{believed}' better" if believed != label else ""
            reasons[row] = (
                f"impossible for label '{label}' against {measured_on} labelled '{label}' ({texts[row]}): "
                + "; ".join(parts) + fits
            )
        return make_findings(
            row_ids=row_ids, check=self.name, scores=scores, p_values=p_values, flagged=flagged, reasons=reasons
        )
