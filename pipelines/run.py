"""One ad hoc run, stage by stage: inputs, expectations, detectors, decision.

Each stage is a plain function of plain values, importable and testable without
Prefect. ``execute`` wires them; the Prefect flow (``pipelines.flows``) calls
the same ``execute`` with a stage runner that turns each stage into a task, so
the wiring exists once.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from detectors.base import FINDING_COLUMNS, empty_findings, get_detector, make_findings
from detectors.features import FeatureEncoder
from expectations import column_kinds, infer_suite, load_suite, validate_frame
from pipelines.batch_io import LoadedTable, TypedTable, coerce_types, infer_kinds, load_table
from pipelines.errors import InputError
from pipelines.evidence import collect_evidence
from pipelines.settings import RunSettings

EXPECTATION_PREFIX = "expectation."


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

    @property
    def label(self) -> str:
        return self.settings.label

    @property
    def id_column(self) -> str:
        return self.batch.id_column


@dataclass(frozen=True)
class CheckOutcome:
    """What one check (the expectation suite, or one detector) found."""

    name: str
    kind: str  # "expectation" | "detector"
    findings: pd.DataFrame
    rows_checked: int
    batch_failures: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Decision:
    """Which rows are kept and which are quarantined, and why."""

    quarantined_ids: list[str]
    kept_ids: list[str]
    flagged: pd.DataFrame  # flagged findings, FINDING_COLUMNS
    per_check: pd.DataFrame
    notes: list[str]


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
    batch = load_table(settings.batches, label=label, id_column=dataset.id, role="batch")
    reference = None
    unexpected: list[str] = []
    if dataset.reference is not None:
        reference = load_table([dataset.reference], label=label, id_column=None, role="reference")
        unexpected = [c for c in _data_columns(batch) if c not in reference.raw.columns and c != dataset.id]
        # A new column is schema drift: the batch-level schema check rejects
        # the batch with the evidence. Without that check it is an input error.
        if unexpected and "schema" not in settings.config.batch.checks:
            raise InputError(
                f"{dataset.reference}: reference lacks the batch's column(s) {', '.join(map(repr, unexpected))}"
            )
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
        if len(reference_typed.findings) or reference_typed.batch_failures:
            first = (reference_typed.batch_failures or list(reference_typed.findings["reason"]))[0]
            raise InputError(f"{dataset.reference}: the trusted reference has unparsable values: {first}")
    suite, source = _suite(settings, reference, reference_typed, feature_columns, kinds)
    batch_typed = coerce_types(batch.raw, typing_kinds, id_column=batch.id_column, source=_names(settings.batches))
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
    )


def preload_inputs(settings: RunSettings) -> RunInputs:
    """Load inputs now and keep them for the next ``load_inputs`` of the same settings."""
    inputs = load_inputs(settings)
    _PRELOADED.clear()
    _PRELOADED[_preload_key(settings)] = inputs
    return inputs


def check_expectations(inputs: RunInputs) -> CheckOutcome:
    """Apply cell typing and the expectation suite; row failures become findings."""
    started = time.perf_counter()
    typed = inputs.batch_typed
    failures = list(typed.batch_failures)
    findings = [typed.findings]
    results: list[dict] = []
    if inputs.suite is not None:
        outcome = validate_frame(typed.typed, inputs.suite, id_column=inputs.id_column)
        findings.append(_without_empty_for_broken(outcome.row_findings, typed.broken_cells))
        failures.extend(outcome.batch_failures)
        results = outcome.results
    else:
        findings.append(_unlabelled_rows(typed.typed, inputs.label, inputs.id_column))
    combined = _concat(findings)
    return CheckOutcome(
        name="expectations",
        kind="expectation",
        findings=combined,
        rows_checked=len(typed.typed),
        batch_failures=failures,
        details={"suite_source": inputs.suite_source, "results": results},
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class FeatureMatrices:
    """Encoded features of trusted and batch rows, ready for detectors."""

    trusted_features: Optional[pd.DataFrame]
    trusted_labels: Optional[np.ndarray]
    batch_features: pd.DataFrame
    batch_labels: np.ndarray
    batch_row_ids: np.ndarray
    encoder: FeatureEncoder


def encode_features(inputs: RunInputs) -> FeatureMatrices:
    """Encode features with an encoder fitted on the trusted rows (or the batch)."""
    numeric = [c for c in inputs.feature_columns if inputs.kinds[c] == "numeric"]
    categorical = [c for c in inputs.feature_columns if inputs.kinds[c] == "categorical"]
    batch = inputs.batch_typed.typed
    trusted = inputs.reference_typed.typed if inputs.reference_typed is not None else None
    encoder = FeatureEncoder(numeric=numeric, categorical=categorical)
    encoder.fit(trusted if trusted is not None else batch)
    label = inputs.label
    return FeatureMatrices(
        trusted_features=encoder.transform(trusted) if trusted is not None else None,
        trusted_labels=_labels(trusted[label]) if trusted is not None else None,
        batch_features=encoder.transform(batch),
        batch_labels=_labels(batch[label]),
        batch_row_ids=batch[inputs.id_column].astype(str).to_numpy(),
        encoder=encoder,
    )


def run_detector(name: str, features: FeatureMatrices, settings: RunSettings) -> CheckOutcome:
    """Fit one registered detector on trusted rows (or the batch) and score the batch."""
    started = time.perf_counter()
    detection = settings.config.detection
    params = {"alpha": detection.detector_alpha, "random_state": detection.random_state, **detection.params.get(name, {})}
    detector = get_detector(name, **params)
    needs_labels = name.startswith("label.")
    rows = features.batch_labels != "" if needs_labels else np.ones(len(features.batch_labels), dtype=bool)
    X, y, ids = features.batch_features[rows], features.batch_labels[rows], features.batch_row_ids[rows]
    if features.trusted_features is not None:
        detector.fit(features.trusted_features, features.trusted_labels)
        findings = detector.findings(X, y, ids)
        mode = "calibrated on the trusted reference"
    else:
        findings = detector.self_findings(X, y, ids)
        mode = "calibrated on the batch itself (no trusted reference)"
    return CheckOutcome(
        name=name,
        kind="detector",
        findings=findings,
        rows_checked=int(rows.sum()),
        details={"class": type(detector).__name__, "params": _jsonable(detector.get_params()), "mode": mode},
        seconds=time.perf_counter() - started,
    )


def decide(inputs: RunInputs, outcomes: list[CheckOutcome]) -> Decision:
    """Quarantine every row that any check flagged; keep the rest.

    Every batch row ends in exactly one of the two lists.
    """
    all_ids = inputs.batch.row_ids.tolist()
    flagged = _concat([o.findings[o.findings["flagged"]] for o in outcomes])
    # Batch-level findings (empty row id) judge the batch, not a row.
    flagged = flagged[flagged["row_id"] != ""].reset_index(drop=True)
    quarantined = set(flagged["row_id"])
    rows = []
    for outcome in outcomes:
        checks = outcome.findings
        if outcome.kind == "batch":
            from pipelines.drift import per_check_rows

            rows += per_check_rows(outcome)
            continue
        names = sorted(checks["check"].unique()) if outcome.kind == "expectation" else [outcome.name]
        for check in names or [outcome.name]:
            mine = checks[checks["check"] == check]
            # Rows, not findings: one row can break a range on many columns.
            flagged_rows = set(mine.loc[mine["flagged"], "row_id"])
            elsewhere = set(flagged.loc[flagged["check"] != check, "row_id"])
            rows.append(
                {
                    "check": check,
                    "kind": outcome.kind,
                    "rows_checked": outcome.rows_checked,
                    "flagged": len(flagged_rows),
                    "flagged_only_here": len(flagged_rows - elsewhere),
                    "alpha": outcome.details.get("params", {}).get("alpha", float("nan")),
                    "threshold_note": outcome.details.get("mode", "rule from the expectation suite"),
                }
            )
    per_check = pd.DataFrame(rows)
    if not per_check.empty:
        per_check["flagged_percent"] = 100.0 * per_check["flagged"] / per_check["rows_checked"].clip(lower=1)
    notes = []
    if inputs.reference is None:
        notes.append(
            "No trusted reference was given: detectors were calibrated on the batch itself "
            "with contamination-robust estimates, and no expectation suite was inferred."
        )
    return Decision(
        quarantined_ids=[i for i in all_ids if i in quarantined],
        kept_ids=[i for i in all_ids if i not in quarantined],
        flagged=flagged,
        per_check=per_check,
        notes=notes,
    )


StageRunner = Callable[..., Any]


def run_stage_directly(name: str, function: Callable, *args, **options):
    """The default stage runner: call the stage (``options`` are for Prefect)."""
    return function(*args)


@dataclass(frozen=True)
class ReviewVerdict:
    """A person's (or a policy's) answer about a batch whose quarantine rate is high.

    ``action`` is ``"approve"`` (publish as decided), ``"reject"`` (quarantine
    the whole batch) or ``"hold"`` (publish nothing yet; ask again later).
    """

    action: str
    reason: str = ""


# ``review(inputs, decision) -> ReviewVerdict or None``; None means no review is needed.
ReviewGate = Callable[["RunInputs", Decision], Optional[ReviewVerdict]]


def execute(settings: RunSettings, *, run_stage: StageRunner = run_stage_directly, review: Optional[ReviewGate] = None):
    """Run every stage of one ad hoc run and publish its signed output.

    Parameters
    ----------
    settings : RunSettings
    run_stage : callable ``(name, function, *args, **options) -> result``
        How to run a stage; the Prefect flow passes one that makes it a task.
    review : callable ``(inputs, decision) -> ReviewVerdict or None``, optional
        Asked after the decision, before publishing (``poisonguard watch``
        pauses for a person here when too much of a batch is quarantined).

    Returns
    -------
    pipelines.publish.RunSummary
        ``status`` is ``"succeeded"``, ``"rejected"`` (a batch-level check
        failed or a reviewer rejected the batch) or ``"held"``.
    """
    from pipelines import drift, publish  # publish imports signing and the store

    started_at = publish.utc_now()
    work_started = time.perf_counter()
    inputs = run_stage("load-inputs", load_inputs, settings)
    run = publish.open_run(inputs, started_at)
    try:
        outcomes = [run_stage("check-expectations", check_expectations, inputs)]
        batch = run_stage("check-batch", drift.check_batch, inputs)
        outcomes += [batch] if batch is not None else []
        if any(o.batch_failures for o in outcomes):
            # A rejected batch is an outcome, not a crash: the caller decides
            # how to surface it (the CLI exits non-zero, a watcher moves on).
            return run_stage("reject-batch", publish.reject_batch, run, inputs, outcomes, work_started)
        features = run_stage("encode-features", encode_features, inputs)
        for name in settings.config.detection.detectors:
            outcomes.append(run_stage(f"detect-{name}", run_detector, name, features, settings))
        decision = run_stage("decide", decide, inputs, outcomes)
        impact = run_stage("check-model-impact", drift.check_model_impact, inputs, features, decision)
        if impact is not None:
            outcomes.append(impact)
            if impact.batch_failures:
                return run_stage("reject-batch", publish.reject_batch, run, inputs, outcomes, work_started)
            decision = decide(inputs, outcomes)  # the same rows, now with the impact check counted
        verdict = review(inputs, decision) if review is not None else None
        if verdict is not None and verdict.action == "reject":
            outcomes.append(_reviewed(verdict, len(inputs.batch.raw)))
            return run_stage("reject-batch", publish.reject_batch, run, inputs, outcomes, work_started)
        if verdict is not None and verdict.action == "hold":
            return run_stage("hold-batch", publish.hold_batch, run, inputs, outcomes, verdict.reason, work_started)
        if verdict is not None:  # approved: the report and provenance say by whom
            decision = replace(decision, notes=[*decision.notes, f"Published after review: {verdict.reason}."])
        evidence = run_stage("collect-evidence", collect_evidence, inputs, features, decision)
        return run_stage("publish", publish.publish, run, inputs, outcomes, decision, evidence, work_started)
    except BaseException as error:
        publish.close_failed_run(run, error)
        raise


def _reviewed(verdict: ReviewVerdict, rows: int) -> CheckOutcome:
    """The reviewer's rejection as a batch-level check, so the report shows it."""
    findings = empty_findings()
    return CheckOutcome(
        name="batch.review", kind="batch", findings=findings, rows_checked=rows,
        batch_failures=[f"batch.review: {verdict.reason}"], details={"table": [], "notes": [verdict.reason]},
    )


def _kinds(settings, batch, reference, feature_columns) -> dict[str, str]:
    dataset = settings.config.dataset
    if dataset.suite is not None and (dataset.numeric is None and dataset.categorical is None):
        known = column_kinds(load_suite(dataset.suite))
        if known:
            rest = [c for c in feature_columns if c not in known]
            source = reference.raw if reference is not None else batch.raw
            return {**{c: known[c] for c in feature_columns if c in known}, **infer_kinds(source, rest)}
    source = reference.raw if reference is not None else batch.raw
    return infer_kinds(source, feature_columns, numeric=dataset.numeric, categorical=dataset.categorical)


def _suite(settings, reference, reference_typed, feature_columns, kinds):
    dataset = settings.config.dataset
    if dataset.suite is not None:
        return load_suite(dataset.suite), str(dataset.suite)
    if reference is None:
        return None, "none: no suite configured and no reference to infer one from"
    suite = infer_suite(
        reference_typed.typed.drop(columns=[reference.id_column]),
        name=dataset.name,
        label=settings.label,
        id_column=dataset.id,
        numeric=[c for c in feature_columns if kinds[c] == "numeric"],
        categorical=[c for c in feature_columns if kinds[c] == "categorical"],
        ignore=list(dataset.ignore),
    )
    return suite, f"inferred from the reference {dataset.reference}"


def _without_empty_for_broken(findings: pd.DataFrame, broken_cells: list[tuple[str, str]]) -> pd.DataFrame:
    """Drop "x is empty" for cells that were not empty but unparsable.

    An unparsable cell is missing in the typed frame, so the not-null rule
    fires too; its own finding ("x = 'oops' is not a number") says it better.
    """
    if not broken_cells or findings.empty:
        return findings
    redundant = {(row_id, f"{column} is empty") for row_id, column in broken_cells}
    keep = [
        not (check == "expectation.values_to_not_be_null" and (row_id, reason.split(" but ")[0]) in redundant)
        for row_id, check, reason in zip(findings["row_id"], findings["check"], findings["reason"])
    ]
    return findings[keep].reset_index(drop=True)


def _data_columns(table: LoadedTable) -> list[str]:
    return [c for c in table.raw.columns if not (table.id_generated and c == table.id_column)]


def _unlabelled_rows(frame: pd.DataFrame, label: str, id_column: str) -> pd.DataFrame:
    """Rows with an empty label, as the suite's not-null rule on the label would report them.

    Without a reference there is no suite, but a row without a label is of no
    use to training whatever the detectors say (and they skip it).
    """
    empty = _labels(frame[label]) == ""
    return make_findings(
        row_ids=frame.loc[empty, id_column].astype(str).to_numpy(),
        check=f"{EXPECTATION_PREFIX}values_to_not_be_null",
        scores=np.ones(int(empty.sum())),
        flagged=np.ones(int(empty.sum()), dtype=bool),
        reasons=np.full(int(empty.sum()), f"{label} is empty but every row needs a label", dtype=object),
    )


def _labels(series: pd.Series) -> np.ndarray:
    return series.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).to_numpy(dtype=object)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[FINDING_COLUMNS] if frames else empty_findings()


def _names(paths) -> str:
    return ", ".join(str(p) for p in paths)


def _preload_key(settings: RunSettings) -> str:
    stats = []
    for path in [*settings.batches, settings.config.dataset.reference, settings.config.dataset.suite]:
        if path is not None and path.exists():
            stat = path.stat()
            stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return settings.model_dump_json() + json.dumps(stats)


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))
