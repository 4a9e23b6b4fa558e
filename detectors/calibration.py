"""Calibrated p-values: how a detector's score becomes a decision at ``alpha``.

Every detector turns its score into a p-value against the same score on
trusted rows (held out or cross-fitted), so that flagging at ``p <= alpha``
flags about a fraction ``alpha`` of clean rows on any dataset
(``conformal_p_values``, ``cross_conformal_p_values``). Beyond the most
suspicious trusted rows, counts bottom out at ``1 / (n + 1)``; an exponential
tail fitted to the largest trusted scores (``peaks_over_threshold``,
``ExponentialTail``) extrapolates past them, and only there. ``format_p`` and
``p_value_texts`` say in a reason which of the two a p-value came from.

Those p-values hold the rate on average over the draw of the trusted rows.
With a ``confidence``, ``cross_conformal_p_values`` gives
calibration-conditional ones instead (Bates et al. 2023, "Testing for
outliers with conformal p-values"): upper confidence bounds on the tail
share, so that for all but a ``1 - confidence`` share of references the
rate holds for the reference at hand (``conformal_upper_bounds``,
``ExponentialTail.upper_bound``).

Pure functions of numpy arrays; the cross-fitting that produces the scores
lives in ``detectors._crossfit``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
from scipy import stats

from poisonguard.detectors._row_blocks import row_blocks
from poisonguard.detectors._threads import imap_in_threads
from poisonguard.detectors._unique import value_codes
from poisonguard.detectors.errors import DetectorError, NotEnoughData

# Peaks over threshold: the exponential tail is fitted to the calibration
# scores above the k-th largest, k = max(TAIL_MIN_ROWS, ceil(TAIL_SHARE * n)):
# the top 10 %, but never fewer than 5 rows, so the scale rests on a few
# excesses even for a small reference.
TAIL_MIN_ROWS = 5
TAIL_SHARE = 0.1


def conformal_p_values(calibration_scores, scores) -> np.ndarray:
    """Conformal p-values of ``scores`` against trusted ``calibration_scores``.

    ``p = (1 + #{calibration >= score}) / (n_calibration + 1)``. When the
    calibration rows are exchangeable with clean test rows (scored by the
    same model, which saw neither), flagging at ``p <= alpha`` flags at most
    a fraction ``alpha`` of clean rows in expectation, whatever the score's
    scale or distribution. The smallest possible value is
    ``1 / (n_calibration + 1)``: with 53 calibration rows nothing can be
    flagged at ``alpha = 0.01``. The detectors use
    ``cross_conformal_p_values``, which keeps these semantics in the bulk and
    extrapolates beyond the calibration scores.

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)
        Scores of trusted rows the scorer was not fitted on (held out).
    scores : array-like of float, shape (n_rows,)

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), values in ``(0, 1]``.
    """
    calibration = np.sort(np.asarray(calibration_scores, dtype=float))
    scores = np.asarray(scores, dtype=float)
    if calibration.size == 0:
        # Too few rows left a detector nothing to judge against: a fact about the data (the pipeline skips it).
        raise NotEnoughData("cannot calibrate: no calibration scores (too few rows to judge against)")
    at_least = calibration.size - np.searchsorted(calibration, scores, side="left")
    return (1.0 + at_least) / (calibration.size + 1.0)


def conformal_upper_bounds(at_least, n_calibration: int, confidence: float) -> np.ndarray:
    """Calibration-conditional conformal p-values: upper confidence bounds on the tail share.

    A score with ``j`` of ``n`` calibration scores at least as high lies
    beyond the ``(j + 1)``-th largest of them, and the share of clean scores
    beyond that order statistic is ``Beta(j + 1, n - j)``-distributed over the
    draw of the calibration rows. Its mean is the conformal p-value
    ``(j + 1) / (n + 1)``, which holds ``alpha`` on average over references;
    its ``confidence`` quantile holds it for all but ``1 - confidence`` of
    them. (Bates et al. 2023 bound every level at once; a detector's flag
    and the decision's Simes levels are a few fixed levels, each held by
    the pointwise bound.)

    Parameters
    ----------
    at_least : array-like of int
        Calibration scores at least as high as each score (``0..n``).
    n_calibration : int
    confidence : float in (0, 1)

    Returns
    -------
    numpy.ndarray of float, the shape of ``at_least``, in ``(0, 1]``.
    """
    at_least = np.asarray(at_least)
    # At most n + 1 distinct counts: one quantile each, not one per row (0.7 s for a million rows).
    counted = np.issubdtype(at_least.dtype, np.integer) and at_least.size > 0
    if counted and 0 <= at_least.min() <= at_least.max() <= n_calibration:
        # Counts are their own index: no sort of the rows (0.1 s a million of them, 22 calls a large run).
        present = np.flatnonzero(np.bincount(at_least.ravel(), minlength=n_calibration + 1))
        by_count = np.ones(n_calibration + 1)
        by_count[present] = _count_bounds(present.astype(float), n_calibration, confidence)
        return by_count[at_least]
    at_least = at_least.astype(float)
    counts, positions = np.unique(at_least, return_inverse=True)
    return _count_bounds(counts, n_calibration, confidence)[positions.reshape(at_least.shape)]


def _count_bounds(counts: np.ndarray, n_calibration: int, confidence: float) -> np.ndarray:
    # j = n (every calibration score as high): Beta(n + 1, 0) is a point mass at 1.
    below = np.maximum(n_calibration - counts, 1.0)
    return np.where(counts >= n_calibration, 1.0, stats.beta.ppf(confidence, counts + 1.0, below))


@dataclass(frozen=True)
class ExponentialTail:
    """An exponential upper tail of a score distribution (GPD with shape 0).

    ``P(score >= s) = probability * exp(-(s - threshold) / scale)`` for
    ``s > threshold``. The one tail model of the package: fitted by
    ``peaks_over_threshold`` on trusted calibration scores, and from the
    robust middle of a batch by ``detectors._crossfit.robust_tail``.

    Attributes
    ----------
    threshold : float
        Score above which the tail applies.
    probability : float
        Tail probability just above ``threshold``.
    scale : float
        Mean excess over ``threshold`` (positive), in score units.
    excesses : int or None
        How many excesses ``scale`` was estimated from. When given, the tail
        is the predictive (Lomax) form ``probability * (1 + x / (m * scale))
        ** -m`` with ``m = excesses``, which accounts for the scale being an
        estimate: with a handful of excesses the plain exponential flags about
        1.5 x alpha (measured on 50-row references), the predictive form about
        alpha. It tends to the plain exponential as ``m`` grows.
    """

    threshold: float
    probability: float
    scale: float
    excesses: Optional[int] = None

    def p_values(self, scores) -> np.ndarray:
        """Tail p-values of ``scores`` (any shape); 1.0 at or below the threshold.

        Never exactly 0 (floored at the smallest positive float).
        """
        scores = np.asarray(scores, dtype=float)
        excess = np.maximum(scores - self.threshold, 0.0)
        # A score astronomically far beyond a narrow tail overflows the ratio to
        # inf, whose p-value (0, floored below) is the right answer.
        with np.errstate(over="ignore"):
            if self.excesses:
                m = float(self.excesses)
                p_values = self.probability * np.exp(-m * np.log1p(excess / (m * self.scale)))
            else:
                p_values = self.probability * np.exp(-excess / self.scale)
        p_values = np.maximum(p_values, np.finfo(float).tiny)
        return np.where(scores > self.threshold, p_values, 1.0)

    def upper_bound(self, n_calibration: int, confidence: float) -> "ExponentialTail":
        """A tail at least as heavy as the true one for all but ``1 - confidence`` of references.

        For a tail fitted by ``peaks_over_threshold`` to ``n_calibration``
        scores: its probability at the threshold (``e`` of the scores beyond
        it) is bounded like a conformal count (``conformal_upper_bounds``), and
        its scale by the exact pivot of ``m`` exponential excesses (their sum
        over the scale is ``Gamma(m)``, twice that ``chi2(2 m)``), each at
        ``confidence``. A union bound would give each half the miss rate; a
        score is flagged too often only when both estimates err the same way,
        and on exponential scores, where the model is exact, 200 draws of
        150-row references missed the level at 0.9 one time in 18 with both
        at the confidence (the draws of
        ``tests/detectors/test_tail_validity.py``), at most one in 50 with
        each at half the miss rate. Plain exponential: a bound, not a predictive tail
        (``cross_conformal_p_values`` keeps the larger of the two).
        """
        if not self.excesses:
            raise DetectorError("only a tail fitted to calibration excesses has an upper bound")
        beyond = round(self.probability * (n_calibration + 1.0)) - 1
        probability = float(conformal_upper_bounds(beyond, n_calibration, confidence))
        pivot = float(stats.chi2.ppf(1.0 - confidence, 2 * self.excesses))
        return ExponentialTail(
            threshold=self.threshold, probability=probability, scale=2.0 * self.excesses * self.scale / pivot,
        )


def peaks_over_threshold(calibration_scores) -> ExponentialTail | None:
    """Fit an exponential tail to the largest calibration scores.

    With ``n`` scores and ``k = max(TAIL_MIN_ROWS, ceil(TAIL_SHARE * n))``,
    the threshold ``u`` is the k-th largest score, the scale is the mean
    excess over ``u`` of the scores above it (the maximum-likelihood scale of
    an exponential; above an order statistic the excesses are independent
    exponentials when the tail is) and the tail probability at ``u`` is
    ``(1 + #{score > u}) / (n + 1)`` (``k / (n + 1)`` without ties), which
    joins the conformal p-value just above ``u``. An exponential tail is
    conservative for bounded and light-tailed scores (isolation-forest path
    scores, ``1 - probability``, ECOD's sum of ``-log`` tails) and
    optimistic for heavier tails.

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)

    Returns
    -------
    ExponentialTail, or None when fewer than ``TAIL_MIN_ROWS`` scores are
    given or none is above ``u`` (ties).
    """
    calibration = np.sort(np.asarray(calibration_scores, dtype=float))
    n_calibration = calibration.size
    top = max(TAIL_MIN_ROWS, math.ceil(TAIL_SHARE * n_calibration))
    if n_calibration < top:
        return None
    threshold = float(calibration[-top])
    excesses = calibration[calibration > threshold] - threshold
    # An infinite trusted score (a binomial tail that underflowed) would make
    # the scale infinite, and the tail NaN at an infinite batch score; it
    # counts towards the tail's probability, not its scale.
    finite = excesses[np.isfinite(excesses)]
    if finite.size == 0:
        return None
    return ExponentialTail(
        threshold=threshold,
        probability=(1.0 + excesses.size) / (n_calibration + 1.0),
        scale=float(finite.mean()),
        excesses=int(finite.size),
    )


def cross_conformal_p_values(
    calibration_scores, calibration_folds, fold_scores, *, extrapolate=True, return_extrapolated=False,
    confidence=None,
):
    """Cross-conformal p-values (Vovk 2015), with an extrapolated upper tail.

    The calibration rows are split into K folds; fold ``k``'s rows were
    scored by a model fitted on the other folds. A new row is scored by
    every fold model and compared with that fold's own held-out scores::

        p = (1 + sum_k #{i in fold k : s_k(i) >= s_k(row)}) / (n + 1)

    so each comparison is between rows scored by one model that saw neither.
    (Comparing a model fitted on all ``n`` rows against out-of-fold scores of
    models fitted on ``(K - 1) / K`` of them is biased for small ``n``.)
    With one fold this is ``conformal_p_values``.

    Counts bottom out at ``1 / (n + 1)``. With ``extrapolate``, an
    exponential tail is fitted to the largest calibration scores of all folds
    pooled (``peaks_over_threshold``; the fold models have the same training
    size, so their held-out scores share one distribution) and, for a row
    beyond every calibration score (no count: ``p_counts = 1 / (n + 1)``),

        p = min(p_counts, sum_k (n_k / n) * tail(s_k(row)))

    where ``tail`` is 1 at or below its threshold. Wherever a calibration
    score is at least the row's, the p-value is exactly the cross-conformal
    one: the tail replaces counts only where there are none. (Taking the
    smaller of the two inside the trusted scores' range made every
    detector's p-values liberal where its scores are heavier-tailed than an
    exponential: on clean batches of six real tables, ``label.knn`` and
    ``outlier.class_conditional`` flagged up to 2.5 times their ``alpha``,
    most of it rows the counts put at ``2 / (n + 1)`` or above.)

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)
        Out-of-fold scores of the calibration rows.
    calibration_folds : array-like of int, shape (n_calibration,)
        Which fold model (0..K-1) scored each calibration row.
    fold_scores : array-like of float, shape (n_rows, K)
        Column ``k``: the scores of the new rows under fold model ``k``.
    extrapolate : bool
        Fit and use the tail (falls back to counts when it cannot be fitted).
    return_extrapolated : bool
        Also return which p-values the tail lowered.
    confidence : float in (0, 1), optional
        Calibration-conditional p-values: the counts' and the tail's upper
        confidence bounds (``conformal_upper_bounds``,
        ``ExponentialTail.upper_bound``), each the bound the reference at hand
        exceeds with probability at most ``1 - confidence``, and never below
        the p-values without it. None: the conformal p-values, valid on
        average over references.

    Returns
    -------
    p_values : numpy.ndarray of float, shape (n_rows,), in ``(0, 1]``
    extrapolated : numpy.ndarray of bool, shape (n_rows,)
        Only with ``return_extrapolated``.
    """
    result = cross_conformal(calibration_scores, calibration_folds, fold_scores, extrapolate=extrapolate,
                             confidence=confidence)
    return (result.p_values, result.extrapolated) if return_extrapolated else result.p_values


class CrossConformal(NamedTuple):
    """Cross-conformal p-values, and those of the counts alone (``cross_conformal``)."""

    counted: np.ndarray
    p_values: np.ndarray
    extrapolated: np.ndarray


def cross_conformal(calibration_scores, calibration_folds, fold_scores, *, extrapolate=True,
                    confidence=None) -> CrossConformal:
    """``cross_conformal_p_values``, with the p-values of the counts alone beside them.

    ``detectors._crossfit.guarded_p_values`` reads both. Counting a million
    rows against five folds' scores takes about 0.5 s, once a detector
    rather than twice.
    """
    calibration = np.asarray(calibration_scores, dtype=float).ravel()
    folds = np.asarray(calibration_folds, dtype=int).ravel()
    fold_scores = np.asarray(fold_scores, dtype=float)
    if calibration.size == 0:
        raise NotEnoughData("cannot calibrate: no calibration scores (too few rows to judge against)")
    if fold_scores.ndim != 2:
        raise DetectorError(f"fold scores must be a (rows, folds) table, got shape {fold_scores.shape}")
    n_folds = fold_scores.shape[1]
    if folds.shape != calibration.shape or folds.min() < 0 or folds.max() >= n_folds:
        raise DetectorError(f"calibration folds must be one of 0..{n_folds - 1} per calibration score")
    at_least = _held_out_at_least(calibration, folds, fold_scores)
    counted = (1.0 + at_least) / (calibration.size + 1.0)
    if confidence is not None:
        # Below a confidence of about 0.64 the bound of the rarest count is under its mean: never below it.
        counted = np.maximum(counted, conformal_upper_bounds(at_least, calibration.size, confidence))
    extrapolated = np.zeros(counted.shape, dtype=bool)
    tail = peaks_over_threshold(calibration) if extrapolate else None
    if tail is None:
        return CrossConformal(counted, counted, extrapolated)
    # Only a row beyond every calibration score can take the tail: the few, not all.
    beyond = np.flatnonzero(at_least == 0)
    weights = np.bincount(folds, minlength=n_folds) / calibration.size
    tail_p_values = fold_weighted(tail.p_values(fold_scores[beyond]), weights)
    if confidence is not None:
        # Far out the predictive tail's power law is the heavier: never below it.
        bound = tail.upper_bound(calibration.size, confidence)
        tail_p_values = np.maximum(tail_p_values, fold_weighted(bound.p_values(fold_scores[beyond]), weights))
    lowered = tail_p_values < counted[beyond]
    extrapolated[beyond[lowered]] = True
    p_values = counted.copy()
    p_values[beyond[lowered]] = tail_p_values[lowered]
    return CrossConformal(counted, p_values, extrapolated)


def fold_weighted(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each row's ``values`` (shape (n_rows, K)) summed with the folds' ``weights``, shape (n_rows,).

    A row-wise sum, not a matrix product: BLAS adds a row's products in an
    order that depends on how many rows it is given, and a row's p-value
    must not change in its last bit with the chunk it was judged in.
    """
    return (values * weights).sum(axis=1)


def _held_out_at_least(calibration: np.ndarray, folds: np.ndarray, fold_scores: np.ndarray) -> np.ndarray:
    """Per row, how many calibration scores are at least its own under their fold's model, all folds summed."""
    def at_least(fold: int) -> np.ndarray:
        held_out = np.sort(calibration[folds == fold])
        return held_out.size - np.searchsorted(held_out, fold_scores[:, fold], side="left")

    total = np.zeros(fold_scores.shape[0], dtype=np.int64)
    # The folds on the cores (numpy lets go of the GIL to search), summed as each is done.
    for counts in imap_in_threads(at_least, range(fold_scores.shape[1])):
        total += counts
    return total


def label_mass_p_values(probabilities, codes, population=None) -> np.ndarray:
    """Each row's p-value for its own label, read off a classifier's probabilities.

    By Bayes' rule the rows with label ``j`` have ``P(j | x)`` distributed as
    all rows do, weighted by ``P(j | x)`` itself. So if the probabilities are
    calibrated for the rows' labels, the share of label-``j`` rows whose label
    is at most ``q`` probable is the share of the total mass ``sum P(j | x)``
    on rows where ``P(j | x) <= q``, and that share is a p-value for a row of
    label ``j`` with ``P(j | x) = q``. No labelled calibration rows and no tail
    shape are assumed, only calibrated models.

    Parameters
    ----------
    probabilities : numpy.ndarray of float, shape (n_rows, K)
    codes : numpy.ndarray of int, shape (n_rows,)
        Each row's label, a column of ``probabilities``.
    population : numpy.ndarray of bool, shape (n_rows,), optional
        The rows whose probabilities give each label's mass (a seeded sample
        of a large batch estimates it as well); all rows by default.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1]``
    """
    probabilities = np.asarray(probabilities, dtype=float)
    codes = np.asarray(codes, dtype=int)
    population = np.ones(len(codes), dtype=bool) if population is None else np.asarray(population, dtype=bool)
    measured = probabilities[population]
    p_values = np.ones(len(codes))
    for label in range(probabilities.shape[1]):
        rows = np.flatnonzero(codes == label)
        mass = np.sort(measured[:, label])
        cumulative = np.concatenate([[0.0], np.cumsum(mass)])
        if not len(rows) or cumulative[-1] <= 0.0:
            continue
        own = probabilities[rows, label]
        # The mass at most each row's own probability, ties and the row itself
        # included (as a conformal count includes the scored row).
        below = cumulative[np.searchsorted(mass, own, side="right")]
        outside = np.where(population[rows], 0.0, own)
        p_values[rows] = (below + outside) / (cumulative[-1] + outside)
    return np.clip(p_values, np.finfo(float).tiny, 1.0)


def format_p(p_value: float, extrapolated_from: str | None = None) -> str:
    """Format a p-value for a reason sentence.

    ``"p=0.004"``; when the p-value comes from an extrapolated tail,
    ``"p≈0.0003, extrapolated beyond <extrapolated_from>"``.
    """
    if extrapolated_from:
        return f"p≈{p_value:.2g}, extrapolated beyond {extrapolated_from}"
    return f"p={p_value:.2g}"


def p_value_texts(p_values, extrapolated, *, self_referential: bool) -> list[str]:
    """``format_p`` of each p-value, naming what an extrapolated one went beyond.

    Beyond "the trusted scores" when a reference calibrated the detector,
    beyond "the bulk of this batch" when the batch calibrated itself.
    """
    beyond = "the bulk of this batch" if self_referential else "the trusted scores"
    return [format_p(p, beyond if tail else None) for p, tail in zip(p_values, extrapolated)]


# --- one decision over many checks ------------------------------------------------

COMBINATIONS = ("simes", "bonferroni")


def combine_p_values(p_values, *, method: str = "simes") -> np.ndarray:
    """One p-value per row from the p-values of several checks of that row.

    ``simes`` (Simes 1986): ``min_k m * p_(k) / k`` over the row's sorted
    p-values ``p_(1) <= ... <= p_(m)``. Exactly valid when the checks are
    independent and valid under positive dependence (PRDS, Sarkar 1998),
    which is what detectors of the same row show: a poisoned row tends to
    look unusual to several of them at once. It is never larger than
    Bonferroni's ``m * p_(1)`` and it gains when several checks agree: three
    label detectors each at ``p`` give ``m * p / 3``.
    ``bonferroni``: ``min(1, m * p_(1))``, valid under any dependence (the
    union bound), the rule poisonguard used before the combination.

    Missing p-values (NaN: a check that did not judge the row) count as 1, so
    ``m`` is the number of checks whatever each row got.

    Parameters
    ----------
    p_values : array-like of float, shape (n_rows, m)
    method : {"simes", "bonferroni"}

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``(0, 1]``.
    """
    matrix = np.asarray(p_values, dtype=float)
    if matrix.ndim != 2:
        raise DetectorError(f"p-values to combine must be a (rows, checks) table, got shape {matrix.shape}")
    if method not in COMBINATIONS:
        raise DetectorError(f"unknown combination {method!r}; expected one of {', '.join(COMBINATIONS)}")
    n_rows, m = matrix.shape
    if m == 0:
        return np.ones(n_rows)
    combined = np.empty(n_rows)
    # A block of rows at a time: each row's value is its own, and the
    # temporaries of a whole batch (a sorted copy, the Simes ratios) were
    # five copies of the p-value table at the run's peak, 1 GB at 3M rows.
    for block in row_blocks(n_rows):
        ordered = np.clip(np.where(np.isnan(matrix[block]), 1.0, matrix[block]), np.finfo(float).tiny, 1.0)
        ordered.sort(axis=1)
        if method == "bonferroni":
            combined[block] = np.minimum(1.0, m * ordered[:, 0])
        else:
            combined[block] = np.minimum(1.0, (m * ordered / np.arange(1, m + 1)).min(axis=1))
    return combined


def combined_contributors(p_values, level: float, *, method: str = "simes") -> np.ndarray:
    """Which checks' p-values carry a row's rejection at ``level``.

    For Simes, a row is rejected when ``p_(k) <= k * level / m`` for some
    ``k``; with ``k*`` the largest such ``k``, the checks with
    ``p <= k* * level / m`` carry it (Hochberg's step-up reading of Simes).
    For Bonferroni, the checks with ``p <= level / m``. A row that is not
    rejected has no contributor.

    Parameters
    ----------
    p_values : array-like of float, shape (n_rows, m); NaN counts as 1
    level : float
    method : {"simes", "bonferroni"}

    Returns
    -------
    numpy.ndarray of bool, shape (n_rows, m)
    """
    matrix = np.asarray(p_values, dtype=float)
    n_rows, m = matrix.shape
    carries = np.zeros((n_rows, m), dtype=bool)
    if m == 0:
        return carries
    ranks = np.arange(1, m + 1)
    for block in row_blocks(n_rows):  # as in ``combine_p_values``
        part = np.where(np.isnan(matrix[block]), 1.0, matrix[block])
        if method == "bonferroni":
            carries[block] = part <= level / m
            continue
        passing = np.sort(part, axis=1) <= ranks * level / m
        largest = np.where(passing.any(axis=1), m - np.argmax(passing[:, ::-1], axis=1), 0)
        carries[block] = part <= (largest * level / m)[:, None]
    return carries


# --- error rates of rules inferred from a reference -------------------------------


def good_turing_unseen_mass(values) -> float:
    """Good-Turing estimate of the share of new rows whose value the sample lacks.

    ``N1 / n``: values seen exactly once, over non-missing values (Good
    1953). For a value set inferred from the sample it is the expected share
    of clean rows that break it: a 100-row reference with four singletons
    leaves about 4 % of clean rows outside its value set. 0 for an empty
    sample, and for a sample whose every value is seen at least twice,
    which is an estimate, not a bound (a level of 1 % frequency is missed by
    a 100-row sample a third of the time).

    Parameters
    ----------
    values : array-like, shape (n,); missing values (None, NaN) are ignored

    Returns
    -------
    float in ``[0, 1]``
    """
    series = [v for v in np.asarray(values, dtype=object).ravel() if not (v is None or v != v)]
    if not series:
        return 0.0
    _, counts = np.unique(np.asarray([str(v) for v in series], dtype=object), return_counts=True)
    return float(np.sum(counts == 1)) / len(series)


def unseen_property_p_value(n_reference: int) -> float:
    """P-value of a row showing a property none of ``n_reference`` trusted rows shows.

    ``1 / (n + 1)``: by exchangeability, a clean row is the one of ``n + 1``
    exchangeable rows with the property (an empty cell where the reference
    has none) with probability at most that. (The rule of three bounds the
    clean rate itself by ``3 / n`` at 95 %; the chance that a rule inferred
    from ``n`` rows is then broken by a clean row is at most
    ``max_q q (1 - q)^n < 1 / (e (n + 1))``.)
    """
    return 1.0 / (max(int(n_reference), 0) + 1.0)


# Mondrian calibration: a label's rows are compared with trusted rows of the
# same label when at least this many trusted rows carry it (else with all).
MONDRIAN_MIN_ROWS = 8


def mondrian_groups(calibration_groups, groups, *, min_rows: int = MONDRIAN_MIN_ROWS) -> list:
    """Which calibration rows judge which rows, label by label (Mondrian conformal).

    A label score such as ``1 - P(label | x)`` is not exchangeable across
    labels: every row of a rare or hard label scores high, so calibrating
    all labels on one pool flags the clean rows of the minority label (on a
    97 / 3 % table, 2 % of all clean rows). Calibrating each label's rows on
    the trusted rows of the same label (Vovk's Mondrian conformal predictors)
    keeps the false-positive rate within every label. A label with fewer
    than ``min_rows`` calibration rows, or none, is judged against all of
    them.

    Parameters
    ----------
    calibration_groups : array-like, shape (n_calibration,)
    groups : array-like, shape (n_rows,)
    min_rows : int

    Returns
    -------
    list of (calibration_mask, row_mask) pairs of boolean arrays, shapes
    (n_calibration,) and (n_rows,); the row masks partition the rows.
    """
    # As text once: a batch holds a million labels, and each group compares them all.
    calibration_groups = np.asarray(calibration_groups, dtype=object).astype(str)
    groups = np.asarray(groups, dtype=object).astype(str)
    values, counts = np.unique(calibration_groups, return_counts=True)
    own = values[counts >= min_rows]
    # Codes compared, not strings: with 1,000 labels each mask was a pass over every row's text.
    codes, calibration_codes = value_codes(groups, own), value_codes(calibration_groups, own)
    pairs = []
    for code in range(len(own)):
        rows = codes == code
        if rows.any():
            pairs.append((calibration_codes == code, rows))
    rest = codes < 0
    if rest.any():
        pairs.append((np.ones(len(calibration_groups), dtype=bool), rest))
    return pairs
