"""The detectors of a run as tasks a cluster runs at once, the chunks of a large batch among them.

``judge_batch`` gives its detectors to a parallel stage runner when it has
one (the Prefect flow on a Dask cluster, ``run --dask``). With one task a
detector, each held a worker for the whole batch however many workers
stood idle; a detector that scores rows alone can use as many workers as
the batch has chunks. So with a trusted reference a run goes in three
steps:

1. every detector is fitted on the reference, all at once (the reference's
   rows, not the batch's);
2. a detector that judges in chunks (``Detector.batch_judge``:
   ``label.trusted_model``, ``outlier.ecod``, ``outlier.iforest``,
   ``outlier.cellwise``) scores each chunk of ``detection.chunk_rows`` batch
   rows as a task of its own; the others judge the whole batch in one task;
   all of these at once;
3. this process adds each detector's chunks to its judge, in batch order,
   and reads the findings, which are those of the whole batch
   (``detectors.judges``): the outcome is the local run's.

Without a reference a detector fits on the batch it judges, so each is one
task (``run_detector``). Nothing here imports Prefect: a task is a
``(name, function, args)`` the runner is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from poisonguard.detectors.errors import DetectorError, NotEnoughData
from poisonguard.pipelines.core.checks import (
    CheckOutcome,
    DetectorPlan,
    FeatureMatrices,
    library_warnings,
    plan_detector,
    planned_outcome,
    quarantinable_outcome,
    run_detector,
    skipped_plan,
)
from poisonguard.pipelines.core.settings import RunSettings


@dataclass(frozen=True)
class Attempt:
    """What a task gave back: its value and the libraries' warnings, or why the detector had too little to judge."""

    value: Any = None
    warnings: tuple[str, ...] = ()
    not_enough: Optional[str] = None


def attempt(function: Callable, *args, **kwargs) -> Attempt:
    """``function(*args, **kwargs)`` with its warnings caught, and ``NotEnoughData`` as a reason rather than a failure."""
    try:
        with library_warnings() as caught:
            value = function(*args, **kwargs)
    except NotEnoughData as error:
        return Attempt(not_enough=str(error))
    return Attempt(value, tuple(caught))


# The tasks, each a function of its own name (a Dask cluster's dashboard names a task by its function).
def fit_detector(detector, trusted_features, trusted_labels) -> Attempt:
    """The detector fitted on the trusted rows (a copy of it, on a worker)."""
    return attempt(detector.fit, trusted_features, trusted_labels)


def score_chunk(judge, X, y, row_ids, first_row: int) -> Attempt:
    """What ``judge`` keeps of the chunk whose first row is batch row ``first_row`` (``BatchJudge.score``)."""
    return attempt(judge.score, X, y, row_ids, first_row=first_row)


def judge_whole(detector, X, y, row_ids, rate: float) -> Attempt:
    """A fitted detector's outcome on the whole batch, its findings cut to the rows that can be quarantined.

    Cut here, on the worker: sent back whole, the five whole-batch
    detectors' findings (a check name, a reason and an id a row) all
    reached the command's process at once.
    """
    return attempt(_quarantinable_findings, detector, X, y, row_ids, rate)


def _quarantinable_findings(detector, X, y, row_ids, rate: float) -> CheckOutcome:
    return quarantinable_outcome(detector.name, detector.findings(X, y, row_ids), row_ids, rate)


def run_detectors_at_once(names: list[str], features: FeatureMatrices, settings: RunSettings,
                          run_stages: Callable[[list], list]) -> list[CheckOutcome]:
    """The outcomes of the detectors ``names``, in that order, from tasks ``run_stages`` runs at once.

    Each outcome equals ``run_detector``'s (its ``seconds`` aside).
    """
    plans = {name: plan_detector(name, features, settings) for name in names}
    planned = [name for name in names if isinstance(plans[name], DetectorPlan)]
    with_reference = [name for name in planned if plans[name].trusted_features is not None]
    without = [name for name in planned if plans[name].trusted_features is None]
    fits = dict(zip(with_reference, run_stages([
        (f"fit-{name}", fit_detector, (plans[name].detector, plans[name].trusted_features, plans[name].trusted_labels))
        for name in with_reference
    ])))

    tasks, owners, judges = [], [], {}  # each task, and whose it is
    for name in without:
        tasks.append((f"detect-{name}", run_detector, (name, features, settings)))
        owners.append(name)
    chunk_rows, rate = settings.config.detection.chunk_rows, settings.config.detection.max_false_positive_rate
    for name in (name for name in with_reference if fits[name].not_enough is None):
        X, y, ids = plans[name].batch_rows(features)
        detector = fits[name].value
        judges[name] = _chunk_judge(detector)
        if judges[name] is None:
            tasks.append((f"detect-{name}", judge_whole, (detector, X, y, ids, rate)))
            owners.append(name)
            continue
        starts = range(0, max(len(ids), 1), chunk_rows)  # an empty batch is one empty chunk, as findings sees it
        for number, start in enumerate(starts, 1):
            chunk = slice(start, start + chunk_rows)
            tasks.append((f"score-{name} {number}/{len(starts)}", score_chunk,
                          (judges[name], X.iloc[chunk], y[chunk], ids[chunk], start)))
            owners.append(name)
    by_name: dict[str, list] = {}
    for name, result in zip(owners, run_stages(tasks)):
        by_name.setdefault(name, []).append(result)
    del tasks  # the chunks' features

    outcomes = []
    for name in names:
        plan = plans[name]
        if not isinstance(plan, DetectorPlan):
            outcomes.append(plan)
        elif name in without:
            outcomes.append(by_name.pop(name)[0])
        elif fits[name].not_enough is not None:
            outcomes.append(skipped_plan(plan, fits[name].not_enough))
        else:
            # Each detector's parts given up as it is judged: the next one's are the only ones held.
            outcomes.append(_joined_outcome(plan, features, settings, fits[name], judges.pop(name), by_name.pop(name)))
    return outcomes


def _chunk_judge(detector):
    """The fitted detector's ``batch_judge()``, or None when it judges the batch only whole."""
    try:
        return detector.batch_judge()
    except DetectorError:
        return None


def _joined_outcome(plan: DetectorPlan, features: FeatureMatrices, settings: RunSettings, fit: Attempt,
                    judge, parts: list[Attempt]) -> CheckOutcome:
    """One fitted detector's outcome from its whole-batch task, or from its chunks added to its judge."""
    caught = list(fit.warnings)
    failed = next((part.not_enough for part in parts if part.not_enough is not None), None)
    if failed is not None:
        return skipped_plan(plan, failed)
    for part in parts:
        caught += [message for message in part.warnings if message not in caught]
    if judge is None:
        findings = parts[0].value  # an outcome already cut (``judge_whole``)
    else:
        for part in parts:
            judge.add_scored(part.value)
        parts.clear()  # the judge frees the chunks' arrays once it has joined them
        joined = attempt(judge.findings)
        if joined.not_enough is not None:
            return skipped_plan(plan, joined.not_enough)
        findings = joined.value
        caught += [message for message in joined.warnings if message not in caught]
    return planned_outcome(plan, findings, plan.row_ids(features), caught, settings)
