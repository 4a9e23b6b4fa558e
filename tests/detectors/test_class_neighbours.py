"""``label.knn``'s two distances per row (``detectors._class_neighbours``), found either way.

Both searches (one per label, or among all rows and then label by label only
where that does not settle a row) must give what every pairwise distance
gives: the own label's mean, the nearest other label's, and which label that
is, with ties, exact copies, labels of one row, queries of no label, and rows
that are their own space. And ``label.knn`` must judge a batch of many labels
as it does with one search per label.
"""
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors import _class_neighbours
from poisonguard.detectors._class_neighbours import class_margins, nearest_other_row
from poisonguard.detectors.label_knn import KNNLabelDetector


def brute_force(space, space_codes, queries, query_codes, n_classes, k, exclude_self):
    """Every label's mean distance from every pairwise distance, then the margins."""
    distances = np.sqrt(((queries[:, None, :] - space[None, :, :]) ** 2).sum(axis=2))
    if exclude_self:
        np.fill_diagonal(distances, np.inf)
    means = np.full((len(queries), n_classes), np.inf)
    for label in range(n_classes):
        # Every label offers one row fewer when the queries are the space.
        wanted = min(k, int(np.sum(space_codes == label)) - (1 if exclude_self else 0))
        if wanted >= 1:
            means[:, label] = np.sort(distances[:, space_codes == label], axis=1)[:, :wanted].mean(axis=1)
    rows = np.arange(len(queries))
    known = query_codes >= 0
    own = np.where(known, means[rows, np.maximum(query_codes, 0)], np.inf)
    others = means.copy()
    others[rows[known], query_codes[known]] = np.inf
    return own, others, others.min(axis=1)


def case(seed):
    """Rows on a coarse grid (ties, exact copies), many labels of uneven size, some of one row."""
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(20, 160))
    n_classes = int(rng.integers(11, 40))
    space = np.round(rng.normal(size=(n_rows, int(rng.integers(1, 5)))), int(rng.integers(0, 2)))
    if seed % 3 == 0:
        space[: n_rows // 3] = space[0]  # a third of the rows one point
    codes = rng.integers(0, n_classes, size=n_rows)
    return rng, space, codes, n_classes, int(rng.integers(1, 7))


# scikit-learn's brute search computes |x|^2 - 2 x.y + |y|^2: an exact copy
# can come out at 3e-8, not 0 (1.9.1, a label of two rows), so distances
# match every pairwise one to within that, not to the last bit.
DISTANCE_ATOL = 1e-6


def assert_margins_match(found, own, others, other):
    np.testing.assert_allclose(found.own, own, rtol=1e-12, atol=DISTANCE_ATOL)
    np.testing.assert_allclose(found.other, other, rtol=1e-12, atol=DISTANCE_ATOL)
    finite = np.isfinite(other)
    rows = np.flatnonzero(finite)
    # The label believed has the nearest other mean (among means equal but
    # for rounding, either search may pick any).
    np.testing.assert_allclose(others[rows, found.believed[rows]], other[rows], rtol=1e-12, atol=DISTANCE_ATOL)
    assert np.all(found.believed[~finite] == 0)


@pytest.mark.parametrize("search", ["each_label", "overall"])
@pytest.mark.parametrize("seed", range(12))
def test_rows_as_their_own_space_match_every_pairwise_distance(search, seed):
    _, space, codes, n_classes, k = case(seed)
    found = class_margins(space, codes, space, codes, n_classes, k, exclude_self=True, search=search)
    assert_margins_match(found, *brute_force(space, codes, space, codes, n_classes, k, exclude_self=True))


@pytest.mark.parametrize("search", ["each_label", "overall"])
@pytest.mark.parametrize("seed", range(12))
def test_other_queries_match_every_pairwise_distance(search, seed):
    rng, space, codes, n_classes, k = case(seed)
    queries = np.round(rng.normal(size=(50, space.shape[1])), 1)
    queries[:5] = space[:5]  # exact copies of space rows
    query_codes = rng.integers(-1, n_classes, size=len(queries))  # -1: a label without rows
    found = class_margins(space, codes, queries, query_codes, n_classes, k, exclude_self=False, search=search)
    assert_margins_match(found, *brute_force(space, codes, queries, query_codes, n_classes, k, exclude_self=False))


def test_rows_that_need_every_label_searched_are_settled_exactly(monkeypatch):
    # Each label a tight cluster of 40 rows: a row's nearest 32 rows (and 128
    # with the steps shrunk) are all its own, so no other label is in reach
    # until each label is searched on its own.
    monkeypatch.setattr(_class_neighbours, "NEAREST_ROWS_STEPS", (8, 16))
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=100.0, size=(12, 2))
    codes = np.repeat(np.arange(12), 40)
    space = centres[codes] + rng.normal(size=(len(codes), 2))
    found = class_margins(space, codes, space, codes, 12, 5, exclude_self=True, search="overall")
    assert_margins_match(found, *brute_force(space, codes, space, codes, 12, 5, exclude_self=True))


def test_a_subset_of_queries_is_what_all_of_them_give_there():
    rng, space, codes, n_classes, k = case(4)
    rows = rng.random(len(space)) < 0.4
    everything = class_margins(space, codes, space, codes, n_classes, k, exclude_self=True, search="overall")
    subset = class_margins(space, codes, space, codes, n_classes, k, exclude_self=True, rows=rows, search="overall")
    for field in ("own", "other", "believed"):
        assert np.array_equal(getattr(subset, field), getattr(everything, field)[rows])


def test_nearest_other_row_is_never_the_row_itself():
    space = np.array([[0.0], [0.0], [1.0], [3.0], [3.5]])
    assert nearest_other_row(space).tolist() == [0.0, 0.0, 1.0, 0.5, 0.5]
    assert nearest_other_row(space[:1]).tolist() == [np.inf]


def test_exact_copies_are_at_distance_zero_whatever_the_search_computes():
    # A brute search (20 columns) computes |x|^2 - 2 x.y + |y|^2: a copy can come out at 1e-7.
    rng = np.random.default_rng(0)
    space = rng.normal(size=(60, 20)) * np.r_[1000.0, np.ones(19)]
    space[30:] = space[:30]
    searched = NearestNeighbors(n_neighbors=2).fit(space).kneighbors(space)[0]
    assert (searched.max(axis=1) > 0).any()
    assert nearest_other_row(space).tolist() == [0.0] * 60


def test_label_knn_measures_its_floor_on_real_spacing_not_on_copies():
    # Found on COUNT's affairs without a reference: most rows have exact
    # copies, the search put many at 1e-7, the median "positive" spacing
    # was 1.2e-7, and a row with a copy in another label scored log(6 / 1e-7)
    # = 18: 53 of 601 clean rows flagged (1 now).
    rng = np.random.default_rng(1)
    distinct = rng.normal(size=(60, 20)) * np.r_[1000.0, np.ones(19)]
    space = np.vstack([distinct, distinct[:50]])  # 100 rows with a copy, 10 without
    labels = rng.choice(np.array(["a", "b"], dtype=object), len(space))
    # Half the median spacing of the 10 rows without a copy, not of the copies' 1e-5.
    spacing = nearest_other_row(space)[50:60]
    assert KNNLabelDetector().fit(space, labels).floor_ == 0.5 * np.median(spacing) > 1.0


def test_label_knn_judges_many_labels_as_with_one_search_per_label(monkeypatch):
    rng = np.random.default_rng(7)
    centres = rng.normal(scale=3.0, size=(30, 4))
    labels = rng.integers(0, 30, size=3000)
    features = centres[labels] + rng.normal(size=(3000, 4))
    labels = np.array([f"class {code}" for code in labels], dtype=object)
    flipped = rng.choice(3000, 60, replace=False)
    labels[flipped] = [f"class {code}" for code in rng.integers(0, 30, size=60)]

    def judged():
        trusted = KNNLabelDetector().fit(features[:600], labels[:600]).findings(features[600:], labels[600:])
        alone = KNNLabelDetector().self_findings(features, labels)
        return trusted, alone

    overall = judged()
    monkeypatch.setattr(_class_neighbours, "SEARCH_EACH_LABEL_MAX", 1000)
    each_label = judged()
    for found, expected in zip(overall, each_label):
        assert found["flagged"].tolist() == expected["flagged"].tolist()
        assert found["reason"].tolist() == expected["reason"].tolist()
        np.testing.assert_allclose(found["score"], expected["score"], rtol=1e-12)
        np.testing.assert_allclose(found["p_value"], expected["p_value"], rtol=1e-12)
        assert 0 < int(found["flagged"].sum()) < 200
