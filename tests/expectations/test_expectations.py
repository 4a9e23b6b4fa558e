"""Tests of suite inference, suite files and row-level validation (expectations/)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Imported from the modules (not the package) so the tests also run where an
# old editable install still maps ``expectations`` as a namespace package.
from poisonguard.expectations.infer import (
    category_text,
    NUMERIC_TYPES,
    column_kinds,
    infer_suite,
    load_suite,
    save_suite,
    suite_json,
)
from poisonguard.expectations.validate import check_name, validate_frame
from poisonguard.detectors.base import FINDING_COLUMNS
from poisonguard.expectations.errors import FrameError, SuiteError


def reference_frame() -> pd.DataFrame:
    """Six trusted penguins: int, float with a gap, constant, categories, free text, label."""
    return pd.DataFrame(
        {
            "id": ["r1", "r2", "r3", "r4", "r5", "r6"],
            "body_mass_g": [3000, 3500, 4000, 4500, 5000, 6000],
            "bill_mm": [40.0, 41.5, np.nan, 39.0, 45.0, 50.0],
            "year": [2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
            "island": ["Dream", "Biscoe", "Torgersen", "Biscoe", "Dream", "Biscoe"],
            "comment": ["a", "b", "c", "d", "e", "f"],
            "tag": ["x", None, "y", "z", "w", "v"],
            "species": ["Adelie", "Gentoo", "Adelie", "Chinstrap", "Gentoo", "Adelie"],
        }
    )


@pytest.fixture(scope="module")
def suite():
    reference = reference_frame().drop(columns="id")
    return infer_suite(
        reference, name="penguins", label="species", id_column="id", ignore=["tag"], max_categories=5,
        range_margin=0.1, range_false_positive_rate=None, not_null_min_rows=1,
        # Six rows leave Good-Turing's unseen mass high; these tests are about the rules' shapes.
        max_unseen_mass=1.0,
    )


def config_list(suite) -> list[tuple[str, dict]]:
    return [(e.configuration.type, dict(e.configuration.kwargs)) for e in suite.expectations]


def test_infer_suite_exact_expectations(suite):
    numbers = list(NUMERIC_TYPES)
    mass_low, mass_high = 3000 - 0.1 * (6000 - 3000), 6000 + 0.1 * (6000 - 3000)
    bill_low, bill_high = 39.0 - 0.1 * (50.0 - 39.0), 50.0 + 0.1 * (50.0 - 39.0)
    assert (mass_low, mass_high) == (2700.0, 6300.0)
    assert (bill_low, bill_high) == pytest.approx((37.9, 51.1))
    columns = ["body_mass_g", "bill_mm", "year", "island", "comment", "tag", "species", "id"]
    assert config_list(suite) == [
        ("expect_table_columns_to_match_set", {"column_set": columns, "exact_match": False}),
        ("expect_column_to_exist", {"column": "body_mass_g"}),
        ("expect_column_values_to_be_in_type_list", {"column": "body_mass_g", "type_list": numbers}),
        ("expect_column_values_to_not_be_null", {"column": "body_mass_g"}),
        ("expect_column_values_to_be_between", {"column": "body_mass_g", "min_value": mass_low, "max_value": mass_high}),
        ("expect_column_to_exist", {"column": "bill_mm"}),
        ("expect_column_values_to_be_in_type_list", {"column": "bill_mm", "type_list": numbers}),
        # bill_mm has an empty value in the reference: no not-null expectation.
        ("expect_column_values_to_be_between", {"column": "bill_mm", "min_value": bill_low, "max_value": bill_high}),
        ("expect_column_to_exist", {"column": "year"}),
        ("expect_column_values_to_be_in_type_list", {"column": "year", "type_list": numbers}),
        ("expect_column_values_to_not_be_null", {"column": "year"}),
        # A constant column is widened by margin * |value|.
        ("expect_column_values_to_be_between", {"column": "year", "min_value": 2.0 - 0.2, "max_value": 2.0 + 0.2}),
        ("expect_column_to_exist", {"column": "island"}),
        ("expect_column_values_to_be_of_type", {"column": "island", "type_": "str"}),
        ("expect_column_values_to_not_be_null", {"column": "island"}),
        ("expect_column_values_to_be_in_set", {"column": "island", "value_set": ["Biscoe", "Dream", "Torgersen"]}),
        # Six distinct values > max_categories=5: no value set.
        ("expect_column_to_exist", {"column": "comment"}),
        ("expect_column_values_to_be_of_type", {"column": "comment", "type_": "str"}),
        ("expect_column_values_to_not_be_null", {"column": "comment"}),
        ("expect_column_to_exist", {"column": "tag"}),  # ignored: existence only
        ("expect_column_to_exist", {"column": "species"}),
        ("expect_column_values_to_be_of_type", {"column": "species", "type_": "str"}),
        ("expect_column_values_to_not_be_null", {"column": "species"}),
        ("expect_column_values_to_be_in_set", {"column": "species", "value_set": ["Adelie", "Chinstrap", "Gentoo"]}),
        # The id column is not in this reference but must exist in batches.
        ("expect_column_to_exist", {"column": "id"}),
    ]


def test_infer_suite_meta_says_where_numbers_came_from(suite):
    between = [e for e in suite.expectations if e.configuration.type == "expect_column_values_to_be_between"]
    assert between[0].configuration.meta == {
        "inferred_from": "reference",
        "reference_min": 3000.0,
        "reference_max": 6000.0,
        "range_margin": 0.1,
        # No tail rate: a row beyond the range of 6 rows has p = 1 / 7.
        "false_positive_rate": pytest.approx(1 / 7),
    }
    meta = suite.meta["poisonguard"]
    assert {k: meta[k] for k in ("label", "id_column", "reference_rows")} == {
        "label": "species",
        "id_column": "id",
        "reference_rows": 6,
    }
    assert meta["inferred_at"].endswith("+00:00")
    expected_kinds = {
        "body_mass_g": "numeric",
        "bill_mm": "numeric",
        "year": "numeric",
        "island": "categorical",
        "comment": "categorical",
        "species": "categorical",
    }
    assert column_kinds(suite) == expected_kinds


def test_column_kinds_falls_back_to_type_lists(suite):
    bare = load_suite_from_dict({**suite.to_json_dict(), "meta": {}})
    assert column_kinds(bare) == column_kinds(suite)


def test_explicit_kinds_win_over_dtypes():
    reference = pd.DataFrame({"zip": [1000, 2000, 1000], "score": ["1.5", "2.5", "3.5"], "y": [0, 1, 0]})
    suite = infer_suite(reference, name="kinds", label="y", numeric=["score"], categorical=["zip"], max_unseen_mass=1.0)
    assert column_kinds(suite) == {"zip": "categorical", "score": "numeric", "y": "categorical"}
    sets = {c["column"]: c["value_set"] for t, c in config_list(suite) if t == "expect_column_values_to_be_in_set"}
    # Values as the reference holds them: a GX user's frame has integers here.
    assert sets == {"zip": [1000, 2000], "y": [0, 1]}


def test_infer_rejects_bad_arguments():
    reference = reference_frame()
    with pytest.raises(FrameError, match="'label_x'"):
        infer_suite(reference, name="x", label="label_x")
    with pytest.raises(SuiteError, match="'island'"):
        infer_suite(reference, name="x", label="species", numeric=["island"], categorical=["island"])
    with pytest.raises(FrameError, match="'island'"):
        infer_suite(reference, name="x", label="species", numeric=["island"])


def batch_frame() -> pd.DataFrame:
    batch = reference_frame()
    batch.loc[0, "body_mass_g"] = 9800  # r1 out of range
    batch.loc[1, "island"] = "Atlantis"  # r2 unknown category
    batch.loc[2, "comment"] = None  # r3 empty where the reference has none
    return batch


def test_validate_flags_exactly_the_bad_rows(suite):
    outcome = validate_frame(batch_frame(), suite, id_column="id")
    findings = outcome.row_findings
    assert list(findings.columns) == FINDING_COLUMNS
    assert sorted(zip(findings["row_id"], findings["check"])) == [
        ("r1", "expectation.values_to_be_between"),
        ("r2", "expectation.values_to_be_in_set"),
        ("r3", "expectation.values_to_not_be_null"),
    ]
    assert findings["flagged"].all() and (findings["score"] == 1.0).all()
    # Each inferred rule's p-value: beyond a 6-row range 1/7; outside a set whose six rows
    # hold one singleton, (1 + 1) / 7 (Good-Turing plus one); empty where none of 6 was, 1/7.
    p_values = dict(zip(findings["row_id"], findings["p_value"]))
    assert p_values == {"r1": pytest.approx(1 / 7), "r2": pytest.approx(2 / 7), "r3": pytest.approx(1 / 7)}
    reasons = dict(zip(findings["row_id"], findings["reason"]))
    assert reasons == {
        "r1": "body_mass_g = 9800 is outside the expected range 2700–6300 inferred from the reference",
        "r2": "island = 'Atlantis' is not one of the expected values: Biscoe, Dream, Torgersen",
        "r3": "comment is empty but the reference has no empty values",
    }
    assert outcome.batch_failures == []
    assert outcome.suite_name == "penguins" and not outcome.passed
    # One JSON-ready summary per expectation, in suite order.
    assert len(outcome.results) == len(suite.expectations)
    json.dumps(outcome.results)
    failed = [(r["column"], r["check"], r["unexpected_count"]) for r in outcome.results if not r["success"]]
    assert failed == [
        ("body_mass_g", "expectation.values_to_be_between", 1),
        ("island", "expectation.values_to_be_in_set", 1),
        ("comment", "expectation.values_to_not_be_null", 1),
    ]


def test_reference_itself_passes(suite):
    outcome = validate_frame(reference_frame(), suite, id_column="id")
    assert outcome.passed, (outcome.batch_failures, outcome.row_findings)


def test_missing_column_is_a_batch_failure_naming_it(suite):
    outcome = validate_frame(batch_frame().drop(columns="island"), suite, id_column="id")
    assert outcome.batch_failures == ["column 'island' is missing from the batch (4 expectation(s) on it failed)"]
    # Rows are still checked on the columns that are there.
    assert sorted(outcome.row_findings["row_id"]) == ["r1", "r3"]


def test_wrong_type_and_gx_exceptions_are_batch_failures(suite):
    batch = reference_frame().astype({"body_mass_g": str})
    outcome = validate_frame(batch, suite, id_column="id")
    assert outcome.batch_failures[0] == "column 'body_mass_g' has dtype str, but the suite expects a numeric type"
    # GX raises comparing text with numeric bounds; the message is kept, not swallowed.
    assert outcome.batch_failures[1].startswith(
        "expect_column_values_to_be_between on column 'body_mass_g' could not be evaluated: Column values"
    )
    between = [r for r in outcome.results if r["check"] == "expectation.values_to_be_between"][0]
    assert between["exception"] and not between["success"]


def test_row_ids_are_strings_and_labels_compare_as_text():
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 1]})  # integer labels
    suite = infer_suite(reference, name="ints", label="y")
    batch = pd.DataFrame({"key": [10, 11, 12], "x": [1.0, 2.0, 2.5], "y": ["0", "1", "7"]})  # labels read as text
    findings = validate_frame(batch, suite, id_column="key").row_findings
    assert findings[["row_id", "check"]].values.tolist() == [["12", "expectation.values_to_be_in_set"]]
    assert findings["reason"].tolist() == ["y = '7' is not one of the expected values: 0, 1"]
    with pytest.raises(FrameError, match="'row'"):
        validate_frame(batch, suite, id_column="row")


def test_empty_label_and_nullable_numbers():
    reference = pd.DataFrame({"x": pd.array([1, 5, 9], dtype="Int64"), "y": ["a", "b", None]})
    suite = infer_suite(reference, name="nullable", label="y", not_null_min_rows=3)
    batch = pd.DataFrame({"id": ["p", "q"], "x": pd.array([None, 4], dtype="Int64"), "y": [None, "a"]})
    findings = validate_frame(batch, suite, id_column="id").row_findings
    assert findings[["row_id", "check", "reason"]].values.tolist() == [
        ["p", "expectation.values_to_not_be_null", "x is empty but the reference has no empty values"],
        ["p", "expectation.values_to_not_be_null", "y is empty but every row needs a label"],
    ]


def test_never_empty_is_inferred_from_any_reference_with_its_error_rate():
    def not_null_rules(rows):
        reference = pd.DataFrame({"x": np.arange(rows, dtype=float), "y": ["a", "b"] * (rows // 2)})
        suite = infer_suite(reference, name="rows", label="y")
        return {e.configuration.kwargs["column"]: (e.configuration.meta or {}).get("false_positive_rate")
                for e in suite.expectations if e.configuration.type == "expect_column_values_to_not_be_null"}

    # A small reference still catches an empty cell where it had none, with the p-value
    # 1 / (n + 1) that such a rule has; the label's rule is a hard one (no rate).
    assert not_null_rules(40) == {"x": pytest.approx(1 / 41), "y": None}
    assert not_null_rules(300) == {"x": pytest.approx(1 / 301), "y": None}


def test_an_empty_cell_and_a_new_category_carry_the_rules_p_values():
    reference = pd.DataFrame({
        "x": np.arange(20, dtype=float),
        "colour": ["red"] * 10 + ["blue"] * 10,
        "y": ["a", "b"] * 10,
    })
    suite = infer_suite(reference, name="rated", label="y")
    batch = pd.DataFrame({"id": ["p", "q", "r"], "x": [None, 3.0, 4.0], "colour": ["red", "green", "red"],
                          "y": ["a", "a", "c"]})
    findings = validate_frame(batch, suite, id_column="id").row_findings.set_index(["row_id", "check"])
    # No empty x among 20 rows: 1 / 21. Every colour seen 10 times: Good-Turing 0, plus one: 1 / 21.
    assert findings.loc[("p", "expectation.values_to_not_be_null"), "p_value"] == pytest.approx(1 / 21)
    assert findings.loc[("q", "expectation.values_to_be_in_set"), "p_value"] == pytest.approx(1 / 21)
    # An unknown label breaks a hard rule: no p-value.
    assert np.isnan(findings.loc[("r", "expectation.values_to_be_in_set"), "p_value"])


def test_no_value_set_where_the_reference_leaves_much_unseen():
    # Four of twenty rows carry a value seen once: Good-Turing says 20 % of clean rows
    # would fall outside a set drawn from it, far above max_unseen_mass.
    colours = ["red"] * 8 + ["blue"] * 8 + ["teal", "plum", "navy", "sand"]
    reference = pd.DataFrame({"colour": colours, "y": ["a", "b"] * 10})
    def value_sets(**options):
        suite = infer_suite(reference, name="gt", label="y", **options)
        return [e.configuration.kwargs["column"] for e in suite.expectations
                if e.configuration.type == "expect_column_values_to_be_in_set"]
    assert value_sets() == ["y"]
    assert value_sets(max_unseen_mass=0.25) == ["colour", "y"]


def test_a_skewed_column_is_bounded_where_its_tail_falls_to_the_rate():
    values = [float(v) for v in range(1, 16)] + [20.0, 30.0, 45.0, 70.0, 100.0]
    suite = infer_suite(pd.DataFrame({"x": values, "y": ["a"] * 20}), name="tail", label="y")
    between = [e.configuration for e in suite.expectations if e.configuration.type == "expect_column_values_to_be_between"][0]
    # Peaks over the 5th largest value (20): excesses 10, 25, 50, 80 (m = 4, mean 41.25), tail
    # probability 5/21 there; one numeric column shares the 0.005 rate over 2 sides. Lomax inverse:
    upper = 20.0 + 4 * 41.25 * ((5 / 21 / 0.0025) ** (1 / 4) - 1)
    assert between.kwargs["max_value"] == pytest.approx(upper)  # 370.5, not the margin's 149.5
    assert between.kwargs["min_value"] == 0.0
    assert between.meta["upper_bound"] == "widened to where the reference's tail falls to p=0.0025"
    assert between.meta["lower_bound"] == "clamped at 0: the reference has no negative values"


def test_tail_bounds_keep_clean_skewed_rows_in_range():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.lognormal(0.0, 1.0, size=(30, 3)), columns=["a", "b", "c"]).assign(y="k")
    clean = pd.DataFrame(rng.lognormal(0.0, 1.0, size=(20000, 3)), columns=["a", "b", "c"])
    clean = clean.assign(y="k", id=[f"r{i}" for i in range(len(clean))])

    def flagged(rate):
        suite = infer_suite(reference, name="skew", label="y", range_false_positive_rate=rate)
        return validate_frame(clean, suite, id_column="id").row_findings["row_id"].nunique()

    # Lognormal columns, 30 trusted rows: 0.6 % of clean rows break a tail-widened
    # range, 3.2 % a range widened by half its width alone.
    assert (flagged(0.005), flagged(None)) == (120, 646)


def test_no_progress_bars_on_stderr(suite, capfd):
    validate_frame(batch_frame(), suite, id_column="id")
    assert "Calculating Metrics" not in capfd.readouterr().err


def test_check_names():
    assert check_name("expect_column_values_to_be_between") == "expectation.values_to_be_between"
    assert check_name("expect_column_to_exist") == "expectation.column_to_exist"
    assert check_name("expect_table_columns_to_match_set") == "expectation.table_columns_to_match_set"


# -- suite files ------------------------------------------------------------


def load_suite_from_dict(data: dict):
    from great_expectations import ExpectationSuite

    return ExpectationSuite(**data)


def test_save_load_round_trip_is_byte_identical(suite, tmp_path):
    first = save_suite(suite, tmp_path / "suites" / "penguins.json")
    text = first.read_bytes()
    assert text.endswith(b"}\n") and text == suite_json(suite).encode()
    loaded = load_suite(first)
    second = save_suite(loaded, tmp_path / "again.json")
    assert second.read_bytes() == text
    assert config_list(loaded) == config_list(suite) and loaded.meta == suite.meta
    assert json.loads(text)["expectations"][0]["type"] == "expect_table_columns_to_match_set"


def test_load_suite_errors_name_the_file(suite, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(SuiteError, match="nope.json"):
        load_suite(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(SuiteError, match="broken.json"):
        load_suite(broken)
    unknown = tmp_path / "unknown.json"
    data = suite.to_json_dict()
    data["expectations"].insert(1, {"type": "expect_nothing_at_all", "kwargs": {}})
    unknown.write_text(json.dumps(data), encoding="utf-8")
    # GX alone would log and drop this expectation; we refuse the file.
    with pytest.raises(SuiteError, match=r"unknown.json: expectation #2 \(expect_nothing_at_all\)"):
        load_suite(unknown)


# -- properties -------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def numeric_references(draw):
    rows = draw(st.integers(min_value=1, max_value=12))
    n_columns = draw(st.integers(min_value=1, max_value=3))
    data = {}
    for j in range(n_columns):
        if draw(st.booleans()):
            data[f"x{j}"] = draw(st.lists(finite, min_size=rows, max_size=rows))
        else:
            data[f"x{j}"] = draw(st.lists(st.integers(-10**6, 10**6), min_size=rows, max_size=rows))
    data["label"] = draw(st.lists(st.sampled_from(["a", "b"]), min_size=rows, max_size=rows))
    return pd.DataFrame(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reference=numeric_references(),
    margin=st.sampled_from([0.0, 0.1, 0.5]),
    column_pick=st.integers(min_value=0),
    row_pick=st.integers(min_value=0),
    above=st.booleans(),
)
def test_suite_accepts_its_reference_and_flags_values_outside(reference, margin, column_pick, row_pick, above):
    suite = infer_suite(reference, name="prop", label="label", range_margin=margin)
    batch = reference.assign(row=[f"id{i}" for i in range(len(reference))])
    clean = validate_frame(batch, suite, id_column="row")
    assert clean.passed, (clean.batch_failures, clean.row_findings)

    columns = [c for c in reference.columns if c != "label"]
    column = columns[column_pick % len(columns)]
    row = row_pick % len(reference)
    bounds = [c for t, c in config_list(suite) if t == "expect_column_values_to_be_between" and c["column"] == column][0]
    edge = bounds["max_value"] if above else bounds["min_value"]
    outside = edge + math.copysign(max(1.0, abs(edge)), 1.0 if above else -1.0)
    batch[column] = batch[column].astype(float)
    batch.loc[row, column] = outside
    findings = validate_frame(batch, suite, id_column="row").row_findings
    assert findings[["row_id", "check"]].values.tolist() == [[f"id{row}", "expectation.values_to_be_between"]]


def test_an_id_like_column_gets_no_value_set():
    reference = pd.DataFrame({"ticket": [f"t-{i}" for i in range(24)], "colour": ["red", "blue"] * 12, "y": ["a", "b"] * 12})
    suite = infer_suite(reference, name="ids", label="y", categorical=["ticket", "colour"])
    value_sets = {
        e.configuration.kwargs["column"]
        for e in suite.expectations
        if e.configuration.type == "expect_column_values_to_be_in_set"
    }
    assert value_sets == {"colour", "y"}


def test_validation_leaves_no_batch_in_the_shared_engine(suite):
    import gc

    def live_batches():
        gc.collect()
        return {id(o) for o in gc.get_objects() if type(o).__name__ == "PandasBatchData"}

    # Only this validation's batches count: a plain GX context elsewhere in the process
    # (test_suites' cross-check) keeps its own until its context goes.
    before = live_batches()
    first = validate_frame(batch_frame(), suite, id_column="id")
    # GX's shared engine kept the last frame and its row masks until the next run.
    assert live_batches() <= before
    again = validate_frame(batch_frame(), suite, id_column="id")
    pd.testing.assert_frame_equal(first.row_findings, again.row_findings)
    assert first.batch_failures == again.batch_failures


@pytest.mark.parametrize("value, text", [
    ("2.0", "2"), ("2", "2"), (2.0, "2"), (2, "2"), (np.float64(2.0), "2"), ("1.50", "1.5"), (1.5, "1.5"),
    ("-0.0", "0"), ("1e3", "1000"), ("+7", "7"), ("02139", "2139"), (".5", "0.5"),
    ("abc", "abc"), ("", ""), (" 1.0", " 1.0"), ("nan", "nan"), ("1.0.0", "1.0.0"), ("0x10", "0x10"), (True, "True"),
    ("7" * 5000, "7" * 5000),
])
def test_category_text_reads_a_number_by_its_value_whatever_its_form(value, text):
    assert category_text(value) == text


@pytest.mark.parametrize("value", [True, np.bool_(True), "True", "true", "TRUE", "tRuE"])
def test_a_boolean_is_one_category_whatever_its_spelling(value):
    # A Parquet reference's booleans against a CSV exporter's true/false.
    assert category_text(value) == "True"
    assert category_text(str(value).lower().replace("true", "false")) == "False"
    assert category_text("truth") == "truth" and category_text("1") == "1"


# Integers a float holds exactly; pandas reads longer ones as int64, which the integer form keeps.
@given(st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False)))
def test_a_number_written_as_csv_text_is_the_category_the_number_is(number):
    # How pandas writes a cell and how it reads one back natively.
    for written in {repr(number), str(number), str(float(number))}:
        assert category_text(written) == category_text(float(written))
    if isinstance(number, int):
        assert category_text(str(number)) == category_text(number)
