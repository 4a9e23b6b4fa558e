"""Outlier detectors: rows unlike the trusted reference, with calibrated p-values.

Two registered detectors (``outlier.class_conditional``, a row impossible for
its own label, lives in ``detectors.class_conditional``):

``outlier.ecod`` (:class:`ECODOutlierDetector`)
    ECOD: each feature's empirical tail probability against the reference,
    summed as ``-log`` (without a reference, features that repeat one
    another, a diamond's carat, price and sizes, count once between them).
    Parameter-free and explainable feature by feature.
``outlier.iforest`` (:class:`IForestOutlierDetector`)
    Isolation forest: also catches unusual *combinations* of values.

Calibration (``fit``): the trusted rows are split into ``n_folds``; each fold
is scored by a model fitted on the other folds, and both the fold models and
those out-of-fold scores are kept. A batch row's p-value is cross-conformal:
it is scored by every fold model and compared with that fold's held-out
scores (``detectors.calibration.cross_conformal_p_values``), so calibration rows and
batch rows are scored by models fitted on equally many rows. (Scoring batch
rows with a model fitted on all trusted rows instead is biased upwards for
small references: ECOD's tail probability beyond the training maximum is
``1 / (n + 1)``, smaller for more rows.) Beyond the most outlying trusted
rows, the p-value comes from an exponential tail fitted to their scores, so
a far-away row can be flagged at ``alpha`` below ``1 / (n + 1)``, as far as
the batch's own tail confirms (``detectors._crossfit.guarded_p_values``).

The reported ``score`` is that of a final model fitted on all trusted rows
(it ranks rows and, for ECOD fitted on trusted rows, equals PyOD's score);
it need not order rows exactly as the p-values do.

Scores are row-independent: a row's score does not depend on which other rows
are scored with it. PyOD's ``ECOD.decision_function`` re-ranks the training
rows together with the *whole* scored batch, so a batch full of similar
poisoned rows would mask itself, and chunked scoring would change scores.
``ECODOutlierDetector`` therefore computes, vectorised, exactly what
``ECOD.decision_function`` returns for one row scored on its own (with
correlated features discounted when the batch is its own reference).

Self-referential mode (``self_findings``, no trusted reference): the batch
is cross-fitted against itself twice, the second time without the rows above
a robust cut; see :meth:`_CrossFittedOutlierDetector.self_findings`.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from pyod.models.iforest import IForest
from scipy.stats import rankdata
from sklearn.utils.validation import check_is_fitted

from poisonguard.detectors._copies import value_groups
from poisonguard.detectors._crossfit import (
    GUARD_MIN_ROWS,
    batch_tail,
    check_calibration,
    cross_fit,
    fold_scores,
    fold_splits,
    batch_guarded,
    robust_cut,
    tail_extrapolated_p_values,
)
from poisonguard.detectors._row_blocks import BLOCK_ROWS, row_blocks, rows_per_block
from poisonguard.detectors._sampling import population_mask, reference_sample
from poisonguard.detectors._threads import map_in_threads
from poisonguard.detectors._unique import unique_values
from poisonguard.detectors.base import NOT_EXPLAINED, Detector, DetectorTags
from poisonguard.detectors.calibration import CrossConformal, cross_conformal, peaks_over_threshold
from poisonguard.detectors.features import RARITY_SUFFIX
from poisonguard.detectors.judges import ScoredRowsJudge, described_rows
from poisonguard.detectors.registry import register

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
    at_most, below = rank_counts(sorted_reference, X)
    at_least = n_reference - below
    tails = (1.0 + np.minimum(at_most, at_least)) / (n_reference + 1.0)
    return tails, at_least < at_most


def rank_counts(sorted_reference: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``#{r <= x}`` and ``#{r < x}`` of each value of ``X`` among its column's reference values.

    Parameters
    ----------
    sorted_reference : numpy.ndarray, shape (n_reference, n_features)
        Each column sorted ascending.
    X : numpy.ndarray, shape (n_rows, n_features)

    Returns
    -------
    at_most, below : numpy.ndarray of int64, shape (n_rows, n_features)
    """
    at_most = np.empty(X.shape, dtype=np.int64)
    below = np.empty(X.shape, dtype=np.int64)
    for column in range(X.shape[1]):
        values = sorted_reference[:, column]
        # In value order: searching a large reference for unordered values
        # misses the cache on every search (a batch judged against itself, a
        # million rows: 80 of ECOD's 90 s).
        order = np.argsort(X[:, column])
        ordered = X[order, column]
        at_most[order, column] = np.searchsorted(values, ordered, side="right")
        below[order, column] = np.searchsorted(values, ordered, side="left")
    return at_most, below


def sorted_folds(matrix: np.ndarray, folds: np.ndarray, n_folds: int):
    """The fold each value of ``np.sort(matrix, axis=0)`` was held out in, or None when too large.

    ``folds`` (shape (n_rows,)) is each row's fold. None when the running
    counts over ``n_folds`` folds would pass ``MAX_RUNNING_COUNTS``.
    """
    if matrix.size * n_folds > MAX_RUNNING_COUNTS:
        return None
    order = np.argsort(matrix, axis=0, kind="stable")
    return folds.astype(np.int8)[order]


def running_fold_counts(sorted_folds: np.ndarray, n_folds: int) -> np.ndarray:
    """``in_fold[k, i, j]``: rows of fold ``k`` among the first ``i`` sorted values of column ``j``.

    ``sorted_folds`` (shape (n_reference, n_features)) is the fold each sorted
    reference value was held out in; the result has shape
    (n_folds, n_reference + 1, n_features).
    """
    n_reference, n_features = sorted_folds.shape
    in_fold = np.zeros((n_folds, n_reference + 1, n_features), dtype=np.int32)
    for fold in range(n_folds):
        np.cumsum(sorted_folds == fold, axis=0, out=in_fold[fold, 1:])
    return in_fold


def fold_rank_counts(sorted_reference: np.ndarray, in_fold: np.ndarray, X: np.ndarray) -> Iterator[tuple]:
    """``rank_counts`` of ``X`` in the whole reference and in each fold model's training rows.

    Fold model ``k`` was fitted on the reference rows outside fold ``k``: its
    counts are the whole reference's minus those of fold ``k``'s rows, read
    off the running counts ``in_fold`` (``running_fold_counts``) at the two
    positions one search of the whole reference found.

    Yields
    ------
    (at_most, below, n_train), the whole reference first, then fold model
    0, 1, ...; one at a time, so that a chunk's counts for every model are
    not held at once.
    """
    n_reference, n_features = sorted_reference.shape
    columns = np.arange(n_features)
    at_most, below = rank_counts(sorted_reference, X)
    yield at_most, below, n_reference
    # Flat positions, found once for every fold: ``take`` of them is several
    # times faster than indexing each fold's counts by (row, column) pairs.
    at_most_cells, below_cells = at_most * n_features + columns, below * n_features + columns
    for fold_counts in in_fold:
        n_train = n_reference - int(fold_counts[-1, 0]) if n_features else n_reference
        flat = fold_counts.reshape(-1)
        yield at_most - flat.take(at_most_cells), below - flat.take(below_cells), n_train


def copies_floor(matrix: np.ndarray) -> np.ndarray:
    """The smallest p-value an outlier can have when other batch rows hold its very values.

    Without a reference the batch calibrates itself, and its robust cut
    sets aside everything above a median of tied scores: openintro's
    cancer_in_dogs has one two-valued feature, and the 491 rows of its
    rarer value were set aside, then judged by models that never saw it,
    as outliers (42 % of a clean batch at a rate of 5 %). A row whose values
    ``m`` rows of the batch hold is at least as common as the other
    ``m - 1`` make it, ``(m - 1) / (n + 1)`` (as ``class_conditional.tie_floor``
    says of a label's scores). Exact copies are ``duplicates.flood``'s to find.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1)``
    """
    if not len(matrix):
        return np.zeros(0)
    return (value_groups(matrix)[1] - 1) / (len(matrix) + 1.0)


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
    confidence : float or None
        Hold ``alpha`` for the reference at hand, not on average (see
        :class:`~poisonguard.detectors.base.Detector`).

    Attributes
    ----------
    model_ : model fitted on all reference rows (gives ``score``): a PyOD
        detector, or for ECOD the reference's sorted columns.
    fold_models_ : list of models as ``model_``, shape (n_folds,)
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

    # Scores are row-independent, but a p-value beyond the trusted scores
    # must be confirmed by the batch's own tail (guarded_p_values): findings
    # depend on the batch.
    tags = DetectorTags(needs_labels=False, uses_batch=True)
    _fitted_attribute = "model_"
    # Without a reference, whether the batch's own 75th-90th percentile tail
    # (``batch_tail``) guards the one drawn from the bulk, as it guards a
    # trusted tail (``guarded_p_values``).
    _guard_self_tail = False

    def __init__(self, alpha=0.01, n_folds=5, random_state=0, confidence=None):
        self.alpha = alpha
        self.n_folds = n_folds
        self.random_state = random_state
        self.confidence = confidence

    def _guard_scale(self, scores: np.ndarray) -> np.ndarray:
        """The scale on which the batch's own tail is exponential (``_guard_self_tail``): the score's own."""
        return scores

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
        matrix, _, _ = self._validate_reference(X, y)
        matrix, _ = reference_sample(self.random_state, matrix)
        self._prepare(matrix)
        self._fit_reference(matrix)
        return self

    def score(self, X, y=None) -> np.ndarray:
        """Outlier score of each row, shape (n_rows,); higher = more outlying."""
        matrix, _, _ = self._validate_fitted(X, y)
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
        judge = self.batch_judge()
        judge.add(X, y, row_ids)
        return judge.findings()

    def batch_judge(self) -> ScoredRowsJudge:
        """Judge a batch a chunk at a time, with the findings ``findings`` gives the whole batch.

        Rows are scored alone; the batch enters their findings only through
        the tail that guards extrapolated p-values (``guarded_p_values``),
        read from every row's fold scores. So the judge keeps, per row, its
        id, score, fold scores and p-values before the guard (``K + 3``
        floats and a flag), and of the rows themselves only those described
        before the guard: it only raises p-values, so the rows described
        after it are among them. See ``detectors.judges``.

        Returns
        -------
        detectors.judges.ScoredRowsJudge
        """
        check_is_fitted(self)
        return ScoredRowsJudge(self)

    def _score_chunk(self, X, y, row_ids, *, first_row: int) -> dict:
        """One chunk's arrays for ``ScoredRowsJudge`` (see ``batch_judge``)."""
        matrix, _, ids = self._validate_fitted(X, y, row_ids)
        scores, per_fold = self._scores_and_fold_scores(matrix)
        counted = self._counted_p_values(per_fold)
        kept = np.flatnonzero(self._described(counted.p_values))
        return {
            "row_ids": ids, "scores": scores, "per_fold": per_fold, "counted": counted.counted,
            "p_values": counted.p_values, "extrapolated": counted.extrapolated,
            "kept_positions": first_row + kept, "kept_rows": matrix[kept],
        }

    def _judge_scored(self, scored: dict) -> pd.DataFrame:
        """The findings of a batch from its chunks' arrays joined (``ScoredRowsJudge``; it gives them up)."""
        # Taken out of ``scored``, so that they are freed before the reasons are written.
        counted = CrossConformal(scored.pop("counted"), scored.pop("p_values"), scored.pop("extrapolated"))
        p_values, extrapolated = self._guarded(counted, scored.pop("per_fold"))
        del counted

        def rows_at(positions: np.ndarray) -> np.ndarray:
            return described_rows(scored["kept_positions"], scored["kept_rows"], positions, self.name)

        return self._findings(rows_at, scored["scores"], p_values, extrapolated, scored["row_ids"])

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge a batch against itself when there is no trusted reference.

        Two passes, so that poisoned rows neither train the reference model
        nor sit in the calibration sample:

        1. Cross-fit on the batch (each row scored by a model that did not
           see it; a batch of more than 20,000 rows on a seeded sample of
           them, ``detectors._sampling``) and set aside the rows above a robust cut,
           ``median + 3 * 1.4826 * MAD`` of those scores. Median and MAD
           ignore up to half the rows, so the cut stays near the clean bulk
           however the poisoned rows score. Without this pass, a cluster of
           similar poisoned rows teaches the model that its region is normal.
        2. Fit as on trusted data, on the rows below the cut
           (``_second_pass_reference``; ECOD keeps the whole sample's shares
           of two-valued columns): their cross-fitted scores are the
           calibration sample (and give their p-values), and the rows set
           aside (and those outside the sample) are judged by the fold
           models, as ``findings`` judges later batches.

        A row whose values other batch rows hold exactly keeps a p-value of
        at least their share (``copies_floor``): many rows of one value are
        no outliers, and copies are ``duplicates.flood``'s to find.

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
        matrix, _, ids = self._validate_reference(X, y, row_ids, self_referential=True)
        # A large batch fits on a seeded sample of its rows (``detectors._sampling``),
        # as the trusted rows would be: every fold model then holds a copy of
        # 16,000 rows, not of 800,000 (a million rows: ECOD took 18 s and held
        # about 1 GB of sorted columns), and the rows outside the sample are
        # judged by the fold models like the rows above the cut.
        sample = np.flatnonzero(population_mask(len(matrix), self.random_state))
        self._prepare(matrix[sample])
        first_pass = self._cross_fit(matrix[sample]).out_of_fold
        bulk = np.zeros(len(matrix), dtype=bool)
        bulk[sample[first_pass <= robust_cut(first_pass)]] = True
        self.batch_sample_rows_ = len(sample) if len(sample) < len(matrix) else None
        self._fit_reference(self._second_pass_reference(matrix, sample, bulk))
        scores = np.empty(len(matrix))
        p_values = np.empty(len(matrix))
        extrapolated = np.zeros(len(matrix), dtype=bool)
        scores[bulk] = self.calibration_scores_
        p_values[bulk], extrapolated[bulk] = tail_extrapolated_p_values(
            self.calibration_scores_, self.calibration_scores_, return_extrapolated=True
        )
        if not bulk.all():
            # A block of rows at a time: outside a large batch's sample is
            # nearly all of it, and a copy of those rows was the batch again
            # (1.3 GB at a million rows of 159 encoded features).
            rest = np.flatnonzero(~bulk)
            per_fold = np.empty((len(rest), len(self.fold_models_)))
            # Several scoring chunks a block, so that they still run on every core.
            for block in row_blocks(len(rest), rows_per_block(matrix.shape[1], REST_BLOCK_CHUNKS * SCORE_CHUNK_ROWS)):
                scores[rest[block]], per_fold[block] = self._scores_and_fold_scores(matrix[rest[block]])
            p_values[~bulk], extrapolated[~bulk] = self._p_values(per_fold)
        guarded = self._guard_scale(scores) if self._guard_self_tail and len(scores) >= GUARD_MIN_ROWS else None
        guard = None if guarded is None else batch_tail(guarded)
        if guard is not None:
            p_values = np.where(extrapolated, np.maximum(p_values, guard.p_values(guarded)), p_values)
        floor = copies_floor(matrix)
        extrapolated &= p_values >= floor
        return self._findings(matrix.__getitem__, scores, np.maximum(p_values, floor), extrapolated, ids)

    def _prepare(self, matrix: np.ndarray) -> None:
        """Set what every model of this fit shares, from the rows it fits on (before cross-fitting)."""

    def _second_pass_reference(self, matrix: np.ndarray, sample: np.ndarray, bulk: np.ndarray) -> np.ndarray:
        """The rows the second pass of ``self_findings`` fits on: the batch's rows below the robust cut."""
        return matrix[bulk]

    def _cross_fit(self, matrix: np.ndarray):
        splits = fold_splits(len(matrix), n_folds=self.n_folds, random_state=self.random_state)
        return cross_fit(
            splits,
            lambda train: self._fit_model(matrix[train]),
            lambda model, test: self._model_scores(model, matrix[test]),
            len(matrix),
        )

    def _fit_reference(self, matrix: np.ndarray) -> None:
        fitted = self._cross_fit(matrix)
        self.fold_models_ = fitted.models
        self.calibration_scores_ = fitted.out_of_fold
        self.calibration_folds_ = fitted.folds
        # A tail (trusted: fitted to the largest scores; self-referential:
        # from the middle) lets p-values go below 1 / (n + 1).
        has_tail = self.self_referential_ or peaks_over_threshold(self.calibration_scores_) is not None
        check_calibration(len(self.calibration_scores_), self.alpha, self.name, conformal=not has_tail)
        self._keep_reference(matrix)
        # Last: model_ marks the detector fitted.
        self.model_ = self._fit_model(matrix)

    def _keep_reference(self, matrix: np.ndarray) -> None:
        """Keep what scoring and reasons read of the reference rows (after cross-fitting)."""
        self.reference_sorted_ = np.sort(matrix, axis=0)

    def _scores_and_fold_scores(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores of rows under the final model, shape (n_rows,), and under each fold model, (n_rows, K)."""
        return self._model_scores(self.model_, matrix), fold_scores(self.fold_models_, self._model_scores, matrix)

    def _p_values(self, per_fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cross-conformal p-values of rows from their fold-model scores, and which were extrapolated.

        Guarded by these rows' own tail (``_guarded``): ``per_fold`` is the batch's.
        """
        return self._guarded(self._counted_p_values(per_fold), per_fold)

    def _counted_p_values(self, per_fold: np.ndarray) -> CrossConformal:
        """The p-values of rows before the batch's guard, each from the row's own fold scores alone."""
        if self.self_referential_:
            p_values, extrapolated = tail_extrapolated_p_values(
                self.calibration_scores_, per_fold, calibration_folds=self.calibration_folds_,
                return_extrapolated=True,
            )
            # Nothing guards them (``_guarded``): the counts are not read.
            return CrossConformal(p_values, p_values, extrapolated)
        return cross_conformal(self.calibration_scores_, self.calibration_folds_, per_fold, confidence=self.confidence)

    def _guarded(self, counted: CrossConformal, per_fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``counted`` raised to the tail of the batch's ``per_fold`` scores, with a trusted reference."""
        if self.self_referential_:
            return counted.p_values, counted.extrapolated
        return batch_guarded(counted, self.calibration_folds_, per_fold)

    def _findings(self, rows_at, scores, p_values, extrapolated, row_ids) -> pd.DataFrame:
        """The findings table; ``rows_at(positions)`` gives the feature rows of the rows to describe."""
        bulk = "the bulk of this batch" if self.self_referential_ else "the trusted distribution"
        explained = self._explained(p_values)
        p_texts = self._p_value_texts(p_values, extrapolated, explained)
        reasons = np.full(len(p_values), NOT_EXPLAINED, dtype=object)
        for row in np.flatnonzero(explained):
            reasons[row] = f"within {bulk} ({p_texts[row]})"
        described = np.flatnonzero(self._described(p_values))
        reasons[described] = self._flagged_reasons(rows_at(described), p_texts[described])
        return self._judged(scores, p_values, reasons, row_ids)

    def _population(self) -> str:
        """What the rows were judged against, in a reason's words."""
        if not self.self_referential_:
            return "trusted rows"
        sampled = getattr(self, "batch_sample_rows_", None)
        return f"a seeded sample of {sampled:,} rows of the batch" if sampled else "the rest of the batch"

    def _flagged_reasons(self, rows: np.ndarray, p_texts: np.ndarray) -> list[str]:
        """The reason of each flagged row (``rows``, shape (n_flagged, n_features)), naming its unusual features."""
        population = self._population()
        # Computed for all flagged rows at once: a large batch flags thousands.
        reference = self.reference_sorted_
        n_reference = reference.shape[0]
        tails, above = tail_probabilities(reference, rows)
        low, high = reference[int(0.25 * (n_reference - 1))], reference[int(0.75 * (n_reference - 1))]
        spread = np.where(high - low > 0, high - low, 1.0)
        distances = np.maximum(rows - reference[-1], reference[0] - rows) / spread
        binary_columns = np.isin(reference, (0.0, 1.0)).all(axis=0)
        reasons = []
        for row, p_text, row_tails, row_above, distance in zip(rows, p_texts, tails, above, distances):
            head = f"unusual against {population} ({p_text})"
            details = []
            for column in np.lexsort((-distance, row_tails))[:MAX_NAMED_FEATURES]:
                if row_tails[column] > UNUSUAL_TAIL:
                    break
                details.append(self._describe_feature(
                    column, row[column], bool(row_above[column]), distance[column], population,
                    binary_column=bool(binary_columns[column]),
                ))
            if details:
                reasons.append(f"{head}: " + "; ".join(details))
            else:
                reasons.append(
                    f"{head}: an unusual combination of values; no single feature is "
                    f"outside the central {1 - 2 * UNUSUAL_TAIL:.0%} of {population}"
                )
        return reasons

    def _describe_feature(
        self, column: int, value: float, above: bool, distance: float, population: str, *, binary_column: bool
    ) -> str:
        name = str(self.feature_names_in_[column])
        values = self.reference_sorted_[:, column]
        n_reference = len(values)
        is_binary = binary_column and value in (0.0, 1.0)
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
    """ECOD outliers (PyOD's score), calibrated on trusted rows; registered as ``outlier.ecod``.

    Score of a row: ``sum over features j of w_j * -log(tail_j)`` with the
    tail of :func:`tail_probabilities`. With every ``w_j = 1`` it is
    identical to ``pyod.models.ecod.ECOD`` scoring that row alone against the
    reference. ECOD assumes independent features: ``k`` features that move
    together (a diamond's carat, price and three sizes) count a large stone
    ``k`` times. Trusted rows calibrate that heavy tail like any other (and
    the plain sum finds more corrupted values: 0.64 against 0.61 of them with
    a reference on the benchmark's tuning half). A batch that is its own
    reference cannot: the rows above its robust cut fall beyond the bulk's
    range on all ``k`` at once, far beyond the tail drawn from the bulk
    (3.5 % of clean diamonds at ``p <= 0.007``). So without a reference the
    weights are :func:`redundancy_weights` of the batch, and the ``k``
    features count once between them (1.0 % of the diamonds; 0.2 % once the
    second pass also keeps the batch's category shares,
    :meth:`_second_pass_reference`).

    A feature's contribution saturates at ``w_j * log(n_reference + 1)``
    once the value is beyond every reference value, however far beyond: one
    wild feature among many ordinary ones may not reach ``alpha``. Range
    expectations catch those rows; so does ``outlier.iforest`` when the value
    also breaks the joint structure. See :class:`_CrossFittedOutlierDetector`
    for the other parameters and attributes.

    Parameters
    ----------
    discount_correlated : bool or None
        Weight features by :func:`redundancy_weights` (True) or sum them as
        PyOD does (False); None (default): only when the batch is its own
        reference (``self_findings``).

    Attributes
    ----------
    feature_weights_ : numpy.ndarray of float, shape (n_features,)
        ``w``, in ``(0, 1]`` (all 1 when not discounted); shared by the
        final and every fold model.
    reference_sorted_folds_ : numpy.ndarray of int8, shape (n_reference, n_features), or None
        The fold each value of ``reference_sorted_`` was held out in (None
        for a reference too large for it), which scores every fold model at
        once (:func:`fold_tail_scores`).
    """

    name = "outlier.ecod"
    # A sum of a few discrete contributions (counts, two-level answers) runs
    # on beyond the exponential through the bulk's median and quartile: without
    # a reference ECOD flagged 3.0 % of AER's DoctorVisits and 2.1 % of its
    # Fertility at alpha = 0.007 (0.9 and 0.6 % guarded). A poisoned tenth of
    # the batch moves neither percentile. (The isolation forest's bounded path
    # lengths have a light tail; guarded, it no longer found a tight 5 % cluster.)
    _guard_self_tail = True

    def __init__(self, alpha=0.01, n_folds=5, random_state=0, discount_correlated=None, confidence=None):
        super().__init__(alpha=alpha, n_folds=n_folds, random_state=random_state, confidence=confidence)
        self.discount_correlated = discount_correlated

    def _prepare(self, matrix: np.ndarray) -> None:
        discount = self.self_referential_ if self.discount_correlated is None else self.discount_correlated
        if discount:
            self.feature_weights_ = redundancy_weights(matrix, random_state=self.random_state)
        else:
            self.feature_weights_ = np.ones(matrix.shape[1])

    def _second_pass_reference(self, matrix: np.ndarray, sample: np.ndarray, bulk: np.ndarray) -> np.ndarray:
        """The bulk's rows, each two-valued column drawn from the whole sample instead.

        ECOD reads each column's distribution alone, so a column may come from
        other rows. A category level that only rows above the robust cut
        carry is absent from the bulk, and every row with it then lies beyond
        the bulk's range: on AER's Fertility (254,654 rows, no attack) every
        row with ethnicity 'other' (5.6 %) or 'afam' (5.2 %) was flagged, and
        ECOD alone flagged 4.9 % of the batch at ``alpha = 0.007`` (1.8 % with
        this). A level is a share of the batch, not a distance, so a one-hot or
        missing-value column keeps the whole sample's shares (a seeded draw of
        as many values as the bulk has rows). So does a column that
        ``FeatureEncoder`` made of a many-level category's rarity (its name
        ends in ``RARITY_SUFFIX``): a share too, whose rarest values the rows
        above the cut took with them (a synthetic 200,000-row mixed batch
        with a 5,000-level merchant, no reference: the run quarantined 1.56 %
        of its clean rows at a rate of 1 %, nearly all for ECOD alone,
        "merchant__rarity above the range"; 0.01 % with this).
        Other columns keep the bulk's, which is what unmasks a tight cluster
        of poisoned rows; columns of a few more levels stay so too (drawing
        those from the sample as well flagged more clean rows of caravan's
        0-9 codes, 1.8 % at p <= 0.01).
        """
        reference = matrix[bulk]
        pool = matrix[sample]
        rng = np.random.default_rng(self.random_state)
        rarity = np.array([str(name).endswith(RARITY_SUFFIX) for name in self.feature_names_in_], dtype=bool)
        for column in np.flatnonzero(two_valued_columns(pool) | rarity):
            reference[:, column] = rng.choice(pool[:, column], size=len(reference), replace=False)
        return reference

    def _fit_model(self, matrix):
        # ECOD's model is its training rows' empirical distribution: their
        # columns, sorted once here rather than once per scored chunk and fold
        # model. ``pyod.models.ecod.ECOD.fit`` would also score the training
        # rows (unused here) and compile numba code on its first call, 0.7 s
        # of a 3 s demo; the tests check scores against PyOD's.
        return np.sort(matrix, axis=0)

    def _model_scores(self, model, matrix):
        tails, _ = tail_probabilities(model, matrix)
        return weighted_tail_scores(tails, self.feature_weights_)

    def _keep_reference(self, matrix: np.ndarray) -> None:
        super()._keep_reference(matrix)
        # Which fold each sorted reference value was held out in, per column:
        # every fold model's training rows are the reference minus one fold.
        # The running counts of a batch judged against itself (up to a
        # million rows) would not fit in memory: None, scored model by model.
        self.reference_sorted_folds_ = sorted_folds(matrix, self.calibration_folds_, len(self.fold_models_))

    def _scores_and_fold_scores(self, matrix):
        # Identical to scoring with the final and each fold model (tested),
        # from one search per value in the whole reference instead of one
        # per model: counts in a fold model's training rows are the whole
        # reference's minus its held-out fold's, read off a running count.
        if self.reference_sorted_folds_ is None:
            return super()._scores_and_fold_scores(matrix)
        return fold_tail_scores(
            self.reference_sorted_, self.reference_sorted_folds_, len(self.fold_models_), matrix,
            weights=self.feature_weights_,
        )


# Rows of up to ``BLOCK_FEATURES`` features scored at a time by
# ``fold_tail_scores`` (bounds its temporary arrays; fewer rows of a wider table).
SCORE_CHUNK_ROWS = BLOCK_ROWS
# Without a reference, the rows outside the sample are scored this many
# chunks of ``SCORE_CHUNK_ROWS`` at a time: one chunk a block left a core idle
# (ECOD 4.0 -> 7.4 s at a million rows).
REST_BLOCK_CHUNKS = 4
# Running counts ``fold_tail_scores`` may hold (4 bytes each): 25 million is
# 100 MB, a 250,000-row reference of 20 features in 5 folds.
MAX_RUNNING_COUNTS = 25_000_000


def two_valued_columns(matrix) -> np.ndarray:
    """Which columns hold at most two distinct values (one-hot levels, missing-value indicators), shape (n_features,)."""
    matrix = np.asarray(matrix, dtype=float)
    return np.array([len(unique_values(matrix[:, column])) <= 2 for column in range(matrix.shape[1])], dtype=bool)


def weighted_tail_scores(tails: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ECOD scores, ``sum_j weights_j * -log(tails_j)``, one per row of ``tails``."""
    # A row-wise sum, not a matrix product: its result does not depend on how
    # many rows are scored at once, so chunked and whole scores match bit for bit.
    return (-np.log(tails) * weights).sum(axis=1)


def redundancy_weights(matrix, random_state=0) -> np.ndarray:
    """Weight of each feature in an ECOD sum: one over how many features it repeats.

    ``w_j = 1 / sum_k rho_jk ** 2`` with ``rho`` the Spearman correlation of
    the columns (``rho_jj = 1``; a constant column correlates with nothing).
    ``k`` features that are monotone functions of one another get ``1 / k``
    each and count once together; an independent feature gets 1; the two
    columns of a two-level one-hot get a half each. Spearman, because tails
    are ranks. Measured on a seeded sample of at most ``POPULATION_ROWS``
    rows (``detectors._sampling``).

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    random_state : int or None

    Returns
    -------
    numpy.ndarray of float, shape (n_features,), values in ``(0, 1]``
    """
    matrix = np.asarray(matrix, dtype=float)
    sample = matrix[population_mask(len(matrix), random_state)]
    ranks = rankdata(sample, axis=0)
    ranks -= ranks.mean(axis=0)
    norms = np.sqrt((ranks ** 2).sum(axis=0))
    standardized = np.divide(ranks, norms, out=np.zeros_like(ranks), where=norms > 0)
    squared = (standardized.T @ standardized) ** 2
    np.fill_diagonal(squared, 1.0)
    return 1.0 / squared.sum(axis=1)


def fold_tail_scores(
    sorted_reference, sorted_folds, n_folds: int, X, weights=None
) -> tuple[np.ndarray, np.ndarray]:
    """ECOD scores of ``X`` against the whole reference and against each fold model's training rows.

    Fold model ``k`` was fitted on the reference rows outside fold ``k``. Its
    counts ``#{r <= x}`` and ``#{r >= x}`` are the whole reference's minus
    those of fold ``k``'s rows, which a running count over the sorted
    reference gives at the two positions ``np.searchsorted`` finds; the
    scores equal ``weighted_tail_scores(tail_probabilities(...), weights)``
    under each model exactly.

    Parameters
    ----------
    sorted_reference : numpy.ndarray, shape (n_reference, n_features)
        Each column sorted ascending.
    sorted_folds : numpy.ndarray of int, shape (n_reference, n_features)
        The fold (0..n_folds-1) each sorted value was held out in.
    n_folds : int
    X : numpy.ndarray, shape (n_rows, n_features)
    weights : numpy.ndarray of float, shape (n_features,), optional
        Each feature's weight in the sum (all 1, PyOD's ECOD, by default).

    Returns
    -------
    scores : numpy.ndarray, shape (n_rows,)
        Under the model of the whole reference.
    per_fold : numpy.ndarray, shape (n_rows, n_folds)
    """
    n_features = sorted_reference.shape[1]
    weights = np.ones(n_features) if weights is None else np.asarray(weights, dtype=float)
    in_fold = running_fold_counts(sorted_folds, n_folds)
    scores = np.empty(len(X))
    per_fold = np.empty((len(X), n_folds))

    def score_chunk(rows: slice) -> None:
        counts = fold_rank_counts(sorted_reference, in_fold, X[rows])
        for position, (at_most, below, n_train) in enumerate(counts):
            tails = (1.0 + np.minimum(at_most, n_train - below)) / (n_train + 1.0)
            if position == 0:
                scores[rows] = weighted_tail_scores(tails, weights)
            else:
                per_fold[rows, position - 1] = weighted_tail_scores(tails, weights)

    # Chunks at once (detectors._threads): each writes only its own rows.
    map_in_threads(score_chunk, row_blocks(len(X), rows_per_block(n_features, SCORE_CHUNK_ROWS)))
    return scores, per_fold


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
