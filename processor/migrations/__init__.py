"""Alembic migrations of the store (env.py, versions/). Run through processor.apply.schema, never by hand."""
