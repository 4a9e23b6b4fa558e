"""Fuzzing whole runs: every row accounted for, or one clear error and nothing written.

Damaged copies of the tiny batch (broken cells, infinities, dropped or added
columns, few rows) go through the same stages as ``poisonguard run``. Either
the run publishes and every input row is in exactly one of clean.parquet and
quarantine.parquet, or it stops with one of the project's errors, naming the
file, having written no output and stored no quarantine entry. A batch
rejected as a whole writes its report to the state folder and nothing else.
"""
from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.errors import USER_ERRORS
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.core.tables import read_file
from poisonguard.pipelines.runner import execute
from tests.tiny_data import write_tiny_dataset

pytestmark = pytest.mark.slow

CELLS = st.sampled_from(["", "inf", "-Infinity", "1e400", "n/a?", "NaN", "0", "-1e9", "1.7e308", "-1.7e308", "ultraviolet",
                         " ", "x" * 300])


@st.composite
def damage(draw):
    return {
        "rows": draw(st.integers(min_value=1, max_value=45)),
        "cells": draw(st.lists(st.tuples(st.integers(0, 44), st.sampled_from(["x", "y", "shade", "label", "id"]), CELLS),
                               max_size=8)),
        "drop": draw(st.sampled_from([None, None, None, "shade", "y"])),
        "add": draw(st.booleans()),
        # Without one, every detector calibrates on the damaged batch itself: a few rows of it, at times.
        "reference": draw(st.booleans()),
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=damage())
# A batch of one row has no feature that varies (every detector once raised on an empty feature table), and
# one of three left label.knn no calibration score ("cannot calibrate"): both stopped the run.
@example(change={"rows": 1, "cells": [], "drop": None, "add": False, "reference": False})
@example(change={"rows": 3, "cells": [], "drop": None, "add": False, "reference": False})
# One row, its label missing: no batch row had a trusted label, and label.trusted_model and label.knn raised.
@example(change={"rows": 1, "cells": [(0, "label", "")], "drop": None, "add": False, "reference": True})
def test_a_damaged_batch_publishes_every_row_or_fails_cleanly(tiny, tmp_path_factory, monkeypatch, change):
    folder = tmp_path_factory.mktemp("run")
    monkeypatch.setenv("POISONGUARD_HOME", str(folder / "state"))
    batch = pd.read_csv(tiny["batch"], dtype=str).iloc[: change["rows"]].copy()
    for row, column, value in change["cells"]:
        if row < len(batch):
            batch.iloc[row, batch.columns.get_loc(column)] = value
    if change["drop"]:
        batch = batch.drop(columns=[change["drop"]])
    if change["add"]:
        batch["extra"] = "new"
    path = folder / "batch.csv"
    batch.to_csv(path, index=False)
    out = folder / "out"
    try:
        if change["reference"]:
            settings = make_settings([path], out=out, config_path=tiny["config"])
        else:
            settings = make_settings([path], out=out, label="label", id_column="id")
        summary = execute(settings)
    except USER_ERRORS as error:
        assert str(path) in str(error) or "batch" in str(error), str(error)
        assert "\n" not in str(error)
        assert not out.exists() and not [p for p in folder.iterdir() if p.name.startswith(".out")]
        assert stored_entries(folder) == 0
        return
    if summary.status == "rejected":
        assert not out.exists() and stored_entries(folder) == 0
        assert summary.report.is_file() and summary.batch_failures
        return
    clean = pd.read_parquet(out / "clean.parquet")["id"].astype(str)
    quarantined = pd.read_parquet(out / "quarantine.parquet")["id"].astype(str)
    assert sorted([*clean, *quarantined]) == sorted(batch["id"].astype(str))
    assert stored_entries(folder) == len(quarantined)
    # Reviewers get each quarantined row as the file gave it (its numeric text is held as numbers meanwhile).
    as_read = read_file(path).to_dict(orient="records")
    expected = {str(row["id"]): {column: None if pd.isna(value) else value for column, value in row.items()}
                for row in as_read}
    assert stored_rows(folder) == {row_id: expected[row_id] for row_id in quarantined}


def stored_rows(folder) -> dict[str, dict]:
    with sqlite3.connect(folder / "state" / "quarantine.db") as connection:
        return {row_id: json.loads(row) for row_id, row in connection.execute("SELECT row_id, row_json FROM quarantine")}


def stored_entries(folder) -> int:
    database = folder / "state" / "quarantine.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
