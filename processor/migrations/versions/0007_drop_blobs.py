"""Drop bytes in the store (drop_blobs, drop_blob_chunks): with the procrastinate backend a worker on any host reads a drop from the store alone.

Revision ID: 0007_drop_blobs
Revises: 0006_queue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_drop_blobs'
down_revision = '0006_queue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('drop_blob_chunks',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', 'seq')
    )
    op.create_table('drop_blobs',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('chunks', sa.Integer(), nullable=False),
    sa.Column('stored_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('run_id')
    )
    with op.batch_alter_table('drop_blobs', schema=None) as batch_op:
        batch_op.create_index('ix_drop_blobs_stored', ['stored_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('drop_blobs', schema=None) as batch_op:
        batch_op.drop_index('ix_drop_blobs_stored')

    op.drop_table('drop_blobs')
    op.drop_table('drop_blob_chunks')
