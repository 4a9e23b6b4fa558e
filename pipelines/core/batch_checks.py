"""Batch-level checks as stages of a run: the config meets ``detectors.drift``.

Two stages of :func:`poisonguard.pipelines.core.stages.judge_batch` use this module:

* ``check-batch`` (:func:`check_batch`), before the detectors: schema drift,
  per-column distribution drift and label-distribution shift of the batch
  against the trusted rows (the reference, which for ``poisonguard watch``
  includes the dataset's clean rows so far);
* ``check-model-impact`` (:func:`check_model_impact`), after the decision:
  would the rows about to be kept make a model worse on trusted rows?

Each returns a :class:`poisonguard.pipelines.core.checks.CheckOutcome` of kind ``"batch"``: one
batch-level finding (``row_id`` empty) per test, the drift table in
``details["table"]`` for the report and provenance, and a sentence per failed
test in ``batch_failures``, which rejects the whole batch.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional

import pandas as pd
from scipy import stats

from poisonguard.detectors import drift
from poisonguard.detectors.base import empty_findings, make_findings
from poisonguard.pipelines.core.checks import CheckOutcome, library_warnings
from poisonguard.pipelines.core.tables import (
    MAX_UNPARSABLE_FRACTION,
    ColumnsAsRead,
    infer_kinds,
    missing_mask,
)
from poisonguard.pipelines.core.text import display

BATCH_KIND = "batch"


def check_batch(inputs) -> Optional[object]:
    """Schema, column drift and label shift of the batch against the trusted rows.

    Parameters
    ----------
    inputs : poisonguard.pipelines.core.inputs.RunInputs

    Returns
    -------
    poisonguard.pipelines.core.checks.CheckOutcome or None
        None when no such check is configured.
    """
    options = inputs.settings.config.batch
    wanted = [name for name in ("schema", "drift", "label_shift") if name in options.checks]
    if not wanted:
        return None
    started = time.perf_counter()
    batch_typed = inputs.batch_typed.typed
    results: list[drift.BatchCheck] = []
    notes: list[str] = []
    if "schema" in wanted:
        results += _schema(inputs)
    trusted = inputs.reference_typed.typed if inputs.reference_typed is not None else None
    distribution_checks = [name for name in wanted if name != "schema"]
    if distribution_checks and trusted is None:
        notes.append("distribution checks skipped: there are no trusted rows to compare with")
    elif distribution_checks and len(batch_typed) < options.min_rows:
        notes.append(f"distribution checks skipped: the batch has {len(batch_typed)} rows, fewer than "
                     f"batch.min_rows = {options.min_rows}")
    elif distribution_checks:
        if "drift" in wanted:
            kinds = {c: inputs.kinds[c] for c in inputs.feature_columns}
            column_results = drift.column_drift(
                trusted, batch_typed, kinds,
                numeric_test=options.numeric_test, numeric_threshold=options.numeric_threshold,
                categorical_test=options.categorical_test, categorical_threshold=options.categorical_threshold,
                p_value=options.p_value,
            )
            results += _allow_some_drift(column_results, options.max_drifted_columns)
        if "label_shift" in wanted:
            label = inputs.label
            results.append(drift.categorical_drift(
                trusted[label], batch_typed[label], column=label, test=options.categorical_test,
                threshold=options.label_threshold, p_value=options.p_value, check="batch.label_shift",
            ))
    return _outcome("batch", results, notes, len(batch_typed), started)


def check_model_impact(inputs, features, decision) -> Optional[object]:
    """Would the rows about to be kept make a model worse on held-out trusted rows?

    Parameters
    ----------
    inputs : poisonguard.pipelines.core.inputs.RunInputs
    features : poisonguard.pipelines.core.checks.FeatureMatrices
    decision : poisonguard.pipelines.core.decision.Decision

    Returns
    -------
    poisonguard.pipelines.core.checks.CheckOutcome or None
        None when the check is not configured.
    """
    options = inputs.settings.config.batch
    if "model_impact" not in options.checks:
        return None
    started = time.perf_counter()
    rows = len(features.batch_row_ids)
    kept = ~decision.quarantined_mask(features.batch_row_ids)
    notes = []
    results = []
    if features.trusted_features is None:
        notes.append("model impact not measured: there are no trusted rows to hold out")
    elif not features.batch_features.shape[1]:
        notes.append("model impact not measured: the batch has no feature column to train a model on")
    elif kept.sum() < options.min_rows:
        notes.append(f"model impact not measured: {int(kept.sum())} kept rows, fewer than batch.min_rows = {options.min_rows}")
    else:
        with library_warnings() as caught:
            results.append(drift.model_impact(
                features.trusted_features.to_numpy(dtype=float), features.trusted_labels,
                features.batch_features.to_numpy(dtype=float), features.batch_labels, batch_rows_used=kept,
                model=options.impact_model, n_folds=options.impact_folds, max_drop=options.impact_max_drop,
                p_value=options.impact_p_value, random_state=inputs.settings.config.detection.random_state,
                max_batch_rows=options.impact_sample_rows, max_trusted_rows=options.impact_sample_rows,
            ))
        notes += [f"batch.model_impact warned: {warning}" for warning in caught]
    return _outcome("batch.model_impact", results, notes, rows, started)


def per_check_rows(outcome) -> list[dict]:
    """One per-check row per batch-level check: all rows flagged when it failed."""
    rows = []
    table = outcome.details.get("table", [])
    for check in dict.fromkeys(entry["check"] for entry in table):
        entries = [entry for entry in table if entry["check"] == check]
        failed = any(entry["failed"] for entry in entries)
        tested = ", ".join(sorted({entry["test"] for entry in entries}))
        rows.append({
            "check": check,
            "kind": "batch",
            "rows_checked": outcome.rows_checked,
            "flagged": outcome.rows_checked if failed else 0,
            "flagged_only_here": outcome.rows_checked if failed else 0,
            "alpha": float("nan"),
            "threshold_note": f"whole batch; {len(entries)} test(s): {tested}",
        })
    return rows


def _schema(inputs) -> list[drift.BatchCheck]:
    """New or missing columns, and columns whose values changed kind."""
    dataset = inputs.settings.config.dataset
    batch_raw = ColumnsAsRead(inputs.batch)  # the text of columns held as numbers only where asked for
    ignore = {inputs.id_column, *(dataset.ignore or [])} | ({dataset.id} if dataset.id else set())
    if inputs.reference is None:
        return []  # the expectation suite, if any, still checks the columns it knows
    trusted_raw = inputs.reference.raw
    trusted_columns = [c for c in trusted_raw.columns if c != inputs.reference.id_column]
    batch_columns = [c for c in batch_raw.columns if not (inputs.batch.id_generated and c == inputs.id_column)]
    common = [c for c in batch_columns if c in trusted_columns and c not in ignore and inputs.batch.has_values(c)]
    # Empty in every trusted row: the reference says nothing of its kind or values, as of a new column.
    filled = [c for c in common if not inputs.reference.has_values(c)]
    common = [c for c in common if c not in filled]
    # The same rule as cell typing: a column changed type when most of its
    # values no longer parse, not when a few cells are broken (row findings).
    threshold = 1.0 - MAX_UNPARSABLE_FRACTION
    # Columns typed as numbers (or times) were parsed once already: their
    # parsed share decides (parsing a million text cells again took 5 s of a CSV run).
    parsed = {c: share for c, share in inputs.batch_typed.parsed_shares.items() if c in common}
    # Whether a column of digits holds zero-padded codes depends on which
    # rows a batch drew (a batch of West Coast postcodes has no 0xxxx): here
    # both sides read them as numbers, alike.
    batch_kinds = infer_kinds(batch_raw, [c for c in common if c not in parsed], threshold=threshold,
                              zero_padded_codes=False)
    typed_kinds = inputs.batch_typed.kinds
    batch_kinds.update({c: typed_kinds[c] if share >= threshold else "categorical" for c, share in parsed.items()})
    trusted_kinds = infer_kinds(trusted_raw, common, threshold=threshold, zero_padded_codes=False)
    _judge_mixed_columns_alike(trusted_raw, batch_raw, trusted_kinds, batch_kinds)
    problems = drift.schema_drift(
        trusted_columns, batch_columns, trusted_kinds=trusted_kinds, batch_kinds=batch_kinds, ignore=ignore,
    )
    emptied = [c for c in batch_columns if c in trusted_columns and c not in ignore and c not in common + filled]
    p_value = inputs.settings.config.batch.p_value
    return problems + _filled_columns(batch_raw, filled) + _emptied_columns(trusted_raw, len(batch_raw), emptied, p_value)


def _judge_mixed_columns_alike(trusted_raw, batch_raw, trusted_kinds: dict, batch_kinds: dict) -> None:
    """A column changed kind only from one clear kind to the other: update ``batch_kinds`` so.

    Both sides are read at a half of the cells parsing (``batch_kinds``,
    ``trusted_kinds``). A column of numbers and words mixed near that share
    (DAAG's biomass: a factor of levels 2, 6 and z) is one kind or the other
    as the rows fall: its 14 trusted rows read as numbers and the batch as
    categories, and a clean batch was rejected. Numeric trusted cells must
    parse as numbers for the run (``NUMERIC_INFERENCE_FRACTION``) for the
    batch to have left them, and a categorical batch's cells must, for it to
    have turned into numbers; otherwise the batch reads as its trusted rows.
    """
    for column, before in trusted_kinds.items():
        after = batch_kinds.get(column)
        if after is None or before == after or {before, after} != {"numeric", "categorical"}:
            continue
        numeric_side = trusted_raw if before == "numeric" else batch_raw
        if infer_kinds(numeric_side, [column], zero_padded_codes=False)[column] != "numeric":
            batch_kinds[column] = before


def _filled_columns(batch_raw: pd.DataFrame, columns: list[str]) -> list[drift.BatchCheck]:
    """Columns with values in the batch that no trusted row has: new to the reference, as a new column is."""
    found = []
    for column in columns:
        share = float((~missing_mask(batch_raw[column])).mean())
        reason = (f"column {display(column)} is empty in every trusted row but has a value in {share:.0%} of batch "
                  "rows: as for a new column, the reference shows nothing to check them against")
        found.append(drift.BatchCheck("batch.schema", column, "filled column", 1.0, 0.0, 0.0, True, reason))
    return found


def _emptied_columns(trusted_raw: pd.DataFrame, batch_rows: int, columns: list[str], p_value: float):
    """Columns with no value in any batch row, where the trusted rows have values.

    Each cell has its own not-null expectation, but a whole column emptied
    is damage to the batch (an export that lost a field), not a handful of
    rows. Judged like the other batch checks, by how unlikely it is: with
    ``q`` the share of empty cells the trusted rows allow (the one-sided 95 %
    Clopper-Pearson upper bound of ``k`` empty among ``m``, about ``3 / m``
    when ``k = 0``: a reference never shows a rate of exactly zero), ``n``
    empty batch rows happen with probability ``q ** n``; below
    ``batch.p_value`` the batch fails.
    """
    found = []
    trusted_rows = len(trusted_raw)
    for column in columns:
        present = int((~missing_mask(trusted_raw[column])).sum()) if trusted_rows else 0
        if present == 0:
            continue  # empty in the trusted rows too: nothing was lost
        filled = present / trusted_rows
        empty = trusted_rows - present
        allowed = float(stats.beta.ppf(0.95, empty + 1, trusted_rows - empty)) if empty < trusted_rows else 1.0
        chance = allowed ** batch_rows
        failed = chance < p_value
        reason = (
            f"column {display(column)} is empty in all {batch_rows} batch rows, but {filled:.0%} of trusted rows "
            f"have a value (chance {chance:.2g})"
        )
        found.append(drift.BatchCheck("batch.schema", column, "emptied column", 1.0, 0.0, chance, failed, reason))
    return found


def _allow_some_drift(results: list[drift.BatchCheck], allowed: int) -> list[drift.BatchCheck]:
    """With ``allowed`` > 0, a batch fails only when more columns than that drift."""
    drifted = sum(r.failed for r in results)
    if allowed == 0 or drifted > allowed:
        return results
    return [replace(r, failed=False) for r in results]


def _outcome(name: str, results: list[drift.BatchCheck], notes: list[str], rows: int, started: float):
    failed = [r for r in results if r.failed]
    findings = (
        make_findings(
            row_ids=[""] * len(results),
            check="",
            scores=[r.statistic for r in results],
            flagged=[r.failed for r in results],
            reasons=[r.reason for r in results],
        ).assign(check=[r.check for r in results])
        if results
        else empty_findings()
    )
    return CheckOutcome(
        name=name,
        kind=BATCH_KIND,
        findings=findings,
        rows_checked=rows,
        batch_failures=[f"{r.check}: {r.reason}" for r in failed],
        details={"table": [r.as_dict() for r in results], "notes": notes,
                 "checks": sorted({r.check for r in results})},
        seconds=time.perf_counter() - started,
    )
