"""Prefect flows: thin wiring over ``pipelines.run``.

Each stage of ``pipelines.run.execute`` becomes a Prefect task, so a run reads
well in the Prefect UI (load-inputs, check-expectations, detect-outlier.ecod,
...), while the logic stays importable and testable without Prefect.
"""
from __future__ import annotations

import time
from typing import Callable

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from pipelines.publish import RunSummary
from pipelines.run import execute
from pipelines.settings import RunSettings

# Set when the flow body starts: the caller subtracts its own start time to
# tell Prefect's start-up (the ephemeral server) apart from the work.
FLOW_BODY_STARTED: dict[str, float] = {}


def as_task(name: str, function: Callable, *args):
    """Run ``function(*args)`` as a Prefect task named ``name``.

    Stages exchange in-memory frames, so caching (which hashes inputs) is off;
    no retries, since a stage that failed on bad data fails the same again.
    """
    return task(function, name=name, cache_policy=NO_CACHE, persist_result=False)(*args)


@flow(name="poisonguard-run", persist_result=False)
def run_flow(settings: RunSettings) -> RunSummary:
    """Sanitise one batch: expectations, detectors, quarantine, signed output."""
    FLOW_BODY_STARTED["at"] = time.perf_counter()
    return execute(settings, run_stage=as_task)
