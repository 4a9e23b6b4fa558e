"""Review decisions over the quarantine store: list, show, release, reject.

Shared by the ``poisonguard review`` commands and the review web app. Every
decision is appended to the ``decisions`` table (reviewer, time, note, status
before and after) and never rewritten. A decision is a compare-and-set on the
entry's status, so two reviewers deciding the same row at once cannot both
win: the second gets a ``ReviewConflict`` naming who decided first.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Iterable, Optional

from sqlalchemy import func, insert, select, update

from pipelines.errors import InputError, PoisonguardError
from pipelines.store import (
    QuarantineStore, decisions, decode_entry, entry_conditions, quarantine, to_jsonable, utc_now,
)

STATUSES = ("pending", "released", "rejected")
DECISIONS = ("released", "rejected")


class ReviewConflict(PoisonguardError):
    """The entry was already decided (by someone else, or before)."""

    exit_code = 5


class UnknownEntry(PoisonguardError):
    """No quarantine entry has that id."""


@dataclass(frozen=True)
class QueueFilter:
    """Which quarantine entries to show or decide; None means any."""

    status: Optional[str] = None
    run_id: Optional[str] = None
    check: Optional[str] = None
    below_score: Optional[float] = None
    dataset: Optional[str] = None

    def __post_init__(self):
        if self.status is not None and self.status not in STATUSES:
            raise InputError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    def conditions(self, store: QuarantineStore) -> list:
        return entry_conditions(
            store.engine,
            run_id=self.run_id,
            status=self.status,
            check=self.check,
            below_score=self.below_score,
            dataset=self.dataset,
        )


def default_reviewer() -> str:
    """``POISONGUARD_REVIEWER``, else the login name."""
    try:
        return os.environ.get("POISONGUARD_REVIEWER") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def list_entries(
    store: QuarantineStore, queue: QueueFilter = QueueFilter(), *, limit: Optional[int] = None, offset: int = 0
) -> list[dict]:
    """Entries matching ``queue``, most suspicious first (score, then id).

    Returns
    -------
    list of dict with ``id, run_id, dataset, row_id, status, checks, score,
    p_value, findings, row, created_at`` (``get_entry`` adds the evidence).
    """
    # Listings never show evidence; not reading it halves the time of a page.
    listed = [column for column in quarantine.c if column.name != "evidence_json"]
    query = (
        select(*listed)
        .where(*queue.conditions(store))
        .order_by(quarantine.c.score.desc(), quarantine.c.id)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as connection:
        return [decode_entry(record) for record in connection.execute(query).mappings()]


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


def count_entries(store: QuarantineStore, queue: QueueFilter = QueueFilter()) -> int:
    """Number of entries matching ``queue``."""
    query = select(func.count()).select_from(quarantine).where(*queue.conditions(store))
    with store.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def get_entry(store: QuarantineStore, entry_id: int) -> dict:
    """One entry with its decision history (oldest first).

    Raises
    ------
    UnknownEntry
    """
    with store.engine.connect() as connection:
        record = connection.execute(select(quarantine).where(quarantine.c.id == int(entry_id))).mappings().first()
        if record is None:
            raise UnknownEntry(f"no quarantine entry {entry_id} in {store.describe()}")
        history = connection.execute(
            select(decisions).where(decisions.c.quarantine_id == int(entry_id)).order_by(decisions.c.id)
        ).mappings().all()
    entry = decode_entry(record)
    entry["history"] = [dict(item) for item in history]
    return entry


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
        Why; required, a decision without a reason is no audit trail.
    reviewer : str, optional
        Defaults to ``default_reviewer()``.
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
        Bad status, empty note, no ids.
    UnknownEntry
        An id does not exist (nothing is decided then).
    ReviewConflict
        An entry was already decided (without ``force``) or changed meanwhile.
    """
    if status not in DECISIONS:
        raise InputError(f"a decision is one of {', '.join(DECISIONS)}, not {status!r}")
    if not note or not note.strip():
        raise InputError("a note is required: say why, for the audit trail")
    ids = list(dict.fromkeys(int(i) for i in entry_ids))
    if not ids:
        raise InputError("no quarantine entries to decide")
    reviewer = (reviewer or default_reviewer()).strip() or "unknown"
    decided_at = utc_now()
    made = []
    with store.engine.begin() as connection:
        current = dict(
            connection.execute(select(quarantine.c.id, quarantine.c.status).where(quarantine.c.id.in_(ids))).all()
        )
        missing = [i for i in ids if i not in current]
        if missing:
            raise UnknownEntry(f"no quarantine entry {', '.join(map(str, missing))}; nothing was decided")
        for entry_id in ids:
            before = current[entry_id]
            if expected_status is not None and before != expected_status:
                raise ReviewConflict(_conflict_message(connection, entry_id, before, "changed while you were looking"))
            if before != "pending" and not force:
                raise ReviewConflict(_conflict_message(connection, entry_id, before, "pass --force to change it"))
            # Compare-and-set: only if nobody changed it since we read it.
            changed = connection.execute(
                update(quarantine)
                .where(quarantine.c.id == entry_id, quarantine.c.status == before)
                .values(status=status)
            ).rowcount
            if changed != 1:
                raise ReviewConflict(_conflict_message(connection, entry_id, None, "decided by someone else just now"))
            decision = {
                "quarantine_id": entry_id,
                "status_before": before,
                "status_after": status,
                "reviewer": reviewer,
                "note": note.strip(),
                "decided_at": decided_at,
            }
            connection.execute(insert(decisions).values(**decision))
            made.append(decision)
    return made


def matching_ids(store: QuarantineStore, queue: QueueFilter) -> list[int]:
    """Ids of every entry matching ``queue`` (for bulk decisions)."""
    query = select(quarantine.c.id).where(*queue.conditions(store)).order_by(quarantine.c.id)
    with store.engine.connect() as connection:
        return [int(i) for i in connection.execute(query).scalars()]


def _conflict_message(connection, entry_id: int, status: Optional[str], advice: str) -> str:
    last = connection.execute(
        select(decisions).where(decisions.c.quarantine_id == entry_id).order_by(decisions.c.id.desc()).limit(1)
    ).mappings().first()
    if last is None:
        return f"entry {entry_id} is {status or 'no longer pending'}: {advice}"
    when = last["decided_at"].isoformat(timespec="seconds") if last["decided_at"] else "?"
    return f"entry {entry_id} was already {last['status_after']} by {last['reviewer']} at {when}: {advice}"
