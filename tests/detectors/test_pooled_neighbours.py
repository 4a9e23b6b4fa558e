"""``label.knn`` and ``duplicates.flood`` share one neighbour search (``detectors._pooled_neighbours``).

Its summaries must be what every pairwise distance gives, row for row, with
ties, exact copies, a label with one trusted row and batch labels no trusted
row has; the detectors must judge as they do with the search not shared; and
the shared result must be reused only for the very batch it was computed on.
"""
import gc

import numpy as np
import pytest

from poisonguard.detectors import _pooled_neighbours, _sampling
from poisonguard.detectors._pooled_neighbours import pooled_neighbours, pooled_samples
from poisonguard.detectors._sampling import calibration_rows
from poisonguard.detectors.registry import get_detector


def rows_and_labels(n_rows, seed, labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    # A coarse grid: many exact ties and duplicate rows.
    matrix = np.round(rng.normal(size=(n_rows, 3)), 1)
    return matrix, rng.choice(np.array(labels), n_rows)


def brute_force(trusted, trusted_labels, batch, batch_labels, k, in_batch, in_trusted):
    """The summaries from every pairwise distance, each query's own row left out."""
    classes = np.unique(trusted_labels)
    space = np.vstack([trusted[in_trusted], batch[in_batch]])
    space_labels = np.concatenate([trusted_labels[in_trusted], batch_labels[in_batch]])
    space_source = np.repeat([0, 1], [in_trusted.sum(), in_batch.sum()])
    # Where each trusted or batch row sits in the space (-1: not in it).
    trusted_at = np.where(in_trusted, np.cumsum(in_trusted) - 1, -1)
    batch_at = np.where(in_batch, np.cumsum(in_batch) - 1 + in_trusted.sum(), -1)

    def summaries(queries, at):
        distances = np.sqrt(((queries[:, None, :] - space[None, :, :]) ** 2).sum(axis=2))
        rows = np.flatnonzero(at >= 0)
        distances[rows, at[rows]] = np.inf  # not its own neighbour
        means = np.full((len(queries), len(classes)), np.inf)
        for column, label in enumerate(classes):
            nearest = np.sort(distances[:, space_labels == label], axis=1)[:, :k]
            finite = np.isfinite(nearest)
            counts = finite.sum(axis=1)
            means[counts > 0, column] = np.where(finite, nearest, 0).sum(axis=1)[counts > 0] / counts[counts > 0]
        kth = [np.sort(distances[:, space_source == source], axis=1)[:, k - 1] for source in (0, 1)]
        return {"label_means": means, "trusted_kth": kth[0], "batch_kth": kth[1]}

    found = {}
    for source, queries, at in (("trusted", trusted, trusted_at), ("batch", batch, batch_at)):
        for field, values in summaries(queries, at).items():
            found[f"{source}.{field}"] = values
    return found


@pytest.mark.parametrize("population_rows", [10_000, 150])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_search_gives_what_each_detector_searched_for(monkeypatch, population_rows, seed):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", population_rows)
    monkeypatch.setattr(_sampling, "MIN_NEIGHBOUR_ROWS", population_rows)
    trusted, trusted_labels = rows_and_labels(300, seed)
    trusted_labels[0] = "lonely"  # one trusted row: no other row of its label
    batch, batch_labels = rows_and_labels(1_000, seed + 10)
    batch_labels[:7] = "unknown"  # in the batch's sample and densities, in no class
    batch[20:40] = batch[20]  # exact copies
    k = 5
    in_batch, in_trusted = pooled_samples(len(batch), batch_labels, len(trusted), trusted_labels, 0, batch.shape[1])
    assert in_batch.sum() < len(batch) if population_rows == 150 else in_batch.all()
    shared = pooled_neighbours(trusted, trusted_labels, batch, batch_labels, k, 0)
    assert np.array_equal(shared.in_batch, in_batch) and np.array_equal(shared.in_trusted, in_trusted)
    # The trusted rows summarised: the sample's and at most POPULATION_ROWS more (all 300 here
    # unless the population is 150).
    scored = shared.scored_trusted
    assert np.array_equal(scored, calibration_rows(in_trusted, 0, trusted_labels))
    assert scored.all() if population_rows == 10_000 else (in_trusted & ~scored).sum() == 0 and scored.sum() < 300
    expected = brute_force(trusted, trusted_labels, batch, batch_labels, k, in_batch, in_trusted)
    for name, values in expected.items():
        source, field = name.split(".")
        if source == "trusted":
            values = values[scored]
        np.testing.assert_allclose(getattr(getattr(shared, source), field), values, rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def test_the_second_detector_reuses_the_search_of_the_same_batch_only(monkeypatch):
    trusted, trusted_labels = rows_and_labels(200, 0)
    batch, batch_labels = rows_and_labels(600, 1)
    first = pooled_neighbours(trusted, trusted_labels, batch, batch_labels, 5, 0)
    # The same memory (a view, as each detector takes its own of the pipeline's matrix): reused.
    assert pooled_neighbours(trusted.copy(), trusted_labels.copy(), batch[:], batch_labels.copy(), 5, 0) is first
    # Taken once: the second detector is the last that needs it. A third call
    # searches again, and keeps that result for the next.
    again = pooled_neighbours(trusted, trusted_labels, batch, batch_labels, 5, 0)
    assert again is not first
    np.testing.assert_array_equal(again.batch.label_means, first.batch.label_means)
    # Labels compare as text, whatever their array type.
    assert pooled_neighbours(trusted, trusted_labels, batch, batch_labels.astype(object), 5, 0) is again
    first = pooled_neighbours(trusted, trusted_labels, batch, batch_labels, 5, 0)
    # Anything else searches afresh: other rows, labels, k, seed or trusted rows.
    changed_labels = batch_labels.copy()
    changed_labels[0] = "z"
    changed_trusted = trusted.copy()
    changed_trusted[0, 0] += 1.0
    for arguments in [
        (trusted, trusted_labels, batch.copy(), batch_labels, 5, 0),
        (trusted, trusted_labels, batch[1:], batch_labels[1:], 5, 0),
        (trusted, trusted_labels, batch, changed_labels, 5, 0),
        (trusted, trusted_labels, batch, batch_labels, 4, 0),
        (trusted, trusted_labels, batch, batch_labels, 5, 1),
        (changed_trusted, trusted_labels, batch, batch_labels, 5, 0),
    ]:
        assert pooled_neighbours(*arguments) is not first
        first = pooled_neighbours(trusted, trusted_labels, batch, batch_labels, 5, 0)
    del arguments
    # A batch modified in place is not detectable by its memory: no caller does that.
    del batch, first
    gc.collect()
    assert _pooled_neighbours._CACHE._entry is None  # gone with the batch's memory


@pytest.mark.parametrize("apart", ["kept search not found", "many labels: each searches on its own"])
def test_knn_and_flood_judge_as_they_do_apart(monkeypatch, apart):
    monkeypatch.setattr(_sampling, "POPULATION_ROWS", 300)
    monkeypatch.setattr(_sampling, "MIN_NEIGHBOUR_ROWS", 300)
    trusted, trusted_labels = rows_and_labels(400, 3)
    batch, batch_labels = rows_and_labels(1_500, 4)
    batch_labels[:5] = "unknown"
    batch[:60] = batch[60] + np.random.default_rng(5).normal(0, 1e-3, (60, 3))  # a flood
    results = {}
    for shared in (True, False):
        if not shared and apart == "kept search not found":
            monkeypatch.setattr(_pooled_neighbours._CACHE, "get", lambda *args: None)
        elif not shared:
            monkeypatch.setattr(_pooled_neighbours, "MAX_SHARED_LABELS", 2)
        for name in ("label.knn", "duplicates.flood"):
            detector = get_detector(name, alpha=0.01).fit(trusted, trusted_labels)
            results[shared, name] = detector.findings(batch, batch_labels)
    for name in ("label.knn", "duplicates.flood"):
        # scikit-learn's distances carry ~1e-13 of rounding that depends on
        # which rows an index holds: near-copies 1e-3 apart differ at 1e-10.
        np.testing.assert_allclose(results[True, name]["score"], results[False, name]["score"], rtol=1e-9)
        assert results[True, name]["flagged"].tolist() == results[False, name]["flagged"].tolist()
    assert results[True, "duplicates.flood"]["flagged"].iloc[:60].all()
