"""``poisonguard emit``: a new signed clean dataset from reviewed runs."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from poisonguard.pipelines.cli.common import reports_errors
from poisonguard.pipelines.cli.review import config_option, console, open_store, store_option
from poisonguard.pipelines.core.config import load_config



@reports_errors
def emit_command(
    out: Path = typer.Option(..., "--out", help="Output folder; must not exist yet."),
    key: Optional[Path] = typer.Option(None, "--key", help="Private key PEM; the state folder's key when absent."),
    run: Optional[List[str]] = typer.Option(None, "--run", help="Run id or unique prefix; repeat for several."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Without --run: the latest succeeded run of this dataset."),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="Public key the runs' outputs must verify against; the state folder's when absent."
    ),
    store: Optional[str] = store_option(),
    config: Optional[Path] = config_option(),
):
    """Write a new signed clean dataset: the runs' kept rows plus released rows, never a rejected one."""
    from poisonguard.pipelines.outputs.emit import emit  # deferred: see cli/run.py

    if key is None and config is not None:
        key = load_config(config).signing.key
    with open_store(store, config) as opened:
        summary = emit(opened, out, run_ids=run or (), dataset=dataset, key_path=key, public_key=public_key)
    runs = ", ".join(run_id[:8] for run_id in summary.run_ids)
    console.print(f"built on run {runs} ({escape(summary.chosen_by)}), dataset {escape(summary.dataset)}")
    console.print(
        f"clean rows {summary.clean} ({summary.kept} kept, {summary.released} released); "
        f"still quarantined {summary.pending} pending, {summary.rejected} rejected; "
        f"{summary.decisions} decisions recorded in provenance.json"
    )
    if summary.key_created:
        console.print(f"created a signing key in the state folder: {summary.key_path} (public key beside it)")
    console.print(f"signed output: {summary.out}")
