"""Tests of detectors.duplicates on seeded Gaussian data with a near-duplicate flood."""
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from poisonguard.detectors.base import FINDING_COLUMNS, DetectorError
from poisonguard.detectors.features import FeatureEncoder
from poisonguard.detectors.registry import get_detector, registered_detectors
from poisonguard.detectors import duplicates
from poisonguard.detectors._sampling import population_mask
from poisonguard.detectors.duplicates import (
    CONTEXT_SAMPLE_NEIGHBORS, DuplicateFloodDetector, context_kth_distances, kth_distances, population_kth_distances,
)

COLUMNS = ["bill_length_mm", "body_mass_g", "flipper_length_mm"]


def gaussian(n_rows, seed):
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n_rows, len(COLUMNS))), columns=COLUMNS)


def flooded_batch(n_clean=300, copies=15, seed=1):
    """Clean rows, then ``copies`` near-copies (noise 0.01) of the first three, labelled 'Gentoo'."""
    rng = np.random.default_rng(seed)
    clean = gaussian(n_clean, seed)
    parents = clean.iloc[np.arange(copies) % 3].to_numpy()
    flood = pd.DataFrame(parents + rng.normal(scale=0.01, size=parents.shape), columns=COLUMNS)
    batch = pd.concat([clean, flood], ignore_index=True)
    labels = np.array(["Adelie"] * n_clean + ["Gentoo"] * copies, dtype=object)
    return batch, labels


@pytest.fixture(scope="module")
def trusted():
    return gaussian(500, seed=0)


def test_flood_is_found_exactly(trusted):
    batch, labels = flooded_batch()
    findings = DuplicateFloodDetector(alpha=0.01).fit(trusted).findings(batch, labels)
    flagged = set(np.flatnonzero(findings["flagged"]))
    # Every copy, plus the three rows they copy (a clump of 6 is dense
    # whichever row of it you stand on), and two of the 297 other clean rows
    # (alpha = 0.01 expects about 3).
    assert flagged == set(range(300, 315)) | {0, 1, 2} | {16, 135}
    assert list(findings.columns) == FINDING_COLUMNS and len(findings) == len(batch)
    assert (findings["check"] == "duplicates.flood").all()
    assert ((findings["p_value"] > 0) & (findings["p_value"] <= 1)).all()
    np.testing.assert_allclose(findings["score"], DuplicateFloodDetector().fit(trusted).score(batch))


def test_reasons_name_the_clump_and_conflicting_labels(trusted):
    batch, labels = flooded_batch()
    findings = DuplicateFloodDetector(alpha=0.01).fit(trusted).findings(batch, labels)
    copy = findings["reason"].iloc[300]
    # The clump: rows within twice the distance of the row's sixth neighbour.
    assert copy.startswith("one of a dense clump of 6 near-identical batch rows, far denser than trusted rows (p")
    assert "their labels: 'Gentoo' x4, 'Adelie' x1; this row is 'Gentoo'" in copy
    assert "conflicting labels among near-identical rows" in copy
    calm = findings.loc[~findings["flagged"], "reason"].iloc[0]
    assert calm.startswith("batch density here is as expected from trusted rows (p=")


def test_exact_duplicates_are_named(trusted):
    batch = pd.concat([gaussian(200, seed=5), *[gaussian(1, seed=6)] * 6], ignore_index=True)
    labels = ["Adelie"] * 206
    findings = DuplicateFloodDetector(alpha=0.01).fit(trusted).findings(batch, labels)
    assert set(np.flatnonzero(findings["flagged"])) == set(range(200, 206)) | {31, 116}  # two clean rows in 200
    assert "(5 exact duplicates of this row)" in findings["reason"].iloc[200]
    assert "all labelled 'Adelie' like this row: a possible flood of 'Adelie'" in findings["reason"].iloc[200]


def test_a_few_exact_duplicates_are_not_a_flood(trusted):
    # Real tables repeat records: a row with two exact copies is not dense
    # by five neighbours, so it stays with the batch (p = 0.14).
    batch = pd.concat([gaussian(200, seed=5), *[gaussian(1, seed=6)] * 3], ignore_index=True)
    findings = DuplicateFloodDetector(alpha=0.01).fit(trusted).findings(batch, ["Adelie"] * 203)
    assert set(np.flatnonzero(findings["flagged"])) == {31, 116}
    assert findings["p_value"].iloc[200:].min() > 0.1


@pytest.mark.parametrize("alpha, low, high", [(0.05, 0.02, 0.09), (0.01, 0.002, 0.025)])
def test_calibration_on_clean_rows(trusted, alpha, low, high):
    findings = DuplicateFloodDetector(alpha=alpha).fit(trusted).findings(gaussian(2000, seed=7))
    assert low <= findings["flagged"].mean() <= high


def test_self_findings_catch_the_flood_without_a_reference():
    batch, labels = flooded_batch(n_clean=600, copies=30, seed=2)
    detector = DuplicateFloodDetector(alpha=0.01)
    findings = detector.self_findings(batch, labels)
    assert detector.self_referential_
    assert findings["flagged"].iloc[600:].all()
    assert findings["flagged"].iloc[3:600].mean() <= 0.02
    assert "far denser than the rest of the batch" in findings["reason"].iloc[600]


def test_self_findings_calibration_on_a_clean_batch():
    findings = DuplicateFloodDetector(alpha=0.05).self_findings(gaussian(2000, seed=8))
    assert findings["flagged"].mean() <= 0.08


def test_without_a_reference_a_small_group_set_apart_is_not_a_flood():
    # Found on openintro's loans_full_schema: rows with a rare value of a
    # column (one delinquent account, scaled far out) form small groups far
    # from the rest. Their wider neighbourhood is far, so the spike score was
    # high, though their nearest rows are no nearer than anyone's: 5.1 % of
    # the clean batch was flagged as flooded.
    rng = np.random.default_rng(0)
    features = np.hstack([rng.normal(size=(3000, 5)), np.zeros((3000, 2))])
    apart = rng.choice(3000, 150, replace=False)
    features[apart[:90], 5] = features[apart[90:], 6] = 40.0
    labels = rng.choice(["a", "b"], 3000).astype(object)
    flagged = DuplicateFloodDetector(alpha=0.01).self_findings(features, labels)["flagged"].to_numpy()
    assert flagged[apart].sum() == 0 and flagged.sum() <= 6
    # A flood of near-copies among them is still found, whole.
    seeds = rng.choice(3000, 3, replace=False)
    copies = features[np.repeat(seeds, 20)] + rng.normal(0.0, 0.01, (60, 7))
    flooded = DuplicateFloodDetector(alpha=0.01).self_findings(
        np.vstack([features, copies]), np.concatenate([labels, np.full(60, "b", dtype=object)])
    )["flagged"].to_numpy()
    assert flooded[3000:].all() and flooded[:3000].sum() <= 6


def test_without_a_reference_the_edges_of_a_lattice_are_not_a_flood():
    # Stat2Data's FinalFourLong17: every seed of every region of 39
    # tournaments, so each (year, seed) holds 4 rows and every row's nearest
    # rows are one year away. The first and last years' wider neighbourhood is
    # one-sided, farther than the tied bulk's: 144 of 2,496 clean rows were
    # flagged at p = 1e-307, though their nearest rows are no nearer than
    # anyone's (one step, give or take rounding of the encoded scale).
    years, seeds = np.meshgrid(np.arange(1979, 2018), np.arange(1, 17), indexing="ij")
    frame = pd.DataFrame({"year": np.repeat(years.ravel(), 4), "seed": np.repeat(seeds.ravel(), 4)})
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(len(frame)) < 0.06, "final four", "out").astype(object)
    features = FeatureEncoder().fit_transform(frame)
    flagged = DuplicateFloodDetector(alpha=0.01).self_findings(features, labels)["flagged"].to_numpy()
    assert flagged.sum() == 0
    # A flood of near-copies (noise of 1 % of each column's spread) is nearer
    # than one step, and found whole, with the cells it copies.
    copies = frame.iloc[np.repeat([100, 900, 2000], 20)] + rng.normal(0.0, [0.11, 0.046], (60, 2))
    flooded = pd.concat([frame, copies], ignore_index=True)
    flagged = DuplicateFloodDetector(alpha=0.01).self_findings(
        FeatureEncoder().fit_transform(flooded), np.concatenate([labels, np.full(60, "final four", dtype=object)])
    )["flagged"].to_numpy()
    assert flagged[len(frame):].all()
    assert set(np.flatnonzero(flagged[:len(frame)])) == {*range(100, 104), *range(900, 904), *range(2000, 2004)}


def test_without_a_reference_copies_are_a_flood_where_most_rows_have_copies():
    # Where most rows have copies (few levels, an income that is mostly 0),
    # the typical nearest row is at 0 and a flood of copies sits there too:
    # copies are judged by how many the columns explain, not set apart.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"group": rng.integers(0, 3, 2000), "grade": rng.integers(0, 4, 2000),
                          "income": np.where(rng.random(2000) < 0.7, 0.0, rng.lognormal(3, 1, 2000).round(2))})
    earner = int(np.flatnonzero(frame["income"] > 0)[0])
    flooded = pd.concat([frame, frame.iloc[[earner] * 40]], ignore_index=True)
    labels = np.concatenate([rng.choice(["a", "b"], 2000).astype(object), np.full(40, "b", dtype=object)])
    flagged = DuplicateFloodDetector(alpha=0.01).self_findings(FeatureEncoder().fit_transform(flooded), labels)
    assert set(np.flatnonzero(flagged["flagged"])) == {earner, *range(2000, 2040)}


def test_kth_distances_skip_the_row_itself():
    space = np.array([[0.0], [0.0], [1.0], [3.0]])
    np.testing.assert_allclose(kth_distances(space, space, 1, exclude_self=True), [0.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(kth_distances(space, np.array([[2.9]]), 2, exclude_self=False), [1.9])
    # Several ranks from one search: a column per rank, as searched one by one.
    np.testing.assert_allclose(kth_distances(space, space, (1, 2), exclude_self=True), [[0, 1], [0, 1], [1, 1], [2, 3]])
    np.testing.assert_allclose(kth_distances(space, np.array([[2.9]]), (1, 2), exclude_self=False), [[0.1, 1.9]])


@pytest.fixture(scope="module")
def sampled_population():
    """6,000 rows in 3 dimensions, 4,000 of them the population."""
    matrix = np.random.default_rng(0).normal(size=(6_000, 3))
    in_population = population_mask(len(matrix), 0, max_rows=4_000)
    return matrix[in_population], in_population, matrix


def test_context_distances_are_exact_up_to_the_sampled_rank(sampled_population):
    population, in_population, matrix = sampled_population
    np.testing.assert_array_equal(
        context_kth_distances(population, in_population, matrix, CONTEXT_SAMPLE_NEIGHBORS, random_state=0),
        population_kth_distances(population, in_population, matrix, CONTEXT_SAMPLE_NEIGHBORS),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_context_distances_past_it_estimate_the_same_share(sampled_population, seed):
    """The 50th of a quarter of the population stands for the 200th of all of it, without bias."""
    population, in_population, matrix = sampled_population
    exact = population_kth_distances(population, in_population, matrix, 200)
    log_ratio = np.log(context_kth_distances(population, in_population, matrix, 200, random_state=seed) / exact)
    # The 50th of all the population would be (50/200) ** (1/3) as far: a log ratio of -0.46.
    assert abs(np.median(log_ratio)) < 0.01
    assert np.median(np.abs(log_ratio)) < 0.04


def test_registry_params_and_clone(trusted):
    assert registered_detectors()["duplicates.flood"] is DuplicateFloodDetector
    detector = get_detector("duplicates.flood", alpha=0.02, n_neighbors=3)
    assert detector.get_params() == {"alpha": 0.02, "n_neighbors": 3, "context_neighbors": None, "random_state": 0,
                                     "confidence": None}
    fitted = detector.fit(trusted)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "reference_")


def test_errors_name_the_problem(trusted):
    with pytest.raises(DetectorError, match="n_neighbors must be a positive integer"):
        DuplicateFloodDetector(n_neighbors=0).fit(trusted)
    with pytest.raises(DetectorError, match="need at least 6 batch rows"):
        DuplicateFloodDetector().fit(trusted).findings(gaussian(2, seed=9))
    with pytest.raises(DetectorError, match="feature column 'body_mass_g' is missing"):
        DuplicateFloodDetector().fit(trusted).findings(gaussian(20, seed=9).drop(columns=["body_mass_g"]))


def clustered_batch_with_small_clumps(seed):
    """1,000 rows in 20 clusters of very different spreads, then 15 near-copies of each of 3 of them.

    Density varies so much between a row's 5th and 100th neighbour that at
    the tenth of the batch the clumps are ordinary (as on fishing, a real
    table); at the 30th neighbour they stand out.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10, size=(20, 3))
    spreads = np.exp(rng.normal(0, 1.0, 20))
    rows = np.vstack([centre + rng.normal(scale=spread, size=(50, 3)) for centre, spread in zip(centres, spreads)])
    parents = rng.choice(len(rows), 3, replace=False)
    flood = np.repeat(rows[parents], 15, axis=0) + rng.normal(scale=0.01, size=(45, 3))
    return np.vstack([rows, flood]), parents


@pytest.mark.parametrize("seed, clean_flagged", [(0, 3), (1, 5)])
def test_without_a_reference_small_clumps_stand_out_at_the_nearer_context(monkeypatch, seed, clean_flagged):
    batch, parents = clustered_batch_with_small_clumps(seed)
    flagged = DuplicateFloodDetector(alpha=0.01).self_findings(batch)["flagged"].to_numpy()
    assert flagged[1000:].all() and flagged[parents].all()  # the parents are in their clumps
    assert flagged[:1000].sum() == clean_flagged
    # At the tenth of the batch alone, not one copy stands out.
    monkeypatch.setattr(duplicates, "LOCAL_CONTEXT", 10**6)
    assert not DuplicateFloodDetector(alpha=0.01).self_findings(batch)["flagged"].any()


def test_a_context_as_wide_as_the_batch_is_still_searched_in_a_sample():
    """A context_neighbors near the batch's size leaves the sample one row more than the rank it searches."""
    batch = gaussian(1_001, seed=4)
    findings = DuplicateFloodDetector(alpha=0.01, context_neighbors=1_000).self_findings(batch)
    assert np.isfinite(findings["score"]).all() and findings["p_value"].between(0, 1).all()


def test_without_a_reference_copies_a_columns_own_frequencies_explain_are_no_flood():
    # Found on openintro's drone_blades: one two-valued feature, so every row
    # has hundreds of exact copies. The 143 rows that failed inspection (7 %)
    # had the other value as their wider neighbourhood, and were flagged as
    # a flood of a clean batch.
    rng = np.random.default_rng(0)
    inspection = np.where(rng.random(2000) < 0.07, "fail", "pass")
    labels = rng.choice(["current", "prospective"], 2000).astype(object)
    features = FeatureEncoder().fit_transform(pd.DataFrame({"inspection": inspection}))
    flagged = DuplicateFloodDetector(alpha=0.01).self_findings(features, labels)["flagged"].to_numpy()
    assert flagged.sum() == 0
    # Exact copies of one row where continuous columns make copies rare are a flood, whole.
    frame = pd.DataFrame({"inspection": inspection, "x": rng.normal(size=2000), "y": rng.normal(size=2000)})
    frame = pd.concat([frame, frame.iloc[[0] * 40]], ignore_index=True)
    features = FeatureEncoder().fit_transform(frame)
    flagged = DuplicateFloodDetector(alpha=0.01).self_findings(
        features, np.concatenate([labels, np.full(40, "current", dtype=object)])
    )["flagged"].to_numpy()
    assert flagged[2000:].all() and flagged[0] and flagged[1:2000].sum() <= 20


def test_copies_are_counted_on_values_among_the_population():
    # Not read off neighbour distances: a brute search can give an exact copy 3e-8.
    matrix = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.5, 2.0], [1.0, 2.0]])
    in_population = np.array([True, True, False, True, True])
    copies = DuplicateFloodDetector._copies_in_population(matrix, in_population)
    # Rows 0, 1, 4 see the two other population rows with their values; row 2 (outside) sees three.
    np.testing.assert_array_equal(copies, [2, 2, 3, 0, 2])
