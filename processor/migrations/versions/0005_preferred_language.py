"""people.preferred_language (NULL in rows stored before: the next drop fills it in silently, see store.ADDED_COLUMNS).

Revision ID: 0005_preferred_language
Revises: 0004_vendor_app

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_preferred_language'
down_revision = '0004_vendor_app'
branch_labels = None
depends_on = None

def upgrade() -> None:
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preferred_language', sa.Text(), nullable=True))

def downgrade() -> None:
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.drop_column('preferred_language')

