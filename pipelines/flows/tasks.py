"""Stages as Prefect tasks: the stage runner the flows hand to ``runner.execute``."""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from poisonguard.pipelines.core.checks import FeatureMatrices
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
    reaches a Dask worker still wrapped. On a Dask cluster the large ones
    are scattered to the workers first (``ScatteredArguments``).
    """
    scattered = ScatteredArguments(dask_client())
    futures = []
    for name, function, args in stages:
        announce_stage(name)
        submitted = task(function, name=name, cache_policy=NO_CACHE, persist_result=False)
        futures.append(submitted.submit(*scattered.arguments(args)))
    return [future.result() for future in futures]  # what was scattered is released with ``scattered``


# Arrays and tables at least this large go to a Dask cluster's workers on their own.
SCATTER_BYTES = 1 << 20


class ScatteredArguments:
    """Large task arguments sent to a Dask cluster's workers once, and passed to the tasks as Dask futures.

    A task's arguments travel inside the task: the scheduler holds them
    until a worker has run it, once for every task they are given to. At a
    million rows the process hosting a local cluster's scheduler peaked at
    2.49 GB, holding the batch's features once for each whole-batch
    detector. Scattered, each array or table is sent to one worker once (by
    its identity: the same object given to five tasks is sent once), and a
    worker that needs it fetches it from there. Dask hands a task the value
    behind a future it finds in its arguments. Without a client (no Dask
    task runner) the arguments are passed as they are.
    """

    def __init__(self, client):
        self.client = client
        self._sent: dict[int, tuple] = {}  # id(value) -> (value, its future); the value keeps its id taken

    def arguments(self, args: tuple) -> tuple:
        """``args`` with each large array or table replaced by its future on the cluster."""
        if self.client is None:
            return args
        return tuple(self._future(arg) if _scattered(arg) else arg for arg in args)

    def _future(self, value):
        if id(value) not in self._sent:
            self._sent[id(value)] = (value, self.client.scatter(value, hash=False))
        return self._sent[id(value)][1]


def _scattered(value) -> bool:
    """Whether a task argument is large enough to scatter (``SCATTER_BYTES``)."""
    if isinstance(value, np.ndarray):
        return value.nbytes >= SCATTER_BYTES
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(index=False).sum()) >= SCATTER_BYTES
    if isinstance(value, FeatureMatrices):
        return value.batch_features.shape[0] * max(value.batch_features.shape[1], 1) * 8 >= SCATTER_BYTES
    return False


def dask_client():
    """The flow's Dask client when it runs on ``prefect-dask``'s task runner, else None."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return None
    runner = context.task_runner if context is not None else None
    return runner.client if isinstance(runner, DaskTaskRunner) else None
