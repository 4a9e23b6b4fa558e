"""The decision: which rows are kept and which are quarantined, and why."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd

from poisonguard.pipelines.core.adequacy import reference_notes
from poisonguard.pipelines.core.batch_checks import per_check_rows
from poisonguard.pipelines.core.checks import CheckOutcome, concat_findings
from poisonguard.pipelines.core.inputs import RunInputs


@dataclass(frozen=True)
class Decision:
    """Which rows are kept and which are quarantined, and why."""

    quarantined_ids: list[str]
    kept_ids: list[str]
    flagged: pd.DataFrame  # flagged findings, FINDING_COLUMNS
    per_check: pd.DataFrame
    notes: list[str]


def decide(inputs: RunInputs, outcomes: list[CheckOutcome]) -> Decision:
    """Quarantine every row that any check flagged; keep the rest.

    Every batch row ends in exactly one of the two lists.
    """
    all_ids = inputs.batch.row_ids.tolist()
    flagged = concat_findings([o.findings[o.findings["flagged"]] for o in outcomes])
    # Batch-level findings (empty row id) judge the batch, not a row.
    flagged = flagged[flagged["row_id"] != ""].reset_index(drop=True)
    quarantined = set(flagged["row_id"])
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
    return Decision(
        quarantined_ids=[i for i in all_ids if i in quarantined],
        kept_ids=[i for i in all_ids if i not in quarantined],
        flagged=flagged,
        per_check=per_check,
        notes=notes,
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
