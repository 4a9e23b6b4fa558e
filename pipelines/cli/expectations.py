"""``poisonguard expectations``: infer a suite from a trusted reference, as a reviewable file."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from poisonguard.pipelines.cli.common import CONTEXT_SETTINGS, console, quiet_services, reports_errors

expectations_app = typer.Typer(
    help="Infer and inspect expectation suites.", no_args_is_help=True, context_settings=CONTEXT_SETTINGS
)


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
    from poisonguard.pipelines.core.suites import infer_suite_file  # deferred: see cli/run.py

    path, count = infer_suite_file(
        reference, label=label, name=name, id_column=id_column, config_path=config, force=force
    )
    console.print(f"wrote {path}: {count} expectations inferred from {reference}; review it before you rely on it")
