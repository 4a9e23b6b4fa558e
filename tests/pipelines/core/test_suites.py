"""An inferred suite is a valid Great Expectations suite for the reference it came from.

Loaded by GX itself (no poisonguard code) and run on the reference file read
the way a GX user reads it (``pd.read_csv`` with its default types), every
expectation passes; and poisonguard's own validation of the same reference
finds nothing.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from poisonguard.expectations import load_suite, validate_frame
from poisonguard.pipelines.core.suites import infer_suite_file
from poisonguard.pipelines.core.tables import coerce_types, infer_kinds, load_table

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SAMPLES = Path(__file__).resolve().parents[3] / "data_samples"


def gx_validates(suite_path: Path, frame: pd.DataFrame):
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    data = json.loads(suite_path.read_text())
    suite = gx.ExpectationSuite(name=data["name"], expectations=data["expectations"], meta=data.get("meta"))
    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("plain").add_dataframe_asset("reference")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite)
    return [(r.expectation_config.type, r.expectation_config.kwargs.get("column")) for r in result.results if not r.success]


def mixed_reference(folder: Path) -> Path:
    """An integer label, an integer column with a gap (pandas reads floats), booleans, text."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "grade": rng.integers(0, 3, 60),
        "count": np.where(rng.random(60) < 0.1, np.nan, rng.integers(0, 50, 60)),
        "flag": rng.random(60) < 0.5,
        "colour": rng.choice(["red", "blue"], 60),
        "size": rng.normal(5, 1, 60).round(2),
    })
    path = folder / "mixed.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("sample", ["penguins", "breast_cancer", "wine", "mixed"])
def test_an_inferred_suite_passes_gx_on_its_reference_as_pandas_reads_it(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if sample == "mixed":
        reference, label, id_column, config = mixed_reference(tmp_path), "grade", None, None
    else:
        config = SAMPLES / sample / "poisonguard.toml"
        dataset = tomllib.loads(config.read_text())["dataset"]
        reference, label, id_column = SAMPLES / sample / "reference.csv", dataset["label"], dataset.get("id")
    path, _ = infer_suite_file(reference, label=label, name=sample, id_column=id_column, config_path=config)
    assert gx_validates(path, pd.read_csv(reference)) == []

    # poisonguard's own reading and validation of the same file find nothing either.
    table = load_table([reference], label=label, id_column=id_column, role="reference")
    columns = [c for c in table.raw.columns if c not in {label, table.id_column}]
    kinds = {**infer_kinds(table.raw, columns), label: "categorical"}
    typed = coerce_types(table.raw, kinds, id_column=table.id_column, source=str(reference)).typed
    outcome = validate_frame(typed, load_suite(path), id_column=table.id_column)
    assert outcome.batch_failures == [] and outcome.row_findings.empty


def test_an_integer_label_value_set_holds_integers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, _ = infer_suite_file(mixed_reference(tmp_path), label="grade", name="mixed")
    expectations = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in json.loads(path.read_text())["expectations"]}
    assert expectations[("expect_column_values_to_be_in_set", "grade")]["value_set"] == [0, 1, 2]
    assert expectations[("expect_column_values_to_be_in_set", "flag")]["value_set"] == [False, True]
    assert expectations[("expect_column_values_to_be_of_type", "colour")]["type_"] == "str"
    assert "float64" in expectations[("expect_column_values_to_be_in_type_list", "count")]["type_list"]


def test_a_label_written_as_floats_meets_its_value_set_from_csv_and_parquet(tmp_path, monkeypatch):
    # Found on stevedata's TV16: R's 0/1 label with missing values is a
    # float column, written "0.0" and "1.0". pandas reads the reference as
    # floats (value set [0.0, 1.0], compared as "0" and "1") while the CSV
    # batch is read as text: every row of a clean batch broke the label's set.
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)

    def frame(rows):
        return pd.DataFrame({
            "votes": rng.integers(0, 2, rows).astype(float),
            "code": rng.choice(["007", "012", "100"], rows),  # pandas reads these as integers
            "size": rng.normal(5, 1, rows).round(2),
        })

    frame(80).to_csv(tmp_path / "reference.csv", index=False)
    batch = frame(40)
    batch.to_csv(tmp_path / "batch.csv", index=False)
    batch.to_parquet(tmp_path / "batch.parquet")
    assert "1.0" in (tmp_path / "batch.csv").read_text()
    config = tmp_path / "poisonguard.toml"
    config.write_text('[dataset]\nname = "votes"\nlabel = "votes"\ncategorical = ["code"]\n')
    path, _ = infer_suite_file(tmp_path / "reference.csv", label="votes", name="votes", config_path=config)
    suite = load_suite(path)
    expectations = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in json.loads(path.read_text())["expectations"]}
    assert expectations[("expect_column_values_to_be_in_set", "votes")]["value_set"] == [0.0, 1.0]
    assert expectations[("expect_column_values_to_be_in_set", "code")]["value_set"] == [100, 12, 7]  # in text order
    for name in ("batch.csv", "batch.parquet"):
        table = load_table([tmp_path / name], label="votes", id_column=None)
        kinds = {"votes": "categorical", "code": "categorical", "size": "numeric"}
        typed = coerce_types(table.raw, kinds, id_column=table.id_column, source=name).typed
        assert set(typed["votes"]) == {"0", "1"} and set(typed["code"]) == {"7", "12", "100"}
        outcome = validate_frame(typed, suite, id_column=table.id_column)
        assert outcome.batch_failures == [] and outcome.row_findings.empty, name
