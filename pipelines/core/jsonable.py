"""Plain JSON from anything a frame or a numpy array may hold.

Stored rows, API responses and provenance all pass through here, so a value
never fails to serialise and missing values are ``None`` everywhere.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any, Optional

import numpy as np
import orjson
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
    """Strict JSON (no NaN) of ``value`` after :func:`to_jsonable`, compact, UTF-8 unescaped.

    Written by orjson: storing tens of thousands of quarantined rows wrote
    their JSON ten times slower with ``json``. What orjson refuses (an int
    beyond 64 bits, nesting past 255 levels, a lone surrogate) goes to
    ``json`` with the same separators.
    """
    plain = to_jsonable(value)
    try:
        return orjson.dumps(plain).decode()
    except orjson.JSONEncodeError:
        return json.dumps(plain, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


# A stored cell is for a reviewer to read: a 50 MB cell would make the store
# (and every page showing the entry) that much bigger. The whole value stays
# in the run's signed quarantine.parquet, which emit reads.
STORED_CELL_LIMIT = 1000
_CUT_MARK = re.compile(r"…\[(\d+) characters; the whole value is in the run's quarantine\.parquet\]$")


def capped_cells(value):
    """``value`` with every string longer than ``STORED_CELL_LIMIT`` cut, and marked as cut (recursively)."""
    if isinstance(value, str) and len(value) > STORED_CELL_LIMIT:
        return value[:STORED_CELL_LIMIT] + f"…[{len(value)} characters; the whole value is in the run's quarantine.parquet]"
    # Leaves that stay as they are are not visited: evidence for tens of
    # thousands of rows holds millions of them.
    # (The test is written out, not a function: a call per leaf was half the time.)
    if isinstance(value, dict):
        return {
            key: item if type(item) in _NEVER_CUT or (type(item) is str and len(item) <= STORED_CELL_LIMIT)
            else capped_cells(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [
            item if type(item) in _NEVER_CUT or (type(item) is str and len(item) <= STORED_CELL_LIMIT)
            else capped_cells(item)
            for item in value
        ]
    return value


_NEVER_CUT = frozenset({int, float, bool, type(None)})


def cut_cell(value) -> Optional[tuple[str, int]]:
    """``(kept head, original length)`` of a stored cell that ``capped_cells`` cut, else None."""
    match = _CUT_MARK.search(value) if isinstance(value, str) else None
    return (value[: match.start()], int(match.group(1))) if match else None


def plain_dumps(value: Any) -> str:
    """``dumps(value)`` for values of plain JSON types, without converting them first.

    orjson writes str, int, float (NaN and inf as null), bool, None, lists,
    tuples and str-keyed dicts exactly as ``dumps`` does after
    ``to_jsonable``; anything else (numpy scalars, other keys) goes through
    ``dumps``.
    """
    try:
        return orjson.dumps(value, default=_not_plain).decode()
    except orjson.JSONEncodeError:
        return dumps(value)


def _not_plain(value: Any):
    raise TypeError(f"not a plain JSON value: {type(value).__name__}")


def evidence_json(evidence: dict, histogram_texts: dict[int, str], *, text_keys: bool = False) -> str:
    """``dumps(capped_cells(evidence))``, each histogram serialised once for all the rows that show it.

    A column's histogram (``core.evidence``) is one object shared by the
    evidence of every row that plots it; a large batch quarantines tens of
    thousands of rows, and serialising the same forty numbers again for each
    took most of the time spent storing them. ``histogram_texts`` maps a
    histogram object's id to its JSON text; the objects must stay alive
    while it is in use (``evidence_by_row`` holds them). ``text_keys``:
    every dict key in ``evidence`` is a str (``plain_dumps``).
    """
    dump = plain_dumps if text_keys else dumps
    histograms = evidence.get("histograms")
    if not isinstance(histograms, dict) or not histograms or next(reversed(evidence)) != "histograms":
        return dump(capped_cells(evidence))
    head = dump(capped_cells({key: value for key, value in evidence.items() if key != "histograms"}))
    parts = []
    for column, histogram in histograms.items():
        text = histogram_texts.get(id(histogram))
        if text is None:
            text = histogram_texts[id(histogram)] = dump(capped_cells(histogram))
        parts.append(f"{dumps(str(column))}:{text}")
    histograms_text = '"histograms":{' + ",".join(parts) + "}"
    return head[:-1] + ("," if head != "{}" else "") + histograms_text + "}"
