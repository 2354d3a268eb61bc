"""web console: operators (`rosterdrop web passwd`), server-side sessions, spent one-time tokens.

Revision ID: 0003_web_console
Revises: 0002_tenant_access

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_web_console'
down_revision = '0002_tenant_access'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_operators',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('web_sessions',
    sa.Column('sid_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('principal', sa.Text(), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=True),
    sa.Column('csrf', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sid_hash')
    )
    op.create_table('web_used_tokens',
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('used_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('nonce')
    )


def downgrade() -> None:
    op.drop_table('web_used_tokens')
    op.drop_table('web_sessions')
    op.drop_table('web_operators')
