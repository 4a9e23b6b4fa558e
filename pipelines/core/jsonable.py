"""Plain JSON from anything a frame or a numpy array may hold.

Stored rows, API responses and provenance all pass through here, so a value
never fails to serialise and missing values are ``None`` everywhere.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np
import pandas as pd


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to plain JSON types, recursively.

    numpy scalars become Python numbers, NaN / NA / NaT / None become
    ``None``, timestamps and dates ISO 8601 strings, bytes hex, and anything
    else unknown its ``str``, so a stored row never fails to serialise.
    """
    # Exact types first: the cells of a stored row are nearly all these, and
    # a store of tens of thousands of rows converts millions of them.
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float or kind is np.float64:
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (bool, str)):  # subclasses, e.g. numpy's str_
        return value
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (pd.Timedelta, dt.timedelta)):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    return str(value)


def dumps(value: Any) -> str:
    """Strict JSON (no NaN) of ``value`` after :func:`to_jsonable`."""
    return json.dumps(to_jsonable(value), allow_nan=False, ensure_ascii=False)
