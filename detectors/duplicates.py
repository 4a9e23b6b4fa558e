"""Duplicate and flood detector: density spikes in a batch that trusted data lacks.

A near-duplicate flood (many near-copies of a few rows, usually with one
label) teaches a model its label by sheer weight, and cross-validation learns
it too, so label checks miss it. What gives it away is density: each copy has
several batch rows almost on top of it.

``duplicates.flood`` (:class:`DuplicateFloodDetector`) scores a batch row by
how much closer its ``n_neighbors``-th nearest batch row is than trusted data
would put it:

* with a trusted reference, ``score = log(r_T) - log(r_B)``, where ``r_B`` is
  the distance to the ``n_neighbors``-th nearest *other batch row* and
  ``r_T`` that to the ``n_neighbors``-th nearest *trusted row*. A trusted row
  is scored the same way (its batch neighbours, and trusted neighbours other
  than itself), so on a clean batch trusted and batch rows are exchangeable
  and the trusted scores calibrate the batch's (``single_fold_p_values``);
* without one, ``score = log(r_K) - log(r_B)`` with ``r_K`` the distance to
  the ``K``-th nearest batch row, ``K`` a tenth of the batch (10 to 200 rows,
  or ``context_neighbors``): a spike is a row whose few nearest neighbours
  are much closer than its wider neighbourhood implies. ``K`` must exceed a
  flood's clumps, or the wider neighbourhood is the clump itself. Calibrated
  against the batch's own robust bulk. A second score takes the 30th
  nearest batch row for ``r_K`` (``LOCAL_CONTEXT``), for clumps too small to
  stand out at a tenth of the batch; each is calibrated so, and the row's
  p-value is twice the smaller (Bonferroni), its score ``-log10`` of that.
  ``r_K`` is the distance below which a share ``K / n_population`` of the
  population lies, and a seeded sample of the population estimates that
  share as well as the whole does: past ``CONTEXT_SAMPLE_NEIGHBORS`` it is
  searched among such a sample, at the same share
  (``context_kth_distances``).
  A row whose spike rests on exact copies (its ``n_neighbors``-th nearest
  batch row is a copy) also needs more copies than the batch's columns
  explain, independent or along a tree of their pairwise dependence
  (``detectors._copies.natural_copies_p_values``): tables of a few discrete
  columns repeat rows by the hundred.

Exact duplicates have ``r_B = 0`` (floored at a tiny distance). The reason of
a flagged row counts its near-identical batch rows, says whether it has exact
copies, and names their labels, calling out conflicting labels.

Scores depend on the batch (that is the point), so ``score(X)`` treats ``X``
as the batch; a streaming caller should score whole batches, not chunks. A
large batch's neighbours are searched in a seeded sample of it, per label
when there are labels (``detectors._sampling``): densities are then those
of the sample, for batch and trusted rows alike, and a clump is counted in
the sample. A trusted reference larger than that sample is sampled to its
size too. With a reference and a few labels, the search is the one
``label.knn`` makes over the same samples (``detectors._pooled_neighbours``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors._copies import natural_copies_p_values, value_groups
from poisonguard.detectors._crossfit import check_calibration, single_fold_p_values
from poisonguard.detectors._pooled_neighbours import pooled_neighbours, shares_search
from poisonguard.detectors._row_blocks import row_blocks
from poisonguard.detectors._sampling import calibration_rows, neighbour_population_rows, population_mask
from poisonguard.detectors._unique import unique_values
from poisonguard.detectors.base import NOT_EXPLAINED, Detector, DetectorError, DetectorTags
from poisonguard.detectors.errors import NotEnoughData
from poisonguard.detectors.registry import register

# Distances are floored at this share of the median nearest-neighbour
# distance, so exact duplicates get a large but finite score.
DISTANCE_FLOOR = 1e-3
MAX_LISTED_LABELS = 3
# Flagged rows whose clusters are measured at once (a block's distances to a
# population of 20,000 rows are 160 MB).
CLUSTER_BLOCK_ROWS = 1_024
# Without a reference, the wider neighbourhood: a tenth of the batch, 10 to 200 rows.
CONTEXT_SHARE, MIN_CONTEXT, MAX_CONTEXT = 0.1, 10, 200
# The wider neighbourhood is measured as the CONTEXT_SAMPLE_NEIGHBORS-th
# neighbour among a sample of the population at least that rank of it holds.
# Keeping the 200 nearest of 2,000 rows for each of a million rows cost 21 s
# (most candidates enter the heap); the 50th of 500 costs 4 s. Log-distance
# noise of a k-th neighbour shrinks as 1/sqrt(k) and is divided by the data's
# dimension: at 50 it is still smaller than that of the near distance (k = 5).
CONTEXT_SAMPLE_NEIGHBORS = 50
# Without a reference, a second, nearer wider neighbourhood. A clump bigger
# than the context is the context itself, so the context must be wide; but
# at a tenth of the batch, natural density varies so much between the two
# radii that a clump of 15 near-copies (a 5 % flood of three rows in 1,000)
# scored no higher than the batch's own tail (fishing: p = 0.02-0.04, no
# copy caught). The 30th neighbour catches such clumps; each scale is
# calibrated on the batch and the row keeps the smaller p-value, doubled.
# Chosen on the tuning half from 20, 30 and 50 (``detection_real.py``, no
# reference: flood recall 0.60 -> 0.81 for seed 0, 0.72 -> 0.65 for seed 1,
# where doubling loses some of default's floods; clean rows flagged
# 1.8 -> 1.6 % for both); on the held-out half floods were all caught before.
LOCAL_CONTEXT = 30


def kth_distances(space: np.ndarray, queries: np.ndarray, k, *, exclude_self: bool) -> np.ndarray:
    """Distance of each query to its ``k``-th nearest row of ``space``.

    Parameters
    ----------
    space : numpy.ndarray, shape (n_space, n_features)
    queries : numpy.ndarray, shape (n_queries, n_features)
    k : int or tuple of int
        1 = nearest; a tuple: each of these ranks, from one search.
    exclude_self : bool
        ``queries`` are ``space`` itself: skip each row's own zero distance.

    Returns
    -------
    numpy.ndarray of float, shape (n_queries,), or (n_queries, len(k)) for a tuple
    """
    ranks = np.atleast_1d(np.asarray(k, dtype=int))
    wanted = int(ranks.max()) + 1 if exclude_self else int(ranks.max())
    if len(space) < wanted:
        raise NotEnoughData(f"need at least {wanted} rows to find {ranks.max()} nearest neighbours, got {len(space)}")
    # Sorted distances include the row's own 0 once, so column k is the
    # k-th other row even when exact duplicates tie with it.
    columns = ranks if exclude_self else ranks - 1
    kth = np.empty((len(queries), len(ranks)))
    if len(queries):
        index = NearestNeighbors(n_neighbors=wanted).fit(space)
        for block in row_blocks(len(queries)):
            kth[block] = index.kneighbors(queries[block], return_distance=True)[0][:, columns]
    return kth if isinstance(k, tuple) else kth[:, 0]


def population_kth_distances(population, in_population, matrix, k) -> np.ndarray:
    """Distance of each batch row to its ``k``-th nearest other row of the batch's population.

    Parameters
    ----------
    population : numpy.ndarray, shape (n_population, n_features)
        ``matrix[in_population]`` (``detectors._sampling``).
    in_population : numpy.ndarray of bool, shape (n_rows,)
    matrix : numpy.ndarray, shape (n_rows, n_features)
    k : int or tuple of int
        As ``kth_distances``.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,) or (n_rows, len(k))
    """
    # Every row against the population, then the population's own rows
    # again without themselves: the few thousand extra queries cost less than
    # copying the million rows outside it.
    distances = kth_distances(population, matrix, k, exclude_self=False)
    distances[in_population] = kth_distances(population, population, k, exclude_self=True)
    return distances


def context_kth_distances(population, in_population, matrix, k: int, random_state) -> np.ndarray:
    """The wider neighbourhood's radius: the ``k``-th nearest other row of the population, or its estimate.

    Past ``CONTEXT_SAMPLE_NEIGHBORS``, the ``CONTEXT_SAMPLE_NEIGHBORS``-th
    nearest other row of a seeded sample of the population holding
    ``CONTEXT_SAMPLE_NEIGHBORS / k`` of it: the same share of the population
    within the radius.

    Parameters
    ----------
    population, in_population, matrix, k
        As ``population_kth_distances``.
    random_state : int or None
        Seeds the sample.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,)
    """
    if k <= CONTEXT_SAMPLE_NEIGHBORS:
        return population_kth_distances(population, in_population, matrix, k)
    # At least one row more than the rank searched (a sample row leaves itself out).
    share = max(round(len(population) * CONTEXT_SAMPLE_NEIGHBORS / k), CONTEXT_SAMPLE_NEIGHBORS + 1)
    in_sample = population_mask(len(population), random_state, max_rows=share)
    in_context = np.zeros(len(matrix), dtype=bool)
    in_context[np.flatnonzero(in_population)[in_sample]] = True
    return population_kth_distances(population[in_sample], in_context, matrix, CONTEXT_SAMPLE_NEIGHBORS)


@register
class DuplicateFloodDetector(Detector):
    """Flag near-duplicate floods and exact duplicates; registered as ``duplicates.flood``.

    Parameters
    ----------
    alpha : float
        Flag a row when its p-value is at most ``alpha``.
    n_neighbors : int
        Which nearest batch neighbour measures density: 5, so a row needs
        five near-copies to be dense. Real tables hold small groups of exact
        duplicates (repeated records, coarse coded columns); with 2, every
        natural triplicate scored above any near-copy (its distance is 0)
        and 2-4 % of clean rows of such tables were flagged, while a flood
        is many copies of a few rows.
    context_neighbors : int or None
        Without a reference, the wider neighbourhood the spike is compared
        with; None: a tenth of the batch, at least 10 and at most 200 rows.
    random_state : int or None
        Seeds the sample of a large batch whose neighbours are searched
        (``detectors._sampling``).
    confidence : float or None
        Hold ``alpha`` for the reference at hand, not on average (see
        :class:`~poisonguard.detectors.base.Detector`).

    Attributes
    ----------
    reference_ : numpy.ndarray, shape (n_trusted, n_features)
    reference_labels_ : numpy.ndarray or None, shape (n_trusted,)
    feature_names_in_ : numpy.ndarray of str, shape (n_features,)
    n_features_in_ : int
    self_referential_ : bool
    calibration_scores_ : numpy.ndarray
        Scores of the trusted rows against the last batch scored (or of the
        batch itself without a reference).
    """

    name = "duplicates.flood"
    # Labels are optional (named in reasons); density is measured among the batch rows.
    tags = DetectorTags(needs_labels=False, uses_batch=True)
    _fitted_attribute = "reference_"

    def __init__(self, alpha=0.01, n_neighbors=5, context_neighbors=None, random_state=0, confidence=None):
        self.alpha = alpha
        self.n_neighbors = n_neighbors
        self.context_neighbors = context_neighbors
        self.random_state = random_state
        self.confidence = confidence

    def fit(self, X, y=None):
        """Keep the trusted rows; calibration happens against each batch.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,), optional (only named in reasons)

        Returns
        -------
        self
        """
        self._check_params()
        matrix, labels, _ = self._validate_reference(X, y)
        if len(matrix) < self.n_neighbors + 1:
            raise NotEnoughData(f"{self.name}: need at least {self.n_neighbors + 1} trusted rows, got {len(matrix)}")
        check_calibration(len(matrix), self.alpha, self.name, conformal=False)
        self.reference_labels_ = labels
        self.reference_ = matrix
        return self

    def score(self, X, y=None) -> np.ndarray:
        """Density-spike score of each row of the batch ``X``, shape (n_rows,)."""
        matrix, labels, _ = self._validate_fitted(X, y)
        return self._trusted_scores(matrix, labels)[0]

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge the batch ``X`` against the trusted rows.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,), optional
            Labels, named in reasons (conflicting labels).
        row_ids : array-like of str, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        matrix, labels, ids = self._validate_fitted(X, y, row_ids)
        scores, calibration = self._trusted_scores(matrix, labels)
        self.calibration_scores_ = calibration
        p_values, extrapolated = single_fold_p_values(calibration, scores, self_referential=False,
                                                      confidence=self.confidence)
        return self._findings(matrix, labels, scores, p_values, extrapolated, ids)

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge a batch against its own density when there is no trusted reference.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_rows, n_features)
        y : array-like, shape (n_rows,), optional
        row_ids : array-like of str, shape (n_rows,), optional

        Returns
        -------
        pandas.DataFrame with ``FINDING_COLUMNS``, one row per input row.
        """
        self._check_params()
        matrix, labels, ids = self._validate_reference(X, y, row_ids, self_referential=True)
        in_population = self._population(matrix, labels)
        population = matrix[in_population]
        context = self.context_neighbors
        if context is None:
            context = int(np.clip(round(CONTEXT_SHARE * len(population)), MIN_CONTEXT, MAX_CONTEXT))
        context = min(context, len(population) - 1)
        if context <= self.n_neighbors:
            raise NotEnoughData(
                f"{self.name}: need more than {self.n_neighbors + 1} batch rows without a trusted reference, "
                f"got {len(matrix)}"
            )
        self.reference_labels_ = None
        self.reference_ = matrix
        ranks = (self.n_neighbors, LOCAL_CONTEXT) if self.n_neighbors < LOCAL_CONTEXT < context else (self.n_neighbors,)
        nearby = population_kth_distances(population, in_population, matrix, ranks)
        near = nearby[:, 0]
        contexts = [context_kth_distances(population, in_population, matrix, context, self.random_state)]
        contexts += [nearby[:, 1]] if len(ranks) > 1 else []
        floor = self._floor(contexts[0])
        spikes = [np.log(wide + floor) - np.log(near + floor) for wide in contexts]
        per_scale = [single_fold_p_values(spike, spike, self_referential=True) for spike in spikes]
        if len(per_scale) == 1:
            scores, (p_values, extrapolated) = spikes[0], per_scale[0]
        else:
            # Bonferroni over the two scales; the score is the evidence of the stronger one.
            p_matrix = np.column_stack([p for p, _ in per_scale])
            stronger = np.argmin(p_matrix, axis=1)
            rows = np.arange(len(matrix))
            p_values = np.minimum(1.0, len(per_scale) * p_matrix[rows, stronger])
            extrapolated = np.column_stack([e for _, e in per_scale])[rows, stronger]
            # A tail p-value can underflow to 0 for the tightest clumps: keep the score finite.
            scores = -np.log10(np.maximum(p_values, np.finfo(float).tiny))
        # A flood's rows have batch rows almost on top of them. A row whose
        # nearest rows are farther than most rows' is one of a small group set
        # apart (rare values of a few columns), not a copy: its wider
        # neighbourhood is far, its near one is not near. Its evidence does not
        # count; with a reference the trusted rows' own groups calibrate it.
        # At the median itself a row's nearest rows are no nearer than most
        # rows': on a lattice of discrete values (tournament years by seeds)
        # half the rows tie there, and the edge years, whose wider
        # neighbourhood is one-sided, stood out from a bulk without spread
        # (Stat2Data's FinalFourLong17: 144 of 2,496 rows at p = 1e-307).
        # Unless the median is a copy's 0, where floods of copies sit too.
        # Tied within rounding: one lattice step came out 0.05 +- 7e-17.
        typical = np.median(near[in_population])
        set_apart = (near > typical) | (np.isclose(near, typical, rtol=1e-9, atol=0.0) & (typical > floor))
        p_values = np.where(set_apart, 1.0, p_values)
        # A row with n_neighbors exact copies has a spike that rests on them
        # alone. Where its columns explain that many copies
        # (``_copies.natural_copies_p_values``), they are no flood: a
        # two-valued feature alone gives every row hundreds, and the 143
        # rows of openintro's drone_blades that failed inspection (7 %) were
        # flagged, their wider neighbourhood being the other value; related
        # survey answers repeat together (sem's CNES, 7 %).
        exact = near <= floor  # within rounding of a copy; counted exactly below
        if exact.any():
            exact &= self._copies_in_population(matrix, in_population) >= self.n_neighbors
        if exact.any():
            explained = natural_copies_p_values(matrix, self.feature_names_in_, self.random_state)
            p_values = np.where(exact, np.maximum(p_values, explained), p_values)
        self.calibration_scores_ = scores
        return self._findings(matrix, labels, scores, p_values, extrapolated, ids)

    @staticmethod
    def _copies_in_population(matrix, in_population) -> np.ndarray:
        """How many other rows of the population hold each row's exact values.

        Counted on the values, not read off the neighbour distances: a brute
        search computes ``|x|^2 - 2 x.y + |y|^2``, and scikit-learn (1.9.1)
        gives an exact copy a distance of 3e-8 now and then, not 0.
        """
        group, _ = value_groups(matrix)
        in_population_copies = np.bincount(group[in_population], minlength=int(group.max(initial=-1)) + 1)
        return in_population_copies[group] - in_population.astype(int)

    def _check_params(self) -> None:
        for name in ("n_neighbors", "context_neighbors"):
            value = getattr(self, name)
            if name == "context_neighbors" and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise DetectorError(f"{self.name}: {name} must be a positive integer, got {value!r}")

    def _floor(self, distances: np.ndarray) -> float:
        positive = distances[distances > 0]
        return DISTANCE_FLOOR * (float(np.median(positive)) if positive.size else 1.0)

    def _population(self, matrix: np.ndarray, labels) -> np.ndarray:
        """The batch rows whose neighbours are searched: all, or a seeded sample (``detectors._sampling``).

        Per label, as ``label.knn`` samples, so that with a reference the two
        detectors share one search (``detectors._pooled_neighbours``); without
        labels, or when the trusted rows were given none (their sample could
        not be taken per label too), a plain sample.
        """
        if not self.self_referential_ and self.reference_labels_ is None:
            labels = None
        return population_mask(len(matrix), self.random_state, labels,
                               max_rows=neighbour_population_rows(*matrix.shape))

    def _trusted_scores(self, matrix: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
        """Scores of batch rows and of trusted rows, both against this batch (its population)."""
        k = self.n_neighbors
        if len(matrix) < k + 1:
            raise NotEnoughData(f"{self.name}: need at least {k + 1} batch rows, got {len(matrix)}")
        reference = self.reference_
        # A reference larger than the batch's population is sampled to its
        # size: both densities are measured among equally many rows, and a
        # million batch rows are searched among 2,000 trusted rows, not 5,000.
        trusted_labels = self.reference_labels_ if labels is not None else None
        if trusted_labels is not None and shares_search(len(unique_values(trusted_labels))):
            pooled = pooled_neighbours(reference, trusted_labels, matrix, labels, k, self.random_state)
            # r_B and r_T of batch rows and of the scored trusted rows (neither counts itself).
            batch_to_batch, batch_to_trusted = pooled.batch.batch_kth, pooled.batch.trusted_kth
            trusted_to_batch, trusted_to_trusted = pooled.trusted.batch_kth, pooled.trusted.trusted_kth
        else:
            in_population = self._population(matrix, labels)
            population = matrix[in_population]
            in_trusted = population_mask(
                len(reference), self.random_state, trusted_labels, max_rows=neighbour_population_rows(*matrix.shape)
            )
            trusted_space = reference[in_trusted]
            scored = calibration_rows(in_trusted, self.random_state, trusted_labels)
            batch_to_batch = population_kth_distances(population, in_population, matrix, k)
            batch_to_trusted = kth_distances(trusted_space, matrix, k, exclude_self=False)
            trusted_to_batch = kth_distances(population, reference[scored], k, exclude_self=False)
            trusted_to_trusted = population_kth_distances(trusted_space, in_trusted[scored], reference[scored], k)
        floor = self._floor(np.concatenate([trusted_to_trusted, batch_to_trusted]))
        scores = np.log(batch_to_trusted + floor) - np.log(batch_to_batch + floor)
        calibration = np.log(trusted_to_trusted + floor) - np.log(trusted_to_batch + floor)
        return scores, calibration

    def _findings(self, matrix, labels, scores, p_values, extrapolated, row_ids) -> pd.DataFrame:
        described = self._described(p_values)
        population_name = "the rest of the batch" if self.self_referential_ else "trusted rows"
        explained = self._explained(p_values)
        p_texts = self._p_value_texts(p_values, extrapolated, explained)
        reasons = np.full(len(p_values), NOT_EXPLAINED, dtype=object)
        for row in np.flatnonzero(explained):
            reasons[row] = f"batch density here is as expected from {population_name} ({p_texts[row]})"
        rows = np.flatnonzero(described)
        if rows.size:
            in_population = self._population(matrix, labels)
            members_of = np.flatnonzero(in_population)
            population = matrix[in_population]
            sampled = len(population) < len(matrix)
            # Each member's label as a code into the sorted label names, once:
            # counted per flagged row, not sorted per row (10,000 rows a large batch).
            member_labels = unique_values(labels[in_population], return_inverse=True) if labels is not None else None
            # The k-th other population row (a member of the population has its own 0 first).
            near = kth_distances(population, matrix[rows], self.n_neighbors + 1, exclude_self=False)
            alone = ~in_population[rows]
            if alone.any():
                near[alone] = kth_distances(population, matrix[rows[alone]], self.n_neighbors, exclude_self=False)
            # The row's cluster: population rows within twice the distance of
            # its k-th neighbour (the row itself left out). Distances of a block
            # of flagged rows at once: a search per row cost 3 s for the 10,000
            # rows a million-row batch flags.
            for block in row_blocks(len(rows), CLUSTER_BLOCK_ROWS):
                block_rows = rows[block]
                distances = euclidean_distances(matrix[block_rows], population)
                for row, radius, row_distances in zip(block_rows, near[block], distances):
                    members = np.flatnonzero(row_distances <= 2.0 * radius + 1e-12)
                    members = members[members_of[members] != row]
                    exact = int(np.sum(np.all(population[members] == matrix[row], axis=1)))
                    reasons[row] = self._flagged_reason(
                        row, members, exact, labels, member_labels, p_texts[row], population_name,
                        sample=len(population) if sampled else None,
                    )
        return self._judged(scores, p_values, reasons, row_ids)

    def _flagged_reason(self, row, members, exact, labels, member_labels, p_text, population, sample=None) -> str:
        count = len(members)
        among = f" (counted in a random sample of {sample} batch rows)" if sample else ""
        head = f"one of a dense clump of {count + 1} near-identical batch rows{among}"
        if exact:
            head += f" ({exact} exact duplicate{'s' if exact > 1 else ''} of this row)"
        head += f", far denser than {population} ({p_text})"
        if labels is None or not count:
            return head
        names, codes = member_labels
        counts = np.bincount(codes[members], minlength=len(names))
        present = np.flatnonzero(counts)
        values, counts = names[present], counts[present]  # numpy.unique's values and counts
        order = np.argsort(-counts)[:MAX_LISTED_LABELS]
        listed = ", ".join(f"'{values[i]}' x{counts[i]}" for i in order)
        own = labels[row]
        if np.all(values == own):
            return f"{head}; all labelled '{own}' like this row: a possible flood of '{own}'"
        return f"{head}; their labels: {listed}; this row is '{own}': conflicting labels among near-identical rows"
