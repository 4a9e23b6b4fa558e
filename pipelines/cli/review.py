"""The ``poisonguard review`` commands and ``poisonguard emit``.

Thin wrappers over :mod:`poisonguard.pipelines.review.queue` (the decision logic, shared with
the web app) and :mod:`poisonguard.pipelines.outputs.emit`. Every command finds the quarantine
store the same way: ``--store URL``, else ``[store] url`` of ``--config``,
else the state folder's SQLite file, which must exist already (reviewing an
empty store that was just created by mistake helps nobody).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, List, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from poisonguard.pipelines.cli.common import CONTEXT_SETTINGS, reports_errors
from poisonguard.pipelines.core.config import load_config
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.state import default_store_url

if TYPE_CHECKING:
    from poisonguard.pipelines.store import QuarantineStore

review_app = typer.Typer(
    help="Review quarantined rows: list, show, release, reject, or serve the review web page.",
    no_args_is_help=True,
    context_settings=CONTEXT_SETTINGS,
)
console = Console(highlight=False)

REASON_WIDTH = 70
# Decisions a release or reject lists one by one; a bulk decision of 17,000
# entries printed 17,000 lines, burying the summary.
SHOWN_DECISIONS = 20


def store_option():
    return typer.Option(None, "--store", help="Quarantine store URL; the state folder's SQLite file when absent.")


def config_option():
    return typer.Option(None, "--config", help="TOML config whose store.url names the store.")


def store_url(store: Optional[str], config: Optional[Path]) -> str:
    """``--store``, else the config's ``[store] url``, else the default store."""
    if store:
        return store
    if config is not None:
        configured = load_config(config).store.url
        if configured:
            return configured
    return default_store_url()


@contextmanager
def open_store(store: Optional[str], config: Optional[Path]) -> Iterator["QuarantineStore"]:
    """Open an existing quarantine store (never create an empty SQLite file)."""
    # Deferred, like every command's heavy imports (SQLAlchemy, Alembic): see cli/run.py.
    from poisonguard.pipelines.store import QuarantineStore, require_existing

    url = store_url(store, config)
    require_existing(url)
    opened = QuarantineStore(url)
    try:
        yield opened
    finally:
        opened.close()


def _queue(store, status, run, check, below_score):
    from poisonguard.pipelines.store import EntryFilter

    run_id = store.resolve_run_id(run) if run else None
    return EntryFilter(status=status, run_id=run_id, check=check, below_score=below_score)


# --------------------------------------------------------------------------- list


@review_app.command("list")
@reports_errors
def list_command(
    status: Optional[str] = typer.Option(None, "--status", help="pending, released or rejected."),
    run: Optional[str] = typer.Option(None, "--run", help="Run id (or a unique prefix)."),
    check: Optional[str] = typer.Option(None, "--check", help="Only entries flagged by this check."),
    below_score: Optional[float] = typer.Option(None, "--below-score", help="Only entries scoring below this."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many entries."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many entries first."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
    store: Optional[str] = store_option(),
    config: Optional[Path] = config_option(),
):
    """List quarantined rows, most suspicious first."""
    from poisonguard.pipelines.review import entry_summary

    with open_store(store, config) as opened:
        queue = _queue(opened, status, run, check, below_score)
        entries = opened.list_entries(queue, limit=limit, offset=offset)
        total = opened.count_entries(queue)
    if as_json:
        typer.echo(json.dumps([entry_summary(entry) for entry in entries], indent=2, ensure_ascii=False))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("row_id", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    # Long check names are cut rather than wrapped, so the reason keeps its room.
    table.add_column("checks", overflow="ellipsis", max_width=26)
    table.add_column("first reason", overflow="fold", ratio=1)
    for entry in entries:
        table.add_row(
            str(entry["id"]),
            escape(entry["row_id"]),
            entry["run_id"][:8],
            entry["status"],
            _number(entry["score"], ".3f"),
            escape("\n".join(entry["checks"])),
            escape(_shorten(_reasons(entry)[0] if _reasons(entry) else "", REASON_WIDTH)),
        )
    console.print(table)
    first = offset + 1 if entries else offset
    shown = f"showing {len(entries)} of {total}" + (f" (from {first})" if offset else "")
    more = f"; --offset {offset + len(entries)} for more" if offset + len(entries) < total else ""
    console.print(shown + more)


def _reasons(entry: dict) -> list[str]:
    return [str(finding.get("reason", "")) for finding in entry["findings"]]


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _number(value, spec: str) -> str:
    return "—" if value is None else format(float(value), spec)


# --------------------------------------------------------------------------- show


@review_app.command("show")
@reports_errors
def show_command(
    entry_id: int = typer.Argument(..., metavar="ID", help="Quarantine entry id (first column of `review list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the entry as JSON."),
    store: Optional[str] = store_option(),
    config: Optional[Path] = config_option(),
):
    """Show one quarantined row: values, findings, evidence and decision history."""
    from poisonguard.pipelines.core.jsonable import to_jsonable

    with open_store(store, config) as opened:
        entry = opened.get_entry(entry_id)
    if as_json:
        typer.echo(json.dumps(to_jsonable(entry), indent=2, ensure_ascii=False))
        return
    print_entry(entry)


def print_entry(entry: dict) -> None:
    """Print one entry for a reviewer: what, why, the evidence, and who decided what."""
    evidence = entry.get("evidence") or {}
    console.print(
        f"[bold]entry {entry['id']}[/]: row {escape(entry['row_id'])} of dataset {escape(entry['dataset'])}, "
        f"run {entry['run_id']}\nstatus [bold]{entry['status']}[/], score {_number(entry['score'], '.6f')}, "
        f"smallest p-value {_number(entry['p_value'], '.3g')}, quarantined {entry['created_at'].isoformat(timespec='seconds')}"
    )
    console.print("[bold]values[/]")
    values = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    values.add_column("column", no_wrap=True)
    values.add_column("value", overflow="fold")
    for column, value in entry["row"].items():
        values.add_row(escape(str(column)), "[dim]missing[/]" if value is None else escape(repr(value) if isinstance(value, str) and not value.strip() else str(value)))
    console.print(values)
    console.print("[bold]findings[/]")
    findings = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    findings.add_column("check", no_wrap=True)
    findings.add_column("score", justify="right", no_wrap=True)
    findings.add_column("p-value", justify="right", no_wrap=True)
    findings.add_column("reason", overflow="fold")
    for finding in entry["findings"]:
        findings.add_row(
            escape(str(finding.get("check"))), _number(finding.get("score"), ".4g"),
            _number(finding.get("p_value"), ".3g"), escape(str(finding.get("reason", ""))),
        )
    console.print(findings)
    has_label_finding = any(str(f.get("check", "")).startswith("label.") for f in entry["findings"])
    sections = [_print_neighbours, _print_features] if has_label_finding else [_print_features, _print_neighbours]
    if not evidence:
        console.print("[dim]no evidence was stored with this entry[/]")
    for section in sections:
        section(evidence)
    _print_history(entry["history"])


def _print_neighbours(evidence: dict) -> None:
    nearest = evidence.get("nearest") or []
    if not nearest:
        return
    population = evidence.get("population", "trusted reference")
    label = evidence.get("label")
    votes = evidence.get("label_votes") or {}
    agree = votes.get(label, 0) if label is not None else 0
    console.print(
        f"[bold]nearest rows of the {escape(population)}[/]: {agree} of {len(nearest)} share the label {escape(repr(label))}"
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("label")
    table.add_column("distance", justify="right")
    for rank, neighbour in enumerate(nearest, start=1):
        same = neighbour.get("label") == label
        shown = escape(str(neighbour.get("label")))
        table.add_row(str(rank), shown if same else f"[bold]{shown}[/]", _number(neighbour.get("distance"), ".4g"))
    console.print(table)
    tally = ", ".join(f"{escape(str(name))} {count}" for name, count in sorted(votes.items(), key=lambda kv: -kv[1]))
    console.print(f"label votes of the neighbours: {tally}")


def _print_features(evidence: dict) -> None:
    features = evidence.get("features") or []
    if not features:
        return
    population = evidence.get("population", "trusted reference")
    console.print(f"[bold]features furthest from the {escape(population)}[/]")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("column", "value", "reference", "median", "robust z", "note"):
        table.add_column(name, overflow="fold", justify="right" if name in ("median", "robust z") else "left")
    for fact in features:
        if fact.get("kind") == "numeric":
            low, high = (fact.get("trusted_range") or [None, None])[:2]
            reference = f"{_number(low, '.4g')} to {_number(high, '.4g')}"
            median, z = _number(fact.get("median"), ".4g"), _number(fact.get("robust_z"), ".3g")
        else:
            share = fact.get("trusted_share")
            reference = f"{share:.1%} of rows" if share is not None else "—"
            median, z = "—", "—"
        value = fact.get("value")
        table.add_row(
            escape(str(fact.get("column"))), "[dim]missing[/]" if value is None else escape(str(value)),
            reference, median, z, escape(str(fact.get("note", ""))),
        )
    console.print(table)


def _print_history(history: list[dict]) -> None:
    if not history:
        console.print("decisions: none yet (pending review)")
        return
    console.print("[bold]decisions[/]")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("when", "reviewer", "change", "note"):
        table.add_column(name, overflow="fold")
    for decision in history:
        when = decision["decided_at"].isoformat(timespec="seconds") if decision.get("decided_at") else "?"
        table.add_row(
            when, escape(str(decision["reviewer"])), f"{decision['status_before']} → {decision['status_after']}",
            escape(str(decision.get("note") or "")),
        )
    console.print(table)


# ------------------------------------------------------------------ release/reject


def _decide_command(status: str):
    verb = {"released": "release", "rejected": "reject"}[status]
    meaning = "a false alarm: the row goes into the next emitted clean dataset" if status == "released" else (
        "poison: the row never goes into a clean dataset"
    )

    @reports_errors
    def command(
        ids: Optional[List[int]] = typer.Argument(None, metavar="[ID]...", help="Quarantine entry ids."),
        rows: Optional[List[str]] = typer.Option(
            None, "--row", metavar="ROW_ID", help="The entries of this row id (repeat for several)."
        ),
        note: str = typer.Option(..., "--note", help="Why (kept in the audit trail)."),
        reviewer: Optional[str] = typer.Option(None, "--reviewer", help="Your name; POISONGUARD_REVIEWER or the login name."),
        force: bool = typer.Option(False, "--force", help="Change entries that were already decided."),
        check: Optional[str] = typer.Option(None, "--check", help="Also every entry flagged by this check."),
        run: Optional[str] = typer.Option(None, "--run", help="Also every entry of this run (id or prefix)."),
        below_score: Optional[float] = typer.Option(None, "--below-score", help="Also every entry scoring below this."),
        store: Optional[str] = store_option(),
        config: Optional[Path] = config_option(),
    ):
        chosen = list(ids or [])
        filtered = any(value is not None for value in (check, run, below_score))
        if not chosen and not rows and not filtered:
            raise InputError(f"nothing to {verb}: give entry ids, --row, or a filter (--check, --run, --below-score)")
        from poisonguard.pipelines.review import bulk_selection, decide

        with open_store(store, config) as opened:
            if rows:
                chosen += _entries_of_rows(opened, rows, run)
            if filtered:
                chosen += bulk_selection(
                    opened, _queue(opened, None, run, check, below_score), status=status, force=force, chosen=chosen
                )
            if not chosen:
                console.print(f"nothing to {verb}: no {'' if force else 'pending '}entry matches the filter")
                return
            made = decide(opened, chosen, status=status, note=note, reviewer=reviewer, force=force)
            row_ids = opened.row_ids_of(d["quarantine_id"] for d in made)
        was = Counter(decision["status_before"] for decision in made)
        console.print(
            f"{status} {len(made)} entr{'y' if len(made) == 1 else 'ies'} "
            f"(were {', '.join(f'{count} {before}' for before, count in sorted(was.items()))}):"
        )
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for name in ("id", "row_id", "was", "now"):
            table.add_column(name, no_wrap=True)
        for decision in made[:SHOWN_DECISIONS]:
            table.add_row(
                str(decision["quarantine_id"]), escape(row_ids.get(decision["quarantine_id"], "?")),
                decision["status_before"], decision["status_after"],
            )
        console.print(table)
        if len(made) > SHOWN_DECISIONS:
            console.print(
                f"and {len(made) - SHOWN_DECISIONS} more (poisonguard review list --status {status} lists every {status} entry)"
            )
        console.print(
            f"reviewer {escape(made[0]['reviewer'])}, note: {escape(made[0]['note'])}; "
            f"at {made[0]['decided_at'].isoformat(timespec='seconds')}"
        )

    command.__doc__ = f"{verb.capitalize()} quarantined rows ({meaning}), by id or by filter."
    command.__name__ = f"{verb}_command"
    return command


def _entries_of_rows(store, rows: list[str], run: Optional[str]) -> list[int]:
    """The entries of these row ids (of one run with ``--run``); each row id must have one."""
    from poisonguard.pipelines.store import EntryFilter

    run_id = store.resolve_run_id(run) if run else None
    found = []
    for row_id in dict.fromkeys(rows):
        entries = store.matching_ids(EntryFilter(run_id=run_id, row_ids=(row_id,)))
        if not entries:
            raise InputError(f"no quarantine entry for row {row_id!r}" + (f" in run {run}" if run else ""))
        found += entries
    return found


review_app.command("release")(_decide_command("released"))
review_app.command("reject")(_decide_command("rejected"))


# --------------------------------------------------------------------------- batch


@review_app.command("batch")
@reports_errors
def batch_command(
    run: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique prefix) of the held or paused batch."),
    approve: bool = typer.Option(False, "--approve", help="Publish the batch's kept rows as the next version."),
    reject: bool = typer.Option(False, "--reject", help="Quarantine the whole batch."),
    note: Optional[str] = typer.Option(None, "--note", help="Why (kept with the decision)."),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help="Your name; POISONGUARD_REVIEWER or the login name."),
    store: Optional[str] = store_option(),
    config: Optional[Path] = config_option(),
):
    """Approve or reject a watched batch held for review; resumes its paused Prefect flow run."""
    if approve == reject:
        raise InputError("give exactly one of --approve and --reject")
    decision = "approve" if approve else "reject"
    from poisonguard.pipelines.watch.review import review_batch

    with open_store(store, config) as opened:
        claim = review_batch(opened, run, decision=decision, reviewer=reviewer, note=note)
    verb = "approved" if approve else "rejected"
    console.print(f"{verb} batch {escape(claim['name'] or claim['digest'][:12])} of dataset {escape(claim['dataset'])}")
    problem = None
    if claim["paused_flow_run"]:
        from poisonguard.pipelines.flows.watch import resume_paused_review

        problem = resume_paused_review(
            claim["paused_flow_run"], decision=decision, reviewer=claim["reviewer"], note=claim["review_note"]
        )
        if problem is None:
            console.print(f"resumed the paused Prefect flow run {claim['paused_flow_run']}")
            return
    reason = f" (could not resume flow run {claim['paused_flow_run']}: {escape(problem)})" if problem else ""
    console.print(f"the next `poisonguard watch` pass applies it{reason}")


# --------------------------------------------------------------------------- serve


@review_app.command("serve")
@reports_errors
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; keep 127.0.0.1 unless you mean it."),
    port: int = typer.Option(8765, "--port", help="TCP port."),
    store: Optional[str] = store_option(),
    config: Optional[Path] = config_option(),
):
    """Serve the review web page (token from POISONGUARD_REVIEW_TOKEN, or one printed at start)."""
    url = store_url(store, config)
    from poisonguard.pipelines.store import require_existing
    from poisonguard.pipelines.web.server import serve

    require_existing(url)
    serve(store_url=url, host=host, port=port, token=os.environ.get("POISONGUARD_REVIEW_TOKEN"))
