"""``poisonguard run``, ``verify`` and ``keygen``: check a batch, check an output, make keys.

Every command module of the CLI imports the layers it drives inside its
commands: the pipeline's libraries (scikit-learn, PyOD, cleanlab, Great
Expectations, Prefect, SQLAlchemy) take seconds to import, which ``--help``
and a mistyped option should not wait for. Nothing imports the CLI, so this
never hides an import cycle.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from poisonguard.pipelines.cli.common import STARTED, console, quiet_services, reports_errors, require_existing_files
from poisonguard.pipelines.core.errors import ConfigError
from poisonguard.pipelines.core.state import default_public_key


@reports_errors
def keygen(out: Path = typer.Option(..., "--out", help="Folder for private.pem (mode 0600) and public.pem.")):
    """Make an ECDSA P-256 signing key pair."""
    from poisonguard.pipelines.outputs.signing import generate_keypair

    private, public = generate_keypair(out)
    console.print(f"wrote {private} (keep it secret) and {public}")


@reports_errors
def run(
    batches: List[Path] = typer.Argument(
        ..., metavar="BATCH...",
        help="Batch files (CSV or TSV, Parquet or JSON Lines, optionally .gz), or folders of them.",
    ),
    out: Path = typer.Option(..., "--out", help="Output folder; must not exist yet."),
    label: Optional[str] = typer.Option(None, "--label", help="Label column (or dataset.label in --config)."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Id column; a content hash when absent."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Trusted reference file."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config file."),
    key: Optional[Path] = typer.Option(None, "--key", help="Private key PEM; the state folder's key when absent."),
    separator: Optional[str] = typer.Option(
        None, "--sep", metavar="CHAR", help="Field separator of CSV files (dataset.separator; ',' by default)."
    ),
    decimal: Optional[str] = typer.Option(
        None, "--decimal", metavar="CHAR",
        help="Decimal mark of numbers in CSV files, '.' or ',' (dataset.decimal; '.' by default).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
    prefect: Optional[bool] = typer.Option(
        None, "--prefect/--no-prefect",
        help="Run as a Prefect flow (default: when a Prefect API is configured, e.g. PREFECT_API_URL).",
    ),
    dask: Optional[str] = typer.Option(
        None, "--dask", metavar="ADDRESS",
        help="Run the detectors on the Dask cluster whose scheduler is at ADDRESS (a Prefect flow run; prefect-dask).",
    ),
):
    """Check a batch, quarantine suspect rows, and write a signed clean dataset.

    With a Prefect API configured, the run is a Prefect flow run on that
    server, visible in its UI. Without one, the same stages run in this
    process: starting a throwaway Prefect server would cost more than the
    work on most batches. --prefect forces a flow run (on a temporary local
    server when none is configured). --dask runs the detectors on a Dask
    cluster, through Prefect's Dask task runner.
    """
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    quiet_services()
    require_existing_files([*batches, reference], config)
    # Deferred, like every command's heavy imports: see the module docstring.
    # The settings' mistakes (no label, an existing output) are found before
    # Great Expectations' 3 s import, which reading the inputs needs.
    from poisonguard.pipelines.core.settings import make_settings

    settings = make_settings(
        batches, out=out, label=label, id_column=id_column, reference=reference, config_path=config, key=key,
        separator=separator, decimal=decimal,
    )
    from poisonguard.pipelines.core.inputs import preload_inputs
    from poisonguard.pipelines.runner import check_ready

    check_ready(settings)  # a wrong key or store URL fails here, not after the work
    if dask is not None and prefect is False:
        raise ConfigError("--dask runs the detectors as Prefect tasks on the cluster: it cannot go with --no-prefect")
    if dask is not None:
        from poisonguard.pipelines.flows.run import check_scheduler

        with console.status(f"connecting to the Dask scheduler at {dask}…"):
            check_scheduler(dask)
    with console.status(_reading(settings)):
        inputs = preload_inputs(settings)  # bad input fails here, before Prefect starts
    from poisonguard.pipelines.cli.progress import StageProgress
    from poisonguard.pipelines.core.stages import detector_run_order, stage_listener
    from poisonguard.pipelines.flows.api import prefect_api_configured

    as_flow = dask is not None or (prefect if prefect is not None else prefect_api_configured())
    if dask is not None:
        from poisonguard.pipelines.flows.run import remote_cluster_note

        note = remote_cluster_note(dask)
        if note:
            console.print(f"[yellow]note:[/] {note}")
    with console.status("starting Prefect…" if as_flow else "working…") as status:
        called = time.perf_counter()
        progress = StageProgress(
            status, rows=len(inputs.batch.raw), detectors=detector_run_order(settings.config.detection.detectors)
        )
        with stage_listener(progress):
            if as_flow:
                from poisonguard.pipelines.flows.run import run_flow, run_flow_on_dask
                from poisonguard.pipelines.flows.tasks import FLOW_BODY_STARTED

                summary = run_flow(settings) if dask is None else run_flow_on_dask(settings, dask)
                startup = FLOW_BODY_STARTED.get("at", called) - called
            else:
                from poisonguard.pipelines.runner import execute

                summary = execute(settings)
                startup = None
    _print_summary(summary, inputs.batch.raw.shape[0], startup, time.perf_counter() - STARTED)
    if summary.status == "rejected":
        raise summary.rejection()


def _reading(settings) -> str:
    """The spinner's words while the inputs load: a million CSV rows take seconds, before any stage."""
    files = len(settings.batches)
    reference = " and the trusted reference" if settings.config.dataset.reference is not None else ""
    return f"reading {files} batch file{'' if files == 1 else 's'}{reference}…"


@reports_errors
def verify(
    folder: Path = typer.Argument(..., help="A folder written by 'poisonguard run'."),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="Public key PEM; the state folder's when absent."),
    chain: bool = typer.Option(False, "--chain", help="A dataset version (or dataset folder): also verify every parent."),
):
    """Check that a signed output folder is exactly what was signed."""
    from poisonguard.pipelines.outputs.datasets import verify_chain
    from poisonguard.pipelines.outputs.signing import verify_folder

    key = public_key or default_public_key()
    if chain:
        versions = verify_chain(folder, key)
        for version in versions:
            console.print(f"[green]verified[/]: {version.folder} ({version.chain.get('rows', 0)} clean rows)")
        console.print(f"[green]chain verified[/]: {len(versions)} version(s), each linked to its parent by signature digest")
        return
    verified = verify_folder(folder, key)
    console.print(f"[green]verified[/]: {len(verified.files)} files in {folder} match signature.sig ({key})")


def _print_summary(summary, rows_in: int, startup: Optional[float], total: float) -> None:
    table = Table(title=f"poisonguard run {summary.run_id[:8]}", show_lines=False)
    table.add_column("check", no_wrap=True)
    for column in ("rows checked", "flagged", "only this check"):
        table.add_column(column, justify="right")
    for row in summary.per_check:
        table.add_row(row["check"], str(row["rows_checked"]), str(row["flagged"]), str(row["flagged_only_here"]))
    console.print(table)
    console.print(f"rows in {rows_in}, kept {summary.kept}, quarantined {summary.quarantined}")
    for note in summary.notes:
        console.print(f"[yellow]note:[/] {note}")
    if summary.key_created:
        console.print(f"created a signing key in the state folder: {summary.key_path} (public key beside it)")
    if summary.out is not None:
        console.print(f"signed output: {summary.out} (report: {summary.report})")
    if startup is None:
        console.print(
            f"time: {total:.1f} s in all, from the command's start; work {summary.work_seconds:.1f} s "
            "(in this process, not as a Prefect flow run: no Prefect API is configured, or --no-prefect)",
            highlight=False,
        )
        return
    console.print(
        f"time: {total:.1f} s in all, from the command's start; Prefect start-up {startup:.1f} s, "
        f"work {summary.work_seconds:.1f} s",
        highlight=False,
    )
