"""Exact results of ``pipelines.core.decision.apply_decision_rule`` on hand-made findings."""
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors.base import empty_findings, make_findings
from poisonguard.pipelines.core.checks import CheckOutcome
from poisonguard.pipelines.core.config import DetectionConfig
from poisonguard.pipelines.core.decision import apply_decision_rule, decide

IDS = [f"r{i:03d}" for i in range(200)]


def inputs(**detection):
    config = SimpleNamespace(detection=DetectionConfig(**detection))
    return SimpleNamespace(
        settings=SimpleNamespace(config=config), batch=SimpleNamespace(row_ids=pd.Series(IDS)), reference=object(),
        reference_typed=None, kinds={}, label="label",
    )


def detector(name, p_values, *, alpha, hard=()):
    p_values = np.asarray(p_values, dtype=float)
    flagged = (p_values <= alpha) | np.isin(np.arange(len(p_values)), list(hard))
    findings = make_findings(row_ids=IDS, check=name, scores=-np.log(p_values), flagged=flagged,
                             reasons=["r"] * len(IDS), p_values=p_values)
    return CheckOutcome(name=name, kind="detector", findings=findings, rows_checked=len(IDS),
                        details={"params": {"alpha": alpha}})


def expectations(rows):
    """rows: (row id, check, reason, p-value or NaN)."""
    findings = make_findings(
        row_ids=[r[0] for r in rows], check="", scores=np.ones(len(rows)), flagged=np.ones(len(rows), dtype=bool),
        reasons=[r[2] for r in rows], p_values=[r[3] for r in rows],
    ).assign(check=[r[1] for r in rows])
    return CheckOutcome(name="expectations", kind="expectation", findings=findings, rows_checked=len(IDS))


def test_detectors_are_judged_by_one_simes_p_value_per_row():
    ones = np.ones(len(IDS))
    first, second = ones.copy(), ones.copy()
    first[[0, 1, 2]] = [0.004, 0.012, 0.03]
    second[[0, 1, 2]] = [0.9, 0.012, 0.03]
    # Row 3: a hard flag (e.g. a label no trusted row has) without a small p-value.
    outcomes = [detector("a", first, alpha=0.01, hard=[3]), detector("b", second, alpha=0.01)]
    decided = apply_decision_rule(inputs(max_false_positive_rate=0.02), outcomes)
    flagged = {o.name: set(o.findings.loc[o.findings["flagged"], "row_id"]) for o in decided}
    # Level 0.02 over m = 2: row 0 by 'a' (0.004 <= 0.01); row 1 by both (0.012 <= 2 * 0.02 / 2);
    # row 2 not (0.03 > 0.02). Bonferroni would have missed row 1.
    assert flagged == {"a": {"r000", "r001", "r003"}, "b": {"r001"}}
    assert decided[0].details["decision"] == {
        "combine": "simes", "level": 0.02, "checks_combined": 2, "rows_quarantined_by_detectors": 2,
    }
    bonferroni = apply_decision_rule(inputs(max_false_positive_rate=0.02, combine="bonferroni"), outcomes)
    assert set(bonferroni[1].findings.loc[bonferroni[1].findings["flagged"], "row_id"]) == set()
    assert decide(inputs(), decided).quarantined_ids == ["r000", "r001", "r003"]


def test_a_detector_skipped_on_the_batch_is_not_counted_among_the_tests():
    ones = np.ones(len(IDS))
    first, second = ones.copy(), ones.copy()
    first[[0, 1, 2]] = [0.02, 0.03, 0.024]
    second[0] = 0.02
    skipped = CheckOutcome(name="c", kind="detector", findings=empty_findings(), rows_checked=0,
                           details={"params": {"alpha": 0.01}, "skipped": "c: too few rows"})
    outcomes = [detector("a", first, alpha=0.01), detector("b", second, alpha=0.01), skipped]
    decided = apply_decision_rule(inputs(max_false_positive_rate=0.05), outcomes)
    # m = 2 tests, not 3: row 0 by both (2 * 0.02 / 2 <= 0.05); row 1 by 'a' alone
    # is kept (2 * 0.03 > 0.05); row 2 by 'a' alone goes (2 * 0.024 <= 0.05, where
    # counting the skipped detector would have kept it: 3 * 0.024 > 0.05).
    assert decided[0].details["decision"]["checks_combined"] == 2
    assert set(decided[0].findings.loc[decided[0].findings["flagged"], "row_id"]) == {"r000", "r002"}
    assert decided[2] is skipped and "decision" not in decided[2].details


def test_inferred_rules_quarantine_within_their_share_and_hand_the_rest_to_a_person():
    rows = [(IDS[i], "expectation.values_to_be_in_set", "colour = 'green' is not one of", 0.01) for i in range(10)]
    rows += [(IDS[20], "expectation.values_to_not_be_null", "x is empty but the reference has no empty values", 0.005)]
    rows += [(IDS[30], "expectation.values_to_be_in_set", "y = 'q' is not one of the expected values", np.nan)]
    ones = np.ones(len(IDS))
    ones[40] = 0.015
    outcomes = [expectations(rows), detector("a", ones, alpha=0.02)]
    # Rate 0.04: inferred rules may take 0.02 of 200 rows = 4 rows. The empty cell (1 row)
    # fits; 'green' on 10 rows (5 %) does not: a batch-level finding, its rows kept.
    decided = apply_decision_rule(inputs(max_false_positive_rate=0.04), outcomes)
    findings = decided[0].findings
    assert set(findings.loc[findings["flagged"], "row_id"]) == {IDS[20], IDS[30]}
    batch = findings[findings["row_id"] == ""]
    assert batch["check"].tolist() == ["expectation.values_to_be_in_set"] and not batch["flagged"].any()
    assert batch["reason"].iloc[0].startswith("10 of 200 rows (5.0%) break the inferred rule values_to_be_in_set "
                                              "on column 'colour'")
    assert decided[0].details["decision_notes"] == batch["reason"].tolist()
    # The detectors get what the rules left: 0.04 - 1/200 = 0.035 >= 0.015, so row 40 goes too.
    assert decided[1].details["decision"]["level"] == pytest.approx(0.035)
    decision = decide(inputs(), decided)
    assert decision.quarantined_ids == [IDS[20], IDS[30], IDS[40]]
    assert batch["reason"].iloc[0] in decision.notes


def test_with_room_every_inferred_rule_quarantines_its_rows():
    rows = [(IDS[i], "expectation.values_to_be_between", f"m = {i} is outside the expected range", 0.001)
            for i in range(3)]
    decided = apply_decision_rule(inputs(max_false_positive_rate=0.05), [expectations(rows)])
    assert decided[0].findings["flagged"].all() and decided[0].details["inferred_rules_share"] == 0.015


def test_rows_the_detectors_catch_anyway_cost_the_inferred_rules_nothing():
    # Rate 0.02: the rules may add 0.01 of 200 rows = 2 rows to what the detectors quarantine.
    rows = [(IDS[i], "expectation.values_to_be_between", f"m = {i} is outside the expected range", 0.001)
            for i in range(4)]
    p_values = np.ones(len(IDS))
    p_values[[0, 1]] = 0.001  # rejected by the detectors even at their least level, 0.01
    decided = apply_decision_rule(inputs(max_false_positive_rate=0.02),
                                  [expectations(rows), detector("a", p_values, alpha=0.01)])
    # Four rows break the range, two of them are quarantined anyway: the rule adds two and keeps its rows.
    assert decided[0].findings["flagged"].all() and decided[0].details["inferred_rules_share"] == 0.01
    assert decided[1].details["decision"]["level"] == pytest.approx(0.01)
    assert decide(inputs(), decided).quarantined_ids == IDS[:4]


def test_the_decision_marks_its_quarantined_rows_in_the_batch_order():
    rows = [(IDS[i], "expectation.values_to_be_between", f"m = {i} is outside the expected range", 0.001)
            for i in (7, 2)]
    decision = decide(inputs(), apply_decision_rule(inputs(max_false_positive_rate=0.05), [expectations(rows)]))
    assert decision.quarantined_ids == [IDS[2], IDS[7]] and len(decision.kept_ids) == len(IDS) - 2
    mask = decision.quarantined_mask(np.asarray(IDS, dtype=object))
    assert np.flatnonzero(mask).tolist() == [2, 7]
    # A decision built without the mask (or asked about other rows) looks the ids up.
    looked_up = replace(decision, quarantined_rows=None).quarantined_mask(pd.Series(IDS[:5]))
    assert looked_up.tolist() == [False, False, True, False, False]
