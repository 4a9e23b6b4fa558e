"""Whether a group of rows looks like its label on the features that do not define the group.

``backdoor.trigger`` without a reference finds rows of one label sharing
values on a few features. A dirty-label trigger is stamped on rows of
*other* labels, which then carry the target label: on every other feature
they still look like the labels they came from. A label's natural
association with a few values (Conservative voters rating Hague 4 and Blair
2, 149 of carData's BEPS) is carried by rows that look like their label on
the other features too. Without trusted rows nothing else tells the two
apart.

The test: each row's share of its label among its ``k`` nearest rows
outside the group, in the space without the group's features (all columns
encoding the same input column), for the group's rows against the rows of
the other labels (each its own neighbour never). A stamped group is a
sample of the other labels' rows, so its shares are theirs; a one-sided
Mann-Whitney test of "the group's shares are larger" gives a p-value that
is uniform then, and small where the group looks like its label.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors.features import source_columns

NEIGHBOURS = 10
# Rows of a large batch the test reads: the neighbours' pool, and the queries of each side.
POOL_ROWS = 5_000
QUERY_ROWS = 1_000


def label_agreement_p_value(matrix, labels, group, label, group_columns, feature_names, random_state=0) -> float:
    """P-value of "the ``group`` rows look no more like ``label`` than the other labels' rows do".

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
        Encoded features (``detectors.features``).
    labels : numpy.ndarray, shape (n_rows,)
    group : numpy.ndarray of int
        Positions of the group's rows, all labelled ``label``.
    label
        The group's label.
    group_columns : sequence of int
        Columns of ``matrix`` whose values may have been stamped on the
        group; every column encoding the same input column is left out too.
    feature_names : sequence of str, shape (n_features,)
    random_state : int or None
        Seeds the samples of a large batch.

    Returns
    -------
    float in (0, 1]; 1 when nothing is left to compare (no other feature,
    no other label, or too few rows).
    """
    in_group = np.zeros(len(matrix), dtype=bool)
    in_group[group] = True
    others = np.flatnonzero(~in_group & (labels != label))
    pool = np.flatnonzero(~in_group)
    if len(group) < 2 or len(others) < 2 or len(pool) <= NEIGHBOURS:
        return 1.0
    rng = np.random.default_rng(random_state)
    pool = _at_most(rng, pool, POOL_ROWS)
    group_queries = _at_most(rng, np.asarray(group), QUERY_ROWS)
    other_queries = _at_most(rng, others, QUERY_ROWS)
    # Only the sampled rows are read: a million rows of 200 features copied
    # whole for each group would be 1.6 GB.
    sources = source_columns(feature_names)
    pool_rows = matrix[pool]
    varying = np.ptp(pool_rows, axis=0) > 0
    kept = np.flatnonzero(varying & ~np.isin(sources, list(set(sources[list(group_columns)]))))
    if not kept.size:
        return 1.0
    search = NearestNeighbors(n_neighbors=NEIGHBOURS + 1).fit(pool_rows[:, kept])

    def shares(queries):
        neighbours = pool[search.kneighbors(matrix[queries][:, kept], return_distance=False)]
        # A query of the pool is not its own neighbour: keep the first NEIGHBOURS others.
        not_self = neighbours != queries[:, None]
        keep = np.cumsum(not_self, axis=1) <= NEIGHBOURS
        chosen = not_self & keep
        return ((labels[neighbours] == label) & chosen).sum(axis=1) / NEIGHBOURS

    return float(mannwhitneyu(shares(group_queries), shares(other_queries), alternative="greater").pvalue)


def _at_most(rng, rows: np.ndarray, size: int) -> np.ndarray:
    return np.sort(rng.choice(rows, size, replace=False)) if len(rows) > size else rows
