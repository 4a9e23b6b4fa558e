"""The quarantine store: runs, entries, decisions, and the schema migrations."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, select, text

import poisonguard.pipelines.store.migrations
from poisonguard.detectors.base import make_findings
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.jsonable import STORED_CELL_LIMIT, capped_cells, dumps
from poisonguard.pipelines.store import QuarantineStore, entries
from poisonguard.pipelines.store.schema import quarantine

HEAD = "0002"  # the newest migration (pipelines/store/migrations/versions)
DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


@pytest.fixture
def store(tmp_path):
    with QuarantineStore(f"sqlite:///{tmp_path / 'state' / 'quarantine.db'}") as opened:
        yield opened


@pytest.fixture
def run_id(store) -> str:
    return store.start_run(dataset="iris", config={"alpha": 0.01, "detectors": ["outlier.ecod"]},
                           tool_version="0.1.0", reference_digest=DIGEST_A)


def _rows() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["r1", "r2", "r3"],
        "x": [1.5, np.nan, -2.25],
        "n": np.array([1, 2, 3], dtype=np.int64),
        "label": ["a", None, "b"],
        "when": pd.to_datetime(["2024-01-02", "2024-01-03", None]),
    })


def _findings() -> pd.DataFrame:
    ecod = make_findings(row_ids=["r1", "r2", "r3"], check="outlier.ecod", scores=[3.0, 9.5, 4.0],
                         flagged=[True, True, True], reasons=["far out", "very far out", "out"],
                         p_values=[0.004, 0.001, 0.009])
    label = make_findings(row_ids=["r1", "r3", "r2"], check="label.trusted_model", scores=[7.0, 1.0, 2.0],
                          flagged=[True, False, False], reasons=["label disagrees", "fine", "fine"],
                          p_values=[0.002, 0.5, 0.4])
    rule = make_findings(row_ids=["r3"], check="expect.range", scores=[1.0], flagged=[True],
                         reasons=["x below minimum"])
    batch_level = make_findings(row_ids=[""], check="drift.labels", scores=[2.0], flagged=[True],
                                reasons=["label shares shifted"])
    return pd.concat([ecod, label, rule, batch_level], ignore_index=True)


def test_schema_has_the_four_tables(store):
    names = set(inspect(store.engine).get_table_names())
    assert {"runs", "batches", "quarantine", "decisions"} <= names
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_run_round_trip(store, run_id):
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["finished_at"] is None
    assert run["config"] == {"alpha": 0.01, "detectors": ["outlier.ecod"]}
    assert run["reference_digest"] == DIGEST_A and run["tool_version"] == "0.1.0"
    assert run["started_at"].tzinfo == dt.timezone.utc
    store.record_batch(run_id, path="data/batch1.csv", digest=DIGEST_B, rows=150)
    store.finish_run(run_id, status="succeeded", output_dir="runs/x", counts={"rows": np.int64(150), "quarantined": 3})
    run = store.get_run(run_id)
    assert (run["status"], run["output_dir"], run["counts"]) == ("succeeded", "runs/x", {"rows": 150, "quarantined": 3})
    assert run["finished_at"] >= run["started_at"]
    with pytest.raises(ValueError, match="run status 'done'"):
        store.finish_run(run_id, status="done", counts={})
    with pytest.raises(InputError, match="no run 'nope'"):
        store.get_run("nope")


def test_three_quarantined_rows_round_trip(store, run_id):
    count = store.add_quarantined(run_id, dataset="iris", rows=_rows(), findings=_findings(), row_id_column="id",
                                  batch_digest_by_row={"r1": DIGEST_A, "r2": DIGEST_A, "r3": DIGEST_B})
    assert count == 3 == store.count_quarantine(run_id)  # the batch-level finding adds no entry
    entries = store.list_quarantine(run_id=run_id)
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    r1, r2, r3 = entries
    assert r1["row"] == {"id": "r1", "x": 1.5, "n": 1, "label": "a", "when": "2024-01-02T00:00:00"}
    assert r2["row"] == {"id": "r2", "x": None, "n": 2, "label": None, "when": "2024-01-03T00:00:00"}
    assert r3["row"] == {"id": "r3", "x": -2.25, "n": 3, "label": "b", "when": None}
    # The entry score is 1 - smallest p-value; a broken rule (no p-value) counts as 1.
    assert (r1["checks"], r1["score"], r1["p_value"]) == (["outlier.ecod", "label.trusted_model"], 0.998, 0.002)
    assert (r2["checks"], r2["score"], r2["p_value"]) == (["outlier.ecod"], 0.999, 0.001)
    assert (r3["checks"], r3["score"], r3["p_value"]) == (["outlier.ecod", "expect.range"], 1.0, 0.009)
    assert r1["findings"] == [
        {"check": "outlier.ecod", "score": 3.0, "p_value": 0.004, "reason": "far out"},
        {"check": "label.trusted_model", "score": 7.0, "p_value": 0.002, "reason": "label disagrees"},
    ]
    assert r3["findings"][1] == {"check": "expect.range", "score": 1.0, "p_value": None, "reason": "x below minimum"}
    assert [e["batch_digest"] for e in entries] == [DIGEST_A, DIGEST_A, DIGEST_B]
    assert {e["status"] for e in entries} == {"pending"} and {e["dataset"] for e in entries} == {"iris"}
    assert all(e["created_at"].tzinfo == dt.timezone.utc for e in entries)
    # The stored JSON is strict JSON (no NaN tokens).
    with store.engine.connect() as connection:
        raw = connection.execute(select(quarantine.c.row_json).where(quarantine.c.row_id == "r2")).scalar_one()
    assert "NaN" not in raw and json.loads(raw)["x"] is None


@pytest.mark.parametrize("block_rows, taken", [
    (None, "r2"),  # one block
    (2, "r3"),  # blocks (r1, r2) and (r3): the collision comes after the first block went in
])
def test_insert_is_all_or_nothing(store, run_id, monkeypatch, block_rows, taken):
    if block_rows is not None:
        monkeypatch.setattr(entries, "INSERT_BLOCK_ROWS", block_rows)
    rows, findings = _rows(), _findings()
    # The first call stores one row only; the second (r1, r2, r3) collides on it.
    only_taken = findings[findings.row_id == taken]
    assert store.add_quarantined(run_id, dataset="iris", rows=rows[rows.id == taken], findings=only_taken,
                                 row_id_column="id") == 1
    with pytest.raises(InputError, match=f"run {run_id}: rows already quarantined: {taken}; none of this call"):
        store.add_quarantined(run_id, dataset="iris", rows=rows, findings=findings, row_id_column="id")
    assert [e["row_id"] for e in store.list_quarantine(run_id=run_id)] == [taken]
    other = store.start_run(dataset="iris", config={}, tool_version="0.1.0", reference_digest=DIGEST_A)
    assert store.add_quarantined(other, dataset="iris", rows=rows, findings=findings, row_id_column="id") == 3
    assert [e["row_id"] for e in store.list_quarantine(run_id=other)] == ["r1", "r2", "r3"]


class _ReadEvidence(dict):
    """Evidence texts that log each read, beside the inserts, in ``events``."""

    def __init__(self, texts, events):
        super().__init__(texts)
        self.events = events

    def __getitem__(self, row_id):
        self.events.append(f"read {row_id}")
        return super().__getitem__(row_id)

    def get(self, row_id, default=None):
        return self[row_id] if row_id in self else default


def test_evidence_is_read_a_block_of_entries_at_a_time(store, run_id, monkeypatch):
    # A heavily poisoned batch's evidence, built as it is read (core.evidence), is never held whole.
    events = []
    monkeypatch.setattr(entries, "INSERT_BLOCK_ROWS", 2)
    real_insert = entries.insert
    monkeypatch.setattr(entries, "insert", lambda table: events.append("insert") or real_insert(table))
    texts = {row_id: json.dumps({"nearest": [], "label": row_id}) for row_id in ("r1", "r2", "r3")}
    # Findings as pandas 3 reads text (its own str dtype), not Python objects: stored alike.
    findings = _findings().astype({"check": "str", "reason": "str", "row_id": "str"})
    store.add_quarantined(run_id, dataset="iris", rows=_rows(), findings=findings, row_id_column="id",
                          evidence_by_row=_ReadEvidence(texts, events))
    assert events == ["read r1", "read r2", "insert", "read r3", "insert"]
    stored = store.list_quarantine(run_id=run_id)
    with store.engine.connect() as connection:
        evidence = connection.execute(select(quarantine.c.evidence_json).order_by(quarantine.c.id)).scalars().all()
    assert evidence == [texts["r1"], texts["r2"], texts["r3"]]
    assert stored[0]["findings"][1] == {"check": "label.trusted_model", "score": 7.0, "p_value": 0.002,
                                        "reason": "label disagrees"}


def test_rows_without_a_flagged_finding_are_refused(store, run_id):
    findings = _findings()
    with pytest.raises(InputError, match="row r2: no flagged finding"):
        store.add_quarantined(run_id, dataset="iris", rows=_rows(),
                              findings=findings[findings.check != "outlier.ecod"], row_id_column="id")
    with pytest.raises(InputError, match="row ids repeat among the quarantined rows: r1"):
        store.add_quarantined(run_id, dataset="iris", rows=_rows().iloc[[0, 0]], findings=findings,
                              row_id_column="id")
    with pytest.raises(InputError, match="findings name rows that are not being quarantined: r2, r3"):
        store.add_quarantined(run_id, dataset="iris", rows=_rows().iloc[[0]], findings=findings, row_id_column="id")
    assert store.count_quarantine() == 0


def test_filters(store, run_id):
    store.add_quarantined(run_id, dataset="iris", rows=_rows(), findings=_findings(), row_id_column="id")
    other = store.start_run(dataset="adult", config={}, tool_version="0.1.0")
    rows = pd.DataFrame({"id": [10], "age": [200]})
    store.add_quarantined(other, dataset="adult", rows=rows, row_id_column="id",
                          findings=make_findings(row_ids=["10"], check="outlier.ecod2", scores=[5.0],
                                                 flagged=[True], reasons=["old"], p_values=[0.01]))
    ids = lambda entries: [e["row_id"] for e in entries]  # noqa: E731
    assert ids(store.list_quarantine()) == ["r1", "r2", "r3", "10"]
    assert ids(store.list_quarantine(run_id=other)) == ["10"]
    # Exact check names: "outlier.ecod" must not match "outlier.ecod2".
    assert ids(store.list_quarantine(check="outlier.ecod")) == ["r1", "r2", "r3"]
    assert ids(store.list_quarantine(check="outlier.ecod2")) == ["10"]
    assert ids(store.list_quarantine(check="label.trusted_model")) == ["r1"]
    assert ids(store.list_quarantine(check="expect.range")) == ["r3"]
    assert ids(store.list_quarantine(check="outlier")) == []
    assert ids(store.list_quarantine(limit=2, offset=1)) == ["r2", "r3"]
    with store.engine.begin() as connection:
        connection.execute(quarantine.update().where(quarantine.c.row_id == "r2").values(status="released"))
    assert ids(store.list_quarantine(status="pending")) == ["r1", "r3", "10"]
    assert ids(store.list_quarantine(status="released", run_id=run_id)) == ["r2"]
    assert store.count_quarantine() == 4 and store.count_quarantine(other) == 1


def test_two_stores_share_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with QuarantineStore(url) as writer, QuarantineStore(url) as reader:
        run_id = writer.start_run(dataset="iris", config={}, tool_version="0.1.0")
        assert reader.get_run(run_id)["status"] == "running"
        writer.add_quarantined(run_id, dataset="iris", rows=_rows(), findings=_findings(), row_id_column="id")
        assert reader.count_quarantine(run_id) == 3
        reader.finish_run(run_id, status="rejected", counts={"quarantined": 3})
        assert writer.get_run(run_id)["status"] == "rejected"


def test_a_decision_round_trips_with_an_aware_utc_time(store, run_id):
    store.add_quarantined(run_id, dataset="iris", rows=_rows(), findings=_findings(), row_id_column="id")
    store.finish_run(run_id, status="succeeded", output_dir="/out", counts={})
    entry = store.list_quarantine(limit=1)[0]
    before = dt.datetime.now(dt.timezone.utc)
    [made] = store.record_decisions([entry["id"]], status="released", note="ok", reviewer="ana")
    [stored] = store.get_entry(entry["id"])["history"]
    assert (stored["reviewer"], stored["status_before"], stored["status_after"]) == ("ana", "pending", "released")
    assert stored["decided_at"] == made["decided_at"] and stored["decided_at"].tzinfo is not None
    assert before <= stored["decided_at"] <= dt.datetime.now(dt.timezone.utc)


def _baseline_snapshot():
    """The tables of migration 0001 (its module name starts with a digit: load it by path)."""
    path = Path(poisonguard.pipelines.store.migrations.__file__).parent / "versions" / "0001_baseline.py"
    spec = importlib.util.spec_from_file_location("baseline_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._snapshot()


def _revision(url: str):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()


def test_a_new_store_is_at_the_newest_migration(store):
    assert _revision(store.url) == [HEAD]


def test_a_store_made_before_migrations_is_adopted_with_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    _baseline_snapshot().create_all(engine)  # what poisonguard 0.1 made, before it had migrations
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO runs (id, dataset, started_at, status, config_json, counts_json, tool_version) "
            "VALUES ('r-old', 'iris', '2026-01-01 00:00:00', 'succeeded', '{}', '{}', '0.0.9')"
        ))
    engine.dispose()
    with QuarantineStore(url) as opened:
        assert opened.get_run("r-old")["tool_version"] == "0.0.9"
    assert _revision(url) == [HEAD]


def test_many_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    script = (
        "import sys, time\n"
        "from poisonguard.pipelines.store import QuarantineStore\n"
        "while time.time() < float(sys.argv[2]):\n"
        "    time.sleep(0.005)\n"
        "QuarantineStore(sys.argv[1]).close()\n"
    )
    start = time.time() + 8.0  # every process has imported by then, and they open at once
    processes = [subprocess.Popen([sys.executable, "-c", script, url, str(start)], stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    failures = [process.communicate(timeout=120)[1] for process in processes if process.wait(timeout=120) != 0]
    assert failures == []
    assert _revision(url) == [HEAD]
    engine = create_engine(url)
    assert {"runs", "quarantine", "decisions", "watch_batches"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_stored_json_is_what_dumps_writes_for_any_cell(store, run_id):
    # Rows and findings are written without converting each value first
    # (``plain_dumps``); the text must be dumps' for every kind of cell.
    long = "y" * (STORED_CELL_LIMIT + 3)
    rows = pd.DataFrame({
        "id": ["a", "b"],
        "x": [np.inf, 1e-300],
        "n": pd.array([None, 7], dtype="Int64"),
        "text": [long, "é"],
        "flag": [True, False],
        0: [np.int64(3), np.int64(4)],  # a column name that is not text
    })
    findings = make_findings(row_ids=["a", "b", "b"], check="outlier.ecod", scores=[np.inf, 2.5, np.nan],
                             flagged=[True] * 3, reasons=["r"] * 3, p_values=[np.nan, 1e-320, 0.25])
    store.add_quarantined(run_id, dataset="iris", rows=rows, findings=findings, row_id_column="id")
    with store.engine.connect() as connection:
        stored = dict(connection.execute(
            select(quarantine.c.row_id, quarantine.c.row_json).where(quarantine.c.run_id == run_id)).all())
        found = dict(connection.execute(
            select(quarantine.c.row_id, quarantine.c.findings_json).where(quarantine.c.run_id == run_id)).all())
    for position, row_id in enumerate(["a", "b"]):
        assert stored[row_id] == dumps(capped_cells(rows.to_dict(orient="records")[position]))
    assert found["b"] == dumps([
        {"check": "outlier.ecod", "score": 2.5, "p_value": 1e-320, "reason": "r"},
        {"check": "outlier.ecod", "score": None, "p_value": 0.25, "reason": "r"},
    ])
    assert json.loads(found["a"]) == [{"check": "outlier.ecod", "score": None, "p_value": None, "reason": "r"}]
    # Text columns only: the plain writer's path gives the same text.
    text_rows = rows.drop(columns=[0])
    run_b = store.start_run(dataset="iris", config={}, tool_version="0.1.0")
    store.add_quarantined(run_b, dataset="iris", rows=text_rows, findings=findings, row_id_column="id")
    with store.engine.connect() as connection:
        stored_b = dict(connection.execute(
            select(quarantine.c.row_id, quarantine.c.row_json).where(quarantine.c.run_id == run_b)).all())
    for position, row_id in enumerate(["a", "b"]):
        assert stored_b[row_id] == dumps(capped_cells(text_rows.to_dict(orient="records")[position]))
