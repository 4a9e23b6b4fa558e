"""``checks.run_detector``: the parameters every detector gets from ``[detection]``, and a detector that would
repeat another's test without a reference is skipped."""
import numpy as np
import pandas as pd
import pytest

from poisonguard.pipelines.core.checks import encode_features, judged_arrays, run_detector
from poisonguard.pipelines.core.config import parse_config
from poisonguard.pipelines.core.errors import ConfigError
from poisonguard.pipelines.core.inputs import load_inputs
from poisonguard.pipelines.core.settings import make_settings

LABEL_DETECTORS = ["label.trusted_model", "label.confident_learning"]


def three_classes(n_rows, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n_rows)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    frame = pd.DataFrame(np.round(centres[codes] + rng.normal(size=(n_rows, 2)), 3), columns=["x", "y"])
    frame["label"] = np.array(["a", "b", "c"])[codes]
    return frame


def judged(tmp_path, *, reference: bool, detectors, params=""):
    tmp_path.mkdir(parents=True, exist_ok=True)
    batch = tmp_path / "batch.csv"
    three_classes(150, 1).to_csv(batch, index=False)
    lines = ["[dataset]", 'label = "label"']
    if reference:
        three_classes(90, 2).to_csv(tmp_path / "reference.csv", index=False)
        lines.append('reference = "reference.csv"')
    lines += ["[detection]", "detectors = [" + ", ".join(f'"{d}"' for d in detectors) + "]", params]
    config = tmp_path / "config.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = make_settings([batch], out=tmp_path / "out", config_path=config)
    inputs = load_inputs(settings)
    features = encode_features(inputs)
    return {name: run_detector(name, features, settings) for name in detectors}


def test_without_a_reference_the_trusted_model_is_confident_learnings_test_and_is_skipped(tmp_path):
    outcomes = judged(tmp_path, reference=False, detectors=LABEL_DETECTORS)
    skipped = outcomes["label.trusted_model"]
    assert skipped.details["skipped"].startswith("without a trusted reference it would score the batch with the "
                                                 "same cross-fitted models as label.confident_learning")
    assert skipped.findings.empty and skipped.rows_checked == 0
    assert "skipped" not in outcomes["label.confident_learning"].details


def test_the_skipped_test_would_have_given_the_same_p_values(tmp_path):
    # Alone (confident learning not configured), it runs: and its p-values are confident learning's.
    alone = judged(tmp_path / "alone", reference=False, detectors=["label.trusted_model"])["label.trusted_model"]
    both = judged(tmp_path / "both", reference=False, detectors=LABEL_DETECTORS)["label.confident_learning"]
    assert "skipped" not in alone.details
    np.testing.assert_array_equal(judged_arrays(alone)[1], judged_arrays(both)[1])


@pytest.mark.parametrize("reference, params", [
    (True, ""),  # with a reference it is a model fitted on trusted rows: another test
    (False, '[detection.params."label.trusted_model"]\nmodel = "gradient_boosting"'),  # another model
    (False, '[detection.params."label.confident_learning"]\nn_folds = 3'),  # other folds
])
def test_it_runs_when_its_test_differs(tmp_path, reference, params):
    outcomes = judged(tmp_path, reference=reference, detectors=LABEL_DETECTORS, params=params)
    assert all("skipped" not in outcome.details for outcome in outcomes.values())


def test_a_column_that_numbers_the_rows_is_kept_but_not_a_feature(tmp_path):
    # A file sorted by label, with its pandas index written out: as a feature
    # the index would tell the label, and would be a range the next batch leaves.
    rows = three_classes(240, 3).sort_values("label", kind="stable").reset_index(drop=True)
    rows.iloc[:200].to_csv(tmp_path / "batch.csv")  # index 0..199 as "Unnamed: 0"
    rows.iloc[200:].to_csv(tmp_path / "reference.csv")  # index 200..239
    config = tmp_path / "config.toml"
    config.write_text('[dataset]\nlabel = "label"\nreference = "reference.csv"\n', encoding="utf-8")
    inputs = load_inputs(make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", config_path=config))
    assert inputs.row_number_columns == ["Unnamed: 0"]
    assert inputs.feature_columns == ["x", "y"]
    checked = {(e.configuration.type, e.configuration.kwargs.get("column")) for e in inputs.suite.expectations}
    assert ("expect_column_to_exist", "Unnamed: 0") in checked
    assert not [kind for kind, column in checked if column == "Unnamed: 0" and kind != "expect_column_to_exist"]
    features = encode_features(inputs)
    assert list(features.batch_features.columns) == ["x", "y"]
    assert ("column 'Unnamed: 0' numbers the rows (a distinct whole number on every row): kept, but not checked "
            "or used as a feature; pass --id Unnamed: 0 to key rows by it, or list it under dataset.numeric to "
            "check it") in features.notes
    # Named as a feature, it is one.
    config.write_text('[dataset]\nlabel = "label"\nreference = "reference.csv"\nnumeric = ["Unnamed: 0", "x", "y"]\n',
                      encoding="utf-8")
    inputs = load_inputs(make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", config_path=config))
    assert inputs.row_number_columns == [] and "Unnamed: 0" in inputs.feature_columns


@pytest.mark.parametrize("reference", [True, False])
def test_the_calibration_confidence_reaches_every_detector(tmp_path, reference):
    detectors = ["outlier.ecod", "label.knn", *LABEL_DETECTORS]
    plain = judged(tmp_path / "plain", reference=reference, detectors=detectors, params="calibration_confidence = 0.5")
    held = judged(tmp_path / "held", reference=reference, detectors=detectors, params="calibration_confidence = 0.9")
    default = judged(tmp_path / "default", reference=reference, detectors=detectors)
    for name in detectors:
        # 0.5 is the plain conformal p-value, and is passed on as no confidence at all.
        assert plain[name].details["params"]["confidence"] is None
        assert held[name].details["params"]["confidence"] == 0.9
        assert default[name].details["params"]["confidence"] == 0.75
        if "skipped" in plain[name].details:
            # Without a reference the twin is still recognised: the confidence does not tell them apart.
            assert "skipped" in held[name].details
            continue
        p_plain, p_held = (judged_arrays(outcome)[1] for outcome in (plain[name], held[name]))
        if reference:
            assert np.all(p_held >= p_plain) and np.any(p_held > p_plain)
        else:
            np.testing.assert_array_equal(p_held, p_plain)


@pytest.mark.parametrize("value", ["0", "0.3", "1", "1.5", "-0.1", '"high"'])
def test_the_calibration_confidence_is_a_probability(value):
    with pytest.raises(ConfigError, match="calibration_confidence"):
        parse_config(f"[detection]\ncalibration_confidence = {value}\n")
