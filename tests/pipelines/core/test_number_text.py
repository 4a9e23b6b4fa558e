"""Numeric text columns held as their numbers: the text comes back exactly, and only the odd cells are kept."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core import number_text, tables
from poisonguard.pipelines.core.inputs import load_inputs
from poisonguard.pipelines.core.number_text import hold_as_numbers, text_of
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.core.tables import LoadedTable, hold_text_as_numbers, missing_mask, numbers, read_file
from tests.tiny_data import FAR_AWAY, write_tiny_dataset

ARROW_TEXT = pd.StringDtype("pyarrow", na_value=np.nan)
# Cells Arrow does not write as read (kept), and cells it does (given back from the number).
ODD = ["1.50", "1e-05", "123456789012.0", " 2", "+3", "n/a?", "inf", "NaN", "1e400", "0x10", ".5", "", " "]
PLAIN = ["0.1", "-0", "42", "1e+20", "7.25", "-3.0000000000000004", None]


def as_text(cells) -> pd.Series:
    return pd.Series(cells, dtype=ARROW_TEXT)


def as_numbers(text: pd.Series) -> pd.Series:
    """The column as the run types it: a number per cell, NaN where empty, broken or infinite."""
    values = numbers(text, missing_mask(text))
    return pd.Series(np.where(np.isfinite(values), values, np.nan), index=text.index)


@pytest.mark.parametrize("block_rows", [3, number_text.BLOCK_ROWS])
def test_only_cells_arrow_writes_otherwise_are_kept_and_all_come_back(monkeypatch, block_rows):
    monkeypatch.setattr(number_text, "BLOCK_ROWS", block_rows)
    text = as_text(ODD + PLAIN * 10)
    held = hold_as_numbers(text, as_numbers(text))
    assert held.positions.tolist() == list(range(len(ODD)))
    assert held.texts.to_pylist() == ODD
    pd.testing.assert_series_equal(text_of(as_numbers(text), held), text)
    rows = np.array([0, 5, 13, 14, 20, len(text) - 1])
    pd.testing.assert_series_equal(text_of(as_numbers(text), held, rows), text.iloc[rows])
    assert text_of(as_numbers(text), held, np.array([], dtype=int)).empty


def test_whole_numbers_written_with_a_point_are_not_kept():
    text = as_text(["1.0", "2.0", "-0.0", "3.5", None] * 4)
    held = hold_as_numbers(text, as_numbers(text))
    assert held.whole_suffix == ".0" and held.positions.size == 0
    pd.testing.assert_series_equal(text_of(as_numbers(text), held), text)


def test_a_column_mostly_written_otherwise_stays_text():
    text = as_text(["1.50", "2.50", "0.1", "0.2"])
    assert hold_as_numbers(text, as_numbers(text)) is None
    assert hold_as_numbers(pd.Series(["0.1"], dtype=object), pd.Series([0.1])) is None  # not Arrow text


CELLS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda x: f"{x:.2f}"),
    st.integers(-10**20, 10**20).map(str),
    st.integers(-1000, 1000).map(lambda n: f"{n}.0"),
    st.sampled_from(ODD),
    st.none(),
)


@settings(max_examples=200, deadline=None)
@given(cells=st.lists(CELLS, min_size=1, max_size=40), picked=st.lists(st.booleans(), min_size=40, max_size=40))
def test_any_column_comes_back_exactly_whole_or_in_part(cells, picked):
    text = as_text(cells)
    values = as_numbers(text)
    held = hold_as_numbers(text, values, max_kept_share=1.0)  # held however odd
    pd.testing.assert_series_equal(text_of(values, held), text)
    rows = np.flatnonzero(np.array(picked[: len(cells)]))
    pd.testing.assert_series_equal(text_of(values, held, rows), text.iloc[rows])


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_dataset(tmp_path / "data")


def test_a_loaded_batch_holds_its_numeric_text_as_numbers_and_gives_it_back(tiny, tmp_path):
    text = tiny["batch"].read_text().splitlines()
    header = text[0].split(",")
    column = header.index("x")
    odd = {FAR_AWAY: "6.0e1"}  # the same number, not as Arrow writes it
    lines = [text[0]]
    for line in text[1:]:
        cells = line.split(",")
        cells[column] = odd.get(cells[0], cells[column])
        lines.append(",".join(cells))
    tiny["batch"].write_text("\n".join(lines) + "\n")
    inputs = load_inputs(make_settings([tiny["batch"]], out=tmp_path / "out", config_path=tiny["config"]))
    batch = inputs.batch
    assert set(batch.number_text) == {c for c, kind in inputs.kinds.items() if kind == "numeric"} != set()
    assert batch.raw["x"].dtype.kind == "f"  # the numbers the checks read, not a second copy as text
    as_read = read_file(tiny["batch"])
    pd.testing.assert_frame_equal(batch.as_read(), as_read)
    far = (batch.raw["id"] == FAR_AWAY).to_numpy()
    assert batch.as_read(far)["x"].tolist() == ["6.0e1"]
    for name in as_read.columns:
        assert batch.has_values(name) == bool((~missing_mask(as_read[name])).any()), name


@pytest.mark.parametrize(("cells", "has_values"), [
    ([None, " ", None, "n/a?"], True),  # a broken cell is a value, though no number
    ([None, " ", "", None], False),  # blanks are kept, and are empty
    ([None, "1.5", None, None], True),
])
def test_a_held_column_has_values_where_its_text_has(cells, has_values):
    text = as_text(cells)
    table = LoadedTable(raw=pd.DataFrame({"id": ["a", "b", "c", "d"], "x": text}), id_column="id", id_generated=False,
                        files=[], source_digest=pd.Series(["f"] * 4))
    held = hold_text_as_numbers(table, pd.DataFrame({"x": as_numbers(text)}), ["x"], max_kept_share=1.0)
    assert set(held.number_text) == {"x"} and held.raw["x"].dtype.kind == "f"
    assert held.has_values("x") is has_values is bool((~missing_mask(held.column_as_read("x"))).any())


def _mixed_numbers(folder):
    """A batch and reference of numeric columns the run holds at different times, or not at all."""
    rng = np.random.default_rng(4)

    def rows(n, first_step):
        return pd.DataFrame({
            "label": rng.choice(["a", "b"], n),
            "x": rng.normal(size=n).round(6),  # held as it is typed
            "grade": rng.integers(1, 6, n),  # whole numbers the config names: held as typed
            "count": rng.integers(0, 9, n),  # whole numbers, repeated: held once they are known not to number rows
            "step": np.arange(first_step, first_step + n),  # numbers the rows: kept as text, as read
            "fixed": [f"{value:.1f}0" for value in rng.uniform(1, 2, n)],  # "1.50": Arrow writes 1.5, so kept as text
        })

    batch = rows(120, 1)
    batch.insert(0, "id", [f"b{i}" for i in range(120)])
    rows(60, 121).to_csv(folder / "reference.csv", index=False)
    batch.to_csv(folder / "batch.csv", index=False)
    (folder / "mixed.toml").write_text(
        '[dataset]\nname = "mixed"\nlabel = "label"\nid = "id"\nreference = "reference.csv"\nnumeric = ["grade"]\n',
        encoding="utf-8",
    )
    return make_settings([folder / "batch.csv"], out=folder / "out", config_path=folder / "mixed.toml")


def test_each_numeric_column_lets_go_of_its_text_as_it_is_typed(monkeypatch, tmp_path):
    events = []
    original_numbers, original_hold = tables.numbers, tables.hold_as_numbers
    monkeypatch.setattr(tables, "numbers", lambda series, missing: events.append(("typed", series.name))
                        or original_numbers(series, missing))
    monkeypatch.setattr(tables, "hold_as_numbers", lambda text, numbers, *rest: events.append(("held", text.name))
                        or original_hold(text, numbers, *rest))
    inputs = load_inputs(_mixed_numbers(tmp_path))
    batch_events = events[events.index(("held", "x")) - 1:]  # the reference is typed first, and not held
    # Each column is held before the next is typed; "count" only once "step" is known to number the rows.
    assert batch_events[:4] == [("typed", "x"), ("held", "x"), ("typed", "grade"), ("held", "grade")]
    assert ("held", "count") in batch_events[batch_events.index(("typed", "fixed")):]
    assert inputs.row_number_columns == ["step"]
    assert set(inputs.batch.number_text) == {"x", "grade", "count"}
    assert inputs.batch.raw["step"].dtype == ARROW_TEXT and inputs.batch.raw["fixed"].dtype == ARROW_TEXT
    pd.testing.assert_frame_equal(inputs.batch.as_read(), read_file(tmp_path / "batch.csv"))


def test_holding_each_column_as_it_is_typed_holds_what_holding_them_all_after_did(tmp_path):
    settings = _mixed_numbers(tmp_path)
    inputs = load_inputs(settings)
    table = tables.load_table(settings.batches, label="label", id_column="id", role="batch")
    kinds = {**inputs.kinds, **dict.fromkeys(inputs.row_number_columns, "numeric"), "label": "categorical"}
    typed = tables.coerce_types(table.raw, kinds, id_column="id", source="batch").typed
    after = hold_text_as_numbers(table, typed, [c for c, kind in inputs.kinds.items() if kind == "numeric"])
    pd.testing.assert_frame_equal(inputs.batch.raw, after.raw)
    pd.testing.assert_frame_equal(inputs.batch_typed.typed, typed)
    assert inputs.batch.number_text.keys() == after.number_text.keys()
    for column, held in after.number_text.items():
        np.testing.assert_array_equal(inputs.batch.number_text[column].positions, held.positions)
        assert inputs.batch.number_text[column].texts.equals(held.texts)
