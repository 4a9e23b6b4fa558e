"""What ``publish`` derives from a decision: the run summary's most suspicious rows."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors.base import make_findings
from poisonguard.pipelines.core.config import parse_config
from poisonguard.pipelines.core.decision import Decision
from poisonguard.pipelines.outputs.publish import _alpha_summary, _detectors_that_judged, top_quarantined
from poisonguard.pipelines.outputs.report import REPORT_CELL_WIDTH


def decision_of(findings: pd.DataFrame) -> Decision:
    ids = list(dict.fromkeys(findings["row_id"]))
    return Decision(quarantined_ids=ids, kept_ids=[], flagged=findings, per_check=pd.DataFrame(), notes=[])


def findings(rows) -> pd.DataFrame:
    """``rows``: (row_id, check, p_value, reason) tuples."""
    row_ids, checks, p_values, reasons = zip(*rows)
    frames = [
        make_findings(row_ids=[r], check=c, scores=[1.0], flagged=[True], reasons=[why], p_values=[p])
        for r, c, p, why in zip(row_ids, checks, p_values, reasons)
    ]
    return pd.concat(frames, ignore_index=True)


def test_most_findings_first_then_hard_rules_then_smallest_p_value_then_first_seen():
    table = findings([
        ("a", "outlier.ecod", 0.01, "a far"),
        ("b", "outlier.ecod", 0.001, "b far"),
        ("c", "label.knn", 0.02, "c flipped"),
        ("c", "outlier.ecod", 0.03, "c far"),
        ("c", "label.knn", 0.01, "c again"),
        ("d", "expectation.parsable_type", np.nan, "d broken"),
        ("e", "outlier.ecod", 0.001, "e far"),
        ("f", "duplicates.flood", 0.005, "f copy"),
        ("f", "expectation.parsable_type", np.nan, "f broken"),
    ])
    top = top_quarantined(decision_of(table))
    assert [row["row_id"] for row in top] == ["c", "f", "d", "b", "e", "a"]
    c, f, d = top[0], top[1], top[2]
    assert c == {"row_id": "c", "checks": "label.knn, outlier.ecod", "smallest_p_value": 0.01, "reason": "c flipped"}
    assert f["smallest_p_value"] == 0.005 and f["checks"] == "duplicates.flood, expectation.parsable_type"
    assert d["smallest_p_value"] is None and d["reason"] == "d broken"
    assert [row["row_id"] for row in top_quarantined(decision_of(table), limit=2)] == ["c", "f"]


def test_nothing_flagged_lists_nothing():
    assert top_quarantined(decision_of(findings([("a", "x", 0.1, "r")]).iloc[:0])) == []


@pytest.mark.parametrize("extra, held", [("", "for 75% of references"),
                                         ("calibration_confidence = 0.9\n", "for 90% of references"),
                                         ("calibration_confidence = 0.5\n", "on average over references")])
def test_the_report_says_which_guarantee_the_rate_has(extra, held):
    summary = _alpha_summary(parse_config("[detection]\nmax_false_positive_rate = 0.05\n" + extra).detection)
    assert summary == (f"one decision: at most 0.05 of clean rows (inferred rules and 8 detectors, simes), held {held}; "
                       "each detector's own flag at 0.0063")
    assert len(summary) <= REPORT_CELL_WIDTH  # shown whole


def test_the_summary_counts_the_detectors_the_decision_combined():
    # A detector skipped (one feature to predict from, say): the decision combines seven.
    decided = {"decision": {"combine": "simes", "level": 0.05, "checks_combined": 7}}
    outcomes = [SimpleNamespace(kind="expectation", details={})]
    outcomes += [SimpleNamespace(kind="detector", details={"skipped": "outlier.cellwise: needs two features ..."})]
    outcomes += [SimpleNamespace(kind="detector", details=decided) for _ in range(7)]
    assert _detectors_that_judged(outcomes) == 7
    assert _detectors_that_judged(outcomes[:2]) is None  # rejected before the decision
    detection = parse_config("[detection]\nmax_false_positive_rate = 0.05\n").detection
    assert "(inferred rules and 7 detectors, simes)" in _alpha_summary(detection, 7)
    assert "(inferred rules and 8 detectors, simes)" in _alpha_summary(detection)
