"""the vendor app: change events (blocks) and their per-tenant counters, API tokens, webhook state and log, field locks and their log, id aliases.

Revision ID: 0004_vendor_app
Revises: 0003_web_console

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004_vendor_app'
down_revision = '0003_web_console'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.Column('revoked_at', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('name'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('event_counters',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.Column('pruned_through', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant')
    )
    op.create_table('events',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=True),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('changed', sa.Text(), nullable=True),
    sa.Column('sourced_ids', sa.Text(), nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_tenant_at', ['tenant', 'at'], unique=False)
        batch_op.create_index('ix_events_tenant_last', ['tenant', 'last_id'], unique=False)

    op.create_table('field_lock_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('field', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('previous', sa.Text(), nullable=True),
    sa.Column('by', sa.Text(), nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('field_lock_log', schema=None) as batch_op:
        batch_op.create_index('ix_field_lock_log_tenant', ['tenant', 'id'], unique=False)

    op.create_table('field_locks',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('field', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('by', sa.Text(), nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'entity', 'sourced_id', 'field')
    )
    op.create_table('id_aliases',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('new_id', sa.Text(), nullable=False),
    sa.Column('old_id', sa.Text(), nullable=False),
    sa.Column('by', sa.Text(), nullable=False),
    sa.Column('at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'entity', 'new_id')
    )
    op.create_table('webhook_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('first_id', sa.BigInteger(), nullable=True),
    sa.Column('last_id', sa.BigInteger(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_log', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_log_tenant', ['tenant', 'id'], unique=False)

    op.create_table('webhook_state',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('delivered_through', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.Float(), nullable=False),
    sa.Column('lease_until', sa.Float(), nullable=False),
    sa.Column('failing_since', sa.Float(), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'url')
    )


def downgrade() -> None:
    op.drop_table('webhook_state')
    with op.batch_alter_table('webhook_log', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_log_tenant')

    op.drop_table('webhook_log')
    op.drop_table('id_aliases')
    op.drop_table('field_locks')
    with op.batch_alter_table('field_lock_log', schema=None) as batch_op:
        batch_op.drop_index('ix_field_lock_log_tenant')

    op.drop_table('field_lock_log')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_tenant_last')
        batch_op.drop_index('ix_events_tenant_at')

    op.drop_table('events')
    op.drop_table('event_counters')
    op.drop_table('api_tokens')
