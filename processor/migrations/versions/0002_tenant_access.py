"""tenant_access: tenants whose SFTP logins are refused (`rosterdrop tenant disable`).

Revision ID: 0002_tenant_access
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_tenant_access"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_access",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("disabled_at", sa.Float(), nullable=False),
        sa.Column("disabled_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant"),
    )


def downgrade() -> None:
    op.drop_table("tenant_access")
