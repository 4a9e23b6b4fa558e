"""Histogram bin edges that a float can always tell apart.

``numpy.histogram`` refuses a range narrower than its values' precision
("Too many bins for data range"): 64-bit ids near 2**63 that differ by a
few hundred, timestamps in nanoseconds a second apart. Such a column is
still shown, in as many bins as its floats can separate.
"""
from __future__ import annotations

import numpy as np


def histogram_edges(low: float, high: float, bins: int) -> np.ndarray:
    """Strictly increasing edges from ``low`` to ``high``: ``bins`` bins, or fewer where floats run out.

    A single value (``high <= low``) gets one bin around it, half a unit
    either side as ``numpy.histogram`` gives it, or wider where half a unit
    is below the value's precision.
    """
    if not high > low:
        pad = 0.5 if low - 0.5 < low < low + 0.5 else abs(low) * 1e-9
        # At the largest float one side cannot widen; the other still gives the bin its width.
        low, high = (value if np.isfinite(value) else edge for value, edge in ((low - pad, low), (high + pad, high)))
    try:
        with np.errstate(over="raise", invalid="raise"):
            return np.unique(np.linspace(low, high, bins + 1))
    except FloatingPointError:
        pass
    # Near the largest floats (-1.7e308 to 1.7e308) the span is no float: each edge as a mix of the two ends.
    share = np.arange(bins + 1) / bins
    with np.errstate(over="ignore"):
        edges = low * (1.0 - share) + high * share
    edges[0], edges[-1] = low, high
    return np.unique(np.clip(edges, low, high))


def histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of finite ``values`` (at least one) over their range, as ``numpy.histogram(values, bins)``."""
    edges = histogram_edges(float(values.min()), float(values.max()), bins)
    counts, _ = np.histogram(values, bins=edges)
    return counts, edges
