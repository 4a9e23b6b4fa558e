"""Stages as Prefect tasks: the stage runner the flows hand to ``runner.execute``."""
from __future__ import annotations

import time
from typing import Callable, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from poisonguard.pipelines.core.stages import announce_stage

# Set when a flow body starts: the caller subtracts its own start time to
# tell Prefect's start-up (the ephemeral server) apart from the work.
FLOW_BODY_STARTED: dict[str, float] = {}


def mark_flow_started() -> None:
    """Record that a flow body started (see ``FLOW_BODY_STARTED``)."""
    FLOW_BODY_STARTED["at"] = time.perf_counter()


def as_task(name: str, function: Callable, *args, batch: Optional[str] = None):
    """Run ``function(*args)`` as a Prefect task named ``name``.

    Stages exchange in-memory frames, so caching (which hashes inputs) is off
    and the arguments are quoted: Prefect would otherwise walk every object
    in them looking for futures (a tenth of a 20,000-row run). No retries,
    since a stage that failed on bad data fails the same again.
    ``batch`` (the inbox file a watch pass is working on) names the task run.
    """
    announce_stage(name)
    run_name = f"{name} · {batch}" if batch else None
    options = {"task_run_name": run_name.replace("{", "(").replace("}", ")")} if run_name else {}
    return task(function, name=name, cache_policy=NO_CACHE, persist_result=False, **options)(
        *(quote(arg) for arg in args)
    )


def as_parallel_tasks(stages: list) -> list:
    """Submit ``[(name, function, args), ...]`` as Prefect tasks at once; their results in order.

    The flow's task runner decides where they run (a Dask cluster's workers
    with ``prefect-dask``). Arguments are not quoted here: a quoted argument
    reaches a Dask worker still wrapped.
    """
    futures = []
    for name, function, args in stages:
        announce_stage(name)
        futures.append(task(function, name=name, cache_policy=NO_CACHE, persist_result=False).submit(*args))
    return [future.result() for future in futures]
