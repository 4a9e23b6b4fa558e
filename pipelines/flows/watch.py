"""The ``poisonguard-watch`` flow: one pass over an inbox, a pause for a person when needed.

What ``poisonguard watch`` runs and ``poisonguard serve`` (or ``prefect
deploy`` with ``prefect.yaml``) schedules: each batch's stages as tasks named
after the stage and the file, a markdown and a table artifact per batch, and
a pause with a ``BatchReview`` form in the UI when too much of a batch is
quarantined.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional
from uuid import UUID

from prefect import flow
from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_API_URL
from prefect.types.entrypoint import EntrypointType
from pydantic import Field

from poisonguard.pipelines.core.config import load_config
from poisonguard.pipelines.flows.artifacts import publish_batch_artifacts, publish_pass_artifact
from poisonguard.pipelines.flows.tasks import as_task, mark_flow_started
from poisonguard.pipelines.watch.request import make_request
from poisonguard.pipelines.watch.watcher import watch

WATCH_FLOW_NAME = "poisonguard-watch"
# How often a paused flow run asks the server whether a person has answered.
REVIEW_POLL_SECONDS = 5


class BatchReview(RunInput):
    """The form a reviewer fills in to resume a paused watch run."""

    decision: Literal["approve", "reject"] = Field(
        description="approve: publish the batch's kept rows as the next version; reject: quarantine the whole batch"
    )
    reviewer: str = Field("", description="Your name, for the audit trail.")
    note: str = Field("", description="Why.")


@flow(name=WATCH_FLOW_NAME, persist_result=False)
def watch_flow(
    inbox: str,
    dataset: str,
    config: Optional[str] = None,
    label: Optional[str] = None,
    id_column: Optional[str] = None,
    reference: Optional[str] = None,
    key: Optional[str] = None,
    out: Optional[str] = None,
) -> dict:
    """Process every new batch of an inbox once, oldest first, into signed dataset versions."""
    mark_flow_started()
    logger = get_run_logger()
    request = make_request(
        inbox, dataset=dataset, config=config, label=label, id_column=id_column, reference=reference, key=key, out=out
    )
    summary = watch(
        request,
        run_stage=as_task,
        pause=pause_for_review,
        on_batch=lambda result: publish_batch_artifacts(dataset, result),
        say=logger.info,
    )
    publish_pass_artifact(summary)
    return summary.as_dict()


def pause_for_review(question: str, record_flow_run: Callable[[str], None]) -> Optional[dict]:
    """Pause this flow run until a person approves or rejects the batch.

    Only against a Prefect server a person can reach (``PREFECT_API_URL``
    set); a temporary in-process server dies with the command, so then the
    batch is held instead (None). A timeout (``watch.review_timeout``) also
    holds it.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not PREFECT_API_URL.value():
        return None
    timeout = load_config((context.parameters or {}).get("config")).watch.review_timeout
    record_flow_run(str(context.flow_run.id))
    form = BatchReview.with_initial_data(description=question, decision="approve")
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=REVIEW_POLL_SECONDS)
    except Exception:  # noqa: BLE001 - timed out (or cannot pause): hold the batch
        return None
    return {"decision": answer.decision, "reviewer": answer.reviewer or None, "note": answer.note or None}


def resume_paused_review(flow_run_id: str, *, decision: str, reviewer: str, note: Optional[str]) -> Optional[str]:
    """Resume a watch flow run paused for this answer; return why it could not be, or None.

    The store has the answer already (``watch.review.review_batch``), so a
    run that is no longer paused, or a server that is gone, loses nothing:
    the next pass applies the decision.
    """
    try:
        resume_flow_run(UUID(flow_run_id), run_input={"decision": decision, "reviewer": reviewer, "note": note or ""})
    except Exception as failure:  # noqa: BLE001 - not paused any more, or no server
        return str(failure) or type(failure).__name__
    return None


def serve_watch(parameters: dict, *, name: str, interval: Optional[float] = None, cron: Optional[str] = None) -> None:
    """Serve ``watch_flow`` as a scheduled deployment until interrupted (``poisonguard serve``).

    The deployment names the flow by its module path, so runs do not depend
    on the folder the server was started in. One pass runs at a time: a
    second would find the dataset's lease taken and leave, after paying a
    process start and every import (with a short interval, Prefect's runner
    otherwise starts each due run at once, four at a time).
    """
    dataset = parameters["dataset"]
    watch_flow.serve(
        name=name,
        interval=interval,
        cron=cron,
        parameters=parameters,
        description=f"poisonguard watch of {parameters['inbox']} into dataset {dataset}",
        tags=["poisonguard", dataset],
        entrypoint_type=EntrypointType.MODULE_PATH,
        limit=1,
    )
