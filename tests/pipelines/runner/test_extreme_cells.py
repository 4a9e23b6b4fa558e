"""Extreme cells go through a whole run: the deepest nesting reading allows, the largest finite floats."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from poisonguard.pipelines.core import tables
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.runner import execute
from tests.cli_helpers import entry_id, shown


def test_the_deepest_value_reading_allows_is_judged_reported_and_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONGUARD_HOME", str(tmp_path / "state"))
    rng = np.random.default_rng(0)
    deepest = []
    for _ in range(tables.MAX_NESTING - 1):
        deepest = [deepest]
    rows = [{"id": f"b-{i:03d}", "x": float(rng.normal()), "meta": [i % 3], "label": "ab"[i % 2]} for i in range(80)]
    rows[7].update(x=90.0, meta=deepest)  # far away: quarantined, so its cells reach the report and the store
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    summary = execute(make_settings([batch], out=tmp_path / "out", label="label", id_column="id"))

    assert summary.status == "succeeded"
    quarantine = pd.read_parquet(summary.out / "quarantine.parquet").set_index("id")
    assert "b-007" in quarantine.index
    assert "b-007" in (summary.out / "report.html").read_text(encoding="utf-8")
    assert shown(entry_id("b-007"))["row_id"] == "b-007"


def test_the_largest_finite_floats_are_quarantined_not_refused(tmp_path, monkeypatch):
    # In a column whose spread is 1e-300, 1.7e308 scaled to inf and every detector refused the batch
    # ("feature column 'x' has a missing or infinite value"): nothing was published.
    monkeypatch.setenv("POISONGUARD_HOME", str(tmp_path / "state"))
    rng = np.random.default_rng(10)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(300)], "x": rng.normal(size=300) * 1e-300,
                          "y": rng.normal(size=300), "label": rng.choice(["a", "b"], 300)})
    frame.loc[7, "x"], frame.loc[8, "y"] = 1.7e308, -1.7e308
    frame.iloc[150:].to_csv(tmp_path / "reference.csv", index=False)
    frame.iloc[:150].to_csv(tmp_path / "batch.csv", index=False)
    for reference in (tmp_path / "reference.csv", None):
        out = tmp_path / f"out-{reference is None}"
        summary = execute(make_settings([tmp_path / "batch.csv"], out=out, label="label", id_column="id",
                                        reference=reference))
        assert summary.status == "succeeded"
        assert {"r7", "r8"} <= set(pd.read_parquet(out / "quarantine.parquet")["id"])
