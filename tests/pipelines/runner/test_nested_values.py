"""A cell as deeply nested as reading allows goes through a whole run: report, store and evidence walk it."""
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
