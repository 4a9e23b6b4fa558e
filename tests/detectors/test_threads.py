"""Column loops on several threads (detectors._threads) give exactly the one-thread findings."""
from __future__ import annotations

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info, threadpool_limits

from poisonguard.detectors import _threads, outliers
from poisonguard.detectors._crossfit import cross_fit_classifiers
from poisonguard.detectors._threads import imap_in_threads, map_in_threads, thread_count
from poisonguard.detectors.registry import get_detector
from tests.detectors.test_backdoor import stamped, three_classes


def test_thread_count_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_count() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert 1 <= thread_count() <= _threads.MAX_THREADS
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= thread_count() <= _threads.MAX_THREADS


def test_results_come_back_in_order_on_any_number_of_threads(monkeypatch):
    for threads in (1, 2, 4):
        monkeypatch.setattr(_threads, "thread_count", lambda threads=threads: threads)
        assert map_in_threads(lambda item: item * item, range(50)) == [item * item for item in range(50)]


@pytest.mark.parametrize("name", ["backdoor.trigger", "outlier.ecod", "outlier.cellwise", "outlier.class_conditional", "label.trusted_model"])
def test_findings_do_not_depend_on_the_thread_count(monkeypatch, name):
    trusted, trusted_labels = three_classes(600, seed=0)
    batch, labels = three_classes(1_500, seed=1)
    batch, labels, _ = stamped(batch, labels, 60, seed=2)
    # Small chunks, so that ECOD scores several at once.
    monkeypatch.setattr(outliers, "SCORE_CHUNK_ROWS", 128)
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(_threads, "thread_count", lambda threads=threads: threads)
        detector = get_detector(name, alpha=0.01).fit(trusted, trusted_labels)
        runs.append(detector.findings(batch, labels, [f"row {i}" for i in range(len(batch))]))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert runs[0]["flagged"].any()  # a real comparison, not two empty verdicts


def blas_threads() -> set:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_classifiers_are_fitted_on_one_blas_thread_and_the_setting_comes_back():
    features, labels = three_classes(300, seed=0)
    codes = pd.factorize(labels, sort=True)[0]
    seen = []

    class Recording(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen.append(blas_threads())
            return super().fit(X, y, sample_weight=sample_weight)

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        cross_fit_classifiers(features.to_numpy(), codes, make_classifier=Recording, n_folds=3, random_state=0)
        after = blas_threads()
    assert seen == [{1}] * 3
    assert after == before


def test_results_are_given_in_order_as_they_are_done_with_few_worked_on_ahead(monkeypatch):
    for threads in (1, 2, 4):
        monkeypatch.setattr(_threads, "thread_count", lambda threads=threads: threads)
        started = []

        def square(item):
            started.append(item)
            return item * item

        results = imap_in_threads(square, range(50))
        assert next(results) == 0
        # One item a thread beyond the one given, not all 50 at once.
        assert len(started) <= threads + 1
        assert list(results) == [item * item for item in range(1, 50)]
