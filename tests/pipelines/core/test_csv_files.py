"""The CSV reader gives exactly the frame ``pd.read_csv(dtype=str)`` gives, blank lines left out."""
from __future__ import annotations

import csv
import gzip
import io
import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.csv_files import MISSING_CELLS, _check_csv_records, _read_with_pandas, read_csv
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.tables import read_file

CELLS = st.one_of(
    st.sampled_from(["", " ", "1", "-2.5", "NA", "null", "None", "n/a", "#N/A", "nan", "x,y", 'say "hi"', "a\nb", "c\r\nd"]),
    st.text(alphabet=string.printable + "éß漢\u2028", max_size=10),
)
NAMES = st.one_of(st.sampled_from(["label", "x", "y", "z", "", "a b", "é"]), st.text(max_size=6))


@st.composite
def csv_files(draw):
    """Well-formed CSV text: unique header names, records of the header's width, some blank lines."""
    header = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    records = draw(st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)), max_size=10))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
    writer.writerow(header)
    for record in records:
        if draw(st.integers(0, 5)) == 0:
            buffer.write(terminator)  # a blank line: not a record
        writer.writerow(record)
    return buffer.getvalue()


def pandas_read(path, compression=None) -> pd.DataFrame:
    """What the reader must equal: the records' check, then pandas' own parser (the reader before pyarrow's)."""
    _, blank = _check_csv_records(path, compression)
    return _read_with_pandas(path, compression, ",", False, blank)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_files(), gzipped=st.booleans())
def test_cells_read_as_pandas_reads_them(tmp_path_factory, text, gzipped):
    folder = tmp_path_factory.mktemp("csv")
    if gzipped:
        path = folder / "batch.csv.gz"
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path = folder / "batch.csv"
        path.write_bytes(text.encode("utf-8"))
    compression = "gzip" if gzipped else None
    try:
        expected = pandas_read(path, compression)
    except (InputError, ValueError, pd.errors.ParserError):  # read_file turns each into an InputError
        with pytest.raises(InputError):
            read_file(path)
        return
    pd.testing.assert_frame_equal(read_file(path), expected)


def test_the_missing_cells_are_pandas_defaults(tmp_path):
    from pandas._libs.parsers import STR_NA_VALUES

    assert set(MISSING_CELLS) == set(STR_NA_VALUES)
    path = tmp_path / "missing.csv"
    path.write_text("value,quoted\n" + "".join(f'{cell},"{cell}"\n' for cell in MISSING_CELLS) + "n.a.,-\n")
    frame = read_csv(path, compression=None)
    assert frame.iloc[:-1].isna().all().all()
    assert frame.iloc[-1].tolist() == ["n.a.", "-"]
    pd.testing.assert_frame_equal(frame, pandas_read(path))


def test_a_header_pyarrow_would_read_otherwise_goes_to_pandas(tmp_path):
    path = tmp_path / "unnamed.csv"
    path.write_text('x,,"line\nbreak"\n1,2,3\n\n4,5,6\n')
    frame = read_csv(path, compression=None)
    assert list(frame.columns) == ["x", "Unnamed: 1", "line\nbreak"]
    assert frame.to_numpy().tolist() == [["1", "2", "3"], ["4", "5", "6"]]


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefflabel,x\na,1\n".encode("utf-8"))
    assert list(read_csv(path, compression=None).columns) == ["label", "x"]


def test_line_breaks_inside_quotes_across_read_blocks(tmp_path):
    # pyarrow reads a large file in blocks of about 1 MiB; a block boundary
    # inside a quoted line break must not split the record.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "label": rng.choice(["cat", "dog"], 60_000),
        "note": [f"line {i}\nand\r\nmore, \"quoted\"" if i % 3 else "" for i in range(60_000)],
        "x": rng.normal(size=60_000).round(6).astype(str),
    })
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    assert path.stat().st_size > 2 * 2**20
    read = read_csv(path, compression=None)
    pd.testing.assert_frame_equal(read, pandas_read(path))
    assert read.loc[1, "note"] == 'line 1\nand\r\nmore, "quoted"' and pd.isna(read.loc[0, "note"])


def test_a_record_longer_than_a_read_block_is_read_whole(tmp_path):
    path = tmp_path / "huge.csv"
    cell = "x" * (3 * 2**20)
    path.write_text(f"label,note\na,{cell}\nb,short\n")
    frame = read_csv(path, compression=None)
    assert frame["note"].tolist() == [cell, "short"] and frame["label"].tolist() == ["a", "b"]


# A spreadsheet's export where the comma is the decimal mark (fields separated by ';').
@pytest.mark.parametrize("cell, read", [
    ("16,1", "16.1"), ("-0,5", "-0.5"), ("+,5", "+.5"), ("5,", "5."), ("2,5e-3", "2.5e-3"), (" 3,0 ", " 3.0 "),
    ("1.234,5", "1234.5"), ("12.345.678,9", "12345678.9"), ("1.234", "1234"),  # a point groups thousands
    ("7", "7"), ("1.5", "1.5"), ("12.3456", "12.3456"), ("0.125", "0.125"),  # no grouping: read as written
    ("1,2,3", "1,2,3"), ("1.234.5", "1.234.5"), ("1,234.5", "1,234.5"), ("12.34,5", "12.34,5"), ("a,5", "a,5"),
    ("٣,٥", "٣,٥"), ("NA", None), ("", None),
])
def test_a_decimal_comma_file_has_its_numbers_read_with_a_point(tmp_path, cell, read):
    path = tmp_path / "eu.csv"
    path.write_text(f'label;x;y\na;"{cell}";1,5\nb;0,5;2\n', encoding="utf-8")
    frame = read_csv(path, compression=None, separator=";", decimal=",")
    assert frame["y"].tolist() == ["1.5", "2"] and frame["label"].tolist() == ["a", "b"]
    assert (pd.isna(frame.loc[0, "x"]) if read is None else frame.loc[0, "x"] == read)
    # pandas' parser, for a header pyarrow would read otherwise (an empty name), rewrites the same cells.
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text(f'label;x;y;\na;"{cell}";1,5;\nb;0,5;2;\n', encoding="utf-8")
    pd.testing.assert_frame_equal(read_csv(unnamed, compression=None, separator=";", decimal=",").iloc[:, :3], frame)
    # Without the option every cell is the text it was; pandas' native reading (GX's) gets the option too.
    assert read_csv(path, compression=None, separator=";")["y"].tolist() == ["1,5", "2"]
    assert read_csv(path, compression=None, separator=";", decimal=",", native=True)["y"].tolist() == [1.5, 2.0]


@pytest.mark.parametrize("column, read", [
    (["1.234", "2,5"], ["1234", "2.5"]),  # a decimal comma in the column: its point groups thousands
    (["1.234", "999"], ["1.234", "999"]),  # none: as written
    (["6.745", "16.17"], ["6.745", "16.17"]),  # pandas' text column of numbers, written with a point
])
def test_a_point_groups_thousands_only_in_a_column_that_writes_a_decimal_comma(tmp_path, column, read):
    path = tmp_path / "eu.csv"
    pd.DataFrame({"label": "a", "x": column}).to_csv(path, sep=";", index=False)
    assert read_csv(path, compression=None, separator=";", decimal=",")["x"].tolist() == read


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**12, 10**12)),
                       min_size=1, max_size=20))
def test_numbers_pandas_writes_with_a_decimal_comma_read_back_exactly(tmp_path_factory, values):
    from poisonguard.pipelines.core.tables import missing_mask, numbers

    path = tmp_path_factory.mktemp("eu") / "eu.csv"
    pd.DataFrame({"label": "a", "x": pd.Series(values, dtype=float)}).to_csv(path, sep=";", decimal=",", index=False)
    frame = read_file(path, separator=";", decimal=",")
    np.testing.assert_array_equal(numbers(frame["x"], missing_mask(frame["x"])), np.array(values, dtype=float))
