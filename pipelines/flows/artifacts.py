"""Prefect artifacts of runs and watch passes: counts, drift table, most suspicious rows."""
from __future__ import annotations

import re
from typing import Optional

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from poisonguard.pipelines.outputs.publish import RunSummary
from poisonguard.pipelines.watch.context import BatchResult, WatchSummary


def artifact_key(dataset: str, suffix: str) -> str:
    """A valid artifact key (lowercase letters, digits, dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-") or "dataset"
    return f"poisonguard-{slug}-{suffix}"


def publish_run_artifacts(dataset: str, summary: RunSummary, *, batch: str) -> None:
    """Markdown (counts, drift table, report) and table (top quarantined rows) artifacts of one run."""
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


def publish_pass_artifact(summary: WatchSummary) -> None:
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
