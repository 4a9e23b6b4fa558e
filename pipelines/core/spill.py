"""A large batch's numeric columns, out of memory while no stage reads them.

From encoding to the decision every detector reads the encoded features,
never the batch's own columns. Yet those columns (and the typed view, which
shares them) are held under every detector: a million rows of 20 numbers
are 153 MB, as much as their encoding. ``spill_numbers`` writes them to a
file that is unlinked as soon as it is created, so nothing is left behind
however the run ends, and maps it back read-only: the frames keep their
values, dtypes and shape, and the process holds a page of them only while
something reads it. The stages after the decision read the rows again
(evidence, the clean file, the quarantined rows); ``SpilledColumns.release``
gives the pages back after each, before the next reads them again.

The file is written beside the run's output (the disk the user chose for
it), not in the temporary folder, which may be memory itself (tmpfs).
"""
from __future__ import annotations

import mmap
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

# Below this many bytes of numeric columns a batch stays in memory: the
# gain is small, and the file costs a write.
SPILL_MIN_BYTES = 64 * 2**20
# Each column starts at a multiple of this many bytes, as an allocator aligns
# arrays, so vectorised reads meet the same alignment.
ALIGNMENT = 64


class SpilledColumns:
    """The read-only mapping the spilled columns are views of."""

    def __init__(self, mapping: mmap.mmap, n_bytes: int):
        self._mapping = mapping
        self.n_bytes = n_bytes

    def release(self) -> None:
        """Give back the pages read so far; a later read finds them in the file (or the page cache) again."""
        if hasattr(mmap, "MADV_DONTNEED"):
            # Read-only and shared: dropping a page loses nothing.
            self._mapping.madvise(mmap.MADV_DONTNEED)


def spillable(series: pd.Series) -> bool:
    """A column held as one plain NumPy array of fixed-size values (numbers, flags, times)."""
    return isinstance(series.dtype, np.dtype) and series.dtype.kind in "biufmM"


def spill_numbers(
    frames: Sequence[pd.DataFrame], folder: Path, *, min_bytes: Optional[int] = None
) -> Optional[tuple[list[pd.DataFrame], SpilledColumns]]:
    """``frames`` with their numeric columns read from a file mapped back read-only.

    A column that several frames share (the typed view holds the raw
    column where typing changed nothing) is written once, and the new frames
    share its view as the old ones shared the array. Other columns are the
    same arrays as before.

    Parameters
    ----------
    frames : sequence of pandas.DataFrame
    folder : Path
        Where the (immediately unlinked) file is written.
    min_bytes : int, optional
        Spill only from this many bytes of numeric columns; ``SPILL_MIN_BYTES`` by default.

    Returns
    -------
    (frames, SpilledColumns) or None
        None when the columns are fewer bytes than ``min_bytes`` or the file
        cannot be written (a full or read-only disk): the frames then stay
        as they are.
    """
    min_bytes = SPILL_MIN_BYTES if min_bytes is None else min_bytes
    arrays: dict[tuple, np.ndarray] = {}  # one per distinct column memory
    keys: list[list] = []  # per frame, each column's key in ``arrays`` (None: not spilled)
    for frame in frames:
        keys.append([])
        for position in range(frame.shape[1]):
            column = frame.iloc[:, position]
            key = None
            if spillable(column):
                values = column.to_numpy(copy=False)
                key = _memory_key(values)
                arrays.setdefault(key, values)
            keys[-1].append(key)
    offsets, end = {}, 0
    for key, values in arrays.items():
        offsets[key] = end
        end += -(-values.nbytes // ALIGNMENT) * ALIGNMENT
    if not end or end < min_bytes:
        return None
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".poisonguard-spill-") as handle:
            for key, values in arrays.items():
                handle.seek(offsets[key])
                handle.write(np.ascontiguousarray(values).view(np.uint8).data)
            handle.truncate(end)
            handle.flush()
            mapping = mmap.mmap(handle.fileno(), end, access=mmap.ACCESS_READ)
    except OSError:
        return None
    views = {
        key: np.frombuffer(mapping, dtype=values.dtype, count=len(values), offset=offsets[key])
        for key, values in arrays.items()
    }
    spilled = [
        _frame_like(frame, [frame.iloc[:, position].array if key is None else views[key]
                            for position, key in enumerate(frame_keys)], frame.index)
        for frame, frame_keys in zip(frames, keys)
    ]
    return spilled, SpilledColumns(mapping, end)


def _memory_key(values: np.ndarray) -> tuple:
    """Where an array's values lie: arrays with equal keys hold the same values."""
    return values.__array_interface__["data"][0], values.shape, values.strides, values.dtype.str


def take_rows(frame: pd.DataFrame, rows: np.ndarray, release: Callable[[], None]) -> pd.DataFrame:
    """``frame[rows]`` (a boolean mask), taken a column at a time, ``release`` called after each spilled column.

    A few thousand rows scattered over a million touch every page of a
    column: taken all at once, every spilled page is back in memory
    together (as much as the batch's numbers again).
    """
    taken = []
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        if spillable(column):
            taken.append(column.to_numpy(copy=False)[rows])
            release()
        else:
            taken.append(column.array[rows])
    return _frame_like(frame, taken, frame.index[rows])


def _frame_like(frame: pd.DataFrame, columns: list, index: pd.Index) -> pd.DataFrame:
    """A frame of ``columns`` (arrays, not copied) with ``frame``'s column names, dtypes and attributes."""
    # Each a Series of the original dtype: given bare, an object array of
    # text would be read as pandas' text dtype.
    dtypes = frame.dtypes.tolist()
    new = pd.DataFrame(
        {position: pd.Series(values, index=index, dtype=dtypes[position], copy=False)
         for position, values in enumerate(columns)},
        index=index, copy=False,
    )
    new.columns = frame.columns
    new.attrs = dict(frame.attrs)
    return new
