"""Label-flip detectors: rows whose label their features do not support.

Two registered classifier detectors (the third label detector, ``label.knn``,
lives in ``detectors.label_knn`` and shares ``_LabelDetector``). Each scores a
row from models that never saw it, says which label it believes instead, and
calibrates the score on trusted rows scored the same way:

``label.trusted_model`` (:class:`TrustedModelLabelDetector`)
    Score ``1 - P(given label | features)`` from a classifier fitted on
    trusted rows. Calibration: stratified cross-fitting keeps the fold
    classifiers and the trusted rows' out-of-fold scores; a batch row is
    scored by every fold classifier and its p-value is cross-conformal
    (``detectors.calibration.cross_conformal_p_values``), so batch and trusted rows
    are judged by models fitted on equally many rows. (A model fitted on all
    trusted rows is more confident than the fold models, which biases its
    p-values for small references.) The reported score and the
    probabilities in reasons come from that final model.
``label.confident_learning`` (:class:`ConfidentLearningLabelDetector`)
    Trusted and batch rows are pooled and every row gets out-of-fold
    probabilities (cleanlab's setting). Trusted and clean batch rows are then
    scored in exactly the same way, by models fitted on equally many rows, so
    the trusted rows' scores are a valid calibration sample as they are (one
    fold in ``cross_conformal_p_values``). The decision is the calibrated
    ``p <= alpha``; cleanlab's ``find_label_issues`` (whose error rate is not
    calibrated) is reported in the reason only. ``trusted_weight`` can make
    the trusted rows weigh more in every fit.

Both classifier detectors fit their models twice wherever they fit on batch
rows (the pool, and the batch without a reference): the second time without
the rows cleanlab's ``find_label_issues`` marks on the first out-of-fold
probabilities (``refit_without_issues``, ``detectors._label_pruning``), so that
flips cannot teach the model their own pattern. With boosted models on the
tuning half of ``benchmarks/detection_real.py`` and a reference it raised the
recall of targeted flips from 0.53 to 0.60 and of random flips from 0.49 to
0.52, at the same share of clean rows flagged. Logistic regression is too
rigid to learn much of a flip's pattern: there the mean recall stayed 0.61
with a reference and 0.47 without (random flips 0.39 to 0.34, floods of
relabelled copies 0.71 to 0.79).
P-values of the classifier detectors are computed on the log-odds of the
score (``log_odds``): the same ranks, but an unbounded scale on which the
tail extrapolated beyond the least plausible trusted labels separates a
label the model gives 1e-6 from one it gives 0.05. Unlike the outlier,
duplicate, backdoor and kNN label detectors, the classifier label detectors
use the trusted tail as it is, without checking it against the batch's own tail
(``detectors._crossfit.guarded_p_values``): that check draws an exponential
through the batch's 75th and 90th percentiles, far heavier than the light
upper tail of clean rows' label scores, and it halved their recall. Measured
without it (``benchmarks/detection.py``, 10 % references of 15-180 rows),
each label detector flagged at most 0.75 % of clean rows at ``alpha = 0.01``
on every dataset, and caught 0.75 of random and 0.88 of targeted flips
instead of 0.61 and 0.57. The exception is ``label.confident_learning`` on a
reference of fewer than ``SMALL_REFERENCE_ROWS`` rows: its pooled models
score clean batch rows with a heavier tail than a few dozen trusted rows
show, and judged on clean batches alone (``benchmarks/clean_rate.py --tables
anchors``) one reference in ten quarantined 6-15 % of them.

Batch labels never seen in trusted rows cannot be scored; such rows get the
highest score and are flagged with a reason saying so.

Self-referential mode (``self_findings``, no trusted reference): the two
classifier detectors score every batch row by models cross-fitted on the rest
of the batch (cleanlab's setting) and calibrate those scores label by label
on the robust bulk of the batch's rows with the same label
(``detectors._crossfit.bulk_calibrated_p_values`` per label, Mondrian
style; labels with fewer than ``SELF_MONDRIAN_MIN_ROWS`` rows on all rows):
conformal counts against the rows below a robust cut, and above their upper
quartile an exponential tail through their median and quartile, on the
log-odds scale, never below what the label's own share of higher scores
implies. Up to a quarter of a label's rows can be poisoned without moving
either percentile, so the p-values are estimates that hold while a label's
clean rows are most of it, not conformal guarantees. Label by label because
the clean rows of a minority label score high as a whole: pooled, they lay
beyond the batch's bulk, and a clean 94 / 6 % table lost 140 of its 143
minority rows. Flips that outnumber a label's clean rows (5 % of a batch
flipped into a 3 % label) are then that label's bulk and go unseen; only a
reference tells them apart. That tail is a shape assumed, and where a
label's bulk is tight it is too light: on 336,776 real flights whose origin
a cross-fitted logistic regression is sure of for most rows, 8.7 % of the
rows got p <= 0.007. So each row's p-value is the larger of the tail's and
``calibration.label_mass_p_values`` of the first fit's probabilities (the
models fitted on the batch's labels as they are, before any pruning, and so
calibrated for them): valid if either assumption holds, 0.6 % of those
flights at 0.007. It costs the flips the models learn from each other: fitted
with them, the models give them a few percent of their label's mass (6 of 10
random flips in a 200-row batch found, against 10). cleanlab's ``find_label_issues``
mask, whose error rate no alpha controls (it flagged 5 % of clean iris rows
and 10-17 % of clean rows on larger real tables), is evidence in the reason
only. A label that occurs on a single row of the batch cannot be
cross-fitted; that row is flagged for review (a hard flag).

This module is a little longer than the package's usual 400 lines: the two
classifier detectors share ``_LabelDetector`` and read best side by side.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np
import pandas as pd
from cleanlab.rank import get_label_quality_scores
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss
from sklearn.preprocessing import LabelEncoder
from threadpoolctl import threadpool_limits

from poisonguard.detectors._classifiers import logistic_regression
from poisonguard.detectors._crossfit import (
    SELF_MONDRIAN_MIN_ROWS,
    SMALL_REFERENCE_ROWS,
    bulk_calibrated_p_values,
    check_calibration,
    class_probabilities,
    cross_fit_classifiers,
    fold_scores,
    fold_splits,
    guarded_p_values,
    label_conditional_p_values,
    label_contamination,
    label_probabilities,
    sampled_cross_fitted_probabilities,
)
from poisonguard.detectors._label_pruning import label_issues, refit_without_issues
from poisonguard.detectors._row_blocks import StackedRows, rows_where
from poisonguard.detectors._sampling import population_mask, reference_sample
from poisonguard.detectors._threads import one_blas_thread
from poisonguard.detectors._unique import isin_values, unique_values
from poisonguard.detectors.base import NOT_EXPLAINED, Detector, DetectorError, DetectorTags
from poisonguard.detectors.calibration import (
    TAIL_MIN_ROWS,
    cross_conformal_p_values,
    label_mass_p_values,
    p_value_texts,
    peaks_over_threshold,
)
from poisonguard.detectors.registry import register

MODELS = ("logistic", "gradient_boosting")
# ``label.confident_learning``'s default: per batch, the model under which the
# trusted rows' labels are most probable (see ConfidentLearningLabelDetector).
AUTO = "auto"
MODEL_NAMES = {"logistic": "logistic regression", "gradient_boosting": "gradient boosting"}
# "auto" tries gradient boosting on batches up to this many rows. Past it the
# pooled sample is the same size, but every other batch row is predicted by a
# fold model: a boosted model (100 rounds per label) costs about 20 us a row
# on one core, minutes at a million rows.
BOOSTED_MAX_ROWS = 50_000
# ... and only while a fit's work, pooled rows x encoded features x trees per
# round (one for two labels, one per label beyond), is at most this: the
# real-data benchmark's tables (up to 3,000 rows x 85 features x 1 tree) are
# within it; 12,000 rows x 180 columns x 5 labels of a wide mixed table cost
# 25 s of boosting for the five folds on 2 cores, its whole run's time again.
BOOSTED_MAX_WORK = 1_000_000
# Below SMALL_REFERENCE_ROWS trusted rows (``detectors._crossfit``), the
# upper tail of confident learning's scores is not shown by the reference:
# the tail fitted to its five largest was far lighter than the batch's clean
# rows' (clean anchors' batches, 15-57 trusted rows: 0.54 % of clean rows at
# p <= 0.001, one batch of penguins 10 % at p <= 0.007). There "auto" keeps
# to logistic regression, whose tail is the lighter, and the tail beyond the
# trusted scores must be confirmed by the batch's own
# (``detectors._crossfit.guarded_p_values``).


def classifier_factory(model: str, random_state) -> Callable[[], object]:
    """Return a function making a fresh, unfitted classifier of kind ``model``."""
    if model == "logistic":
        return logistic_regression
    if model == "gradient_boosting":
        return lambda: HistGradientBoostingClassifier(random_state=random_state)
    raise DetectorError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")


def losing_to(bound: float, trusted_codes: np.ndarray, n_classes: int) -> Callable[[np.ndarray, np.ndarray], bool]:
    """An ``abandon`` hook for cross-fitting (``detectors._crossfit.cross_fit``).

    True once the trusted rows scored so far (the first ``len(trusted_codes)``
    rows) have a summed log-loss above ``bound``: the sum can only grow, so
    that model's total cannot be the lower one. The margin of 1e-9 covers
    rounding between a partial and a whole sum.
    """
    n_trusted = len(trusted_codes)

    def abandon(probabilities: np.ndarray, scored: np.ndarray) -> bool:
        rows = np.flatnonzero(scored[:n_trusted])
        if not len(rows):
            return False
        partial = log_loss(trusted_codes[rows], probabilities[rows], labels=np.arange(n_classes), normalize=False)
        return partial > bound * (1.0 + 1e-9)

    return abandon


def log_odds(scores) -> np.ndarray:
    """``log(s / (1 - s))`` of scores ``s = 1 - P(label)``, clipped to ``[1e-9, 1 - 1e-9]``.

    P-values are computed on this scale: it ranks rows as the score does (so
    the conformal counts are unchanged), but it is unbounded, so the
    exponential tail fitted to the trusted rows' largest values can tell a
    label the model gives 1e-6 from one it gives 0.05 (on the bounded score
    both are "about 1").
    """
    clipped = np.clip(np.asarray(scores, dtype=float), 1e-9, 1.0 - 1e-9)
    return np.log(clipped) - np.log1p(-clipped)


def _quoted(label) -> str:
    return f"'{label}'"


def _describe_labels(labels, codes, probabilities, classes, source: str, rows=None) -> list[str]:
    """One sentence per row (of ``rows``, an index or mask; all by default),
    e.g. ``"label 'A' gets probability 0.02 from <source>, which predicts 'B'
    (0.97)"`` (the prediction only when it differs from the label)."""
    if rows is not None:
        labels, codes, probabilities = np.asarray(labels)[rows], np.asarray(codes)[rows], probabilities[rows]
    predicted = probabilities.argmax(axis=1)
    sentences = []
    for row, (label, code) in enumerate(zip(labels, codes)):
        sentence = f"label {_quoted(label)} gets probability {probabilities[row, code]:.2f} from {source}"
        if predicted[row] != code:
            sentence += (
                f", which predicts {_quoted(classes[predicted[row]])} "
                f"({probabilities[row, predicted[row]]:.2f})"
            )
        sentences.append(sentence)
    return sentences


def _unseen_label_reason(label) -> str:
    return f"label {_quoted(label)} never occurs in the trusted rows"


class _LabelDetector(Detector):
    """Shared parameters, checks and reasons of the label-flip detectors.

    Parameters
    ----------
    alpha : float
        Flag a row when its p-value is at most ``alpha``.
    n_folds : int
        Maximum folds for stratified cross-fitting (at least 2; fewer when a
        label has fewer rows).
    random_state : int or None
        Seeds the fold split and randomised models.
    confidence : float or None
        Hold ``alpha`` for the reference at hand, not on average (see
        :class:`~poisonguard.detectors.base.Detector`).
    refit_without_issues : bool
        Where the models are fitted on batch rows, fit them again without the
        rows cleanlab marks as label issues (see the module docstring).
    """

    _fitted_attribute = "classes_"
    # The classifiers are fitted on label codes in the labels' own sort order
    # (integers sort as numbers, not as text), which also fixes the folds.
    _labels_as_text = False

    def _model_kind(self) -> str:
        return "logistic"

    def self_findings_params(self) -> dict:
        """``get_params()``, with ``model`` the classifier ``self_findings`` fits."""
        return {**self.get_params(), "model": self._model_kind()}

    def _store_reference(self, X, y):
        matrix, labels, _ = self._validate_reference(X, y)
        self.encoder_ = LabelEncoder().fit(labels)
        self.classes_ = self.encoder_.classes_
        return matrix, labels, self.encoder_.transform(labels)

    def _trusted_findings(self, labels, known, scores, p_values, extrapolated, describe, row_ids) -> pd.DataFrame:
        """The findings table; ``describe(rows)`` gives the sentences of those rows (all with a known label)."""
        explained = self._explained(p_values, extra_flags=~known)
        reasons = np.full(len(labels), NOT_EXPLAINED, dtype=object)
        for row in np.flatnonzero(~known):
            reasons[row] = _unseen_label_reason(labels[row])
        p_texts = self._p_value_texts(p_values, extrapolated, explained)
        rows = np.flatnonzero(known & explained)
        for row, sentence in zip(rows, describe(rows)):
            reasons[row] = f"{sentence}; {p_texts[row]}"
        # A label no trusted row has cannot be scored: flagged whatever its p-value.
        return self._judged(scores, p_values, reasons, row_ids, extra_flags=~known)

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Confident learning on a batch with no trusted reference.

        Stateless: it does not fit the detector (there is nothing trusted to
        keep for later batches).

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,)
        row_ids : array-like of str, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``; ``p_value`` calibrated on
        the batch's robust bulk (see the module docstring), NaN for the rows
        whose label occurs once, which are flagged anyway.
        """
        matrix, labels, ids, _ = self._validate_batch(X, y, row_ids)
        values, counts = unique_values(labels, return_counts=True)
        lone = isin_values(labels, values[counts == 1])
        scores = np.ones(len(matrix))
        flagged = lone.copy()
        reasons = np.full(len(matrix), NOT_EXPLAINED, dtype=object)
        for row in np.flatnonzero(lone):
            reasons[row] = (f"label {_quoted(labels[row])} occurs on no other row of the batch and there is no "
                            "trusted reference to check it against")
        kept = np.flatnonzero(~lone)
        encoder = LabelEncoder().fit(labels[kept])
        codes = encoder.transform(labels[kept])
        options = dict(make_classifier=classifier_factory(self._model_kind(), self.random_state),
                       n_folds=self.n_folds, random_state=self.random_state, classes=encoder.classes_)
        # A large batch is cross-fitted on a sample of it (``detectors._sampling``).
        in_sample = population_mask(len(kept), self.random_state, codes)
        kept_rows = rows_where(matrix, ~lone)
        probabilities = sampled_cross_fitted_probabilities(kept_rows, codes, in_sample, **options)
        # Before any pruning the models are fitted on the batch's labels as
        # they are, so their probabilities can be calibrated for them.
        model_p_values = label_mass_p_values(probabilities, codes, in_sample)
        if self.refit_without_issues:
            probabilities, issues = refit_without_issues(kept_rows, codes, in_sample, probabilities, **options)
        else:
            issues = label_issues(codes, probabilities)
        scores[kept] = 1.0 - probabilities[np.arange(len(kept)), codes]
        p_values = np.full(len(matrix), np.nan)
        extrapolated = np.zeros(len(matrix), dtype=bool)
        # Label by label (Mondrian), on each label's robust bulk: pooled, the
        # clean rows of a minority label all lay beyond the batch's bulk (on
        # caravan, 94 / 6 %, 140 of its 143 clean 'Yes' rows were flagged).
        # The price: flips into a label, once they are a large share of it,
        # become that label's own bulk (see the module docstring).
        logged = log_odds(scores[kept])
        tail_p_values, tail_extrapolated = label_conditional_p_values(
            lambda same, rows: bulk_calibrated_p_values(
                logged[same], logged[rows], contamination=label_contamination(same)),
            labels[kept], labels[kept], min_rows=SELF_MONDRIAN_MIN_ROWS,
        )
        # Each p-value rests on its own assumption (a light tail beyond each
        # label's bulk; calibrated models); the larger is valid if either holds.
        # On 336,776 real flights (see the module docstring) the tail alone
        # gave 8.7 % of the rows p <= 0.007, the larger of the two 0.6 %.
        p_values[kept] = np.maximum(tail_p_values, model_p_values)
        extrapolated[kept] = tail_extrapolated & (tail_p_values >= model_p_values)
        source = "models cross-fitted on the rest of the batch (no trusted reference)"
        explained = self._explained(p_values, extra_flags=flagged)[kept]
        described = _describe_labels(labels[kept], codes, probabilities, encoder.classes_, source, explained)
        p_texts = p_value_texts(p_values[kept][explained], extrapolated[kept][explained], self_referential=True)
        for row, sentence, issue, p_text in zip(kept[explained], described, issues[explained], p_texts):
            # cleanlab's verdict is evidence for the reviewer; its mask is not alpha-controlled.
            reasons[row] = f"{sentence}; {p_text}" + ("; confident learning marks it a label issue" if issue else "")
        return self._judged(scores, p_values, reasons, ids, extra_flags=flagged)


@register
class TrustedModelLabelDetector(_LabelDetector):
    """Flag labels a classifier trained on trusted rows finds implausible.

    Registered as ``label.trusted_model``. Score: ``1 - P(given label | x)``.

    Parameters
    ----------
    alpha, n_folds, random_state, confidence, refit_without_issues
        See :class:`_LabelDetector` (the refit only without a reference:
        trusted labels need no pruning).
    model : {"logistic", "gradient_boosting"}
        ``logistic_regression()`` or
        ``HistGradientBoostingClassifier``.

    Attributes
    ----------
    model_ : classifier fitted on all trusted rows (labels encoded 0..K-1),
        or on a seeded sample of ``POPULATION_ROWS`` of them, per label, when
        there are more (``detectors._sampling``); gives ``score`` and the
        probabilities in reasons.
    fold_models_ : list of classifiers, shape (n_used_folds,)
        Classifier ``k`` was fitted on those rows outside fold ``k``;
        they give the p-values.
    encoder_ : sklearn.preprocessing.LabelEncoder of the trusted labels.
    classes_ : numpy.ndarray, shape (K,), trusted labels.
    calibration_scores_ : numpy.ndarray, shape (n_fitted,)
        Out-of-fold scores of the trusted rows fitted on.
    calibration_folds_ : numpy.ndarray of int, shape (n_fitted,)
        Which fold classifier scored each of them.
    feature_names_in_ : numpy.ndarray of str, shape (n_features,)
    n_features_in_ : int
    """

    name = "label.trusted_model"
    # Each row is judged by the trusted model and fold models alone. Without
    # a reference there is no trusted model: ``self_findings`` is
    # ``_LabelDetector``'s, cross-fitted on the batch as confident learning's.
    tags = DetectorTags(needs_labels=True, uses_batch=False, self_findings_of="label.confident_learning")

    def __init__(self, alpha=0.01, n_folds=5, random_state=0, model="logistic", refit_without_issues=True,
                 confidence=None):
        self.alpha = alpha
        self.n_folds = n_folds
        self.random_state = random_state
        self.model = model
        self.refit_without_issues = refit_without_issues
        self.confidence = confidence

    def _model_kind(self) -> str:
        return self.model

    def fit(self, X, y=None):
        """Fit on trusted rows and calibrate by stratified cross-fitting.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,)

        Returns
        -------
        self
        """
        make_classifier = classifier_factory(self.model, self.random_state)
        matrix, _, codes = self._store_reference(X, y)
        matrix, codes = reference_sample(self.random_state, matrix, codes)
        fitted = cross_fit_classifiers(
            matrix, codes, make_classifier=make_classifier, n_folds=self.n_folds,
            random_state=self.random_state, classes=self.classes_,
        )
        self.fold_models_ = fitted.models
        self.calibration_scores_ = 1.0 - fitted.out_of_fold[np.arange(len(codes)), codes]
        self.calibration_folds_ = fitted.folds
        has_tail = peaks_over_threshold(self.calibration_scores_) is not None
        check_calibration(len(codes), self.alpha, self.name, conformal=not has_tail)
        with one_blas_thread():
            self.model_ = make_classifier().fit(matrix, codes)
        return self

    def score(self, X, y=None) -> np.ndarray:
        """``1 - P(given label | x)`` per row, shape (n_rows,); 1.0 for unseen labels."""
        matrix, labels, _ = self._validate_fitted(X, y)
        return self._scores(matrix, labels)[0]

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge batch labels against the trusted model.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,)
        row_ids : array-like of str, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        matrix, labels, ids = self._validate_fitted(X, y, row_ids)
        scores, known, codes, probabilities = self._scores(matrix, labels)
        # Cross-conformal: every fold classifier scores the row; rows with
        # a label no trusted row has keep score 1 on every fold.
        n_classes = len(self.classes_)
        per_fold = np.ones((len(labels), len(self.fold_models_)))
        per_fold[known] = 1.0 - fold_scores(
            self.fold_models_,
            lambda model, rows: label_probabilities(model, rows, codes, n_classes),
            rows_where(matrix, known),
        )
        p_values, extrapolated = cross_conformal_p_values(
            log_odds(self.calibration_scores_), self.calibration_folds_, log_odds(per_fold), return_extrapolated=True,
            confidence=self.confidence,
        )
        position = np.cumsum(known) - 1  # a known row's place among the known rows

        def describe(rows):
            return _describe_labels(labels[rows], codes[position[rows]], probabilities[position[rows]],
                                    self.classes_, "a model trained on trusted rows")

        return self._trusted_findings(labels, known, scores, p_values, extrapolated, describe, ids)

    def _scores(self, matrix, labels):
        known = isin_values(labels, self.classes_)
        # As integers even when no label is known: the encoder gives an empty float array then.
        codes = self.encoder_.transform(labels[known]).astype(np.intp)
        probabilities = class_probabilities(self.model_, rows_where(matrix, known), len(self.classes_))
        scores = np.ones(len(labels))
        scores[known] = 1.0 - probabilities[np.arange(len(codes)), codes]
        return scores, known, codes, probabilities


@register
class ConfidentLearningLabelDetector(_LabelDetector):
    """Confident learning (cleanlab) over trusted and batch rows pooled.

    Registered as ``label.confident_learning``. Score:
    ``1 - cleanlab self-confidence`` = ``1 - P(given label | x)`` from a
    classifier cross-fitted on the pool. Of a batch, and of a reference,
    larger than ``POPULATION_ROWS`` a seeded sample per label is pooled
    (``detectors._sampling``); their other rows are predicted by fold
    models that never saw them.

    Parameters
    ----------
    alpha, n_folds, random_state, refit_without_issues
        See :class:`_LabelDetector`.
    model : {"auto", "logistic", "gradient_boosting"}
        As for :class:`TrustedModelLabelDetector`, or ``"auto"``: on each
        batch of at most ``BOOSTED_MAX_ROWS`` rows whose boosting costs
        at most ``BOOSTED_MAX_WORK``, both are cross-fitted on the pool and
        the one whose out-of-fold probabilities of the trusted rows' labels
        have the lower log-loss is used (the reason names it); logistic
        regression on larger or wider batches and without a reference (where
        the p-values rest on a tail fitted to the batch's bulk, which
        boosting's near-certain probabilities break: a clean batch of
        ``default`` lost 5.2 % of its rows at a rate of 5 %, against 1.4 %).
        Neither model wins everywhere: on ``benchmarks/detection_real.py``
        boosting caught 0.98 of fishing's targeted flips where logistic
        regression caught 0.22, and 0.08 of chile's random flips where it
        caught 0.19; the trusted labels' log-loss tells such tables apart.
        With fewer than ``SMALL_REFERENCE_ROWS`` trusted rows, logistic
        regression, and the tail beyond the trusted scores is guarded by the
        batch's (see ``SMALL_REFERENCE_ROWS``).
    trusted_weight : float or "balanced"
        Training weight of every trusted row; "balanced" makes the trusted
        rows weigh as much as the pooled batch rows.

    Attributes
    ----------
    reference_ : numpy.ndarray, shape (n_trusted, n_features)
    reference_labels_ : numpy.ndarray, shape (n_trusted,)
    encoder_ : sklearn.preprocessing.LabelEncoder of the trusted labels.
    classes_ : numpy.ndarray, shape (K,)
    feature_names_in_ : numpy.ndarray of str, shape (n_features,)
    n_features_in_ : int
    """

    name = "label.confident_learning"
    # Cross-fits on the trusted and batch rows pooled.
    tags = DetectorTags(needs_labels=True, uses_batch=True)

    def __init__(self, alpha=0.01, n_folds=5, random_state=0, model=AUTO, trusted_weight=1.0,
                 refit_without_issues=True, confidence=None):
        self.alpha = alpha
        self.n_folds = n_folds
        self.random_state = random_state
        self.model = model
        self.trusted_weight = trusted_weight
        self.refit_without_issues = refit_without_issues
        self.confidence = confidence

    def _model_kind(self) -> str:
        # Without a reference (``self_findings``), "auto" is logistic: see ``model``.
        return "logistic" if self.model == AUTO else self.model

    def fit(self, X, y=None):
        """Store the trusted rows (the work happens per batch, on the pool).

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,)

        Returns
        -------
        self
        """
        if self.model not in (AUTO, *MODELS):
            raise DetectorError(f"unknown model {self.model!r}; expected one of {', '.join((AUTO, *MODELS))}")
        matrix, labels, codes = self._store_reference(X, y)
        # Fail now, not on the first batch, if the trusted labels cannot be cross-fitted.
        fold_splits(
            len(codes), n_folds=self.n_folds, random_state=self.random_state, labels=codes,
            label_names=self.classes_,
        )
        # The trusted scores are computed per batch; a tail can be fitted to
        # them unless there are very few.
        check_calibration(len(codes), self.alpha, self.name, conformal=len(codes) < TAIL_MIN_ROWS)
        self.reference_ = matrix
        self.reference_labels_ = labels
        return self

    def score(self, X, y=None) -> np.ndarray:
        """``1 - P(given label | x)`` per batch row, shape (n_rows,); 1.0 for unseen labels."""
        matrix, labels, _ = self._validate_fitted(X, y)
        return self._pooled(matrix, labels)["scores"]

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge batch labels by confident learning over trusted + batch rows.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,)
        row_ids : array-like of str, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        matrix, labels, ids = self._validate_fitted(X, y, row_ids)
        pooled = self._pooled(matrix, labels)
        scores, known = pooled["scores"], pooled["known"]
        # One fold: the pooled out-of-fold scores already come from models
        # fitted on equally many rows; only the tail is added.
        calibration = log_odds(pooled["calibration"])
        folds = np.zeros(len(calibration), dtype=int)
        if len(calibration) < SMALL_REFERENCE_ROWS:
            p_values, extrapolated = guarded_p_values(calibration, folds, log_odds(scores)[:, None],
                                                      confidence=self.confidence)
        else:
            p_values, extrapolated = cross_conformal_p_values(
                calibration, folds, log_odds(scores)[:, None], return_extrapolated=True, confidence=self.confidence,
            )
        acted_on = self._described(p_values)  # the rows a decision may quarantine on this evidence
        source = f"{MODEL_NAMES[pooled['model']]} models cross-fitted on trusted and batch rows"
        position = np.cumsum(known) - 1  # a known row's place among the known rows

        def describe(rows):
            described = _describe_labels(labels[rows], pooled["codes"][position[rows]],
                                         pooled["probabilities"][position[rows]], self.classes_, source)
            # cleanlab's own verdict is evidence for the reviewer, not the decision.
            return [sentence + ("; cleanlab's confident learning also flags it"
                                if pooled["issues"][position[row]] and acted_on[row] else "")
                    for row, sentence in zip(rows, described)]

        return self._trusted_findings(labels, known, scores, p_values, extrapolated, describe, ids)

    def _pooled(self, matrix, labels) -> dict:
        # Batch rows with labels the trusted rows never show are left out of
        # the pool: a class with one or two rows cannot be cross-fitted, and
        # such rows are flagged without a model anyway. Of a large batch, a
        # sample is pooled (``detectors._sampling``); the other rows are
        # predicted by fold models that never saw them.
        known = isin_values(labels, self.classes_)
        n_trusted = len(self.reference_labels_)
        pool = StackedRows(self.reference_, rows_where(matrix, known))
        codes = self.encoder_.transform(np.concatenate([self.reference_labels_, labels[known]]))
        # Of a reference larger than the batch's sample, a sample is pooled
        # too; the trusted rows outside it are predicted by fold models that
        # never saw them, as the batch's are, and calibrate with the others.
        in_trusted_sample = population_mask(n_trusted, self.random_state, self.reference_labels_)
        in_sample = np.concatenate([
            in_trusted_sample, population_mask(int(known.sum()), self.random_state, labels[known]),
        ])
        weights = np.ones(len(pool))
        if self.trusted_weight == "balanced":
            # The trusted rows weigh as much as the batch in every fit, so a
            # poisoned minority of the batch cannot outvote them.
            n_pooled_trusted = int(in_trusted_sample.sum())
            weights[:n_trusted] = max(1.0, (int(in_sample.sum()) - n_pooled_trusted) / n_pooled_trusted)
        else:
            weights[:n_trusted] = float(self.trusted_weight)
        options = dict(n_folds=self.n_folds, random_state=self.random_state, classes=self.classes_,
                       sample_weight=None if np.all(weights == 1.0) else weights)
        trees_per_round = 1 if len(self.classes_) <= 2 else len(self.classes_)
        affordable = (len(labels) <= BOOSTED_MAX_ROWS
                      and int(in_sample.sum()) * pool.shape[1] * trees_per_round <= BOOSTED_MAX_WORK)
        both = affordable and n_trusted >= SMALL_REFERENCE_ROWS
        candidates = [self.model] if self.model != AUTO else (list(MODELS) if both else ["logistic"])
        # Boosted fits within BOOSTED_MAX_WORK are small, and there OpenMP's
        # threads cost more than they gain (penguins: 2.2 s on one thread,
        # 10.3 s on two beside a busy core); the fitted models are the same.
        threads = threadpool_limits(limits=1, user_api="openmp") if len(candidates) > 1 else nullcontext()
        with threads:
            fits, losses = {}, {}
            for kind in candidates:
                # Per-row log-losses are non-negative: a candidate whose trusted rows scored
                # so far already lose more than the best total cannot win, so its remaining
                # folds are skipped (boosting's, on penguins, where logistic regression wins).
                best = min(losses.values(), default=None)
                fitted = sampled_cross_fitted_probabilities(
                    pool, codes, in_sample, make_classifier=classifier_factory(kind, self.random_state),
                    abandon=None if best is None else losing_to(
                        best, codes[:n_trusted][in_trusted_sample], len(self.classes_)
                    ),
                    **options,
                )
                if fitted is not None:
                    fits[kind] = fitted
                    losses[kind] = log_loss(codes[:n_trusted], fitted[:n_trusted],
                                            labels=np.arange(len(self.classes_)), normalize=False)
            model = min(fits, key=losses.get)
            probabilities = fits[model]
            options["make_classifier"] = classifier_factory(model, self.random_state)
            if self.refit_without_issues:
                probabilities, issues = refit_without_issues(pool, codes, in_sample, probabilities, **options)
            else:
                issues = label_issues(codes, probabilities)
        quality = get_label_quality_scores(codes, probabilities, method="self_confidence")
        scores = np.ones(len(labels))
        scores[known] = 1.0 - quality[n_trusted:]
        return {
            "model": model,
            "scores": scores,
            "known": known,
            "calibration": 1.0 - quality[:n_trusted],
            "codes": codes[n_trusted:],
            "probabilities": probabilities[n_trusted:],
            "issues": issues[n_trusted:],
        }

