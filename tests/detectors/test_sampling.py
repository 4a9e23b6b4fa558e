"""Large batches: detectors that compare batch rows with each other count on a seeded sample.

The population (``detectors._sampling``) is shrunk here to a few hundred
rows, so that batches of a few thousand rows take the sampled path in
seconds, as a million-row batch does with the real bound.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonguard.detectors import _sampling
from poisonguard.detectors._sampling import MIN_LABEL_ROWS, neighbour_population_rows, population_mask
from poisonguard.detectors.registry import get_detector
from tests.detectors.test_backdoor import stamped, three_classes
from tests.detectors.test_duplicates import flooded_batch, gaussian


def test_a_batch_within_the_bound_is_its_own_population():
    assert population_mask(500, 0, max_rows=500).all()
    assert population_mask(0, 0).shape == (0,)


def test_a_neighbour_search_population_shrinks_past_100_000_rows():
    # Whole batches up to 20,000 rows, 20,000 rows up to 100,000; then 2e9 distances in all, at least 2,000 rows.
    sizes = [50, 20_000, 100_000, 200_000, 1_000_000, 10_000_000]
    assert [neighbour_population_rows(n) for n in sizes] == [20_000, 20_000, 20_000, 10_000, 2_000, 2_000]
    # Up to 20 features a distance counts once; past 20,000 rows a wider table's count for features / 20.
    assert [neighbour_population_rows(n, 5) for n in sizes] == [20_000, 20_000, 20_000, 10_000, 2_000, 2_000]
    assert [neighbour_population_rows(n, 190) for n in sizes] == [20_000, 20_000, 2_105, 2_000, 2_000, 2_000]
    assert neighbour_population_rows(20_001, 190) == 10_525
    assert neighbour_population_rows(10_000, 167) == 20_000  # openintro's loans: the whole batch
    assert neighbour_population_rows(50_000, 60) == 13_333


def test_the_sample_is_seeded_and_bounded():
    first = population_mask(1_000, 0, max_rows=100)
    assert first.sum() == 100
    assert np.array_equal(first, population_mask(1_000, 0, max_rows=100))
    assert not np.array_equal(first, population_mask(1_000, 1, max_rows=100))


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 400), min_size=1, max_size=6),
    max_rows=st.integers(10, 600),
    seed=st.integers(0, 2**16),
)
def test_a_labelled_sample_keeps_every_label_in_proportion(counts, max_rows, seed):
    labels = np.repeat([f"label {i}" for i in range(len(counts))], counts)
    mask = population_mask(len(labels), seed, labels, max_rows=max_rows)
    n_rows = len(labels)
    for i, count in enumerate(counts):
        kept = int(mask[labels == f"label {i}"].sum())
        if n_rows <= max_rows:
            assert kept == count
        else:
            # Every label keeps its share, and at least MIN_LABEL_ROWS (all, if fewer).
            assert kept == min(count, max(min(count, MIN_LABEL_ROWS), round(count * max_rows / n_rows)))


def flood_case():
    # A clump is counted in the sample, which must hold n_neighbors (5) copies
    # of it: a 400-row sample of this batch holds about 10 of each 80.
    batch, labels = flooded_batch(n_clean=3_000, copies=240, seed=1)
    poisoned = np.arange(3_000, 3_240)
    return get_detector("duplicates.flood", alpha=0.01).fit(gaussian(500, seed=0)), batch, labels, poisoned


def trigger_case():
    features, labels, rows = stamped(*three_classes(3_000, seed=1), n_rows=60, seed=2)
    detector = get_detector("backdoor.trigger", alpha=0.01).fit(*three_classes(300, seed=0))
    return detector, features, labels, np.array(sorted(rows))


def flip_case(name):
    def case():
        features, labels = three_classes(3_000, seed=1)
        flipped = np.random.default_rng(3).choice(3_000, 60, replace=False)
        labels = labels.copy()
        labels[flipped] = np.where(labels[flipped] == "Adelie", "Gentoo", "Adelie")
        return get_detector(name, alpha=0.01).fit(*three_classes(600, seed=0)), features, labels, flipped
    return case


# (poisoned rows flagged, clean rows flagged) of 3,000-row batches, counted
# over the whole batch and over a 400-row sample: the sample finds the same
# poison, at the same calibrated rate of clean rows (alpha 0.01 of about
# 2,950 clean rows is about 30).
CASES = {
    # Clean: the 3 copied rows too. Sampled, the 500 trusted rows are cut to
    # 400 as well, and those 400 calibrate (``_sampling.calibration_rows``);
    # 35 is one draw (48 while all 500 were scored against the sample).
    "duplicates.flood": (flood_case, (240, 22), (240, 35)),
    "backdoor.trigger": (trigger_case, (60, 24), (60, 29)),
    # Flips between overlapping classes: few are plain to any label check.
    "label.knn": (flip_case("label.knn"), (7, 40), (7, 27)),
    # Fitted again without cleanlab's marked rows; one sampled draw flags fewer clean rows.
    # Sampled, 400 of the 600 trusted rows are pooled too (the other 200 are predicted
    # by fold models, as the batch's are): (8, 13) while all 600 were.
    "label.confident_learning": (flip_case("label.confident_learning"), (7, 22), (9, 16)),
    # Sampled, the 600 trusted rows' quartiles are measured on 400 of them too.
    "outlier.class_conditional": (flip_case("outlier.class_conditional"), (3, 34), (3, 27)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_sample_of_the_batch_finds_what_the_whole_batch_finds(monkeypatch, name):
    make_case, whole, sampled = CASES[name]
    counts = []
    for population in (10_000, 400):
        monkeypatch.setattr(_sampling, "POPULATION_ROWS", population)
        detector, features, labels, poisoned = make_case()
        flagged = detector.findings(features, labels)["flagged"].to_numpy()
        counts.append((int(flagged[poisoned].sum()), int(flagged.sum() - flagged[poisoned].sum())))
    assert counts == [whole, sampled]


def test_a_clump_in_a_sample_says_it_was_counted_there(monkeypatch):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 400)
    detector, batch, labels, poisoned = flood_case()
    reason = detector.findings(batch, labels)["reason"].iloc[poisoned[0]]
    # The trusted rows have no labels: both samples are plain.
    assert "near-identical batch rows (counted in a random sample of 400 batch rows)" in reason
    # With labelled trusted rows both are taken per label, as label.knn takes
    # them (one shared search); each label keeps at least MIN_LABEL_ROWS rows,
    # so the sample holds a few more than 400.
    trusted_labels = np.random.default_rng(0).choice(np.unique(labels), 500)
    detector = get_detector("duplicates.flood", alpha=0.01).fit(gaussian(500, seed=0), trusted_labels)
    found = detector.findings(batch, labels)
    assert found["flagged"].iloc[poisoned].all()
    assert "(counted in a random sample of 420 batch rows)" in found["reason"].iloc[poisoned[0]]


def test_without_a_reference_ecod_fits_a_sample_of_a_large_batch_and_judges_every_row(monkeypatch):
    rng = np.random.default_rng(3)
    batch = rng.normal(size=(2000, 4))
    batch[:20] += 8.0  # far on every feature
    counts = []
    for population in (10_000, 400):
        monkeypatch.setattr(_sampling, "POPULATION_ROWS", population)
        found = get_detector("outlier.ecod", alpha=0.01).self_findings(batch)
        flagged = found["flagged"].to_numpy()
        counts.append((int(flagged[:20].sum()), int(flagged[20:].sum())))
    # The far rows correlate the features a little (weights 0.996-0.998, not 1).
    assert counts == [(20, 2), (20, 0)]
    assert found["reason"].iloc[0].startswith("unusual against a seeded sample of 400 rows of the batch")


def test_without_a_reference_class_conditional_measures_quartiles_on_a_sample(monkeypatch):
    """Medians and quartiles come from the sample; the 0/1 levels a label shows, from all its rows."""
    features, labels = three_classes(3_000, seed=1)
    features = features.copy()
    features.iloc[:30, 0] += 8.0  # a corrupted cell, 8 standard deviations out
    # A level that four rows of one label show: seen by every fold's rows, so
    # ordinary, though a 400-row sample most likely holds none of them.
    features["rare_level"] = 0.0
    features.loc[np.flatnonzero(labels == "Adelie")[30:34], "rare_level"] = 1.0
    counts = []
    for population in (10_000, 400):
        monkeypatch.setattr(_sampling, "POPULATION_ROWS", population)
        found = get_detector("outlier.class_conditional", alpha=0.01).self_findings(features, labels)
        flagged = found["flagged"]
        counts.append((int(flagged.iloc[:30].sum()), int(flagged.iloc[30:].sum())))
    # The one clean row flagged from the sample is at p = 0.0095 (x4 of a
    # 'Gentoo' row, 2.7 interquartile ranges out); read from the sample, the
    # rare level's four rows were flagged too, at p = 0.00005.
    assert counts == [(30, 0), (30, 1)]
    assert found["reason"].iloc[0].endswith("(medians and quartiles of a seeded sample of 400 batch rows)")


def test_calibration_rows_are_the_sample_and_at_most_population_rows_more(monkeypatch):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 100)
    labels = np.repeat(["a", "b"], [300, 60])
    in_trusted = _sampling.population_mask(len(labels), 0, labels, max_rows=40)
    scored = _sampling.calibration_rows(in_trusted, 0, labels)
    assert (scored & in_trusted).sum() == in_trusted.sum()  # the sample is scored
    # Per label: 100 * 300/360 = 83 of 'a', and 'b' keeps its MIN_LABEL_ROWS (50), with the sample's.
    extra = _sampling.population_mask(len(labels), 0, labels)
    assert extra.sum() == 133 and np.array_equal(scored, in_trusted | extra)
    # A reference of at most POPULATION_ROWS rows is scored whole.
    assert _sampling.calibration_rows(np.zeros(100, dtype=bool), 0).all()


def test_a_large_reference_is_fitted_on_a_sample_of_it(monkeypatch):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 400)
    detector, features, labels, flipped = flip_case("label.trusted_model")()
    # 400 of the 600 trusted rows, each label in proportion, calibrate and fit.
    assert detector.calibration_scores_.shape == (400,)
    flagged = detector.findings(features, labels)["flagged"].to_numpy()
    counts = (int(flagged[flipped].sum()), int(flagged.sum() - flagged[flipped].sum()))
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 10_000)
    whole, _, _, _ = flip_case("label.trusted_model")()
    assert whole.calibration_scores_.shape == (600,)
    whole_flagged = whole.findings(features, labels)["flagged"].to_numpy()
    whole_counts = (int(whole_flagged[flipped].sum()), int(whole_flagged.sum() - whole_flagged[flipped].sum()))
    # Flips between overlapping classes, few plain to any check (as above); clean rows flagged
    # within alpha (29 of the 2,940) either way.
    assert counts == (3, 11) and whole_counts == (4, 14)


def test_a_large_reference_is_the_trigger_nulls_sample_too(monkeypatch):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 200)
    detector, features, labels, stamped_rows = trigger_case()
    # 200 of the 300 trusted rows, each label in proportion, are the null's rows and calibrate.
    assert detector.reference_.shape == (200, features.shape[1]) and len(detector.reference_labels_) == 200
    flagged = detector.findings(features, labels)["flagged"].to_numpy()
    counts = (int(flagged[stamped_rows].sum()), int(flagged.sum() - flagged[stamped_rows].sum()))
    # Every stamped row, and clean rows within alpha (about 29 of the 2,940).
    assert counts == (60, 15)


@pytest.mark.parametrize("name", ["outlier.ecod", "outlier.iforest", "outlier.cellwise", "outlier.class_conditional"])
def test_the_outlier_detectors_fit_a_sample_of_a_large_reference(monkeypatch, name):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 400)
    features, labels = three_classes(600, seed=0)
    detector = get_detector(name, alpha=0.01).fit(features, labels)
    # Cross-fitted on 400 of the 600 rows (each label in proportion, where labels count).
    assert detector.calibration_scores_.shape == (400,)
    batch = features.iloc[:50].copy()
    batch.iloc[:5] += 12.0  # far on every feature
    flagged = detector.findings(batch, labels[:50])["flagged"].to_numpy()
    assert flagged[:5].all() and not flagged[5:].any()


def test_a_reference_sample_is_the_population_sample_and_a_small_reference_is_not_copied(monkeypatch):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 100)
    matrix = np.arange(600.0).reshape(300, 2)
    labels = np.repeat(["a", "b"], [240, 60])
    sampled, sampled_labels = _sampling.reference_sample(0, matrix, labels)
    kept = population_mask(300, 0, labels)
    np.testing.assert_array_equal(sampled, matrix[kept])
    np.testing.assert_array_equal(sampled_labels, labels[kept])
    assert _sampling.reference_sample(0, matrix)[1] is None
    small = matrix[:100]
    assert _sampling.reference_sample(0, small)[0] is small
