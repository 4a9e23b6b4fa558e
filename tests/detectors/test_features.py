"""Tests of detectors.features.FeatureEncoder on tiny hand-checkable frames."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from poisonguard.detectors.base import DetectorError
from poisonguard.detectors.features import MAX_SCALED, FeatureEncoder, imputed_as_missing


@pytest.fixture
def reference():
    return pd.DataFrame(
        {
            "body_mass_g": [3000.0, 3500.0, 4000.0, 4500.0, np.nan],
            "island": ["Biscoe", "Dream", "Biscoe", None, "Torgersen"],
            "sex": pd.Series(["m", "f", "m", "f", "m"], dtype="category"),
            "count": [1, 1, 1, 1, 1],
        }
    )


def test_inferred_columns_and_names(reference):
    encoder = FeatureEncoder().fit(reference)
    assert encoder.numeric_columns_ == ["body_mass_g", "count"]
    assert encoder.categorical_columns_ == ["island", "sex"]
    assert list(encoder.feature_names_out_) == [
        "body_mass_g",
        "body_mass_g__missing",
        "count",
        "count__missing",
        "island=Biscoe",
        "island=Dream",
        "island=Torgersen",
        "island=<missing>",
        "sex=f",
        "sex=m",
        "sex=<missing>",
    ]
    assert list(encoder.get_feature_names_out()) == list(encoder.feature_names_out_)


@pytest.mark.parametrize(
    "observed, expected",
    [
        (np.arange(1.0, 101.0), 49.5),  # the interquartile range when it is positive
        # 85 zeros and 100..1500: the mean absolute deviation from 0 (120) in IQR units
        (np.r_[np.zeros(85), np.arange(1.0, 16.0) * 100.0], 120.0 * 1.349 / 0.7979),
        (np.r_[np.zeros(999), [5000.0]], 5.0 * 1.349 / 0.7979),
        (np.full(10, 3.0), 1.0),
        (np.array([]), 1.0),
    ],
)
def test_robust_spread_stands_in_where_the_quartiles_coincide(observed, expected):
    from poisonguard.detectors.features import robust_spread

    assert robust_spread(observed) == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60),
    factor=st.sampled_from([0.001, 0.5, 3.0, 1000.0]),
)
def test_robust_spread_is_positive_and_scales_with_the_column(values, factor):
    from poisonguard.detectors.features import robust_spread

    observed = np.asarray(values)
    spread = robust_spread(observed)
    assert np.isfinite(spread) and spread > 0
    if np.ptp(observed) > 0:  # a constant column keeps 1, whatever its unit
        assert robust_spread(observed * factor) == pytest.approx(spread * factor, rel=1e-9)


def test_a_mostly_zero_column_is_not_scaled_in_its_own_units():
    # A debt of 0 for 90 % of rows and thousands otherwise: scaled by 1 it
    # outweighed every other feature in every distance.
    reference = pd.DataFrame({"debt": np.r_[np.zeros(90), np.linspace(1000.0, 5000.0, 10)],
                              "age": np.linspace(20.0, 70.0, 100)})
    encoder = FeatureEncoder().fit(reference)
    assert encoder.scales_["debt"] == pytest.approx(300.0 * 1.349 / 0.7979)  # mean debt 300
    encoded = encoder.transform(reference)
    assert encoded["debt"].abs().max() < 10 * encoded["age"].abs().max()


def test_numeric_values_are_imputed_and_robust_scaled(reference):
    encoder = FeatureEncoder().fit(reference)
    # observed 3000..4500: median 3750, IQR 4125 - 3375 = 750
    assert encoder.medians_["body_mass_g"] == 3750.0
    assert encoder.scales_["body_mass_g"] == 750.0
    # a constant column has IQR 0, which becomes 1
    assert encoder.scales_["count"] == 1.0
    batch = pd.DataFrame(
        {"body_mass_g": [4500.0, np.nan], "island": ["Dream", "Dream"], "sex": ["f", "m"], "count": [3, 1]},
        index=["r1", "r2"],
    )
    out = encoder.transform(batch)
    assert list(out.index) == ["r1", "r2"]
    assert (out.dtypes == np.float64).all()
    np.testing.assert_allclose(out["body_mass_g"], [1.0, 0.0])
    np.testing.assert_allclose(out["body_mass_g__missing"], [0.0, 1.0])
    np.testing.assert_allclose(out["count"], [2.0, 0.0])
    # the indicator exists even though 'count' was never missing at fit
    np.testing.assert_allclose(out["count__missing"], [0.0, 0.0])


def test_categories_unseen_and_missing(reference):
    encoder = FeatureEncoder().fit(reference)
    batch = pd.DataFrame(
        {"body_mass_g": [4000.0] * 3, "island": ["Torgersen", "Atlantis", None], "sex": ["m"] * 3, "count": [1] * 3}
    )
    out = encoder.transform(batch)
    island = out[[name for name in out.columns if name.startswith("island=")]]
    np.testing.assert_array_equal(
        island.to_numpy(),
        [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]],  # seen, unseen -> zeros, missing level
    )


def test_gapless_indicators_are_left_out_unwritten(reference):
    encoder = FeatureEncoder().fit(reference)
    batch = pd.DataFrame({"body_mass_g": [3100.0, 5000.0], "island": ["Dream", "Mars"],
                          "sex": ["f", None], "count": [1, np.nan]})
    # body_mass_g and island have a gap in the reference, count and sex one
    # in the batch: only frames without any gap in a column leave its
    # indicator (or missing level) out.
    assert encoder.gapless_indicators(batch, reference) == []
    assert encoder.gapless_indicators(reference) == ["count__missing", "sex=<missing>"]
    assert encoder.gapless_indicators(batch.iloc[:1]) == [
        "body_mass_g__missing", "count__missing", "island=<missing>", "sex=<missing>"]
    left_out = ["body_mass_g__missing", "count__missing", "island=Dream"]
    whole = encoder.transform(batch)
    partial = encoder.transform(batch, without=left_out)
    pd.testing.assert_frame_equal(partial, whole.drop(columns=left_out))
    assert partial.to_numpy().flags["C_CONTIGUOUS"]


def test_explicit_columns_and_string_matching():
    frame = pd.DataFrame({"grade": [1, 2, 2], "weight": ["1.5", "2.5", "3.5"], "note": ["a", "b", "c"]})
    encoder = FeatureEncoder(numeric=["weight"], categorical=["grade"]).fit(frame)
    assert encoder.numeric_columns_ == ["weight"]
    assert encoder.categorical_columns_ == ["grade"]
    # levels compare as text: a string '2' in a later batch is the level 2
    out = encoder.transform(pd.DataFrame({"grade": ["2"], "weight": [2.5]}))
    assert out.loc[0, "grade=2"] == 1.0
    assert out.loc[0, "weight"] == 0.0


@pytest.mark.parametrize("params", [{"numeric": ["flipper_length_mm"]}, {"categorical": ["flipper_length_mm"]}])
def test_missing_requested_column_is_named(reference, params):
    with pytest.raises(DetectorError, match="flipper_length_mm"):
        FeatureEncoder(**params).fit(reference)


def test_missing_column_at_transform_is_named(reference):
    encoder = FeatureEncoder().fit(reference)
    with pytest.raises(DetectorError, match="'island'"):
        encoder.transform(reference.drop(columns=["island"]))


def test_non_numeric_value_in_numeric_column_is_named():
    frame = pd.DataFrame({"weight": ["1.5", "heavy"]})
    with pytest.raises(DetectorError, match="'weight'"):
        FeatureEncoder(numeric=["weight"]).fit(frame)


def test_column_in_both_lists_is_an_error(reference):
    with pytest.raises(DetectorError, match="body_mass_g"):
        FeatureEncoder(numeric=["body_mass_g"], categorical=["body_mass_g"]).fit(reference)


def test_clone_and_params_round_trip(reference):
    encoder = FeatureEncoder(numeric=["body_mass_g"], categorical=["island"])
    copy = clone(encoder)
    assert copy.get_params() == {"numeric": ["body_mass_g"], "categorical": ["island"], "max_levels": 50}
    assert not hasattr(copy, "feature_names_out_")
    copy.set_params(categorical=["sex"]).fit(reference)
    assert copy.categorical_columns_ == ["sex"]


def test_scikit_learn_estimator_checks():
    check_estimator(
        FeatureEncoder(),
        expected_failed_checks={
            # By design an object column is categorical, so an object array
            # holding a dict is encoded as text rather than rejected.
            "check_dtype_object": "object columns are one-hot encoded, not rejected",
        },
    )


def test_many_levels_become_one_rarity_column_and_free_text_is_left_out():
    rows = 1_000
    merchants = [f"m{i % 200}" for i in range(rows)]  # 200 levels, 5 rows each
    merchants[0] = "m_once"
    frame = pd.DataFrame({
        "merchant": merchants,
        "note": [f"free text number {i}" for i in range(rows)],
        "colour": ["red", "blue"] * (rows // 2),
    })
    encoder = FeatureEncoder(categorical=["merchant", "note", "colour"], max_levels=50).fit(frame)
    assert encoder.rarity_columns_ == ["merchant"]
    assert encoder.text_columns_ == ["note"]
    assert list(encoder.get_feature_names_out()) == [
        "colour=blue", "colour=red", "colour=<missing>", "merchant__rarity",
    ]
    encoded = encoder.transform(pd.DataFrame({
        "merchant": ["m1", "m_once", "never_seen"], "note": ["x", "y", "z"], "colour": ["red", "red", "red"],
    }))
    # -log10 of the share in n + 1 rows: 5 rows, 1 row, and an unseen value counted as 1 row.
    assert encoded["merchant__rarity"].tolist() == pytest.approx(
        [-np.log10(5 / 1001), -np.log10(1 / 1001), np.log10(1001)]
    )


@pytest.mark.parametrize("rows", [1_000, 4_000, 20_000])
def test_an_unseen_value_is_exactly_as_rare_as_one_seen_once(rows):
    # To the bit: not "above the range" of the trusted rows, whose rarest values were seen once
    # (ECOD's tails and the reasons compare exactly). As -log10(1 / (n + 1)) against
    # log10(n + 1) the two differed in the last bit at 4,000 rows (not at 1,000 or 20,000).
    merchants = [f"m{i % (rows // 5)}" for i in range(rows)]
    merchants[0] = "m_once"
    frame = pd.DataFrame({"merchant": merchants})
    encoder = FeatureEncoder(categorical=["merchant"], max_levels=50).fit(frame)
    trusted = encoder.transform(frame)["merchant__rarity"]
    never = encoder.transform(pd.DataFrame({"merchant": ["never_seen"]}))["merchant__rarity"].iloc[0]
    assert trusted.iloc[0] == never == trusted.max()


def test_the_largest_finite_values_encode_as_finite_features_still_the_farthest():
    values = np.array([0.0, 0.1, 0.2, 0.3, 1.7e308, -1.7e308, 1e6])
    encoder = FeatureEncoder(numeric=["x"], categorical=[]).fit(pd.DataFrame({"x": values[:4]}))
    scaled = encoder.transform(pd.DataFrame({"x": values}))["x"].to_numpy()
    assert np.isfinite(scaled).all()  # 1.7e308 over a spread of 0.15 was inf, which every detector refuses
    assert scaled[4] == MAX_SCALED and scaled[5] == -MAX_SCALED
    assert scaled[6] == pytest.approx((1e6 - 0.15) / 0.15)  # values short of the cut are as before


def test_imputed_as_missing_is_nan_where_the_indicator_is_set():
    matrix = np.array([[1.0, 0.0, 5.0, 0.0], [2.0, 1.0, 6.0, 1.0], [3.0, 0.0, 7.0, 0.0]])
    names = ["a", "a__missing", "b", "b=__missing"]
    masked = imputed_as_missing(matrix, names)
    np.testing.assert_array_equal(masked, [[1.0, 0.0, 5.0, 0.0], [np.nan, 1.0, 6.0, 1.0], [3.0, 0.0, 7.0, 0.0]])
    assert matrix[1, 0] == 2.0  # a copy
    untouched = np.array([[1.0, 0.0], [2.0, 0.0]])
    assert imputed_as_missing(untouched, ["a", "a__missing"]) is untouched
    assert imputed_as_missing(matrix, ["a", "c__missing", "b", "d"]) is matrix


def test_imputed_as_missing_finds_the_cells_the_encoder_filled():
    frame = pd.DataFrame({"a": [1.0, None, 3.0, 4.0], "b": ["x", "y", None, "x"], "c": [5.0, 6.0, None, 8.0]})
    encoder = FeatureEncoder(numeric=["a", "c"], categorical=["b"]).fit(frame)
    encoded = encoder.transform(frame)
    masked = imputed_as_missing(encoded.to_numpy(dtype=float), encoded.columns)
    missing = pd.DataFrame(masked, columns=encoded.columns).isna()
    assert missing.sum().to_dict() == {name: int(name in ("a", "c")) for name in encoded.columns}
    assert missing["a"].tolist() == [False, True, False, False] and missing["c"].tolist() == [False, False, True, False]
