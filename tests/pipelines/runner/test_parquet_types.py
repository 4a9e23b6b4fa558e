"""Parquet files as pandas and Arrow users write them: their own types go in, and come out unchanged.

A pandas ``category`` column is stored as an Arrow dictionary, and timestamps,
durations, decimals, bytes and unsigned 64-bit integers have Parquet types of
their own. Each of these once stopped a run with a traceback (a category
label, a bytes column, a uint64 column whose values a float cannot tell
apart) or came out of it as another type (timestamps and durations as
integers, decimals as floats), which a training job reading the clean file
would not expect.
"""
from __future__ import annotations

import datetime
import decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.outputs import signed_folder
from poisonguard.pipelines.outputs.signed_folder import write_parquet
from poisonguard.pipelines.runner import execute
from tests.cli_helpers import entry_id, invoke

FAR_AWAY = "b-007"


def typed_rows(rng: np.random.Generator, n_rows: int, prefix: str) -> pd.DataFrame:
    labels = rng.choice(["red", "green"], n_rows)
    return pd.DataFrame({
        "id": [f"{prefix}-{i:03d}" for i in range(n_rows)],
        "x": np.round(rng.normal(0, 1, n_rows) + (labels == "green") * 4, 3),
        "shade": pd.Categorical(rng.choice(["light", "dark"], n_rows)),
        "when": pd.Timestamp("2026-01-01", tz="Europe/Paris") + pd.to_timedelta(rng.integers(0, 90, n_rows), unit="D"),
        "wait": pd.to_timedelta(rng.integers(1, 600, n_rows), unit="s"),
        "price": [decimal.Decimal(int(cents)) / 100 for cents in rng.integers(100, 5000, n_rows)],
        "blob": [bytes([int(b)]) for b in rng.integers(0, 4, n_rows)],
        # 64-bit codes near 2**63: floats an integer apart cannot tell them apart.
        "code": (np.uint64(2**63) + rng.integers(0, 40, n_rows).astype(np.uint64)),
        "label": pd.Categorical(labels),
    })


@pytest.fixture
def typed_parquet(tmp_path):
    rng = np.random.default_rng(3)
    reference, batch = typed_rows(rng, 200, "r"), typed_rows(rng, 80, "b")
    batch.loc[batch["id"] == FAR_AWAY, "x"] = 80.0
    reference.to_parquet(tmp_path / "reference.parquet", index=False)
    batch.to_parquet(tmp_path / "batch.parquet", index=False)
    (tmp_path / "typed.toml").write_text(
        '[dataset]\nname = "typed"\nlabel = "label"\nid = "id"\nreference = "reference.parquet"\n', encoding="utf-8"
    )
    return tmp_path


@pytest.mark.parametrize("with_reference", [True, False], ids=["reference", "no-reference"])
def test_parquet_types_are_judged_and_published_as_they_came(typed_parquet, tmp_path, with_reference):
    batch = typed_parquet / "batch.parquet"
    if with_reference:
        settings = make_settings([batch], out=tmp_path / "out", config_path=typed_parquet / "typed.toml")
    else:
        settings = make_settings([batch], out=tmp_path / "out", label="label", id_column="id")
    summary = execute(settings)

    assert summary.status == "succeeded"
    source = pq.read_schema(batch)
    clean = pq.read_table(summary.out / "clean.parquet")
    quarantine = pq.read_table(summary.out / "quarantine.parquet")
    assert FAR_AWAY in quarantine.column("id").to_pylist()
    assert clean.num_rows + quarantine.num_rows == 80
    for table in (clean, quarantine):
        for name in ("id", "x", "shade", "when", "wait", "blob", "code", "label"):
            assert table.schema.field(name).type == source.field(name).type, name
        # Arrow reads the decimals back at the precision their values need: the same numbers, still decimals.
        assert pa.types.is_decimal(table.schema.field("price").type)
    original = pd.read_parquet(batch).set_index("id")
    published = pd.concat([clean.to_pandas(), quarantine.to_pandas()]).set_index("id").loc[original.index]
    for name in ("when", "wait", "price", "blob", "code"):
        assert published[name].tolist() == original[name].tolist(), name
    assert isinstance(published.loc[FAR_AWAY, "when"], datetime.datetime)


def test_a_released_row_joins_the_emitted_dataset_in_the_clean_files_types(typed_parquet, tmp_path, monkeypatch):
    monkeypatch.setenv("POISONGUARD_HOME", str(tmp_path / "state"))
    settings = make_settings([typed_parquet / "batch.parquet"], out=tmp_path / "out", config_path=typed_parquet / "typed.toml")
    assert execute(settings).status == "succeeded"
    released = invoke("review", "release", entry_id(FAR_AWAY), "--note", "a real outlier", "--reviewer", "ann")
    assert released.exit_code == 0, released.output

    emitted = invoke("emit", "--out", tmp_path / "emitted")

    assert emitted.exit_code == 0, emitted.output
    run_schema = pq.read_schema(tmp_path / "out" / "clean.parquet")
    clean = pq.read_table(tmp_path / "emitted" / "clean.parquet")
    # Once a JSON text among decimals, the released row's price turned both
    # columns of objects (price, blob) into text for every row.
    assert clean.schema.field("price").type == run_schema.field("price").type
    assert clean.schema.field("blob").type == run_schema.field("blob").type == pa.binary()
    row = clean.to_pandas().set_index("id").loc[FAR_AWAY]
    original = pd.read_parquet(typed_parquet / "batch.parquet").set_index("id").loc[FAR_AWAY]
    assert (row["price"], row["blob"], row["when"], row["x"]) == (original["price"], original["blob"], original["when"], 80.0)


def test_only_a_column_arrow_cannot_type_is_written_as_text(tmp_path):
    frame = pd.DataFrame({
        "mixed": pd.Series([1, "two", None], dtype=object),  # JSON Lines can mix numbers and text
        "price": [decimal.Decimal("1.50"), decimal.Decimal("2.25"), None],
        "blob": [b"\x00", b"\x01", None],
    })

    write_parquet(frame, tmp_path / "rows.parquet")

    table = pq.read_table(tmp_path / "rows.parquet")
    assert table.column("mixed").to_pylist() == ["1", "two", None]
    assert pa.types.is_decimal(table.schema.field("price").type) and table.schema.field("blob").type == pa.binary()
    assert table.column("price").to_pylist() == frame["price"].tolist()


def nested_lists(depth: int) -> list:
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_column_nested_deeper_than_a_reader_opens_is_written_as_text(tmp_path):
    # A quarantine file whose one row held a list 99 deep (reading allows
    # 100) was written as nested lists and then failed to open: "Parquet
    # schema too deeply nested". 49 list levels read back; 50 do not.
    frame = pd.DataFrame({"deep": pd.Series([nested_lists(50)], dtype=object),
                          "deep_enough": pd.Series([nested_lists(49)], dtype=object), "x": [1.0]})

    write_parquet(frame, tmp_path / "rows.parquet")

    table = pq.read_table(tmp_path / "rows.parquet")
    assert table.column("deep").to_pylist() == [str(nested_lists(50))]
    assert str(table.schema.field("deep_enough").type).count("list<") == 49
    assert table.column("deep_enough").to_pylist() == [nested_lists(49)]


def test_rows_written_a_block_at_a_time_are_the_rows_cut_out_first(tmp_path, monkeypatch):
    monkeypatch.setattr(signed_folder, "WRITE_BLOCK_ROWS", 4)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "id": [f"r{i}" for i in range(11)],
        "x": np.where(rng.random(11) < 0.3, np.nan, rng.normal(size=11)),
        "mixed": pd.Series([1, "two", None, 4, "five", 6, 7, None, "nine", 10, 11], dtype=object),
        "when": pd.date_range("2026-01-01", periods=11, freq="h"),
    })
    rows = np.array([True, False, True, True, False, False, False, False, True, False, True])

    write_parquet(frame, tmp_path / "blocks.parquet", rows=rows)
    write_parquet(frame[rows].reset_index(drop=True), tmp_path / "cut.parquet")

    blocks, cut = pq.read_table(tmp_path / "blocks.parquet"), pq.read_table(tmp_path / "cut.parquet")
    assert blocks.equals(cut) and blocks.schema.equals(cut.schema)
    assert pq.ParquetFile(tmp_path / "blocks.parquet").num_row_groups == 2  # the second block kept no row
    assert blocks.column("id").to_pylist() == ["r0", "r2", "r3", "r8", "r10"]


def test_no_row_to_write_leaves_a_file_of_the_columns(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.0, 2.0]})

    write_parquet(frame, tmp_path / "none.parquet", rows=np.zeros(2, dtype=bool))

    table = pq.read_table(tmp_path / "none.parquet")
    assert table.num_rows == 0 and table.column_names == ["id", "x"]
    assert table.schema.field("x").type == pa.float64()
