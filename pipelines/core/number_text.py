"""A column of numbers read from text, held once: as its numbers, plus the few cells whose text they do not give back.

A CSV batch holds every cell twice from reading to publishing: as the text
read (what a quarantined row is stored with, exactly) and as the number the
checks read it as. Arrow text costs about 25 bytes a cell; a million rows of
twenty numeric columns held 0.5 GB of text nobody read until the few
quarantined rows were written. Most cells' text is what Arrow writes for
their number ("0.1", "-3", "1e+20"), so the column is kept as its numbers
and only the other cells' text is kept ("1.50", "1e-05", "n/a?"), by
position. ``text_of`` rebuilds the text of any rows exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute

# Past this share of cells kept as text, the column is kept whole. A kept cell
# costs about 34 bytes (its text, an offset and its position), a cell of the
# text column about 26 (its text and an offset): past a quarter the saving is
# small, and giving the text back looks each kept cell up.
MAX_KEPT_SHARE = 0.25
# How a whole number's text is written besides Arrow's "3": pandas writes a
# float column's whole numbers as "3.0".
WHOLE_NUMBER_SUFFIXES = ("", ".0")
# Rows compared at once (``_kept_positions``).
BLOCK_ROWS = 65_536


@dataclass(frozen=True)
class NumberText:
    """How to give back a text column that is held as ``numbers``.

    Attributes
    ----------
    dtype : pandas dtype
        The text column's, as read.
    whole_suffix : str
        Appended to Arrow's text of a whole number ("" or ".0").
    positions : numpy.ndarray of int64, sorted
        Rows whose text the number does not give back.
    texts : pyarrow.StringArray
        Those rows' text, in the same order (never missing).
    """

    dtype: Any
    whole_suffix: str
    positions: np.ndarray
    texts: pa.Array


def hold_as_numbers(
    text: pd.Series, numbers: pd.Series, max_kept_share: float = MAX_KEPT_SHARE
) -> Optional[NumberText]:
    """What gives ``text`` back from ``numbers``; None when ``text`` is better kept as it is.

    Parameters
    ----------
    text : Series of Arrow-backed text, shape (n_rows,)
        A column as read; missing cells are missing.
    numbers : Series of float64 or int64, shape (n_rows,)
        The same column as numbers (NaN where a cell is missing or did not parse).
    max_kept_share : float
        Keep ``text`` as it is when more of its cells than this share would be kept.
    """
    if not _arrow_text(text) or numbers.dtype.kind not in "fi" or len(text) != len(numbers):
        return None
    as_read = pa.array(text)
    if isinstance(as_read, pa.ChunkedArray):
        as_read = as_read.combine_chunks()
    values = numbers.to_numpy()
    allowed = int(max_kept_share * len(text))
    for suffix in WHOLE_NUMBER_SUFFIXES:
        positions = _kept_positions(as_read, values, suffix, allowed)
        if positions is not None:
            return NumberText(dtype=text.dtype, whole_suffix=suffix, positions=positions,
                              texts=as_read.take(pa.array(positions)))
    return None


def _kept_positions(as_read: pa.Array, values: np.ndarray, whole_suffix: str, allowed: int) -> Optional[np.ndarray]:
    """Rows whose text ``values`` do not write back with ``whole_suffix``; None past ``allowed`` of them.

    A block of rows at a time: the text written for a whole column is as
    large as the column, and the columns are held two at a time.
    """
    found, count = [], 0
    for start in range(0, len(values), BLOCK_ROWS):
        block = slice(start, start + BLOCK_ROWS)
        written = _written(values[block], whole_suffix).cast(as_read.type)
        differs = np.flatnonzero(_differs(as_read.slice(start, len(written)), written)) + start
        count += len(differs)
        if count > allowed:
            return None
        found.append(differs)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def text_of(numbers: pd.Series, held: NumberText, rows: Optional[np.ndarray] = None) -> pd.Series:
    """The text as read of ``numbers``' rows at ``rows`` (positions; all when None), indexed as ``numbers`` is."""
    rows = np.arange(len(numbers)) if rows is None else np.asarray(rows, dtype=np.int64)
    written = _written(numbers.to_numpy()[rows], held.whole_suffix)
    at = np.searchsorted(held.positions, rows)
    kept = np.zeros(len(rows), dtype=bool)
    inside = at < len(held.positions)
    kept[inside] = held.positions[at[inside]] == rows[inside]
    if kept.any():
        # Arrow fills the masked slots with the replacements in order: the kept texts, in row order.
        kept_texts = held.texts.take(pa.array(at[kept]))
        written = pa_compute.replace_with_mask(written.cast(held.texts.type), pa.array(kept), kept_texts)
    return pd.Series(pd.array(written, dtype=held.dtype), index=numbers.index[rows], name=numbers.name)


def _arrow_text(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow"


def _written(values: np.ndarray, whole_suffix: str) -> pa.Array:
    """Each number as Arrow writes it (missing where NaN), whole numbers followed by ``whole_suffix``."""
    written = pa_compute.cast(pa.array(values, from_pandas=True), pa.string())
    if whole_suffix:
        if values.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                whole = np.isfinite(values) & (values == np.round(values))
        else:
            whole = np.ones(len(values), dtype=bool)
        if whole.any():
            suffixed = pa_compute.binary_join_element_wise(written, whole_suffix, "")
            written = pa_compute.if_else(pa.array(whole), suffixed, written)
    return written


def _differs(as_read: pa.Array, written: pa.Array) -> np.ndarray:
    """Rows whose text is not ``written`` (both missing counts as the same)."""
    same = pa_compute.equal(as_read, written)
    both_missing = pa_compute.and_(as_read.is_null(), written.is_null())
    same = pa_compute.or_kleene(pa_compute.fill_null(same, False), both_missing)
    return ~same.to_numpy(zero_copy_only=False)
