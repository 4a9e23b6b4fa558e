"""The ``poisonguard-run`` flow: one batch, each stage of ``runner.execute`` a task."""
from __future__ import annotations

from prefect import flow

from poisonguard.pipelines.core.errors import ConfigError
from poisonguard.pipelines.core.settings import RunSettings
from poisonguard.pipelines.flows.artifacts import publish_run_artifacts
from poisonguard.pipelines.flows.tasks import as_parallel_tasks, as_task, mark_flow_started
from poisonguard.pipelines.outputs.publish import RunSummary
from poisonguard.pipelines.runner import execute


@flow(name="poisonguard-run", persist_result=False)
def run_flow(settings: RunSettings, parallel: bool = False) -> RunSummary:
    """Sanitise one batch: expectations, detectors, quarantine, signed output.

    ``parallel``: submit the detectors at once to the flow's task runner
    (``run_flow_on_dask``), rather than one task after another.
    """
    mark_flow_started()
    summary = execute(settings, run_stage=as_task, run_stages=as_parallel_tasks if parallel else None)
    publish_run_artifacts(settings.config.dataset.name, summary, batch=", ".join(p.name for p in settings.batches))
    return summary


def run_flow_on_dask(settings: RunSettings, address: str) -> RunSummary:
    """``run_flow`` with its detectors on the Dask cluster whose scheduler is at ``address``.

    Loading, the decision and publishing stay in this process (they hold the
    batch and the signing key); the seven detectors, which need nothing of
    each other, run on the cluster's workers at once.
    """
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(
            "--dask needs prefect-dask: pip install 'poisonguard[dask]' (or pip install prefect-dask)"
        ) from None
    return run_flow.with_options(task_runner=DaskTaskRunner(address=address))(settings, parallel=True)
