"""Finishing or undoing what an interrupted watch pass left behind."""
from __future__ import annotations

import shutil

from poisonguard.pipelines.outputs.datasets import current_version, read_version, staging_folders
from poisonguard.pipelines.watch.context import WatchContext



def recover(context: WatchContext) -> list[str]:
    """Finish or undo what an interrupted pass left; return what was done.

    * staging folders ``.vNNNN.partial-*``: removed (never revealed, so
      nothing refers to them);
    * a batch still "processing" whose version is the current one (the
      crash came after the rename): marked published, its run closed;
    * a batch still "processing" without a version: its unfinished runs are
      closed as failed and their quarantine entries (committed just before
      an interrupted rename) removed; the file, still in the inbox, is
      processed again by this pass.

    Runs under the dataset's lease, so no other watcher is mid-publication.
    """
    notes = []
    for folder in staging_folders(context.dataset_dir):
        shutil.rmtree(folder, ignore_errors=True)
        notes.append(f"removed the half-written {folder.name} of an interrupted publication")
    # Spool copies of an interrupted pass (the inbox files themselves are untouched).
    shutil.rmtree(context.work / "spool", ignore_errors=True)
    pending = context.store.list_claims(context.dataset, status="processing")
    if not pending:
        return notes
    head_path = current_version(context.dataset_dir)
    head = read_version(head_path, context.public_key) if head_path is not None else None
    for claim in pending:
        digest = claim["digest"]
        if head is not None and head.chain.get("batch", {}).get("digest") == digest:
            run_id = head.provenance.get("run_id")
            if run_id and context.store.get_run(run_id)["status"] == "running":
                context.store.finish_run(run_id, status="succeeded", output_dir=str(head.folder),
                                         counts=head.provenance.get("counts", {}))
            context.store.update_claim(context.dataset, digest, status="published", version=head.name, run_id=run_id,
                                       message="published; bookkeeping completed after an interruption")
            notes.append(f"{claim['name']}: had been published as {head.name} before an interruption; recorded")
            continue
        for run_id in context.store.runs_of_batch(context.dataset, digest, status="running"):
            if context.store.get_run(run_id)["config"].get("chain") is None:
                continue  # an ad hoc `poisonguard run` of the same file, not ours
            removed = context.store.discard_run(run_id, "interrupted before its output was published")
            notes.append(f"{claim['name']}: run {run_id[:8]} was interrupted before publishing"
                         + (f" ({removed} quarantine entries removed)" if removed else "") + "; processing it again")
    for note in notes:
        context.say(note)
    return notes


