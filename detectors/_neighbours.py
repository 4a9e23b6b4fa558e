"""Neighbour searches over many query rows, a block of rows at a time.

A search returns each query's neighbour distances and positions (16 bytes a
neighbour); for a million queries that is about 100 MB per search that the
caller reduces at once to one number per row. Searching a block at a time
holds one block's worth. Blocks are a multiple of scikit-learn's 256-row
distance chunks, so each row meets the same arithmetic as in one search.
"""
from __future__ import annotations

from typing import Iterator, Optional

QUERY_BLOCK_ROWS = 65_536


def query_blocks(n_rows: int, block_rows: Optional[int] = None) -> Iterator[slice]:
    """Consecutive slices covering ``range(n_rows)``, each at most ``block_rows`` (``QUERY_BLOCK_ROWS``) long."""
    block_rows = block_rows or QUERY_BLOCK_ROWS
    for start in range(0, n_rows, block_rows):
        yield slice(start, min(start + block_rows, n_rows))
