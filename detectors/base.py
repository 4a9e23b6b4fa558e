"""The contract every detector keeps: one findings table, calibration, a registry.

Every check in poisonguard (an expectation or a detector) reports per-row
findings in the same table, with the columns of ``FINDING_COLUMNS``:

``row_id`` (str)
    The stable id of the row (``""`` for a batch-level finding).
``check`` (str)
    The registered name of the check, e.g. ``"outlier.ecod"``.
``score`` (float)
    Higher means more suspicious. Its scale is the detector's own.
``p_value`` (float)
    Calibrated p-value of the score against the same score on trusted rows:
    about the fraction of clean rows at least as suspicious, never 0 (see
    ``cross_conformal_p_values``; beyond the most suspicious trusted rows it
    is extrapolated from their tail). ``NaN`` where a check is a hard rule
    (expectations).
``flagged`` (bool)
    Whether this check asks for the row to be quarantined.
``reason`` (str)
    One sentence a reviewer understands.

A detector returns one finding per input row, flagged or not, so reports can
show score distributions; the pipeline quarantines the flagged ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

FINDING_COLUMNS = ["row_id", "check", "score", "p_value", "flagged", "reason"]

# Peaks over threshold: the exponential tail is fitted to the calibration
# scores above the k-th largest, k = max(TAIL_MIN_ROWS, ceil(TAIL_SHARE * n)):
# the top 10 %, but never fewer than 5 rows, so the scale rests on a few
# excesses even for a small reference.
TAIL_MIN_ROWS = 5
TAIL_SHARE = 0.1

class DetectorError(ValueError):
    """A detector was given data it cannot work with (names the problem)."""

def empty_findings() -> pd.DataFrame:
    """Return a findings table with no rows and the right column types."""
    return pd.DataFrame(
        {
            "row_id": pd.Series([], dtype=str),
            "check": pd.Series([], dtype=str),
            "score": pd.Series([], dtype=float),
            "p_value": pd.Series([], dtype=float),
            "flagged": pd.Series([], dtype=bool),
            "reason": pd.Series([], dtype=str),
        }
    )

def make_findings(
    *,
    row_ids,
    check: str,
    scores,
    flagged,
    reasons,
    p_values=None,
) -> pd.DataFrame:
    """Build a findings table from equal-length arrays.

    Parameters
    ----------
    row_ids : array-like of str, shape (n_rows,)
    check : str
        Registered check name, repeated on every row.
    scores : array-like of float, shape (n_rows,)
        Higher = more suspicious.
    flagged : array-like of bool, shape (n_rows,)
    reasons : array-like of str, shape (n_rows,)
    p_values : array-like of float, shape (n_rows,), optional
        ``NaN`` when omitted.

    Returns
    -------
    pandas.DataFrame with columns ``FINDING_COLUMNS``.
    """
    row_ids = np.asarray(row_ids, dtype=object).astype(str)
    n_rows = len(row_ids)
    if p_values is None:
        p_values = np.full(n_rows, np.nan)
    frame = pd.DataFrame(
        {
            "row_id": row_ids,
            "check": np.full(n_rows, check, dtype=object),
            "score": np.asarray(scores, dtype=float),
            "p_value": np.asarray(p_values, dtype=float),
            "flagged": np.asarray(flagged, dtype=bool),
            "reason": np.asarray(reasons, dtype=object).astype(str),
        }
    )
    return frame[FINDING_COLUMNS]

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
        raise DetectorError("cannot calibrate: no trusted calibration scores")
    at_least = calibration.size - np.searchsorted(calibration, scores, side="left")
    return (1.0 + at_least) / (calibration.size + 1.0)


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
        if self.excesses:
            m = float(self.excesses)
            p_values = self.probability * np.exp(-m * np.log1p(excess / (m * self.scale)))
        else:
            p_values = self.probability * np.exp(-excess / self.scale)
        p_values = np.maximum(p_values, np.finfo(float).tiny)
        return np.where(scores > self.threshold, p_values, 1.0)


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
    if excesses.size == 0:
        return None
    return ExponentialTail(
        threshold=threshold,
        probability=(1.0 + excesses.size) / (n_calibration + 1.0),
        scale=float(excesses.mean()),
        excesses=int(excesses.size),
    )


def cross_conformal_p_values(
    calibration_scores, calibration_folds, fold_scores, *, extrapolate=True, return_extrapolated=False
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
    size, so their held-out scores share one distribution) and

        p = min(p_counts, sum_k (n_k / n) * tail(s_k(row)))

    where ``tail`` is 1 at or below its threshold: the tail only lowers the
    p-value of a row above the threshold on (nearly) every fold model, and
    never raises it. Below the threshold the p-value is exactly the
    cross-conformal one.

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

    Returns
    -------
    p_values : numpy.ndarray of float, shape (n_rows,), in ``(0, 1]``
    extrapolated : numpy.ndarray of bool, shape (n_rows,)
        Only with ``return_extrapolated``.
    """
    calibration = np.asarray(calibration_scores, dtype=float).ravel()
    folds = np.asarray(calibration_folds, dtype=int).ravel()
    fold_scores = np.asarray(fold_scores, dtype=float)
    if calibration.size == 0:
        raise DetectorError("cannot calibrate: no trusted calibration scores")
    if fold_scores.ndim != 2:
        raise DetectorError(f"fold scores must be a (rows, folds) table, got shape {fold_scores.shape}")
    n_folds = fold_scores.shape[1]
    if folds.shape != calibration.shape or folds.min() < 0 or folds.max() >= n_folds:
        raise DetectorError(f"calibration folds must be one of 0..{n_folds - 1} per calibration score")
    at_least = np.zeros(fold_scores.shape[0])
    for fold in range(n_folds):
        held_out = np.sort(calibration[folds == fold])
        at_least += held_out.size - np.searchsorted(held_out, fold_scores[:, fold], side="left")
    p_values = (1.0 + at_least) / (calibration.size + 1.0)
    extrapolated = np.zeros(p_values.shape, dtype=bool)
    tail = peaks_over_threshold(calibration) if extrapolate else None
    if tail is not None:
        weights = np.bincount(folds, minlength=n_folds) / calibration.size
        tail_p_values = tail.p_values(fold_scores) @ weights
        extrapolated = tail_p_values < p_values
        p_values = np.where(extrapolated, tail_p_values, p_values)
    return (p_values, extrapolated) if return_extrapolated else p_values


class Detector(BaseEstimator):
    """Base class of the registered detectors.

    Subclasses follow scikit-learn: ``__init__`` only stores parameters,
    ``fit(X, y)`` validates, fits on trusted rows, calibrates and returns
    ``self``; fitted state ends in ``_``. They implement ``score(X, y)``
    (higher = more suspicious) and ``findings(X, y, row_ids)``.

    ``X`` is a numeric feature matrix (see ``detectors.features``), ``y`` an
    array of labels (strings or integers).
    """

    name: ClassVar[str] = ""

    def score(self, X, y=None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def findings(self, X, y, row_ids) -> pd.DataFrame:  # pragma: no cover
        raise NotImplementedError

_REGISTRY: dict[str, type[Detector]] = {}
BUILTIN_MODULES = (
    "detectors.outliers",
    "detectors.class_conditional",
    "detectors.label_flips",
    "detectors.label_knn",
    "detectors.duplicates",
    "detectors.backdoor",
)


def _load_builtins() -> None:
    # Imported on first use: PyOD and cleanlab are slow to import, and a CLI
    # that only prints --help or an error should not pay for them.
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)

def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make a detector available by its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no 'name' to register under")
    _REGISTRY[cls.name] = cls
    return cls

def registered_detectors() -> dict[str, type[Detector]]:
    """Return a copy of the name -> class registry."""
    _load_builtins()
    return dict(_REGISTRY)

def get_detector(name: str, **params) -> Detector:
    """Instantiate a registered detector by name with ``params``."""
    _load_builtins()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise DetectorError(f"unknown detector {name!r}; known detectors: {known}") from None
    return cls(**params)
