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
