"""Baseline: the schema of the first release (processor/apply/store.py as it was before migrations).

An unversioned store made by that release is stamped at this revision by `rosterdrop db upgrade`.

Revision ID: 0001_baseline
Revises: (none)
Create Date: 2026-12-01 21:41:13.931423
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001_baseline'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('academic_sessions',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('type', sa.Text(), nullable=True),
    sa.Column('start_date', sa.Text(), nullable=True),
    sa.Column('end_date', sa.Text(), nullable=True),
    sa.Column('parent', sa.Text(), nullable=True),
    sa.Column('school_year', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_index('ix_audit_tenant_run', ['tenant', 'run_id'], unique=False)

    op.create_table('classes',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('class_code', sa.Text(), nullable=True),
    sa.Column('class_type', sa.Text(), nullable=True),
    sa.Column('grades', sa.Text(), nullable=True),
    sa.Column('school', sa.Text(), nullable=True),
    sa.Column('course', sa.Text(), nullable=True),
    sa.Column('terms', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('courses',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('course_code', sa.Text(), nullable=True),
    sa.Column('grades', sa.Text(), nullable=True),
    sa.Column('org', sa.Text(), nullable=True),
    sa.Column('school_year', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('demographics',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('birth_date', sa.Text(), nullable=True),
    sa.Column('sex', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('enrollments',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('class_id', sa.Text(), nullable=True),
    sa.Column('person', sa.Text(), nullable=True),
    sa.Column('role', sa.Text(), nullable=True),
    sa.Column('is_primary', sa.Text(), nullable=True),
    sa.Column('school', sa.Text(), nullable=True),
    sa.Column('begin_date', sa.Text(), nullable=True),
    sa.Column('end_date', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('guardian_links',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('student', sa.Text(), nullable=True),
    sa.Column('guardian', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('orgs',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('type', sa.Text(), nullable=True),
    sa.Column('identifier', sa.Text(), nullable=True),
    sa.Column('parent', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('recipients', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('message', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.Float(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('sent_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_status', ['status', 'next_attempt_at'], unique=False)

    op.create_table('people',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('sourced_id', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('row_hash', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('role', sa.Text(), nullable=True),
    sa.Column('or_role', sa.Text(), nullable=True),
    sa.Column('username', sa.Text(), nullable=True),
    sa.Column('email', sa.Text(), nullable=True),
    sa.Column('given_name', sa.Text(), nullable=True),
    sa.Column('family_name', sa.Text(), nullable=True),
    sa.Column('middle_name', sa.Text(), nullable=True),
    sa.Column('identifier', sa.Text(), nullable=True),
    sa.Column('school', sa.Text(), nullable=True),
    sa.Column('schools', sa.Text(), nullable=True),
    sa.Column('grades', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Text(), nullable=True),
    sa.Column('data', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'sourced_id'),
    sqlite_with_rowid=False
    )
    op.create_table('pulled_files',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('mtime', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=True),
    sa.PrimaryKeyConstraint('tenant', 'name', 'size', 'mtime')
    )
    op.create_table('roster_snapshots',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'entity')
    )
    op.create_table('runs',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('format', sa.String(length=20), nullable=True),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('received_at', sa.String(length=40), nullable=False),
    sa.Column('finished_at', sa.String(length=40), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('original_name', sa.Text(), nullable=True),
    sa.Column('spool_path', sa.Text(), nullable=True),
    sa.Column('report_path', sa.Text(), nullable=True),
    sa.Column('result', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('run_id')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index('ix_runs_tenant_received', ['tenant', 'received_at'], unique=False)
        batch_op.create_index('ix_runs_tenant_sha', ['tenant', 'sha256'], unique=False)

    op.create_table('sftp_credentials',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sftp_credentials', schema=None) as batch_op:
        batch_op.create_index('ix_credentials_tenant', ['tenant'], unique=False)

    op.create_table('tenant_locks',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('owner', sa.Text(), nullable=False),
    sa.Column('acquired_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('tenant')
    )
    op.create_table('tenants',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant')
    )


def downgrade() -> None:
    op.drop_table('tenants')
    op.drop_table('tenant_locks')
    with op.batch_alter_table('sftp_credentials', schema=None) as batch_op:
        batch_op.drop_index('ix_credentials_tenant')

    op.drop_table('sftp_credentials')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_tenant_sha')
        batch_op.drop_index('ix_runs_tenant_received')

    op.drop_table('runs')
    op.drop_table('roster_snapshots')
    op.drop_table('pulled_files')
    op.drop_table('people')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status')

    op.drop_table('outbox')
    op.drop_table('orgs')
    op.drop_table('guardian_links')
    op.drop_table('enrollments')
    op.drop_table('demographics')
    op.drop_table('courses')
    op.drop_table('classes')
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_tenant_run')

    op.drop_table('audit')
    op.drop_table('academic_sessions')
