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

Nothing here imports Prefect; ``pipelines.flows.watch_flow`` passes hooks that
turn stages into tasks, pause for a reviewer and publish artifacts.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict

from pipelines.batch_io import file_digest, read_file
from pipelines.datasets import (
    TRUSTED_SAMPLE_FILE,
    chain_record,
    current_version,
    read_version,
    staging_folders,
    version_name,
    version_number,
)
from pipelines.errors import ConfigError, InputError
from pipelines.inbox import InboxFile, fetch, list_inbox, move_out
from pipelines.run import ReviewVerdict, execute, run_stage_directly

log = logging.getLogger("poisonguard.watch")

PROCESSED = "processed"
REJECTED = "rejected"


class LeaseLost(RuntimeError):
    """Another watcher took this dataset's lease (ours expired)."""


def checkpoint(step: str) -> None:
    """A named point between two steps of a batch; tests inject crashes here."""


# --------------------------------------------------------------------------- request


class WatchRequest(BaseModel):
    """What one watch pass needs: the CLI options, resolved (paths absolute)."""

    model_config = ConfigDict(frozen=True)

    inbox: str
    dataset: str
    config: Optional[Path] = None
    label: Optional[str] = None
    id_column: Optional[str] = None
    reference: Optional[Path] = None
    key: Optional[Path] = None
    out: Optional[Path] = None


def make_request(
    inbox: str, *, dataset: str, config=None, label=None, id_column=None, reference=None, key=None, out=None
) -> WatchRequest:
    """Resolve and check the options before anything starts.

    Raises
    ------
    ConfigError
        Unreadable config, a bad dataset name, or no label column anywhere.
    InputError
        A local inbox folder that does not exist.
    """
    from pipelines.config import DatasetConfig, load_config

    loaded = load_config(config)
    try:
        DatasetConfig(name=dataset)
    except Exception:
        raise ConfigError(f"--dataset {dataset!r}: must be a plain name usable as a folder name") from None
    if not (label or loaded.dataset.label):
        raise ConfigError("no label column given: pass --label COLUMN or set dataset.label in --config")
    configured = reference or loaded.dataset.reference
    if configured is not None and not Path(configured).is_file():
        raise InputError(f"{configured}: reference file not found")
    if not _is_url(inbox):
        folder = Path(inbox).expanduser().resolve()
        if not folder.is_dir():
            raise InputError(f"{inbox}: inbox folder not found")
        inbox = str(folder)
    absolute = lambda p: Path(p).expanduser().resolve() if p is not None else None  # noqa: E731
    return WatchRequest(
        inbox=inbox, dataset=dataset, config=absolute(config), label=label, id_column=id_column,
        reference=absolute(reference), key=absolute(key), out=absolute(out),
    )


def _is_url(text: str) -> bool:
    return "://" in text


# --------------------------------------------------------------------------- results


@dataclass
class BatchResult:
    """What happened to one inbox file in a pass."""

    name: str
    digest: str
    status: str  # published | rejected | held | duplicate | waiting | failed
    version: Optional[str] = None
    run_id: Optional[str] = None
    report: Optional[str] = None
    moved_to: Optional[str] = None
    message: str = ""
    rows_in: int = 0
    kept: int = 0
    quarantined: int = 0
    per_check: list = field(default_factory=list)
    batch_checks: list = field(default_factory=list)
    top_quarantined: list = field(default_factory=list)


@dataclass
class WatchSummary:
    """One pass over an inbox."""

    dataset: str
    inbox: str
    root: str
    results: list[BatchResult] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    busy: Optional[str] = None  # the lease holder when another watcher was at work
    head: Optional[str] = None

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the pass


@dataclass
class _Context:
    request: WatchRequest
    config: object  # RunConfig
    store: object  # QuarantineStore
    state: Path
    root: Path
    work: Path  # STATE/watch/NAME: spool, trusted references, public key
    key: Path
    public_key: Path
    run_stage: Callable
    pause: Optional[Callable]
    on_batch: Optional[Callable]
    say: Callable[[str], None]

    @property
    def dataset(self) -> str:
        return self.request.dataset

    @property
    def dataset_dir(self) -> Path:
        return self.root / self.request.dataset


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
        Stage runner for :func:`pipelines.run.execute` (Prefect tasks in the flow).
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
    from pipelines.config import load_config
    from pipelines.signing import ensure_state_key, public_key_for
    from pipelines.state import default_store_url, state_dir
    from pipelines.store import QuarantineStore

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
    context = _Context(
        request=request, config=config, store=store, state=state, root=Path(root), work=work, key=Path(key),
        public_key=public_key, run_stage=run_stage, pause=pause, on_batch=on_batch, say=say or log.info,
    )
    summary = WatchSummary(dataset=request.dataset, inbox=request.inbox, root=str(context.dataset_dir))
    try:
        with _Lease(store, request.dataset, config.watch.lease_seconds) as lease:
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


def _move(context: _Context, entry: InboxFile, digest: str, destination: str) -> Optional[str]:
    return move_out(context.request.inbox, entry, digest, destination, context.say)


def process_file(context: _Context, entry: InboxFile, lease: "_Lease") -> BatchResult:
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
            run_id = _record_unreadable(context, entry, digest, error)
            store.update_claim(dataset, digest, status="rejected", run_id=run_id, message=str(error)[:2000])
            checkpoint("recorded")
            moved = _move(context, entry, digest, REJECTED)
            context.say(f"{entry.name}: rejected: {error}")
            return BatchResult(entry.name, digest, "rejected", run_id=run_id, message=str(error), moved_to=moved)
        except Exception as error:
            store.update_claim(dataset, digest, message=f"attempt {claim['attempts']} failed: {error}"[:2000])
            raise
        checkpoint("processed")
        lease.check()
        return _record(context, entry, digest, summary, version)
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)


def _record_unreadable(context: _Context, entry: InboxFile, digest: str, error: Exception) -> Optional[str]:
    """A run record for a batch rejected before its run could start (it could not be read)."""
    from pipelines import __version__

    run_id = context.store.start_run(
        dataset=context.dataset, config={"watch": context.request.model_dump(mode="json")}, tool_version=__version__
    )
    context.store.record_batch(run_id, path=f"{context.request.inbox}/{entry.name}", digest=digest, rows=0)
    context.store.finish_run(run_id, status="rejected", counts={"batch_failures": [str(error)], "rows_in": 0})
    return run_id


def _known_batch(context: _Context, entry: InboxFile, digest: str, claim: dict) -> Optional[BatchResult]:
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


def _give_up(context: _Context, entry: InboxFile, digest: str, claim: dict) -> BatchResult:
    message = f"failed {claim['attempts'] - 1} times; last error: {claim['message']}"
    context.store.update_claim(context.dataset, digest, status="failed", message=message[:2000])
    moved = _move(context, entry, digest, REJECTED)
    context.say(f"{entry.name}: giving up: {message}")
    return BatchResult(entry.name, digest, "failed", moved_to=moved, message=message)


def _run_pipeline(context: _Context, entry: InboxFile, local: Path, digest: str):
    """Check the batch against the current version and publish the next one."""
    from pipelines.settings import make_settings

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
    summary = execute(settings, run_stage=stage, review=_review_gate(context, entry, digest))
    return summary, out.name


def _named_stages(run_stage: Callable, file_name: str) -> Callable:
    def run(name, function, *args, **options):
        return run_stage(name, function, *args, batch=file_name, **options)

    return run if run_stage is not run_stage_directly else run_stage


def _record(context: _Context, entry: InboxFile, digest: str, summary, version: str) -> BatchResult:
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


def trusted_reference(context: _Context, parent, configured: Optional[Path]) -> tuple[Optional[Path], dict]:
    """The file the next batch is checked against, and a record of what it holds.

    The configured reference (if any) plus the current version's signed
    trusted sample (a uniform sample of every clean row so far), as text
    cells, in one Parquet file of the state folder named after the parent's
    signature digest.
    """
    from pipelines.signed_output import write_parquet

    record: dict = {"configured_reference": None, "chain_sample": None}
    frames = []
    if configured is not None:
        configured = Path(configured)
        frames.append(read_file(configured))
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


# --------------------------------------------------------------------------- review


def _review_gate(context: _Context, entry: InboxFile, digest: str) -> Callable:
    """The question asked after the decision: is this quarantine rate acceptable?"""
    limit = context.config.watch.review_above

    def gate(inputs, decision) -> Optional[ReviewVerdict]:
        rows = len(inputs.batch.raw)
        rate = len(decision.quarantined_ids) / max(rows, 1)
        if limit is None or rate <= limit:
            return None
        claim = context.store.get_claim(context.dataset, digest) or {}
        if claim.get("review"):
            return _verdict(claim["review"], claim.get("reviewer"), claim.get("review_note"))
        running = context.store.runs_of_batch(context.dataset, digest, status="running")
        run_id = running[-1] if running else "?"
        question = (
            f"{rate:.0%} of batch {entry.name} ({len(decision.quarantined_ids)} of {rows} rows) was quarantined, "
            f"above watch.review_above = {limit:.0%}. Approve to publish its {len(decision.kept_ids)} kept rows, "
            f"or reject the whole batch (run {run_id})."
        )
        context.store.update_claim(context.dataset, digest, run_id=run_id)
        if context.pause is not None:
            context.say(f"{entry.name}: {question} Waiting for a reviewer.")
            answer = context.pause(
                question, lambda flow_run_id: context.store.update_claim(context.dataset, digest, flow_run_id=flow_run_id)
            )
            if answer:
                record_review(context.store, context.dataset, digest, **answer)
                return _verdict(answer["decision"], answer.get("reviewer"), answer.get("note"))
        return ReviewVerdict("hold", f"{question} Held: poisonguard review batch {run_id} --approve|--reject")

    return gate


def _verdict(decision: str, reviewer: Optional[str], note: Optional[str]) -> ReviewVerdict:
    who = reviewer or "a reviewer"
    action = "approve" if decision == "approve" else "reject"
    return ReviewVerdict(action, f"{'approved' if action == 'approve' else 'rejected'} by {who}" + (f": {note}" if note else ""))


def record_review(store, dataset: str, digest: str, *, decision: str, reviewer: Optional[str] = None, note: Optional[str] = None) -> None:
    """Record a person's decision about a held (or paused) batch."""
    from pipelines.store import utc_now

    if decision not in ("approve", "reject"):
        raise InputError(f"review decision {decision!r}: expected approve or reject")
    store.update_claim(dataset, digest, review=decision, reviewer=reviewer or _login(), review_note=note, reviewed_at=utc_now())


def review_batch(store, run: str, *, decision: str, reviewer: Optional[str] = None, note: Optional[str] = None) -> dict:
    """``poisonguard review batch RUN``: approve or reject a batch waiting for a person.

    Records the decision in the store (the next watch pass applies it to a
    held batch) and, when the batch's flow run is paused in Prefect, resumes
    it with the decision.

    Returns
    -------
    dict
        The claim, plus ``resumed`` (the Prefect flow run id, or None) and
        ``resume_error`` (why it could not be resumed, or None).
    """
    from pipelines.emit import resolve_run_id

    run_id = resolve_run_id(store, run)
    claim = store.claim_for_run(run_id)
    if claim is None:
        raise InputError(f"run {run_id} did not come from `poisonguard watch`: no batch waits for a review")
    if claim["status"] not in ("held", "processing"):
        raise InputError(
            f"batch {claim['name']} (run {run_id[:8]}) is already {claim['status']}"
            + (f" as {claim['version']}" if claim["version"] else "") + "; nothing to review"
        )
    reviewer = reviewer or _login()
    record_review(store, claim["dataset"], claim["digest"], decision=decision, reviewer=reviewer, note=note)
    resumed, error = None, None
    if claim["flow_run_id"] and claim["status"] == "processing":
        try:
            from uuid import UUID

            from prefect.flow_runs import resume_flow_run

            resume_flow_run(UUID(claim["flow_run_id"]), run_input={"decision": decision, "reviewer": reviewer, "note": note or ""})
            resumed = claim["flow_run_id"]
        except Exception as failure:  # noqa: BLE001 - not paused any more, or no server: the store has it
            error = str(failure) or type(failure).__name__
    return {**store.get_claim(claim["dataset"], claim["digest"]), "resumed": resumed, "resume_error": error}


def _login() -> str:
    import getpass

    return os.environ.get("POISONGUARD_REVIEWER") or getpass.getuser()


# --------------------------------------------------------------------------- recovery


def recover(context: _Context) -> list[str]:
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


# --------------------------------------------------------------------------- lease


class _Lease:
    """The dataset's lease, held for the pass and renewed by a heartbeat thread."""

    def __init__(self, store, dataset: str, seconds: float) -> None:
        self.store, self.dataset, self.seconds = store, dataset, seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.holder: Optional[dict] = None
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "_Lease":
        self.holder = self.store.acquire_lease(self.dataset, self.owner, self.seconds, is_stale=_holder_is_gone)
        if self.holder is None:
            self._thread = threading.Thread(target=self._beat, name=f"lease-{self.dataset}", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.store.renew_lease(self.dataset, self.owner, self.seconds):
                    self._lost.set()
                    return
            except Exception:  # noqa: BLE001 - a database hiccup; the next beat retries
                log.warning("could not renew the lease of dataset %s", self.dataset, exc_info=True)

    def check(self) -> None:
        """Raise LeaseLost when another watcher has taken over."""
        if self._lost.is_set():
            raise LeaseLost(f"lost the lease of dataset {self.dataset!r} to another watcher; stopping")

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self.store.release_lease(self.dataset, self.owner)


def _holder_is_gone(holder: dict) -> bool:
    """A lease held by a process of this machine that no longer exists."""
    try:
        host, pid, _token = holder["owner"].rsplit(":", 2)
        pid = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
