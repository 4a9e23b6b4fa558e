"""Rows impossible for their own label: ``outlier.class_conditional``.

A row can be ordinary overall but impossible for its label: a flipped label,
a corrupted cell still inside the overall range, a category the label never
shows. :class:`ClassConditionalOutlierDetector` measures each feature's
robust distance (``|x - median| / interquartile range``) from the rows of the
row's own label, and calibrates the largest of them on trusted rows as the
other outlier detectors do (``detectors.outliers``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from poisonguard.detectors._crossfit import (
    check_calibration,
    cross_fit,
    fold_scores,
    fold_splits,
    guarded_p_values,
    label_conditional_p_values,
    single_fold_p_values,
    tail_extrapolated_p_values,
)
from poisonguard.detectors._row_blocks import row_blocks, rows_per_block, rows_where
from poisonguard.detectors._sampling import population_mask, reference_sample
from poisonguard.detectors._unique import isin_values, rows_of_each, unique_values
from poisonguard.detectors.calibration import MONDRIAN_MIN_ROWS
from poisonguard.detectors.base import NOT_EXPLAINED, Detector, DetectorTags
from poisonguard.detectors.outliers import MAX_NAMED_FEATURES
from poisonguard.detectors.registry import register

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


def label_profile(matrix: np.ndarray, labels: np.ndarray, robust_rows=None, rows=None) -> _LabelProfile:
    """Medians and floored interquartile ranges of each feature within each label.

    For 0/1 columns an interquartile range says little (it jumps from 0 to 1
    as a level passes a quarter of the rows); they keep which values each
    label shows instead.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    labels : numpy.ndarray, shape (n_rows,)
    robust_rows : numpy.ndarray of bool, shape (n_rows,), optional
        Measure medians and quartiles on these rows only (a seeded sample of
        a large batch, ``detectors._sampling``); which 0/1 values a label
        shows is still read from all its rows, so a rare level is not unseen
        because the sample missed it.
    rows : numpy.ndarray of int, optional
        Profile these rows of ``matrix`` (``labels`` and ``robust_rows`` are
        theirs); all by default. They are read a block at a time, not
        copied: a fold's rows of a batch judged against itself are most of
        it (a million rows of 159 features: 1 GB a fold, and the 0/1
        columns copied again).
    """
    positions = np.arange(len(matrix)) if rows is None else np.asarray(rows)
    values, codes = unique_values(labels, return_inverse=True)
    n_features = matrix.shape[1]
    blocks = list(row_blocks(len(positions), rows_per_block(n_features)))
    is_binary = np.ones(n_features, dtype=bool)
    for block in blocks:
        part = matrix[positions[block]]
        is_binary &= np.all((part == 0.0) | (part == 1.0), axis=0)
    binary = np.flatnonzero(is_binary)
    robust = matrix[positions if robust_rows is None else positions[robust_rows]]
    robust_labels = labels if robust_rows is None else labels[robust_rows]
    overall = np.subtract(*np.percentile(robust, [75, 25], axis=0))
    floor = np.maximum(SCALE_FLOOR_SHARE * overall, MIN_SCALE)
    medians = np.empty((len(values), n_features))
    scales = np.empty_like(medians)
    for index, rows in enumerate(rows_of_each(robust_labels, values)):
        measured = robust[rows]
        medians[index] = np.median(measured, axis=0)
        scales[index] = np.maximum(np.subtract(*np.percentile(measured, [75, 25], axis=0)), floor)
    # Only 0/1 columns are judged by the levels seen (``feature_distances``).
    seen = np.zeros((len(values), n_features, 2), dtype=bool)
    for block in blocks:
        levels, block_codes = matrix[positions[block]][:, binary], codes[block]
        for index in np.unique(block_codes):
            shown = levels[block_codes == index]
            seen[index, binary, 0] |= np.any(shown == 0.0, axis=0)
            seen[index, binary, 1] |= np.any(shown == 1.0, axis=0)
    return _LabelProfile(values, medians, scales, is_binary, seen)


def pooled_profile(trusted, trusted_labels, batch, batch_labels, robust_trusted=None, rows=None) -> _LabelProfile:
    """Medians and scales from trusted and batch rows, for each label.

    A 0/1 level (a category, a missing value) counts as seen for a label when
    a trusted row of that label shows it, or at least ``MIN_SEEN_BATCH_ROWS``
    batch rows do: one poisoned row must not make its own level ordinary,
    and a small reference misses levels that clean rows show now and then.
    ``robust_trusted`` and ``rows``: as ``label_profile``'s ``robust_rows``
    and ``rows``, for the trusted rows (every batch row given is measured).
    """
    if not len(batch):
        return label_profile(trusted, trusted_labels, robust_trusted, rows)
    if rows is not None:
        trusted = trusted[rows]
    robust = None if robust_trusted is None else np.concatenate([robust_trusted, np.ones(len(batch), dtype=bool)])
    pooled = label_profile(np.vstack([trusted, batch]), np.concatenate([trusted_labels, batch_labels]), robust)
    alone = label_profile(trusted, trusted_labels, robust_trusted)
    seen = np.zeros_like(pooled.seen)
    in_alone = pd.Index(np.asarray(alone.labels, dtype=object)).get_indexer(np.asarray(pooled.labels, dtype=object))
    for index, members in enumerate(rows_of_each(batch_labels, pooled.labels)):
        if in_alone[index] >= 0:
            seen[index] = alone.seen[in_alone[index]]
        rows = batch[members]
        seen[index, :, 0] |= np.sum(rows == 0.0, axis=0) >= MIN_SEEN_BATCH_ROWS
        seen[index, :, 1] |= np.sum(rows == 1.0, axis=0) >= MIN_SEEN_BATCH_ROWS
    return pooled._replace(seen=seen)


def feature_distances(profile: _LabelProfile, matrix: np.ndarray, code: int) -> np.ndarray:
    """Per-feature robust distance of rows from label ``code``, shape (n_rows, n_features).

    ``|x - median| / scale``; for 0/1 columns ``UNSEEN_LEVEL`` where the
    label's rows never show the row's value, else 0.
    """
    # In place: one rows x features temporary, not three (a million rows: 160 MB each).
    distances = np.subtract(matrix, profile.medians[code])
    np.abs(distances, out=distances)
    np.divide(distances, profile.scales[code], out=distances)
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


def shows_unseen_level(profile: _LabelProfile, matrix: np.ndarray, labels: np.ndarray, rows=None) -> np.ndarray:
    """Whether each row has a 0/1 value its label's rows never show under ``profile``, shape (n_rows,).

    ``rows``: the rows of ``matrix`` to judge (``labels`` are theirs), all by
    default; read a block at a time, not copied. Rows of a label the profile
    lacks: False (they are judged by their label).
    """
    positions = np.arange(len(matrix)) if rows is None else np.asarray(rows)
    unseen = np.zeros(len(positions), dtype=bool)
    columns = np.flatnonzero(profile.binary)
    if not columns.size:
        return unseen
    block_rows = rows_per_block(len(columns))
    for code, mine in enumerate(rows_of_each(labels, profile.labels)):
        # seen[column, value]: whether the label's rows show that 0/1 value there.
        seen = profile.seen[code, columns, :]
        for block in row_blocks(mine.size, block_rows):
            shows_one = matrix[np.ix_(positions[mine[block]], columns)] != 0.0
            unseen[mine[block]] = ~np.where(shows_one, seen[:, 1], seen[:, 0]).all(axis=1)
    return unseen


def tie_floor(fold_scores, labels, folds, unseen) -> np.ndarray:
    """The smallest p-value a row can have when other rows of its label share its very score.

    Without a reference the batch is its own calibration, and a tail fitted
    through its upper percentiles is smooth where the scores are not: on a
    column of a few brackets (a skewed income), every row of a label in the
    top bracket sits at one distance from the label's median. Chile's 97
    such rows were each given p = 0.0024, and its clean batch lost 5.6 % of
    its rows at a 5 % rate. A score that ``m`` rows of a label share is a
    mode of that label, not an impossibility: it is at least as common as
    the other ``m - 1`` rows make it, ``(m - 1) / (n + 1)``. Rows judged only
    by a level their label never shows (``UNSEEN_LEVEL``) all share that
    score by construction and keep their p-value; so do unique scores. Which
    rows those are is said (``unseen``), not read off the score: a number
    can sit exactly ``UNSEEN_LEVEL`` spreads out (one overall spread from a
    label's median, over the label's spread floored at a tenth of that),
    and gov_transfers' 52 such rows lost their floor when it was.
    Exact copies of one row share everything, and are ``duplicates.flood``'s
    to find.

    Parameters
    ----------
    fold_scores : numpy.ndarray of float, shape (n_rows, K)
        Every row's distance from its own label under each fold's profile:
        scores under different profiles never tie, so a row's score is
        compared with its label's rows under the profile that scored it.
    labels : numpy.ndarray, shape (n_rows,)
    folds : numpy.ndarray of int, shape (n_rows,)
        The fold that scored each row out of fold (its calibration score is
        ``fold_scores[row, folds[row]]``).
    unseen : numpy.ndarray of bool, shape (n_rows,)
        Rows that show a 0/1 value their label never shows under the
        profile that scored them (``shows_unseen_level``).

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1)``
    """
    fold_scores = np.asarray(fold_scores, dtype=float)
    folds = np.asarray(folds, dtype=int)
    own = fold_scores[np.arange(len(folds)), folds]
    floor = np.zeros(len(folds))
    for members in rows_of_each(labels, unique_values(labels)):
        for fold in np.unique(folds[members]):
            rows = members[folds[members] == fold]
            ordered = np.sort(fold_scores[members, fold])
            tied = np.searchsorted(ordered, own[rows], side="right") - np.searchsorted(ordered, own[rows], side="left")
            floor[rows] = (tied - 1) / (len(ordered) + 1.0)
    floor[np.asarray(unseen, dtype=bool) & (own == UNSEEN_LEVEL)] = 0.0
    return floor


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
    poisoned minority) and calibrated on its robust bulk; a score that many
    rows of a label share is never called rarer than they make it
    (``tie_floor``). Rows whose label the trusted rows never show are flagged.

    With ``pool_batch`` (the default), ``findings`` fits the per-label medians
    and scales on the trusted rows *and* the batch rows of known labels (fold
    ``k``'s profile: every batch row plus the trusted rows outside fold
    ``k``), and calibrates on the trusted rows' out-of-fold scores as before.
    A 10 % reference has a handful of rows per label, whose quartiles are
    too rough to call one cell impossible; medians and quartiles of the
    pooled rows ignore a poisoned minority. Batch rows are in every fold's
    profile, so their scores lean low: conservative. ``score`` judges against
    the trusted rows alone. A batch of more than 20,000 rows pools a seeded
    sample of them (``detectors._sampling``): the quartiles of 20,000 rows
    are within about 0.03 standard deviations of a million's, at a fiftieth
    of the cost. So are the trusted rows' own medians and quartiles when there
    are more than 20,000 of them, and a batch's without a reference; which
    0/1 levels each label shows is read from all rows.

    Parameters
    ----------
    alpha : float
    n_folds : int
    random_state : int or None
        Seeds the fold split and the sample of a large batch that is pooled.
    confidence : float or None
        Hold ``alpha`` for the reference at hand, not on average (see
        :class:`~poisonguard.detectors.base.Detector`).
    pool_batch : bool
        Fit the profiles on the batch rows too (see above).

    Attributes
    ----------
    profile_ : per-label medians and scales from the trusted rows (reasons, ``score``)
    fold_models_ : list of per-label profiles, one per fold
    calibration_scores_, calibration_folds_ : numpy.ndarray, shape (n_trusted,)
    profile_rows_ : int
        Rows whose medians and quartiles were measured (a sample of a large set).
    classes_ : numpy.ndarray, shape (K,)
    feature_names_in_, n_features_in_, self_referential_
    """

    name = "outlier.class_conditional"
    # Pooled profiles (pool_batch) and the batch's guard on extrapolated
    # p-values make findings depend on the batch. An empty label is a label
    # no trusted row has: such rows are flagged, not skipped.
    tags = DetectorTags(needs_labels=True, uses_batch=True, accepts_empty_labels=True)
    _fitted_attribute = "profile_"

    def __init__(self, alpha=0.01, n_folds=5, random_state=0, pool_batch=True, confidence=None):
        self.alpha = alpha
        self.n_folds = n_folds
        self.random_state = random_state
        self.pool_batch = pool_batch
        self.confidence = confidence

    def fit(self, X, y=None):
        """Fit per-label profiles on trusted rows and calibrate by cross-fitting.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,)

        Returns
        -------
        self
        """
        matrix, labels, _ = self._validate_reference(X, y)
        matrix, labels = reference_sample(self.random_state, matrix, labels)
        self._fit_reference(matrix, labels)
        return self

    def score(self, X, y=None) -> np.ndarray:
        """Largest robust distance from the row's own label, shape (n_rows,); inf for unseen labels."""
        matrix, labels, _ = self._validate_fitted(X, y)
        return self._own(self.profile_, matrix, labels)

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge batch rows against the trusted rows of their own label.

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        matrix, labels, ids = self._validate_fitted(X, y, row_ids)
        fitted, profile = (self.fold_models_, self.calibration_scores_, self.calibration_folds_), self.profile_
        if self.pool_batch and not self.self_referential_:
            # A large batch pools a seeded sample of its rows (``detectors._sampling``).
            usable = isin_values(labels, self.classes_) & population_mask(len(matrix), self.random_state, labels)
            extra = (matrix[usable], labels[usable])
            cross = self._cross_fit(
                self.reference_, self.reference_labels_, self._robust_rows(self.reference_labels_), extra
            )
            fitted = (cross.models, cross.out_of_fold, cross.folds)
            profile = pooled_profile(self.reference_, self.reference_labels_, *extra)
        scores = self._own(profile, matrix, labels)
        p_values, extrapolated = self._p_values(matrix, labels, *fitted)
        return self._findings(matrix, labels, scores, p_values, extrapolated, ids, profile)

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge a batch against the profiles of its own labels (no trusted reference).

        Rows of a label that occurs once are flagged (no profile to judge
        them by); the fitted state is usable for later batches.
        """
        matrix, labels, ids = self._validate_reference(X, y, row_ids, self_referential=True)
        values, counts = unique_values(labels, return_counts=True)
        lone = isin_values(labels, values[counts < 2])
        profiled = rows_where(matrix, ~lone)  # the batch itself, unless a label is alone
        self._fit_reference(profiled, labels[~lone])
        scores = np.full(len(matrix), np.inf)
        p_values = np.full(len(matrix), np.finfo(float).tiny)
        extrapolated = np.zeros(len(matrix), dtype=bool)
        scores[~lone] = self.calibration_scores_
        logged = np.log1p(self.calibration_scores_)
        # Label by label (Mondrian), each against its own bulk and upper tail: a
        # small label's profile is rougher, so all its rows sit farther from it;
        # pooled, a 10 % label lost 7 % of the batch's clean rows. (Median and
        # quartile alone are too coarse for these tied, discrete distances.)
        kept = np.flatnonzero(~lone)
        p_values[kept], extrapolated[kept] = label_conditional_p_values(
            lambda same, rows: single_fold_p_values(logged[same], logged[rows], self_referential=True),
            labels[~lone], labels[~lone], min_rows=MONDRIAN_MIN_ROWS,
        )
        # Every row under every fold's profile, to count the rows that share its score.
        per_fold = fold_scores(
            self.fold_models_, lambda profile, rows: self._own(profile, rows, labels[~lone]), profiled
        )
        floor = tie_floor(per_fold, labels[~lone], self.calibration_folds_, self._unseen(profiled, labels[~lone]))
        extrapolated[kept] &= p_values[kept] >= floor
        p_values[kept] = np.maximum(p_values[kept], floor)
        # A row is explained by the fold profile that judged it: in the whole
        # batch's profile its own rare level counts as seen, and the reason
        # named nothing.
        judged_by = np.full(len(matrix), -1)
        judged_by[kept] = self.calibration_folds_
        return self._findings(matrix, labels, scores, p_values, extrapolated, ids, self.profile_, judged_by)

    def _unseen(self, matrix, labels) -> np.ndarray:
        """``shows_unseen_level`` of each calibration row, under the fold profile that scored it."""
        unseen = np.zeros(len(matrix), dtype=bool)
        for fold, profile in enumerate(self.fold_models_):
            rows = np.flatnonzero(self.calibration_folds_ == fold)
            unseen[rows] = shows_unseen_level(profile, matrix, labels[rows], rows)
        return unseen

    def _cross_fit(self, matrix, labels, robust, extra=None):
        """Fold profiles (each also fitted on ``extra`` rows, if any) and out-of-fold scores.

        ``robust``: as ``_robust_rows`` of ``labels``.
        """
        codes = np.searchsorted(self.classes_, labels)
        splits = fold_splits(
            len(matrix), n_folds=self.n_folds, random_state=self.random_state, labels=codes,
            label_names=self.classes_,
        )
        extra_matrix, extra_labels = extra if extra is not None else (matrix[:0], labels[:0])
        return cross_fit(
            splits,
            lambda train: pooled_profile(
                matrix, labels[train], extra_matrix, extra_labels, None if robust is None else robust[train], train
            ),
            lambda profile, test: self._own(profile, matrix, labels[test], test),
            len(matrix),
        )

    def _fit_reference(self, matrix, labels) -> None:
        self.classes_ = unique_values(labels)
        robust = self._robust_rows(labels)
        fitted = self._cross_fit(matrix, labels, robust)
        self.fold_models_ = fitted.models
        self.calibration_scores_ = fitted.out_of_fold
        self.calibration_folds_ = fitted.folds
        check_calibration(len(matrix), self.alpha, self.name, conformal=False)
        self.reference_ = matrix
        self.reference_labels_ = labels
        self.profile_rows_ = len(matrix) if robust is None else int(robust.sum())
        # Last: profile_ marks the detector fitted.
        self.profile_ = label_profile(matrix, labels, robust)

    def _robust_rows(self, labels):
        """Rows whose medians and quartiles are measured: all (None), or a seeded sample of a large set.

        Without a reference the batch is the set: the quartiles of 20,000 of
        a million rows are within about 0.03 standard deviations of all of
        theirs, and sorting every fold's 800,000 rows cost 6 s.
        """
        sample = population_mask(len(labels), self.random_state, labels)
        return None if sample.all() else sample

    @staticmethod
    def _own(profile: _LabelProfile, matrix: np.ndarray, labels: np.ndarray, rows=None) -> np.ndarray:
        """Each row's largest robust distance from its own label (inf for a label the profile lacks).

        ``rows``: the rows of ``matrix`` to judge (``labels`` are theirs), all by default.
        """
        positions = np.arange(len(matrix)) if rows is None else np.asarray(rows)
        own = np.full(len(positions), np.inf)
        # A block of a label's rows at a time: their row-by-feature distances
        # are several temporaries each (a wide table's 40,000 rows of 190
        # encoded features: 60 MB apiece).
        block_rows = rows_per_block(matrix.shape[1])
        for code, mine in enumerate(rows_of_each(labels, profile.labels)):
            for block in row_blocks(mine.size, block_rows):
                own[mine[block]] = feature_distances(profile, matrix[positions[mine[block]]], code).max(axis=1)
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
        return guarded_p_values(calibration, calibration_folds, per_fold, confidence=self.confidence)

    def _describe(self, profile, column: int, value: float, z: float, code: int, population: str, seen_in: str) -> str:
        name = str(self.feature_names_in_[column])
        label = profile.labels[code]
        if profile.binary[column]:
            if name.endswith("__missing"):
                subject = f"{name[: -len('__missing')]} is {'missing' if value else 'present'}"
            else:
                subject = f"'{name}'" if value else f"not '{name}'"
            return f"{subject}, which no {seen_in} labelled '{label}' show"
        side = "above" if value > profile.medians[code, column] else "below"
        return f"{name} {z:.1f} interquartile ranges {side} the median of {population} labelled '{label}'"

    def _rows_by_judge(self, rows: np.ndarray, labels, profile, judged_by) -> list:
        """``rows`` grouped by the profile each is measured on: ``[(profile, rows), ...]``.

        A row's fold profile (``judged_by[row]``), or ``profile`` where it has
        none (-1) or the fold's rows lack the row's label (no profile of it).
        """
        if judged_by is None:
            return [(profile, rows)] if len(rows) else []
        folds = np.asarray(judged_by)[rows]
        on_whole = folds < 0
        groups = []
        for fold in np.unique(folds[~on_whole]):
            judge = self.fold_models_[fold]
            in_fold = folds == fold
            judge_labels = set(judge.labels)
            has_label = np.array([label in judge_labels for label in labels[rows[in_fold]]], dtype=bool)
            on_whole[in_fold] = ~has_label
            groups.append((judge, rows[in_fold][has_label]))
        groups.append((profile, rows[on_whole]))
        return [(judge, judged) for judge, judged in groups if len(judged)]

    def _findings(self, matrix, labels, scores, p_values, extrapolated, row_ids, profile, judged_by=None) -> pd.DataFrame:
        """Findings with reasons measured on ``profile``, or on fold profile ``judged_by[row]`` where that is >= 0."""
        known = isin_values(labels, self.classes_)
        described = self._described(p_values, extra_flags=~known)
        population = "rows of the batch" if self.self_referential_ else "trusted rows"
        explained = self._explained(p_values, extra_flags=~known)
        texts = self._p_value_texts(p_values, extrapolated, explained)
        reasons = np.full(len(labels), NOT_EXPLAINED, dtype=object)
        for row in np.flatnonzero(explained):
            reasons[row] = f"typical of {population} with its label ({texts[row]})"

        # Whose medians and scales the distances are measured in.
        measured_on = "trusted and batch rows" if self.pool_batch and not self.self_referential_ else population
        sampled = ""
        if self.self_referential_ and self.profile_rows_ < len(self.reference_):
            sampled = f" (medians and quartiles of a seeded sample of {self.profile_rows_:,} batch rows)"
        rows = np.flatnonzero(described)
        for row in rows[~known[rows]]:
            label = labels[row]
            reasons[row] = f"label '{label}' never occurs in the {population}" if label else (
                f"the label is empty; every one of the {population} has one"
            )
        # Each row is measured on its fold's profile (the whole one where
        # none, or where the fold's rows lack its label), a block of the
        # rows a profile measures at a time: one row at a time, a heavily
        # poisoned million-row batch's 150,000 described rows took 7 s.
        for judge, judged_rows in self._rows_by_judge(rows[known[rows]], labels, profile, judged_by):
            for block in row_blocks(len(judged_rows), rows_per_block(matrix.shape[1])):
                block_rows = judged_rows[block]
                values = matrix[block_rows]
                codes = np.searchsorted(judge.labels, labels[block_rows])
                z = np.empty(values.shape)
                for code in np.unique(codes):
                    z[codes == code] = feature_distances(judge, values[codes == code], int(code))
                named = np.argsort(-z, axis=1)[:, :MAX_NAMED_FEATURES]
                believed = judge.labels[np.argmin(profile_distances(judge, values), axis=1)]
                for i, row in enumerate(block_rows):
                    label, code = labels[row], int(codes[i])
                    parts = [self._describe(judge, c, values[i, c], z[i, c], code, measured_on, population)
                             for c in named[i] if z[i, c] >= 1.0]
                    # Only described rows name the label they fit better.
                    fits = f"; it fits label '{believed[i]}' better" if believed[i] != label else ""
                    reasons[row] = (
                        f"impossible for label '{label}' against {measured_on} labelled '{label}' ({texts[row]}): "
                        + "; ".join(parts) + fits + sampled
                    )
        # A label no trusted row has is flagged whatever its p-value.
        return self._judged(scores, p_values, reasons, row_ids, extra_flags=~known)
