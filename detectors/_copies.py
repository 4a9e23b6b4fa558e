"""Exact copies among a batch's rows, and how many copies its columns' own frequencies explain.

Rows are grouped by a hash of their values, a column at a time: hashing the
matrix as a frame copied it (250 MB more at 200,000 rows of 150 encoded
features).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binom

from poisonguard.detectors.features import source_columns

# The tree's mutual information is estimated on this many rows, over input
# columns of at most this many values among them.
TREE_SAMPLE_ROWS, TREE_MAX_LEVELS = 5_000, 50
# A value of a column of many that this share of the sample holds is an atom (``_atoms_or_other``).
ATOM_SHARE = 0.01
OTHER = np.uint64(2**64 - 1)


def value_groups(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group of rows with its exact values, and that group's size.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)

    Returns
    -------
    group : numpy.ndarray of int, shape (n_rows,)
    size : numpy.ndarray of int, shape (n_rows,)
        How many rows (the row itself included) hold the row's values.
    """
    hashes = np.zeros(len(matrix), dtype=np.uint64)
    for column in range(matrix.shape[1]):
        hashes = hashes * np.uint64(1_000_003) ^ pd.util.hash_array(np.ascontiguousarray(matrix[:, column]))
    _, group, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    return group, counts[group]


def independent_copies_p_values(matrix: np.ndarray, feature_names) -> np.ndarray:
    """P-value of each row's count of exact copies if its input columns were independent.

    A row's values fall on another row with probability ``pi``, the
    product over its input columns (a one-hot block and a missing indicator
    are one column: ``features.source_columns``) of the share of rows
    holding its values of that column. Its ``m - 1`` copies among the other
    ``n - 1`` rows are then ``Binomial(n - 1, pi)``, and the p-value is
    ``P(Binomial(n - 1, pi) >= m - 1)``. Columns that depend on each other
    make copies more common than independence does, so this p-value is
    small for natural copies too; a large one means the columns' own
    frequencies alone explain the copies (a single two-valued feature:
    every row has hundreds).

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    feature_names : array-like of str, shape (n_features,)
        ``FeatureEncoder``'s names of the columns.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1]``
    """
    n_rows = len(matrix)
    if not n_rows:
        return np.zeros(0)
    sources = source_columns(feature_names)
    log_pi = np.zeros(n_rows)
    for source in dict.fromkeys(sources):
        _, size = value_groups(matrix[:, sources == source])
        log_pi += np.log(size / n_rows)
    _, copies = value_groups(matrix)
    return binom.sf(copies - 2, n_rows - 1, np.exp(log_pi))


def tree_copies_p_values(matrix: np.ndarray, feature_names, random_state=0) -> np.ndarray:
    """P-value of each row's count of exact copies under a tree of its columns' pairwise dependence.

    Independent columns (``independent_copies_p_values``) make natural
    copies too rare wherever columns depend on each other: answers to
    related survey items, a class and an age group. A Chow-Liu tree (the
    spanning tree of largest mutual information between input columns,
    learnt on a sample of ``TREE_SAMPLE_ROWS``) keeps each column's
    dependence on one other: ``pi = p(x_root) prod p(x_c | x_parent)``.

    A flood's copies must not explain themselves: forty copies of one row
    make its own pairs of values common. So ``p(x_c | x_parent)`` is
    counted over the rows that differ from the row somewhere besides
    column ``c``, which the tree leaves as likely to hold ``x_c``:
    ``(N(x_c, x_parent) - m) / (N(x_parent) - N(x without c))``, with
    ``m`` the row's copies (itself included) and ``N(x without c)`` the rows
    equal to it on every column but ``c``. A column of more than
    ``TREE_MAX_LEVELS`` values in the sample enters the tree by its atoms
    alone, the rest of its values as one (``_atoms_or_other``; all of its
    values would make its mutual information its own number of values): a
    rare value counts as independent of the rest, counted the same way, and
    as a parent a column gives its atoms or the one other value. With two
    input columns a row's pairs are its values and nothing is left to
    count: 0, and independence alone can explain them. The p-value is ``P(Binomial(n -
    1, pi) >= m - 1)``.

    Parameters
    ----------
    matrix : numpy.ndarray, shape (n_rows, n_features)
    feature_names : array-like of str, shape (n_features,)
    random_state : int or None
        Seeds the sample the tree is learnt on.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1]``
    """
    n_rows = len(matrix)
    if n_rows < 2:
        return np.ones(n_rows)
    sources = source_columns(feature_names)
    codes = [value_groups(matrix[:, sources == source])[0].astype(np.uint64) for source in dict.fromkeys(sources)]
    _, copies = value_groups(matrix)
    rng = np.random.default_rng(random_state)
    sample = rng.permutation(n_rows)[:TREE_SAMPLE_ROWS]
    coarse = [_atoms_or_other(column, sample) for column in codes]
    in_tree = [i for i, c in enumerate(coarse) if c is not None]
    parent_of = dict(zip(in_tree, (in_tree[p] if p >= 0 else -1 for p in
                                   _chow_liu_parents([coarse[i][sample] for i in in_tree]))))
    # A row's key is a random linear hash of its columns' codes, so the key
    # without one column is a subtraction away.
    weights = rng.integers(1, 2**63, size=len(codes), dtype=np.uint64) | np.uint64(1)
    key = np.zeros(n_rows, dtype=np.uint64)
    for column, weight in zip(codes, weights):
        key += column * weight

    def count(values):
        _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        return counts[inverse.reshape(-1)]

    log_pi = np.zeros(n_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        for position, (column, weight) in enumerate(zip(codes, weights)):
            parent = parent_of.get(position, -1)
            if parent == -1 and position in parent_of:  # the root: its own share
                log_pi += np.log(count(column) / n_rows)
                continue
            without = count(key - column * weight)
            held, of = count(column) - copies, n_rows - without
            if parent != -1:
                # A rare value of a column of many (no atom) stays independent of the tree.
                atom = coarse[position] != OTHER
                pair = coarse[position] * np.uint64(n_rows + 1) + coarse[parent]
                held = np.where(atom, count(pair) - copies, held)
                of = np.where(atom, count(coarse[parent]) - without, of)
            log_pi += np.log(np.divide(held, of, out=np.zeros(n_rows), where=of > 0))
    return binom.sf(copies - 2, n_rows - 1, np.exp(log_pi))


def natural_copies_p_values(matrix: np.ndarray, feature_names, random_state=0) -> np.ndarray:
    """How well the batch's columns explain each row's exact copies: the larger of the two p-values.

    Copies independent columns explain (``independent_copies_p_values``:
    a two-valued feature alone) or a tree of their dependence learnt from
    the other rows (``tree_copies_p_values``: related survey answers) are
    the table's own; copies neither explains are a flood's. A row is
    judged a flood's only where no model says otherwise, so the larger
    p-value stands.

    Returns
    -------
    numpy.ndarray of float, shape (n_rows,), in ``[0, 1]``
    """
    return np.maximum(independent_copies_p_values(matrix, feature_names),
                      tree_copies_p_values(matrix, feature_names, random_state))


def _atoms_or_other(codes: np.ndarray, sample: np.ndarray):
    """A column's codes for the tree: every value when it has few, else its atoms and ``OTHER``.

    A column of more than ``TREE_MAX_LEVELS`` values in the sample keeps
    the values that at least ``ATOM_SHARE`` of the sample holds (at most
    ``TREE_MAX_LEVELS - 1`` of them): a zero, a top code, an imputed value.
    Such atoms depend on other columns' (CPS earnings top-coded in three
    years on the same people), and outside the tree those rows' copies were
    a flood's (7.4 % of causaldata's cps_mixtape). None when it has no atom.
    """
    values, counts = np.unique(codes[sample], return_counts=True)
    if len(values) <= TREE_MAX_LEVELS:
        return codes
    atoms = values[counts >= ATOM_SHARE * len(sample)]
    if not atoms.size:
        return None
    atoms = atoms[np.argsort(-counts[counts >= ATOM_SHARE * len(sample)], kind="stable")][: TREE_MAX_LEVELS - 1]
    return np.where(np.isin(codes, atoms), codes, OTHER)


def _chow_liu_parents(columns: list) -> np.ndarray:
    """Each column's parent in the spanning tree of largest mutual information (-1: a root)."""
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    n_columns = len(columns)
    if n_columns < 2:
        return np.full(n_columns, -1)
    information = np.zeros((n_columns, n_columns))
    for i in range(n_columns):
        for j in range(i + 1, n_columns):
            information[i, j] = _mutual_information(columns[i], columns[j])
    # Positive weights, smaller for more information: every pair stays an edge.
    weights = np.triu(information.max() + 1.0 - information, k=1)
    tree = minimum_spanning_tree(weights)
    _, predecessors = breadth_first_order(tree, 0, directed=False, return_predecessors=True)
    return np.where(predecessors < 0, -1, predecessors)


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    shape = (int(a.max()) + 1, int(b.max()) + 1)
    joint = np.bincount(a.reshape(-1) * shape[1] + b.reshape(-1), minlength=shape[0] * shape[1])
    joint = joint.reshape(shape) / len(a)
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    held = joint > 0
    return float(np.sum(joint[held] * np.log(joint[held] / outer[held])))
