"""Class probabilities from the labels of a row's nearest rows, and the p-values they give its label.

Without a reference, ``label.knn`` calibrates each label's scores on the
label's robust bulk, assuming a light tail beyond it. These p-values check
that tail with no shape assumed: they hold if the neighbours' label shares
are calibrated class probabilities (``calibration.label_mass_p_values``).
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors._row_blocks import row_blocks
from poisonguard.detectors._sampling import population_mask
from poisonguard.detectors.calibration import label_mass_p_values

# A row's class probabilities are the labels of its POSTERIOR_NEIGHBORS
# nearest rows, plus one row spread by the labels' shares among its wider
# neighbourhood: WIDER_SHARE of the population, POSTERIOR_NEIGHBORS to
# WIDER_NEIGHBORS rows (as ``duplicates.flood``'s context). Spread by the
# whole batch's shares instead, every row far from a label gave it mass,
# and ten flips that no neighbour shared got p = 0.024 among 416 rows of
# their label (3e-6 to 5e-4 now).
POSTERIOR_NEIGHBORS = 20
WIDER_SHARE, WIDER_NEIGHBORS = 0.1, 200
# Each label's mass is measured on a seeded sample of this many population rows.
MASS_SAMPLE_ROWS = 5_000


def neighbour_label_p_values(population, population_codes, n_labels: int, matrix, codes, in_population, rows,
                             random_state=0) -> np.ndarray:
    """P-values of ``rows``' labels from the labels' shares among each row's nearest population rows.

    A row's probability of label ``j`` is ``(n_j + w_j) / (k + 1)``: ``n_j``
    of its ``k = POSTERIOR_NEIGHBORS`` nearest population rows (itself left
    out) carry ``j``, and ``w_j = (m_j + s_j) / (K + 1)`` is the share among
    its ``K`` nearest (``WIDER_SHARE`` of the population, ``k`` to
    ``WIDER_NEIGHBORS``), with ``s_j`` the population's share of ``j``. A
    label no near row has is then as rare as the wider neighbourhood says,
    not impossible. ``calibration.label_mass_p_values`` of these
    probabilities is each row's p-value, with each label's mass measured on
    a seeded sample of at most ``MASS_SAMPLE_ROWS`` population rows.

    Parameters
    ----------
    population : numpy.ndarray, shape (n_population, n_features)
        ``matrix[in_population]``.
    population_codes : numpy.ndarray of int, shape (n_population,)
        Each population row's label, ``0 .. n_labels - 1``.
    n_labels : int
    matrix : numpy.ndarray, shape (n_rows, n_features)
    codes : numpy.ndarray of int, shape (n_rows,)
        Each row's label.
    in_population : numpy.ndarray of bool, shape (n_rows,)
    rows : numpy.ndarray of int
        The rows to give p-values, sorted.
    random_state : int or None
        Seeds the sample the masses are measured on.

    Returns
    -------
    numpy.ndarray of float, shape (len(rows),)
    """
    members = np.flatnonzero(in_population)
    measured = members[population_mask(len(members), random_state, population_codes, max_rows=MASS_SAMPLE_ROWS)]
    queried = np.union1d(measured, rows)
    wide = int(np.clip(round(WIDER_SHARE * len(members)), POSTERIOR_NEIGHBORS, WIDER_NEIGHBORS))
    wide = min(wide, len(members) - 1)
    near = min(POSTERIOR_NEIGHBORS, wide)
    position = np.full(len(matrix), -1)
    position[members] = np.arange(len(members))
    index = NearestNeighbors(n_neighbors=wide + 1).fit(population)
    near_counts = np.zeros((len(queried), n_labels))
    wide_counts = np.zeros((len(queried), n_labels))
    for block in row_blocks(len(queried)):
        neighbours = index.kneighbors(matrix[queried[block]], return_distance=False)
        # Leave the row itself out (among exact copies it need not come
        # first); a row outside the population drops its farthest instead.
        itself = neighbours == position[queried[block]][:, None]
        dropped = np.where(itself.any(axis=1), itself.argmax(axis=1), wide)
        kept = np.ones(neighbours.shape, dtype=bool)
        kept[np.arange(len(neighbours)), dropped] = False
        labels = population_codes[neighbours[kept]].reshape(len(neighbours), wide)
        for counts, width in ((wide_counts, wide), (near_counts, near)):
            cells = np.arange(len(neighbours))[:, None] * n_labels + labels[:, :width]
            counts[block] = np.bincount(cells.ravel(), minlength=len(neighbours) * n_labels).reshape(-1, n_labels)
    shares = np.bincount(population_codes, minlength=n_labels) / len(population_codes)
    wide_shares = (wide_counts + shares) / (wide + 1)
    p_values = label_mass_p_values((near_counts + wide_shares) / (near + 1), codes[queried],
                                   np.isin(queried, measured))
    return p_values[np.searchsorted(queried, rows)]
