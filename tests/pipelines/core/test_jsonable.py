"""Plain JSON from numpy, pandas and time values."""
import datetime as dt
import json

import numpy as np
import pandas as pd

from poisonguard.pipelines.core.jsonable import dumps, to_jsonable


def test_to_jsonable_handles_numpy_pandas_and_time():
    value = {"i": np.int32(4), "f": np.float32(0.5), "b": np.bool_(True), "nan": float("nan"),
             "na": pd.NA, "nat": pd.NaT, "ts": pd.Timestamp("2024-05-01T12:00:00Z"),
             "date": dt.date(2024, 5, 1), "arr": np.array([1, 2]), "inf": np.inf}
    assert to_jsonable(value) == {"i": 4, "f": 0.5, "b": True, "nan": None, "na": None, "nat": None,
                                  "ts": "2024-05-01T12:00:00+00:00", "date": "2024-05-01", "arr": [1, 2],
                                  "inf": None}
    assert json.loads(dumps(value))["ts"] == "2024-05-01T12:00:00+00:00"
    # Plain and numpy floats take a shortcut; it keeps the same answers.
    floats = [1.5, np.float64(2.5), float("-inf"), np.float64("nan"), np.float64(np.inf), True, 3, "x", None]
    assert to_jsonable(floats) == [1.5, 2.5, None, None, None, True, 3, "x", None]
    assert [type(item) for item in to_jsonable(floats)[:2]] == [float, float]
