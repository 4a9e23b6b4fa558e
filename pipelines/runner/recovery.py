"""Settling runs that never finished: published after all, or discarded with their entries.

A run commits its quarantine entries to the store just before it reveals its
signed output (a rename), and closes its record just after. A run killed in
between leaves a record "running", entries nobody may review (the queue
shows published runs only) and perhaps a staging folder. ``settle_run``
decides what it was: if its output folder exists and names it, the run had
published and is recorded as such; otherwise its entries and its staging
folder are removed and it is marked failed, so a rerun never doubles the
review queue.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from poisonguard.pipelines.core.processes import is_gone
from poisonguard.pipelines.outputs.signed_folder import PROVENANCE_FILE, staging_folder
from poisonguard.pipelines.store import QuarantineStore


def settle_interrupted_runs(store: QuarantineStore) -> list[str]:
    """Settle every ad hoc run whose process has ended while it was still running.

    Runs of ``poisonguard watch`` (their config has a ``chain``) are left to
    the watcher, which settles them under its dataset lease; runs of live
    processes, or of other machines, are left alone.

    Returns
    -------
    list of str
        One sentence per run settled, for the run's notes.
    """
    notes = []
    for record in store.unfinished_runs():
        if (record.get("config") or {}).get("chain") is not None:
            continue
        owner = record.get("owner")
        if owner and is_gone(owner):
            notes.append(settle_run(store, record, "interrupted: its process ended before the run finished"))
    return notes


def settle_run(store: QuarantineStore, record: dict, reason: str) -> str:
    """Record an unfinished run as published, or discard it; return what was done.

    Parameters
    ----------
    store : QuarantineStore
    record : dict
        The run, as ``QuarantineStore.get_run`` returns it.
    reason : str
        Why it did not finish (kept as the failed run's error).
    """
    run_id = record["id"]
    out = Path(record["output_dir"]) if record.get("output_dir") else None
    provenance = _provenance_of(out, run_id) if out is not None else None
    if provenance is not None:
        store.finish_run(run_id, status="succeeded", output_dir=str(out), counts=provenance.get("counts", {}))
        return f"run {run_id[:8]} had published {out} before it stopped; recorded as published"
    removed = store.discard_run(run_id, reason)
    if out is not None:
        shutil.rmtree(staging_folder(out, run_id[:8]), ignore_errors=True)
    entries = f" and its {removed} quarantine entries removed" if removed else ""
    return f"run {run_id[:8]} stopped before publishing ({reason}); marked failed{entries}"


def _provenance_of(out: Path, run_id: str) -> Optional[dict]:
    """The provenance of ``out`` if that folder is this run's published output, else None."""
    try:
        provenance = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return provenance if isinstance(provenance, dict) and provenance.get("run_id") == run_id else None
