"""Judging a batch a chunk at a time (``Detector.batch_judge``, ``detectors.judges``).

The contract test holds every registered detector to the whole batch's
findings or a refusal (``test_contract.test_batch_judge_gives_the_whole_batch_findings``);
here, a batch on which judging each chunk as a batch of its own would flag
other rows.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poisonguard.detectors.base import DetectorError
from poisonguard.detectors.registry import get_detector

CHUNKS = np.array_split(np.arange(400), 4)


def heavy_tailed_batch():
    """40 trusted rows of a normal, 400 batch rows of a Student t (3 degrees of freedom), 5 moved far.

    Against so few trusted rows, ``alpha = 0.01`` lies beyond every trusted
    score, so a flag rests on the extrapolated tail, and the batch's own,
    heavier tail guards it (``detectors._crossfit.guarded_p_values``).
    """
    rng = np.random.default_rng(2)
    trusted = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    batch = pd.DataFrame(rng.standard_t(3, size=(400, 3)), columns=["a", "b", "c"])
    batch.iloc[:5] += 8.0
    return trusted, batch


def judged_in_chunks(detector, batch, chunks=CHUNKS, **columns):
    judge = detector.batch_judge()
    for rows in chunks:
        judge.add(batch.iloc[rows] if isinstance(batch, pd.DataFrame) else batch[rows],
                  **{key: value[rows] for key, value in columns.items()})
    return judge.findings()


@pytest.mark.parametrize(
    ("name", "flagged"),
    [("outlier.ecod", [0, 1, 2, 3, 4, 35]), ("outlier.iforest", [35])],
)
def test_chunks_flag_what_the_whole_batch_flags(name, flagged):
    trusted, batch = heavy_tailed_batch()
    detector = get_detector(name).fit(trusted)
    whole = detector.findings(batch)
    assert np.flatnonzero(whole["flagged"]).tolist() == flagged
    pd.testing.assert_frame_equal(judged_in_chunks(detector, batch), whole, check_exact=True)
    # Each chunk judged as a batch of its own reads its own tail, and flags otherwise.
    alone = pd.concat([detector.findings(batch.iloc[rows]) for rows in CHUNKS], ignore_index=True)
    assert not np.array_equal(alone["flagged"], whole["flagged"])


def test_array_rows_are_named_by_their_place_in_the_batch():
    trusted, batch = heavy_tailed_batch()
    detector = get_detector("outlier.ecod").fit(trusted.to_numpy())
    judged = judged_in_chunks(detector, batch.to_numpy())
    assert judged["row_id"].tolist() == [str(row) for row in range(400)]
    pd.testing.assert_frame_equal(judged, detector.findings(batch.to_numpy()), check_exact=True)


def test_only_the_rows_it_may_describe_are_kept():
    trusted, batch = heavy_tailed_batch()
    detector = get_detector("outlier.ecod").fit(trusted)
    judge = detector.batch_judge()
    for rows in CHUNKS:
        judge.add(batch.iloc[rows])
    kept = np.concatenate([part["kept_positions"] for part in judge._parts])
    # Flagged before the batch's guard raised their p-values: a superset of the 6 flagged after it.
    assert set(kept) >= {0, 1, 2, 3, 4, 35} and len(kept) < 40
    assert np.flatnonzero(judge.findings()["flagged"]).tolist() == [0, 1, 2, 3, 4, 35]


@pytest.mark.parametrize("name", ["outlier.ecod", "outlier.iforest", "outlier.cellwise"])
def test_reasons_for_decisions_at_a_looser_level(name):
    # set_reasons describes rows up to a p-value above alpha: those are kept too.
    trusted, batch = heavy_tailed_batch()
    detector = get_detector(name).fit(trusted).set_reasons(p_value_at_most=0.2)
    whole = detector.findings(batch)
    assert (whole["reason"] != "").sum() > whole["flagged"].sum()
    pd.testing.assert_frame_equal(judged_in_chunks(detector, batch), whole, check_exact=True)


def test_labels_and_ids_travel_with_their_chunk():
    trusted, batch = heavy_tailed_batch()
    labels = np.where(batch["a"] > 0, "up", "down")
    ids = np.array([f"row-{row}" for row in range(400)], dtype=object)
    detector = get_detector("label.trusted_model").fit(trusted, np.where(trusted["a"] > 0, "up", "down"))
    judged = judged_in_chunks(detector, batch, y=labels, row_ids=ids)
    pd.testing.assert_frame_equal(judged, detector.findings(batch, labels, ids), check_exact=True)


def test_a_judged_batch_takes_no_more_chunks():
    trusted, batch = heavy_tailed_batch()
    judge = get_detector("outlier.ecod").fit(trusted).batch_judge()
    judge.add(batch.iloc[:10])
    judge.findings()
    with pytest.raises(DetectorError, match="judged already"):
        judge.add(batch.iloc[10:20])


def test_a_batch_without_chunks_has_no_findings():
    trusted, _ = heavy_tailed_batch()
    findings = get_detector("outlier.ecod").fit(trusted).batch_judge().findings()
    assert findings.empty and list(findings.columns) == ["row_id", "check", "score", "p_value", "flagged", "reason"]


def test_a_chunk_with_other_columns_is_refused():
    trusted, batch = heavy_tailed_batch()
    judge = get_detector("outlier.ecod").fit(trusted).batch_judge()
    judge.add(batch.iloc[:10])
    with pytest.raises(DetectorError, match="'c'"):
        judge.add(batch.iloc[10:20][["a", "b"]])


@pytest.fixture(scope="module")
def fitted_ecod():
    trusted, batch = heavy_tailed_batch()
    detector = get_detector("outlier.ecod").fit(trusted)
    return detector, batch, detector.findings(batch)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_any_chunking_gives_the_whole_batch_findings(fitted_ecod, cuts):
    # Chunks of any size, empty ones included.
    detector, batch, whole = fitted_ecod
    chunks = np.split(np.arange(400), sorted(cuts))
    pd.testing.assert_frame_equal(judged_in_chunks(detector, batch, chunks), whole, check_exact=True)
