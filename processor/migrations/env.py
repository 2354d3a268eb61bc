"""Alembic environment: always run programmatically by processor.apply.schema on a connection it passes in
(config.attributes["connection"]), so the store URL, its password and its errors stay Rosterdrop's."""

from __future__ import annotations

from alembic import context

from processor.apply.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the `alembic` command line is not how Rosterdrop migrates
    raise RuntimeError("run migrations with `rosterdrop db upgrade`, not the alembic command")

def _ours(name, type_, parent_names) -> bool:
    # Procrastinate's tables live in the same database and are its own (processor/queue.py apply_schema).
    return not (type_ == "table" and name and name.startswith("procrastinate_"))


context.configure(
    connection=connection,
    target_metadata=metadata,
    include_name=_ours,
    # SQLite cannot ALTER most things: batch mode copies the table, so one revision serves both engines.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
