"""Review decisions: filters, the audit trail, --force, and conflicts."""
import threading

import pandas as pd
import pytest

from poisonguard.detectors.base import make_findings
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.review import ReviewConflict, UnknownEntry, decide
from poisonguard.pipelines.store import EntryFilter, QuarantineStore


@pytest.fixture
def store(tmp_path):
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}")
    run_id = store.start_run(dataset="tiny", config={}, tool_version="test")
    rows = pd.DataFrame({"id": ["a", "b", "c", "d"], "x": [1.0, 2.0, 3.0, 4.0]})
    findings = make_findings(
        row_ids=["a", "b", "c", "d", "d"],
        check="outlier.ecod",
        scores=[5.0, 6.0, 7.0, 8.0, 1.0],
        flagged=[True] * 5,
        reasons=["far"] * 5,
        p_values=[0.2, 0.05, 0.001, 0.01, float("nan")],
    )
    findings.loc[4, "check"] = "expectation.values_to_be_between"
    store.add_quarantined(run_id, dataset="tiny", rows=rows, findings=findings, row_id_column="id")
    store.finish_run(run_id, status="succeeded", output_dir="/out", counts={})
    store.run_id = run_id
    return store


def ids_of(entries):
    return [e["row_id"] for e in entries]


def test_queue_is_most_suspicious_first_and_filters(store):
    # d breaks a rule (score 1), then c (1 - 0.001), b, a.
    assert ids_of(store.list_entries()) == ["d", "c", "b", "a"]
    assert ids_of(store.list_entries(EntryFilter(below_score=0.96))) == ["b", "a"]
    assert ids_of(store.list_entries(EntryFilter(check="expectation.values_to_be_between"))) == ["d"]
    assert ids_of(store.list_entries(EntryFilter(check="expectation"))) == []
    assert ids_of(store.list_entries(limit=2, offset=1)) == ["c", "b"]
    assert store.count_entries(EntryFilter(status="pending", run_id=store.run_id)) == 4
    with pytest.raises(InputError, match="status 'done' is not one of"):
        EntryFilter(status="done")


def test_decisions_are_recorded_and_never_rewritten(store):
    a = store.matching_ids(EntryFilter(below_score=0.9))[0]
    made = decide(store, [a], status="released", note="false alarm", reviewer="ann")
    assert [(d["status_before"], d["status_after"], d["reviewer"]) for d in made] == [("pending", "released", "ann")]
    with pytest.raises(ReviewConflict, match=f"entry {a} was already released by ann at .*--force"):
        decide(store, [a], status="rejected", note="second thoughts", reviewer="bob")
    decide(store, [a], status="rejected", note="second thoughts", reviewer="bob", force=True)
    entry = store.get_entry(a)
    assert entry["status"] == "rejected"
    assert [(h["status_before"], h["status_after"], h["reviewer"], h["note"]) for h in entry["history"]] == [
        ("pending", "released", "ann", "false alarm"),
        ("released", "rejected", "bob", "second thoughts"),
    ]


def test_bulk_decisions_are_all_or_nothing(store):
    ids = store.matching_ids(EntryFilter())
    decide(store, ids[:1], status="rejected", note="poison", reviewer="ann")
    with pytest.raises(ReviewConflict):
        decide(store, ids, status="released", note="all fine", reviewer="bob")
    assert store.count_entries(EntryFilter(status="pending")) == 3  # nothing changed
    with pytest.raises(UnknownEntry, match="no quarantine entry 999"):
        decide(store, [ids[1], 999], status="released", note="x")
    assert store.count_entries(EntryFilter(status="pending")) == 3


def test_a_decision_needs_a_note_and_a_real_status(store):
    with pytest.raises(InputError, match="note is required"):
        decide(store, [1], status="released", note="  ")
    with pytest.raises(InputError, match="one of released, rejected"):
        decide(store, [1], status="pending", note="x")


def test_what_the_reviewer_saw_must_still_hold(store):
    entry_id = store.matching_ids(EntryFilter())[0]
    decide(store, [entry_id], status="released", note="first", reviewer="ann")
    with pytest.raises(ReviewConflict, match="changed while you were looking"):
        decide(store, [entry_id], status="rejected", note="late", reviewer="bob", expected_status="pending", force=True)


def test_two_reviewers_at_once_never_lose_a_decision(store, tmp_path):
    entry_id = store.matching_ids(EntryFilter())[0]
    outcomes = []

    def reviewer(name, status):
        other = QuarantineStore(store.url)  # its own connection pool, like another process
        try:
            decide(other, [entry_id], status=status, note=name, reviewer=name)
            outcomes.append((name, "won"))
        except ReviewConflict:
            outcomes.append((name, "conflict"))

    threads = [threading.Thread(target=reviewer, args=(n, s)) for n, s in (("ann", "released"), ("bob", "rejected"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result for _, result in outcomes) == ["conflict", "won"]
    history = store.get_entry(entry_id)["history"]
    winner = next(name for name, result in outcomes if result == "won")
    assert [(h["reviewer"], h["status_before"]) for h in history] == [(winner, "pending")]
