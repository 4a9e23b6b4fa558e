"""Infer a Great Expectations suite from a trusted reference, and keep it on disk.

GX 1.x has no profiler, so poisonguard writes the suite itself: for every
column of the trusted reference it records that the column exists, its kind
(numeric or categorical) as a type list, that it has no empty values when the
reference had none, the reference's range widened by a margin (numeric) or its
value set (categorical with few values; the label always). Every expectation
carries ``meta`` saying which reference statistics its numbers came from, and
the suite's ``meta["poisonguard"]`` records the label, the id column and each
column's kind, so a reviewer can read (and edit) ``expectations/suites/NAME.json``
and the pipeline can read the kinds back with :func:`column_kinds`.

The suite is a valid Great Expectations suite for its reference as a GX user
reads it (``pd.read_csv`` with its default types, or the Parquet file): value
sets hold the values with the types pandas gives them (an integer label is
``[0, 1]``, not ``["0", "1"]``), numeric columns have a numeric type list, and
text columns expect ``str`` values (``expect_column_values_to_be_of_type``:
GX 1.x matches no type-list name against pandas 3's ``str`` dtype).
poisonguard itself compares categorical columns (and the label) as text:
:func:`expectations.validate.validate_frame` validates a text view of the
suite on a text view of the batch, so an integer label ``0`` in a Parquet
file and ``"0"`` read from CSV meet the same expectation.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

import numpy as np
import pandas as pd

from poisonguard.detectors.calibration import (
    good_turing_unseen_mass,
    peaks_over_threshold,
    unseen_property_p_value,
)
from poisonguard.expectations.errors import FrameError, SuiteError

if TYPE_CHECKING:
    import great_expectations as gx

# great_expectations is imported inside the functions that need it: it takes
# about two seconds to import, which a CLI printing --help or an error should
# not pay (the same reason detectors load PyOD lazily).

NUMERIC, CATEGORICAL = "numeric", "categorical"
# GX resolves each name with np.dtype(name) or getattr(pandas, name); pandas'
# nullable dtypes are only found under their class names ("Int64Dtype"), not
# under their dtype strings ("Int64"), so the class names are listed too.
NUMERIC_TYPES = [
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
    "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype",
    "Float32Dtype", "Float64Dtype",
]  # fmt: skip
ROLE_LABEL, ROLE_ID, ROLE_IGNORED = "label", "id", "ignored"
# Categorical columns with more distinct values than this get no value set.
MAX_CATEGORIES = 50
# A feature gets a value set only when Good-Turing expects at most this share
# of clean rows to carry a category the reference lacks.
MAX_UNSEEN_MASS = 0.01


def infer_suite(
    reference: pd.DataFrame,
    *,
    name: str,
    label: str,
    id_column: Optional[str] = None,
    numeric: Optional[list[str]] = None,
    categorical: Optional[list[str]] = None,
    ignore: Iterable[str] = (),
    range_margin: float = 0.5,
    range_false_positive_rate: Optional[float] = 0.005,
    not_null_min_rows: int = 1,
    max_categories: int = MAX_CATEGORIES,
    max_unseen_mass: float = MAX_UNSEEN_MASS,
    as_read: Optional[pd.DataFrame] = None,
) -> gx.ExpectationSuite:
    """Infer an expectation suite from a trusted reference frame.

    Parameters
    ----------
    reference : DataFrame, shape (n_rows, n_columns)
        Trusted rows; must contain ``label``. May or may not contain
        ``id_column``.
    name : str
        Suite name (also the file stem under ``expectations/suites/``).
    label : str
        The label column: always gets a value set and a not-null expectation,
        and is always categorical.
    id_column : str, optional
        Row id column: required to exist in a batch, otherwise unchecked.
    numeric, categorical : list of str, optional
        Column kinds; other columns are numeric when their dtype is numeric
        (booleans are categorical), categorical otherwise.
    ignore : iterable of str
        Columns only required to exist.
    range_margin : float
        Numeric ranges are ``[min - m * (max - min), max + m * (max - min)]``
        with ``m = range_margin``; a constant column ``v`` is widened by
        ``m * (|v| or 1)``. The lower bound stays at 0 for a column with no
        negative reference values. The default is wide on purpose: a range
        expectation is a hard rule for impossible values, not an outlier
        test (the calibrated detectors do that). Measured on the samples'
        clean batch rows: at 0.1, 25% of wine and 6% of breast-cancer rows
        broke some range; at 0.5, 1.7% and 0.8%.
    range_false_positive_rate : float or None
        Share of clean rows the range expectations together may flag. A
        margin proportional to the range is too tight for skewed columns
        and small references (with 18 wine rows, 9 % of clean rows broke a
        range at ``m = 0.5``). So each bound is also placed where the
        column's upper (or lower) tail, extrapolated from its most extreme
        reference values (``poisonguard.detectors.calibration.peaks_over_threshold``, the
        predictive form that allows for a scale estimated from a few rows),
        falls to ``rate / (2 * numeric columns)``; the wider of the two bounds
        is kept. ``None`` keeps the margin alone.
    not_null_min_rows : int
        A feature column with no empty value gets "never empty" when the
        reference has at least this many rows (by default always). It is a
        statement with an error rate, not a certainty: with ``n`` rows and
        none empty, the empty rate's 95 % upper bound is ``3 / n`` (the rule
        of three), and an empty cell in a batch row gets the p-value
        ``1 / (n + 1)`` (``meta["false_positive_rate"]``; see
        ``detectors.calibration.unseen_property_p_value``). How many rows
        such rules may quarantine is the decision's to bound
        (``pipelines.core.decision``): a rule broken by a large share of a
        batch becomes a batch-level finding for a person. The label always
        gets it, as a hard rule.
    max_categories : int
        Categorical columns with more distinct values get no value set.
    max_unseen_mass : float
        A feature's value set is inferred only when the Good-Turing estimate
        of the share of clean rows with a value the reference lacks (values
        seen once over rows, ``detectors.calibration.good_turing_unseen_mass``)
        is at most this: a set drawn from a reference full of singletons
        would reject that share of clean rows. A row outside a set gets the
        p-value ``(N1 + 1) / (n + 1)`` (``meta["false_positive_rate"]``).
        The label's set is always inferred (a hard rule).
    as_read : DataFrame, optional
        The reference as a Great Expectations user reads its file (pandas'
        default types), row for row like ``reference``: value sets and the
        type expectations of categorical columns follow its types, so the
        suite validates that frame in GX as it is. Defaults to ``reference``.

    Returns
    -------
    great_expectations.ExpectationSuite
        Not attached to any Data Context.

    Raises
    ------
    FrameError
        The reference is empty, lacks the label or a named column, or a
        column named numeric holds values that are not numbers.
    SuiteError
        A column is named both numeric and categorical, or the margin is
        negative.
    """
    import great_expectations as gx

    numeric_set, categorical_set = set(numeric or ()), set(categorical or ())
    ignored = set(ignore)
    _check_arguments(reference, label, numeric_set, categorical_set, ignored, range_margin, range_false_positive_rate)

    E = gx.expectations
    columns = [str(c) for c in reference.columns]
    required = columns + ([id_column] if id_column and id_column not in columns else [])
    expectations = [
        E.ExpectTableColumnsToMatchSet(
            column_set=required, exact_match=False, meta={"inferred_from": "reference"}
        )
    ]
    roles = {column: _role(column, label, id_column, ignored) for column in required}
    kinds = {
        column: _kind(reference[column], column, label, numeric_set, categorical_set)
        for column in required
        if roles[column] not in (ROLE_ID, ROLE_IGNORED)
    }
    n_numeric = sum(kind == NUMERIC for kind in kinds.values())
    tail_rate = None if range_false_positive_rate is None else range_false_positive_rate / (2 * max(n_numeric, 1))
    as_read = reference if as_read is None else as_read
    for column in required:
        role = roles[column]
        expectations.append(E.ExpectColumnToExist(column=column, meta=_meta(role=role)))
        if role in (ROLE_ID, ROLE_IGNORED):
            continue
        native = as_read[column] if column in as_read.columns else reference[column]
        expectations.extend(
            _column_expectations(
                reference[column], native, column, kinds[column], role,
                range_margin=range_margin, tail_rate=tail_rate, max_categories=max_categories,
                max_unseen_mass=max_unseen_mass,
                not_null=role == ROLE_LABEL or (len(reference) >= not_null_min_rows and reference[column].notna().all()),
            )
        )

    meta = {
        "poisonguard": {
            "label": label,
            "id_column": id_column,
            "kinds": kinds,
            "inferred_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "reference_rows": int(len(reference)),
        }
    }
    return gx.ExpectationSuite(name=name, expectations=expectations, meta=meta)


def column_kinds(suite: gx.ExpectationSuite) -> dict[str, str]:
    """Return ``{column: "numeric" | "categorical"}`` recorded in a suite.

    Reads ``meta["poisonguard"]["kinds"]``; for a suite without it (written
    by hand or by another tool), falls back to the type-list expectations:
    a column whose type list accepts ``float64`` is numeric, one whose
    values must be ``str`` categorical.
    """
    recorded = (suite.meta or {}).get("poisonguard", {}).get("kinds")
    if recorded:
        return {str(column): str(kind) for column, kind in recorded.items()}
    kinds = {}
    for expectation in suite.expectations:
        configuration = expectation.configuration
        if configuration.type == "expect_column_values_to_be_in_type_list":
            type_list = configuration.kwargs.get("type_list") or []
            kinds[configuration.kwargs["column"]] = NUMERIC if "float64" in type_list else CATEGORICAL
        elif configuration.type == "expect_column_values_to_be_of_type":
            kinds[configuration.kwargs["column"]] = CATEGORICAL if configuration.kwargs.get("type_") == "str" else NUMERIC
    return kinds


def save_suite(suite: gx.ExpectationSuite, path) -> Path:
    """Write a suite as stable, reviewable JSON (indent 2, sorted keys, final newline).

    Returns
    -------
    pathlib.Path
        The path written; parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(suite_json(suite), encoding="utf-8")
    return path


def suite_json(suite: gx.ExpectationSuite) -> str:
    """Return the exact text :func:`save_suite` writes."""
    return json.dumps(suite.to_json_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_suite(path) -> gx.ExpectationSuite:
    """Read a suite written by :func:`save_suite` (or by GX itself).

    Raises
    ------
    SuiteError
        The file is missing, is not JSON, or holds an expectation GX does not
        accept (named with its position and the reason). GX alone would log
        and drop such an expectation, silently weakening the suite.
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"{path}: expectation suite file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SuiteError(f"{path}: not a readable JSON expectation suite ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise SuiteError(f"{path}: an expectation suite must be a JSON object with a non-empty 'name'")
    raw_expectations = data.get("expectations") or []
    if not isinstance(raw_expectations, list):
        raise SuiteError(f"{path}: 'expectations' must be a list")
    configurations = []
    for position, raw in enumerate(raw_expectations):
        try:
            configuration = ExpectationConfiguration(**raw)
            configuration.to_domain_obj()  # what ExpectationSuite would try, but loudly
        except Exception as error:  # GX raises pydantic, KeyError, its own types...
            kind = raw.get("type", "?") if isinstance(raw, dict) else "?"
            raise SuiteError(f"{path}: expectation #{position + 1} ({kind}) is not valid: {error}") from None
        configurations.append(configuration)
    try:
        return gx.ExpectationSuite(
            name=data["name"],
            expectations=configurations,
            suite_parameters=data.get("suite_parameters"),
            meta=data.get("meta"),
            notes=data.get("notes"),
            id=data.get("id"),
        )
    except Exception as error:
        raise SuiteError(f"{path}: not a valid expectation suite ({error})") from None


def _check_arguments(reference, label, numeric_set, categorical_set, ignored, range_margin, tail_rate) -> None:
    if len(reference) == 0:
        raise FrameError("the reference has no rows: cannot infer expectations from it")
    if label not in reference.columns:
        raise FrameError(f"the reference has no label column {label!r}")
    both = sorted(numeric_set & categorical_set)
    if both:
        raise SuiteError(f"column(s) {', '.join(map(repr, both))} are listed as both numeric and categorical")
    absent = sorted((numeric_set | categorical_set | ignored) - set(reference.columns))
    if absent:
        raise FrameError(f"the reference has no column(s) {', '.join(map(repr, absent))}")
    if not range_margin >= 0:
        raise SuiteError(f"range_margin must be >= 0, got {range_margin!r}")
    if tail_rate is not None and not 0.0 < tail_rate < 1.0:
        raise SuiteError(f"range_false_positive_rate must be between 0 and 1, got {tail_rate!r}")


def _role(column, label, id_column, ignored) -> Optional[str]:
    if column == label:
        return ROLE_LABEL
    if column == id_column:
        return ROLE_ID
    if column in ignored:
        return ROLE_IGNORED
    return None


def _kind(series, column, label, numeric_set, categorical_set) -> str:
    # A class label is a category even when stored as integers.
    if column == label or column in categorical_set:
        return CATEGORICAL
    if column in numeric_set:
        return NUMERIC
    dtype = series.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return NUMERIC
    return CATEGORICAL


# More distinct values than this, all different, mark an id-like column.
UNIQUE_VALUES_NO_SET = 10


def _column_expectations(
    series, native, column, kind, role, *, range_margin, tail_rate, max_categories, max_unseen_mass, not_null
) -> list:
    import great_expectations as gx

    E = gx.expectations
    null_count = int(series.isna().sum())
    found = [_type_expectation(native, column, kind, role)]
    # Rules inferred for a feature carry the p-value a clean row breaking
    # them would have ("false_positive_rate"); the label's are hard rules.
    rated = role != ROLE_LABEL
    if not_null:
        rate = {"false_positive_rate": unseen_property_p_value(len(series))} if rated else {}
        found.append(
            E.ExpectColumnValuesToNotBeNull(
                column=column, meta=_meta(role=role, reference_null_count=null_count, **rate)
            )
        )
    if kind == NUMERIC:
        between = _range_expectation(series, column, range_margin, tail_rate)
        if between is not None:
            between.meta["false_positive_rate"] = (
                tail_rate if tail_rate is not None else unseen_property_p_value(int(series.notna().sum()))
            )
            found.append(between)
        return found
    values = _distinct_values(native)
    # A column whose every value is distinct (an id, a free-text note) is no
    # category: a value set taken from it would reject every new row.
    identifier_like = len(values) > UNIQUE_VALUES_NO_SET and len(values) == int(series.notna().sum())
    unseen = good_turing_unseen_mass(series.dropna().map(category_text).to_numpy(dtype=object))
    if role == ROLE_LABEL or (len(values) <= max_categories and not identifier_like and unseen <= max_unseen_mass):
        rate = {}
        if rated:
            # Good-Turing with one more singleton: never below 1 / (n + 1).
            present = int(series.notna().sum())
            rate = {"unseen_mass": unseen, "false_positive_rate": (unseen * present + 1.0) / (present + 1.0)}
        found.append(
            E.ExpectColumnValuesToBeInSet(
                column=column,
                value_set=values,
                meta=_meta(role=role, reference_distinct_values=len(values), **rate),
            )
        )
    return found


def _type_expectation(native: pd.Series, column: str, kind: str, role: Optional[str]):
    """What a column's values must be, as the reference file reads: numbers, or text."""
    import great_expectations as gx

    E = gx.expectations
    meta = _meta(role=role, kind=kind, reference_dtype=str(native.dtype))
    dtype = native.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return E.ExpectColumnValuesToBeInTypeList(column=column, type_list=["bool", "BooleanDtype"], meta=meta)
    if kind == NUMERIC or pd.api.types.is_numeric_dtype(dtype):
        # A categorical column stored as numbers (an integer label) reads as numbers too.
        return E.ExpectColumnValuesToBeInTypeList(column=column, type_list=list(NUMERIC_TYPES), meta=meta)
    return E.ExpectColumnValuesToBeOfType(column=column, type_="str", meta=meta)


def _distinct_values(native: pd.Series) -> list:
    """The distinct non-missing values of a column as plain JSON scalars, in text order."""
    values = {}
    for value in native.dropna():
        if isinstance(value, np.generic):
            value = value.item()
        values.setdefault(category_text(value), value)
    return [values[text] for text in sorted(values)]


def _range_expectation(series, column, range_margin, tail_rate=None):
    try:
        values = pd.to_numeric(series.dropna(), errors="raise").astype(float).to_numpy()
    except (TypeError, ValueError):
        raise FrameError(f"reference column {column!r} is named numeric but holds values that are not numbers") from None
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None  # all empty or infinite: nothing to bound
    low, high = float(finite.min()), float(finite.max())
    spread = high - low if high > low else abs(low) or 1.0
    minimum = low - range_margin * spread
    maximum = high + range_margin * spread
    tail_bounds = {}
    if tail_rate is not None:
        upper, lower = _tail_bound(finite, tail_rate), _tail_bound(-finite, tail_rate)
        if upper is not None and upper > maximum:
            maximum = tail_bounds["upper_bound"] = upper
        if lower is not None and -lower < minimum:
            minimum = tail_bounds["lower_bound"] = -lower
    clamped = low >= 0.0 and minimum < 0.0
    if clamped:
        # A quantity the trusted data never has negative (a mass, a count) is
        # not allowed to turn negative just because of the margin.
        minimum = 0.0
    # An infinite value in the trusted data means that side is unbounded;
    # an overflowed bound (huge spreads) is no bound either.
    if np.isneginf(values).any() or not math.isfinite(minimum):
        minimum = None
    if np.isposinf(values).any() or not math.isfinite(maximum):
        maximum = None
    from great_expectations.expectations import ExpectColumnValuesToBeBetween

    notes = {side: f"widened to where the reference's tail falls to p={tail_rate:.2g}" for side in tail_bounds}
    if clamped:
        notes["lower_bound"] = "clamped at 0: the reference has no negative values"
    return ExpectColumnValuesToBeBetween(
        column=column,
        min_value=minimum,
        max_value=maximum,
        meta=_meta(reference_min=low, reference_max=high, range_margin=float(range_margin), **notes),
    )


def _tail_bound(values: np.ndarray, probability: float) -> Optional[float]:
    """Where the upper tail extrapolated from ``values``' largest falls to ``probability``.

    Inverts ``ExponentialTail.p_values`` in its predictive (Lomax) form,
    ``p_u * (1 + x / (m * s)) ** -m = probability``. None when no tail can be
    fitted (fewer than five values, or ties at the top).
    """
    tail = peaks_over_threshold(values)
    if tail is None or tail.probability <= probability:
        return None
    m = float(tail.excesses)
    excess = m * tail.scale * ((tail.probability / probability) ** (1.0 / m) - 1.0)
    bound = tail.threshold + excess
    return bound if math.isfinite(bound) else None


def as_text(value) -> str:
    """How a categorical value is compared: ``str`` of the Python scalar, a whole float as an integer.

    ``2.0`` reads as ``"2"``: pandas turns an integer column with a missing
    value into floats, and the batch's cells are typed the same way.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_BOOLEAN_TEXTS = {"true": "True", "false": "False"}
# Text a CSV reader would read as a number: an integer, or a decimal with an optional exponent.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def category_text(value) -> str:
    """How a categorical value (and the label) is compared: as text, a number by its value.

    ``2``, ``2.0``, ``"2"`` and ``"2.0"`` are one category. One column
    reaches poisonguard in all these forms: the suite's value set holds the
    reference as pandas reads it (an integer label with a missing value
    becomes floats), a CSV batch is read as text, and a writer of such a
    float column writes ``"2.0"``. Compared as written, every row of a clean
    batch broke its label's value set. The cost: codes that differ only in
    leading zeros (``"02139"``, ``"2139"``) are one category, as they are
    to pandas' own reader. Booleans are one category whatever their case:
    a Parquet ``True`` and a CSV exporter's ``true`` or ``TRUE`` (Spark, R,
    JSON writers) are ``"True"``; compared as written, a reference's boolean
    column and a later CSV batch shared no value, and the batch was rejected.
    """
    if isinstance(value, str):
        if value.lower() in _BOOLEAN_TEXTS:
            return _BOOLEAN_TEXTS[value.lower()]
        # Past 40 characters digits are an identifier, not a number (and
        # Python refuses to read over 4,300 of them as one).
        if len(value) > 40 or not _NUMBER_TEXT.fullmatch(value):
            return value
        if not any(mark in value for mark in ".eE"):
            return str(int(value))
        value = float(value)
    return as_text(value)


def _meta(*, role: Optional[str] = None, **facts) -> dict:
    meta = {"inferred_from": "reference"}
    if role is not None:
        meta["role"] = role
    meta.update(facts)
    return meta
