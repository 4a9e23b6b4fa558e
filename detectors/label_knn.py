"""Label flips by nearest neighbours: ``label.knn``.

:class:`KNNLabelDetector` compares a row's distance to the nearest rows of
its own label with that to the nearest other label; it needs no fitted
model, so it also works where a classifier's boundary is poor. It shares
parameters, checks and reasons with the classifier label detectors of
``detectors.label_flips``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.preprocessing import LabelEncoder

from poisonguard.detectors._crossfit import (
    SELF_MONDRIAN_MIN_ROWS,
    bulk_calibrated_p_values,
    check_calibration,
    label_conditional_p_values,
    label_contamination,
    single_fold_p_values,
)
from poisonguard.detectors._class_neighbours import ClassMargins, class_margins, margins_from_means, nearest_other_row
from poisonguard.detectors._neighbour_shares import neighbour_label_p_values
from poisonguard.detectors._pooled_neighbours import pooled_neighbours, pooled_samples, shares_search
from poisonguard.detectors._sampling import calibration_rows, neighbour_population_rows, population_mask
from poisonguard.detectors._unique import isin_values, unique_values
from poisonguard.detectors.base import NOT_EXPLAINED, DetectorError, DetectorTags
from poisonguard.detectors.label_flips import _LabelDetector, _quoted
from poisonguard.detectors.errors import NotEnoughData
from poisonguard.detectors.registry import register

# Both mean distances get this share of the median nearest-neighbour distance
# added before their log-ratio is taken: exact duplicates give a finite score,
# and a difference far below the data's own spacing is not evidence. With
# 1e-3 of it, a row of a table of few distinct rows (ages, categories) whose
# own label's five nearest sat one year of age away and another label's at
# distance 0 scored log(1000); without a reference that second mode flagged
# 13 % of World Values Survey rows (carData's WVS) and 18-20 % of a synthetic
# table like it. At a half the benchmark's recall held (tuning half, seed 0).
KNN_DISTANCE_FLOOR = 0.5
# Without a reference, each label's robust bulk assumes a light tail beyond
# it; where a label's clean rows are of two kinds (survival's solder: a
# fifth of the medium openings sit among the small and large ones' rows),
# that tail flagged them by the dozen (58 of 900 rows). The second opinion,
# kept where it is the larger, is how rare a row's label is among its
# nearest rows (``detectors._neighbour_shares``), for the rows whose tail
# p-value is at most GUARDED_P_VALUE (it only raises a p-value). The
# price: a clump of flips is its label's share among its neighbours too,
# as that second kind is (without a reference, targeted flips on the small
# bundled tables 0.55 -> 0.30 in ``benchmarks/detection.py``; on the ten
# real tables recall held).
GUARDED_P_VALUE = 0.05


@register
class KNNLabelDetector(_LabelDetector):
    """Flag labels their nearest trusted neighbours do not share; ``label.knn``.

    For a row with label ``c``: ``d_c``, the mean distance to its
    ``n_neighbors`` nearest trusted rows labelled ``c``, and ``d_o``, the same
    for the nearest other label ``o``. Score ``log(d_c) - log(d_o)``: above 0
    the row sits closer to rows of ``o`` than to rows of its own label, and
    the detector believes ``o``. Unlike a fitted classifier it needs no
    folds: a trusted row's score (its neighbours other than itself) is
    computed like a batch row's, so the trusted scores calibrate the batch's
    (``single_fold_p_values``), and the batch's own upper tail guards the
    tail extrapolated beyond them (``detectors._crossfit.guarded_p_values``),
    as for the outlier detectors. Without a reference the neighbours are the
    other batch rows, and each label's rows are calibrated on their own
    robust bulk, as the classifier label detectors do (``detectors.label_flips``);
    as theirs, that tail is checked by a second p-value read off class
    probabilities, here the labels' shares among a row's nearest rows
    (``GUARDED_P_VALUE``), and the larger is kept.

    With ``pool_batch`` (the default), ``findings`` looks for neighbours among
    the trusted *and* the batch rows (a row is never its own neighbour), and
    scores the trusted rows the same way for calibration. A 10 % reference
    has a handful of rows per label, too few neighbours to judge a label by;
    the batch has many, and a poisoned minority among them moves a mean of
    ``n_neighbors`` distances little. Trusted and clean batch rows still see
    the same pool, so the calibration holds. Past 100,000 batch rows the
    pool is a sample of each (``detectors._sampling``), trusted rows
    included when there are more of them than batch rows in it; every row
    is still scored. ``score`` judges against the
    trusted rows alone.

    Parameters
    ----------
    alpha : float
    n_neighbors : int
        Neighbours per label (fewer when the smallest trusted label has
        fewer other rows).
    random_state : int or None
        Seeds the sample of a large batch that is pooled with the trusted
        rows as neighbours (``detectors._sampling``).
    confidence : float or None
        Hold ``alpha`` for the reference at hand, not on average (see
        :class:`~poisonguard.detectors.base.Detector`).
    pool_batch : bool
        Look for neighbours among the batch rows too (see above).

    Attributes
    ----------
    reference_ : numpy.ndarray, shape (n_trusted, n_features)
    reference_labels_ : numpy.ndarray, shape (n_trusted,)
    classes_ : numpy.ndarray, shape (K,)
    k_ : int
        Neighbours per label actually used.
    floor_ : float
        Added to both distances of the score (``KNN_DISTANCE_FLOOR`` times the
        median distance from a reference row to its nearest other row, among
        a seeded sample of ``POPULATION_ROWS`` of them when there are more).
    calibration_scores_ : numpy.ndarray, shape (n_trusted,)
        Without ``pool_batch`` (with it, the trusted rows are scored against
        each batch's pool in ``findings``), and after ``self_findings``.
    self_referential_ : bool
    feature_names_in_, n_features_in_
    """

    name = "label.knn"
    # With pool_batch (the default) the batch rows are neighbours too.
    tags = DetectorTags(needs_labels=True, uses_batch=True)
    # Neighbours are found per label, compared as text.
    _labels_as_text = True

    def __init__(self, alpha=0.01, n_neighbors=5, random_state=0, pool_batch=True, confidence=None):
        self.alpha = alpha
        self.n_neighbors = n_neighbors
        self.random_state = random_state
        self.pool_batch = pool_batch
        self.confidence = confidence

    def fit(self, X, y=None):
        """Keep the trusted rows and score each against the others.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,)

        Returns
        -------
        self
        """
        matrix, labels, _ = self._store_reference(X, y)
        self._prepare(matrix, labels)
        check_calibration(len(matrix), self.alpha, self.name, conformal=False)
        if not self.pool_batch:
            # Pooled, the trusted rows are scored against each batch's pool
            # instead: a search of every trusted row among all the others
            # would cost the square of the reference (200,000 rows: most of 92 s).
            margins = self._margins(matrix, self.reference_labels_, exclude_self=True)
            self.calibration_scores_ = self._margin(margins, self.reference_labels_)[0]
        return self

    def score(self, X, y=None) -> np.ndarray:
        """``log(d_own) - log(d_nearest_other)`` per row, shape (n_rows,); inf for unseen labels."""
        matrix, labels, _ = self._validate_fitted(X, y)
        return self._margin(self._margins(matrix, labels, exclude_self=False), labels)[0]

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge batch labels by their nearest trusted neighbours.

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        matrix, labels, ids = self._validate_fitted(X, y, row_ids)
        if not self.pool_batch:
            margins = self._margins(matrix, labels, exclude_self=False)
            return self._judge(labels, margins, ids, "trusted rows", self.calibration_scores_)
        # Rows of a label the trusted rows lack are flagged anyway; they are
        # nobody's neighbours. Of a large batch and of a reference larger than
        # its sample, a sample per label is: a million batch rows are searched
        # among 4,000 rows, not 7,000. With few labels the search is shared
        # with ``duplicates.flood`` (``detectors._pooled_neighbours``).
        usable = isin_values(labels, self.classes_)
        if shares_search(len(self.classes_)):
            pooled = pooled_neighbours(
                self.reference_, self.reference_labels_, matrix, labels, self.k_, self.random_state
            )
            scored = pooled.scored_trusted
            trusted_codes = self._codes(self.reference_labels_[scored])
            trusted_margins = margins_from_means(pooled.trusted.label_means, trusted_codes)
            margins = margins_from_means(pooled.batch.label_means, self._codes(labels))
        else:
            trusted_margins, margins, scored = self._own_search(matrix, labels, usable)
        calibration = self._margin(trusted_margins, self.reference_labels_[scored])[0]
        return self._judge(labels, margins, ids, "trusted and batch rows", calibration)

    def _own_search(self, matrix, labels, usable):
        """Margins of scored trusted and of batch rows among the pooled rows (``detectors._class_neighbours``).

        The samples are ``pooled_samples``' (the batch's usable rows of it),
        the scored trusted rows ``calibration_rows``'; returns the trusted
        rows' margins, the batch rows', and which trusted rows were scored.
        """
        in_batch, in_space = pooled_samples(
            len(matrix), labels, len(self.reference_), self.reference_labels_, self.random_state, matrix.shape[1]
        )
        scored = calibration_rows(in_space, self.random_state, self.reference_labels_)
        pooled_rows = usable & in_batch
        trusted, trusted_labels = self.reference_, self.reference_labels_
        space = np.vstack([trusted[in_space], matrix[pooled_rows]])
        space_codes = self._codes(np.concatenate([trusted_labels[in_space], labels[pooled_rows]]))
        n_classes = len(self.classes_)
        pooled = class_margins(space, space_codes, space, space_codes, n_classes, self.k_, exclude_self=True)
        n_space_trusted = int(in_space.sum())
        # The sample's rows are among the scored ones, in the same order.
        in_space_scored = in_space[scored]
        unpooled_scored = scored & ~in_space
        trusted_margins = ClassMargins.unknown(len(in_space_scored)).with_rows(
            in_space_scored, pooled.rows(slice(0, n_space_trusted))
        ).with_rows(~in_space_scored, class_margins(
            space, space_codes, trusted[unpooled_scored], self._codes(trusted_labels[unpooled_scored]), n_classes,
            self.k_, exclude_self=False,
        ))
        # The pooled rows without themselves, every other row against the space.
        outside = ~pooled_rows
        margins = ClassMargins.unknown(len(matrix)).with_rows(
            pooled_rows, pooled.rows(slice(n_space_trusted, None))
        ).with_rows(outside, class_margins(
            space, space_codes, matrix, self._codes(labels), n_classes, self.k_, exclude_self=False, rows=outside,
        ))
        return trusted_margins, margins, scored

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge batch labels by their nearest other batch rows (no trusted reference).

        The batch becomes the fitted reference, usable for later batches.
        """
        matrix, labels, ids = self._validate_reference(X, y, row_ids, self_referential=True)
        self.encoder_ = LabelEncoder().fit(labels)
        self.classes_ = self.encoder_.classes_
        # Neighbours of a large batch are searched in a sample of it (``detectors._sampling``).
        in_population = population_mask(
            len(matrix), self.random_state, labels, max_rows=neighbour_population_rows(*matrix.shape)
        )
        self._prepare(matrix[in_population], labels[in_population])
        outside = ~in_population
        margins = ClassMargins.unknown(len(matrix)).with_rows(
            in_population, self._margins(self.reference_, self.reference_labels_, exclude_self=True)
        ).with_rows(outside, self._margins(matrix, labels, exclude_self=False, rows=outside))
        self.calibration_scores_ = self._margin(margins, labels)[0]
        return self._judge(labels, margins, ids, "other rows of the batch", self.calibration_scores_,
                           guard=lambda rows: self._neighbour_label_p_values(matrix, labels, in_population, rows))

    def _prepare(self, matrix, labels) -> None:
        if not isinstance(self.n_neighbors, (int, np.integer)) or self.n_neighbors < 1:
            raise DetectorError(f"{self.name}: n_neighbors must be a positive integer, got {self.n_neighbors!r}")
        values, counts = unique_values(labels, return_counts=True)
        if values.size < 2:
            raise NotEnoughData(f"{self.name}: need at least two labels, got {values.size}")
        # Leave-one-out needs one more row than neighbours in the smallest label.
        self.k_ = int(max(1, min(self.n_neighbors, counts.min() - 1)))
        self.reference_ = matrix
        self.reference_labels_ = labels
        # The data's spacing, measured among at most POPULATION_ROWS of its
        # rows (per label, seeded), the most any pooled search holds of them.
        spaced = population_mask(len(matrix), self.random_state, labels)
        nearest = nearest_other_row(matrix[spaced])
        positive = nearest[np.isfinite(nearest) & (nearest > 0)]
        self.floor_ = KNN_DISTANCE_FLOOR * (float(np.median(positive)) if positive.size else 1.0)

    def _neighbour_label_p_values(self, matrix, labels, in_population, rows) -> np.ndarray:
        """``neighbour_label_p_values`` of ``rows`` among the population (``reference_``)."""
        return neighbour_label_p_values(
            self.reference_, self._codes(self.reference_labels_), len(self.classes_), matrix, self._codes(labels),
            in_population, rows, random_state=self.random_state,
        )

    def _codes(self, labels) -> np.ndarray:
        """Each label's position in ``classes_``, -1 for a label not among them."""
        known = isin_values(labels, self.classes_)
        codes = np.full(len(labels), -1, dtype=np.intp)
        codes[known] = self.encoder_.transform(labels[known])
        return codes

    def _margins(self, matrix, labels, *, exclude_self: bool, rows=None) -> ClassMargins:
        """Margins of ``matrix``'s rows (``rows`` of them) among the fitted reference's."""
        return class_margins(
            self.reference_, self._codes(self.reference_labels_), matrix, self._codes(labels), len(self.classes_),
            self.k_, exclude_self=exclude_self, rows=rows,
        )

    def _margin(self, margins: ClassMargins, labels):
        """Scores, which rows have a known label, and the label believed."""
        known = isin_values(labels, self.classes_)
        own, nearest_other = margins.own, margins.other
        # A label with no other rows and no nearest other label leaves inf - inf:
        # NaN, judged below like an unseen label. Say nothing about it here.
        with np.errstate(invalid="ignore"):
            scores = np.log(own + self.floor_) - np.log(nearest_other + self.floor_)
        scores = np.where(known, scores, np.inf)
        return scores, known, margins.believed, own, nearest_other

    def _judge(self, labels, margins: ClassMargins, ids, population: str, calibration, guard=None) -> pd.DataFrame:
        scores, known, believed, own, other = self._margin(margins, labels)
        finite = np.where(np.isfinite(scores), scores, np.finfo(float).max)
        usable = np.isfinite(calibration)
        if self.self_referential_:
            # Label by label on each label's robust bulk, as the classifier
            # label detectors do without a reference: random flips are not
            # spread evenly (7 of 10 in one label of 65 rows), and the 75th-90th
            # percentile tail of ``single_fold_p_values`` then runs through them.
            p_values, extrapolated = label_conditional_p_values(
                lambda same, rows: bulk_calibrated_p_values(
                    calibration[same & usable], finite[rows], contamination=label_contamination(same)),
                labels, labels, min_rows=SELF_MONDRIAN_MIN_ROWS,
            )
            # The batch's own labels are all the evidence here: a row whose
            # own label's nearest rows are at least as near as any other
            # label's has none against it, however its label's other rows
            # score. Where most of a label's rows sit on exact copies (a
            # score tied far below 0), a row with fewer copies scored above
            # that bulk: every one of the 191 rows Stat2Data's Whickham2 lost
            # to label.knn (14.5 % of a clean batch) agreed with its neighbours.
            agrees = scores <= 0
            p_values = np.where(agrees, 1.0, p_values)
            extrapolated &= ~agrees
            # Each p-value rests on its own assumption (a light tail beyond each
            # label's bulk; calibrated neighbour shares): the larger is valid if
            # either holds (see GUARDED_P_VALUE).
            guarded = np.flatnonzero(p_values <= GUARDED_P_VALUE)
            if guard is not None and guarded.size:
                shared = guard(guarded)
                extrapolated[guarded] &= p_values[guarded] >= shared
                p_values[guarded] = np.maximum(p_values[guarded], shared)
        else:
            # With the batch's guard on the extrapolated tail: a trusted row's
            # score is a batch row's (same pool, itself left out), so the batch's
            # own 75th-90th percentile tail is a second, larger sample of it. On
            # fishing (118 trusted rows) one reference's tail alone flagged 4.2 %
            # of a clean batch's rows; guarded, 1.0 %. (The classifier label
            # detectors go without: there the batch's tail is far heavier than
            # the trusted rows', see ``detectors.label_flips``.)
            p_values, extrapolated = single_fold_p_values(
                calibration[usable], finite, self_referential=False, confidence=self.confidence,
            )

        def describe(rows):
            sentences = []
            for row in rows:
                other_label = self.classes_[believed[row]]
                if scores[row] > 0:
                    sentences.append(
                        f"label {_quoted(labels[row])} is farther from its {self.k_} nearest {population} labelled "
                        f"{_quoted(labels[row])} (mean distance {own[row]:.2g}) than from those labelled "
                        f"{_quoted(other_label)} ({other[row]:.2g}): its neighbours say {_quoted(other_label)}"
                    )
                else:
                    sentences.append(
                        f"label {_quoted(labels[row])} agrees with its {self.k_} nearest {population} (mean "
                        f"distance {own[row]:.2g}; nearest other label {_quoted(other_label)} at {other[row]:.2g})"
                    )
            return sentences

        if self.self_referential_:
            # Every label is the batch's own here (all known).
            explained = self._explained(p_values) & known
            p_texts = self._p_value_texts(p_values, extrapolated, explained)
            reasons = np.full(len(labels), NOT_EXPLAINED, dtype=object)
            rows = np.flatnonzero(explained)
            for row, sentence in zip(rows, describe(rows)):
                reasons[row] = f"{sentence}; {p_texts[row]}"
            return self._judged(scores, p_values, reasons, ids)
        return self._trusted_findings(labels, known, scores, p_values, extrapolated, describe, ids)
