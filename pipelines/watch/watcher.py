"""``poisonguard watch``: an inbox of batches, each processed once, into a chain of signed versions.

One pass (:func:`watch`) does, for one dataset:

1. take the dataset's **lease** in the store (one watcher at a time appends
   to a chain; a second watcher finds it busy and leaves), renewed by a
   heartbeat thread;
2. **recover** from an interrupted pass: remove half-written staging folders,
   and for every batch still marked "processing" either finish its
   bookkeeping (its version was revealed before the crash) or discard the
   unpublished run so the batch is processed again;
3. list the inbox (a local folder or any fsspec URL), oldest first, and for
   each file: copy it to a spool folder and hash it, **claim** its digest in
   the store (unique per dataset and digest, so a renamed or re-uploaded
   identical file is never processed twice), run the pipeline against the
   current signed version, publish ``ROOT/NAME/vNNNN`` (or reject / hold the
   batch), record the outcome, and move the file to ``processed/`` or
   ``rejected/``. Inbox files are moved, never deleted.

Every step is either atomic (claim insert, version rename, file move) or
repeatable, and the order is chosen so that a crash between any two steps
leaves a state the next pass completes: see :func:`recover`.

Nothing here imports Prefect; ``poisonguard.pipelines.flows.run.watch_flow`` passes hooks that
turn stages into tasks, pause for a reviewer and publish artifacts.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from poisonguard.pipelines.core.config import load_config
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.settings import make_settings
from poisonguard.pipelines.core.stages import run_stage_directly
from poisonguard.pipelines.core.state import default_store_url, state_dir
from poisonguard.pipelines.core.tables import file_digest, read_file
from poisonguard.pipelines.core.version import __version__
from poisonguard.pipelines.outputs.datasets import (
    TRUSTED_SAMPLE_FILE,
    chain_record,
    current_version,
    read_version,
    version_name,
    version_number,
)
from poisonguard.pipelines.outputs.signed_folder import write_parquet
from poisonguard.pipelines.outputs.signing import ensure_state_key, public_key_for
from poisonguard.pipelines.runner import execute
from poisonguard.pipelines.store import QuarantineStore
from poisonguard.pipelines.watch.context import BatchResult, WatchContext, WatchSummary
from poisonguard.pipelines.watch.inbox import InboxFile, fetch, list_inbox, move_out
from poisonguard.pipelines.watch.lease import DatasetLease
from poisonguard.pipelines.watch.recovery import recover
from poisonguard.pipelines.watch.request import WatchRequest
from poisonguard.pipelines.watch.review import review_gate

log = logging.getLogger("poisonguard.watch")

PROCESSED = "processed"
REJECTED = "rejected"


def checkpoint(step: str) -> None:
    """A named point between two steps of a batch; tests inject crashes here."""


def watch(
    request: WatchRequest,
    *,
    run_stage: Callable = run_stage_directly,
    pause: Optional[Callable] = None,
    on_batch: Optional[Callable[[BatchResult], None]] = None,
    say: Optional[Callable[[str], None]] = None,
) -> WatchSummary:
    """Process every new batch of the inbox once, oldest first, then return.

    Parameters
    ----------
    request : WatchRequest
    run_stage : callable
        Stage runner for :func:`poisonguard.pipelines.runner.execute` (Prefect tasks in the flow).
    pause : callable ``(question, record_flow_run) -> dict or None``, optional
        Asks a person about a batch whose quarantine rate is above
        ``watch.review_above``; returns ``{"decision", "reviewer", "note"}``,
        or None when nobody can answer now (the batch is then held).
    on_batch : callable ``(BatchResult) -> None``, optional
        Called after each file (the flow publishes Prefect artifacts).
    say : callable ``(str) -> None``, optional
        Progress messages (the flow's logger); ``logging`` by default.

    Returns
    -------
    WatchSummary

    Raises
    ------
    VerificationError
        The dataset's current version does not verify: nothing is built on it.
    Any unexpected error of a batch (the batch stays claimed and is retried by
    the next pass, up to ``watch.max_attempts`` times).
    """
    config = load_config(request.config)
    state = state_dir()
    root = request.out or config.watch.root or (state / "datasets")
    key = request.key or config.signing.key
    if key is None:
        key, _ = ensure_state_key(state)
    work = state / "watch" / request.dataset
    work.mkdir(parents=True, exist_ok=True)
    public_key = work / "signer-public.pem"
    _write_if_changed(public_key, public_key_for(key))
    store = QuarantineStore(config.store.url or default_store_url())
    context = WatchContext(
        request=request, config=config, store=store, state=state, root=Path(root), work=work, key=Path(key),
        public_key=public_key, run_stage=run_stage, pause=pause, on_batch=on_batch, say=say or log.info,
    )
    summary = WatchSummary(dataset=request.dataset, inbox=request.inbox, root=str(context.dataset_dir))
    try:
        with DatasetLease(store, request.dataset, config.watch.lease_seconds) as lease:
            if lease.holder is not None:
                summary.busy = lease.holder["owner"]
                context.say(f"dataset {request.dataset!r} is being processed by another watcher ({summary.busy}); leaving")
                return summary
            summary.recovered = recover(context)
            for entry in list_inbox(request.inbox, settle_seconds=config.watch.settle_seconds):
                lease.check()
                result = process_file(context, entry, lease)
                summary.results.append(result)
                if on_batch is not None:
                    on_batch(result)
        head = current_version(context.dataset_dir)
        summary.head = head.name if head else None
        return summary
    finally:
        store.close()


# --------------------------------------------------------------------------- one file


def _move(context: WatchContext, entry: InboxFile, digest: str, destination: str) -> Optional[str]:
    return move_out(context.request.inbox, entry, digest, destination, context.say)


def process_file(context: WatchContext, entry: InboxFile, lease: DatasetLease) -> BatchResult:
    """Claim, process, record and move one inbox file."""
    store, dataset = context.store, context.dataset
    local, digest = fetch(context.request.inbox, entry, context.work / "spool")
    try:
        checkpoint("fetched")
        claim, new = store.claim_batch(dataset, digest, source=context.request.inbox, name=entry.name)
        if not new:
            early = _known_batch(context, entry, digest, claim)
            if early is not None:
                return early
            store.update_claim(dataset, digest, status="processing", attempts=claim["attempts"] + 1, name=entry.name)
            claim = store.get_claim(dataset, digest)
        if claim["attempts"] > context.config.watch.max_attempts:
            return _give_up(context, entry, digest, claim)
        checkpoint("claimed")
        context.say(f"{entry.name}: processing batch {digest[:12]} (attempt {claim['attempts']})")
        try:
            summary, version = _run_pipeline(context, entry, local, digest)
        except InputError as error:
            # The file itself is bad (unreadable, no label column, duplicate
            # ids...): retrying cannot help. Other errors (a key, a parent
            # that does not verify) are the operator's: they stop the pass.
            # Named as the user put it in the inbox, not as the spool copy the run read.
            message = str(error).replace(str(local), f"{context.request.inbox.rstrip('/')}/{entry.name}")
            run_id = _record_unreadable(context, entry, digest, message)
            store.update_claim(dataset, digest, status="rejected", run_id=run_id, message=message[:2000])
            checkpoint("recorded")
            moved = _move(context, entry, digest, REJECTED)
            context.say(f"{entry.name}: rejected: {message}")
            return BatchResult(entry.name, digest, "rejected", run_id=run_id, message=message, moved_to=moved)
        except Exception as error:
            store.update_claim(dataset, digest, message=f"attempt {claim['attempts']} failed: {error}"[:2000])
            raise
        checkpoint("processed")
        lease.check()
        return _record(context, entry, digest, summary, version)
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)


def _record_unreadable(context: WatchContext, entry: InboxFile, digest: str, message: str) -> Optional[str]:
    """A run record for a batch rejected before its run could start (it could not be read)."""
    run_id = context.store.start_run(
        dataset=context.dataset, config={"watch": context.request.model_dump(mode="json")}, tool_version=__version__
    )
    context.store.record_batch(run_id, path=f"{context.request.inbox}/{entry.name}", digest=digest, rows=0)
    context.store.finish_run(run_id, status="rejected", counts={"batch_failures": [message], "rows_in": 0})
    return run_id


def _known_batch(context: WatchContext, entry: InboxFile, digest: str, claim: dict) -> Optional[BatchResult]:
    """A batch claimed before: a duplicate to move, one waiting for review, or one to retry (None)."""
    status = claim["status"]
    if status in ("published", "rejected", "failed"):
        destination = PROCESSED if status == "published" else REJECTED
        moved = _move(context, entry, digest, destination)
        what = f"published as {claim['version']}" if status == "published" else status
        context.say(f"{entry.name}: same content as batch {digest[:12]} ({claim['name']}), already {what}; not processed again")
        return BatchResult(entry.name, digest, "duplicate", version=claim["version"], run_id=claim["run_id"],
                           moved_to=moved, message=f"already {what} (first seen as {claim['name']})")
    if status == "held" and not claim["review"]:
        return BatchResult(entry.name, digest, "waiting", run_id=claim["run_id"],
                           message=f"waiting for a reviewer: poisonguard review batch {claim['run_id']} --approve|--reject")
    return None  # "processing" left by an interrupted pass, or a reviewed held batch


def _give_up(context: WatchContext, entry: InboxFile, digest: str, claim: dict) -> BatchResult:
    message = f"failed {claim['attempts'] - 1} times; last error: {claim['message']}"
    context.store.update_claim(context.dataset, digest, status="failed", message=message[:2000])
    moved = _move(context, entry, digest, REJECTED)
    context.say(f"{entry.name}: giving up: {message}")
    return BatchResult(entry.name, digest, "failed", moved_to=moved, message=message)


def _run_pipeline(context: WatchContext, entry: InboxFile, local: Path, digest: str):
    """Check the batch against the current version and publish the next one."""
    request, config = context.request, context.config
    head = current_version(context.dataset_dir)
    parent = read_version(head, context.public_key, (TRUSTED_SAMPLE_FILE,)) if head is not None else None
    number = version_number(parent.name) + 1 if parent is not None else 1
    out = context.dataset_dir / version_name(number)
    configured = request.reference or config.dataset.reference
    reference, trusted = trusted_reference(context, parent, configured)
    settings = make_settings(
        [local], out=out, label=request.label, id_column=request.id_column, reference=reference,
        config_path=request.config, key=context.key,
    )
    chain = chain_record(
        dataset=context.dataset, number=number, parent=parent,
        batch={"digest": digest, "name": entry.name, "source": request.inbox},
        trusted=trusted, sample_rows=config.watch.reference_rows,
    )
    dataset_config = settings.config.dataset.model_copy(update={"name": context.dataset, "reference": reference})
    settings = settings.model_copy(update={
        "config": settings.config.model_copy(update={"dataset": dataset_config}), "chain": chain,
    })
    stage = _named_stages(context.run_stage, entry.name)
    summary = execute(settings, run_stage=stage, review=review_gate(context, entry, digest))
    return summary, out.name


def _named_stages(run_stage: Callable, file_name: str) -> Callable:
    def run(name, function, *args, **options):
        return run_stage(name, function, *args, batch=file_name, **options)

    return run if run_stage is not run_stage_directly else run_stage


def _record(context: WatchContext, entry: InboxFile, digest: str, summary, version: str) -> BatchResult:
    store, dataset = context.store, context.dataset
    status = {"succeeded": "published", "rejected": "rejected", "held": "held"}[summary.status]
    store.update_claim(
        dataset, digest, status=status, run_id=summary.run_id, version=version if status == "published" else None,
        message="; ".join(summary.batch_failures)[:2000] or None,
    )
    checkpoint("recorded")
    moved = None
    if status in ("published", "rejected"):
        moved = _move(context, entry, digest, PROCESSED if status == "published" else REJECTED)
    checkpoint("moved")
    if status == "published":
        context.say(f"{entry.name}: published {version}: {summary.kept} rows kept, {summary.quarantined} quarantined")
    else:
        context.say(f"{entry.name}: {status}: {'; '.join(summary.batch_failures)}")
    return BatchResult(
        entry.name, digest, status, version=version if status == "published" else None, run_id=summary.run_id,
        report=str(summary.report) if summary.report else None, moved_to=moved,
        message="; ".join(summary.batch_failures), rows_in=summary.rows_in, kept=summary.kept,
        quarantined=summary.quarantined, per_check=summary.per_check, batch_checks=summary.batch_checks,
        top_quarantined=summary.top_quarantined,
    )


# --------------------------------------------------------------------------- trusted data


def trusted_reference(context: WatchContext, parent, configured: Optional[Path]) -> tuple[Optional[Path], dict]:
    """The file the next batch is checked against, and a record of what it holds.

    The configured reference (if any) plus the current version's signed
    trusted sample (a uniform sample of every clean row so far), as text
    cells, in one Parquet file of the state folder named after the parent's
    signature digest.
    """
    record: dict = {"configured_reference": None, "chain_sample": None}
    frames = []
    if configured is not None:
        configured = Path(configured)
        frames.append(read_file(configured, **context.config.dataset.csv_format))
        record["configured_reference"] = {"path": str(configured), "sha256": file_digest(configured),
                                          "rows": len(frames[-1])}
    if parent is not None:
        sample = parent.frame(TRUSTED_SAMPLE_FILE)
        inputs = parent.provenance.get("inputs", {})
        id_columns = [c for c in {inputs.get("row_id_column"), context.config.dataset.id} if c]
        frames.append(sample.drop(columns=[c for c in id_columns if c in sample.columns]))
        info = parent.chain.get("trusted_sample", {})
        record["chain_sample"] = {"version": parent.name, "rows": len(sample), "rows_behind": info.get("rows_behind")}
    if not frames:
        record["description"] = "none yet: the first version calibrates on its own batch"
        return None, record
    parts = []
    if record["configured_reference"]:
        parts.append(f"{configured.name} ({record['configured_reference']['rows']} rows)")
    if record["chain_sample"]:
        sample_info = record["chain_sample"]
        parts.append(f"{sample_info['rows']} clean rows sampled from {parent.name} and its ancestors "
                     f"(of {sample_info['rows_behind']})")
    record["description"] = " + ".join(parts)
    if parent is None:
        return configured, record
    combined = pd.concat([_as_text(frame) for frame in frames], ignore_index=True)
    folder = context.work / "trusted"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{parent.name}-{parent.signature_sha256[:16]}-{(record['configured_reference'] or {}).get('sha256', 'none')[:8]}.parquet"
    if not path.exists():
        temporary = folder / f".{path.name}.{uuid.uuid4().hex[:8]}"
        write_parquet(combined, temporary)
        os.replace(temporary, path)
    for older in folder.iterdir():  # derived files of earlier heads (we hold the lease)
        if older != path:
            older.unlink(missing_ok=True)
    return path, record


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text, missing as None: how a CSV reference reads."""
    def text(value):
        if value is None or (isinstance(value, float) and value != value) or value is pd.NA or value is pd.NaT:
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return frame.astype(object).apply(lambda column: column.map(text)).astype(object)


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    temporary.write_bytes(data)
    os.replace(temporary, path)

