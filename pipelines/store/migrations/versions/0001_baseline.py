"""The store's tables as they were when migrations began (poisonguard 0.1).

A snapshot, not the live schema: later changes are later revisions. Tables
are created only where missing, so a store made before migrations existed is
adopted as it is, and two processes creating a fresh store at once do not
trip over each other (the loser retries; see ``engine.migrate``).

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from poisonguard.pipelines.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _snapshot() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "runs", metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output_dir", sa.Text),
        sa.Column("reference_digest", sa.String(64)),
        sa.Column("config_json", sa.Text, nullable=False),
        sa.Column("counts_json", sa.Text, nullable=False),
        sa.Column("tool_version", sa.String(64), nullable=False),
    )
    sa.Table(
        "batches", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, index=True),
        sa.Column("rows", sa.Integer, nullable=False),
    )
    sa.Table(
        "quarantine", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("row_id", sa.Text, nullable=False),
        sa.Column("batch_digest", sa.String(64)),
        sa.Column("row_json", sa.Text, nullable=False),
        sa.Column("checks", sa.Text, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("p_value", sa.Float),
        sa.Column("findings_json", sa.Text, nullable=False),
        sa.Column("evidence_json", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("run_id", "row_id", name="uq_quarantine_run_row"),
        sa.Index("ix_quarantine_queue", sa.text("score DESC"), "id"),
        sa.Index("ix_quarantine_status_queue", "status", sa.text("score DESC"), "id"),
    )
    sa.Table(
        "decisions", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("quarantine_id", sa.Integer, sa.ForeignKey("quarantine.id"), nullable=False, index=True),
        sa.Column("status_before", sa.String(16), nullable=False),
        sa.Column("status_after", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("decided_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "watch_batches", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("run_id", sa.String(36), index=True),
        sa.Column("version", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("claimed_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("flow_run_id", sa.String(36)),
        sa.Column("review", sa.String(16)),
        sa.Column("reviewer", sa.Text),
        sa.Column("review_note", sa.Text),
        sa.Column("reviewed_at", UTCDateTime),
        sa.UniqueConstraint("dataset", "digest", name="uq_watch_batches_dataset_digest"),
    )
    sa.Table(
        "dataset_leases", metadata,
        sa.Column("dataset", sa.String(255), primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    return metadata


def upgrade() -> None:
    _snapshot().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    _snapshot().drop_all(op.get_bind())
