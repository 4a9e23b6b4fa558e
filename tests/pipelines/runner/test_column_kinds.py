"""Columns that are no quantities, judged and published as what they are.

Dates and times: kept and checked to parse, never a feature. Every batch
comes later than the reference it is judged against, so as a feature a
timestamp put every row beyond the reference's range: a Parquet timestamp
(read as a number) and a CSV column of days (read as categories the
reference never saw) each had every clean batch rejected as drifted.

Codes written with leading zeros (postcodes): categories. Read as numbers
they lost their zeros in the signed clean file.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.core import tables
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.runner import execute


def rows(rng: np.random.Generator, n_rows: int, prefix: str, start: str) -> pd.DataFrame:
    labels = rng.choice(["red", "green"], n_rows)
    return pd.DataFrame({
        "id": [f"{prefix}-{i:03d}" for i in range(n_rows)],
        "when": pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.integers(0, 60 * 24 * 60, n_rows)), unit="min"),
        "x": np.round(rng.normal(0, 1, n_rows) + (labels == "green") * 4, 3),
        "y": np.round(rng.normal(0, 1, n_rows), 3),
        "label": labels,
    })


@pytest.fixture
def later_batch(tmp_path):
    rng = np.random.default_rng(5)
    reference, batch = rows(rng, 300, "r", "2024-01-01"), rows(rng, 200, "b", "2024-04-01")
    reference.to_parquet(tmp_path / "reference.parquet", index=False)  # timestamps of Parquet's own type
    batch["when"] = batch["when"].dt.strftime("%Y-%m-%d %H:%M:%S")  # as a CSV export writes them
    batch.loc[7, "when"] = "2024-04-31 08:00:00"
    batch.to_csv(tmp_path / "batch.csv", index=False)
    (tmp_path / "times.toml").write_text(
        '[dataset]\nname = "times"\nlabel = "label"\nid = "id"\nreference = "reference.parquet"\n', encoding="utf-8"
    )
    return tmp_path


@pytest.mark.parametrize("recognised", [True, False])
def test_a_later_batch_is_judged_on_its_features_not_its_dates(later_batch, tmp_path, monkeypatch, recognised):
    if not recognised:
        monkeypatch.setattr(tables, "_holds_times", lambda series: False)
        monkeypatch.setattr(tables, "_parses_as_times", lambda present, threshold: False)
    settings = make_settings([later_batch / "batch.csv"], out=tmp_path / "out", config_path=later_batch / "times.toml")

    summary = execute(settings)

    if not recognised:
        assert summary.status == "rejected"
        return
    assert summary.status == "succeeded"
    assert any(note.startswith("column 'when' holds dates or times: kept") for note in summary.notes)
    quarantine = pq.read_table(summary.out / "quarantine.parquet").to_pandas().set_index("id")
    assert quarantine.loc["b-007", "poisonguard_reasons"].tolist() == [
        "when = '2024-04-31 08:00:00' is not a date or time (ISO 8601, such as 2024-05-31 or 2024-05-31T14:05:00Z)"
    ]
    # Nothing else about the dates counts against a row: at most the rate's share of clean rows.
    assert len(quarantine) <= 1 + 0.05 * 200
    clean = pq.read_table(summary.out / "clean.parquet").to_pandas()
    original = pd.read_csv(later_batch / "batch.csv").set_index("id")
    assert clean["when"].tolist() == original.loc[clean["id"], "when"].tolist()  # the text as it came


def test_zero_padded_codes_keep_their_zeros_and_a_new_code_is_a_batch_finding(tmp_path):
    rng = np.random.default_rng(9)
    frame = rows(rng, 500, "r", "2024-01-01").drop(columns=["when"])
    frame["postcode"] = rng.choice(["02139", "10001", "94105"], len(frame))
    frame.iloc[:150].to_csv(tmp_path / "reference.csv", index=False)
    frame.iloc[150:].to_csv(tmp_path / "batch.csv", index=False)
    moved = frame.iloc[150:].copy()
    moved.loc[moved.index[:40], "postcode"] = "60601"  # between two known codes, were they numbers
    moved.to_csv(tmp_path / "moved.csv", index=False)
    (tmp_path / "codes.toml").write_text(
        '[dataset]\nname = "codes"\nlabel = "label"\nid = "id"\nreference = "reference.csv"\n', encoding="utf-8"
    )

    summary = execute(make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", config_path=tmp_path / "codes.toml"))
    assert summary.status == "succeeded"
    clean = pq.read_table(summary.out / "clean.parquet").to_pandas()
    assert sorted(clean["postcode"].unique()) == ["02139", "10001", "94105"]

    moved_summary = execute(make_settings([tmp_path / "moved.csv"], out=tmp_path / "out-moved",
                                          config_path=tmp_path / "codes.toml"))
    assert moved_summary.status == "rejected"
    assert any("postcode" in failure and "60601" in failure for failure in moved_summary.batch_failures)


def test_a_parquet_references_booleans_match_a_csv_exporters_true_and_false(tmp_path):
    rng = np.random.default_rng(4)
    frame = rows(rng, 500, "r", "2024-01-01").drop(columns=["when"])
    frame["member"] = rng.random(len(frame)) < 0.4
    frame.iloc[:150].to_parquet(tmp_path / "reference.parquet", index=False)
    batch = frame.iloc[150:].copy()
    batch["member"] = batch["member"].map({True: "true", False: "FALSE"})  # Spark writes one, R the other
    batch.to_csv(tmp_path / "batch.csv", index=False)
    settings = make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", label="label", id_column="id",
                             reference=tmp_path / "reference.parquet")

    summary = execute(settings)

    assert summary.status == "succeeded", summary.batch_failures
    assert summary.quarantined <= 0.05 * 350
    clean = pq.read_table(summary.out / "clean.parquet").to_pandas()
    assert set(clean["member"]) == {"true", "FALSE"}  # as they came


def test_a_reference_column_read_as_numbers_with_a_few_words_says_how_to_keep_it_as_categories(tmp_path):
    # openintro's yrbss: a grade of 9 to 12, and 'other' in a few rows of the trusted data.
    from poisonguard.pipelines.core.errors import InputError

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"grade": rng.choice(["9", "10", "11", "12"], 400), "x": rng.normal(size=400).round(3),
                          "label": rng.choice(["a", "b"], 400)})
    frame.loc[::50, "grade"] = "other"  # 2 %
    frame.iloc[:200].to_csv(tmp_path / "ref.csv", index=False)
    frame.iloc[200:].to_csv(tmp_path / "batch.csv", index=False)
    options = dict(label="label", reference=tmp_path / "ref.csv")
    with pytest.raises(InputError, match=r"ref.csv: the trusted reference has unparsable values: grade = 'other' is not "
                                         r"a number \(column 'grade' was read as numbers because at least 95% of its "
                                         r"cells are; if it holds categories, list it in dataset.categorical\)"):
        execute(make_settings([tmp_path / "batch.csv"], out=tmp_path / "refused", **options))
    config = tmp_path / "kinds.toml"
    config.write_text('[dataset]\ncategorical = ["grade"]\n')
    told = execute(make_settings([tmp_path / "batch.csv"], out=tmp_path / "out", config_path=config, **options))
    assert told.status == "succeeded"
    # A column the config names numeric is the user's word: the cell is named, no advice.
    config.write_text('[dataset]\nnumeric = ["grade"]\n')
    with pytest.raises(InputError) as refused:
        execute(make_settings([tmp_path / "batch.csv"], out=tmp_path / "named", config_path=config, **options))
    assert "grade = 'other' is not a number" in str(refused.value) and "dataset.categorical" not in str(refused.value)
