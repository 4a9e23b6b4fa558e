"""The contract every detector keeps: one findings table, declared tags, shared checks.

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
    ``detectors.calibration``; beyond the most suspicious trusted rows it is
    extrapolated from their tail). ``NaN`` where a check is a hard rule
    (expectations) or a detector says it cannot calibrate.
``flagged`` (bool)
    Whether this check asks for the row to be quarantined.
``reason`` (str)
    One sentence a reviewer understands.

A detector returns one finding per input row, flagged or not, so reports can
show score distributions; the pipeline quarantines the flagged ones.

:class:`Detector` declares the methods the pipeline calls (``fit``,
``score``, ``findings``, ``self_findings``) and, as protected helpers, the
input checks and the flagging rule every detector shares; its
:class:`DetectorTags` say what a detector needs, so that callers read
capabilities instead of name prefixes. The registry of detectors by name is
``detectors.registry``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from poisonguard.detectors._unique import text_values
from poisonguard.detectors.calibration import p_value_texts
from poisonguard.detectors.errors import DetectorError
from poisonguard.detectors.judges import ConcatenatingJudge
from poisonguard.detectors.validation import feature_matrix, label_array, row_id_array

FINDING_COLUMNS = ["row_id", "check", "score", "p_value", "flagged", "reason"]
# The reason of a row left unexplained (see ``Detector.set_reasons``).
NOT_EXPLAINED = ""
# Characters of one reason sentence, at most.
MAX_REASON_LENGTH = 1000


def empty_findings() -> pd.DataFrame:
    """Return a findings table with no rows and the right column types."""
    return pd.DataFrame(
        {
            "row_id": pd.Series([], dtype=object),
            "check": pd.Series([], dtype=object),
            "score": pd.Series([], dtype=float),
            "p_value": pd.Series([], dtype=float),
            "flagged": pd.Series([], dtype=bool),
            "reason": pd.Series([], dtype=object),
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
    if not (isinstance(row_ids, np.ndarray) and row_ids.dtype == object and all(type(i) is str for i in row_ids)):
        row_ids = np.array([str(row_id) for row_id in row_ids], dtype=object)
    n_rows = len(row_ids)
    if p_values is None:
        p_values = np.full(n_rows, np.nan)
    index = pd.RangeIndex(n_rows)
    # Text columns of object dtype: they point at the caller's id strings
    # (the id column is the caller's array itself), one name and one empty
    # reason, where pandas' own text dtype would copy every id, name and
    # reason into each table (about 60 MB per detector at a million rows).
    frame = pd.DataFrame(
        {
            "row_id": pd.Series(row_ids, index=index, dtype=object, copy=False),
            "check": pd.Series(_repeated(check, n_rows), index=index, dtype=object, copy=False),
            "score": np.asarray(scores, dtype=float),
            "p_value": np.asarray(p_values, dtype=float),
            "flagged": np.asarray(flagged, dtype=bool),
            "reason": pd.Series(_capped(reasons), index=index, dtype=object, copy=False),
        },
        copy=False,  # not stacked into one block: the id column stays the caller's array
    )
    return frame[FINDING_COLUMNS]


def _repeated(value: str, n_rows: int) -> np.ndarray:
    """An object array holding ``value`` itself ``n_rows`` times (``numpy.full`` makes a copy of the text per row)."""
    values = np.empty(n_rows, dtype=object)
    values.fill(value)
    return values


def _capped(reasons) -> np.ndarray:
    """Reasons as an object array of str, each cut to ``MAX_REASON_LENGTH``.

    A reason is a sentence for a person; a value quoted in it (a 50 MB cell,
    a 100,000-character category) must not make it a 50 MB one. Object
    arrays, because numpy's fixed-width text would size every row like the
    longest.
    """
    texts = np.empty(len(reasons), dtype=object)
    texts[:] = reasons
    # Rows left unexplained share one empty text (``Detector.set_reasons``).
    for row in np.flatnonzero(texts != NOT_EXPLAINED):
        text = str(texts[row])
        if len(text) > MAX_REASON_LENGTH:
            text = text[: MAX_REASON_LENGTH - 30] + f"…(+{len(text) - MAX_REASON_LENGTH + 30} characters)"
        texts[row] = text
    return texts


@dataclass(frozen=True)
class DetectorTags:
    """What a detector needs and what its findings depend on, declared per class.

    Attributes
    ----------
    needs_labels : bool
        ``fit``, ``score``, ``findings`` and ``self_findings`` read the labels
        ``y``; given ``y=None`` they raise ``DetectorError``. (scikit-learn's
        ``target_tags.required``.) A detector that does not need them may
        still name them in reasons.
    uses_batch : bool
        The finding for a row can depend on the other rows judged with it
        (pooled fits, density, groups of rows, the batch's guard on
        extrapolated p-values), so a batch must be judged whole, not chunk by
        chunk. Describes ``findings`` against a trusted reference;
        ``self_findings`` always calibrates on the batch.
    accepts_empty_labels : bool
        With ``needs_labels``: an empty label ``""`` is judged like any other
        label (flagged as never seen, or grouped as one label), so rows
        without a label are given to the detector rather than left out.
    self_findings_of : str or None
        ``self_findings`` (no trusted reference) is this registered
        detector's test: the same p-values whenever the two detectors'
        ``self_findings_params`` they share, ``alpha`` aside, agree. A run
        with both judges the batch once.
    """

    needs_labels: bool = False
    uses_batch: bool = False
    accepts_empty_labels: bool = False
    self_findings_of: Optional[str] = None


class Detector(BaseEstimator):
    """Base class of the registered detectors: the methods the pipeline calls.

    Subclasses follow scikit-learn: ``__init__`` only stores parameters,
    ``fit`` validates, fits on trusted rows, calibrates and returns ``self``;
    fitted state ends in ``_``. Each registered subclass sets ``name`` (its
    check name), ``tags`` (a :class:`DetectorTags`) and
    ``_fitted_attribute`` (the attribute whose presence means fitted), has
    ``alpha`` and ``random_state`` parameters, and implements the four
    public methods below. The built-in detectors also take ``confidence``
    (``detection.calibration_confidence`` sets it): with a trusted
    reference, the share of clean rows flagged is then at most ``alpha`` for
    all but ``1 - confidence`` of the references the detector could have
    been given (calibration-conditional p-values,
    ``detectors.calibration.conformal_upper_bounds``); None holds it on
    average over references. Without a reference it does not apply.

    ``X`` is a numeric feature matrix (see ``detectors.features``): a pandas
    DataFrame, matched to the fitted columns by name, or an array-like. ``y``
    is an array of labels (strings or integers).

    Fitted attributes every detector sets (through ``_validate_reference``):

    feature_names_in_ : numpy.ndarray of str, shape (n_features,)
    n_features_in_ : int
    self_referential_ : bool
        True when the batch was its own reference (``self_findings``).
    """

    name: ClassVar[str] = ""
    tags: ClassVar[Optional[DetectorTags]] = None
    _fitted_attribute: ClassVar[str] = ""
    # Labels are compared as text (so 1 and "1" are one label), except where
    # a subclass needs their own sort order (classifiers' label codes).
    _labels_as_text: ClassVar[bool] = True

    def fit(self, X, y=None):
        """Fit on trusted rows and calibrate on them.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,), optional
            Required when ``tags.needs_labels``.

        Returns
        -------
        self
        """
        raise NotImplementedError

    def score(self, X, y=None) -> np.ndarray:
        """Suspicion score of each row; higher = more suspicious.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,), optional

        Returns
        -------
        numpy.ndarray of float, shape (n_rows,)
        """
        raise NotImplementedError

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge batch rows against the fitted trusted reference.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,), optional
        row_ids : array-like of str, shape (n_rows,), optional
            Defaults to the DataFrame index, or ``0..n_rows-1``.

        Returns
        -------
        pandas.DataFrame with columns ``FINDING_COLUMNS``, one row per input
        row, in input order.
        """
        raise NotImplementedError

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge a batch against itself when there is no trusted reference.

        Self-referential: the batch is fitted and judged (cross-fitted, or
        calibrated on its robust bulk) without poisoned rows vouching for
        themselves. Whether it leaves the detector fitted is the subclass's
        to say.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,), optional
        row_ids : array-like of str, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with columns ``FINDING_COLUMNS``, one row per input
        row, in input order.
        """
        raise NotImplementedError

    def batch_judge(self):
        """Judge a fitted detector's batch a chunk at a time (``detectors.judges``).

        Add each chunk in batch order with ``judge.add(X, y, row_ids)``,
        then ``judge.findings()`` is what ``findings`` gives the whole batch,
        row for row. A detector that judges each row alone
        (``tags.uses_batch`` False) judges chunk by chunk; one that uses the
        batch overrides this where it can keep the promise.

        Returns
        -------
        detectors.judges.BatchJudge

        Raises
        ------
        DetectorError
            When the detector compares the batch's rows with each other, so
            only the whole batch gives its findings.
        """
        check_is_fitted(self)
        if self.tags.uses_batch:
            raise DetectorError(
                f"{self.name} compares the batch's rows with each other: "
                "give findings() the whole batch, not a chunk at a time"
            )
        return ConcatenatingJudge(self)

    def self_findings_params(self) -> dict:
        """The parameters ``self_findings`` runs with: ``get_params()``, where a
        subclass does not resolve one of them differently without a reference."""
        return self.get_params()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.tags is not None:
            tags.target_tags.required = self.tags.needs_labels
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        # Fitted once fit (or a stateful self_findings) got to the end, not
        # as soon as _validate_reference has recorded the feature names.
        return hasattr(self, self._fitted_attribute)

    # --- protected helpers: the checks and the decision every detector shares ---

    def _labels(self, y, n_rows: int) -> Optional[np.ndarray]:
        """Labels checked as ``tags`` require, shape (n_rows,); None when not given and not needed."""
        if self.tags.needs_labels:
            if y is None:
                raise DetectorError(f"{self.name}: this detector needs the labels (y), got None")
            labels = label_array(y, n_rows)
            return text_values(labels) if self._labels_as_text else labels
        if y is None:
            return None
        # Optional labels are only named in reasons: as text, unchecked.
        return text_values(y)

    def _validate_batch(self, X, y=None, row_ids=None, *, feature_names=None):
        """Check rows without touching fitted state.

        Returns
        -------
        matrix : numpy.ndarray of float, shape (n_rows, n_features)
        labels : numpy.ndarray, shape (n_rows,), or None
        row_ids : numpy.ndarray of str, shape (n_rows,)
        names : list of str, shape (n_features,)
        """
        matrix, names = feature_matrix(X, feature_names=feature_names)
        labels = self._labels(y, len(matrix))
        return matrix, labels, row_id_array(row_ids, X, len(matrix)), names

    def _validate_reference(self, X, y=None, row_ids=None, *, self_referential: bool = False):
        """Check the rows a detector is fitted on and record their columns.

        Sets ``feature_names_in_``, ``n_features_in_`` and
        ``self_referential_``.

        Returns
        -------
        matrix : numpy.ndarray of float, shape (n_rows, n_features)
        labels : numpy.ndarray, shape (n_rows,), or None
        row_ids : numpy.ndarray of str, shape (n_rows,)
        """
        matrix, labels, ids, names = self._validate_batch(X, y, row_ids)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = matrix.shape[1]
        self.self_referential_ = self_referential
        return matrix, labels, ids

    def _validate_fitted(self, X, y=None, row_ids=None):
        """Check that the detector is fitted and that rows match its columns.

        Raises ``sklearn.exceptions.NotFittedError`` before fitting. A
        DataFrame is reordered to ``feature_names_in_``.

        Returns
        -------
        matrix : numpy.ndarray of float, shape (n_rows, n_features)
        labels : numpy.ndarray, shape (n_rows,), or None
        row_ids : numpy.ndarray of str, shape (n_rows,)
        """
        check_is_fitted(self)
        matrix, labels, ids, _ = self._validate_batch(X, y, row_ids, feature_names=list(self.feature_names_in_))
        return matrix, labels, ids

    def _p_value_texts(self, p_values, extrapolated, explained=None) -> np.ndarray:
        """``p=...`` for each row, naming what an extrapolated p-value went beyond.

        Only the ``explained`` rows (all by default) get a text; the others
        ``NOT_EXPLAINED``. An object array, shape (n_rows,).
        """
        texts = np.full(len(p_values), NOT_EXPLAINED, dtype=object)
        rows = np.arange(len(p_values)) if explained is None else np.flatnonzero(explained)
        texts[rows] = p_value_texts(
            np.asarray(p_values, dtype=float)[rows], np.asarray(extrapolated, dtype=bool)[rows],
            self_referential=self.self_referential_,
        )
        return texts

    def set_reasons(self, *, p_value_at_most: float = 1.0):
        """Write reason sentences only for the rows a decision can act on.

        A reason is a sentence per row, and a million rows of sentences is
        gigabytes that nobody reads: a pipeline quarantines a row only when
        a detector flags it or its p-value is at most the run's level. Rows
        flagged here or with a p-value at most ``p_value_at_most`` get their
        sentence, and it says what is unusual about the row as a flagged
        row's does (``_described``): the pipeline may quarantine it on this
        evidence combined with another check's. The others get
        ``NOT_EXPLAINED`` (their score and p-value are still there). Like
        scikit-learn's ``set_output``, this configures the output, not the
        model: it is no parameter, changes no score, and
        ``sklearn.base.clone`` does not copy it.

        Parameters
        ----------
        p_value_at_most : float
            1.0 (the default) explains every row.

        Returns
        -------
        self
        """
        self._reasons_p_value_at_most = float(p_value_at_most)
        return self

    def _explained(self, p_values, extra_flags=None) -> np.ndarray:
        """Which rows get a reason sentence (``set_reasons``), shape (n_rows,) of bool."""
        if getattr(self, "_reasons_p_value_at_most", 1.0) >= 1.0:
            return np.ones(len(self._flagged(p_values, extra_flags)), dtype=bool)
        return self._described(p_values, extra_flags)

    def _described(self, p_values, extra_flags=None) -> np.ndarray:
        """Which rows' reasons say what is unusual about them, shape (n_rows,) of bool.

        The flagged rows, and with ``set_reasons`` every row whose p-value is
        at most its bound: a pipeline's decision can quarantine such a row on
        this check's evidence together with another's, and a reason saying the
        row is "within the bulk" would then contradict its quarantine.
        """
        flagged = self._flagged(p_values, extra_flags)
        bound = getattr(self, "_reasons_p_value_at_most", 1.0)
        if bound >= 1.0 or p_values is None:
            return flagged
        return flagged | (np.asarray(p_values, dtype=float) <= bound)

    def _flagged(self, p_values, extra_flags=None) -> np.ndarray:
        """The decision: ``p_value <= alpha``, or an extra flag.

        Extra flags are what a detector flags without a p-value (a label no
        trusted row has); a NaN p-value flags nothing by itself.

        Returns
        -------
        numpy.ndarray of bool, shape (n_rows,)
        """
        if p_values is None:
            flagged = np.zeros(len(extra_flags), dtype=bool)
        else:
            flagged = np.asarray(p_values, dtype=float) <= self.alpha
        if extra_flags is not None:
            flagged = flagged | np.asarray(extra_flags, dtype=bool)
        return flagged

    def _judged(self, scores, p_values, reasons, row_ids, *, extra_flags=None) -> pd.DataFrame:
        """The findings table, flagged by ``_flagged(p_values, extra_flags)``.

        Parameters
        ----------
        scores : array-like of float, shape (n_rows,)
        p_values : array-like of float, shape (n_rows,), or None (all NaN)
        reasons : array-like of str, shape (n_rows,)
        row_ids : array-like of str, shape (n_rows,)
        extra_flags : array-like of bool, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with columns ``FINDING_COLUMNS``.
        """
        return make_findings(
            row_ids=row_ids,
            check=self.name,
            scores=scores,
            p_values=p_values,
            flagged=self._flagged(p_values, extra_flags),
            reasons=reasons,
        )
