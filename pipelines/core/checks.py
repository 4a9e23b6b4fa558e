"""The row-level checks of a run: the expectation suite and the detectors.

Each returns a :class:`CheckOutcome` holding findings in the one table shape
of ``poisonguard.detectors.base.FINDING_COLUMNS``.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator, Optional

import numpy as np
import pandas as pd

from poisonguard.detectors._unique import distinct_objects
from poisonguard.detectors.base import FINDING_COLUMNS, empty_findings, make_findings
from poisonguard.detectors.errors import NotEnoughData
from poisonguard.detectors.registry import detector_parameters, get_detector
from poisonguard.detectors.features import FeatureEncoder
from poisonguard.expectations import validate_frame
from poisonguard.pipelines.core.inputs import RunInputs
from poisonguard.pipelines.core.settings import RunSettings

EXPECTATION_PREFIX = "expectation."
# Characters of a label the detectors compare (see label_texts).
LABEL_WIDTH = 200
# Cross-fitting holds each trusted row out once: a label needs two trusted rows.
MIN_TRUSTED_ROWS_PER_LABEL = 2


@dataclass(frozen=True)
class JudgedRows:
    """Every row a detector judged, as arrays, once its findings keep only the rows that can be quarantined.

    A detector's findings table costs 33 bytes a row (its check name and
    reason held per row); eight of them were 264 MB at a million rows, held
    from the detectors to the end of the run. The decision needs only each
    row's p-value and flag, and the report each row's score.

    Attributes
    ----------
    row_ids : numpy.ndarray of object, shape (n_rows,)
        The judged rows' ids (the features' own array, not a copy).
    scores, p_values : numpy.ndarray of float, shape (n_rows,)
        ``p_values`` NaN where the detector gave none.
    flagged : numpy.ndarray of bool, shape (n_rows,)
        The detector's own flags; after ``decision.apply_decision_rule``, the decision's.
    findings_rows : numpy.ndarray of int, shape (n_findings,)
        Where each row of the outcome's findings is in these arrays.
    """

    row_ids: np.ndarray
    scores: np.ndarray
    p_values: np.ndarray
    flagged: np.ndarray
    findings_rows: np.ndarray


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
    # Per check, the scores and flags of every row-level finding, as arrays,
    # for the report's histograms: kept when ``findings`` is cut down, to the
    # rows that can be quarantined (``keep_quarantinable``) or once the
    # decision is made to the flagged ones (``outputs.publish.slim_outcomes``).
    # None while ``findings`` holds every row.
    scores: Optional[dict] = None
    # A detector's every judged row (``findings`` then holds only the rows
    # that can be quarantined: ``keep_quarantinable``); None when ``findings`` holds them all.
    judged: Optional[JudgedRows] = None


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
    combined = concat_findings(findings)
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
    notes: list[str] = field(default_factory=list)


def encode_features(inputs: RunInputs) -> FeatureMatrices:
    """Encode features with an encoder fitted on the trusted rows (or the batch).

    Columns that are one constant in every trusted and batch row (the
    missing-value indicator of a column with no gap anywhere) are left out:
    they tell no row from another, and each costs every neighbour search.
    The notes say which columns were encoded by rarity or left out as text.
    """
    numeric = [c for c in inputs.feature_columns if inputs.kinds[c] == "numeric"]
    categorical = [c for c in inputs.feature_columns if inputs.kinds[c] == "categorical"]
    batch = inputs.batch_typed.typed
    trusted = inputs.reference_typed.typed if inputs.reference_typed is not None else None
    fitted_on = trusted if trusted is not None else batch
    encoder = FeatureEncoder(numeric=numeric, categorical=categorical)
    encoder.fit(fitted_on)
    label = inputs.label
    # Indicators of columns with no gap in any row are never written (a
    # million rows' copy without them cost more than encoding them).
    gapless = encoder.gapless_indicators(*[frame for frame in (batch, trusted) if frame is not None])
    trusted_features = encoder.transform(trusted, without=gapless) if trusted is not None else None
    batch_features = encoder.transform(batch, without=gapless)
    constant = _constant_columns(batch_features, trusted_features)
    if constant:
        batch_features = _without_columns(batch_features, constant)
        trusted_features = _without_columns(trusted_features, constant) if trusted_features is not None else None
    notes = [
        f"column {column!r} has {len(encoder.rarities_[column]):,} distinct values: the detectors see how rare "
        "each value is (one feature), not one feature per value"
        for column in encoder.rarity_columns_
    ] + [
        f"column {column!r} looks like free text (nearly every value distinct): left to the expectations, "
        "not used by the detectors"
        for column in encoder.text_columns_
    ] + [
        f"column {column!r} numbers the rows (a distinct whole number on every row): kept, but not checked "
        f"or used as a feature; pass --id {column} to key rows by it, or list it under dataset.numeric to check it"
        for column in inputs.row_number_columns
    ] + [
        f"column {column!r} holds dates or times: kept and checked to be dates or times, but not used as a feature "
        "or held to the reference's range (a later batch comes later)"
        for column in inputs.time_columns
    ]
    return FeatureMatrices(
        trusted_features=trusted_features,
        trusted_labels=label_texts(trusted[label]) if trusted is not None else None,
        batch_features=batch_features,
        batch_labels=label_texts(batch[label]),
        batch_row_ids=inputs.batch.row_ids.to_numpy(dtype=object),
        encoder=encoder,
        notes=notes,
    )


def _constant_columns(batch: pd.DataFrame, trusted: Optional[pd.DataFrame]) -> list[str]:
    """Columns holding one value in every batch and trusted row."""
    frames = [batch] if trusted is None else [batch, trusted]
    if not len(batch.columns) or any(frame.empty for frame in frames):
        return []
    first = batch.iloc[0].to_numpy()
    matrices = [frame.to_numpy() for frame in frames]  # views of the encoder's matrix
    # Column by column: comparing whole matrices at once held a boolean copy of each.
    return [
        column for position, column in enumerate(batch.columns)
        if all((matrix[:, position] == first[position]).all() for matrix in matrices)
    ]


def _without_columns(features: pd.DataFrame, dropped: list[str]) -> pd.DataFrame:
    """``features.drop(columns=dropped)``, kept row-major like the encoder's (``FeatureEncoder.transform``)."""
    dropped = set(dropped)
    keep = [position for position, column in enumerate(features.columns) if column not in dropped]
    matrix = np.ascontiguousarray(features.to_numpy()[:, keep])
    return pd.DataFrame(matrix, columns=features.columns[keep], index=features.index, copy=False)


def _shared_params(detection, name: str) -> dict:
    """The parameters every detector takes from ``[detection]`` (``alpha`` aside).

    A detector registered without ``confidence`` (one written before it
    existed) still runs at the default, on average over references, and its
    details say so; when the config asks for a confidence by name it is
    refused by name, like any parameter it does not take.
    """
    shared = {"random_state": detection.random_state}
    confidence = detection.detector_confidence
    asked = "calibration_confidence" in detection.model_fields_set
    if confidence is not None and (asked or "confidence" in detector_parameters(name)):
        shared["confidence"] = confidence
    return shared


@dataclass(frozen=True)
class DetectorPlan:
    """One detector set up for a batch, before it is fitted: what ``run_detector`` fits and judges.

    Attributes
    ----------
    name : str
    detector : Detector
        Unfitted, with the run's parameters and reason level.
    rows : numpy.ndarray of bool, shape (n_batch,) or None
        The batch rows it judges (None: every row).
    trusted_features : pandas.DataFrame or None
        What it is fitted on (None: it judges the batch against itself);
        ``trusted_labels`` their labels. Labels with a single trusted row are left out.
    details : dict
        The outcome's details so far.
    started : float
        ``time.perf_counter()`` when it was planned.
    """

    name: str
    detector: object
    rows: Optional[np.ndarray]
    trusted_features: Optional[pd.DataFrame]
    trusted_labels: Optional[np.ndarray]
    details: dict
    started: float

    def batch_rows(self, features: "FeatureMatrices") -> tuple:
        """The features, labels and ids of the rows it judges."""
        if self.rows is None:
            # Not a masked copy of every row (160 MB of features at a million rows).
            return features.batch_features, features.batch_labels, features.batch_row_ids
        return features.batch_features[self.rows], features.batch_labels[self.rows], self.row_ids(features)

    def row_ids(self, features: "FeatureMatrices") -> np.ndarray:
        """The ids of the rows it judges."""
        return features.batch_row_ids if self.rows is None else features.batch_row_ids[self.rows]


def plan_detector(name: str, features: FeatureMatrices, settings: RunSettings):
    """Set up one registered detector for the batch; a skipped outcome where it has nothing to judge.

    Returns
    -------
    DetectorPlan or CheckOutcome
    """
    started = time.perf_counter()
    detection = settings.config.detection
    params = {"alpha": detection.detector_alpha, **_shared_params(detection, name), **detection.params.get(name, {})}
    # Only a row flagged here or with p at most the rate can be quarantined
    # (``decision.apply_decision_rule``): the others need no sentence.
    detector = get_detector(name, **params).set_reasons(p_value_at_most=detection.max_false_positive_rate)
    # A detector that reads every row's label is not given the rows without
    # one, unless it judges an empty label like any other (its tags say so).
    tags = detector.tags
    skip_unlabelled = tags.needs_labels and not tags.accepts_empty_labels
    rows = features.batch_labels != "" if skip_unlabelled else np.ones(len(features.batch_labels), dtype=bool)
    details = {"class": type(detector).__name__, "params": _jsonable(detector.get_params())}
    if detection.detector_confidence is not None and "confidence" not in details["params"]:
        details["calibration"] = "takes no confidence: its level holds on average over references"
    trusted_features, trusted_labels = features.trusted_features, features.trusted_labels
    duplicate = _same_test_as(detector, settings) if trusted_features is None else None
    if duplicate is not None:
        return _skipped(name, details, duplicate, started)
    if features.batch_features.shape[1] == 0:
        # Every column was one value on every row (a batch of one row, say), so none was kept as a feature.
        return _skipped(name, details, "no feature column holds more than one value across the rows, so there is "
                        "nothing to tell rows apart by", started)
    if tags.needs_labels and trusted_labels is not None:
        # A label with a single trusted row cannot be cross-fitted (one row
        # cannot be both trained on and held out): leave that label out of
        # this detector, trusted and batch rows alike, rather than the detector.
        values, counts = np.unique(trusted_labels, return_counts=True)
        rare = [str(value) for value, count in zip(values, counts) if count < MIN_TRUSTED_ROWS_PER_LABEL]
        if rare:
            keep = ~np.isin(trusted_labels, rare)
            trusted_features, trusted_labels = trusted_features[keep], trusted_labels[keep]
            rows &= ~np.isin(features.batch_labels, rare)
            details["rare_labels"] = rare
    return DetectorPlan(name=name, detector=detector, rows=None if rows.all() else rows,
                        trusted_features=trusted_features, trusted_labels=trusted_labels, details=details,
                        started=started)


def run_detector(name: str, features: FeatureMatrices, settings: RunSettings) -> CheckOutcome:
    """Fit one registered detector on trusted rows (or the batch) and score the batch."""
    plan = plan_detector(name, features, settings)
    if isinstance(plan, CheckOutcome):
        return plan
    X, y, ids = plan.batch_rows(features)
    detector = plan.detector
    try:
        with library_warnings() as caught:
            if plan.trusted_features is not None:
                detector.fit(plan.trusted_features, plan.trusted_labels)
                findings = detector.findings(X, y, ids)
            else:
                findings = detector.self_findings(X, y, ids)
    except NotEnoughData as error:
        # Too few rows (or labels) to judge anything is a fact about this
        # batch, not a failure: the check is skipped, and the report says so.
        return skipped_plan(plan, str(error))
    return planned_outcome(plan, findings, ids, caught, settings)


def skipped_plan(plan: DetectorPlan, reason: str) -> CheckOutcome:
    """The outcome of a planned detector that found too little to judge (``NotEnoughData``)."""
    return _skipped(plan.name, dict(plan.details), reason, plan.started)


def planned_outcome(plan: DetectorPlan, found, row_ids: np.ndarray, caught: list[str],
                    settings: RunSettings) -> CheckOutcome:
    """The outcome of a planned detector on ``row_ids``, with the libraries' warnings ``caught``.

    ``found`` is its findings, or the outcome ``quarantinable_outcome`` made
    of them where they were found (a Dask worker).
    """
    details = dict(plan.details)
    details["mode"] = ("calibrated on the trusted reference" if plan.trusted_features is not None
                       else "calibrated on the batch itself (no trusted reference)")
    if caught:
        details["warnings"] = list(caught)
    if isinstance(found, CheckOutcome):
        # Every row's arrays named by this process's own ids (equal to the worker's copy, which can go).
        judged = replace(found.judged, row_ids=row_ids) if found.judged is not None else None
        outcome = replace(found, name=plan.name, details=details, judged=judged)
    else:
        outcome = quarantinable_outcome(plan.name, found, row_ids, settings.config.detection.max_false_positive_rate)
        outcome = replace(outcome, details=details)
    return replace(outcome, seconds=time.perf_counter() - plan.started)


def quarantinable_outcome(name: str, findings: pd.DataFrame, row_ids: np.ndarray, rate: float) -> CheckOutcome:
    """A detector's outcome from its findings on ``row_ids``, cut to the rows that can be quarantined (``keep_quarantinable``)."""
    outcome = CheckOutcome(name=name, kind="detector", findings=findings, rows_checked=len(row_ids))
    return keep_quarantinable(outcome, row_ids, rate)


def keep_quarantinable(outcome: CheckOutcome, row_ids: np.ndarray, rate: float) -> CheckOutcome:
    """The detector outcome with findings only for rows it flags or gives a p-value of at most ``rate``, the rest as arrays.

    No other row can be quarantined: the decision (``decision.apply_decision_rule``)
    keeps a detector's flag only where it is a hard flag (flagged, whatever
    its p-value) or where its p-value carries the row's combined rejection,
    which needs a p-value at most the level, and the level is at most
    ``max_false_positive_rate``. Every row's score, p-value and flag stay in
    ``judged``. An outcome whose findings are not one per row of
    ``row_ids``, in order, is returned as it is.

    Parameters
    ----------
    outcome : CheckOutcome
        A detector's, with a finding per judged row.
    row_ids : numpy.ndarray of object, shape (n_rows,)
        The rows the detector judged, in order.
    rate : float
        ``detection.max_false_positive_rate``.
    """
    findings = outcome.findings
    ids = findings["row_id"].to_numpy(dtype=object)
    if outcome.judged is not None or len(ids) != len(row_ids) or not (ids == row_ids).all():
        return outcome
    p_values = findings["p_value"].to_numpy(dtype=float)
    flagged = findings["flagged"].to_numpy(dtype=bool)
    scores = findings["score"].to_numpy(dtype=float)
    keep = np.flatnonzero(flagged | (p_values <= rate))
    judged = JudgedRows(row_ids=np.asarray(row_ids, dtype=object), scores=scores, p_values=p_values,
                        flagged=flagged, findings_rows=keep)
    return replace(outcome, findings=findings.iloc[keep].reset_index(drop=True), judged=judged,
                   scores={outcome.name: (scores, flagged)})


def with_decided_flags(outcome: CheckOutcome, flagged: np.ndarray, details: dict) -> CheckOutcome:
    """``outcome`` with the decision's flags, ``flagged``, one per judged row (``judged_arrays``' rows)."""
    if outcome.judged is None:
        return replace(outcome, findings=outcome.findings.assign(flagged=flagged), details=details)
    judged = replace(outcome.judged, flagged=flagged)
    return replace(
        outcome, findings=outcome.findings.assign(flagged=flagged[judged.findings_rows]), details=details,
        judged=judged, scores={outcome.name: (judged.scores, flagged)},
    )


def judged_arrays(outcome: CheckOutcome) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row ids, p-values (NaN where none) and flags of every row a detector judged."""
    if outcome.judged is not None:
        judged = outcome.judged
        return judged.row_ids, judged.p_values, judged.flagged
    findings = outcome.findings
    return (findings["row_id"].to_numpy(dtype=object), findings["p_value"].to_numpy(dtype=float),
            findings["flagged"].to_numpy(dtype=bool))


def _skipped(name: str, details: dict, reason: str, started: float) -> CheckOutcome:
    """A detector that judged nothing on this batch, and why (the report says so)."""
    details.update(mode=f"skipped: {reason}", skipped=reason)
    return CheckOutcome(name=name, kind="detector", findings=empty_findings(), rows_checked=0,
                        details=details, seconds=time.perf_counter() - started)


def _same_test_as(detector, settings: RunSettings) -> Optional[str]:
    """Why ``detector`` would repeat another configured detector's test on a batch without a reference, or None.

    Counted twice, one test would read to the decision as two detectors
    agreeing: Simes' rule quarantines two equal p-values at twice the level.
    """
    other = detector.tags.self_findings_of
    detection = settings.config.detection
    if other is None or other not in detection.detectors:
        return None
    other_params = get_detector(
        other, **{**_shared_params(detection, other), **detection.params.get(other, {})}).self_findings_params()
    mine = detector.self_findings_params()
    if any(mine[key] != other_params[key] for key in (mine.keys() & other_params.keys()) - {"alpha"}):
        return None
    return (f"without a trusted reference it would score the batch with the same cross-fitted models as {other}, "
            "so that test is counted once")


@contextmanager
def library_warnings() -> Iterator[list[str]]:
    """Collect what libraries warn about while a check runs, for the report instead of the terminal.

    scikit-learn's ConvergenceWarning, PyOD's precision notes and numpy's
    floating-point warnings say something about this batch; printed between
    progress lines they read as faults. Each distinct message is kept once,
    cut to one line.
    """
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    for warning in caught:
        text = f"{warning.category.__name__}: {str(warning.message).strip().splitlines()[0] if str(warning.message).strip() else ''}"
        text = text if len(text) <= 200 else text[:199] + "…"
        if text not in messages:
            messages.append(text)


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


def _unlabelled_rows(frame: pd.DataFrame, label: str, id_column: str) -> pd.DataFrame:
    """Rows with an empty label, as the suite's not-null rule on the label would report them.

    Without a reference there is no suite, but a row without a label is of no
    use to training whatever the detectors say (and they skip it).
    """
    empty = label_texts(frame[label]) == ""
    return make_findings(
        row_ids=frame.loc[empty, id_column].astype(str).to_numpy(),
        check=f"{EXPECTATION_PREFIX}values_to_not_be_null",
        scores=np.ones(int(empty.sum())),
        flagged=np.ones(int(empty.sum()), dtype=bool),
        reasons=np.full(int(empty.sum()), f"{label} is empty but every row needs a label", dtype=object),
    )


def label_texts(series: pd.Series) -> np.ndarray:
    """Labels as text, ``""`` where missing: labels are compared as text everywhere.

    A label longer than ``LABEL_WIDTH`` characters is cut and tagged with a
    digest of the whole (so distinct labels stay distinct): detectors hold
    labels in fixed-width numpy text, where one 50 MB label would size every
    row's label at 50 MB. (The expectation suite sees the whole value.)
    """
    def text(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        value = str(value)
        if len(value) <= LABEL_WIDTH:
            return value
        return f"{value[:LABEL_WIDTH]}…{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"

    try:
        # Once per distinct label, and its rows share that one string object:
        # a string per row is 64 MB a million rows, held the whole run.
        return distinct_objects(series, convert=text, missing="")
    except TypeError:  # labels that are not all text (numbers, a list from JSON Lines): cell by cell
        return series.map(text).to_numpy(dtype=object)


def concat_findings(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack findings tables (empty ones skipped) into one with ``FINDING_COLUMNS``."""
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[FINDING_COLUMNS] if frames else empty_findings()


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))
