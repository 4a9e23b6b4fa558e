"""The ``poisonguard-run`` flow: one batch, each stage of ``runner.execute`` a task."""
from __future__ import annotations

from prefect import flow

from poisonguard.pipelines.core.settings import RunSettings
from poisonguard.pipelines.flows.artifacts import publish_run_artifacts
from poisonguard.pipelines.flows.tasks import as_task, mark_flow_started
from poisonguard.pipelines.outputs.publish import RunSummary
from poisonguard.pipelines.runner import execute


@flow(name="poisonguard-run", persist_result=False)
def run_flow(settings: RunSettings) -> RunSummary:
    """Sanitise one batch: expectations, detectors, quarantine, signed output."""
    mark_flow_started()
    summary = execute(settings, run_stage=as_task)
    publish_run_artifacts(settings.config.dataset.name, summary, batch=", ".join(p.name for p in settings.batches))
    return summary
