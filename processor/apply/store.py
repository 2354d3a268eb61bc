"""The SQL store: every table, scoped by tenant. SQLAlchemy 2 Core; SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import logging
import time

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

from processor.home import create_private_sqlite

log = logging.getLogger("rosterdrop.store")
metadata = MetaData()

tenants = Table(
    "tenants", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("name", Text),
)

runs = Table(
    "runs", metadata,
    Column("run_id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcome", String(16)),
    Column("format", String(20)),
    Column("source", String(8), nullable=False),
    Column("received_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("sha256", String(64), nullable=False),
    Column("original_name", Text),
    Column("spool_path", Text),
    Column("report_path", Text),
    Column("result", Text),  # the run result JSON (CONTRACT.md section 4)
    # The queue's own bookkeeping (processor/queue.py; the procrastinate backend): how often the store failed
    # the run (busy, unreachable: retried with backoff), how often a worker died with it (twice: `failed`),
    # and not before when it is taken again (epoch seconds; NULL: now).
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("worker_deaths", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float),
    Index("ix_runs_tenant_received", "tenant", "received_at"),
    Index("ix_runs_status", "status"),
    Index("ix_runs_tenant_sha", "tenant", "sha256"),
)

# One row per tenant while a run holds it: two processes never apply the same tenant at once.
locks = Table(
    "tenant_locks", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("run_id", String(40), nullable=False),
    Column("owner", Text, nullable=False),
    Column("acquired_at", Float, nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("run_id", String(40), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("sourced_id", Text, nullable=False),
    Column("action", String(16), nullable=False),  # created | updated | deactivated | reactivated
    Column("before", Text),
    Column("after", Text),
    Index("ix_audit_tenant_run", "tenant", "run_id"),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("run_id", String(40)),
    Column("kind", String(32), nullable=False),
    Column("recipients", Text, nullable=False),  # JSON list
    Column("subject", Text, nullable=False),
    Column("message", LargeBinary, nullable=False),  # the whole MIME message
    Column("status", String(16), nullable=False),  # queued | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Index("ix_outbox_status", "status", "next_attempt_at"),
)

credentials = Table(
    "sftp_credentials", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # password | key
    Column("value", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_credentials_tenant", "tenant"),
)

pulled = Table(
    "pulled_files", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("size", BigInteger, primary_key=True),
    Column("mtime", BigInteger, primary_key=True),
    Column("run_id", String(40)),
)

# Derived state: per tenant and roster table, the (sourced_id, status, row_hash, school) columns the diff
# needs, as an Arrow IPC blob (plus a small one of the rows changed since) written in the same transaction
# as the rows. Reading 3M rows back through the DB-API costs ~15 s; the blob ~0.5 s. Anything that writes
# roster rows outside apply_changes (a revert) deletes the tenant's snapshots, and the diff falls back to
# querying the rows.
snapshots = Table(
    "roster_snapshots", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("entity", String(32), primary_key=True),
    Column("run_id", String(40), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    # The rows changed since `data` was written, which replace its rows of the same ids (apply.diff).
    Column("delta", LargeBinary, nullable=True),
)

# Roster tables. Every one has tenant + sourced_id as key, a status (active | inactive), the hash of the
# compared fields (for the vectorised diff), the run that last changed it, and `data`: every field the
# district sent (OneRoster + metadata.*) as JSON so nothing is lost.
COMMON = ("tenant", "sourced_id", "status", "row_hash", "run_id", "data")

ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "orgs": ("name", "type", "identifier", "parent"),
    "academic_sessions": ("title", "type", "start_date", "end_date", "parent", "school_year"),
    "courses": ("title", "course_code", "grades", "org", "school_year"),
    "classes": ("title", "class_code", "class_type", "grades", "school", "course", "terms"),
    "people": ("role", "or_role", "username", "email", "given_name", "family_name", "middle_name",
               "identifier", "school", "schools", "grades", "enabled", "preferred_language"),
    "enrollments": ("class_id", "person", "role", "is_primary", "school", "begin_date", "end_date"),
    "guardian_links": ("student", "guardian"),
    "demographics": ("birth_date", "sex"),
}

# Columns added after rows were stored: a stored NULL there was never written, not a value, so the diff fills
# it in silently (a "rehashed" row) instead of reporting every stored record as updated after the upgrade.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"people": ("preferred_language",)}


# The web console (processor/web). Operators sign in with a password set by `rosterdrop web passwd NAME`.
web_operators = Table(
    "web_operators", metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Server-side sessions: the cookie holds a random id, the store only its SHA-256 (a leaked table signs no
# one in). kind: admin (one tenant, principal = the report_to address) | operator (every tenant).
web_sessions = Table(
    "web_sessions", metadata,
    Column("sid_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("principal", Text, nullable=False),
    Column("tenant", String(64)),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# One-time tokens already spent (sign-in links): a second use of the same link is refused.
web_used_tokens = Table(
    "web_used_tokens", metadata,
    Column("nonce", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("used_at", Float, nullable=False),
)


def _entity_table(name: str, fields: tuple[str, ...]) -> Table:
    return Table(
        name, metadata,
        Column("tenant", String(64), primary_key=True),
        Column("sourced_id", Text, primary_key=True),
        Column("status", String(8), nullable=False),
        Column("row_hash", BigInteger, nullable=False),
        Column("run_id", String(40), nullable=False),
        *[Column(f, Text) for f in fields],
        Column("data", Text),
        # SQLite: the rows live in the primary-key B-tree itself (no second rowid tree to maintain),
        # which is most of the cost of a bulk load keyed by text ids.
        sqlite_with_rowid=False,
    )


ENTITY_TABLES: dict[str, Table] = {name: _entity_table(name, cols) for name, cols in ENTITY_COLUMNS.items()}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    # Daemon workers of several tenants write the same file; SQLite serialises writers, and a first load of
    # a 300k-student district holds the write lock for tens of seconds, so a writer may queue behind several
    # of them (30 s gave "database is locked" with 3 parallel 300k loads on 2 cores).
    cur.execute("PRAGMA busy_timeout=300000")
    cur.execute("PRAGMA cache_size=-262144")  # 256 MiB of page cache: big loads touch many index pages
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def open_store(url: str, create: bool = True) -> Engine:
    """An engine for the store. create: an empty database gets every table, stamped at the newest schema
    revision (processor.apply.schema); a database with tables is left as it is. Commands never create:
    they open the store through Context, which checks its revision (init and `db upgrade` make it)."""
    # hide_parameters: a logged database error must never carry roster values (names, emails).
    engine = create_engine(url, future=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        create_private_sqlite(engine.url.database)  # 0600, not the umask's 0644: it holds the roster
    if create:
        from processor.apply.schema import create_at_head

        create_at_head(engine)
    return engine


def refresh_statistics(engine: Engine, tables: list[str], run_id: str) -> None:
    """ANALYZE the tables a run reshaped (after its commit, in its own transaction). PostgreSQL only plans
    `sourced_id = ANY(...)` as index lookups once it has statistics; right after a first load it has none
    until autovacuum gets round to it, and the next run's lookups of changed rows scan the tenant's whole
    table instead (measured: 350 ms → 66 ms for 7,000 ids among 2M enrollments). SQLite's lookups here are
    by primary key and need no statistics."""
    tables = sorted(set(tables) & set(ENTITY_TABLES))  # names from our own list, never from input
    if engine.dialect.name != "postgresql" or not tables:
        return
    start = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                conn.exec_driver_sql(f"ANALYZE {table}")
    except Exception:  # noqa: BLE001 - the run is committed; autovacuum will analyze later anyway
        log.warning("run %s: ANALYZE of %s failed; PostgreSQL's autovacuum will do it later", run_id,
                    ", ".join(tables), exc_info=True)
        return
    log.info("run %s: refreshed PostgreSQL planner statistics of %s (%.1f s)", run_id, ", ".join(tables),
             time.perf_counter() - start)


# A tenant whose SFTP logins are refused (`rosterdrop tenant disable`): one row while it is disabled.
# Kept in the store, not in rosterdrop.toml, so the command takes effect at the next login without a reload.
tenant_access = Table(
    "tenant_access", metadata,
    Column("tenant", String(64), primary_key=True),
    Column("disabled_at", Float, nullable=False),
    Column("disabled_by", Text),
)


# Tables of other modules, registered on this metadata (imported last: they import `metadata` from here).
from processor import calendar as _calendar  # noqa: E402,F401
from processor import events as _events  # noqa: E402,F401
from processor import queue as _queue  # noqa: E402,F401
from processor import webhooks as _webhooks  # noqa: E402,F401
from processor.apply import identity as _identity  # noqa: E402,F401
from processor.apply import locks as _locks  # noqa: E402,F401
from processor.intake import blobs as _blobs  # noqa: E402,F401
from processor.web import tokens as _tokens  # noqa: E402,F401
