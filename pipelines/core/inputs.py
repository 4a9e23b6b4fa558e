"""A run's inputs: the batch and reference read, typed, and the expectation suite chosen.

``load_inputs`` is the first stage of every run. The command line calls it
before Prefect starts (``preload_inputs``), so bad input fails at once, and
the flow's first task reuses what was loaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from poisonguard.expectations import column_kinds, infer_suite, load_suite
from poisonguard.pipelines.core.errors import ConfigError, InputError
from poisonguard.pipelines.core.settings import RunSettings
from poisonguard.pipelines.core.tables import (
    TIME,
    LoadedTable,
    TextAsNumbers,
    TypedTable,
    coerce_types,
    hold_text_as_numbers,
    infer_kinds,
    load_table,
    missing_mask,
    numbers,
    read_file,
    refuse_comma_numbers,
    refuse_unparsable_reference,
    row_number_columns,
)
from poisonguard.pipelines.core.text import display, display_list


@dataclass(frozen=True)
class RunInputs:
    """The loaded, typed batch and reference, and the suite that applies."""

    settings: RunSettings
    batch: LoadedTable
    batch_typed: TypedTable
    reference: Optional[LoadedTable]
    reference_typed: Optional[TypedTable]
    suite: Any  # great_expectations.ExpectationSuite
    suite_source: str
    kinds: dict[str, str]
    feature_columns: list[str]
    unexpected_columns: list[str] = field(default_factory=list)  # in the batch, not in the reference
    row_number_columns: list[str] = field(default_factory=list)  # kept, not checked (``row_number_columns``)
    time_columns: list[str] = field(default_factory=list)  # kept, checked to parse, not features (``TIME``)

    @property
    def label(self) -> str:
        return self.settings.label

    @property
    def id_column(self) -> str:
        return self.batch.id_column


# A cache of the last preflight: the CLI loads inputs before starting Prefect
# (so bad input fails at once), and the flow's first task reuses them.
_PRELOADED: dict[str, RunInputs] = {}


def load_inputs(settings: RunSettings) -> RunInputs:
    """Read the batch and reference, choose the suite, type every column.

    Raises
    ------
    InputError
        Missing or unreadable files, missing label or id column, duplicate
        ids, an empty batch, or a reference without the label column.
    """
    key = _preload_key(settings)
    if key in _PRELOADED:
        return _PRELOADED.pop(key)
    dataset = settings.config.dataset
    label = settings.label
    batch = load_table(settings.batches, label=label, id_column=dataset.id, role="batch", **dataset.csv_format)
    _require_classes(batch.raw[label], label, _names(settings.batches),
                     codes=label in (dataset.categorical or ()))
    reference = None
    unexpected: list[str] = []
    if dataset.reference is not None:
        reference = load_table(
            [dataset.reference], label=label, id_column=None, role="reference", **dataset.csv_format
        )
        if not (~missing_mask(reference.raw[label])).any():
            raise InputError(
                f"{dataset.reference}: the trusted reference has no label: column {display(label)} is empty in all "
                f"{len(reference.raw)} rows"
            )
        unexpected = [c for c in _data_columns(batch) if c not in reference.raw.columns and c != dataset.id]
        # A new column is schema drift: the batch-level schema check rejects
        # the batch with the evidence. Without that check it is an input error.
        if unexpected and "schema" not in settings.config.batch.checks:
            raise InputError(
                f"{dataset.reference}: reference lacks the batch's column(s) {', '.join(map(repr, unexpected))}"
            )
    _require_named_columns(settings, batch, reference)
    ignored = set(dataset.ignore) | {label, batch.id_column} | set(unexpected)
    if dataset.id:
        ignored.add(dataset.id)
    feature_columns = [c for c in _data_columns(batch) if c not in ignored]
    kinds = _kinds(settings, batch, reference, feature_columns)
    # Labels are compared as text everywhere (suite value sets, detectors),
    # whatever type the file stored them as.
    typing_kinds = {**kinds, label: "categorical"}
    reference_typed = None
    if reference is not None:
        reference_typed = coerce_types(
            reference.raw, typing_kinds, id_column=reference.id_column, source=str(dataset.reference)
        )
        refuse_unparsable_reference(reference_typed, str(dataset.reference), named=dataset.numeric or ())
    # A column the config names as a feature is one; any other that numbers
    # the rows is kept in the output like an ignored column, and the run says so.
    named = set(dataset.numeric or ()) | set(dataset.categorical or ())
    # The checks and the clean file read numeric features as numbers; their
    # text is read again only for the rows a run quarantines (half a GB of a
    # million CSV rows of twenty numbers, held for nothing until then). Each
    # is held as numbers as soon as it is typed, not after all are: a column
    # of whole numbers that may number the rows waits until that is known.
    holder = TextAsNumbers(batch, lambda column, numbers: kinds.get(column) == "numeric" and (
        column in named or not pd.api.types.is_integer_dtype(numbers)))
    batch_typed = coerce_types(batch.raw, typing_kinds, id_column=batch.id_column, source=_names(settings.batches),
                               on_numbers=holder)
    batch = holder.held_table()
    numbered = row_number_columns(
        [typed.typed for typed in (batch_typed, reference_typed) if typed is not None],
        [c for c in feature_columns if kinds[c] == "numeric" and c not in named],
    )
    # Dates and times are checked to parse (``coerce_types``) but are no
    # feature: each batch comes later than the reference, so every row lay
    # beyond its range and the batch was rejected as drifted.
    timed = [c for c in feature_columns if kinds[c] == TIME]
    feature_columns = [c for c in feature_columns if c not in numbered and c not in timed]
    kinds = {c: kind for c, kind in kinds.items() if c not in numbered and c not in timed}
    suite, source = _suite(settings, reference, reference_typed, feature_columns, kinds, numbered + timed)
    batch = hold_text_as_numbers(
        batch, batch_typed.typed, [c for c, kind in kinds.items() if kind == "numeric" and c not in holder.held]
    )
    return RunInputs(
        settings=settings,
        batch=batch,
        batch_typed=batch_typed,
        reference=reference,
        reference_typed=reference_typed,
        suite=suite,
        suite_source=source,
        kinds=kinds,
        feature_columns=feature_columns,
        unexpected_columns=unexpected,
        row_number_columns=numbered,
        time_columns=timed,
    )


def preload_inputs(settings: RunSettings) -> RunInputs:
    """Load inputs now and keep them for the next ``load_inputs`` of the same settings."""
    inputs = load_inputs(settings)
    _PRELOADED.clear()
    _PRELOADED[_preload_key(settings)] = inputs
    return inputs


def _kinds(settings, batch, reference, feature_columns) -> dict[str, str]:
    dataset = settings.config.dataset
    if dataset.suite is not None and (dataset.numeric is None and dataset.categorical is None):
        known = column_kinds(load_suite(dataset.suite))
        if known:
            rest = [c for c in feature_columns if c not in known]
            source = reference.raw if reference is not None else batch.raw
            return {**{c: known[c] for c in feature_columns if c in known}, **infer_kinds(source, rest)}
    table = reference if reference is not None else batch
    kinds = infer_kinds(table.raw, feature_columns, numeric=dataset.numeric, categorical=dataset.categorical)
    source = str(dataset.reference) if reference is not None else _names(settings.batches)
    refuse_comma_numbers(table, kinds, named=dataset.categorical or (), source=source)
    return kinds


def _suite(settings, reference, reference_typed, feature_columns, kinds, unchecked):
    dataset = settings.config.dataset
    if dataset.suite is not None:
        return load_suite(dataset.suite), str(dataset.suite)
    if reference is None:
        return None, "none: no suite configured and no reference to infer one from"
    # The suite must also validate the reference file as a GX user reads it.
    as_read = read_file(dataset.reference, native=True, **dataset.csv_format)
    suite = infer_suite(
        reference_typed.typed.drop(columns=[reference.id_column]),
        as_read=as_read,
        name=dataset.name,
        label=settings.label,
        id_column=dataset.id,
        numeric=[c for c in feature_columns if kinds[c] == "numeric"],
        categorical=[c for c in feature_columns if kinds[c] == "categorical"],
        ignore=list(dataset.ignore) + unchecked,
    )
    return suite, f"inferred from the reference {dataset.reference}"


def _data_columns(table: LoadedTable) -> list[str]:
    return [c for c in table.raw.columns if not (table.id_generated and c == table.id_column)]


# Labels are classes: a few values, each on many rows. Past this share of
# distinct values (and MIN_REFUSED_LABELS of them) a label column is a
# continuous target or an id: judged as classes, a price column of 20,000
# rows took 214 s and 6.5 GB and quarantined 97.5 % of them.
MAX_DISTINCT_LABEL_SHARE = 0.5
MIN_REFUSED_LABELS = 100
# A numeric target repeats its values on a large table and passes the share
# above: ggplot2's diamonds prices are 11,602 values on 53,940 rows (22 %),
# and judged as classes the first cross-fit had not ended after ten minutes.
# A numeric label of more than MAX_NUMERIC_CLASSES values is a target, not
# class codes, at any size; of more than MIN_REFUSED_NUMERIC_LABELS, it is
# one when most rows carry a value fewer than MIN_CLASS_ROWS rows share (too
# few to cross-fit a class on: Boston's median values, 229 on 506 rows).
# A label the config lists as categorical is class codes, as it says.
MAX_NUMERIC_CLASSES = 100
MIN_REFUSED_NUMERIC_LABELS = 20
MIN_CLASS_ROWS = 10


def _require_classes(labels, label: str, source: str, codes: bool = False) -> None:
    """Refuse a label column that is no class labels; ``codes``: the config declares its numbers categorical."""
    try:
        counts = labels.value_counts(dropna=True)
    except TypeError:  # a JSON Lines label holding lists or objects: counted by their text
        counts = labels.dropna().astype(str).value_counts()
    distinct, rows = len(counts), len(labels)
    advice = "name the class column with --label (or dataset.label)"
    if distinct > MIN_REFUSED_LABELS and distinct > MAX_DISTINCT_LABEL_SHARE * rows:
        raise InputError(
            f"{source}: label column {display(label)} has {distinct:,} distinct values in {rows:,} rows; "
            f"poisonguard checks class labels (a few values, each on many rows), and a continuous target or an id "
            f"is not one: {advice}"
        )
    if codes or distinct <= MIN_REFUSED_NUMERIC_LABELS or not _all_numbers(counts.index):
        return
    in_small = int(counts[counts < MIN_CLASS_ROWS].sum())
    mostly_small = in_small > 0.5 * counts.sum()
    if distinct > MAX_NUMERIC_CLASSES or mostly_small:
        share = f", and {in_small:,} rows ({in_small / counts.sum():.0%}) carry one that fewer than {MIN_CLASS_ROWS} rows share"
        raise InputError(
            f"{source}: label column {display(label)} holds {distinct:,} distinct numbers in {rows:,} rows"
            f"{share if mostly_small else ''}: a continuous target, not class labels. poisonguard checks class "
            f"labels; {advice}, or bin the target into classes (price bands, say) and give that column as the label "
            f"(or, if these numbers are class codes, list {display(label)} in dataset.categorical)"
        )


def _all_numbers(values) -> bool:
    """Whether every value reads as a number, as a numeric column's cells are read (``tables.numbers``)."""
    cells = pd.Series(list(values), dtype=object)
    return not np.isnan(numbers(cells, np.zeros(len(cells), dtype=bool))).any()


def _require_named_columns(settings: RunSettings, batch: LoadedTable, reference: Optional[LoadedTable]) -> None:
    """Each column the config lists by kind or to ignore is a column of the batch or the reference (a typo is not)."""
    dataset = settings.config.dataset
    known = set(batch.raw.columns) | (set(reference.raw.columns) if reference is not None else set())
    for key in ("numeric", "categorical", "ignore"):
        missing = [name for name in getattr(dataset, key) or () if name not in known]
        if missing:
            raise ConfigError(
                f"{settings.config_path or 'the config'}: dataset.{key} names {display_list(missing)}, which "
                f"neither the batch nor the reference has; its columns are {display_list(sorted(known))}"
            )


def _names(paths) -> str:
    return ", ".join(str(p) for p in paths)


def _preload_key(settings: RunSettings) -> str:
    stats = []
    for path in [*settings.batches, settings.config.dataset.reference, settings.config.dataset.suite]:
        if path is not None and path.exists():
            stat = path.stat()
            stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return settings.model_dump_json() + json.dumps(stats)


