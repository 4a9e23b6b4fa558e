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
    the fraction of trusted rows at least as suspicious (conformal, so it is
    never 0). ``NaN`` where a check is a hard rule (expectations).
``flagged`` (bool)
    Whether this check asks for the row to be quarantined.
``reason`` (str)
    One sentence a reviewer understands.

A detector returns one finding per input row, flagged or not, so reports can
show score distributions; the pipeline quarantines the flagged ones.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

FINDING_COLUMNS = ["row_id", "check", "score", "p_value", "flagged", "reason"]

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
    calibration rows are exchangeable with clean test rows, flagging at
    ``p <= alpha`` flags at most a fraction ``alpha`` of clean rows in
    expectation, whatever the score's scale or distribution.

    Parameters
    ----------
    calibration_scores : array-like of float, shape (n_calibration,)
        Scores of trusted rows the scorer was not fitted on (held out or
        cross-fitted).
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
BUILTIN_MODULES = ("detectors.outliers", "detectors.label_flips")


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
