"""The ``poisonguard watch`` and ``poisonguard serve`` commands.

Thin wrappers over :mod:`poisonguard.pipelines.watch.watcher` (the logic) and
``poisonguard.pipelines.flows.run.watch_flow`` (its Prefect flow). Options are checked before
Prefect starts, so a typo answers at once.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from poisonguard.pipelines.cli.common import console, quiet_services, reports_errors
from poisonguard.pipelines.core.config import load_config
from poisonguard.pipelines.core.errors import USER_ERRORS, ConfigError
from poisonguard.pipelines.core.state import state_dir


@reports_errors
def watch_command(
    inbox: str = typer.Argument(..., help="Inbox folder, or an fsspec URL (s3://bucket/inbox, ...)."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name: versions go to ROOT/NAME/vNNNN."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config file."),
    label: Optional[str] = typer.Option(None, "--label", help="Label column (or dataset.label in --config)."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Id column; a content hash when absent."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Trusted reference file (with the chain's rows)."),
    key: Optional[Path] = typer.Option(None, "--key", help="Private key PEM; the state folder's key when absent."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="ROOT of the dataset versions; watch.root of --config, else .poisonguard/datasets."
    ),
    once: bool = typer.Option(False, "--once", help="One pass over the inbox, then exit."),
    every: float = typer.Option(30.0, "--every", min=1.0, help="Without --once: seconds between passes."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
):
    """Process every new batch in INBOX once, oldest first, into signed dataset versions."""
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    else:
        hide_expected_failures()
    quiet_services()
    from poisonguard.pipelines.watch.request import make_request

    request = make_request(
        inbox, dataset=dataset, config=config, label=label, id_column=id_column, reference=reference, key=key, out=out
    )
    parameters = flow_parameters(request)
    while True:
        with console.status(f"watching {escape(request.inbox)} for dataset {escape(dataset)} (starting Prefect)…"):
            from poisonguard.pipelines.flows.watch import watch_flow

            summary = watch_flow(**parameters)
        print_pass(summary)
        if once:
            return
        time.sleep(every)


class _ExpectedFailures(logging.Filter):
    """Drop Prefect's log of a task that stopped on bad input (an empty or unreadable batch file).

    The pass's table names each such file and why; Prefect logs it too, as a
    failed task with a traceback, which read like a crash. A failure of any
    other kind (a bug) is still logged with its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], USER_ERRORS):
            return False
        message = record.getMessage()
        return not any(f"exception {name}:" in message or f"exception: {name}(" in message for name in _user_error_names())


def _user_error_names() -> set[str]:
    names, classes = set(), list(USER_ERRORS)
    while classes:
        kind = classes.pop()
        names.add(kind.__name__)
        classes.extend(kind.__subclasses__())
    return names


def hide_expected_failures() -> None:
    """Keep Prefect from logging, traceback and all, a batch the watcher rejects as bad input (see ``_ExpectedFailures``)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _ExpectedFailures) for existing in logger.filters):
            logger.addFilter(_ExpectedFailures())


def flow_parameters(request) -> dict:
    """The flow's parameters from a resolved request (None options left out)."""
    values = {
        "inbox": request.inbox, "dataset": request.dataset, "config": request.config, "label": request.label,
        "id_column": request.id_column, "reference": request.reference, "key": request.key, "out": request.out,
    }
    return {name: str(value) for name, value in values.items() if value is not None}


def print_pass(summary: dict) -> None:
    """One table line per inbox file, then the dataset's current version."""
    for note in summary["recovered"]:
        console.print(f"[yellow]recovered:[/] {escape(note)}")
    if summary["busy"]:
        console.print(f"another watcher holds dataset {escape(summary['dataset'])} ({escape(summary['busy'])}); nothing done")
        return
    if not summary["results"]:
        console.print(f"no new batch in {escape(summary['inbox'])}")
    else:
        table = Table(title=f"watch {summary['dataset']}", show_lines=False)
        for column in ("file", "status", "version", "rows in", "kept", "quarantined"):
            table.add_column(column, overflow="fold", justify="right" if column in ("rows in", "kept", "quarantined") else "left")
        for result in summary["results"]:
            table.add_row(
                escape(result["name"]), result["status"], result["version"] or "—", str(result["rows_in"]),
                str(result["kept"]), str(result["quarantined"]),
            )
        console.print(table)
        for result in summary["results"]:
            if result["status"] != "published":
                console.print(f"[bold]{escape(result['name'])}[/] {result['status']}: {escape(_note(result))}")
    console.print(f"current version: {summary['head'] or 'none yet'} in {escape(summary['root'])}")


def _note(result: dict) -> str:
    text = result["message"]
    if result["report"]:
        text += f" (report: {result['report']})"
    return text


@reports_errors
def serve_command(
    dataset: str = typer.Option(..., "--dataset", help="Dataset name: versions go to ROOT/NAME/vNNNN."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config; its watch.inbox names the inbox."),
    interval: Optional[float] = typer.Option(None, "--interval", min=1.0, help="Run a watch pass every SECONDS."),
    cron: Optional[str] = typer.Option(None, "--cron", help="Or on a cron schedule, e.g. '*/10 * * * *'."),
    inbox: Optional[str] = typer.Option(None, "--inbox", help="Inbox folder or URL; overrides watch.inbox of the config."),
    out: Optional[Path] = typer.Option(None, "--out", help="ROOT of the dataset versions."),
    name: Optional[str] = typer.Option(None, "--name", help="Deployment name; watch-NAME by default."),
):
    """Serve the watch flow as a scheduled Prefect deployment (needs PREFECT_API_URL for the UI)."""
    # Telemetry off, but Prefect's own log level kept: serving is a long-lived process whose log is the point.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if (interval is None) == (cron is None):
        raise ConfigError("give exactly one schedule: --interval SECONDS or --cron EXPRESSION")
    inbox = inbox or load_config(config).watch.inbox
    if not inbox:
        raise ConfigError("no inbox: pass --inbox or set inbox in the [watch] section of --config")
    from poisonguard.pipelines.watch.request import make_request

    request = make_request(inbox, dataset=dataset, config=config, out=out)
    # Flow runs start in subprocesses: pin the state folder they will use.
    os.environ["POISONGUARD_HOME"] = str(state_dir())
    if not os.environ.get("PREFECT_API_URL"):
        console.print(
            "[yellow]note:[/] PREFECT_API_URL is not set, so Prefect runs a temporary server that nobody can see. "
            "Start one with `prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`."
        )
    from poisonguard.pipelines.flows.watch import serve_watch

    serve_watch(flow_parameters(request), name=name or f"watch-{dataset}", interval=interval, cron=cron)
