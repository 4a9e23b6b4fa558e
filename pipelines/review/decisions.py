"""Releasing and rejecting quarantined rows: the rules, shared by the CLI and the web page.

The store makes each decision atomic (a compare-and-set on the entry's
status, appended to an audit trail that is never rewritten); this module
decides what may be asked of it: a known status, a note, a valid reviewer
name, and which entries a bulk decision covers.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Optional

from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.jsonable import to_jsonable
from poisonguard.pipelines.review.reviewers import checked_note, reviewer_name
from poisonguard.pipelines.store import DECISION_STATUSES, ENTRY_STATUSES, EntryFilter, QuarantineStore

STATUSES = ENTRY_STATUSES
DECISIONS = DECISION_STATUSES


def decide(
    store: QuarantineStore,
    entry_ids: Iterable[int],
    *,
    status: str,
    note: str,
    reviewer: Optional[str] = None,
    force: bool = False,
    expected_status: Optional[str] = None,
) -> list[dict]:
    """Release or reject entries, all or none, recording each decision.

    Parameters
    ----------
    entry_ids : iterable of int
    status : {"released", "rejected"}
    note : str
        Why; required.
    reviewer : str, optional
        Defaults to :func:`reviewer_name`.
    force : bool
        Allow changing an entry that was already decided (recorded as a change).
    expected_status : str, optional
        The status the reviewer saw (the web page sends it). If the entry no
        longer has it, someone else decided in between: ``ReviewConflict``.

    Returns
    -------
    list of dict, one per decision: ``quarantine_id, status_before,
    status_after, reviewer, note, decided_at``.

    Raises
    ------
    InputError
        Bad status, empty note, bad reviewer name, no ids.
    UnknownEntry
        An id does not exist (nothing is decided then).
    ReviewConflict
        An entry was already decided (without ``force``) or changed meanwhile.
    """
    if status not in DECISIONS:
        raise InputError(f"a decision is one of {', '.join(DECISIONS)}, not {status!r}")
    if expected_status is not None and expected_status not in STATUSES:
        raise InputError(f"expected_status {expected_status!r} is not one of {', '.join(STATUSES)}")
    note = checked_note(note)
    ids = list(dict.fromkeys(int(i) for i in entry_ids))
    if not ids:
        raise InputError("no quarantine entries to decide")
    return store.record_decisions(
        ids, status=status, note=note, reviewer=reviewer_name(reviewer), force=force, expected_status=expected_status
    )


def bulk_selection(store: QuarantineStore, where: EntryFilter, *, status: str, force: bool, chosen=()) -> list[int]:
    """The entries a bulk decision to ``status`` covers, besides those ``chosen`` by id.

    Pending entries only, unless ``force``; with ``force``, entries already
    at ``status`` are left alone, so a bulk change records no empty "changes".
    """
    pending_only = where if force else replace(where, status="pending")
    already = set(store.matching_ids(replace(where, status=status))) if force else set()
    chosen = set(chosen)
    return [i for i in store.matching_ids(pending_only) if i not in chosen and i not in already]


def entry_summary(entry: dict) -> dict:
    """The listing view of one entry, JSON-ready: what ``review list --json``
    and the web API's queue both return (no row values, no evidence).

    Returns
    -------
    dict with ``id, row_id, run, dataset, status, checks, reasons, score,
    p_value, created_at`` (ISO time; a NaN score as None).
    """
    return to_jsonable({
        "id": entry["id"],
        "row_id": entry["row_id"],
        "run": entry["run_id"],
        "dataset": entry["dataset"],
        "status": entry["status"],
        "checks": entry["checks"],
        "reasons": [str(finding.get("reason", "")) for finding in entry.get("findings", [])],
        "score": entry["score"],
        "p_value": entry["p_value"],
        "created_at": entry["created_at"],
    })
