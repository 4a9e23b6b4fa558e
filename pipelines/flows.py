"""Prefect flows: thin wiring over ``pipelines.run`` and ``pipelines.watch``.

Each stage of ``pipelines.run.execute`` becomes a Prefect task, so a run reads
well in the Prefect UI (load-inputs, check-expectations, detect-outlier.ecod,
...), while the logic stays importable and testable without Prefect.

``watch_flow`` is what ``poisonguard watch`` runs and ``poisonguard serve``
deploys: one pass over an inbox, each batch's stages as tasks named after the
stage and the file, a markdown and a table artifact per batch, and a pause for
a person (a ``BatchReview`` form in the UI) when too much of a batch is
quarantined.
"""
from __future__ import annotations

import time
from typing import Callable, Literal, Optional

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from pipelines.publish import RunSummary
from pipelines.run import execute
from pipelines.settings import RunSettings

# Set when the flow body starts: the caller subtracts its own start time to
# tell Prefect's start-up (the ephemeral server) apart from the work.
FLOW_BODY_STARTED: dict[str, float] = {}
WATCH_FLOW_NAME = "poisonguard-watch"
# How often a paused flow run asks the server whether a person has answered.
REVIEW_POLL_SECONDS = 5


def as_task(name: str, function: Callable, *args, batch: Optional[str] = None):
    """Run ``function(*args)`` as a Prefect task named ``name``.

    Stages exchange in-memory frames, so caching (which hashes inputs) is off;
    no retries, since a stage that failed on bad data fails the same again.
    ``batch`` (the inbox file a watch pass is working on) names the task run.
    """
    run_name = f"{name} · {batch}" if batch else None
    options = {"task_run_name": run_name.replace("{", "(").replace("}", ")")} if run_name else {}
    return task(function, name=name, cache_policy=NO_CACHE, persist_result=False, **options)(*args)


@flow(name="poisonguard-run", persist_result=False)
def run_flow(settings: RunSettings) -> RunSummary:
    """Sanitise one batch: expectations, detectors, quarantine, signed output."""
    FLOW_BODY_STARTED["at"] = time.perf_counter()
    summary = execute(settings, run_stage=as_task)
    publish_run_artifacts(settings.config.dataset.name, summary, batch=", ".join(p.name for p in settings.batches))
    return summary


# --------------------------------------------------------------------------- watch


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
    from prefect.logging import get_run_logger

    from pipelines.watch import make_request, watch

    FLOW_BODY_STARTED["at"] = time.perf_counter()
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
    _publish_pass_artifact(summary)
    return summary.as_dict()


def pause_for_review(question: str, record_flow_run: Callable[[str], None]) -> Optional[dict]:
    """Pause this flow run until a person approves or rejects the batch.

    Only against a Prefect server a person can reach (``PREFECT_API_URL``
    set); a temporary in-process server dies with the command, so then the
    batch is held instead (None). A timeout (``watch.review_timeout``) also
    holds it.
    """
    from prefect.context import FlowRunContext
    from prefect.flow_runs import pause_flow_run
    from prefect.settings import PREFECT_API_URL

    from pipelines.config import load_config

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not PREFECT_API_URL.value():
        return None
    timeout = _review_timeout(context, load_config)
    record_flow_run(str(context.flow_run.id))
    form = BatchReview.with_initial_data(description=question, decision="approve")
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=REVIEW_POLL_SECONDS)
    except Exception:  # noqa: BLE001 - timed out (or cannot pause): hold the batch
        return None
    return {"decision": answer.decision, "reviewer": answer.reviewer or None, "note": answer.note or None}


def _review_timeout(context, load_config) -> int:
    config_path = (context.parameters or {}).get("config")
    return load_config(config_path).watch.review_timeout


# --------------------------------------------------------------------------- artifacts


def artifact_key(dataset: str, suffix: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes)."""
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-") or "dataset"
    return f"poisonguard-{slug}-{suffix}"


def publish_run_artifacts(dataset: str, summary: RunSummary, *, batch: str) -> None:
    """Markdown (counts, drift table, report) and table (top quarantined rows) artifacts of one run."""
    from pipelines.watch import BatchResult

    result = BatchResult(
        name=batch, digest="", status={"succeeded": "published"}.get(summary.status, summary.status),
        run_id=summary.run_id, report=str(summary.report) if summary.report else None,
        message="; ".join(summary.batch_failures), rows_in=summary.rows_in, kept=summary.kept,
        quarantined=summary.quarantined, per_check=summary.per_check, batch_checks=summary.batch_checks,
        top_quarantined=summary.top_quarantined,
    )
    publish_batch_artifacts(dataset, result, location=str(summary.out) if summary.out else None)


def publish_batch_artifacts(dataset: str, result, *, location: Optional[str] = None) -> None:
    """The markdown and table artifacts of one processed inbox file."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    if result.status in ("duplicate", "waiting") and not result.run_id:
        return
    create_markdown_artifact(
        markdown=batch_markdown(dataset, result, location=location),
        key=artifact_key(dataset, "batch"),
        description=f"{result.name}: {result.status}",
    )
    if result.top_quarantined:
        create_table_artifact(
            table=[{k: ("" if v is None else v) for k, v in row.items()} for row in result.top_quarantined],
            key=artifact_key(dataset, "quarantined"),
            description=f"{result.name}: the most suspicious of {result.quarantined} quarantined rows",
        )


def batch_markdown(dataset: str, result, *, location: Optional[str] = None) -> str:
    """Markdown for one batch: outcome, counts per check, drift table, report."""
    lines = [f"## {dataset}: `{result.name}` — {result.status}", ""]
    facts = [("batch sha256", f"`{result.digest[:16]}…`" if result.digest else None), ("run", result.run_id),
             ("version", result.version), ("rows in / kept / quarantined",
                                          f"{result.rows_in} / {result.kept} / {result.quarantined}"),
             ("output", location), ("inbox file moved to", result.moved_to)]
    lines += [f"- **{name}**: {value}" for name, value in facts if value]
    if result.report:
        lines.append(f"- **report**: [{result.report}](file://{result.report})")
    if result.message:
        lines += ["", f"> {result.message}"]
    if result.per_check:
        lines += ["", "### Counts per check", "", "| check | kind | rows checked | flagged |", "|---|---|--:|--:|"]
        lines += [f"| `{r['check']}` | {r['kind']} | {r['rows_checked']} | {r['flagged']} |" for r in result.per_check]
    if result.batch_checks:
        lines += ["", "### Drift and batch-level checks", "",
                  "| check | column | test | statistic | threshold | p-value | verdict |", "|---|---|---|--:|--:|--:|---|"]
        for row in result.batch_checks:
            lines.append(
                f"| `{row['check']}` | {row['column'] or '—'} | {row['test']} | {_number(row['statistic'])} | "
                f"{_number(row['threshold'])} | {_number(row['p_value'])} | {'**fails**' if row['failed'] else 'ok'} |"
            )
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def _publish_pass_artifact(summary) -> None:
    from prefect.artifacts import create_markdown_artifact

    lines = [f"## Watch pass over `{summary.inbox}`", ""]
    if summary.busy:
        lines.append(f"Another watcher ({summary.busy}) holds dataset `{summary.dataset}`; nothing done.")
    lines += [f"- {note}" for note in summary.recovered]
    if summary.results:
        lines += ["", "| file | status | version | kept | quarantined |", "|---|---|---|--:|--:|"]
        lines += [f"| `{r.name}` | {r.status} | {r.version or '—'} | {r.kept} | {r.quarantined} |" for r in summary.results]
    else:
        lines.append("No new batch in the inbox.")
    lines += ["", f"Current version: `{summary.head or 'none yet'}` in `{summary.root}`"]
    create_markdown_artifact(markdown="\n".join(lines) + "\n", key=artifact_key(summary.dataset, "watch"),
                             description=f"watch pass: {len(summary.results)} file(s)")
