"""The ``poisonguard`` command line.

Heavy imports (Prefect, Great Expectations, PyOD) happen inside the commands
that need them, so ``--help`` and input errors answer at once.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from pipelines.cli_support import console, reports_errors
from pipelines.review_cli import emit_command, review_app
from pipelines.evaluate import evaluate_command
from pipelines.watch_cli import serve_command, watch_command

app = typer.Typer(
    help="Detect poisoned rows in training data, quarantine them, and emit a signed clean dataset.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
expectations_app = typer.Typer(help="Infer and inspect expectation suites.", no_args_is_help=True)
app.add_typer(expectations_app, name="expectations")

app.add_typer(review_app, name="review")
app.command("emit")(emit_command)
app.command("watch")(watch_command)
app.command("serve")(serve_command)
app.command("evaluate")(evaluate_command)



def quiet_services() -> None:
    """Telemetry off and logs short, unless the user chose otherwise."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


@app.command()
@reports_errors
def keygen(out: Path = typer.Option(..., "--out", help="Folder for private.pem (mode 0600) and public.pem.")):
    """Make an ECDSA P-256 signing key pair."""
    from pipelines.signing import generate_keypair

    private, public = generate_keypair(out)
    console.print(f"wrote {private} (keep it secret) and {public}")


@app.command()
@reports_errors
def run(
    batches: List[Path] = typer.Argument(..., help="Batch files: CSV, Parquet or JSON Lines (optionally .gz)."),
    out: Path = typer.Option(..., "--out", help="Output folder; must not exist yet."),
    label: Optional[str] = typer.Option(None, "--label", help="Label column (or dataset.label in --config)."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Id column; a content hash when absent."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Trusted reference file."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config file."),
    key: Optional[Path] = typer.Option(None, "--key", help="Private key PEM; the state folder's key when absent."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's logs."),
):
    """Check a batch, quarantine suspect rows, and write a signed clean dataset."""
    if verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    quiet_services()
    from pipelines.run import preload_inputs
    from pipelines.settings import make_settings

    settings = make_settings(
        batches, out=out, label=label, id_column=id_column, reference=reference, config_path=config, key=key
    )
    inputs = preload_inputs(settings)  # bad input fails here, before Prefect starts
    with console.status("running the poisonguard flow (starting Prefect)…"):
        called = time.perf_counter()
        from pipelines import flows

        summary = flows.run_flow(settings)
        finished = time.perf_counter()
    startup = flows.FLOW_BODY_STARTED.get("at", called) - called
    _print_summary(summary, inputs.batch.raw.shape[0], startup, finished - called)
    if summary.status == "rejected":
        raise summary.rejection()


@app.command()
@reports_errors
def verify(
    folder: Path = typer.Argument(..., help="A folder written by 'poisonguard run'."),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="Public key PEM; the state folder's when absent."),
    chain: bool = typer.Option(False, "--chain", help="A dataset version (or dataset folder): also verify every parent."),
):
    """Check that a signed output folder is exactly what was signed."""
    from pipelines.signing import verify_folder
    from pipelines.state import default_public_key

    key = public_key or default_public_key()
    if chain:
        from pipelines.datasets import verify_chain

        versions = verify_chain(folder, key)
        for version in versions:
            console.print(f"[green]verified[/]: {version.folder} ({version.chain.get('rows', 0)} clean rows)")
        console.print(f"[green]chain verified[/]: {len(versions)} version(s), each linked to its parent by signature digest")
        return
    verified = verify_folder(folder, key)
    console.print(f"[green]verified[/]: {len(verified.files)} files in {folder} match signature.sig ({key})")


@expectations_app.command("infer")
@reports_errors
def expectations_infer(
    reference: Path = typer.Option(..., "--reference", help="Trusted reference file."),
    label: str = typer.Option(..., "--label", help="Label column."),
    name: str = typer.Option(..., "--name", help="Suite name: writes expectations/suites/NAME.json."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Id column, not constrained by the suite."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config (column kinds, ignored columns)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing suite."),
):
    """Infer a Great Expectations suite from a trusted reference."""
    quiet_services()
    from pipelines.suites import infer_suite_file

    path, count = infer_suite_file(
        reference, label=label, name=name, id_column=id_column, config_path=config, force=force
    )
    console.print(f"wrote {path}: {count} expectations inferred from {reference}; review it before you rely on it")


def _print_summary(summary, rows_in: int, startup: float, total: float) -> None:
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
    console.print(
        f"time: {total:.1f} s in all; Prefect start-up {startup:.1f} s, work {summary.work_seconds:.1f} s",
        highlight=False,
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
