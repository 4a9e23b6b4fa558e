"""Validate a batch frame against an expectation suite, row by row.

GX reports each failed expectation with the ids of the rows that broke it
(``unexpected_index_list`` with the id column as index column). Those become
one finding per (row, expectation) in the findings table of
``detectors.base``; everything that is about the batch as a whole (a missing
column, a column of the wrong type, an expectation GX could not evaluate)
becomes a sentence in ``batch_failures``, which the pipeline treats as a
reason to reject the whole batch.

One ephemeral GX context (with a pandas data source and a whole-dataframe
batch definition) is built per process on first use and reused: building it
costs more than validating a small batch. GX keeps the current batch in the
data source's execution engine under a fixed batch id, so validations are
serialised with a lock; pandas validation is GIL-bound anyway.
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from poisonguard.detectors._unique import distinct_objects
from poisonguard.detectors.base import empty_findings, make_findings
from poisonguard.expectations.infer import CATEGORICAL, as_text, category_text, column_kinds
from poisonguard.expectations.errors import FrameError

if TYPE_CHECKING:  # imported on first use: see expectations.infer
    import great_expectations as gx

CHECK_PREFIX = "expectation."
MAX_VALUES_SHOWN = 10
# Characters of a value or column name shown in a reason.
SHOWN_WIDTH = 80
TABLE_COLUMNS = "expect_table_columns_to_match_set"
TYPE_LIST = "expect_column_values_to_be_in_type_list"
OF_TYPE = "expect_column_values_to_be_of_type"
IN_SET = "expect_column_values_to_be_in_set"


@dataclass(frozen=True)
class ValidationOutcome:
    """What validating one frame against one suite found.

    Attributes
    ----------
    row_findings : DataFrame
        ``FINDING_COLUMNS``; one flagged finding per failing (row,
        expectation), score 1.0; the p-value is the rule's recorded
        ``meta["false_positive_rate"]`` (a rule inferred for a feature),
        else NaN (a hard rule).
    batch_failures : list of str
        One sentence per failure that concerns the batch, not single rows.
    results : list of dict
        JSON-serialisable summary per expectation, in suite order:
        ``type, check, column, success, unexpected_count, exception``.
    suite_name : str
    """

    row_findings: pd.DataFrame
    batch_failures: list[str]
    results: list[dict]
    suite_name: str

    @property
    def passed(self) -> bool:
        """True when no row and no batch-level expectation failed."""
        return not self.batch_failures and self.row_findings.empty


def check_name(expectation_type: str) -> str:
    """Short check name of a GX expectation type, for the findings table.

    ``expect_column_values_to_be_between`` -> ``expectation.values_to_be_between``,
    ``expect_column_to_exist`` -> ``expectation.column_to_exist``.
    """
    name = expectation_type.removeprefix("expect_")
    if name.startswith("column_values_"):
        name = name.removeprefix("column_")
    return CHECK_PREFIX + name


def validate_frame(frame: pd.DataFrame, suite: gx.ExpectationSuite, *, id_column: str) -> ValidationOutcome:
    """Validate ``frame`` against ``suite`` and turn the results into findings.

    Parameters
    ----------
    frame : DataFrame, shape (n_rows, n_columns)
        The typed batch, including ``id_column``.
    suite : great_expectations.ExpectationSuite
        Usually from :func:`expectations.infer_suite` or
        :func:`expectations.load_suite`.
    id_column : str
        Column whose values identify rows in the findings (as strings).

    Returns
    -------
    ValidationOutcome

    Raises
    ------
    FrameError
        ``frame`` has no column ``id_column``.
    """
    if id_column not in frame.columns:
        raise FrameError(f"the batch has no id column {id_column!r} to report failing rows by")
    prepared = _as_gx_frame(frame, suite)
    view = _text_view(suite)
    with _LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": prepared})
        try:
            validation = batch.validate(
                view,
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [id_column]},
            )
        finally:
            _release(batch)
    order = {_key(config): position for position, config in enumerate(view.expectation_configurations)}
    ordered = sorted(validation.results, key=lambda r: order.get(_key(r.expectation_config), len(order)))

    present = set(map(str, frame.columns))
    failures: list[str] = []
    missing: OrderedDict[str, int] = OrderedDict()
    tables: list = []
    rows: dict[str, list] = {"row_ids": [], "checks": [], "reasons": [], "p_values": []}
    summaries = []
    for result in ordered:
        config = result.expectation_config
        column = config.kwargs.get("column")
        errors = _exception_messages(result.exception_info)
        summaries.append(_summary(result, column, errors))
        if result.success:
            continue
        if column is not None and column not in present:
            missing[column] = missing.get(column, 0) + 1
        elif errors:
            where = f" on column {column!r}" if column is not None else ""
            failures.append(f"{config.type}{where} could not be evaluated: {'; '.join(errors)}")
        elif config.type == TABLE_COLUMNS:
            tables.append(config)
        elif config.type in (TYPE_LIST, OF_TYPE):
            failures.append(_type_failure(frame[column], config))
        elif result.result.get("unexpected_index_list"):
            for entry in result.result["unexpected_index_list"]:
                rows["row_ids"].append(as_text(entry[id_column]))
                rows["checks"].append(check_name(config.type))
                rows["reasons"].append(_row_reason(config, entry.get(column, entry[id_column])))
                rows["p_values"].append(_rule_p_value(config))
        else:
            failures.append(_aggregate_failure(config, result.result))

    missing_failures = [
        f"column {column!r} is missing from the batch ({count} expectation(s) on it failed)"
        for column, count in missing.items()
    ]
    for config in tables:
        lacking = [c for c in config.kwargs.get("column_set") or [] if c not in present and c not in missing]
        if lacking:
            missing_failures.append(f"the batch lacks column(s) {', '.join(map(repr, lacking))} that the suite expects")
        elif not missing:
            failures.append(_aggregate_failure(config, {}))
    return ValidationOutcome(
        row_findings=_findings(**rows),
        batch_failures=missing_failures + failures,
        results=summaries,
        suite_name=suite.name,
    )


# -- the shared GX context -------------------------------------------------

_LOCK = threading.Lock()
_STATE: dict = {}


def _batch_definition():
    pid = os.getpid()
    if _STATE.get("pid") != pid:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX sets this logger to INFO on import, and it then announces every
        # ephemeral context's temporary docs site: noise in a pipeline's log.
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
        context = gx.get_context(mode="ephemeral")
        # GX draws tqdm "Calculating Metrics" bars on stderr unless the
        # context says otherwise; a pipeline log is no place for them.
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("poisonguard").add_dataframe_asset("batch")
        _STATE.update(pid=pid, definition=asset.add_batch_definition_whole_dataframe("whole batch"))
    return _STATE["definition"]


def _release(batch) -> None:
    """Let go of the frame and the per-row metrics GX's shared engine keeps after validating it.

    The engine caches the last batch's data and every metric it computed,
    row masks included, until the next validation: 43 MB of masks for a
    million rows, held while the detectors run. These are GX's private
    caches; should a release rename them, only the memory is lost.
    """
    engine = getattr(getattr(batch, "data", None), "execution_engine", None)
    manager = getattr(engine, "batch_manager", None)
    for cache in (getattr(engine, "_metric_cache", None), getattr(manager, "_batch_data_cache", None),
                  getattr(manager, "_batch_cache", None)):
        if isinstance(cache, dict):
            cache.clear()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would never be released in
    # the child, and the parent's context is not ours to share.
    global _LOCK
    _LOCK = threading.Lock()
    _STATE.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- preparing the frame and reading results -------------------------------


def _as_gx_frame(frame: pd.DataFrame, suite) -> pd.DataFrame:
    """Categorical columns as object columns of ``str`` (missing stays ``None``).

    They are compared as text (see ``_text_view``), and GX 1.24 does not
    recognise pandas 3's ``str`` dtype (or any ``StringDtype``) in type
    lists, so GX sees plain object columns of text, here and in other
    text columns.
    """
    categorical = _categorical_columns(suite)
    prepared = frame.copy(deep=False)
    for column in prepared.columns:
        series = prepared[column]
        if column in categorical:
            prepared[column] = pd.Series(_category_texts(series), index=series.index, dtype=object)
        elif isinstance(series.dtype, pd.StringDtype):
            prepared[column] = series.astype(object)
    return prepared


def _category_texts(series: pd.Series) -> np.ndarray:
    """``category_text`` of each cell, None for missing ones; once per distinct value when all are text."""
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return distinct_objects(series, convert=category_text)
    texts = np.empty(len(series), dtype=object)
    texts[:] = [None if _is_missing(v) else category_text(v) for v in series]
    return texts


def _text_view(suite):
    """The suite as poisonguard applies it: categorical columns compared as text.

    A suite is written for its reference as a GX user reads it (an integer
    label has the value set ``[0, 1]`` and a numeric type); poisonguard
    hands GX categorical columns as text (``_as_gx_frame``), so their value
    sets become text and their type expectation "values are str".
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    kinds = _categorical_columns(suite)
    configurations = []
    for config in suite.expectation_configurations:
        column = config.kwargs.get("column")
        if column in kinds and config.type in (TYPE_LIST, OF_TYPE):
            config = ExpectationConfiguration(type=OF_TYPE, kwargs={"column": column, "type_": "str"}, meta=config.meta)
        elif column in kinds and config.type == IN_SET:
            texts = sorted({category_text(value) for value in config.kwargs.get("value_set") or []})
            config = ExpectationConfiguration(type=IN_SET, kwargs={**config.kwargs, "value_set": texts}, meta=config.meta)
        configurations.append(config)
    return gx.ExpectationSuite(name=suite.name, expectations=configurations, meta=suite.meta)


def _categorical_columns(suite) -> set:
    kinds = column_kinds(suite)
    label = (suite.meta or {}).get("poisonguard", {}).get("label")
    return {column for column, kind in kinds.items() if kind == CATEGORICAL} | ({label} if label else set())


def _is_missing(value) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _key(config) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    return json.dumps([config.type, kwargs], sort_keys=True, default=str)


def _exception_messages(info) -> list[str]:
    """Messages of exceptions GX caught while evaluating one expectation.

    GX reports either one ``{"raised_exception", "exception_message", ...}``
    or, when metrics failed, a dict of those keyed by metric id.
    """
    if not info:
        return []
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = []
    for entry in entries:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "unknown error inside Great Expectations")
            if message not in messages:
                messages.append(message)
    return messages


def _summary(result, column, errors) -> dict:
    count = result.result.get("unexpected_count") if result.result else None
    return {
        "type": result.expectation_config.type,
        "check": check_name(result.expectation_config.type),
        "column": column,
        "success": bool(result.success),
        "unexpected_count": None if count is None else int(count),
        "exception": "; ".join(errors) or None,
    }


def _row_reason(config, value) -> str:
    kwargs, meta, column = config.kwargs, config.meta or {}, config.kwargs.get("column")
    inferred = meta.get("inferred_from") == "reference"
    if config.type == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            expected = f"outside the expected range {_show(low)}–{_show(high)}"
        elif low is not None:
            expected = f"below the expected minimum {_show(low)}"
        else:
            expected = f"above the expected maximum {_show(high)}"
        return f"{_short(str(column))} = {_show(value)} is {expected}" + (" inferred from the reference" if inferred else "")
    if config.type == "expect_column_values_to_be_in_set":
        return f"{_short(str(column))} = {_show(value)} is not one of the expected values: {_values(kwargs.get('value_set'))}"
    if config.type == "expect_column_values_to_not_be_null":
        if meta.get("role") == "label":
            return f"{_short(str(column))} is empty but every row needs a label"
        if inferred and meta.get("reference_null_count") == 0:
            return f"{_short(str(column))} is empty but the reference has no empty values"
        return f"{_short(str(column))} is empty but the suite requires a value"
    return f"{_short(str(column))} = {_show(value)} fails {config.type}"


def _type_failure(series: pd.Series, config) -> str:
    kind = (config.meta or {}).get("kind")
    wanted = f"a {kind} type" if kind else "one of " + _values(config.kwargs.get("type_list"))
    return f"column {config.kwargs['column']!r} has dtype {series.dtype}, but the suite expects {wanted}"


def _aggregate_failure(config, result: dict) -> str:
    column = config.kwargs.get("column")
    where = f" on column {column!r}" if column is not None else ""
    observed = result.get("observed_value")
    seen = f" (observed {_show(observed)})" if observed is not None else ""
    return f"{config.type}{where} failed{seen}"


def _rule_p_value(config) -> float:
    """The p-value a clean row breaking an inferred rule would have; NaN for a hard rule.

    Rules inferred for a feature (``expectations.infer``) record it as
    ``meta["false_positive_rate"]``; the label's rules, hand-written rules
    and the type rules have none: breaking them is no statistical finding.
    """
    rate = (config.meta or {}).get("false_positive_rate")
    return float(rate) if isinstance(rate, (int, float)) else float("nan")


def _findings(*, row_ids, checks, reasons, p_values) -> pd.DataFrame:
    if not row_ids:
        return empty_findings()
    per_check = [
        make_findings(
            row_ids=[r for r, c in zip(row_ids, checks) if c == check],
            check=check,
            scores=np.ones(checks.count(check)),
            flagged=np.ones(checks.count(check), dtype=bool),
            reasons=[why for why, c in zip(reasons, checks) if c == check],
            p_values=[p for p, c in zip(p_values, checks) if c == check],
        )
        for check in dict.fromkeys(checks)
    ]
    return pd.concat(per_check, ignore_index=True)


def _show(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Six significant digits, no float noise (2430.0000000000005) and no
        # false precision in an inferred bound (8103.78008).
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return repr(_short(value))
    return _short(str(value))


def _short(text: str, width: int = SHOWN_WIDTH) -> str:
    """A value or name cut for a reason sentence: a 50 MB cell must not become a 50 MB reason."""
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 20] + f"…(+{len(text) - width + 20} characters)"


def _values(values) -> str:
    shown = [_short(str(v)) for v in (values or [])]
    if len(shown) > MAX_VALUES_SHOWN:
        return ", ".join(shown[:MAX_VALUES_SHOWN]) + f", … ({len(shown)} in all)"
    return ", ".join(shown)
