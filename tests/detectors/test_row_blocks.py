"""Neighbour searches and model predictions a block of rows at a time (detectors._row_blocks) give exactly the one-block findings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors import _row_blocks, _sampling, outliers
from poisonguard.detectors._row_blocks import StackedRows, row_blocks, rows_per_block, rows_where
from poisonguard.detectors.registry import get_detector
from tests.detectors.test_backdoor import three_classes


def test_blocks_cover_every_row_once():
    assert [(b.start, b.stop) for b in row_blocks(10, 4)] == [(0, 4), (4, 8), (8, 10)]
    assert list(row_blocks(0, 4)) == []


def test_a_wider_table_takes_fewer_rows_a_block():
    assert rows_per_block(5) == rows_per_block(20) == _row_blocks.BLOCK_ROWS
    assert rows_per_block(190) == 65_536 * 20 // 190  # about as many cells as 65,536 rows of 20 features
    assert rows_per_block(40, 64) == 32
    assert rows_per_block(10**9, 64) == 1


def _wide_batch(n_rows, seed):
    """Three labels in 6 numeric features and 40 one-hot columns (a wide mixed table, encoded)."""
    features, labels = three_classes(n_rows, seed=seed)
    rng = np.random.default_rng(seed + 10)
    codes = np.searchsorted(np.unique(labels), labels)
    levels = (codes[:, None] + rng.integers(0, 3, (n_rows, 8))) % 5  # 8 categories of 5 levels, tied to the label
    one_hot = (levels[:, :, None] == np.arange(5)).reshape(n_rows, 40).astype(float)
    return pd.concat([features, pd.DataFrame(one_hot, columns=[f"level_{i}" for i in range(40)])], axis=1), labels


@pytest.mark.parametrize("name", ["outlier.ecod", "outlier.cellwise", "outlier.class_conditional"])
@pytest.mark.parametrize("with_reference", [True, False])
def test_wide_findings_do_not_depend_on_the_block_size(monkeypatch, name, with_reference):
    trusted, trusted_labels = _wide_batch(600, seed=0)
    batch, labels = _wide_batch(1_500, seed=1)
    batch.iloc[:20, :6] += 6.0  # far rows, so that some are flagged
    if name == "outlier.cellwise":
        # It judges how values fit one another, not how far out they are: a
        # total of two features, contradicted on the far rows.
        trusted, batch = (frame.assign(total=frame.iloc[:, 0] + frame.iloc[:, 1]) for frame in (trusted, batch))
        batch.iloc[:20, -1] *= -1.0
    # One block; blocks of 8 rows (3 of 46 features; without a reference
    # ECOD scores the rows outside its sample 13 at a time).
    runs = _findings_by_block_size(monkeypatch, name, (trusted, trusted_labels) if with_reference else None,
                                   batch, labels, (10**9, 8))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert runs[0]["flagged"].sum() >= 10


def _findings_by_block_size(monkeypatch, name, reference, batch, labels, block_sizes) -> list:
    """Detector ``name``'s findings on the batch (against ``reference``, a (rows, labels) pair, or itself) per block size."""
    ids = [f"row {i}" for i in range(len(batch))]
    runs = []
    for block_rows in block_sizes:
        monkeypatch.setattr(_row_blocks, "BLOCK_ROWS", block_rows)
        monkeypatch.setattr(outliers, "SCORE_CHUNK_ROWS", block_rows)
        detector = get_detector(name, alpha=0.01)
        if reference is not None:
            runs.append(detector.fit(*reference).findings(batch, labels, ids))
        else:
            runs.append(detector.self_findings(batch, labels, ids))
    return runs


def test_rows_where_copies_only_when_a_row_is_left_out():
    matrix = np.arange(12.0).reshape(4, 3)
    assert rows_where(matrix, np.ones(4, dtype=bool)) is matrix
    some = rows_where(matrix, np.array([True, False, True, True]))
    np.testing.assert_array_equal(some, matrix[[0, 2, 3]])
    assert not np.shares_memory(some, matrix)


def _flooded_batch():
    batch, labels = three_classes(1_500, seed=1)
    rng = np.random.default_rng(3)
    flipped = rng.choice(len(batch), 40, replace=False)
    labels = labels.copy()
    labels[flipped] = np.where(labels[flipped] == labels[0], labels[1], labels[0])
    copies = np.repeat(batch[:1], 30, axis=0) + rng.normal(scale=1e-4, size=(30, batch.shape[1]))
    return np.vstack([batch, copies]), np.concatenate([labels, np.repeat(labels[:1], 30)])


@pytest.mark.parametrize(
    "name", ["label.knn", "duplicates.flood", "label.trusted_model", "label.confident_learning"]
)
@pytest.mark.parametrize("with_reference", [True, False])
def test_findings_do_not_depend_on_the_block_size(monkeypatch, name, with_reference):
    trusted, trusted_labels = three_classes(600, seed=0)
    batch, labels = _flooded_batch()
    # A sampled population, as a batch past 100,000 rows gets: rows in and out of it take different paths.
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 700)
    runs = _findings_by_block_size(monkeypatch, name, (trusted, trusted_labels) if with_reference else None,
                                   batch, labels, (10**9, 64))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    # A real comparison, not two empty verdicts (without a reference the label
    # detectors flag none of these 40 flips, but they do single rows out).
    assert runs[0]["flagged"].any() or runs[0]["p_value"].min() < 0.05


def test_stacked_rows_index_as_the_stacked_matrix_would():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(5, 3)), rng.normal(size=(7, 3))
    stacked, pool = np.vstack([first, second]), StackedRows(first, second)
    assert len(pool) == 12 and pool.shape == (12, 3)
    mask = rng.uniform(size=12) < 0.5
    np.testing.assert_array_equal(pool[mask], stacked[mask])
    positions = np.array([11, 0, 4, 5, 4])  # across the seam, out of order, repeated
    np.testing.assert_array_equal(pool[positions], stacked[positions])
    assert pool[np.zeros(12, dtype=bool)].shape == (0, 3)
