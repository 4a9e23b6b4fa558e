"""The trusted summaries shown with each quarantined row: rounded for a person, never misleading."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.decision import Decision
from poisonguard.pipelines.core.evidence import HISTOGRAM_BINS, _numeric_fact, _numeric_summary
from poisonguard.pipelines.core.histograms import histogram_edges

values = st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(numbers=values)
@example(numbers=[0.0, 5e-324])  # numpy.histogram: "Too many bins for data range"; the evidence once raised it too
def test_rounded_summary_keeps_bins_apart_and_the_range_around_every_value(numbers):
    array = np.array(numbers)
    summary = _numeric_summary(pd.Series(array))
    # numpy's edges wherever numpy can draw them (tests/pipelines/core/test_histograms.py), fewer bins where not.
    exact_edges = histogram_edges(float(array.min()), float(array.max()), HISTOGRAM_BINS)
    width = exact_edges[1] - exact_edges[0]
    edges = np.array(summary["histogram"]["edges"])
    slack = 4 * np.spacing(np.abs(exact_edges).max())  # float rounding of the decimal shift itself
    # Each edge within a thousandth of a bin of numpy's, so the bins stay in order and apart.
    assert np.all(np.abs(edges - exact_edges) <= 0.0005 * width + slack)
    assert np.all(np.diff(edges) > 0)
    shown = summary["shown"]
    assert shown["min"] <= array.min() + slack and shown["max"] >= array.max() - slack
    assert array.min() - shown["min"] <= 0.001 * width + slack
    assert shown["max"] - array.max() <= 0.001 * width + slack
    # Every value of the column is shown within the range it was judged against.
    fact = _numeric_fact("x", float(array.min()), summary)
    assert fact["note"] == "within the trusted range" and fact["value"] == array.min()


def test_summary_of_a_typical_column_is_short_and_exact_where_it_matters():
    column = pd.Series(np.random.default_rng(0).normal(0.0, 3.0, 5000))
    summary = _numeric_summary(column)
    assert summary["shown"] == {"min": -11.699, "max": 9.772, "median": -0.083}
    assert summary["histogram"]["edges"][:3] == [-11.698, -10.625, -9.551]
    assert summary["median"] == float(column.median())  # unusualness uses the exact statistics
    fact = _numeric_fact("x", 9.5, summary)
    assert fact["trusted_range"] == [-11.699, 9.772] and fact["value"] == 9.5


def test_a_large_reference_gives_neighbours_from_a_seeded_sample(monkeypatch):
    from poisonguard.pipelines.core import evidence

    rng = np.random.default_rng(1)
    trusted = pd.DataFrame({"x": rng.normal(size=400), "label": np.where(rng.random(400) < 0.5, "a", "b")})
    ids = pd.Series(["r0", "r1"])
    batch = pd.DataFrame({"x": [0.1, 5.0], "label": ["a", "b"]})
    whole, sampled = _whole_and_sampled(monkeypatch, *_one_feature_run(batch, ids, trusted), ["r0", "r1"])

    assert whole["r0"]["population"] == "trusted reference"
    for row_id in ("r0", "r1"):
        found = sampled[row_id]
        assert found["population"] == "trusted reference (a seeded sample of 100 of its rows)"
        assert len(found["nearest"]) == evidence.NEIGHBOURS
        assert found["nearest"][0]["distance"] >= whole[row_id]["nearest"][0]["distance"]
        # The trusted distribution shown is still every trusted row's.
        assert found["features"] == whole[row_id]["features"]


def _one_feature_run(batch: pd.DataFrame, ids: pd.Series, trusted: pd.DataFrame = None):
    """The inputs and features ``collect_evidence`` reads, for frames of one numeric feature ``x`` and a label."""
    inputs = SimpleNamespace(
        reference_typed=SimpleNamespace(typed=trusted) if trusted is not None else None,
        batch_typed=SimpleNamespace(typed=batch),
        # A batch held in memory (``LoadedTable`` before ``spill_numbers``).
        batch=SimpleNamespace(row_ids=ids, take_rows=lambda frame, rows: frame[rows], release_pages=lambda: None),
        feature_columns=["x"], kinds={"x": "numeric"}, label="label",
    )
    features = SimpleNamespace(
        trusted_features=trusted[["x"]] if trusted is not None else None,
        trusted_labels=trusted["label"].to_numpy(dtype=object) if trusted is not None else None,
        batch_features=batch[["x"]], batch_labels=batch["label"].to_numpy(dtype=object),
        batch_row_ids=ids.to_numpy(dtype=object),
    )
    return inputs, features


def _whole_and_sampled(monkeypatch, inputs, features, quarantined) -> tuple[dict, dict]:
    """Each quarantined row's evidence (as parsed JSON) among every row, then among a sample of at most 100."""
    from poisonguard.pipelines.core import evidence

    decision = Decision(quarantined_ids=list(quarantined), kept_ids=[], flagged=pd.DataFrame(), per_check=pd.DataFrame(),
                        notes=[])
    whole = evidence.collect_evidence(inputs, features, decision)
    monkeypatch.setattr(evidence, "EVIDENCE_POPULATION_ROWS", 100)
    sampled = evidence.collect_evidence(inputs, features, decision)
    return ({row_id: json.loads(text) for row_id, text in whole.items()},
            {row_id: json.loads(text) for row_id, text in sampled.items()})


def test_without_a_reference_a_large_batch_finds_neighbours_in_a_seeded_sample(monkeypatch):
    from poisonguard.pipelines.core import evidence

    rng = np.random.default_rng(0)
    n_rows = 300
    ids = pd.Series([f"r{i}" for i in range(n_rows)])
    typed = pd.DataFrame({"x": rng.normal(size=n_rows), "label": np.where(rng.random(n_rows) < 0.5, "a", "b")})
    whole, sampled = _whole_and_sampled(monkeypatch, *_one_feature_run(typed, ids), ["r0", "r7"])

    assert whole["r0"]["population"] == "batch (no trusted reference)"
    for row_id in ("r0", "r7"):
        found = sampled[row_id]
        # Sampled per label, each keeping at least 50 rows: 104, not 100.
        assert found["population"] == "batch (no trusted reference; a seeded sample of 104 of its rows)"
        assert len(found["nearest"]) == evidence.NEIGHBOURS
        assert all(neighbour["distance"] > 0 for neighbour in found["nearest"])
        # Neighbours among fewer rows are never nearer than among all of them.
        assert found["nearest"][0]["distance"] >= whole[row_id]["nearest"][0]["distance"]


def test_each_rows_evidence_is_built_when_read_and_the_same_however_often(monkeypatch):
    from poisonguard.pipelines.core import evidence

    rng = np.random.default_rng(2)
    trusted = pd.DataFrame({"x": rng.normal(size=200), "label": np.where(rng.random(200) < 0.5, "a", "b")})
    ids = pd.Series(["r0", "r1", "r2"])
    batch = pd.DataFrame({"x": [0.1, 5.0, -7.0], "label": ["a", "b", "a"]})
    inputs, features = _one_feature_run(batch, ids, trusted)
    decision = Decision(quarantined_ids=["r2", "r0"], kept_ids=["r1"], flagged=pd.DataFrame(),
                        per_check=pd.DataFrame(), notes=[])
    built = []
    real_evidence_json = evidence.evidence_json
    monkeypatch.setattr(evidence, "evidence_json", lambda *args, **kw: built.append(1) or real_evidence_json(*args, **kw))

    found = evidence.collect_evidence(inputs, features, decision)
    # Nothing is held as text for every row at once: a large poisoned batch quarantines many.
    assert built == []
    assert list(found) == ["r2", "r0"] and len(found) == 2 and "r1" not in found and "r0" in found
    assert built == []  # (asking whether a row has evidence builds none)
    first = found["r2"]
    assert len(built) == 1
    assert found["r0"] != first and found["r2"] == first and found.get("r1") is None
    parsed = json.loads(first)
    assert parsed["label"] == "a" and parsed["features"][0]["value"] == -7.0
    assert parsed["features"][0]["note"] == "outside the trusted range"
    assert len(parsed["nearest"]) == evidence.NEIGHBOURS
    assert parsed["nearest"] == sorted(parsed["nearest"], key=lambda neighbour: neighbour["distance"])


def test_no_quarantined_rows_have_no_evidence():
    from poisonguard.pipelines.core import evidence

    inputs, features = _one_feature_run(pd.DataFrame({"x": [0.0, 1.0], "label": ["a", "b"]}), pd.Series(["r0", "r1"]))
    decision = Decision(quarantined_ids=[], kept_ids=["r0", "r1"], flagged=pd.DataFrame(), per_check=pd.DataFrame(),
                        notes=[])
    found = evidence.collect_evidence(inputs, features, decision)
    assert len(found) == 0 and not found and dict(found) == {}
