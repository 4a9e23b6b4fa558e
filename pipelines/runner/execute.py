"""One run end to end: load, judge, ask a reviewer if need be, and publish or reject.

``execute`` is what ``poisonguard run`` and every batch of ``poisonguard
watch`` do. The checks themselves are ``poisonguard.pipelines.core.stages``;
this module adds what a real run needs around them: the run's record in the
quarantine store, the review gate, and the signed output (or the rejection
report). The Prefect flows call ``execute`` with a stage runner that makes
each stage a task, so this wiring exists once.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from poisonguard.detectors.base import empty_findings
from poisonguard.pipelines.core.checks import CheckOutcome
from poisonguard.pipelines.core.decision import ReviewGate, ReviewVerdict
from poisonguard.pipelines.core.evidence import collect_evidence
from poisonguard.pipelines.core.inputs import load_inputs
from poisonguard.pipelines.core.settings import RunSettings, make_settings
from poisonguard.pipelines.core.processes import this_process
from poisonguard.pipelines.core.stages import (
    ParallelStageRunner,
    StageClock,
    StageRunner,
    judge_batch,
    run_stage_directly,
    stage_listener,
)
from poisonguard.pipelines.outputs import publish
from poisonguard.pipelines.outputs.publish import RunSummary
from poisonguard.pipelines.outputs.signed_folder import claimed_output
from poisonguard.pipelines.runner.recovery import settle_interrupted_runs, settle_run
from poisonguard.pipelines.outputs.signing import load_private_key
from poisonguard.pipelines.store import QuarantineStore, check_url


def execute(
    settings: RunSettings, *, run_stage: StageRunner = run_stage_directly, review: Optional[ReviewGate] = None,
    run_stages: Optional[ParallelStageRunner] = None,
) -> RunSummary:
    """Run every stage of one run and publish its signed output.

    Parameters
    ----------
    settings : RunSettings
    run_stage : callable ``(name, function, *args, **options) -> result``
        How to run a stage; the Prefect flow passes one that makes it a task.
    run_stages : callable ``([(name, function, args), ...]) -> results``, optional
        How to run the detectors, which need nothing of each other, all at
        once (``core.stages.judge_batch``); one by one with ``run_stage`` when None.
    review : callable ``(inputs, decision) -> ReviewVerdict or None``, optional
        Asked after the decision, before publishing (``poisonguard watch``
        pauses for a person here when too much of a batch is quarantined).

    Returns
    -------
    RunSummary
        ``status`` is ``"succeeded"``, ``"rejected"`` (a batch-level check
        failed or a reviewer rejected the batch) or ``"held"``. Its notes
        start with any interrupted earlier run this one settled.

    Raises
    ------
    InputError
        Another run is writing the same output folder, or it exists.
    """
    check_ready(settings)
    started_at = publish.utc_now()
    work_started = time.perf_counter()
    owner = this_process()
    clock = StageClock()
    with claimed_output(settings.out, owner), QuarantineStore(settings.store_url) as store, stage_listener(clock):
        settled = settle_interrupted_runs(store)
        inputs = run_stage("load-inputs", load_inputs, settings)
        run = publish.open_run(inputs, started_at, store=store, owner=owner)
        summary = _judge_and_publish(settings, inputs, run, run_stage, run_stages, review, work_started, clock)
    return replace(summary, notes=[*settled, *summary.notes]) if settled else summary


def _judge_and_publish(settings, inputs, run, run_stage, run_stages, review, work_started, clock) -> RunSummary:
    try:
        judgement = judge_batch(inputs, run_stage=run_stage, run_stages=run_stages)
        outcomes = list(judgement.outcomes)
        if judgement.rejected:
            # A rejected batch is an outcome, not a crash: the caller decides
            # how to surface it (the CLI exits non-zero, a watcher moves on).
            return run_stage("reject-batch", publish.reject_batch, run, inputs, outcomes, work_started)
        decision = judgement.decision
        verdict = review(inputs, decision) if review is not None else None
        if verdict is not None and verdict.action == "reject":
            outcomes.append(_reviewed(verdict, len(inputs.batch.raw)))
            return run_stage("reject-batch", publish.reject_batch, run, inputs, outcomes, work_started)
        if verdict is not None and verdict.action == "hold":
            return run_stage("hold-batch", publish.hold_batch, run, inputs, outcomes, verdict.reason, work_started)
        if verdict is not None:  # approved: the report and provenance say by whom
            decision = replace(decision, notes=[*decision.notes, f"Published after review: {verdict.reason}."])
        evidence = run_stage("collect-evidence", collect_evidence, inputs, judgement.features, decision)
        # Writing the outputs reads only the flagged findings and no encoded
        # features: for a million-row batch the full findings tables and the
        # encoded matrices are most of a GB, let go before the outputs are written.
        outcomes = publish.slim_outcomes(outcomes)
        del judgement
        return run_stage("publish", publish.publish, run, inputs, outcomes, decision, evidence, work_started, clock)
    except BaseException as error:
        # At once, not on the next run: a failed run keeps no entries and no
        # staging folder (or is recorded as published, if it got that far).
        try:
            settle_run(run.store, run.store.get_run(run.run_id), f"failed: {error}"[:2000])
        except Exception:  # noqa: BLE001 - the original error matters more; the next run settles it
            pass
        raise


def check_ready(settings: RunSettings) -> None:
    """Refuse, before any work, what would only fail at the end: the signing key and the store.

    A wrong ``--key`` used to surface after the whole pipeline had run.

    Raises
    ------
    SigningError
        The key file is missing or not an ECDSA private key.
    InputError
        The store URL is not a usable database URL.
    """
    if settings.key is not None:
        load_private_key(settings.key)
    check_url(settings.store_url)


def run(
    batches: Sequence[Path | str],
    *,
    out: Path | str,
    label: Optional[str] = None,
    id_column: Optional[str] = None,
    reference: Optional[Path | str] = None,
    config: Optional[Path | str] = None,
    key: Optional[Path | str] = None,
) -> RunSummary:
    """Check batch files and write a signed clean dataset to ``out``, without Prefect.

    The library form of ``poisonguard run``: the same options, the same
    outputs, the same quarantine store (the state folder's, or the config's
    ``store.url``).

    Parameters
    ----------
    batches : sequence of path
        CSV, Parquet or JSON Lines files (optionally ``.gz``) with the same columns.
    out : path
        Output folder; must not exist yet.
    label, id_column, reference, config, key
        As the command-line options of the same names; they override the
        config file.

    Returns
    -------
    RunSummary

    Raises
    ------
    BatchRejected
        A batch-level check failed; nothing was published (the report is in
        ``summary.report`` of the error's message).
    PoisonguardError
        Bad input or configuration; nothing was written.
    """
    settings = make_settings(
        batches, out=out, label=label, id_column=id_column, reference=reference, config_path=config, key=key
    )
    summary = execute(settings)
    if summary.status == "rejected":
        raise summary.rejection()
    return summary


def _reviewed(verdict: ReviewVerdict, rows: int) -> CheckOutcome:
    """The reviewer's rejection as a batch-level check, so the report shows it."""
    return CheckOutcome(
        name="batch.review", kind="batch", findings=empty_findings(), rows_checked=rows,
        batch_failures=[f"batch.review: {verdict.reason}"], details={"table": [], "notes": [verdict.reason]},
    )
