"""snapshot deltas: the rows changed since the whole blob (a nightly writes what it changed, not every row)

Revision ID: 0009_snapshot_delta
Revises: 0008_calendar
Create Date: 2026-12-02 14:20:28.624570
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009_snapshot_delta'
down_revision = '0008_calendar'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('roster_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delta', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # A whole blob with a delta is out of date by itself: without the delta the diff must query the rows.
    op.execute("DELETE FROM roster_snapshots WHERE delta IS NOT NULL")
    with op.batch_alter_table('roster_snapshots', schema=None) as batch_op:
        batch_op.drop_column('delta')
