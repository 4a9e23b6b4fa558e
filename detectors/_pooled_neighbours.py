"""One neighbour search for ``label.knn`` and ``duplicates.flood`` over the same pooled rows.

With a trusted reference both detectors search each batch row's (and each
trusted row's) nearest rows among a seeded sample of the batch and one of
the trusted rows (``detectors._sampling``): ``label.knn`` per label, over
both samples pooled; ``duplicates.flood`` per source, over each sample. On a
large batch these searches are most of a run (a million rows: 19 s and 17 s
of 114, on 2 cores). Both detectors take the same per-label samples, and one
search per group of the pool (source x label) gives every query its ``k``
nearest rows in each group. The ``k`` nearest of a union of groups are among
the union of the groups' ``k`` nearest, so both summaries follow from it:

* ``label_means``: per label, the mean distance to the ``k`` nearest pooled
  rows of that label (``label.knn``);
* ``batch_kth`` and ``trusted_kth``: the distance to the ``k``-th nearest
  sampled batch row and trusted row (``duplicates.flood``).

They share it for up to ``MAX_SHARED_LABELS`` trusted labels; with more,
the shared search's many small groups cost more than it saves, and each
detector searches on its own (the same samples). A row of a sample is
never its own neighbour. The summaries of the last
batch are kept for the next call on that batch, so whichever detector runs
second finds them computed; any other call (other rows, labels, samples or
``k``, or a third call) searches afresh, with the same result.
"""
from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors._row_blocks import row_blocks
from poisonguard.detectors._sampling import calibration_rows, neighbour_population_rows, population_mask
from poisonguard.detectors._unique import unique_values


# Sharing pays only with few labels. scikit-learn's search costs about
# 0.8 us per query and call besides ~2.3 ns per pair, and the shared search
# makes one call per source and label (twice label.knn's own calls) to save
# duplicates.flood's two. Measured, both detectors: 5 labels, 1M rows,
# 40 -> 31 s; 100 labels, 200,000 rows, 32 -> 52 s.
MAX_SHARED_LABELS = 10


def shares_search(n_labels: int) -> bool:
    """Whether ``label.knn`` and ``duplicates.flood`` share the search for trusted rows of ``n_labels`` labels."""
    return n_labels <= MAX_SHARED_LABELS


@dataclass(frozen=True)
class NeighbourSummary:
    """Per query row: what ``label.knn`` and ``duplicates.flood`` read of its neighbours.

    Attributes
    ----------
    label_means : numpy.ndarray, shape (n_queries, n_classes)
        Mean distance to the ``k`` nearest pooled rows of each class (fewer
        when the class has fewer); ``inf`` for a class with none.
    batch_kth, trusted_kth : numpy.ndarray, shape (n_queries,)
        Distance to the ``k``-th nearest sampled batch (trusted) row; ``inf``
        when the sample has fewer than ``k`` rows besides the query.
    """

    label_means: np.ndarray
    batch_kth: np.ndarray
    trusted_kth: np.ndarray


@dataclass(frozen=True)
class PooledNeighbours:
    """The samples and the neighbour summaries of every batch and trusted row.

    Attributes
    ----------
    in_batch : numpy.ndarray of bool, shape (n_batch,)
        The batch's sample, every label included.
    in_trusted : numpy.ndarray of bool, shape (n_trusted,)
    scored_trusted : numpy.ndarray of bool, shape (n_trusted,)
        The trusted rows summarised (``detectors._sampling.calibration_rows``).
    batch, trusted : NeighbourSummary
        Of every batch row, and of the ``scored_trusted`` rows in order.
    """

    in_batch: np.ndarray
    in_trusted: np.ndarray
    scored_trusted: np.ndarray
    batch: NeighbourSummary
    trusted: NeighbourSummary


def pooled_samples(n_batch: int, batch_labels, n_trusted: int, trusted_labels, random_state, n_features: int):
    """The batch's and the trusted rows' samples, per label, sized for a batch of ``n_batch`` rows."""
    max_rows = neighbour_population_rows(n_batch, n_features)
    return (
        population_mask(n_batch, random_state, batch_labels, max_rows=max_rows),
        population_mask(n_trusted, random_state, trusted_labels, max_rows=max_rows),
    )


def pooled_neighbours(trusted, trusted_labels, batch, batch_labels, k: int, random_state) -> PooledNeighbours:
    """Neighbour summaries of every batch and trusted row among both samples pooled.

    Parameters
    ----------
    trusted : numpy.ndarray, shape (n_trusted, n_features)
    trusted_labels : numpy.ndarray of str, shape (n_trusted,)
    batch : numpy.ndarray, shape (n_batch, n_features)
    batch_labels : numpy.ndarray of str, shape (n_batch,)
        Batch rows of a label no trusted row has are in the batch sample
        (densities count them) but in no class.
    k : int
    random_state : int or None
        Seeds the samples (``pooled_samples``).

    Returns
    -------
    PooledNeighbours
        Its classes (``label_means``' columns) are the trusted rows'
        distinct labels, sorted.
    """
    key = (k, random_state, neighbour_population_rows(len(batch), batch.shape[1]))
    cached = _CACHE.get(batch, batch_labels, trusted, trusted_labels, key)
    if cached is not None:
        return cached
    in_batch, in_trusted = pooled_samples(
        len(batch), batch_labels, len(trusted), trusted_labels, random_state, batch.shape[1]
    )
    groups = _Groups(trusted[in_trusted], trusted_labels[in_trusted], batch[in_batch], batch_labels[in_batch],
                     unique_values(trusted_labels), k)
    scored = calibration_rows(in_trusted, random_state, trusted_labels)
    result = PooledNeighbours(
        in_batch=in_batch,
        in_trusted=in_trusted,
        scored_trusted=scored,
        batch=groups.summarise(batch, batch_labels, np.where(in_batch, np.cumsum(in_batch) - 1, -1), source=1),
        trusted=groups.summarise(
            trusted[scored], trusted_labels[scored], np.where(in_trusted, np.cumsum(in_trusted) - 1, -1)[scored],
            source=0,
        ),
    )
    _CACHE.put(batch, batch_labels, trusted, trusted_labels, key, result)
    return result


class _Groups:
    """The pooled samples split by source (0 trusted, 1 batch) and label, one search index each."""

    def __init__(self, trusted, trusted_labels, batch, batch_labels, classes, k: int):
        self.k = k
        self.classes = np.asarray(classes, dtype=object)
        self.groups = []  # (source, label, rows, index over them)
        for source, rows, labels in ((0, trusted, trusted_labels), (1, batch, batch_labels)):
            for label in unique_values(labels):
                members = np.flatnonzero(labels == label)
                index = NearestNeighbors(n_neighbors=min(k + 1, len(members))).fit(rows[members])
                self.groups.append((source, label, members, index))

    def summarise(self, queries, query_labels, sample_position, *, source: int) -> NeighbourSummary:
        """Summaries of ``queries``; ``sample_position[i]`` is query ``i``'s row in its source's sample, or -1."""
        k = self.k
        n_queries = len(queries)
        label_means = np.full((n_queries, len(self.classes)), np.inf)
        batch_kth = np.full(n_queries, np.inf)
        trusted_kth = np.full(n_queries, np.inf)
        class_column = {label: column for column, label in enumerate(self.classes)}
        for block in row_blocks(n_queries):
            nearest = [self._nearest(group, queries[block], query_labels[block], sample_position[block], source)
                       for group in self.groups]
            for group_source, target in ((0, trusted_kth), (1, batch_kth)):
                candidates = [d for (s, *_), d in zip(self.groups, nearest) if s == group_source]
                if not candidates:  # no row of that source has a label (a batch whose labels are all missing)
                    continue
                pooled = np.hstack(candidates)
                if pooled.shape[1] >= k:
                    # The k-th smallest only: with many labels a full sort of every row's candidates is the cost.
                    target[block] = np.partition(pooled, k - 1, axis=1)[:, k - 1]
            for label, column in class_column.items():
                own = [d for (_, group_label, *_), d in zip(self.groups, nearest) if group_label == label]
                if not own:
                    continue
                pooled = np.sort(np.hstack(own), axis=1)[:, :k]
                finite = np.isfinite(pooled)
                counts = finite.sum(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    means = np.where(finite, pooled, 0.0).sum(axis=1) / counts
                label_means[block, column] = np.where(counts > 0, means, np.inf)
        return NeighbourSummary(label_means, batch_kth, trusted_kth)

    def _nearest(self, group, queries, query_labels, sample_position, source) -> np.ndarray:
        """The ``k`` nearest distances of each query in one group, sorted, ``inf``-padded; shape (n, k)."""
        group_source, label, members, index = group
        k = self.k
        distances = np.full((len(queries), k), np.inf)
        wanted = min(k, len(members))
        found = index.kneighbors(queries, n_neighbors=wanted, return_distance=True)[0]
        distances[:, :wanted] = found
        if group_source != source:
            return distances
        # Queries that are rows of this group: their own row is not a neighbour.
        own_rows = np.flatnonzero((sample_position >= 0) & (query_labels == label))
        if not own_rows.size:
            return distances
        wanted = min(k, len(members) - 1)
        distances[own_rows] = np.inf
        if wanted < 1:
            return distances
        found, positions = index.kneighbors(queries[own_rows], n_neighbors=wanted + 1)
        own = members[positions] == sample_position[own_rows][:, None]
        keep = ~own
        # A query equal to another row may find that row first and itself
        # later, or not at all among ties: then its farthest goes instead.
        keep[~own.any(axis=1), -1] = False
        distances[own_rows, :wanted] = found[keep].reshape(len(own_rows), wanted)
        return distances


class _LastBatchCache:
    """The last result, kept for one more call on the same batch while the batch's matrix lives.

    A hit needs the very same batch matrix (the same memory, shape and
    strides: comparing a million rows would cost a good part of the search),
    trusted rows of the same content, and equal labels. The entry goes when
    it is taken (the second detector is the last to need it; at a million
    rows it holds about 60 MB) or when the batch's memory is freed.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entry: Optional[tuple] = None

    def get(self, batch, batch_labels, trusted, trusted_labels, key):
        with self._lock:
            entry = self._entry
        if entry is None:
            return None
        batch_ref, batch_view, trusted_digest, labels, entry_key, result = entry
        owner, view = _identity(batch)
        if entry_key != key or batch_ref() is not owner or batch_view != view:
            return None
        if trusted_digest != _digest(trusted) or labels != (_digest(batch_labels), _digest(trusted_labels)):
            return None
        with self._lock:
            if self._entry is entry:
                self._entry = None
        return result

    def put(self, batch, batch_labels, trusted, trusted_labels, key, result) -> None:
        owner, view = _identity(batch)
        try:
            batch_ref = weakref.ref(owner, self._forget)
        except TypeError:  # memory owned by something without weak references: never cached
            return
        labels = (_digest(batch_labels), _digest(trusted_labels))
        with self._lock:
            self._entry = (batch_ref, view, _digest(trusted), labels, key, result)

    def _forget(self, ref) -> None:
        with self._lock:
            if self._entry is not None and self._entry[0] is ref:
                self._entry = None


def _identity(array: np.ndarray):
    """The ndarray owning ``array``'s memory, and where in it ``array`` lies."""
    owner = array
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    return owner, (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)


def _digest(values) -> tuple:
    """Shape, type and a hash of an array's content (labels of any type as text)."""
    values = np.asarray(values)
    if values.dtype == object:
        values = values.astype(str)
    contiguous = np.ascontiguousarray(values)
    return contiguous.shape, contiguous.dtype.str, hashlib.blake2b(contiguous.data, digest_size=16).digest()


_CACHE = _LastBatchCache()
