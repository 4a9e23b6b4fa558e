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
    class_neighbour_distances,
    label_conditional_p_values,
    label_contamination,
    single_fold_p_values,
)
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
    robust bulk, as the classifier label detectors do (``detectors.label_flips``).

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

    def __init__(self, alpha=0.01, n_neighbors=5, random_state=0, pool_batch=True):
        self.alpha = alpha
        self.n_neighbors = n_neighbors
        self.random_state = random_state
        self.pool_batch = pool_batch

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
            distances = self._distances(matrix, exclude_self=True)
            self.calibration_scores_ = self._margin(distances, self.reference_labels_)[0]
        return self

    def score(self, X, y=None) -> np.ndarray:
        """``log(d_own) - log(d_nearest_other)`` per row, shape (n_rows,); inf for unseen labels."""
        matrix, labels, _ = self._validate_fitted(X, y)
        return self._margin(self._distances(matrix, exclude_self=False), labels)[0]

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge batch labels by their nearest trusted neighbours.

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        matrix, labels, ids = self._validate_fitted(X, y, row_ids)
        if not self.pool_batch:
            distances = self._distances(matrix, exclude_self=False)
            return self._judge(labels, distances, ids, "trusted rows", self.calibration_scores_)
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
            trusted_distances, distances = pooled.trusted.label_means, pooled.batch.label_means.copy()
            scored = pooled.scored_trusted
        else:
            trusted_distances, distances, scored = self._own_search(matrix, labels, usable)
        calibration = self._margin(trusted_distances, self.reference_labels_[scored])[0]
        distances[~usable] = np.inf
        return self._judge(labels, distances, ids, "trusted and batch rows", calibration)

    def _own_search(self, matrix, labels, usable):
        """Distances of scored trusted and of batch rows to each label's pooled rows, searched label by label.

        The samples are ``pooled_samples``' (the batch's usable rows of it),
        the scored trusted rows ``calibration_rows``'; returns the trusted
        rows' distances, the batch rows', and which trusted rows were scored.
        """
        in_batch, in_space = pooled_samples(
            len(matrix), labels, len(self.reference_), self.reference_labels_, self.random_state, matrix.shape[1]
        )
        scored = calibration_rows(in_space, self.random_state, self.reference_labels_)
        pooled_rows = usable & in_batch
        trusted, trusted_labels = self.reference_, self.reference_labels_
        space = np.vstack([trusted[in_space], matrix[pooled_rows]])
        space_labels = np.concatenate([trusted_labels[in_space], labels[pooled_rows]])
        pooled = class_neighbour_distances(space, space_labels, space, self.classes_, self.k_, exclude_self=True)
        n_space_trusted = int(in_space.sum())
        # The sample's rows are among the scored ones, in the same order.
        in_space_scored = in_space[scored]
        trusted_distances = np.empty((len(in_space_scored), len(self.classes_)))
        trusted_distances[in_space_scored] = pooled[:n_space_trusted]
        trusted_distances[~in_space_scored] = class_neighbour_distances(
            space, space_labels, trusted[scored & ~in_space], self.classes_, self.k_, exclude_self=False
        )
        # Every row against the space, then the pooled rows without
        # themselves: cheaper than copying the million rows outside the pool.
        distances = class_neighbour_distances(space, space_labels, matrix, self.classes_, self.k_, exclude_self=False)
        distances[pooled_rows] = pooled[n_space_trusted:]
        return trusted_distances, distances, scored

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
        distances = self._distances(matrix, exclude_self=False)
        distances[in_population] = self._distances(self.reference_, exclude_self=True)
        self.calibration_scores_ = self._margin(distances, labels)[0]
        return self._judge(labels, distances, ids, "other rows of the batch", self.calibration_scores_)

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
        nearest = class_neighbour_distances(
            matrix[spaced], labels[spaced], matrix[spaced], values, 1, exclude_self=True
        ).min(axis=1)
        positive = nearest[np.isfinite(nearest) & (nearest > 0)]
        self.floor_ = KNN_DISTANCE_FLOOR * (float(np.median(positive)) if positive.size else 1.0)

    def _distances(self, matrix, *, exclude_self: bool) -> np.ndarray:
        return class_neighbour_distances(
            self.reference_, self.reference_labels_, matrix, self.classes_, self.k_, exclude_self=exclude_self
        )

    def _margin(self, distances, labels):
        """Scores, which rows have a known label, and the label believed."""
        known = isin_values(labels, self.classes_)
        codes = np.zeros(len(labels), dtype=int)
        codes[known] = self.encoder_.transform(labels[known])
        rows = np.arange(len(labels))
        own = distances[rows, codes]
        others = distances.copy()
        others[rows, codes] = np.inf
        believed = others.argmin(axis=1)
        nearest_other = others[rows, believed]
        # A label with no other rows and no nearest other label leaves inf - inf:
        # NaN, judged below like an unseen label. Say nothing about it here.
        with np.errstate(invalid="ignore"):
            scores = np.log(own + self.floor_) - np.log(nearest_other + self.floor_)
        scores = np.where(known, scores, np.inf)
        return scores, known, codes, believed, own, nearest_other

    def _judge(self, labels, distances, ids, population: str, calibration) -> pd.DataFrame:
        scores, known, codes, believed, own, other = self._margin(distances, labels)
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
        else:
            # With the batch's guard on the extrapolated tail: a trusted row's
            # score is a batch row's (same pool, itself left out), so the batch's
            # own 75th-90th percentile tail is a second, larger sample of it. On
            # fishing (118 trusted rows) one reference's tail alone flagged 4.2 %
            # of a clean batch's rows; guarded, 1.0 %. (The classifier label
            # detectors go without: there the batch's tail is far heavier than
            # the trusted rows', see ``detectors.label_flips``.)
            p_values, extrapolated = single_fold_p_values(calibration[usable], finite, self_referential=False)

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
