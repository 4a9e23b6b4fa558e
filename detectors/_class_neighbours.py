"""Each row's mean distance to its own label's nearest rows and to the nearest other label's, for ``label.knn``.

``label.knn`` scores a row of label ``c`` by two numbers: ``d_c``, the mean
distance to the ``k`` nearest rows labelled ``c``, and ``d_o``, the smallest
such mean over the other labels (and which label ``o`` gives it). One
search per label over every row is cheap with a few labels, and with many
it is labels x rows: 1,000 labels and 100,000 rows took 170 s and a rows x
labels matrix of 800 MB, on a product-category label.

With many labels one search of each row's ``M`` nearest rows overall
settles both numbers for most rows. A label with ``k`` of its rows among
them has its mean right there, since no row outside is nearer. A label
with fewer has a mean of at least its found distances padded with the
``M``-th distance, and one with none at least that distance: a label whose
bound beats the best exact mean is searched on its own for that row, and a
row whose best exact mean does not beat the ``M``-th distance looks again
among more rows, and at last among every label's rows one label at a time.
Every mean is the same mean of the same ``k`` distances as one label's own
search gives, so the result does not depend on which way it was found.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors._copies import value_groups
from poisonguard.detectors._row_blocks import BLOCK_ROWS, row_blocks

# With at most this many labels, one search per label costs less than the
# search among all rows and its bookkeeping (and is the exact reference).
SEARCH_EACH_LABEL_MAX = 10
# Rows searched overall per query, then 4x as many for the rows still open,
# up to the last; rows open after it search every label.
NEAREST_ROWS_STEPS = (32, 128, 512)
# Neighbours found per block of the search among all rows: 4M distances and
# positions are 64 MB (8,192 queries at 512 neighbours, 131,072 at 32).
OVERALL_BLOCK_NEIGHBOURS = 4_194_304


@dataclass(frozen=True)
class ClassMargins:
    """Per query: the mean distance to its own label's ``k`` nearest rows and to the nearest other label's.

    Attributes
    ----------
    own : numpy.ndarray of float, shape (n_queries,)
        ``inf`` for a query of no label (code -1) or of a label without
        (other) rows.
    other : numpy.ndarray of float, shape (n_queries,)
        The smallest mean over the labels other than the query's; ``inf``
        when none has rows.
    believed : numpy.ndarray of int, shape (n_queries,)
        The label giving ``other`` (the lowest code among equal means; 0
        when ``other`` is ``inf``).
    """

    own: np.ndarray
    other: np.ndarray
    believed: np.ndarray

    @classmethod
    def unknown(cls, n_queries: int) -> "ClassMargins":
        """Margins of ``n_queries`` rows not yet searched: every distance ``inf``."""
        return cls(np.full(n_queries, np.inf), np.full(n_queries, np.inf), np.zeros(n_queries, dtype=np.intp))

    def rows(self, rows) -> "ClassMargins":
        """The margins of ``rows`` (a mask, positions or a slice)."""
        return ClassMargins(self.own[rows], self.other[rows], self.believed[rows])

    def with_rows(self, rows, replacement: "ClassMargins") -> "ClassMargins":
        """A copy whose ``rows`` (a mask or positions) hold ``replacement``'s rows, in order."""
        own, other, believed = self.own.copy(), self.other.copy(), self.believed.copy()
        own[rows], other[rows], believed[rows] = replacement.own, replacement.other, replacement.believed
        return ClassMargins(own, other, believed)


def margins_from_means(means: np.ndarray, query_codes) -> ClassMargins:
    """``ClassMargins`` from every label's mean distance, shape (n_queries, n_classes)."""
    query_codes = np.asarray(query_codes, dtype=np.intp)
    rows = np.arange(len(means))
    known = query_codes >= 0
    own = np.full(len(means), np.inf)
    own[known] = means[rows[known], query_codes[known]]
    others = means.copy()
    others[rows[known], query_codes[known]] = np.inf
    if not means.shape[1]:
        return ClassMargins(own, np.full(len(means), np.inf), np.zeros(len(means), dtype=np.intp))
    believed = others.argmin(axis=1)
    return ClassMargins(own, others[rows, believed], believed)


def nearest_other_row(matrix) -> np.ndarray:
    """Each row's distance to its nearest other row, shape (n_rows,); ``inf`` for a lone row.

    A row among exact copies of itself is at distance 0 (the copy, not
    itself), found on the values: a brute search computes ``|x|^2 - 2 x.y
    + |y|^2`` and gives a copy 1e-7 now and then. On COUNT's affairs 62 of
    the 110 "positive" nearest distances were such copies, the median
    spacing ``label.knn`` floors its distances by fell to 1.2e-7, and a row
    with a copy in another label scored ``log(6 / 1e-7)``.
    """
    distances = np.full(len(matrix), np.inf)
    if len(matrix) < 2:
        return distances
    index = NearestNeighbors(n_neighbors=2).fit(matrix)
    for block in row_blocks(len(matrix)):
        found, positions = index.kneighbors(matrix[block])
        # Not always column 0 among ties: the entry that is not the row itself.
        is_self = positions[:, 0] == np.arange(block.start, block.stop)
        distances[block] = np.where(is_self, found[:, 1], found[:, 0])
    distances[value_groups(matrix)[1] > 1] = 0.0
    return distances


def class_margins(space, space_codes, queries, query_codes, n_classes: int, k: int, *, exclude_self: bool,
                  rows=None, search: str = "auto") -> ClassMargins:
    """Each query's mean distance to the ``k`` nearest rows of its own label and of the nearest other label.

    Parameters
    ----------
    space : numpy.ndarray, shape (n_space, n_features)
    space_codes : array-like of int, shape (n_space,)
        Each row's label, ``0 .. n_classes - 1``.
    queries : numpy.ndarray, shape (n_queries, n_features)
    query_codes : array-like of int, shape (n_queries,)
        Each query's label, or -1 for a label without rows.
    n_classes : int
    k : int
        Neighbours per label (fewer when a label has fewer rows).
    exclude_self : bool
        ``queries`` are ``space``: a row is not its own neighbour, and every
        label offers one row fewer.
    rows : array-like of bool, shape (n_queries,), optional
        Only these queries (all when None): without copying them out of a
        million-row ``queries``.
    search : {"auto", "each_label", "overall"}
        ``"auto"`` searches each label with at most
        ``SEARCH_EACH_LABEL_MAX`` labels and overall beyond; both give the
        same result.

    Returns
    -------
    ClassMargins
        Of ``queries[rows]``.
    """
    if search not in ("auto", "each_label", "overall"):
        raise ValueError(f"search must be 'auto', 'each_label' or 'overall', got {search!r}")
    labels = _LabelSearches(space, space_codes, n_classes, k, exclude_self)
    query_codes = np.asarray(query_codes, dtype=np.intp)
    query_rows = np.arange(len(queries)) if rows is None else np.flatnonzero(rows)
    if search == "each_label" or (search == "auto" and n_classes <= SEARCH_EACH_LABEL_MAX):
        return labels.margins(queries, query_codes, query_rows)
    return _OverallSearch(labels, queries, query_codes).margins(query_rows)


class _LabelSearches:
    """One search index per label, built when first asked; the exact means, label by label."""

    def __init__(self, space, space_codes, n_classes: int, k: int, exclude_self: bool):
        self.space = space
        self.codes = np.asarray(space_codes, dtype=np.intp)
        self.n_classes = int(n_classes)
        self.exclude_self = exclude_self
        counts = np.bincount(self.codes, minlength=self.n_classes)
        # Every label offers one row fewer when the queries are the space
        # (a query of another label drops its farthest instead).
        self.wanted = np.minimum(int(k), counts - (1 if exclude_self else 0))
        order = np.argsort(self.codes, kind="stable")
        self.members = np.split(order, np.cumsum(counts)[:-1])
        self._indexes = {}

    def means(self, label: int, queries, query_rows) -> np.ndarray:
        """Mean distance from each query to the label's nearest rows, shape (n,).

        ``query_rows`` are the queries' rows in the space (with ``exclude_self``).
        """
        wanted = int(self.wanted[label])
        means = np.full(len(queries), np.inf)
        if wanted < 1 or not len(queries):
            return means
        extra = 1 if self.exclude_self else 0
        index = self._indexes.get(label)
        if index is None:
            members = self.members[label]
            index = self._indexes[label] = NearestNeighbors(n_neighbors=wanted + extra).fit(self.space[members])
        members = self.members[label]
        for block in row_blocks(len(queries)):
            found, positions = index.kneighbors(queries[block])
            if self.exclude_self:
                # Drop each query's own entry (not always column 0 among ties).
                own = members[positions] == np.asarray(query_rows[block])[:, None]
                keep = ~own
                # Queries of another label have no own entry: drop their farthest instead.
                keep[~own.any(axis=1), -1] = False
                found = found[keep].reshape(len(found), wanted)
            means[block] = found.mean(axis=1)
        return means

    def margins(self, queries, query_codes, query_rows) -> ClassMargins:
        """``ClassMargins`` of ``queries[query_rows]`` from every label's search, a block of rows at a time."""
        own = np.empty(len(query_rows))
        other = np.empty(len(query_rows))
        believed = np.empty(len(query_rows), dtype=np.intp)
        # A rows x labels matrix per block, not for all rows: 100,000 x 1,000 is 800 MB.
        block_rows = max(1, min(BLOCK_ROWS, 8_000_000 // max(self.n_classes, 1)))
        for block in row_blocks(len(query_rows), block_rows):
            rows = query_rows[block]
            block_queries = queries[rows]
            means = np.full((len(rows), self.n_classes), np.inf)
            for label in range(self.n_classes):
                means[:, label] = self.means(label, block_queries, rows)
            margins = margins_from_means(means, query_codes[rows])
            own[block], other[block], believed[block] = margins.own, margins.other, margins.believed
        return ClassMargins(own, other, believed)


class _OverallSearch:
    """``class_margins`` from each query's nearest rows among all labels (see the module docstring)."""

    def __init__(self, labels: _LabelSearches, queries, query_codes):
        self.labels = labels
        self.queries = queries
        self.query_codes = query_codes
        self.own = np.full(len(queries), np.inf)
        self.other = np.full(len(queries), np.inf)
        self.believed = np.zeros(len(queries), dtype=np.intp)
        usable = labels.wanted >= 1
        # Labels with rows a query may be judged against besides its own.
        self.n_other_usable = int(usable.sum()) - np.where(query_codes >= 0, usable[np.maximum(query_codes, 0)], False)

    def margins(self, query_rows) -> ClassMargins:
        labels = self.labels
        open_rows = query_rows
        index = NearestNeighbors().fit(labels.space)
        extra = 1 if labels.exclude_self else 0
        for nearest in NEAREST_ROWS_STEPS:
            if not open_rows.size:
                break
            nearest = min(nearest, len(labels.space) - extra)
            if nearest < 1:
                break
            still_open = []
            for block in row_blocks(len(open_rows), max(1, OVERALL_BLOCK_NEIGHBOURS // (nearest + extra))):
                rows = open_rows[block]
                found, positions = index.kneighbors(self.queries[rows], n_neighbors=nearest + extra)
                still_open.append(self._settle(rows, found, positions, every_row=nearest + extra == len(labels.space)))
            open_rows = np.concatenate(still_open)
        if open_rows.size:
            self._store(open_rows, labels.margins(self.queries, self.query_codes, open_rows))
        return ClassMargins(self.own, self.other, self.believed).rows(query_rows)

    def _store(self, rows, margins: ClassMargins) -> None:
        self.own[rows], self.other[rows], self.believed[rows] = margins.own, margins.other, margins.believed

    def _settle(self, rows, found, positions, *, every_row: bool) -> np.ndarray:
        """Settle the rows the nearest rows found decide; returns the others (``rows``' subset) to look again."""
        labels = self.labels
        if labels.exclude_self:
            is_self = positions == rows[:, None]
            has_self = is_self.any(axis=1)
            # A row among more than ``nearest`` exact copies of itself may
            # not find itself: the next step (or every label's search) will.
            kept_rows = np.flatnonzero(has_self)
            found = found[kept_rows][~is_self[kept_rows]].reshape(len(kept_rows), -1)
            positions = positions[kept_rows][~is_self[kept_rows]].reshape(len(kept_rows), -1)
            reopened = rows[~has_self]
            rows = rows[kept_rows]
        else:
            reopened = rows[:0]
        groups = _LabelGroups(found, positions, labels, self.query_codes[rows])
        own_codes = self.query_codes[rows]
        # Best exact other label among those with all their k rows found.
        complete_other = groups.complete & ~groups.is_own
        best = np.full(len(rows), np.inf)
        best_label = np.full(len(rows), labels.n_classes, dtype=np.intp)
        _lower_into(best, best_label, groups.row[complete_other], groups.exact_mean[complete_other],
                    groups.label[complete_other])
        # A label none of whose rows were found has a mean of at least the last distance found.
        seen_other = np.bincount(groups.row[groups.usable & ~groups.is_own], minlength=len(rows))
        unseen = (self.n_other_usable[rows] - seen_other > 0) & (not every_row)
        last = found[:, -1] if found.shape[1] else np.zeros(len(rows))
        settled = ~(unseen & (best >= last))
        # Labels with fewer than k found may still beat the best: search them on their own.
        partial = groups.usable & ~groups.complete & ~groups.is_own & settled[groups.row]
        partial &= groups.lower_bound(last) <= best[groups.row]
        for label, group_rows in _by_label(groups.label[partial], groups.row[partial]):
            means = labels.means(label, self.queries[rows[group_rows]], rows[group_rows])
            _lower_into(best, best_label, group_rows, means, np.full(len(group_rows), label))
        # Own labels without all k rows found: searched on their own.
        own_mean = np.full(len(rows), np.inf)
        own_complete = groups.is_own & groups.complete
        own_mean[groups.row[own_complete]] = groups.exact_mean[own_complete]
        own_found = np.zeros(len(rows), dtype=bool)
        own_found[groups.row[own_complete]] = True
        needs_own = settled & (own_codes >= 0) & ~own_found
        needs_own &= labels.wanted[np.maximum(own_codes, 0)] >= 1
        for label, group_rows in _by_label(own_codes[needs_own], np.flatnonzero(needs_own)):
            own_mean[group_rows] = labels.means(label, self.queries[rows[group_rows]], rows[group_rows])
        done = np.flatnonzero(settled)
        # No other label in reach: 0, as argmin over every label's inf says.
        believed = np.where(np.isfinite(best[done]), best_label[done], 0)
        self._store(rows[done], ClassMargins(own_mean[done], best[done], believed))
        return np.concatenate([reopened, rows[~settled]])


class _LabelGroups:
    """The nearest rows found for each query, grouped by (query, label) in order of distance."""

    def __init__(self, found, positions, labels: _LabelSearches, own_codes):
        n_rows, n_found = found.shape
        row = np.repeat(np.arange(n_rows), n_found)
        label = labels.codes[positions.ravel()]
        order = np.argsort(row * labels.n_classes + label, kind="stable")
        row, label, distance = row[order], label[order], found.ravel()[order]
        starts = np.flatnonzero(np.r_[True, (row[1:] != row[:-1]) | (label[1:] != label[:-1])])
        sizes = np.diff(np.r_[starts, len(row)])
        self.row = row[starts]
        self.label = label[starts]
        wanted = labels.wanted[self.label]
        self.usable = wanted >= 1
        self.is_own = self.label == own_codes[self.row]
        self.complete = self.usable & (sizes >= wanted)
        self.exact_mean = np.full(len(starts), np.inf)
        # The mean of the same k distances, summed as one label's search sums them.
        for count in np.unique(wanted[self.complete]):
            groups = np.flatnonzero(self.complete & (wanted == count))
            self.exact_mean[groups] = distance[starts[groups][:, None] + np.arange(count)].mean(axis=1)
        self._found_sum = np.add.reduceat(distance, starts) if len(starts) else np.zeros(0)
        self._sizes = sizes
        self._wanted = wanted

    def lower_bound(self, last) -> np.ndarray:
        """A partly found label's least possible mean: the rows missing are at least ``last`` away."""
        missing = np.maximum(self._wanted - self._sizes, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self._found_sum + missing * last[self.row]) / np.maximum(self._wanted, 1)


def _lower_into(best, best_label, rows, means, means_labels) -> None:
    """Keep, per row, the smaller mean (the lower label among equal ones)."""
    if not len(rows):
        return
    order = np.lexsort((means_labels, means))
    rows, means, means_labels = rows[order], means[order], means_labels[order]
    # The first entry of each row, in (mean, label) order, is its best.
    unique_rows, at = np.unique(rows, return_index=True)
    candidate, candidate_label = means[at], means_labels[at]
    current, current_label = best[unique_rows], best_label[unique_rows]
    better = (candidate < current) | ((candidate == current) & (candidate_label < current_label))
    best[unique_rows[better]] = candidate[better]
    best_label[unique_rows[better]] = candidate_label[better]


def _by_label(codes, rows):
    """``(label, rows of it)`` for each label in ``codes``."""
    order = np.argsort(codes, kind="stable")
    codes, rows = codes[order], rows[order]
    for start, stop in zip(*_runs(codes)):
        yield int(codes[start]), rows[start:stop]


def _runs(values):
    if not len(values):
        return [], []
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return starts, np.r_[starts[1:], len(values)]
