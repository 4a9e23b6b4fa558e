import gzip
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.tables import (
    TYPE_CHECK,
    _is_missing,
    coerce_types,
    content_row_ids,
    file_format,
    infer_kinds,
    load_table,
    missing_mask,
    read_file,
    row_number_columns,
)
from poisonguard.pipelines.core import tables
from poisonguard.pipelines.core.errors import InputError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_file_format_by_extension(tmp_path):
    assert file_format(tmp_path / "a.csv") == "csv"
    assert file_format(tmp_path / "a.CSV.gz") == "csv"
    assert file_format(tmp_path / "a.parquet") == "parquet"
    assert file_format(tmp_path / "a.jsonl.gz") == "jsonl"
    with pytest.raises(InputError, match=r"a\.xlsx: unknown file type"):
        file_format(tmp_path / "a.xlsx")


def test_csv_keeps_text_and_ids(tmp_path):
    path = write(tmp_path / "b.csv", "id,x,c,y\n1,1.50,a,p\n2,n/a?,b,q\n3,3,,p\n")
    table = load_table([path], label="y", id_column="id")
    assert table.id_column == "id" and not table.id_generated
    assert table.raw["x"].tolist() == ["1.50", "n/a?", "3"]
    assert table.row_ids.tolist() == ["1", "2", "3"]
    assert table.files[0]["rows"] == 3 and len(table.files[0]["digest"]) == 64


def test_three_formats_give_the_same_rows(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.0], "y": ["p", "q"]})
    frame.to_csv(tmp_path / "t.csv.gz", index=False, compression="gzip")
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.csv.gz", "t.parquet", "t.jsonl"):
        table = load_table([tmp_path / name], label="y", id_column="id")
        typed = coerce_types(table.raw, {"x": "numeric", "y": "categorical"}, id_column="id", source=name)
        assert typed.typed["x"].tolist() == [1.5, 2.0], name
        assert typed.typed["y"].tolist() == ["p", "q"], name


def test_several_files_stack_and_remember_their_source(tmp_path):
    first = write(tmp_path / "1.csv", "id,y\na,p\nb,q\n")
    second = write(tmp_path / "2.csv", "y,id\nr,c\n")
    table = load_table([first, second], label="y", id_column="id")
    assert table.row_ids.tolist() == ["a", "b", "c"]
    assert table.source_digest.tolist() == [table.files[0]["digest"]] * 2 + [table.files[1]["digest"]]


@pytest.mark.parametrize(
    "text, label, id_column, message",
    [
        ("id,y\n1,a\n1,b\n", "y", "id", r"duplicate id '1' in column 'id': .*b\.csv row 1 \(line 2\) and .*row 2"),
        ("id,y\n1,a\n", "target", "id", r"b\.csv: no label column 'target'; columns are 'id', 'y'"),
        ("id,y\n1,a\n", "y", "key", r"no id column 'key'"),
        ("id,y\n", "y", "id", r"the batch has no rows"),
        ("", "y", "id", r"b\.csv: the file is empty"),
        ("id,y\n1,a\n,b\n", "y", "id", r"b\.csv row 2 \(line 3\): id column 'id' is empty"),
        # A repeated header is named as such, not renamed to 'y.1' and reported as a new column.
        ("id,y,x,y\n1,a,2,b\n", "y", "id", r"b\.csv: column 'y' appears more than once in the header"),
        # Short and long records are refused alike, by line.
        ("id,y,x\n1,a,2\n2,b\n", "y", "id", r"b\.csv line 3: 2 fields where the header has 3"),
        ("id,y,x\n1,a,2\n2,b,3,4\n", "y", "id", r"b\.csv line 3: 4 fields where the header has 3"),
    ],
)
def test_bad_input_names_file_column_or_row(tmp_path, text, label, id_column, message):
    path = write(tmp_path / "b.csv", text)
    with pytest.raises(InputError, match=message):
        load_table([path], label=label, id_column=id_column)


def test_blank_lines_and_quoted_separators_are_not_ragged_records(tmp_path):
    path = write(tmp_path / "b.csv", 'id,y,x\n1,a,2\n\n2,"b,\nc",3\n')
    table = load_table([path], label="y", id_column="id")
    assert table.raw.values.tolist() == [["1", "a", "2"], ["2", "b,\nc", "3"]]
    # One column: a record holding one empty value is a row (pandas alone would drop it as blank).
    single = write(tmp_path / "single.csv", 'y\na\n""\n\nb\n')
    assert load_table([single], label="y", id_column=None).raw["y"].tolist()[:1] == ["a"]
    assert len(load_table([single], label="y", id_column=None).raw) == 3


def test_a_huge_column_name_is_cut_in_messages(tmp_path):
    name = "c" * 100_000
    path = write(tmp_path / "b.csv", f"id,{name}\n1,a\n")
    with pytest.raises(InputError) as raised:
        load_table([path], label="y", id_column="id")
    assert len(str(raised.value)) < 400 and "(+99" in str(raised.value)


@pytest.mark.parametrize("column", ["poisonguard_checks", "poisonguard_original", "poisonguard_status"])
def test_a_column_named_like_poisonguards_own_is_refused_before_it_is_overwritten(tmp_path, column):
    # A quarantine.parquet checked again would have its user's column of this name replaced by the findings.
    path = write(tmp_path / "b.csv", f"id,x,{column},y\n1,0.5,kept,a\n")
    with pytest.raises(InputError) as raised:
        load_table([path], label="y", id_column="id")
    assert str(path) in str(raised.value) and repr(column) in str(raised.value) and "rename it" in str(raised.value)


JSON_ROWS = "".join(json.dumps({"id": i, "x": i / 10, "y": "ab"[i % 2]}) + "\n" for i in range(6))


@pytest.mark.parametrize("line, said", [
    ("7", "line 4 is a number ('7')"),
    ("[1, 2]", "line 4 is an array ('[1, 2]')"),
    ("null", "line 4 is null"),
    ('{"id": 9, "x": 1.', "line 4 is not valid JSON"),
])
def test_a_json_lines_file_names_its_first_line_that_is_not_an_object(tmp_path, line, said):
    lines = JSON_ROWS.splitlines(keepends=True)
    path = write(tmp_path / "b.jsonl", "".join([*lines[:3], line + "\n", *lines[3:]]))
    with pytest.raises(InputError) as raised:
        load_table([path], label="y", id_column="id")
    assert str(raised.value).startswith(f"{path}: {said}"), str(raised.value)


@pytest.mark.parametrize("name", ["b.csv", "b.jsonl", "b.csv.gz"])
def test_a_file_that_is_not_utf8_names_the_line_and_what_to_do(tmp_path, name):
    text = "id,x,y\n1,0.5,a\n2,0.7,café\n" if ".csv" in name else '{"id": 1, "x": 0.5, "y": "a"}\n{"id": 2, "x": 0.7, "y": "café"}\n'
    path = tmp_path / name
    data = text.encode("windows-1252")  # what Excel writes
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(InputError) as raised:
        load_table([path], label="y", id_column="id")
    line = 3 if ".csv" in name else 2
    assert str(raised.value).startswith(f"{path}: line {line} is not UTF-8 text (byte 0xe9"), str(raised.value)
    data = text.encode("utf-16")
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(InputError, match="the file is UTF-16 text"):
        load_table([path], label="y", id_column="id")


def test_a_json_lines_file_may_start_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text("\ufeff" + JSON_ROWS, encoding="utf-8")
    assert load_table([path], label="y", id_column="id").raw["x"].tolist() == [i / 10 for i in range(6)]


def nested(depth):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_value_nested_past_the_limit_is_refused_naming_its_row_and_column(tmp_path):
    rows = [{"id": i, "x": 0.5, "meta": nested(3), "y": "a"} for i in range(4)]
    rows[2]["meta"] = nested(tables.MAX_NESTING + 1)
    path = write(tmp_path / "b.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(InputError) as raised:
        load_table([path], label="y", id_column="id")
    assert f"{path}: row 3, column 'meta'" in str(raised.value)
    rows[2]["meta"] = {"a": nested(tables.MAX_NESTING - 1)}  # an object holding lists: as deep as allowed
    write(path, "".join(json.dumps(row) + "\n" for row in rows))
    assert len(load_table([path], label="y", id_column="id").raw) == 4


def test_infinite_numbers_are_broken_cells_not_a_crash():
    values = ["inf", "-Infinity", "1e400", "2.5", "-1e-400", "1", "2", "3"]
    frame = pd.DataFrame({"id": [str(i) for i in range(1, 9)], "x": values})
    typed = coerce_types(frame, {"x": "numeric"}, id_column="id", source="b.csv")
    assert typed.findings["reason"].tolist() == [
        "x = 'inf' is not a finite number",
        "x = '-Infinity' is not a finite number",
        "x = '1e400' is not a finite number",
    ]
    np.testing.assert_array_equal(typed.typed["x"].to_numpy(), [np.nan, np.nan, np.nan, 2.5, -0.0, 1, 2, 3])
    assert typed.batch_failures == [] and typed.broken_cells == [("1", "x"), ("2", "x"), ("3", "x")]
    assert typed.parsed_shares == {"x": 5 / 8}  # what the batch-level schema check reads the column's kind from


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        load_table([tmp_path / "nope.csv"], label="y", id_column=None)
    write(tmp_path / "bad.parquet", "not parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: cannot read as parquet"):
        load_table([tmp_path / "bad.parquet"], label="y", id_column=None)
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(InputError, match=r"bad\.csv\.gz: cannot read as csv"):
        load_table([tmp_path / "bad.csv.gz"], label="y", id_column=None)


def test_a_file_given_twice_or_a_copy_of_it_is_refused(tmp_path):
    # Without --id its rows got content ids told apart by their repeat: every row twice, as rows of their own.
    first = write(tmp_path / "a.csv", "x,y\n1,a\n2,b\n")
    copy = write(tmp_path / "copy.csv", "x,y\n1,a\n2,b\n")
    for files in ([first, first], [first, copy]):
        with pytest.raises(InputError, match=f"{files[1]}: the same content as {first}; give each batch file once"):
            load_table(files, label="y", id_column=None, role="batch")


def test_mismatched_columns_across_files(tmp_path):
    first = write(tmp_path / "1.csv", "id,y,x\na,p,1\n")
    second = write(tmp_path / "2.csv", "id,y\nb,q\n")
    with pytest.raises(InputError, match=r"2\.csv: columns differ from .*1\.csv \(missing: 'x'; extra: none\)"):
        load_table([first, second], label="y", id_column="id")


def test_content_ids_are_stable_and_unique():
    frame = pd.DataFrame({"x": ["1", "1", "2"], "y": ["a", "a", "b"]})
    ids = content_row_ids(frame)
    assert ids[0] == ids[1].split("~")[0] and ids[1].endswith("~2")
    assert ids.is_unique and len(ids[2]) == 16
    # Column order does not change a row's id.
    assert content_row_ids(frame[["y", "x"]]).tolist() == ids.tolist()


def test_generated_id_column_avoids_an_existing_row_id(tmp_path):
    path = write(tmp_path / "b.csv", "row_id,y\n1,a\n")
    table = load_table([path], label="y", id_column=None)
    assert table.id_column == "poisonguard_row_id" and table.id_generated


def test_coercion_reports_broken_cells_and_whole_column_failures():
    frame = pd.DataFrame({"id": ["1", "2", "3", "4"], "x": ["1", "x", "3", None], "z": ["a", "b", "c", "d"]})
    typed = coerce_types(frame, {"x": "numeric", "z": "numeric"}, id_column="id", source="b.csv")
    assert typed.findings[["row_id", "check", "reason"]].values.tolist()[:1] == [
        ["2", TYPE_CHECK, "x = 'x' is not a number"]
    ]
    np.testing.assert_array_equal(typed.typed["x"].to_numpy(), [1.0, np.nan, 3.0, np.nan])
    assert len(typed.findings) == 1 + 4  # one broken cell in x, every cell of z
    assert len(typed.batch_failures) == 1
    assert "column 'z' should be numeric but 4 of 4 values are not numbers" in typed.batch_failures[0]


def test_whole_numbers_stay_integers():
    frame = pd.DataFrame({"id": ["1", "2"], "n": ["2007", "2008"]})
    typed = coerce_types(frame, {"n": "numeric"}, id_column="id", source="b.csv")
    assert str(typed.typed["n"].dtype) == "int64"


def test_infer_kinds_tolerates_a_few_broken_cells():
    frame = pd.DataFrame({"x": [str(i) for i in range(40)] + ["oops"], "c": ["a"] * 41})
    assert infer_kinds(frame, ["x", "c"]) == {"x": "numeric", "c": "categorical"}
    assert infer_kinds(frame, ["x"], categorical=["x"]) == {"x": "categorical"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    numbers=st.integers(0, 60), texts=st.integers(0, 8), block=st.integers(1, 9), seed=st.integers(0, 2**16),
    dtype=st.sampled_from([object, "string[pyarrow]"]), repeats=st.integers(1, 12),
    threshold=st.sampled_from([tables.NUMERIC_INFERENCE_FRACTION, 0.5]),
)
def test_kinds_parsed_in_blocks_are_the_whole_columns(monkeypatch, numbers, texts, block, seed, dtype, repeats,
                                                      threshold):
    # Around either threshold, text anywhere, values repeated or not (each
    # distinct text parsed once): stopping early never changes the answer.
    cells = ([str(i % 7) for i in range(numbers)] + [f"t{i % 3}" for i in range(texts)] or ["x"]) * repeats
    frame = pd.DataFrame({"c": pd.Series(np.random.default_rng(seed).permutation(cells), dtype=dtype)})
    whole = pd.to_numeric(frame["c"], errors="coerce").notna().mean() >= threshold
    monkeypatch.setattr(tables, "KIND_BLOCK", block)
    assert infer_kinds(frame, ["c"], threshold=threshold) == {"c": "numeric" if whole else "categorical"}


cell = st.one_of(
    st.none(),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(cell, cell), min_size=1, max_size=12), fmt=st.sampled_from(["csv", "jsonl", "parquet"]))
def test_any_table_round_trips_with_unique_ids_and_no_lost_rows(tmp_path, rows, fmt):
    frame = pd.DataFrame(rows, columns=["x", "label"])
    path = tmp_path / f"h.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    table = load_table([path], label="label", id_column=None)
    assert len(table.raw) == len(frame)
    assert table.row_ids.is_unique
    kinds = infer_kinds(table.raw, ["x"])
    typed = coerce_types(table.raw, {**kinds, "label": "categorical"}, id_column=table.id_column, source=str(path))
    # Every broken cell is reported against a real row, at most once per column.
    assert set(typed.findings["row_id"]) <= set(table.row_ids)
    assert typed.findings["row_id"].is_unique
    assert len(typed.typed) == len(frame)


@settings(max_examples=40, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=5).filter(lambda s: s.strip() and "\n" not in s and "\r" not in s), min_size=2, max_size=10))
def test_duplicate_ids_are_always_refused(ids):
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    frame = pd.DataFrame({"id": ids + [ids[0]], "y": ["a"] * (len(ids) + 1)})
    path = folder / "d.jsonl"
    frame.to_json(path, orient="records", lines=True)
    with pytest.raises(InputError, match="duplicate id"):
        load_table([path], label="y", id_column="id")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.none(), st.text(max_size=4), st.sampled_from(["", " ", "\t", "\n "]), st.floats(allow_nan=True),
    st.integers(), st.booleans(),
), max_size=30))
def test_missing_mask_agrees_with_the_cell_rule(cells):
    series = pd.Series(cells, dtype=object)
    assert missing_mask(series).tolist() == [_is_missing(cell) for cell in cells]


def test_a_text_column_holds_one_string_per_distinct_value():
    raw = pd.DataFrame({"id": ["1", "2", "3", "4"], "c": pd.Series(["a", None, "a", " "], dtype="string")})
    typed = coerce_types(raw, {"c": "categorical"}, id_column="id", source="t.parquet").typed
    assert typed["c"].tolist() == ["a", None, "a", None]
    assert typed["c"].dtype == object and typed["c"].iloc[0] is typed["c"].iloc[2]


def test_row_numbers_are_told_from_measured_whole_numbers():
    rng = np.random.default_rng(0)
    n = 400
    table = pd.DataFrame({
        "Unnamed: 0": np.arange(n),  # a pandas index written to CSV
        "rownames": np.arange(1, n + 1),  # R's row names
        "shuffled_counter": rng.permutation(n) + 1000,
        "price": rng.integers(0, 2 * n, n),  # whole numbers from a narrow range repeat
        "customer_id": rng.choice(10**7, n, replace=False),  # distinct, but far from filling its range
        "half_counter": np.arange(n) + 0.5,  # not whole
        "with_a_gap": np.r_[np.arange(n - 1), np.nan].astype(float),
        "flag": rng.integers(0, 2, n).astype(bool),
        "text": np.arange(n).astype(str),  # the typed table holds numbers as numbers
    })
    assert row_number_columns([table], table.columns) == ["Unnamed: 0", "rownames", "shuffled_counter"]
    # Over the batch and the reference together: each a random part of the numbered rows.
    reference = rng.random(n) < 0.1
    assert row_number_columns([table[~reference], table[reference]], ["rownames", "price"]) == ["rownames"]
    # Too few rows to tell; every third row fills a third of its range.
    assert row_number_columns([table.head(40)], ["rownames"]) == []
    assert row_number_columns([table.iloc[::3]], ["rownames"]) == []
    # A number shared by two rows (one in each table) is not a row number.
    assert row_number_columns([table, table.head(1)], ["rownames"]) == []


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-10**6, 10**6), min_size=50, max_size=300))
def test_a_column_with_a_repeated_value_never_numbers_rows(values):
    column = pd.DataFrame({"x": np.array(values, dtype=np.int64)})
    numbered = row_number_columns([column], ["x"]) == ["x"]
    if len(set(values)) < len(values):
        assert not numbered
    else:
        assert numbered == (len(values) >= 0.5 * (max(values) - min(values) + 1))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(numbers=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20),
       digits=st.integers(1, 17))
def test_json_lines_numbers_are_the_files_exactly(tmp_path, numbers, digits):
    # pandas' default JSON parser is a bit off for about one number in eight.
    path = tmp_path / "n.jsonl"
    rounded = [float(f"{number:.{digits}g}") for number in numbers]
    lines = [json.dumps({"x": number}) for number in rounded if number == 0 or abs(number) >= sys.float_info.min]
    path.write_text("\n".join(lines) + "\n")
    expected = [json.loads(line)["x"] for line in lines]
    if expected:
        assert read_file(path)["x"].tolist() == expected


def test_a_subnormal_number_in_json_lines_is_read(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text('{"x": 1e-310}\n{"x": 0.1416278731}\n')
    assert read_file(path)["x"].tolist() == pytest.approx([1e-310, 0.1416278731], rel=1e-15, abs=1e-320)


def test_json_lines_read_in_blocks_equal_the_whole_file(tmp_path, monkeypatch):
    rows = [{"id": i, "x": i + 0.5, "flag": True, "label": "a"} for i in range(4)]
    rows += [{"id": 4, "x": None, "flag": None, "label": "b", "late": "new"}, {"id": 5, "x": 7, "label": "b"}]
    rows += [{"id": 6, "label": "c", "x": 1e-3, "flag": False, "nested": {"k": [1, 2]}}]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    whole = pd.read_json(path, lines=True, dtype=False, precise_float=True)
    monkeypatch.setattr(tables, "JSON_LINES_BLOCK", 2)
    blocks = read_file(path)
    pd.testing.assert_frame_equal(blocks, whole)
    assert list(blocks.columns) == ["id", "x", "flag", "label", "late", "nested"]
    assert blocks["nested"].iloc[6] == {"k": [1, 2]} and blocks["late"].iloc[4] == "new"


NUMBER_TEXTS = st.one_of(
    st.floats(allow_nan=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:.10g}"),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: f"{x:.25g}"),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["1e5", "+1.5", ".5", "5.", "007", "-0", "1E-5", "Infinity", "-inf", "1e400", "4.9e-324", "9007199254740993"]),
)


@settings(max_examples=150, deadline=None)
@given(cells=st.lists(st.one_of(NUMBER_TEXTS, st.sampled_from(["", "  "]), st.none()), min_size=1, max_size=30),
       junk=st.lists(st.sampled_from(["n/a?", " 1.5", "1_000", "0x10", "1.5.2"]), max_size=2))
def test_arrow_reads_numbers_as_pandas_does(cells, junk):
    series = pd.Series(cells + junk, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    missing = missing_mask(series)
    expected = pd.to_numeric(series.astype(object).where(~missing), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    np.testing.assert_array_equal(tables.numbers(series, missing), expected)  # -0.0 equals 0.0 here


def test_a_column_of_numbers_held_by_arrow_never_reaches_pandas_parser(monkeypatch):
    series = pd.Series(["1.5", "", "-2", "1e3", None], dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    monkeypatch.setattr(pd, "to_numeric", lambda *args, **kwargs: pytest.fail("parsed by pandas"))
    np.testing.assert_array_equal(tables.numbers(series, missing_mask(series)), [1.5, np.nan, -2.0, 1000.0, np.nan])


def test_dates_and_times_are_their_own_kind():
    n = 40
    days = pd.date_range("2024-01-30", periods=n, freq="D")
    frame = pd.DataFrame({
        "stamp": days,  # a Parquet timestamp
        "zoned": days.tz_localize("Europe/Oslo"),
        "day": [d.date() for d in days],  # a Parquet date
        "iso_day": days.strftime("%Y-%m-%d"),
        "iso_time": days.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "spaced": days.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "offset": days.strftime("%Y-%m-%dT%H:%M+01:00"),
        "month": days.strftime("%Y-%m"),  # a billing month
        "season": [f"{2000 + i % 20}-{(i % 20) + 13}" for i in range(n)],  # 2000-13: a season, no month
        "year": days.strftime("%Y"),  # whole numbers, not dates
        "compact": days.strftime("%Y%m%d"),  # numbers too
        "us_style": days.strftime("%m/%d/%Y"),  # not ISO 8601: text
        "wait": pd.to_timedelta(np.arange(n), unit="s"),  # a duration is a measurement
    })
    kinds = infer_kinds(frame, frame.columns)
    assert kinds == {
        "stamp": "time", "zoned": "time", "day": "time", "iso_day": "time", "iso_time": "time", "spaced": "time",
        "offset": "time", "month": "time", "season": "categorical", "year": "numeric", "compact": "numeric", "us_style": "categorical", "wait": "numeric",
    }
    # A configured kind wins.
    assert infer_kinds(frame, ["stamp"], numeric=["stamp"]) == {"stamp": "numeric"}


def test_time_cells_that_are_no_dates_are_found_and_the_rest_kept_as_they_came():
    texts = ["2024-01-31", " 2024-02-29 ", "2024-02-30", "n/a?", None, "2024-03-01T12:00:00Z", "2024-13-01"]
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "when": pd.Series(texts, dtype=object)})

    typed = coerce_types(frame, {"when": "time"}, id_column="id", source="b.csv")

    assert typed.typed["when"].tolist() == texts
    assert typed.findings["row_id"].tolist() == ["r2", "r3", "r6"]
    assert typed.findings["check"].unique().tolist() == [TYPE_CHECK]
    assert typed.findings["reason"].iloc[0].startswith("when = '2024-02-30' is not a date or time (ISO 8601")
    assert typed.parsed_shares == {"when": 3 / 6}
    assert typed.batch_failures == []
    mostly_broken = coerce_types(frame.iloc[1:5], {"when": "time"}, id_column="id", source="b.csv")
    assert mostly_broken.batch_failures == [
        "b.csv: column 'when' should hold dates or times but 2 of 3 values are not dates or times "
        "(e.g. '2024-02-30', 'n/a?')"
    ]


@settings(max_examples=200, deadline=None)
@given(
    moments=st.lists(st.datetimes(min_value=pd.Timestamp("1700-01-01").to_pydatetime(),
                                  max_value=pd.Timestamp("2250-01-01").to_pydatetime()), min_size=1, max_size=20),
    shape=st.sampled_from(["%Y-%m", "%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ",
                           "%Y-%m-%d %H:%M:%S+05:30"]),
    noise=st.lists(st.text(max_size=12), max_size=5),
)
def test_times_are_exactly_the_iso_dates_pandas_reads(moments, shape, noise):
    texts = [moment.strftime(shape) for moment in moments] + noise
    found = tables.times(pd.Series(texts, dtype=object), np.zeros(len(texts), dtype=bool))
    assert found[: len(moments)].all()
    for text, is_time in zip(noise, found[len(moments):]):
        expected = bool(re.fullmatch(tables.ISO_TIME, text)) and not pd.isna(
            pd.to_datetime(text.strip(), format="ISO8601", errors="coerce", utc=True))
        assert is_time == expected, text


def test_digits_with_leading_zeros_are_codes_not_quantities():
    n = 300
    frame = pd.DataFrame({
        "postcode": (["02139", "10001", "94105"] * n)[:n],
        "account": [f"{i:06d}" for i in range(n)],
        "price": ([" 0.5", "0", "12", "-0.25"] * n)[:n],
        "one_typo": ["017"] + [str(i + 100) for i in range(n - 1)],  # 1 of 300: a typo, not a code
        "stored": np.arange(n),  # numbers of the file's own type
    })
    assert infer_kinds(frame, frame.columns) == {
        "postcode": "categorical", "account": "categorical", "price": "numeric", "one_typo": "numeric",
        "stored": "numeric",
    }
    assert infer_kinds(frame, ["postcode"], zero_padded_codes=False) == {"postcode": "numeric"}


@pytest.mark.parametrize("cells, found", [
    (["16,1", "13,9", "18,9"], ("decimal", "16,1")),
    (["1", "2", "3,5", "4"], ("decimal", "3,5")),  # whole numbers have no mark to show
    (["1.234,5", "-0,25", None, ""], ("decimal", "1.234,5")),
    (["1,234", "0,125"], ("decimal", "0,125")),  # no thousand is written 0,125
    (["1,234", "12,345,678", "7"], ("either", "1,234")),  # a thousand, or one and a bit
    (["1,234", "2,345.5", "7.25"], ("thousands", "2,345.5")),
    (["16.1", "13.9"], None),  # a decimal point: numbers already
    (["a,b", "c"], None),
    (["1,5"] + ["x"] * 19, None),  # text with a number in it
    ([1.5, 2.5], None),  # typed (Parquet): nothing to misread
])
def test_a_column_of_numbers_written_with_a_comma_is_recognised(cells, found):
    assert tables.comma_numbers(pd.Series(cells, dtype=object)) == found
    if found is not None:
        advice = tables.comma_advice(found[0])
        assert ("--decimal ','" in advice) == (found[0] != "thousands")
        assert ("thousands separator" in advice) == (found[0] != "decimal")


def test_a_tsv_file_is_tab_separated_whatever_the_dataset_says(tmp_path):
    frame = pd.DataFrame({"label": ["a", "b"], "note": ["x,y;z", "w"], "v": ["1,5", "2"]})
    path = tmp_path / "batch.tsv.gz"
    frame.to_csv(path, sep="\t", index=False)
    for separator in (",", ";"):
        pd.testing.assert_frame_equal(read_file(path, separator=separator), frame, check_dtype=False)
    assert read_file(path, separator=";", decimal=",")["v"].tolist() == ["1.5", "2"]
    with pytest.raises(InputError, match=r"unknown file type; expected one of .csv, .jsonl, .ndjson, .parquet, .pq, .tsv"):
        read_file(tmp_path / "batch.txt")
