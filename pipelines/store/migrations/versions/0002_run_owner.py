"""Record which process runs a run, so an interrupted one can be recovered.

``runs.owner`` holds "host:pid" of the process running it; a run still
"running" whose process is gone was interrupted (killed between committing
its quarantine entries and revealing its output, say), and the next run of
that store settles it: published after all, or discarded with its entries.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as table:
        table.add_column(sa.Column("owner", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as table:
        table.drop_column("owner")
