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
