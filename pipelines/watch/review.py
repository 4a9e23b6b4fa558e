"""A person approves or rejects a batch whose quarantine rate is too high.

The gate asks after the decision, before publishing. Under a Prefect server
the flow pauses with a form (``poisonguard.pipelines.flows``); otherwise, or
when nobody answers in time, the batch is held, and ``poisonguard review
batch`` records the answer for the next pass (and resumes a paused flow run).
"""
from __future__ import annotations

from typing import Callable, Optional

from poisonguard.pipelines.core.decision import ReviewVerdict
from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.review import reviewer_name
from poisonguard.pipelines.store import QuarantineStore, utc_now
from poisonguard.pipelines.watch.context import WatchContext
from poisonguard.pipelines.watch.inbox import InboxFile



def review_gate(context: WatchContext, entry: InboxFile, digest: str) -> Callable:
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


def record_review(store: QuarantineStore, dataset: str, digest: str, *, decision: str, reviewer: Optional[str] = None, note: Optional[str] = None) -> None:
    """Record a person's decision about a held (or paused) batch."""
    if decision not in ("approve", "reject"):
        raise InputError(f"review decision {decision!r}: expected approve or reject")
    store.update_claim(dataset, digest, review=decision, reviewer=reviewer_name(reviewer), review_note=note, reviewed_at=utc_now())


def review_batch(store: QuarantineStore, run: str, *, decision: str, reviewer: Optional[str] = None,
                 note: Optional[str] = None) -> dict:
    """``poisonguard review batch RUN``: approve or reject a batch waiting for a person.

    Records the decision in the store; the next watch pass applies it to a
    held batch. A batch whose flow run is paused in Prefect right now also
    needs that run resumed: ``poisonguard.pipelines.flows.resume_paused_review``
    does it with the returned claim.

    Returns
    -------
    dict
        The claim after the decision, plus ``paused_flow_run`` (the id of the
        flow run waiting for this answer, or None), ``reviewer`` and ``note``.

    Raises
    ------
    InputError
        The run is unknown, did not come from ``watch``, or its batch is decided.
    """
    run_id = store.resolve_run_id(run)
    claim = store.claim_for_run(run_id)
    if claim is None:
        raise InputError(f"run {run_id} did not come from `poisonguard watch`: no batch waits for a review")
    if claim["status"] not in ("held", "processing"):
        raise InputError(
            f"batch {claim['name']} (run {run_id[:8]}) is already {claim['status']}"
            + (f" as {claim['version']}" if claim["version"] else "") + "; nothing to review"
        )
    reviewer = reviewer_name(reviewer)
    record_review(store, claim["dataset"], claim["digest"], decision=decision, reviewer=reviewer, note=note)
    paused = claim["flow_run_id"] if claim["flow_run_id"] and claim["status"] == "processing" else None
    return {**store.get_claim(claim["dataset"], claim["digest"]), "paused_flow_run": paused}
