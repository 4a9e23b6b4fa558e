"""The order of a run's checks, written once: expectations, batch checks, detectors, decision.

``poisonguard run`` and ``watch`` (``poisonguard.pipelines.runner.execute``)
and ``poisonguard evaluate`` (``poisonguard.pipelines.redteam``) all judge a
batch with :func:`judge_batch`. Each stage is a plain function of plain
values; a *stage runner* decides how it is called: directly here, as a
Prefect task in ``poisonguard.pipelines.flows``.
"""
from __future__ import annotations

import ctypes
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Optional

import pyarrow

from poisonguard.pipelines.core.batch_checks import check_batch, check_model_impact
from poisonguard.pipelines.core.checks import (
    CheckOutcome,
    FeatureMatrices,
    check_expectations,
    encode_features,
    run_detector,
)
from poisonguard.pipelines.core.decision import Decision, apply_decision_rule, decide
from poisonguard.pipelines.core.inputs import RunInputs
from poisonguard.pipelines.core.parallel_detectors import run_detectors_at_once

# ``run_stage(name, function, *args, **options) -> function(*args)``
StageRunner = Callable[..., Any]
# ``run_stages([(name, function, args), ...]) -> [function(*args), ...]``, in
# that order: stages that need nothing of each other (the detectors, fitted,
# then scored a chunk at a time: ``core.parallel_detectors``), which a runner
# may run at once (the Prefect flow on a Dask cluster does).
ParallelStageRunner = Callable[[list], list]


# Told each stage's name as it starts (the CLI's progress line). A plain
# process-wide list, not a context variable: Prefect runs a task's body in a
# worker thread, which would not see the caller's context.
_stage_listeners: list[Callable[[str], None]] = []
# Announced by ``poisonguard evaluate`` as it builds each attacked batch: this, then the attack.
ATTACK_STAGE = "attack:"


@contextmanager
def stage_listener(listener: Callable[[str], None]) -> Iterator[None]:
    """Call ``listener(stage name)`` as each stage starts, within the block."""
    _stage_listeners.append(listener)
    try:
        yield
    finally:
        _stage_listeners.remove(listener)


def announce_stage(name: str) -> None:
    """Tell the listeners a stage starts (stage runners call this), and hand back memory the last one freed."""
    release_freed_memory()
    for listener in tuple(_stage_listeners):
        listener(name)


def release_freed_memory() -> None:
    """Return to the system the memory the allocators keep after it is freed.

    Arrow's allocator (pandas' text, Parquet reads) and glibc's malloc keep
    freed memory for reuse, so a stage's temporaries stayed counted against
    the run: reading a million-row Parquet file left 0.3 GB held by Arrow,
    and each detector about 0.2 GB in malloc's arenas (its threads' ones
    among them). ``malloc_trim`` is glibc's (Linux); elsewhere only Arrow's
    is released.
    """
    pyarrow.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _malloc_trim()


class StageClock:
    """How long each stage of a run took, from the stage announcements.

    A stage lasts from its announcement to the next one; ``seconds`` holds
    the finished stages and the current one up to the last call of
    ``lap``, rounded to milliseconds (provenance.json and the report show them).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self._current: Optional[str] = None
        self._since = 0.0

    def __call__(self, stage: str) -> None:
        if stage.startswith(ATTACK_STAGE):
            return
        now = self.clock()
        self._count(now)
        self._current, self._since = stage, now

    def lap(self) -> dict[str, float]:
        """Count the current stage up to now; the seconds so far."""
        if self._current is not None:
            self._count(self.clock())
        return self.seconds

    def _count(self, now: float) -> None:
        if self._current is not None:
            self.seconds[self._current] = round(self.seconds.get(self._current, 0.0) + now - self._since, 3)
            self._since = now


def run_stage_directly(name: str, function: Callable, *args, **options):
    """The default stage runner: call the stage (``options`` are for Prefect)."""
    announce_stage(name)
    return function(*args)


@dataclass(frozen=True)
class Judgement:
    """What the checks concluded about one batch.

    Attributes
    ----------
    outcomes : list of CheckOutcome
        Every check that ran, in order.
    rejected : bool
        A batch-level check failed: the whole batch is quarantined.
    features : FeatureMatrices or None
        The encoded rows the detectors saw (None when rejected before them).
    decision : Decision or None
        Kept and quarantined rows (None when rejected before the detectors).
    """

    outcomes: list[CheckOutcome]
    rejected: bool
    features: Optional[FeatureMatrices] = None
    decision: Optional[Decision] = None

    @property
    def batch_failures(self) -> list[str]:
        return [failure for outcome in self.outcomes for failure in outcome.batch_failures]


def judge_batch(
    inputs: RunInputs, *, run_stage: StageRunner = run_stage_directly, run_stages: Optional[ParallelStageRunner] = None
) -> Judgement:
    """Run every check on the loaded batch and decide which rows to quarantine.

    Expectations and the batch-level checks come first: a failure there (a
    column missing, drift) rejects the batch without running a detector.
    Then the configured detectors, the decision, and the model-impact check,
    which can still reject the batch the decision would keep. The
    detectors go to ``run_stages`` when given (fitted all at once, then
    the batch's chunks scored all at once: ``run_detectors_at_once``), else
    to ``run_stage`` one after another.
    """
    outcomes = [run_stage("check-expectations", check_expectations, inputs)]
    batch = run_stage("check-batch", check_batch, inputs)
    outcomes += [batch] if batch is not None else []
    if any(outcome.batch_failures for outcome in outcomes):
        return Judgement(outcomes=outcomes, rejected=True)
    settings = inputs.settings
    features = run_stage("encode-features", encode_features, inputs)
    # The detectors read the features only: the batch's own numbers can wait
    # on disk until the decision (``core.spill``), beside the output.
    inputs.batch.spill_numbers(inputs.batch_typed, settings.out.parent)
    configured = list(settings.config.detection.detectors)
    # Run in memory order, report in the configured one (the outcomes are put back).
    order = detector_run_order(configured)
    if run_stages is None:
        found = [run_stage(f"detect-{name}", run_detector, name, features, settings) for name in order]
    else:
        found = run_detectors_at_once(order, features, settings, run_stages)
    by_name = dict(zip(order, found))
    outcomes += [by_name[name] for name in configured]
    # One decision over every check's findings, within the configured rate.
    outcomes = apply_decision_rule(inputs, outcomes)
    decision = run_stage("decide", decide, inputs, outcomes)
    decision = _with_notes(decision, features.notes)
    impact = run_stage("check-model-impact", check_model_impact, inputs, features, decision)
    if impact is not None:
        outcomes.append(impact)
        if impact.batch_failures:
            return Judgement(outcomes=outcomes, rejected=True, features=features, decision=decision)
        decision = _with_notes(decide(inputs, outcomes), features.notes)  # the same rows, the impact check counted
    return Judgement(outcomes=outcomes, rejected=False, features=features, decision=decision)


# Detectors whose working set is several times the batch's features (a
# score per row and feature, models' fold predictions), most first. Run one
# after another, a detector's peak comes on top of every earlier detector's
# findings; at a million rows, running these first lowered the run's peak
# from 2.04 to about 1.8 GB. Others (neighbour searches, in query blocks)
# follow in the configured order.
LARGEST_WORKING_SETS = (
    "label.trusted_model", "backdoor.trigger", "outlier.class_conditional", "outlier.ecod", "outlier.cellwise",
    "label.confident_learning",
)


def detector_run_order(names) -> list[str]:
    """The order ``judge_batch`` runs the detectors ``names`` in: ``LARGEST_WORKING_SETS`` first."""
    rank = {name: position for position, name in enumerate(LARGEST_WORKING_SETS)}
    return sorted(names, key=lambda name: rank.get(name, len(LARGEST_WORKING_SETS)))


def _with_notes(decision: Decision, notes: list[str]) -> Decision:
    """The decision with ``notes`` (how the features were encoded) before its own."""
    return replace(decision, notes=[*notes, *decision.notes]) if notes else decision
