"""A detector's findings keep only the rows that can be quarantined (``checks.keep_quarantinable``), every row's
score and p-value as arrays: the decision, the quarantine and the report's histograms are what full findings gave."""
import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors.base import make_findings
from poisonguard.pipelines.core import checks
from poisonguard.pipelines.core.checks import CheckOutcome, judged_arrays, keep_quarantinable
from poisonguard.pipelines.core.inputs import load_inputs
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.core.stages import judge_batch
from poisonguard.pipelines.outputs.publish import slim_outcomes


def poisoned_batch(n_rows, seed):
    """Three classes; rows 0-9 far away, rows 10-29 with a flipped label."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n_rows)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    points = centres[codes] + rng.normal(size=(n_rows, 2))
    points[:10] += 12.0
    labels = np.array(["a", "b", "c"])[codes]
    labels[10:30] = np.array(["a", "b", "c"])[(codes[10:30] + 1) % 3]
    frame = pd.DataFrame(np.round(points, 3), columns=["x", "y"])
    frame.insert(0, "id", [f"r{i}" for i in range(n_rows)])
    frame["label"] = labels
    return frame


def judgement(tmp_path, *, reference: bool):
    tmp_path.mkdir(parents=True, exist_ok=True)
    poisoned_batch(400, 1).to_csv(tmp_path / "batch.csv", index=False)
    lines = ["[dataset]", 'label = "label"', 'id = "id"']
    if reference:
        poisoned_batch(300, 2).iloc[30:].to_csv(tmp_path / "reference.csv", index=False)
        lines.append('reference = "reference.csv"')
    lines += ["[detection]", "max_false_positive_rate = 0.05"]
    (tmp_path / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", config_path=tmp_path / "config.toml")
    return judge_batch(load_inputs(settings))


@pytest.mark.parametrize("reference", [True, False])
def test_the_decision_is_the_one_full_findings_give(tmp_path, monkeypatch, reference):
    kept = judgement(tmp_path, reference=reference)
    monkeypatch.setattr(checks, "keep_quarantinable", lambda outcome, row_ids, rate: outcome)
    full = judgement(tmp_path, reference=reference)

    detectors = [o for o in kept.outcomes if o.kind == "detector" and not o.details.get("skipped")]
    assert len(detectors) >= 6
    # The findings were cut down (else this test compares nothing), and only rows with p above the rate went.
    assert sum(len(o.findings) for o in detectors) < sum(o.rows_checked for o in detectors) / 2
    for outcome in detectors:
        row_ids, p_values, flagged = judged_arrays(outcome)
        left_out = ~np.isin(row_ids, outcome.findings["row_id"].to_numpy(dtype=object))
        assert not flagged[left_out].any() and (p_values[left_out] > 0.05).all()

    assert kept.decision.quarantined_ids == full.decision.quarantined_ids
    assert len(kept.decision.quarantined_ids) >= 20
    pd.testing.assert_frame_equal(kept.decision.per_check, full.decision.per_check)
    pd.testing.assert_frame_equal(kept.decision.flagged, full.decision.flagged)
    for mine, theirs in zip(kept.outcomes, full.outcomes):
        assert mine.name == theirs.name and mine.details == theirs.details
        mine_rows, mine_p, mine_flags = judged_arrays(mine)
        their_rows, their_p, their_flags = judged_arrays(theirs)
        np.testing.assert_array_equal(mine_rows, their_rows)
        np.testing.assert_array_equal(mine_p, their_p)
        np.testing.assert_array_equal(mine_flags, their_flags)
    # The report's histograms: every row's score and the decision's flag, per detector.
    for mine, theirs in zip(slim_outcomes(kept.outcomes), slim_outcomes(full.outcomes)):
        assert mine.scores.keys() == theirs.scores.keys()
        for check in mine.scores:
            for a, b in zip(mine.scores[check], theirs.scores[check]):
                np.testing.assert_array_equal(a, b)


def outcome_of(p_values, flagged):
    row_ids = np.array([f"r{i}" for i in range(len(p_values))], dtype=object)
    findings = make_findings(row_ids=row_ids, check="outlier.x", scores=np.arange(len(p_values), dtype=float),
                             flagged=flagged, p_values=p_values, reasons=[f"reason {i}" for i in range(len(p_values))])
    return CheckOutcome(name="outlier.x", kind="detector", findings=findings, rows_checked=len(p_values)), row_ids


def test_a_row_flagged_or_with_p_at_most_the_rate_keeps_its_finding():
    p_values = [0.001, 0.01, 0.0100001, 0.5, np.nan, 0.9]
    flagged = [True, False, False, False, False, True]  # the last: a hard flag (a label no trusted row has)
    outcome, row_ids = outcome_of(p_values, flagged)
    kept = keep_quarantinable(outcome, row_ids, 0.01)
    assert kept.findings["row_id"].tolist() == ["r0", "r1", "r5"]
    assert kept.findings["reason"].tolist() == ["reason 0", "reason 1", "reason 5"]
    assert kept.judged.findings_rows.tolist() == [0, 1, 5]
    np.testing.assert_array_equal(kept.judged.p_values, p_values)
    assert kept.judged.row_ids is row_ids
    assert kept.scores["outlier.x"][0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_findings_that_are_not_one_per_judged_row_stay_whole():
    outcome, row_ids = outcome_of([0.5, 0.5], [False, False])
    assert keep_quarantinable(outcome, row_ids[::-1], 0.01) is outcome
    assert keep_quarantinable(outcome, row_ids[:1], 0.01) is outcome
