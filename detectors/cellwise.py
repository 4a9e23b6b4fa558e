"""Cells that break their row's relations between columns: ``outlier.cellwise``.

ECOD judges each feature alone, and a corrupted cell inside its column's
range is ordinary there: a loan of 4,800 is common, but not for a purchase
of 1,000; three features stamped at their 2nd or 98th percentile (a
backdoor trigger) are each in range. :class:`CellwiseOutlierDetector`
predicts every cell from the row's other cells and flags the row whose
worst cell is furthest from its prediction, naming that cell.

The model is a Gaussian copula of the trusted rows. Each feature is mapped
to normal scores through the trusted rows' empirical distribution (mid-ranks:
``z = Phi^-1((#{r < x} + #{r <= x} + 1) / (2 (n + 1)))``), so heavy tails,
counts and skewed money columns need no transformation, and a value beyond
every trusted one cannot weigh more than the most extreme trusted value
(how far out it is, ECOD and the range expectations judge). With ``C`` the
correlation of the normal scores and ``P = C^-1``, a cell's score given the
row's others is normal with mean ``-sum_k P_jk z_k / P_jj`` and variance
``1 / P_jj``, so ``r_j = (P z)_j / sqrt(P_jj)`` is its standardised
residual, every cell's at once from one product. The row's score is the
largest ``|r_j|`` over features of more than two values (a 0/1 column, a
category level or a missing-value indicator, predicts but is not judged: its
residual is a rare level, which other detectors read). It is the cellwise
view of Rousseeuw and Van den Bossche's DDC ("Detecting deviating data
cells", Technometrics 2018), which predicts each cell from robust pairwise
correlations; a copula keeps the prediction linear in normal scores, so a
million rows cost a few matrix products.

Calibration and p-values are those of the other outlier detectors
(:class:`~poisonguard.detectors.outliers._CrossFittedOutlierDetector`).

Without a reference the batch's own scores calibrate it, and a tail drawn
from their bulk alone was no rate here. A column of a few values that the
others barely predict puts a large share of rows on one score (an age in
four waves: half the rows at the same ``|z|``), the bulk's spread comes out
near zero, and the rows beyond it got p-values of 1e-30 and less; a
relation the copula cannot draw (a step, near-twin columns) gives clean
rows residuals far beyond the bulk's. On the first 470 of 808 R tables
taken whole as clean batches, 182 lost more rows and 146 fewer, 3,223 more
in all (geepack's ohio 2.1 -> 20.2 %, DAAG's vlt 1.2 -> 14.8 %). So, as
ECOD's, the extrapolated p-values must be confirmed by the batch's own
75th-90th percentile tail, here exponential in the square root of the
score (``_guard_scale``): a heavier tail than the score's own, which a
misspecified copula's residuals have (see ``_guard_scale`` for the
measurements). With trusted rows the calibration is the conformal count of
their scores, lumps and all.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr, ndtri

from poisonguard.detectors import outliers
from poisonguard.detectors._row_blocks import row_blocks, rows_per_block
from poisonguard.detectors._threads import map_in_threads
from poisonguard.detectors.errors import NotEnoughData
from poisonguard.detectors.outliers import (
    MAX_NAMED_FEATURES,
    _CrossFittedOutlierDetector,
    fold_rank_counts,
    rank_counts,
    running_fold_counts,
    sorted_folds,
    two_valued_columns,
)
from poisonguard.detectors.registry import register

# The normal scores' correlation is shrunk this far towards the identity: the
# levels of a one-hot block sum to one, and their correlation alone has no inverse.
SHRINKAGE = 0.05
# A cell is named in a reason when its standardised residual is at least this.
NAMED_RESIDUAL = 3.0
# Predictors named per cell in a reason: those that moved its prediction most,
# and only those that moved it at least this share of the most (an unrelated
# column's pull is never exactly zero).
NAMED_PREDICTORS = 2
NAMED_PULL_SHARE = 0.25


class CopulaModel(NamedTuple):
    """One fitted copula: the training rows' sorted columns and their normal scores' precision."""

    sorted_columns: np.ndarray  # (n_train, n_features)
    precision: np.ndarray  # (n_features, n_features)


def normal_scores(at_most: np.ndarray, below: np.ndarray, n_train: int) -> np.ndarray:
    """Mid-rank normal scores from counts ``#{r <= x}`` and ``#{r < x}`` among ``n_train`` rows."""
    # Read off a table of the 2 n + 1 possible sums: six models' scores of a
    # million rows of 20 features are 120 million inverse normals otherwise.
    return _normal_table(int(n_train))[at_most + below]


@lru_cache(maxsize=16)
def _normal_table(n_train: int) -> np.ndarray:
    table = ndtri((np.arange(2 * n_train + 1) + 1.0) / (2.0 * (n_train + 1.0)))
    table.setflags(write=False)
    return table


def fit_copula(matrix: np.ndarray, sorted_columns=None) -> CopulaModel:
    """The copula of ``matrix``'s rows (shape (n_rows, n_features)): sorted columns and shrunk precision.

    ``sorted_columns``: the marginal distributions to read normal scores
    from (each column sorted ascending), when not ``matrix``'s own.
    """
    sorted_columns = np.sort(matrix, axis=0) if sorted_columns is None else sorted_columns
    n_rows, n_features = matrix.shape
    at_most, below = rank_counts(sorted_columns, matrix)
    scores = normal_scores(at_most, below, len(sorted_columns))
    spread = scores.std(axis=0)
    varies = spread > 0
    correlation = np.eye(n_features)
    if np.count_nonzero(varies) > 1:
        standardized = (scores[:, varies] - scores[:, varies].mean(axis=0)) / spread[varies]
        correlation[np.ix_(varies, varies)] = standardized.T @ standardized / n_rows
    correlation = (1.0 - SHRINKAGE) * correlation + SHRINKAGE * np.eye(n_features)
    return CopulaModel(sorted_columns, np.linalg.inv(correlation))


def cell_residuals(model: CopulaModel, scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Standardised residual of each target cell given its row's other cells, shape (n_rows, n_targets)."""
    precision = model.precision
    return scores @ (precision[:, targets] / np.sqrt(np.diag(precision)[targets]))


def largest_residuals(model: CopulaModel, scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each row's largest absolute ``cell_residuals``, shape (n_rows,)."""
    residuals = cell_residuals(model, scores, targets)
    return np.maximum(residuals.max(axis=1), -residuals.min(axis=1))


@register
class CellwiseOutlierDetector(_CrossFittedOutlierDetector):
    """Rows with a cell its other cells do not predict; registered as ``outlier.cellwise``.

    Score of a row: the largest absolute standardised residual of its
    features of more than two values under a Gaussian copula of the trusted
    rows (see the module docstring). See
    :class:`~poisonguard.detectors.outliers._CrossFittedOutlierDetector` for
    the parameters and the other attributes.

    Parameters
    ----------
    without_reference : bool
        Judge a batch against itself when there is no trusted reference
        (``self_findings``; default True). False: ``self_findings`` raises
        ``NotEnoughData`` and a pipeline run without a reference skips the
        check, saying why.

    Attributes
    ----------
    target_columns_ : numpy.ndarray of bool, shape (n_features,)
        The features judged: more than two distinct values among the rows
        fitted on. Every feature predicts.
    marginals_ : numpy.ndarray, shape (n_sample, n_features), or None
        Without a reference, the batch sample's sorted columns, which every
        model reads normal scores from (see ``_prepare``); None with one.
    reference_sorted_folds_ : numpy.ndarray of int8, shape (n_reference, n_features), or None
        As :class:`~poisonguard.detectors.outliers.ECODOutlierDetector`'s:
        scores every fold model from one search per value.
    """

    name = "outlier.cellwise"
    # Without a reference the batch's own tail guards the one drawn from its
    # bulk, on the square root of the score (``_guard_scale``).
    _guard_self_tail = True

    def __init__(self, alpha=0.01, n_folds=5, random_state=0, confidence=None, without_reference=True):
        super().__init__(alpha=alpha, n_folds=n_folds, random_state=random_state, confidence=confidence)
        self.without_reference = without_reference

    def self_findings(self, X, y=None, row_ids=None):
        """Judge a batch against itself, unless ``without_reference`` is False (see the class docstring)."""
        if not self.without_reference:
            raise NotEnoughData(f"{self.name}: set to judge a batch against trusted rows only (without_reference = false)")
        return super().self_findings(X, y, row_ids)

    def _guard_scale(self, scores: np.ndarray) -> np.ndarray:
        # The largest of a row's standardised residuals has a Gaussian tail
        # when the copula holds; on real tables it often does not (a step
        # between columns, near-twin columns, a few-valued column), and an
        # exponential in the score through the batch's 75th and 90th
        # percentiles was still too light. Over 119 R tables taken whole as
        # clean batches (the 40 worst of the unguarded sweep, 79 drawn from
        # the rest), this detector alone at alpha = 0.00625 flagged on
        # average 1.76 % of rows unguarded, 0.69 % guarded on the score (14
        # tables over 2 %), 0.47 % on its square root (8; ECOD, guarded,
        # 0.51 % and 4) and 0.26 % on its logarithm (4). Added to the
        # run's quarantine on the tuning half's attacked batches (seed 0),
        # mean recall rose 0.038, 0.034, 0.028 and 0.018.
        return np.sqrt(scores)

    def _prepare(self, matrix: np.ndarray) -> None:
        # Without a reference, the second pass fits on the rows below the
        # robust cut, and the rows above it lay beyond that bulk's range on
        # some column: a normal score at the bulk's extreme, whatever their
        # values' relations. On a clean batch of 1,000 loans, 24 such rows
        # (the batch's own tails) were flagged at alpha = 0.01. Where a value
        # stands in its column is a share of the batch, not a relation (as
        # ECOD's two-valued columns, ``ECODOutlierDetector._second_pass_reference``):
        # the whole sample's columns give every model its normal scores,
        # and the bulk alone its correlations, which a cluster of poisoned
        # rows would bend.
        self.marginals_ = np.sort(matrix, axis=0) if self.self_referential_ else None
        self.target_columns_ = ~two_valued_columns(matrix)
        if matrix.shape[1] < 2 or not self.target_columns_.any():
            raise NotEnoughData(
                f"{self.name}: needs two features, one of them of more than two values, to predict a cell "
                f"from the others; got {matrix.shape[1]} feature(s), {int(self.target_columns_.sum())} of them graded"
            )

    def _fit_model(self, matrix):
        return fit_copula(matrix, self.marginals_)

    def _model_scores(self, model, matrix):
        at_most, below = rank_counts(model.sorted_columns, matrix)
        scores = normal_scores(at_most, below, len(model.sorted_columns))
        return largest_residuals(model, scores, self.target_columns_)

    def _keep_reference(self, matrix: np.ndarray) -> None:
        super()._keep_reference(matrix)
        # Without a reference every model shares the sample's marginals: no fold counts to read.
        self.reference_sorted_folds_ = None
        if self.marginals_ is None:
            self.reference_sorted_folds_ = sorted_folds(matrix, self.calibration_folds_, len(self.fold_models_))

    def _scores_and_fold_scores(self, matrix):
        # As ECOD's: every fold model's counts from one search of the whole
        # reference (``fold_rank_counts``), not one search per model; without
        # a reference every model shares the sample's marginals, one search.
        if self.reference_sorted_folds_ is None and self.marginals_ is None:
            return super()._scores_and_fold_scores(matrix)
        n_folds = len(self.fold_models_)
        in_fold = None if self.marginals_ is not None else running_fold_counts(self.reference_sorted_folds_, n_folds)
        scores = np.empty(len(matrix))
        per_fold = np.empty((len(matrix), n_folds))

        def score_chunk(rows: slice) -> None:
            if in_fold is None:
                shared = normal_scores(*rank_counts(self.marginals_, matrix[rows]), len(self.marginals_))
                normal = (shared for _ in range(n_folds + 1))
            else:
                counts = fold_rank_counts(self.reference_sorted_, in_fold, matrix[rows])
                normal = (normal_scores(*model_counts) for model_counts in counts)
            for position, (model, scores_of_model) in enumerate(zip([self.model_, *self.fold_models_], normal)):
                largest = largest_residuals(model, scores_of_model, self.target_columns_)
                if position == 0:
                    scores[rows] = largest
                else:
                    per_fold[rows, position - 1] = largest

        # The chunk size is read when scoring, as ECOD reads it.
        map_in_threads(score_chunk, row_blocks(len(matrix), rows_per_block(matrix.shape[1], outliers.SCORE_CHUNK_ROWS)))
        return scores, per_fold

    def _flagged_reasons(self, rows: np.ndarray, p_texts: np.ndarray) -> list[str]:
        """Each flagged row's reason: its cells furthest from what its other cells predict."""
        population = self._population()
        model = self.model_
        n_train = len(model.sorted_columns)
        at_most, below = rank_counts(model.sorted_columns, rows)
        scores = normal_scores(at_most, below, n_train)
        targets = np.flatnonzero(self.target_columns_)
        residuals = cell_residuals(model, scores, self.target_columns_)
        details: list[list[str]] = [[] for _ in range(len(rows))]
        # Each named cell's numbers for a block of rows at once, the words
        # row by row: one row at a time, a heavily poisoned million-row
        # batch's flagged rows took 3.5 s here.
        for block in row_blocks(len(rows), rows_per_block(rows.shape[1])):
            block_rows = np.arange(len(rows))[block]
            block_residuals = residuals[block]
            ranked = np.argsort(-np.abs(block_residuals), axis=1)[:, :MAX_NAMED_FEATURES]
            named_residuals = np.take_along_axis(block_residuals, ranked, axis=1)
            # After the first, cells are named until one is predicted closer than NAMED_RESIDUAL.
            small = np.abs(named_residuals) < NAMED_RESIDUAL
            small[:, 0] = False
            named = np.cumsum(small, axis=1) == 0
            for rank in range(ranked.shape[1]):
                which = np.flatnonzero(named[:, rank])
                self._describe_cells(
                    rows, scores, details, block_rows[which], targets[ranked[which, rank]],
                    named_residuals[which, rank], population,
                )
        return [f"a value its other values do not predict, against {population} ({p_text}): " + "; ".join(parts)
                for p_text, parts in zip(p_texts, details)]

    def _describe_cells(self, rows, scores, details, which, columns, named_residuals, population) -> None:
        """Append to ``details[which[i]]`` the sentence on cell ``(which[i], columns[i])``, its residual ``named_residuals[i]``."""
        model = self.model_
        precision = model.precision
        row_scores = scores[which]
        diagonal = precision[columns, columns]
        # What the other cells predict, as a percentile of the rows fitted
        # on: the encoded values a detector sees are no unit a reviewer reads.
        pulls = -precision[columns] * row_scores / diagonal[:, None]
        pulls[np.arange(len(which)), columns] = 0.0
        spread = 1.0 / np.sqrt(diagonal)
        own_scores = row_scores[np.arange(len(which)), columns]
        predicted = ndtr(own_scores - named_residuals * spread)
        quantiles = ndtr(own_scores)
        strongest = np.argsort(-np.abs(pulls), axis=1)[:, :NAMED_PREDICTORS]
        for i, (row, column) in enumerate(zip(which.tolist(), columns.tolist())):
            row_pulls = pulls[i]
            top = strongest[i]
            predictors = [str(self.feature_names_in_[k]) for k in top
                          if row_pulls[k] != 0.0 and abs(row_pulls[k]) >= NAMED_PULL_SHARE * abs(row_pulls[top[0]])]
            subject = " and ".join(predictors) or "the other columns"
            position_text = _position(quantiles[i], rows[row, column], model, column, population)
            residual = named_residuals[i]
            details[row].append(
                f"{self.feature_names_in_[column]} {position_text}, "
                f"where {subject} {'puts' if len(predictors) == 1 else 'put'} it near "
                f"percentile {predicted[i] * 100:.0f} ({abs(residual):.1f} standard deviations "
                f"{'above' if residual > 0 else 'below'})"
            )


def _position(quantile: float, value: float, model: CopulaModel, column: int, population: str) -> str:
    """Where a value sits among the rows a model was fitted on, in words."""
    values = model.sorted_columns[:, column]
    if value > values[-1]:
        return f"above every value of {population}"
    if value < values[0]:
        return f"below every value of {population}"
    return f"at percentile {quantile * 100:.0f}"
