"""A batch's numeric columns read from a file while the detectors run (core.spill): the same values, the same outputs."""
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from poisonguard.pipelines.core import spill, tables
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.outputs import publish
from poisonguard.pipelines.runner import execute
from poisonguard.pipelines.store.quarantine_store import QuarantineStore
from tests.tiny_data import BROKEN_NUMBER, write_tiny_dataset


def _mixed_frame(n_rows: int = 300) -> pd.DataFrame:
    positions = np.arange(n_rows)
    return pd.DataFrame({
        "number": np.where(positions % 7 == 0, np.nan, positions / 3),
        "count": positions,
        "flag": positions % 2 == 0,
        "when": pd.date_range("2024-01-01", periods=n_rows, freq="h").to_numpy(),
        "zoned": pd.date_range("2024-01-01", periods=n_rows, freq="h", tz="UTC"),
        "text": pd.array([f"row {i}" for i in positions], dtype="str"),
        "cell": np.array([{"a": 1} if i % 2 else "x" for i in positions], dtype=object),
        "level": pd.Categorical(["a", "b", "c"] * (n_rows // 3)),
        "maybe": pd.array([1, None, 3] * (n_rows // 3), dtype="Int64"),
    }, index=pd.RangeIndex(10, 10 + n_rows))


def test_spilled_frames_equal_the_originals_and_share_what_they_shared(tmp_path):
    raw = _mixed_frame()
    typed = raw.copy(deep=False)  # shares every column, as a typed view shares the columns typing left alone
    typed["cell"] = typed["cell"].astype(str)
    typed["doubled"] = raw["number"] * 2
    (new_raw, new_typed), columns = spill.spill_numbers([raw, typed], tmp_path, min_bytes=0)
    pd.testing.assert_frame_equal(new_raw, raw)
    pd.testing.assert_frame_equal(new_typed, typed)
    assert list(tmp_path.iterdir()) == []  # the file was unlinked when created
    for name in ("number", "count", "flag", "when"):
        values = new_raw[name].to_numpy()
        assert not values.flags.writeable and not np.shares_memory(values, raw[name].to_numpy())
        assert np.shares_memory(values, new_typed[name].to_numpy())  # written once, shared as before
    assert not np.shares_memory(new_typed["doubled"].to_numpy(), new_raw["number"].to_numpy())
    # Columns that are not one plain array of numbers stay where they were (an object column's too).
    assert np.shares_memory(new_raw["cell"].to_numpy(), raw["cell"].to_numpy())
    assert new_raw["cell"].dtype == object and new_typed["cell"].dtype == typed["cell"].dtype
    # Four numeric columns of 300 rows and 300 flags, each rounded up to 64 bytes.
    assert columns.n_bytes == 4 * 2432 + 320
    columns.release()
    pd.testing.assert_frame_equal(new_raw, raw)  # read again from the file after the pages went back


def test_a_small_batch_or_a_folder_without_room_stays_in_memory(tmp_path):
    frame = _mixed_frame()
    assert spill.spill_numbers([frame], tmp_path) is None  # below SPILL_MIN_BYTES
    assert spill.spill_numbers([frame], tmp_path / "missing", min_bytes=0) is None
    assert spill.spill_numbers([frame[["text", "level"]]], tmp_path, min_bytes=0) is None  # nothing to spill
    assert spill.spill_numbers([frame.iloc[:0]], tmp_path, min_bytes=0) is None


@pytest.mark.parametrize("every", [1, 3, 10**9])
def test_rows_taken_a_column_at_a_time_are_the_masked_frame(every):
    frame = _mixed_frame()
    rows = np.arange(len(frame)) % every == 0
    released = []
    taken = spill.take_rows(frame, rows, lambda: released.append(True))
    pd.testing.assert_frame_equal(taken, frame[rows])
    assert len(released) == 4  # after each plain column


def test_a_loaded_batch_spills_in_place_and_gives_its_text_back(tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 0)
    tiny = write_tiny_dataset(tmp_path / "data")
    settings = make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"])
    from poisonguard.pipelines.core.inputs import load_inputs
    inputs = load_inputs(settings)
    as_read, typed = inputs.batch.as_read(), inputs.batch_typed.typed.copy()
    quarantined = inputs.batch.row_ids.isin([BROKEN_NUMBER]).to_numpy()
    assert inputs.batch.number_text  # the CSV's numbers are held as numbers
    assert inputs.batch.spill_numbers(inputs.batch_typed, tmp_path)
    assert inputs.batch.spilled is not None and not inputs.batch.raw["x"].to_numpy().flags.writeable
    pd.testing.assert_frame_equal(inputs.batch.as_read(), as_read)
    pd.testing.assert_frame_equal(inputs.batch.as_read(quarantined), as_read[quarantined])
    pd.testing.assert_frame_equal(inputs.batch_typed.typed, typed)
    assert inputs.batch.as_read(quarantined)["x"].tolist() == ["oops"]


def _run(tiny, out, monkeypatch, min_bytes):
    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", min_bytes)
    spilled = []
    real = tables.spill_numbers
    monkeypatch.setattr(tables, "spill_numbers", lambda *a, **k: spilled.append(real(*a, **k)) or spilled[-1])
    settings = make_settings([tiny["batch"]], out=out, config_path=tiny["config"])
    summary = execute(settings)
    with QuarantineStore(settings.store_url) as store:
        entries = sorted(store.list_quarantine(run_id=summary.run_id), key=lambda e: e["row_id"])
    kept = [{k: e[k] for k in ("row_id", "row", "checks", "score", "p_value", "findings", "evidence", "batch_digest")}
            for e in entries]
    return summary, kept, spilled[0] is not None


@pytest.mark.parametrize("with_reference", [True, False])
def test_a_spilled_run_writes_and_stores_what_a_run_in_memory_does(tmp_path, monkeypatch, with_reference):
    tiny = write_tiny_dataset(tmp_path / "data")
    if not with_reference:
        config = tiny["config"].read_text().splitlines()
        tiny["config"].write_text("\n".join(line for line in config if not line.startswith("reference")) + "\n")
    in_memory, stored, spilled = _run(tiny, tmp_path / "in-memory", monkeypatch, 10**18)
    assert not spilled
    on_disk, stored_on_disk, spilled = _run(tiny, tmp_path / "spilled", monkeypatch, 0)
    assert spilled
    for name in (publish.CLEAN_FILE, publish.QUARANTINE_FILE):
        assert pq.read_table(on_disk.out / name).equals(pq.read_table(in_memory.out / name)), name
    assert stored_on_disk == stored and len(stored) == in_memory.quarantined > 0
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".poisonguard-spill")]
