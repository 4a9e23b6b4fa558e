"""The run's stages wired without Prefect, on tiny seeded data with known poison."""
import json

import os
import time

import pandas as pd
import pytest

from poisonguard.pipelines.outputs import publish
from poisonguard.pipelines.core.config import DEFAULT_DETECTORS
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.runner import execute
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.core.stages import detector_run_order
from poisonguard.pipelines.outputs.signing import verify_folder
from poisonguard.pipelines.store.quarantine_store import QuarantineStore
from tests.tiny_data import BROKEN_NUMBER, FAR_AWAY, FLIPPED, POISONED, UNKNOWN_COLOUR, write_tiny_dataset


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


def run_tiny(tiny, tmp_path, **options):
    settings = make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"], **options)
    return settings, execute(settings)


def left_nothing(settings, tmp_path) -> list[str]:
    """Check a failed run left no output, staging folder, claim, entry or unfinished run; its runs' statuses."""
    assert list(tmp_path.glob("*out*")) == []
    with QuarantineStore(settings.store_url) as store:
        assert store.count_quarantine() == 0 and store.unfinished_runs() == []
        with store.engine.connect() as connection:
            return connection.exec_driver_sql("SELECT status FROM runs").scalars().all()


def run_failing(tiny, tmp_path, error: type, match: str) -> list[str]:
    """Run the tiny batch expecting ``error`` (its message matching ``match``); the runs' statuses ``left_nothing`` reads."""
    settings = make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"])
    with pytest.raises(error, match=match):
        execute(settings)
    return left_nothing(settings, tmp_path)


def test_every_row_ends_in_exactly_one_of_clean_and_quarantine(tiny, tmp_path):
    settings, summary = run_tiny(tiny, tmp_path)
    clean = pd.read_parquet(summary.out / publish.CLEAN_FILE)
    quarantine = pd.read_parquet(summary.out / publish.QUARANTINE_FILE)
    batch = pd.read_csv(tiny["batch"], dtype=str)
    assert sorted([*clean["id"], *quarantine["id"]]) == sorted(batch["id"])
    assert not set(clean["id"]) & set(quarantine["id"])
    assert (summary.rows_in, summary.kept + summary.quarantined) == (45, 45)
    # Clean rows keep the original columns, with numbers as numbers.
    assert list(clean.columns) == ["id", "x", "y", "shade", "label"]
    assert clean["x"].dtype == float


def test_each_kind_of_poison_is_caught_by_the_right_check(tiny, tmp_path):
    _, summary = run_tiny(tiny, tmp_path)
    quarantine = pd.read_parquet(summary.out / publish.QUARANTINE_FILE).set_index("id")
    assert set(POISONED) <= set(quarantine.index)
    # Within the detectors' 5 % budget: at most a couple of the 39 clean rows flagged.
    assert len(set(quarantine.index) - set(POISONED)) <= 2
    checks = quarantine["poisonguard_checks"].map(list)
    assert "expectation.parsable_type" in checks[BROKEN_NUMBER]
    assert json.loads(quarantine.loc[BROKEN_NUMBER, "poisonguard_original"]) == {"x": "oops"}  # the text is kept
    assert "expectation.values_to_be_in_set" in checks[UNKNOWN_COLOUR]
    assert {"outlier.ecod", "expectation.values_to_be_between"} <= set(checks[FAR_AWAY])
    for row_id in FLIPPED:
        assert "label.trusted_model" in checks[row_id], row_id
    reasons = list(quarantine.loc[FLIPPED[0], "poisonguard_reasons"])
    assert any("label" in reason for reason in reasons)


def test_counts_per_check_are_rows_not_findings(tiny, tmp_path):
    _, summary = run_tiny(tiny, tmp_path)
    counts = {row["check"]: row for row in summary.per_check}
    # The far-away row breaks the range of both x and y: one row, two findings.
    assert counts["expectation.values_to_be_between"]["flagged"] == 1
    assert counts["expectation.parsable_type"]["flagged"] == 1
    # An unparsable cell is not also reported as an empty one.
    assert "expectation.values_to_not_be_null" not in counts
    assert counts["expectation.values_to_be_in_set"]["flagged"] == 1


def test_output_is_signed_and_provenance_is_complete(tiny, tmp_path):
    settings, summary = run_tiny(tiny, tmp_path)
    verified = verify_folder(summary.out, settings.state_dir / "keys" / "public.pem")
    assert set(verified.files) == {"clean.parquet", "quarantine.parquet", "provenance.json", "report.html"}
    assert summary.key_created
    provenance = json.loads((summary.out / "provenance.json").read_text())
    assert provenance["inputs"]["batches"][0]["rows"] == 45
    assert provenance["expectation_suite"]["source"].startswith("inferred from the reference")
    assert [c["name"] for c in provenance["checks"]] == ["expectations", *DEFAULT_DETECTORS]
    # Eight detectors share the 5 % budget: each ran at 0.05 / 8.
    assert {c["params"]["alpha"] for c in provenance["checks"][1:]} == {0.05 / 8}
    assert provenance["counts"]["kept"] + provenance["counts"]["quarantined"] == 45
    assert provenance["libraries"]["pyod"]
    assert "private" not in json.dumps(provenance).lower()
    # Every stage before publishing, in order, with its seconds (also in the report).
    assert [stage["stage"] for stage in provenance["stages"]] == [
        "load-inputs", "check-expectations", "check-batch", "encode-features",
        *(f"detect-{name}" for name in detector_run_order(DEFAULT_DETECTORS)), "decide", "check-model-impact", "collect-evidence",
    ]
    assert all(stage["seconds"] >= 0 for stage in provenance["stages"])
    report = (summary.out / "report.html").read_text()
    assert "outlier.ecod" in report and FAR_AWAY in report
    assert "seconds per stage" in report and "detect-backdoor.trigger" in report


def test_quarantine_store_holds_every_quarantined_row(tiny, tmp_path):
    settings, summary = run_tiny(tiny, tmp_path)
    store = QuarantineStore(settings.store_url)
    run = store.get_run(summary.run_id)
    assert run["status"] == "succeeded" and run["output_dir"] == str(summary.out)
    entries = store.list_quarantine(run_id=summary.run_id)
    assert sorted(e["row_id"] for e in entries) == sorted(pd.read_parquet(summary.out / "quarantine.parquet")["id"])
    far = next(e for e in entries if e["row_id"] == FAR_AWAY)
    assert far["row"]["x"] == "60.0" and far["status"] == "pending"
    assert {f["check"] for f in far["findings"]} >= {"outlier.ecod"}
    # Evidence for review: the far row's features are outside the trusted range.
    top = far["evidence"]["features"][0]
    assert top["column"] in {"x", "y"} and top["note"] == "outside the trusted range"
    assert set(far["evidence"]["histograms"]) == {"x", "y"}
    assert sum(far["evidence"]["histograms"]["x"]["counts"]) == 180
    flipped = next(e for e in entries if e["row_id"] == FLIPPED[0])
    votes = flipped["evidence"]["label_votes"]
    assert sum(votes.values()) == 5 and flipped["evidence"]["label"] not in votes


def test_a_batch_with_a_column_of_the_wrong_type_is_rejected_whole(tiny, tmp_path):
    batch = pd.read_csv(tiny["batch"], dtype=str)
    batch["y"] = "not a number"
    batch.to_csv(tiny["batch"], index=False)
    settings, summary = run_tiny(tiny, tmp_path)
    assert summary.status == "rejected" and summary.out is None
    assert not (tmp_path / "out").exists()
    assert "column 'y' should be numeric" in str(summary.rejection())
    assert summary.report.exists()
    assert QuarantineStore(settings.store_url).get_run(summary.run_id)["status"] == "rejected"


def test_without_reference_detectors_calibrate_on_the_batch(tiny, tmp_path):
    tiny["config"].write_text('[dataset]\nname = "tiny"\nlabel = "label"\nid = "id"\n')
    _, summary = run_tiny(tiny, tmp_path)
    assert any("No trusted reference" in note for note in summary.notes)
    quarantine = pd.read_parquet(summary.out / publish.QUARANTINE_FILE)
    assert {FAR_AWAY, BROKEN_NUMBER} <= set(quarantine["id"])


def test_without_reference_a_row_without_a_label_is_still_quarantined(tiny, tmp_path):
    tiny["config"].write_text('[dataset]\nname = "tiny"\nlabel = "label"\nid = "id"\n')
    batch = pd.read_csv(tiny["batch"], dtype=str)
    batch.loc[batch["id"] == "b-010", "label"] = None
    batch.to_csv(tiny["batch"], index=False)
    _, summary = run_tiny(tiny, tmp_path)
    quarantine = pd.read_parquet(summary.out / publish.QUARANTINE_FILE).set_index("id")
    checks = list(quarantine.loc["b-010", "poisonguard_checks"])
    reasons = list(quarantine.loc["b-010", "poisonguard_reasons"])
    assert reasons[checks.index("expectation.values_to_not_be_null")] == "label is empty but every row needs a label"


def test_a_failure_while_publishing_leaves_no_output_and_marks_the_run(tiny, tmp_path, monkeypatch):
    def broken_sign(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(publish, "sign_folder", broken_sign)
    settings = make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"])
    with pytest.raises(OSError, match="disk full"):
        execute(settings)
    assert list(tmp_path.glob("*out*")) == []  # no output, no staging folder, no claim
    with QuarantineStore(settings.store_url) as store:
        assert store.count_quarantine() == 0
        assert store.unfinished_runs() == []
        with store.engine.connect() as connection:
            statuses = connection.exec_driver_sql("SELECT status, counts_json FROM runs").all()
    assert [status for status, _ in statuses] == ["failed"] and "disk full" in statuses[0][1]


@pytest.mark.parametrize("failing", ["clean file", "report"])
def test_a_failure_beside_the_clean_files_writer_waits_for_it_and_leaves_nothing(tiny, tmp_path, monkeypatch, failing):
    # The clean file is written on a thread of its own while the quarantine
    # file and the report are built: either failing fails the run whole.
    real_write, real_report = publish.write_parquet, publish._report
    clean_writes = []

    def write_parquet(frame, path, **options):
        if path.name == publish.CLEAN_FILE:
            time.sleep(0.3)  # still writing when the report fails
            if failing == "clean file":
                raise OSError("disk full")
            real_write(frame, path, **options)
            clean_writes.append(path)
            return
        real_write(frame, path, **options)

    def report(*args, **options):
        if failing == "report":
            raise ValueError("the report broke")
        return real_report(*args, **options)

    monkeypatch.setattr(publish, "write_parquet", write_parquet)
    monkeypatch.setattr(publish, "_report", report)
    settings = make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"])
    with pytest.raises((OSError, ValueError), match="disk full" if failing == "clean file" else "report broke"):
        execute(settings)
    if failing == "report":
        assert len(clean_writes) == 1  # finished before the staging folder was removed, not into it after
    assert left_nothing(settings, tmp_path) == ["failed"]


def test_a_failure_after_the_entries_are_stored_removes_them_at_once(tiny, tmp_path, monkeypatch):
    real_rename = os.rename

    def rename(source, target):
        if ".partial-" in str(source):
            raise OSError("the disk went away")
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    assert run_failing(tiny, tmp_path, OSError, "went away") == ["failed"]


def test_evidence_failing_while_the_entries_are_stored_leaves_nothing(tiny, tmp_path, monkeypatch):
    # Each row's evidence is built as the store reads it, a block of entries
    # at a time: a failure after the first blocks went in keeps none of them.
    from poisonguard.pipelines.core.evidence import QuarantineEvidence
    from poisonguard.pipelines.store import entries

    monkeypatch.setattr(entries, "INSERT_BLOCK_ROWS", 1)
    real_read, reads = QuarantineEvidence.__getitem__, []

    def read(self, row_id):
        reads.append(row_id)
        if len(reads) == 3:
            raise MemoryError("out of memory on the third row")
        return real_read(self, row_id)

    monkeypatch.setattr(QuarantineEvidence, "__getitem__", read)
    assert run_failing(tiny, tmp_path, MemoryError, "third row") == ["failed"]
    assert len(reads) == 3


def test_existing_output_folder_is_refused(tiny, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="output folder already exists"):
        make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"])


def test_a_huge_cell_is_cut_in_the_store_and_report_but_kept_whole_in_the_outputs(tiny, tmp_path):
    batch = pd.read_csv(tiny["batch"], dtype=str)
    huge = "z" * 5_000_000  # a 5 MB category: not one of the known shades, so the row is quarantined
    batch.loc[batch["id"] == FAR_AWAY, "shade"] = huge
    path = tmp_path / "huge.csv"
    batch.to_csv(path, index=False)
    summary = execute(make_settings([path], out=tmp_path / "out", config_path=tiny["config"]))
    assert (summary.out / "report.html").stat().st_size < 2_000_000
    quarantined = pd.read_parquet(summary.out / "quarantine.parquet")
    row = quarantined[quarantined["id"] == FAR_AWAY].iloc[0]
    assert row["shade"] == huge  # the signed output keeps every value
    assert all(len(reason) <= 1000 for reason in row["poisonguard_reasons"])
    with QuarantineStore(summary_store_url(tmp_path)) as store:
        [entry] = [e for e in store.list_quarantine() if e["row_id"] == FAR_AWAY]
    assert len(entry["row"]["shade"]) < 1200 and entry["row"]["shade"].endswith("quarantine.parquet]")
    assert len(json.dumps(entry, default=str)) < 20_000


def summary_store_url(tmp_path) -> str:
    return f"sqlite:///{os.environ['POISONGUARD_HOME']}/quarantine.db"


def test_clean_and_quarantine_files_share_one_schema_and_keep_broken_text(tiny, tmp_path):
    _, summary = run_tiny(tiny, tmp_path)
    clean = pd.read_parquet(summary.out / "clean.parquet")
    quarantine = pd.read_parquet(summary.out / "quarantine.parquet")
    assert list(quarantine.columns[: len(clean.columns)]) == list(clean.columns)
    assert quarantine[clean.columns].dtypes.to_dict() == clean.dtypes.to_dict()  # numbers are numbers in both
    broken = quarantine.set_index("id").loc[BROKEN_NUMBER]
    assert pd.isna(broken["x"]) and json.loads(broken["poisonguard_original"]) == {"x": "oops"}
    assert pd.isna(quarantine.set_index("id").loc[FAR_AWAY, "poisonguard_original"])


@pytest.mark.parametrize("distinct, refused", [(101, True), (100, False)])
def test_a_label_column_of_nearly_distinct_values_is_refused_as_no_class_labels(tmp_path, distinct, refused):
    # A price given as the label: judged as 20,000 classes it took 214 s and 6.5 GB and quarantined 97.5 % of rows.
    labels = [f"c{i % distinct}" for i in range(150)]
    frame = pd.DataFrame({"id": range(150), "x": [float(i % 7) for i in range(150)], "price": labels})
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    settings = make_settings([path], out=tmp_path / "out", label="price", id_column="id")
    if refused:
        with pytest.raises(InputError, match=r"batch.csv: label column 'price' has 101 distinct values in 150 rows"):
            execute(settings)
        assert not (tmp_path / "out").exists()
    else:  # 100 classes of 1-2 rows: few rows a class, but classes
        assert execute(settings).status in ("succeeded", "rejected")


@pytest.mark.parametrize(
    "values, refused",
    [
        # 21 prices, most on fewer than 10 rows: a target
        ([float(i % 21) * 1.5 for i in range(21 * 9)] + [0.0] * 20, True),
        # 20 of them: few enough to judge as classes
        ([float(i % 20) * 1.5 for i in range(20 * 9)] + [0.0] * 20, False),
        # 21 codes on 10 rows each: classes
        ([float(i % 21) for i in range(21 * 10)], False),
        # the same 21 names on 9 rows each: named classes are never taken for a target
        ([f"c{i % 21}" for i in range(21 * 9)], False),
        # 101 numbers on 10 rows each: a target at any size (diamonds' 11,602 prices on 53,940 rows)
        ([float(i % 101) for i in range(101 * 10)], True),
        # 100 of them: codes
        ([float(i % 100) for i in range(100 * 10)], False),
    ],
)
def test_a_numeric_label_whose_values_most_rows_hardly_share_is_refused_as_a_target(tmp_path, values, refused):
    # ggplot2's diamonds: 11,602 prices on 53,940 rows passed the share of distinct values, and the
    # first cross-fit over 11,602 "classes" had not ended after ten minutes.
    frame = pd.DataFrame({"id": range(len(values)), "x": [float(i % 7) for i in range(len(values))], "price": values})
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    settings = make_settings([path], out=tmp_path / "out", label="price", id_column="id")
    if refused and len(values) == 1010:
        with pytest.raises(InputError, match=r"batch.csv: label column 'price' holds 101 distinct numbers in 1,010 rows: a continuous target"):
            execute(settings)
        assert not (tmp_path / "out").exists()
    elif refused:
        with pytest.raises(InputError, match=r"batch.csv: label column 'price' holds 21 distinct numbers in 209 rows, "
                                             r"and 180 rows \(86%\) carry one that fewer than 10 rows share"):
            execute(settings)
        assert not (tmp_path / "out").exists()
    else:
        assert execute(settings).status in ("succeeded", "rejected")


def test_numeric_class_codes_the_config_lists_as_categorical_are_judged_as_classes(tmp_path):
    values = [float(i % 101) for i in range(101 * 10)]  # refused as a target without the config's word
    frame = pd.DataFrame({"id": range(len(values)), "x": [float(i % 7) for i in range(len(values))], "code": values})
    frame.to_csv(tmp_path / "batch.csv", index=False)
    (tmp_path / "config.toml").write_text('[dataset]\ncategorical = ["code"]\n')
    with pytest.raises(InputError, match=r"if these numbers are class codes, list 'code' in dataset.categorical"):
        execute(make_settings([tmp_path / "batch.csv"], out=tmp_path / "refused", label="code", id_column="id"))
    settings = make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", label="code", id_column="id",
                             config_path=tmp_path / "config.toml")
    assert execute(settings).status in ("succeeded", "rejected")


def test_a_label_holding_a_list_is_counted_by_its_text(tmp_path):
    # JSON Lines can put a list in the label: counting distinct labels raised "unhashable type: 'list'".
    rows = [{"id": i, "x": i % 7 / 10, "label": [1, 2] if i == 3 else "ab"[i % 2]} for i in range(40)]
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    summary = execute(make_settings([path], out=tmp_path / "out", label="label", id_column="id"))
    assert summary.status == "succeeded"
    assert "3" in set(pd.read_parquet(summary.out / "quarantine.parquet")["id"].astype(str))
