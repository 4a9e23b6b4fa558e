"""Writing a run's output: clean and quarantine files, report, provenance, signature.

Writing and signing happen together or not at all
(:func:`poisonguard.pipelines.outputs.signed_folder.write_signed_folder`): everything is written
into a hidden sibling folder, signed there, the quarantined rows are committed
to the store in one transaction, and only then is the folder renamed to its
final name. An interrupted run leaves nothing that looks finished, and a failed
one loses no quarantine rows.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from poisonguard.pipelines.core.version import __version__
from poisonguard.pipelines.core.decision import decide
from poisonguard.pipelines.core.errors import BatchRejected
from poisonguard.pipelines.core.jsonable import to_jsonable
from poisonguard.pipelines.core.tables import file_digest
from poisonguard.pipelines.core.written_columns import FINDING_LIST_COLUMNS, ORIGINAL_COLUMN
from poisonguard.pipelines.outputs.datasets import finish_chain
from poisonguard.pipelines.outputs.report import render_report, score_arrays
from poisonguard.pipelines.outputs.signed_folder import (  # noqa: F401 - the layout's names are also used as publish.X
    CLEAN_FILE,
    PROVENANCE_FILE,
    QUARANTINE_FILE,
    REPORT_FILE,
    SIGNATURE_FILE,
    write_parquet,
    write_signed_folder,
)
from poisonguard.pipelines.outputs.signing import ensure_state_key, sign_folder
from poisonguard.pipelines.store.quarantine_store import QuarantineStore

LIBRARIES = ("great_expectations", "pyod", "cleanlab", "scikit-learn", "pandas", "numpy", "prefect", "model-signing")


@dataclass
class RunHandle:
    """A run recorded in the quarantine store."""

    run_id: str
    store: QuarantineStore
    started_at: datetime


@dataclass(frozen=True)
class RunSummary:
    """What a finished run produced, for the CLI and the flow's caller."""

    run_id: str
    out: Optional[Path]
    rows_in: int
    kept: int
    quarantined: int
    per_check: list[dict]
    key_path: Optional[Path]
    key_created: bool
    work_seconds: float
    notes: list[str] = field(default_factory=list)
    status: str = "succeeded"  # "rejected": a batch-level check failed; "held": awaiting a reviewer
    batch_failures: list[str] = field(default_factory=list)
    report: Optional[Path] = None
    batch_checks: list[dict] = field(default_factory=list)  # the drift table (detectors.drift.BatchCheck rows)
    top_quarantined: list[dict] = field(default_factory=list)  # most suspicious rows: row_id, checks, p_value, reason

    def rejection(self) -> BatchRejected:
        """The error a caller raises for a rejected batch."""
        listing = "; ".join(self.batch_failures[:5])
        return BatchRejected(f"batch rejected, no output was written: {listing} (report: {self.report})")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def open_run(inputs, started_at: datetime, *, store: QuarantineStore, owner: str) -> RunHandle:
    """Record the run, who runs it and where it will publish, and its batch files, in ``store``."""
    settings = inputs.settings
    reference_digest = inputs.reference.files[0]["digest"] if inputs.reference is not None else None
    run_id = store.start_run(
        dataset=settings.config.dataset.name,
        config=json.loads(settings.model_dump_json()),
        tool_version=__version__,
        reference_digest=reference_digest,
        owner=owner,
        output_dir=str(settings.out),
    )
    for info in inputs.batch.files:
        store.record_batch(run_id, path=info["path"], digest=info["digest"], rows=info["rows"])
    return RunHandle(run_id=run_id, store=store, started_at=started_at)


def reject_batch(run: RunHandle, inputs, outcomes, work_started: float) -> "RunSummary":
    """Close the run as rejected and keep its report in the state folder; nothing is published."""
    failures = [f for o in outcomes for f in o.batch_failures]
    return _close_unpublished(run, inputs, outcomes, work_started, status="rejected", failures=failures)


def hold_batch(run: RunHandle, inputs, outcomes, reason: str, work_started: float) -> "RunSummary":
    """Close the run as held for a reviewer; nothing is published, the report is kept."""
    return _close_unpublished(run, inputs, outcomes, work_started, status="held", failures=[reason])


def _close_unpublished(run: RunHandle, inputs, outcomes, work_started: float, *, status: str, failures) -> "RunSummary":
    decision = decide(inputs, outcomes)
    folder = inputs.settings.state_dir / status / run.run_id
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / REPORT_FILE
    report.write_text(_report(inputs, outcomes, decision, run, status=status, batch_failures=failures))
    table = batch_check_table(outcomes)
    rows_in = int(len(inputs.batch.raw))
    # A held batch's rows are not quarantined yet: the reviewer decides.
    kept, quarantined = (0, rows_in) if status == "rejected" else (len(decision.kept_ids), len(decision.quarantined_ids))
    run.store.finish_run(
        run.run_id, status=status,
        counts={"batch_failures": failures, "rows_in": rows_in, "kept": kept, "quarantined": quarantined,
                "batch_checks": table, "report": str(report)},
    )
    return RunSummary(
        run_id=run.run_id,
        out=None,
        rows_in=rows_in,
        kept=kept,
        quarantined=quarantined,
        per_check=json.loads(decision.per_check.to_json(orient="records")) if len(decision.per_check) else [],
        key_path=None,
        key_created=False,
        work_seconds=time.perf_counter() - work_started,
        notes=decision.notes,
        status=status,
        batch_failures=list(failures),
        report=report,
        batch_checks=table,
        top_quarantined=top_quarantined(decision) if status == "held" else [],
    )


def batch_check_table(outcomes) -> list[dict]:
    """The drift table: every batch-level test of the run, in order."""
    return [dict(entry) for o in outcomes if o.kind == "batch" for entry in o.details.get("table", [])]


def top_quarantined(decision, limit: int = 20) -> list[dict]:
    """The most suspicious quarantined rows: most checks, then smallest p-value."""
    flagged = decision.flagged
    if flagged.empty:
        return []
    # Arrays per row, not a frame per row: a large batch quarantines tens of thousands.
    codes, row_ids = pd.factorize(flagged["row_id"].to_numpy(dtype=object))  # rows in first-seen order
    counts = np.bincount(codes)
    smallest = np.full(len(row_ids), np.inf)
    np.fmin.at(smallest, codes, flagged["p_value"].to_numpy(dtype=float))
    # Most findings first, then the smallest p-value (rows without one, hard rules, first); ties by first seen.
    order = np.lexsort((np.arange(len(row_ids)), np.where(np.isinf(smallest), -1.0, smallest), -counts))[:limit]
    checks, reasons = flagged["check"].astype(str).to_numpy(), flagged["reason"].to_numpy(dtype=object)
    rows = []
    for code in order:
        positions = np.flatnonzero(codes == code)
        rows.append({
            "row_id": str(row_ids[code]),
            "checks": ", ".join(dict.fromkeys(checks[positions])),
            "smallest_p_value": None if np.isinf(smallest[code]) else float(smallest[code]),
            "reason": str(reasons[positions[0]]),
        })
    return rows


def publish(run: RunHandle, inputs, outcomes, decision, evidence: Mapping, work_started: float, clock=None) -> RunSummary:
    """Write, sign, store and reveal the run's output folder.

    ``clock`` (a ``core.stages.StageClock``) gives the seconds of each stage
    before this one to provenance.json and the report.
    """
    stage_seconds = {k: v for k, v in clock.lap().items() if k != "publish"} if clock is not None else None
    settings = inputs.settings
    out = settings.out
    if settings.key is not None:
        key_path, key_created = settings.key, False
    else:
        key_path, key_created = ensure_state_key(settings.state_dir)
    counts = _counts(inputs, decision)

    def write_files(folder: Path) -> None:
        # The clean rows are written a block at a time, never copied whole:
        # they are most of the batch again.
        # A spilled batch (``core.spill``) gives back the pages each block read.
        # On a thread of its own: Arrow encodes and compresses without the
        # GIL, while this one builds the quarantine file and the report (a
        # million rows: 2 s and 2.5 s, one after the other before).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="poisonguard-clean-file") as clean_writer:
            clean_written = clean_writer.submit(
                write_parquet, typed_rows(inputs), folder / CLEAN_FILE,
                rows=~decision.quarantined_mask(inputs.batch.row_ids), after_block=inputs.batch.release_pages,
            )
            write_parquet(quarantine_frame(inputs, decision), folder / QUARANTINE_FILE)
            (folder / REPORT_FILE).write_text(
                _report(inputs, outcomes, decision, run, status="succeeded", stage_seconds=stage_seconds),
                encoding="utf-8",
            )
            clean_written.result()  # (the chain and the provenance hold its digest)
        chain = None
        if settings.chain is not None:
            # A dataset version (poisonguard watch): link it to its parent.
            clean = clean_frame(inputs, decision)
            chain = finish_chain(settings.chain, clean, folder, random_state=settings.config.detection.random_state)
            del clean
        provenance = _provenance(inputs, outcomes, decision, run, counts, folder, chain=chain)
        if stage_seconds is not None:
            # A list, in the order the stages ran (the file's keys are sorted).
            provenance["stages"] = [{"stage": stage, "seconds": seconds} for stage, seconds in stage_seconds.items()]
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def store_quarantined(_folder: Path) -> None:
        run.store.add_quarantined(
            run.run_id,
            dataset=settings.config.dataset.name,
            rows=_as_received(inputs, decision),
            findings=decision.flagged,
            row_id_column=inputs.id_column,
            batch_digest_by_row=_digest_by_row(inputs, decision),
            evidence_by_row=evidence,
        )

    # sign_folder is passed from this module's namespace so tests can replace it here.
    write_signed_folder(
        out, key_path, write_files, before_reveal=store_quarantined, staging_tag=run.run_id[:8], sign=sign_folder
    )
    run.store.finish_run(run.run_id, status="succeeded", output_dir=str(out), counts=counts)
    return RunSummary(
        run_id=run.run_id,
        out=out,
        rows_in=counts["rows_in"],
        kept=counts["kept"],
        quarantined=counts["quarantined"],
        per_check=counts["per_check"],
        key_path=key_path,
        key_created=key_created,
        work_seconds=time.perf_counter() - work_started,
        notes=decision.notes,
        report=out / REPORT_FILE,
        batch_checks=batch_check_table(outcomes),
        top_quarantined=top_quarantined(decision),
    )


def typed_rows(inputs) -> pd.DataFrame:
    """The batch as it came in, but numeric columns read from text as numbers.

    Clean and quarantined rows are cut from this one frame, so the two files
    share one schema (a consumer can stack or join them). A cell that did not
    parse is missing here; ``quarantine_frame`` keeps its text.
    """
    raw = inputs.batch.raw
    typed = inputs.batch_typed.typed
    frame = raw.copy(deep=False)  # copy-on-write: the columns replaced below never reach ``raw``
    for column, kind in inputs.kinds.items():
        if kind == "numeric" and not pd.api.types.is_numeric_dtype(raw[column]) and not _typed_at_source(raw[column]):
            frame[column] = typed[column]
    return frame


# Values a file's own types hold (Parquet timestamps, durations, decimals),
# which the checks read as numbers: a training job gets them as they came,
# not as nanoseconds since 1970 or as rounded floats.
SOURCE_TYPES = frozenset({"datetime64", "datetime", "date", "timedelta64", "timedelta", "time", "period", "decimal"})


def _typed_at_source(column: pd.Series) -> bool:
    """``column`` holds temporal or decimal values of its file's own type, not text to read as numbers."""
    return pd.api.types.infer_dtype(column, skipna=True) in SOURCE_TYPES


def clean_frame(inputs, decision) -> pd.DataFrame:
    """Kept rows with their original columns; text cells of numeric columns as numbers."""
    kept = ~decision.quarantined_mask(inputs.batch.row_ids)
    return inputs.batch.take_rows(typed_rows(inputs), kept).reset_index(drop=True)


def quarantine_frame(inputs, decision) -> pd.DataFrame:
    """Quarantined rows in the clean file's schema, plus why each was flagged and the text of broken cells.

    ``poisonguard_original`` holds, as a JSON object, the cells that could
    not be read as their column's type (``{"bill_length_mm": "n/a?"}``);
    null when every cell parsed.
    """
    ids = inputs.batch.row_ids
    mask = decision.quarantined_mask(ids)
    rows = inputs.batch.take_rows(typed_rows(inputs), mask).reset_index(drop=True)
    raw = inputs.batch.as_read(mask).reset_index(drop=True)
    broken: dict[str, list[str]] = {}
    for row_id, column in inputs.batch_typed.broken_cells:
        broken.setdefault(str(row_id), []).append(column)
    row_ids = rows[inputs.id_column].astype(str).to_numpy(dtype=object)
    originals = []
    for position, row_id in enumerate(row_ids):
        cells = {column: to_jsonable(raw.at[position, column]) for column in broken.get(row_id, [])}
        originals.append(json.dumps(cells, ensure_ascii=False) if cells else None)
    rows[ORIGINAL_COLUMN] = pd.Series(originals, dtype=object)
    # Each row's findings are a slice of the findings ordered by row (in
    # their own order within a row), not a lookup and four gathers per row:
    # 155,089 quarantined rows took 3.4 s that way.
    flagged = decision.flagged
    row_of = pd.Index(row_ids).get_indexer(flagged["row_id"].to_numpy(dtype=object))
    order = np.argsort(row_of, kind="stable")
    order = order[row_of[order] >= 0]  # (batch-level findings name no row)
    bounds = np.searchsorted(row_of[order], np.arange(len(row_ids) + 1)).tolist()
    values = {
        "poisonguard_checks": flagged["check"].to_numpy(dtype=object)[order].tolist(),
        "poisonguard_scores": flagged["score"].to_numpy(dtype=float)[order].tolist(),
        "poisonguard_p_values": [None if np.isnan(v) else v
                                 for v in flagged["p_value"].to_numpy(dtype=float)[order].tolist()],
        "poisonguard_reasons": flagged["reason"].to_numpy(dtype=object)[order].tolist(),
    }
    for name in FINDING_LIST_COLUMNS:
        found = values[name]
        rows[name] = pd.Series([found[start:end] for start, end in zip(bounds, bounds[1:])], dtype=object)
    return rows


def _as_received(inputs, decision) -> pd.DataFrame:
    """The quarantined rows exactly as they came in: what the store keeps for reviewers."""
    return inputs.batch.as_read(decision.quarantined_mask(inputs.batch.row_ids)).reset_index(drop=True)


def _digest_by_row(inputs, decision) -> dict[str, str]:
    """The batch file digest of each quarantined row (only theirs: a batch has a million rows)."""
    mask = decision.quarantined_mask(inputs.batch.row_ids)
    return dict(zip(inputs.batch.row_ids[mask], inputs.batch.source_digest[mask]))


def _counts(inputs, decision) -> dict:
    per_check = json.loads(decision.per_check.to_json(orient="records")) if len(decision.per_check) else []
    return {
        "rows_in": int(len(inputs.batch.raw)),
        "kept": len(decision.kept_ids),
        "quarantined": len(decision.quarantined_ids),
        "per_check": per_check,
    }


def _provenance(inputs, outcomes, decision, run: RunHandle, counts: dict, folder: Path, chain=None) -> dict:
    settings = inputs.settings
    finished = utc_now()
    return {
        "tool": {"name": "poisonguard", "version": __version__, "python": platform.python_version()},
        "libraries": library_versions(),
        "run_id": run.run_id,
        "dataset": settings.config.dataset.name,
        "started_at": run.started_at.isoformat(),
        "finished_at": finished.isoformat(),
        "inputs": {
            "batches": inputs.batch.files,
            "reference": inputs.reference.files[0] if inputs.reference is not None else None,
            "row_id_column": inputs.id_column,
            "row_ids_generated": inputs.batch.id_generated,
            "column_kinds": inputs.kinds,
        },
        "config": json.loads(settings.config.model_dump_json()),
        "command": sys.argv,
        "expectation_suite": {
            "source": inputs.suite_source,
            "suite": inputs.suite.to_json_dict() if inputs.suite is not None else None,
        },
        "checks": [
            {"name": o.name, "kind": o.kind, "rows_checked": o.rows_checked, "seconds": round(o.seconds, 3), **o.details}
            for o in outcomes
            if o.kind != "batch"
        ],
        # Batch-level checks (poisonguard.pipelines.core.batch_checks): the drift table and what was skipped.
        "batch_checks": {
            "table": batch_check_table(outcomes),
            "notes": [note for o in outcomes if o.kind == "batch" for note in o.details.get("notes", [])],
            "config": json.loads(settings.config.batch.model_dump_json()),
        },
        "counts": counts,
        "notes": decision.notes,
        **({"chain": chain} if chain is not None else {}),
        "outputs": {
            name: {"sha256": file_digest(folder / name)}
            for name in (CLEAN_FILE, QUARANTINE_FILE, REPORT_FILE, *_extra_outputs(chain))
        },
    }


def _extra_outputs(chain) -> tuple[str, ...]:
    return (chain["trusted_sample"]["file"],) if chain else ()


def _report(inputs, outcomes, decision, run: RunHandle, *, status: str, batch_failures=(), stage_seconds=None) -> str:
    settings = inputs.settings
    # One table per check, never stacked: a million-row batch has millions of findings per check.
    findings = [o.findings for o in outcomes] if outcomes else decision.flagged
    scores = None
    if outcomes:  # each detector's as arrays (its findings keep only the rows that can be quarantined)
        scores = {check: arrays for o in outcomes
                  for check, arrays in (o.scores if o.scores is not None else score_arrays([o.findings])).items()}
    raw = inputs.batch.raw
    quarantined = inputs.batch.as_read(decision.quarantined_mask(inputs.batch.row_ids))
    reference = settings.config.dataset.reference
    summary = {
        "dataset": settings.config.dataset.name,
        "status": status,
        "batch files": ", ".join(f"{f['path']} ({f['rows']} rows, sha256 {f['digest'][:12]}…)" for f in inputs.batch.files),
        "rows in": len(raw),
        "kept": len(decision.kept_ids),
        "quarantined": len(decision.quarantined_ids),
        "trusted reference": str(reference) if reference else "none: detectors calibrated on the batch itself",
        "expectation suite": inputs.suite_source,
        "false-positive rate": _alpha_summary(settings.config.detection, _detectors_that_judged(outcomes)),
        "run id": run.run_id,
        "started": run.started_at.isoformat(timespec="seconds"),
        "tool version": __version__,
    }
    if stage_seconds:
        summary["seconds per stage"] = [f"{stage} {seconds:.1f}" for stage, seconds in stage_seconds.items()]
    chain = settings.chain
    if chain is not None:
        parent = chain.get("parent")
        summary["dataset version"] = chain["version"] + (
            f" (parent {parent['version']}, signature sha256 {parent['signature_sha256'][:12]}…)" if parent else " (first)"
        )
        summary["trusted rows"] = chain.get("trusted", {}).get("description", "")
    return render_report(
        title=f"poisonguard report: {settings.config.dataset.name}",
        summary=summary,
        per_check=decision.per_check,
        findings=findings,
        quarantined=quarantined,
        row_id_column=inputs.id_column,
        notes=decision.notes,
        batch_failures=list(batch_failures),
        batch_checks=batch_check_table(outcomes),
        scores=scores,
    )


def slim_outcomes(outcomes) -> list:
    """The outcomes with only their flagged and batch-level findings, every row's score kept as arrays.

    Once the decision is made, publishing reads only the flagged findings
    (the quarantine file, the store, the report's top rows) and, for the
    report's histograms, each check's scores and flags. A million-row batch's
    full findings tables are about 60 MB per check, held through the writing
    of the outputs, where the run's memory peaks.
    """
    slim = []
    for outcome in outcomes:
        findings = outcome.findings
        keep = findings["flagged"].to_numpy(dtype=bool) | (findings["row_id"].to_numpy(dtype=object) == "")
        # A pair of arrays shared by the per-check mapping, not another table.
        scores = outcome.scores if outcome.scores is not None else score_arrays([findings])
        slim.append(replace(outcome, findings=findings[keep].reset_index(drop=True), scores=scores))
    return slim


def library_versions() -> dict[str, Optional[str]]:
    """Installed versions of the libraries a signed output depends on (None if absent)."""
    return {name: _version(name) for name in LIBRARIES}


def _version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _detectors_that_judged(outcomes) -> Optional[int]:
    """How many detectors the decision combined (``apply_decision_rule``'s count); None before it ran."""
    for outcome in outcomes or ():
        if "decision" in outcome.details:
            return outcome.details["decision"]["checks_combined"]
    return None


def _alpha_summary(detection, detectors_judged: Optional[int] = None) -> str:
    """The rate's one-line summary; ``detectors_judged``: those the decision combined (the configured ones by default).

    A detector that cannot judge a batch (too few rows or features for it)
    is skipped, and the decision combines fewer than the config lists.
    """
    each = detection.detector_alpha
    confidence = detection.detector_confidence
    combined = len(detection.detectors) if detectors_judged is None else detectors_judged
    # Shown whole in the report's header: under REPORT_CELL_WIDTH characters.
    held = "on average over references" if confidence is None else f"for {confidence:.0%} of references"
    return (
        f"one decision: at most {detection.max_false_positive_rate:.2g} of clean rows (inferred rules and "
        f"{combined} detectors, {detection.combine}), held {held}; each detector's own flag at {each:.2g}"
    )
