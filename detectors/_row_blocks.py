"""A batch's rows a block at a time: what one pass over a million rows holds at once.

Per-row temporaries of a whole batch are hundreds of MB each: a million
rows' neighbour distances and positions (16 bytes a neighbour), a sorted
copy of a score per row and feature, ECOD's count tables. A block of rows at
a time holds one block's worth. Each row's result depends on its own row
only, so the blocks change no result; they are a multiple of scikit-learn's
256-row distance chunks, so a neighbour search meets the same arithmetic.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

BLOCK_ROWS = 65_536
# A block's temporaries of a score per row and feature are sized for this many
# features; a wider table takes proportionally fewer rows at a time
# (``rows_per_block``). 65,536 rows of 190 encoded features, a wide mixed
# table's, were 100 MB an array, and ECOD held eight such arrays per block.
BLOCK_FEATURES = 20


def row_blocks(n_rows: int, block_rows: Optional[int] = None) -> Iterator[slice]:
    """Consecutive slices covering ``range(n_rows)``, each at most ``block_rows`` (``BLOCK_ROWS``) long."""
    block_rows = block_rows or BLOCK_ROWS
    for start in range(0, n_rows, block_rows):
        yield slice(start, min(start + block_rows, n_rows))


def rows_per_block(n_features: int, block_rows: Optional[int] = None) -> int:
    """Rows a block of ``n_features`` columns takes: ``block_rows`` (``BLOCK_ROWS``) up to ``BLOCK_FEATURES`` features, fewer beyond.

    For passes whose temporaries hold a value per row and feature, so that a
    block holds about as many cells however wide the table is.
    """
    block_rows = block_rows or BLOCK_ROWS
    return max(1, block_rows * BLOCK_FEATURES // max(int(n_features), BLOCK_FEATURES))


def rows_where(matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``matrix[mask]``, or ``matrix`` itself when ``mask`` keeps every row.

    Boolean indexing always copies, and the usual mask (rows whose label the
    trusted rows know) keeps them all: three million rows of twenty features
    are 480 MB copied for nothing. Callers only read the result.
    """
    return matrix if bool(np.all(mask)) else matrix[mask]


class StackedRows:
    """The rows of ``first`` then those of ``second``, indexed as one matrix without stacking them.

    Confident learning cross-fits on the trusted rows and a sample of the
    batch pooled, and predicts every other batch row: ``numpy.vstack`` of
    the two was a copy of the whole batch (480 MB at three million rows of
    twenty features) to read the sample and one fold's rows at a time.
    Indexing copies only the rows asked for, in the order asked.

    Parameters
    ----------
    first, second : numpy.ndarray, shape (n_first, n_features) and (n_second, n_features)
    """

    def __init__(self, first: np.ndarray, second: np.ndarray):
        self.first = first
        self.second = second
        self.shape = (len(first) + len(second), first.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """Rows by a boolean mask or integer positions, shape (n_selected, n_features)."""
        rows = np.asarray(rows)
        positions = np.flatnonzero(rows) if rows.dtype == bool else rows
        from_first = positions < len(self.first)
        selected = np.empty((len(positions), self.shape[1]), dtype=np.result_type(self.first, self.second))
        selected[from_first] = self.first[positions[from_first]]
        selected[~from_first] = self.second[positions[~from_first] - len(self.first)]
        return selected
