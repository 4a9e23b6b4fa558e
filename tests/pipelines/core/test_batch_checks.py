"""Batch-level checks: pure functions on tiny seeded data, then as a stage of a run."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from poisonguard.detectors import drift
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.runner import execute
from poisonguard.pipelines.core.settings import make_settings
from tests.tiny_data import write_tiny_dataset


def test_population_stability_index_matches_the_formula_and_is_zero_for_equal_shares():
    expected, actual = np.array([50.0, 50.0]), np.array([80.0, 20.0])
    e, a = (expected + 0.5) / 101, (actual + 0.5) / 101
    assert drift.population_stability_index(expected, actual) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert drift.population_stability_index([10, 30], [20, 60]) == pytest.approx(0.0, abs=1e-3)


def test_jensen_shannon_distance_is_zero_for_equal_and_one_for_disjoint_distributions():
    assert drift.jensen_shannon_distance([1, 1, 0], [2, 2, 0]) == pytest.approx(0.0)
    assert drift.jensen_shannon_distance([5, 0], [0, 5]) == pytest.approx(1.0)


def test_numeric_drift_needs_both_a_large_and_a_significant_shift():
    rng = np.random.default_rng(0)
    trusted = rng.normal(0, 1, 400)
    same = drift.numeric_drift(trusted, rng.normal(0, 1, 200), column="x")
    shifted = drift.numeric_drift(trusted, rng.normal(2, 1, 200), column="x")
    tiny_shifted = drift.numeric_drift(trusted, rng.normal(2, 1, 3), column="x")
    assert not same.failed and same.statistic < 0.2
    assert shifted.failed and shifted.statistic > 0.5 and shifted.p_value < 1e-6
    assert "x: KS statistic" in shifted.reason and "exceeds the threshold 0.3" in shifted.reason
    # Three rows can differ a lot by chance: large, but not significant.
    assert not tiny_shifted.failed
    wasserstein = drift.numeric_drift(trusted, rng.normal(2, 1, 200), column="x", test="wasserstein", threshold=0.5)
    assert wasserstein.failed and wasserstein.statistic == pytest.approx(2.0, abs=0.3)


def test_categorical_drift_names_the_categories_that_moved():
    trusted = ["a"] * 50 + ["b"] * 50
    result = drift.categorical_drift(trusted, ["a"] * 90 + ["b"] * 10, column="colour")
    assert result.failed and result.test == "psi"
    assert "'a' 50% → 90%" in result.reason
    js = drift.categorical_drift(trusted, ["a"] * 48 + ["b"] * 52, column="colour", test="jensen_shannon", threshold=0.2)
    assert not js.failed and js.statistic < 0.05
    label = drift.categorical_drift(trusted, ["b"] * 100, column="label", check="batch.label_shift")
    assert label.check == "batch.label_shift" and label.failed


def test_schema_drift_reports_new_missing_and_retyped_columns():
    problems = drift.schema_drift(
        ["x", "y", "colour", "id"], ["x", "colour", "extra", "id"],
        trusted_kinds={"x": "numeric", "colour": "categorical"}, batch_kinds={"x": "categorical", "colour": "categorical"},
        ignore=["id"],
    )
    assert [(p.column, p.test) for p in problems] == [("extra", "new column"), ("y", "missing column"), ("x", "type change")]
    assert all(p.failed and p.check == "batch.schema" for p in problems)
    assert drift.schema_drift(["x"], ["x"]) == []


def _blobs(rng, n_per_class):
    centres = {"red": (0, 0), "green": (4, 0), "blue": (2, 4)}
    X = np.vstack([rng.normal(c, 1.0, size=(n_per_class, 2)) for c in centres.values()])
    y = np.repeat(list(centres), n_per_class)
    return X, y


def test_model_impact_catches_a_batch_with_swapped_labels_and_passes_a_clean_one():
    rng = np.random.default_rng(1)
    trusted_X, trusted_y = _blobs(rng, 60)
    batch_X, batch_y = _blobs(rng, 80)
    clean = drift.model_impact(trusted_X, trusted_y, batch_X, batch_y)
    assert not clean.failed and clean.statistic <= 0.02
    # Red and green swapped: the label distribution is unchanged, the model is not.
    swapped = np.where(batch_y == "red", "green", np.where(batch_y == "green", "red", batch_y))
    poisoned = drift.model_impact(trusted_X, trusted_y, batch_X, swapped)
    assert poisoned.failed and poisoned.statistic > 0.1 and poisoned.p_value < 0.01
    assert "McNemar" in poisoned.reason
    not_measured = drift.model_impact(trusted_X[:3], trusted_y[:3], batch_X, batch_y)
    assert not not_measured.failed and math.isnan(not_measured.statistic)


def test_model_impact_holds_out_a_seeded_sample_of_a_large_reference():
    rng = np.random.default_rng(1)
    trusted_X, trusted_y = _blobs(rng, 200)
    batch_X, batch_y = _blobs(rng, 80)
    swapped = np.where(batch_y == "red", "green", np.where(batch_y == "green", "red", batch_y))
    whole = drift.model_impact(trusted_X, trusted_y, batch_X, swapped)
    assert "600 trusted rows" in whole.reason
    sampled = drift.model_impact(trusted_X, trusted_y, batch_X, swapped, max_trusted_rows=300)
    # 100 of each label's 200 rows, named in the reason; the swap is still caught.
    assert "a seeded sample of 300 of the 600 trusted rows" in sampled.reason
    assert sampled.failed and sampled.p_value < 0.01
    again = drift.model_impact(trusted_X, trusted_y, batch_X, swapped, max_trusted_rows=300)
    assert again == sampled
    clean = drift.model_impact(trusted_X, trusted_y, batch_X, batch_y, max_trusted_rows=300)
    assert not clean.failed


def test_batch_check_rows_are_plain_json():
    row = drift.numeric_drift([1.0], [2.0], column="x").as_dict()
    assert row["statistic"] is None and json.dumps(row)


# --------------------------------------------------------------------------- as a stage of a run


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


def test_the_sample_like_batch_passes_every_batch_check(tiny, tmp_path):
    summary = execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"]))
    assert summary.status == "succeeded"
    provenance = json.loads((summary.out / "provenance.json").read_text())
    table = provenance["batch_checks"]["table"]
    assert {row["check"] for row in table} == {"batch.drift", "batch.label_shift", "batch.model_impact"}
    assert not any(row["failed"] for row in table)
    assert {"batch.drift", "batch.model_impact"} <= {row["check"] for row in summary.per_check}


def test_a_drifted_batch_is_rejected_whole_with_the_drift_table_in_the_report(tiny, tmp_path):
    batch = pd.read_csv(tiny["batch"], dtype=str)
    numbers = pd.to_numeric(batch["x"], errors="coerce")
    batch["x"] = (numbers + 2.5).round(3).astype(object).where(numbers.notna(), batch["x"])
    batch["extra"] = "new"
    drifted = tmp_path / "drifted.csv"
    batch.to_csv(drifted, index=False)
    summary = execute(make_settings([drifted], out=tmp_path / "out", config_path=tiny["config"]))
    assert summary.status == "rejected" and summary.out is None and not (tmp_path / "out").exists()
    assert any(f.startswith("batch.drift: x: KS statistic") for f in summary.batch_failures)
    assert any(f.startswith("batch.schema: column 'extra' is new") for f in summary.batch_failures)
    failed = {(row["check"], row["column"]) for row in summary.batch_checks if row["failed"]}
    assert failed == {("batch.drift", "x"), ("batch.schema", "extra")}
    report = summary.report.read_text()
    assert "Batch-level checks" in report and "fails the batch" in report


@pytest.mark.parametrize("texts, changed", [(23, True), (22, False)])
def test_a_numeric_column_mostly_text_in_the_batch_changed_kind(tiny, tmp_path, texts, changed):
    # The kind is read from the cells' parsed share: numbers when at least half parse (of 45 rows, 22 may not).
    batch = pd.read_csv(tiny["batch"], dtype=str)
    assert len(batch) == 45 and batch["y"].notna().all()
    batch.loc[: texts - 1, "y"] = "n/a?"
    retyped = tmp_path / "retyped.csv"
    batch.to_csv(retyped, index=False)
    summary = execute(make_settings([retyped], out=tmp_path / "out", config_path=tiny["config"]))
    changes = [row for row in summary.batch_checks if row["test"] == "type change"]
    assert [row["column"] for row in changes] == (["y"] if changed else [])
    if changed:
        assert summary.status == "rejected"
        assert "batch.schema: column 'y' was numeric in the trusted data but is categorical in the batch" in (
            summary.batch_failures
        )


@pytest.mark.parametrize("trusted_words, batch_words, changed", [
    (60, 24, False),  # a factor of levels 2, 6 and z on both sides: numbers in a third of the trusted rows, half the batch's
    (180, 22, False),  # words only, then a batch of half words: still that factor
    (180, 0, True),  # words, then only numbers: an export that wrote codes
    (0, 23, True),  # numbers, then mostly words (``test_a_numeric_column_mostly_text_in_the_batch_changed_kind``)
])
def test_a_column_changed_kind_only_from_one_clear_kind_to_the_other(tiny, tmp_path, trusted_words, batch_words,
                                                                      changed):
    # DAAG's biomass: 14 trusted rows of the factor read as numbers, the 134 batch rows as categories.
    reference, batch = pd.read_csv(tiny["reference"], dtype=str), pd.read_csv(tiny["batch"], dtype=str)
    assert (len(reference), len(batch)) == (180, 45)
    levels = np.random.default_rng(0)
    for frame, words in ((reference, trusted_words), (batch, batch_words)):
        frame["fac"] = levels.choice(["2", "6"], len(frame))
        frame.loc[: words - 1, "fac"] = "z"
    reference.to_csv(tiny["reference"], index=False)
    mixed = tmp_path / "mixed.csv"
    batch.to_csv(mixed, index=False)
    summary = execute(make_settings([mixed], out=tmp_path / "out", config_path=tiny["config"]))
    changes = [row["column"] for row in summary.batch_checks if row["test"] == "type change"]
    assert changes == (["fac"] if changed else [])


@pytest.mark.parametrize("rows, rejected", [(45, True), (2, True), (1, False)])
def test_a_numeric_column_emptied_in_every_row_rejects_a_large_enough_batch(tiny, tmp_path, rows, rejected):
    batch = pd.read_csv(tiny["batch"], dtype=str).iloc[:rows]
    batch["y"] = ""
    emptied = tmp_path / "emptied.csv"
    batch.to_csv(emptied, index=False)
    summary = execute(make_settings([emptied], out=tmp_path / "out", config_path=tiny["config"]))
    [row] = [row for row in summary.batch_checks if row["test"] == "emptied column"]
    assert row["column"] == "y" and row["failed"] is rejected
    # Every trusted row has a y, so the trusted rows allow at most the rule-of-three
    # share of empty cells, 1 - 0.05 ** (1 / m); n empty rows by chance: that to the n.
    trusted_rows = len(pd.read_csv(tiny["reference"]))
    assert row["p_value"] == pytest.approx((1 - 0.05 ** (1 / trusted_rows)) ** rows)
    if rejected:
        assert summary.status == "rejected"
        assert f"batch.schema: column 'y' is empty in all {rows} batch rows, but 100% of trusted rows" in summary.batch_failures[0]


def test_a_column_empty_in_every_trusted_row_but_filled_in_the_batch_is_called_that(tiny, tmp_path):
    # Once read as 'y was categorical in the trusted data but is numeric in the batch'.
    reference = pd.read_csv(tiny["reference"])
    reference["y"] = np.nan
    reference.to_csv(tiny["reference"], index=False)
    summary = execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"]))
    assert summary.status == "rejected"
    [row] = [row for row in summary.batch_checks if row["check"] == "batch.schema"]
    assert (row["column"], row["test"], row["failed"]) == ("y", "filled column", True)
    assert "batch.schema: column 'y' is empty in every trusted row but has a value in 100% of batch rows" in (
        summary.batch_failures[0])


def test_a_reference_without_a_single_label_is_bad_input_not_a_shifted_batch(tiny, tmp_path):
    reference = pd.read_csv(tiny["reference"])
    reference["label"] = ""
    reference.to_csv(tiny["reference"], index=False)
    with pytest.raises(InputError, match=r"reference.csv: the trusted reference has no label: column 'label' is empty"):
        execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"]))
    assert not (tmp_path / "out").exists()


def test_checks_can_be_switched_off_in_the_config(tiny, tmp_path):
    config = tmp_path / "off.toml"
    config.write_text(tiny["config"].read_text().replace('reference = "reference.csv"', f'reference = "{tiny["reference"]}"')
                      + "[batch]\nchecks = []\n")
    summary = execute(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=config))
    assert summary.status == "succeeded" and summary.batch_checks == []


class _ProbabilityStub:
    """A classifier whose P('yes') is a constant when fitted on trusted rows alone, else feature 0."""

    def fit(self, X, y):
        self.classes_ = np.array(sorted(set(y)))
        self.with_batch_ = len(y) > 400
        return self

    def predict_proba(self, X):
        yes = X[:, 0] if self.with_batch_ else np.full(len(X), 0.15)
        return np.column_stack([1 - yes, yes])


def test_model_impact_does_not_reject_lost_accuracy_the_log_loss_does_not_confirm(monkeypatch):
    # 500 trusted rows, 75 'yes'. The trusted-only model says 'no' to all (accuracy 0.85, log-loss
    # 0.423); with the batch it says 'yes' to 20 'yes' and 60 'no' rows (accuracy 0.77, McNemar
    # p ~ 1e-5) but its log-loss is lower (0.334): what a poorly fitting model
    # does with more clean rows, not harm.
    y = np.array(["yes"] * 75 + ["no"] * 425)
    p_yes = np.concatenate([np.full(20, 0.55), np.full(55, 0.2), np.full(60, 0.55), np.full(365, 0.05)])
    trusted_X = np.column_stack([p_yes, np.arange(500)])
    batch_X, batch_y = trusted_X[:100], y[:100]
    monkeypatch.setattr(drift, "make_classifier", lambda model, random_state=0: _ProbabilityStub())
    check = drift.model_impact(trusted_X, y, batch_X, batch_y)
    assert check.statistic == pytest.approx(0.08) and check.p_value < 1e-4
    assert not check.failed
    assert "log-loss is 0.334 instead of 0.423" in check.reason and "not as harm" in check.reason
    # (Lost accuracy with a worse log-loss, swapped labels, fails: the test above.)


def test_a_batch_with_no_feature_column_gets_no_model_impact_and_no_traceback(tmp_path):
    # vcdExtra's CyclingDeaths: a row number, a date and the label. Every detector says why it
    # did not run; the model-impact check fitted a model on no column and raised.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"rownames": range(1, 209), "date": pd.date_range("2005-01-01", periods=208, freq="14D")
                          .strftime("%Y-%m-%d"), "deaths": rng.integers(0, 4, 208)})
    frame.iloc[:20].to_csv(tmp_path / "ref.csv", index=False)
    frame.iloc[20:].to_csv(tmp_path / "batch.csv", index=False)
    summary = execute(make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", label="deaths",
                                    reference=tmp_path / "ref.csv"))
    assert summary.status == "succeeded" and summary.rows_in == 188
    provenance = json.loads((summary.out / "provenance.json").read_text())
    assert "model impact not measured: the batch has no feature column to train a model on" in json.dumps(provenance)


def test_a_large_column_is_compared_on_a_seeded_sample_the_reason_names():
    rng = np.random.default_rng(0)
    trusted, batch = rng.normal(0, 1, 2_000), rng.normal(0.1, 1, 3_000)
    whole = drift.numeric_drift(trusted, batch, column="x", max_values=None)
    # Up to the limit every number is compared, exactly as without one.
    assert drift.numeric_drift(trusted, batch, column="x", max_values=3_000) == whole
    sampled = drift.numeric_drift(trusted, batch, column="x", max_values=1_000)
    assert sampled == drift.numeric_drift(trusted, batch, column="x", max_values=1_000)  # seeded
    assert sampled.statistic == pytest.approx(whole.statistic, abs=0.05) and not sampled.failed
    assert sampled.reason.endswith("; the batch's numbers from a seeded sample of 1,000 of their 3,000")
    both = drift.numeric_drift(trusted, rng.normal(2, 1, 3_000), column="x", max_values=1_000)
    assert both.failed and "the trusted rows' numbers from a seeded sample of 1,000 of their 2,000" in both.reason
