"""Fuzzing the batch readers and the config loader: a result, or one clear error naming the file.

Whatever bytes a file holds, reading it either gives a table that accounts
for every record, or raises the project's own error whose one-line message
names the file. Never another exception (a traceback for the user).
"""
from __future__ import annotations

import csv
import io
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poisonguard.pipelines.core.config import parse_config
from poisonguard.pipelines.core.errors import USER_ERRORS, ConfigError
from poisonguard.pipelines.core.settings import check_detection
from poisonguard.pipelines.core.tables import coerce_types, infer_kinds, load_table

CELLS = st.one_of(
    st.sampled_from(["", " ", "1", "-2.5", "inf", "-Infinity", "1e400", "nan", "NA", "n/a?", "007", "True", "x"]),
    st.text(alphabet=string.printable + "éß漢\u2028", max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
NAMES = st.one_of(st.sampled_from(["label", "id", "x", "y", "x"]), st.text(max_size=8))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line_naming(error: BaseException, path) -> bool:
    message = str(error)
    return str(path) in message and "\n" not in message and len(message) < 2000


MOSTLY = st.sampled_from([True] * 9 + [False])  # well-formed nine times in ten


@st.composite
def csv_texts(draw):
    if draw(MOSTLY):
        header = ["label", *draw(st.lists(NAMES.filter(lambda n: n != "label"), max_size=5, unique=True))]
    else:
        header = draw(st.lists(NAMES, min_size=1, max_size=6))
    width = len(header)
    records = draw(st.lists(
        st.lists(CELLS, min_size=width, max_size=width) if draw(MOSTLY) else st.lists(CELLS, max_size=width + 2),
        max_size=12,
    ))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(records)
    return buffer.getvalue()


@FUZZ
@given(text=csv_texts(), label=st.sampled_from(["label"] * 4 + ["x"]), use_id=st.booleans())
def test_any_csv_reads_whole_or_fails_naming_the_file(tmp_path_factory, text, label, use_id):
    path = tmp_path_factory.mktemp("fuzz") / "batch.csv"
    path.write_text(text, encoding="utf-8")
    try:
        table = load_table([path], label=label, id_column="id" if use_id else None)
    except USER_ERRORS as error:
        assert one_line_naming(error, path), str(error)
        return
    records = [row for row in csv.reader(io.StringIO(text)) if row][1:]
    assert len(table.raw) == len(records)
    assert table.row_ids.is_unique
    columns = [c for c in table.raw.columns if c not in {label, table.id_column}]
    typed = coerce_types(table.raw, {**infer_kinds(table.raw, columns), label: "categorical"},
                         id_column=table.id_column, source=str(path))
    assert len(typed.typed) == len(table.raw)
    numeric = [c for c, kind in typed.kinds.items() if kind == "numeric"]
    for column in numeric:  # no infinite number survives typing
        assert not typed.typed[column].isin([float("inf"), float("-inf")]).any()


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".jsonl", ".parquet", ".csv.gz", ".jsonl.gz"]))
def test_any_bytes_read_or_fail_naming_the_file(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"batch{suffix}"
    path.write_bytes(data)
    try:
        load_table([path], label="label", id_column=None)
    except USER_ERRORS as error:
        assert one_line_naming(error, path), str(error)


TOML_VALUES = st.recursive(
    st.one_of(st.booleans(), st.integers(-5, 5), st.floats(-2, 2, allow_nan=False), st.text(max_size=6),
              st.sampled_from(["outlier.ecod", "label.knn", "nope.detector", "reference.csv"])),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(NAMES, children, max_size=3),
    max_leaves=8,
)
SECTIONS = st.sampled_from(["dataset", "detection", "batch", "watch", "store", "signing", "nonsense"])


def toml_text(document: dict) -> str:
    lines = []
    for section, values in document.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{json_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def json_key(key: str) -> str:
    import json

    return json.dumps(key)


def toml_value(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


@FUZZ
@given(document=st.dictionaries(SECTIONS, st.dictionaries(
    st.sampled_from(["name", "label", "alpha", "detectors", "params", "checks", "p_value", "url", "key", "x"]),
    TOML_VALUES, max_size=4), max_size=3))
def test_any_config_loads_or_fails_naming_the_file_and_key(document):
    text = toml_text(document)
    try:
        config = parse_config(text, source="fuzz.toml")
        check_detection(config, source="fuzz.toml")
    except ConfigError as error:
        assert str(error).startswith("fuzz.toml: ") and "\n" not in str(error)


@pytest.mark.parametrize("text", ["[dataset\nname = 1", "x = [1,", "\x00", "[detection]\nalpha = 'high'"])
def test_broken_toml_is_one_line(text):
    with pytest.raises(ConfigError, match=r"^fuzz\.toml: "):
        parse_config(text, source="fuzz.toml")
