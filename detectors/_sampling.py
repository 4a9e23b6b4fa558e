"""Bounded samples of a batch: what a detector counts or fits on when the batch is large.

A detector that compares batch rows with each other (neighbours, value
counts, models fitted on the pooled rows) costs at least the square of the
batch, or a fit on all of it, which a million-row batch cannot pay. Such a
detector takes a seeded random sample of at most ``POPULATION_ROWS`` batch
rows as its *population*: the neighbours it searches, the values it counts,
the rows it pools with the trusted ones to fit. Every batch row is still
scored, against that population; the rows of the sample leave themselves
out, as every row did before. Trusted rows are scored against the same
population, so on a clean batch trusted and batch scores stay exchangeable
and the calibration holds. What a sample cannot see is a poison far rarer
than one row in ``POPULATION_ROWS``: a flood or trigger of a handful of rows
in a million.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from poisonguard.detectors._unique import unique_values

# Batch rows a detector's population holds, at most. A poison that teaches a
# model anything is a share of the batch: 1 % of it is 200 rows of the sample.
POPULATION_ROWS = 20_000
# A neighbour search compares every batch row with every population row.
# Past NEIGHBOUR_PAIRS / POPULATION_ROWS batch rows (100,000), the population
# of a neighbour search shrinks as the batch grows, so searching it costs at
# most NEIGHBOUR_PAIRS distances instead of 20,000 per batch row (linear
# again once MIN_NEIGHBOUR_ROWS is reached, past a million rows). At a
# million rows, 2,000 sampled rows still hold 20 near-copies of a 1 % flood.
NEIGHBOUR_PAIRS = 2_000_000_000
MIN_NEIGHBOUR_ROWS = 2_000
# A distance costs its dimension, and NEIGHBOUR_PAIRS was set on tables of up
# to this many encoded features: past POPULATION_ROWS rows, a wider table's
# pairs count for more. A 100,000 x 55 mixed table (190 encoded features, a
# 20,000-row reference) spent 21.9 s of a 55.0 s run in label.knn at 20,000
# rows; at 2,105, 4.0 s of 34.1 s, with the same recall (1.0) at 0.92 % of
# clean rows against 0.88 %.
NEIGHBOUR_FEATURES = 20
# With labels, every label keeps at least this many rows (all, if it has
# fewer): a rare label missing from the sample would leave its rows without
# neighbours or a class in the model.
MIN_LABEL_ROWS = 50


def neighbour_population_rows(n_rows: int, n_features: int = NEIGHBOUR_FEATURES) -> int:
    """Population size of a neighbour search over ``n_rows`` batch rows of ``n_features`` (see ``NEIGHBOUR_PAIRS``)."""
    if n_rows <= POPULATION_ROWS:
        return POPULATION_ROWS  # searched whole, however wide (20,000 x 190, 4,000 trusted: 2.6 s)
    pairs = NEIGHBOUR_PAIRS * NEIGHBOUR_FEATURES // max(n_features, NEIGHBOUR_FEATURES)
    return int(min(POPULATION_ROWS, max(MIN_NEIGHBOUR_ROWS, pairs // n_rows)))


def population_mask(n_rows: int, random_state, labels=None, max_rows: Optional[int] = None) -> np.ndarray:
    """Which of ``n_rows`` batch rows form the population: all, or a seeded sample of about ``max_rows``.

    Parameters
    ----------
    n_rows : int
    random_state : int or None
    labels : array-like, shape (n_rows,), optional
        Sample each label in proportion, keeping ``MIN_LABEL_ROWS`` of each
        (so the sample may hold a few more than ``max_rows``).
    max_rows : int, optional
        ``POPULATION_ROWS`` when None.

    Returns
    -------
    numpy.ndarray of bool, shape (n_rows,)
    """
    max_rows = POPULATION_ROWS if max_rows is None else max_rows
    mask = np.zeros(n_rows, dtype=bool)
    if n_rows <= max_rows:
        mask[:] = True
        return mask
    rng = np.random.default_rng(random_state)
    if labels is None:
        mask[rng.choice(n_rows, max_rows, replace=False)] = True
        return mask
    codes = unique_values(np.asarray(labels), return_inverse=True)[1].ravel()
    for code in range(int(codes.max()) + 1 if n_rows else 0):
        members = np.flatnonzero(codes == code)
        wanted = max(min(len(members), MIN_LABEL_ROWS), round(len(members) * max_rows / n_rows))
        mask[rng.choice(members, min(wanted, len(members)), replace=False)] = True
    return mask


def reference_sample(random_state, matrix: np.ndarray, labels=None):
    """A large reference as a detector fits on it: a seeded sample of ``POPULATION_ROWS`` rows, per label.

    What every detector takes of a large batch (``population_mask``); a
    reference of at most that many rows is returned as it is, not copied.
    200,000 trusted rows cost a fit ten times what 20,000 do, and calibrate
    a p-value of 0.01 no better.

    Returns
    -------
    ``(matrix, labels)`` of the sample; ``labels`` None when none were given.
    """
    sample = population_mask(len(matrix), random_state, labels)
    if sample.all():
        return matrix, labels
    return matrix[sample], (None if labels is None else labels[sample])


def calibration_rows(in_trusted: np.ndarray, random_state, trusted_labels=None) -> np.ndarray:
    """The trusted rows a neighbour detector scores to calibrate: its sample's, and at most ``POPULATION_ROWS`` more.

    Each trusted row is scored against the pooled samples; past the sample,
    a reference of 200,000 rows cost ten times the batch's own search
    (100,000 rows), where 20,000 calibration scores pin a p-value of 0.01
    as well. ``in_trusted`` is the trusted rows' sample (``population_mask``);
    a reference of at most ``POPULATION_ROWS`` rows is scored whole.
    """
    return in_trusted | population_mask(len(in_trusted), random_state, trusted_labels)
