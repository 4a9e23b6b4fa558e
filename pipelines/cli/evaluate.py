"""``poisonguard evaluate``: poison your own data and see what poisonguard catches."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from poisonguard.pipelines.cli.common import console, quiet_services, reports_errors, require_existing_files
from poisonguard.pipelines.core.errors import ConfigError


def _print(evaluation) -> None:
    for note in evaluation.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print("detection per attack and check (FPR: share of the clean rows flagged)")
    for attack, rows in evaluation.metrics.groupby("attack", sort=False):
        poisoned = int(rows["poisoned"].iloc[0])
        table = Table(title=f"{attack}: {poisoned} poisoned rows", title_justify="left")
        table.add_column("check", no_wrap=True, min_width=25)
        for column in ("flagged", "prec.", "recall", "F1", "FPR"):
            table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
        for row in rows.itertuples():
            table.add_row(
                row.method, str(row.flagged), _fmt(row.precision), _fmt(row.recall), _fmt(row.f1),
                f"{100 * row.fpr:.1f}%", style="bold" if row.method == "poisonguard" else None,
            )
        console.print(table)
    table = Table(title="downstream: HistGradientBoosting test accuracy on held-out clean rows")
    for column in ("attack", "trained on", "rows", "accuracy", "backdoor success"):
        table.add_column(column, justify="left" if column in ("attack", "trained on") else "right")
    for row in evaluation.downstream.itertuples():
        table.add_row(row.attack, row.trained_on, str(row.rows), _fmt(row.accuracy), _fmt(row.attack_success))
    console.print(table)


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


@reports_errors
def evaluate_command(
    data: Path = typer.Argument(..., help="A clean table (CSV, Parquet, JSON Lines) to attack."),
    label: str = typer.Option(..., "--label", help="Label column."),
    id_column: Optional[str] = typer.Option(None, "--id", help="Row id column; rows are numbered without one."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Trusted reference; else 10% of DATA is split off."),
    attacks: Optional[str] = typer.Option(None, "--attacks", help="Comma-separated attack families (default: all)."),
    rate: float = typer.Option(0.05, "--rate", help="Share of the batch each attack poisons."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config (detectors, alpha, column kinds)."),
    seed: int = typer.Option(0, "--seed", help="Seeds splits, attacks and models."),
    self_referential: bool = typer.Option(False, "--self-referential", help="Run without any trusted reference."),
    alpha: Optional[float] = typer.Option(
        None, "--alpha",
        help="Per-detector false-positive rate (overrides config); lowered to fit detection.max_false_positive_rate.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """Red-team your data: inject each attack family and report what poisonguard catches."""
    quiet_services()
    chosen = [name.strip() for name in attacks.split(",") if name.strip()] if attacks else None
    if not 0.0 < rate < 0.5:
        raise ConfigError(f"--rate must be between 0 and 0.5, got {rate}")
    require_existing_files([data, reference], config)
    from poisonguard.pipelines.redteam.evaluate import evaluate  # deferred: see cli/run.py

    from poisonguard.pipelines.cli.progress import StageProgress
    from poisonguard.pipelines.core.stages import stage_listener
    from poisonguard.pipelines.redteam.attacks import ATTACKS

    with console.status("poisoning and checking…") if not as_json else _nothing() as status:
        # One batch per attack plus the clean batch itself.
        progress = StageProgress(status, rows=None, detectors=[], attacks=len(chosen or ATTACKS) + 1)
        with stage_listener(progress) if not as_json else _nothing():
            evaluation = evaluate(
                data, label=label, id_column=id_column, reference=reference, attacks=chosen, rate=rate,
                config_path=config, seed=seed, self_referential=self_referential, alpha=alpha,
            )
    if as_json:
        typer.echo(evaluation.to_json())
    else:
        _print(evaluation)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
