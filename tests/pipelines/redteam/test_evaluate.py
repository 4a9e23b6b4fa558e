"""Tests of poisonguard.pipelines.redteam.evaluate (``poisonguard evaluate``) on a tiny seeded table."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from poisonguard.pipelines.cli.app import app
from poisonguard.pipelines.redteam.evaluate import DETECTORS, NO_ATTACK, PIPELINE, _prepare, evaluate

ATTACKS = ["random_flips", "far_rows", "backdoor", "schema_broken"]
METRIC_COLUMNS = ["attack", "method", "kind", "poisoned", "flagged", "caught", "precision", "recall", "f1", "fpr"]


def write_clean_table(path, n_rows=300, seed=0):
    """Three separated classes in five numeric features (2 decimals) and a category."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n_rows)
    centres = rng.normal(scale=3.0, size=(3, 5))
    frame = pd.DataFrame(np.round(centres[codes] + rng.normal(size=(n_rows, 5)), 2), columns=[f"m{i}" for i in range(5)])
    frame["shade"] = rng.choice(["light", "dark"], n_rows)
    frame["species"] = np.array(["Adelie", "Chinstrap", "Gentoo"])[codes]
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    data = write_clean_table(tmp_path_factory.mktemp("evaluate") / "clean.csv")
    return evaluate(data, label="species", attacks=ATTACKS, rate=0.05, seed=0)


def test_table_has_every_attack_and_check(evaluation):
    metrics = evaluation.metrics
    assert list(metrics.columns) == METRIC_COLUMNS
    assert list(metrics["attack"].unique()) == [NO_ATTACK, *ATTACKS]
    for attack, rows in metrics.groupby("attack"):
        methods = set(rows["method"])
        assert {"expectations", DETECTORS, PIPELINE} <= methods
        assert any(method.startswith("label.") for method in methods)
    # 300 rows: 60 held out for testing, 30 trusted, 210 attacked at 5 %.
    attacked = metrics[metrics["attack"] != NO_ATTACK]
    assert (attacked["poisoned"] == 10).all()
    assert (metrics.loc[metrics["attack"] == NO_ATTACK, "poisoned"] == 0).all()
    assert evaluation.notes[0].startswith("no --reference: a stratified 10% of")


def test_values_are_sensible(evaluation):
    metrics = evaluation.metrics
    for column in ("precision", "recall", "f1", "fpr"):
        values = metrics[column].dropna()
        assert ((values >= 0) & (values <= 1)).all()
    pipeline = metrics[metrics["method"] == PIPELINE].set_index("attack")
    assert pipeline.loc[["far_rows", "schema_broken"], "recall"].tolist() == [1.0, 1.0]
    assert pipeline.loc["random_flips", "recall"] >= 0.8
    assert pipeline.loc["backdoor", "recall"] >= 0.8
    # The detectors share a 5 % budget (union bound) on clean rows: met on average over the
    # batches; one batch of ~200 clean rows may exceed it by a row or two (30 trusted rows
    # leave every flag to an extrapolated tail).
    assert pipeline["fpr"].mean() <= 0.05
    assert (pipeline["fpr"] <= 0.06).all()
    # The pipeline quarantines the union of its checks.
    for attack, rows in metrics.groupby("attack"):
        assert rows.loc[rows["method"] == PIPELINE, "caught"].iloc[0] == rows["caught"].max()


def test_downstream_accuracy_and_backdoor_success(evaluation):
    downstream = evaluation.downstream
    assert set(downstream.columns) >= {"attack", "trained_on", "rows", "accuracy", "attack_success"}
    assert set(downstream.loc[downstream["attack"] == "random_flips", "trained_on"]) == {"clean", "poisoned", "sanitised"}
    assert set(downstream.loc[downstream["attack"] == NO_ATTACK, "trained_on"]) == {"clean", "sanitised"}
    assert ((downstream["accuracy"] > 0.8) & (downstream["accuracy"] <= 1.0)).all()
    backdoor = downstream[downstream["attack"] == "backdoor"].set_index("trained_on")["attack_success"]
    assert backdoor["clean"] <= 0.2 and backdoor["sanitised"] <= 0.2
    assert downstream.loc[downstream["attack"] != "backdoor", "attack_success"].isna().all()


def test_command_prints_json(tmp_path):
    data = write_clean_table(tmp_path / "clean.csv", n_rows=200, seed=1)
    config = tmp_path / "fast.toml"
    config.write_text('[detection]\ndetectors = ["outlier.ecod", "label.knn"]\n', encoding="utf-8")
    result = CliRunner().invoke(
        app, ["evaluate", str(data), "--label", "species", "--attacks", "far_rows", "--config", str(config),
              "--self-referential", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {row["method"] for row in report["metrics"]} == {
        "expectations", "outlier.ecod", "label.knn", DETECTORS, PIPELINE,
    }
    assert "self-referential: no trusted reference" in " ".join(report["notes"])


def test_command_reports_bad_options_plainly(tmp_path):
    data = write_clean_table(tmp_path / "clean.csv", n_rows=60)
    result = CliRunner().invoke(app, ["evaluate", str(data), "--label", "species", "--attacks", "poison_ivy"])
    assert result.exit_code == 2
    assert "unknown attack 'poison_ivy'" in result.output
    result = CliRunner().invoke(app, ["evaluate", str(data), "--label", "kind"])
    assert result.exit_code == 2 and "no label column 'kind'" in result.output
    result = CliRunner().invoke(app, ["evaluate", str(data), "--label", "species", "--id", "tag"])
    assert result.exit_code == 2 and "no id column 'tag'" in result.output


def test_an_id_column_names_the_rows(tmp_path):
    data = write_clean_table(tmp_path / "clean.csv", n_rows=200, seed=2)
    frame = pd.read_csv(data)
    frame.insert(0, "tag", [f"t{i:03d}" for i in range(len(frame))])
    frame.to_csv(data, index=False)
    setup = _prepare(data, "species", "tag", None, None, 0, False, None, ["outlier.ecod"], tmp_path)
    # The id column names the rows and is not a feature.
    assert setup.id_column == "tag"
    assert "tag" not in [*setup.numeric, *setup.categorical]
    assert set(setup.pool["tag"]) | set(setup.trusted["tag"]) | set(setup.test["tag"]) == set(frame["tag"])


def test_a_skipped_detector_has_no_rows_and_a_note(tmp_path):
    # Without a reference label.trusted_model repeats confident learning's test and is skipped:
    # a row of zeros for it would read as a detector that missed every flip.
    data = write_clean_table(tmp_path / "clean.csv", n_rows=200, seed=3)
    evaluation = evaluate(data, label="species", attacks=["random_flips"], rate=0.05, seed=0, self_referential=True,
                          detectors=["label.trusted_model", "label.confident_learning"])
    assert set(evaluation.metrics["method"]) == {"expectations", "label.confident_learning", DETECTORS, PIPELINE}
    skipped = [note for note in evaluation.notes if note.startswith("label.trusted_model was skipped")]
    assert len(skipped) == 1 and "same cross-fitted models as label.confident_learning" in skipped[0]


def test_a_dataset_in_its_own_csv_format_evaluates_as_the_plain_one(tmp_path):
    # Semicolons and decimal commas in the data, the config saying so: evaluate's own batch and
    # reference files are written the same way, so nothing is misread on either side.
    plain = write_clean_table(tmp_path / "clean.csv", n_rows=200, seed=4)
    european = tmp_path / "clean-eu.csv"
    pd.read_csv(plain).to_csv(european, sep=";", decimal=",", index=False)
    config = tmp_path / "eu.toml"
    config.write_text('[dataset]\nseparator = ";"\ndecimal = ","\n')
    options = dict(label="species", attacks=["random_flips", "far_rows"], rate=0.05, seed=0, detectors=["outlier.ecod"])
    told = evaluate(european, config_path=config, **options)
    assert set(told.metrics["attack"]) == {NO_ATTACK, "random_flips", "far_rows"}
    pd.testing.assert_frame_equal(told.metrics, evaluate(plain, **options).metrics)
