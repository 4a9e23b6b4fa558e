"""The decision: which rows are kept and which are quarantined, and why.

Two steps. :func:`apply_decision_rule` turns every check's findings into one
decision over the batch that keeps the share of clean rows quarantined
within ``detection.max_false_positive_rate`` (see its docstring for why it
is built as it is); it rewrites each finding's ``flagged`` to say whether
that check's evidence got the row quarantined. :func:`decide` then
quarantines every row some finding flags, and counts per check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import pandas as pd

from poisonguard.detectors.base import make_findings
from poisonguard.detectors.calibration import combine_p_values, combined_contributors
from poisonguard.pipelines.core.adequacy import reference_notes
from poisonguard.pipelines.core.batch_checks import per_check_rows
from poisonguard.pipelines.core.checks import CheckOutcome, concat_findings, judged_arrays, with_decided_flags
from poisonguard.pipelines.core.inputs import RunInputs
from poisonguard.pipelines.core.tables import rows_in

# The inferred rules may quarantine at most this share of the rate, counted
# on the batch; the detectors get the rest (at least the other half).
RULE_SHARE = 0.5


@dataclass(frozen=True)
class Decision:
    """Which rows are kept and which are quarantined, and why.

    ``quarantined_rows`` marks the quarantined rows in the batch's order
    (``decide`` sets it; None in a decision built otherwise). Read it
    through ``quarantined_mask``: each stage after the decision cut the
    batch by looking up all its ids in a set again, 0.2 s a million rows and
    eight times a run.
    """

    quarantined_ids: list[str]
    kept_ids: list[str]
    flagged: pd.DataFrame  # flagged findings, FINDING_COLUMNS
    per_check: pd.DataFrame
    notes: list[str]
    quarantined_rows: Optional[np.ndarray] = None

    def quarantined_mask(self, row_ids) -> np.ndarray:
        """Which of ``row_ids``, the batch's ids in its order, are quarantined; shape (n_rows,)."""
        if self.quarantined_rows is not None and len(self.quarantined_rows) == len(row_ids):
            return self.quarantined_rows
        return rows_in(row_ids, self.quarantined_ids)


def decide(inputs: RunInputs, outcomes: list[CheckOutcome]) -> Decision:
    """Quarantine every row that any check flagged; keep the rest.

    Every batch row ends in exactly one of the two lists.
    """
    flagged = concat_findings([o.findings[o.findings["flagged"]] for o in outcomes])
    # Batch-level findings (empty row id) judge the batch, not a row.
    flagged = flagged[flagged["row_id"] != ""].reset_index(drop=True)
    quarantined = set(flagged["row_id"])
    # Rows flagged by more than one check, counted once rather than per check.
    checks_per_row = flagged.groupby("row_id", sort=False)["check"].nunique()
    flagged_elsewhere_too = set(checks_per_row.index[checks_per_row.to_numpy() > 1])
    rows = []
    for outcome in outcomes:
        checks = outcome.findings
        if outcome.kind == "batch":
            rows += per_check_rows(outcome)
            continue
        names = sorted(checks["check"].unique()) if outcome.kind == "expectation" else [outcome.name]
        for check in names or [outcome.name]:
            mine = checks[checks["check"] == check]
            # Rows, not findings: one row can break a range on many columns.
            flagged_rows = set(mine.loc[mine["flagged"], "row_id"])
            # A row this check flags is flagged elsewhere exactly when more than one check flags it.
            elsewhere = flagged_elsewhere_too
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
    notes = [note for outcome in outcomes for note in outcome.details.get("decision_notes", [])]
    if inputs.reference is None:
        notes.append(
            "No trusted reference was given: detectors were calibrated on the batch itself "
            "with contamination-robust estimates, and no expectation suite was inferred."
        )
    reference = inputs.reference_typed.typed if inputs.reference_typed is not None else None
    notes += reference_notes(reference, inputs.kinds, inputs.label, inputs.settings.config)
    rare = sorted({label for outcome in outcomes for label in outcome.details.get("rare_labels", [])})
    if rare:
        shown = ", ".join(repr(label) for label in rare[:5]) + (f" and {len(rare) - 5} more" if len(rare) > 5 else "")
        notes.append(
            f"Rows labelled {shown} were not judged by the label detectors: the trusted reference has a single "
            "row of each, too few to cross-fit; the expectations and other detectors still checked them."
        )
    for outcome in outcomes:
        for warning in outcome.details.get("warnings", []):
            notes.append(f"{outcome.name} warned: {warning}")
        if outcome.details.get("skipped"):
            why = outcome.details["skipped"].removeprefix(f"{outcome.name}: ")
            notes.append(f"{outcome.name} did not run on this batch, so it flagged nothing: {why}.")
    all_ids = inputs.batch.row_ids.to_numpy(dtype=object)
    quarantined_rows = rows_in(all_ids, quarantined)
    return Decision(
        quarantined_ids=all_ids[quarantined_rows].tolist(),
        kept_ids=all_ids[~quarantined_rows].tolist(),
        flagged=flagged,
        per_check=per_check,
        notes=notes,
        quarantined_rows=quarantined_rows,
    )




@dataclass(frozen=True)
class ReviewVerdict:
    """A person's (or a policy's) answer about a batch whose quarantine rate is high.

    ``action`` is ``"approve"`` (publish as decided), ``"reject"`` (quarantine
    the whole batch) or ``"hold"`` (publish nothing yet; ask again later).
    """

    action: str
    reason: str = ""


# ``review(inputs, decision) -> ReviewVerdict or None``; None means no review is needed.
ReviewGate = Callable[[RunInputs, Decision], Optional[ReviewVerdict]]


def apply_decision_rule(inputs: RunInputs, outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    """One decision over every check, within ``detection.max_false_positive_rate``.

    The target is a false-positive *rate*: the share of a batch's clean
    rows that get quarantined. Three kinds of findings meet it differently:

    * **Hard rules** (a finding flagged without a p-value: a cell that does
      not parse, an empty or unknown label, a hand-written rule, a label no
      trusted row has): a clean, usable row cannot break them, so they stay
      flagged and are outside the rate.
    * **Inferred rules** (findings of the expectation suite that carry a
      p-value: ranges, value sets and never-empty rules learnt from the
      reference, whose error rate depends on how much the reference showed;
      Good-Turing for value sets, ``1 / (n + 1)`` for an empty cell). Their
      cost is observable: a rule that quarantines ``k`` rows costs at most
      ``k`` clean rows, and nothing for a row that is quarantined anyway
      (a hard rule, or the detectors' combined p-value at most the least
      level they can be left, ``(1 - RULE_SHARE)`` of the rate). So rules
      are taken from the one breaking fewest rows up, and their rows
      quarantined while the rows they add stay within ``RULE_SHARE`` of the
      rate. A rule broken by more rows than that (a
      category the reference was too small to show, a column newly empty)
      becomes a batch-level finding for a person, with the evidence, not a
      few percent of the batch quarantined one by one.
    * **Detectors**: each row's p-values (one per detector that ran; a
      detector that did not judge a row counts as ``p = 1`` for it, and one
      skipped on the whole batch is not a test and not counted in ``m``)
      are combined into one
      (``detection.combine``; ``detectors.calibration.combine_p_values``)
      and the row is quarantined when it is at most the rest of the rate,
      ``max_false_positive_rate`` minus the share the inferred rules took.
      For a clean row the combined p-value is (super-)uniform, so the
      detectors quarantine at most that share of clean rows in expectation.
      A finding is left flagged when its detector carries the row's
      rejection (``combined_contributors``).

    Benjamini-Hochberg over conformal p-values (Bates et al. 2023) would
    control the false-discovery *proportion* among quarantined rows, which is
    not the promise: on a clean batch it flags nothing, and on a batch with
    many poisoned rows it lets more clean rows go, proportionally. A bound
    on clean rows lost is a per-row test at a fixed level, which is this.

    Parameters
    ----------
    inputs : RunInputs
    outcomes : list of CheckOutcome
        The expectation outcome, batch-level outcomes and detector outcomes.

    Returns
    -------
    list of CheckOutcome
        The same outcomes, with ``flagged`` rewritten and, on the
        expectation outcome, batch-level findings and
        ``details["decision_notes"]`` for rules turned over to a person;
        each detector outcome that ran has ``details["decision"]``, the level
        and the combination used.
    """
    detection = inputs.settings.config.detection
    rate = detection.max_false_positive_rate
    n_rows = max(len(inputs.batch.row_ids), 1)
    result = list(outcomes)
    # A detector skipped on this batch tested nothing: counting it would only
    # lower every other detector's share of the rate (``m`` in Simes' rule).
    detectors = [position for position, outcome in enumerate(result)
                 if outcome.kind == "detector" and not outcome.details.get("skipped")]
    ids, p_values = _detector_p_values(result, detectors)
    combined = combine_p_values(p_values, method=detection.combine)
    # Rows the detectors reject even at the least they can be left cost the
    # inferred rules nothing: they are quarantined whatever the rules say.
    caught = set(ids[combined <= rate * (1.0 - RULE_SHARE)])
    used = 0.0
    for position, outcome in enumerate(result):
        if outcome.kind == "expectation":
            result[position], used = _judge_inferred_rules(outcome, rate * RULE_SHARE, n_rows, caught)
    level = max(rate - used, 0.0)
    if not detectors:
        return result
    carries = combined_contributors(p_values, level, method=detection.combine)
    for column, position in enumerate(detectors):
        outcome = result[position]
        rows = _positions(ids, judged_arrays(outcome)[0])
        flagged = hard_flags(outcome, detection.detector_alpha) | carries[rows, column]
        details = {**outcome.details, "decision": {
            "combine": detection.combine, "level": level, "checks_combined": len(detectors),
            "rows_quarantined_by_detectors": int(np.sum(combined <= level)),
        }}
        result[position] = with_decided_flags(outcome, flagged, details)
    return result


def hard_flags(outcome: CheckOutcome, default_alpha: float) -> np.ndarray:
    """Per row a detector judged (``checks.judged_arrays``), whether it is a hard flag, outside the rate.

    Flagged without the p-value reaching the detector's own alpha: a label
    no trusted row has, a label alone in the batch.
    """
    _, p_values, flagged = judged_arrays(outcome)
    alpha = outcome.details.get("params", {}).get("alpha", default_alpha)
    return flagged & ~(p_values <= alpha)


def _detector_p_values(outcomes: list[CheckOutcome], detectors: list[int]) -> tuple[pd.Index, np.ndarray]:
    """The row ids the detectors judged, and their p-values as a (rows, detectors) matrix; 1 where none."""
    if not detectors:
        return pd.Index([], dtype=object), np.ones((0, 0))
    judged = [judged_arrays(outcomes[position]) for position in detectors]
    ids = _same_rows([row_ids for row_ids, _, _ in judged])
    if ids is None:
        ids = pd.Index(pd.unique(np.concatenate([row_ids for row_ids, _, _ in judged])), dtype=object)
    p_values = np.ones((len(ids), len(detectors)))
    for column, (row_ids, p, _) in enumerate(judged):
        p_values[_positions(ids, row_ids), column] = np.where(np.isnan(p), 1.0, p)
    return ids, p_values


def _same_rows(row_ids: list[np.ndarray]) -> Optional[pd.Index]:
    """The detectors' row ids when every detector judged the same rows in the same order (the usual case), else None.

    Matching a million rows by id, detector by detector, turned every id into
    a Python string seven times over (0.4 GB at the run's peak).
    """
    first = row_ids[0]
    for other in row_ids[1:]:
        if not _same_ids(other, first):
            return None
    # Of objects: pandas' own text type would copy every id into new text.
    ids = pd.Index(first, dtype=object)
    return ids if ids.is_unique else None


def _same_ids(one: np.ndarray, other: np.ndarray) -> bool:
    """Whether two arrays of row ids hold the same ids in the same order (the very same array, usually)."""
    return one is other or (len(one) == len(other) and bool((one == other).all()))


def _positions(ids: pd.Index, row_ids: np.ndarray) -> np.ndarray:
    """Where each of ``row_ids`` is in ``ids``."""
    if _same_ids(row_ids, ids.to_numpy(dtype=object)):
        return np.arange(len(ids))
    return ids.get_indexer(row_ids)


def _judge_inferred_rules(
    outcome: CheckOutcome, share: float, n_rows: int, caught: set
) -> tuple[CheckOutcome, float]:
    """Flag the inferred rules' rows while they fit ``share`` of the batch; the rest go to a person.

    Only rows nothing else quarantines count against the share: rows a hard
    rule flags, and ``caught``, the rows the detectors reject at the least
    level they can be left. Returns the outcome and the share of the batch
    the kept rules add to the quarantine.
    """
    findings = outcome.findings
    if findings.empty:
        return outcome, 0.0
    inferred = findings["flagged"] & findings["p_value"].notna() & (findings["row_id"] != "")
    if not inferred.any():
        return outcome, 0.0
    hard_rows = set(findings.loc[findings["flagged"] & ~inferred & (findings["row_id"] != ""), "row_id"]) | caught
    rules = findings[inferred].assign(rule=[_rule(c, r) for c, r in zip(findings.loc[inferred, "check"],
                                                                       findings.loc[inferred, "reason"])])
    allowed = math.floor(share * n_rows)
    taken: set = set()
    dropped_rules, notes, batch_rows = [], [], []
    for rule, group in sorted(rules.groupby("rule"), key=lambda item: (item[1]["row_id"].nunique(), item[0])):
        rows = set(group["row_id"]) - hard_rows
        if len(taken | rows) <= allowed:
            taken |= rows
            continue
        dropped_rules.append(rule)
        check, column = rule
        broken = group["row_id"].nunique()
        p_rule = float(group["p_value"].iloc[0])
        sentence = (
            f"{broken} of {n_rows} rows ({broken / n_rows:.1%}) break the inferred rule {check.split('.', 1)[-1]} "
            f"on column {column!r}, which a clean row breaks with probability about {p_rule:.2g}; the inferred "
            f"rules may quarantine at most {share:.1%} of the batch ({allowed} rows) beyond what other checks "
            "catch, so these rows are kept for a person to look at: a new category or a newly empty column, "
            "or a reference too small to show it"
        )
        notes.append(sentence)
        batch_rows.append((check, broken / n_rows, sentence))
    flagged = findings["flagged"].to_numpy(dtype=bool).copy()
    if dropped_rules:
        dropped = np.array([inferred.iloc[i] and _rule(c, r) in dropped_rules
                            for i, (c, r) in enumerate(zip(findings["check"], findings["reason"]))])
        flagged &= ~dropped
    decided = findings.assign(flagged=flagged)
    if batch_rows:
        # Batch-level findings (no row id), not flagged: they inform, they do not reject.
        extra = make_findings(
            row_ids=[""] * len(batch_rows), check="", scores=[share for _, share, _ in batch_rows],
            flagged=[False] * len(batch_rows), reasons=[sentence for _, _, sentence in batch_rows],
        ).assign(check=[check for check, _, _ in batch_rows])
        decided = concat_findings([decided, extra])
    details = {**outcome.details, "decision_notes": outcome.details.get("decision_notes", []) + notes,
               "inferred_rules_share": len(taken) / n_rows}
    return replace(outcome, findings=decided, details=details), len(taken) / n_rows


def _rule(check: str, reason: str) -> tuple[str, str]:
    """(check, column) of an inferred rule's finding; its reason starts with the column's name."""
    for marker in (" = ", " is empty"):
        if marker in reason:
            return check, reason.split(marker, 1)[0]
    return check, ""
