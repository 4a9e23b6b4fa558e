"""The quarantine store's tables.

Every run of the pipeline is recorded (``runs``), with the batches it read
(``batches``) and one ``quarantine`` entry per quarantined row: its original
values, the checks that flagged it and their evidence. Reviewers later release
or reject entries; each such decision is kept in ``decisions`` and never
rewritten. ``watch_batches`` and ``dataset_leases`` are ``poisonguard
watch``'s bookkeeping.

A change here needs a migration in ``migrations/versions`` (Alembic); the
store upgrades a database when it opens it.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint, text,
)
from sqlalchemy.types import TypeDecorator

RUN_STATUSES = ("running", "succeeded", "failed", "rejected", "held")
FINISHED_STATUSES = RUN_STATUSES[1:]
ENTRY_STATUSES = ("pending", "released", "rejected")
DECISION_STATUSES = ("released", "rejected")


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zones and returns naive values; this stores UTC and
    hands back aware UTC datetimes so callers never guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; the store needs timezone-aware datetimes")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", String(36), primary_key=True),
    Column("dataset", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("output_dir", Text),
    Column("reference_digest", String(64)),
    Column("config_json", Text, nullable=False),
    Column("counts_json", Text, nullable=False),
    Column("tool_version", String(64), nullable=False),
    # "host:pid" of the process running it, so a later run can tell an
    # interrupted run (its process is gone) from one still at work.
    Column("owner", Text),
)

batches = Table(
    "batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("digest", String(64), nullable=False, index=True),
    Column("rows", Integer, nullable=False),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("dataset", Text, nullable=False),
    Column("row_id", Text, nullable=False),
    Column("batch_digest", String(64)),
    Column("row_json", Text, nullable=False),
    Column("checks", Text, nullable=False),
    Column("score", Float),
    Column("p_value", Float),
    Column("findings_json", Text, nullable=False),
    Column("evidence_json", Text, nullable=False, default="{}"),
    Column("status", String(16), nullable=False, default="pending", index=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "row_id", name="uq_quarantine_run_row"),
    # The review queue is read most suspicious first, a page at a time; without
    # these SQLite sorts every whole row to reach a deep page (150 ms for the
    # last page of 10,000 rows, 5 ms with them).
    Index("ix_quarantine_queue", text("score DESC"), "id"),
    Index("ix_quarantine_status_queue", "status", text("score DESC"), "id"),
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("quarantine_id", Integer, ForeignKey("quarantine.id"), nullable=False, index=True),
    Column("status_before", String(16), nullable=False),
    Column("status_after", String(16), nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("note", Text),
    Column("decided_at", UTCDateTime, nullable=False),
)

# ``poisonguard watch``: one row per (dataset, batch digest) ever claimed, so a
# batch is processed once whatever its file name, and one lease per dataset,
# so one watcher at a time appends to a dataset's chain of versions.
CLAIM_STATUSES = ("processing", "published", "rejected", "held", "failed")

watch_batches = Table(
    "watch_batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", String(255), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", Text),
    Column("name", Text),
    Column("run_id", String(36), index=True),
    Column("version", String(32)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("message", Text),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("flow_run_id", String(36)),
    Column("review", String(16)),
    Column("reviewer", Text),
    Column("review_note", Text),
    Column("reviewed_at", UTCDateTime),
    UniqueConstraint("dataset", "digest", name="uq_watch_batches_dataset_digest"),
)

dataset_leases = Table(
    "dataset_leases", metadata,
    Column("dataset", String(255), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)

