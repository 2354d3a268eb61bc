"""the queue: runs attempts, worker deaths and next attempt; scheduled-job claims; the Procrastinate schema's version

Revision ID: 0006_queue
Revises: 0005_preferred_language
Create Date: 2026-12-02 06:09:27.901527
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006_queue'
down_revision = '0005_preferred_language'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('queue_schema',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('applied_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('scheduled_claims',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('slot', sa.BigInteger(), nullable=False),
    sa.Column('host', sa.Text(), nullable=False),
    sa.Column('claimed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('worker_deaths', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', sa.Float(), nullable=True))
        batch_op.create_index('ix_runs_status', ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_status')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('worker_deaths')
        batch_op.drop_column('attempts')

    op.drop_table('scheduled_claims')
    op.drop_table('queue_schema')
