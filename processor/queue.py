"""The procrastinate backend (`[queue] backend = "procrastinate"`): drops wait in the runs table; a
Procrastinate job is only a per-tenant wake-up, so any worker on any host processes any drop.

* ring(conn, tenant), in the transaction that records a drop (pipeline.receive): defers
  process_tenant(tenant) with lock `tenant:<id>` (never two jobs of a tenant at once, across hosts) and
  queueing lock `wake:<id>` (at most one waiting wake-up per tenant), inside a savepoint, so that
  AlreadyEnqueued (a wake-up already waits, and will see this drop) never rolls back the drop's row.
  A job that is already running holds no queueing lock: a drop recorded while it finishes rings a new
  wake-up, which runs once the first job is done.
* process_tenant(tenant) takes the tenant's oldest unfinished run, processes it, and the next, until none
  is left (per-tenant FIFO comes from our table; queue depth stays about the number of busy tenants).
* No Procrastinate retries. A busy or unreachable store sets runs.attempts and runs.next_attempt_at
  (backoff as the local queue's) and the tenant waits, oldest drop first; past TRANSIENT_RETRIES, or when
  a run's worker died twice (runs.worker_deaths), the run ends `failed` as on one host.
* sweep() (every SWEEP_SECONDS, once across hosts): jobs of workers whose heartbeat stopped (kill -9, a
  dead host) are retried (or ended, when a newer wake-up already waits); tenants with a due run and no
  job are rung again (a backoff that expired, a run left by a dead worker, a drop of the local backend).
* once_across_hosts(): a scheduled job's run claims its slot (a minute, or its interval) in
  scheduled_claims with one conditional write, holding a PostgreSQL advisory lock of the job's own:
  whichever host fires first runs it; the others find the slot taken, or the job still running.
  (Procrastinate's periodic tasks were the other way: they run on workers, where a pull stuck in a TCP
  connect would hold back drops, and they cannot follow a reloaded configuration's schedules.)
* Procrastinate's schema lives beside ours and is applied by `rosterdrop db upgrade` (apply_schema(): the
  whole schema.sql the first time, then the migrations of newer Procrastinate versions), recorded in
  queue_schema; Alembic does not manage it (its own migrations are SQL files of Procrastinate's).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    String,
    Table,
    Text,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError

from processor.apply.store import metadata, runs
from processor.context import Context, UserError

log = logging.getLogger("rosterdrop.queue")

TASK_NAME = "rosterdrop.process_tenant"
QUEUE_NAME = "rosterdrop"
SWEEP_SECONDS = 15.0
UNFINISHED = ("received", "processing")
HEARTBEAT_SECONDS = 10.0

# One row per scheduled job: the last slot (epoch // period) some host ran it for.
scheduled_claims = Table(
    "scheduled_claims", metadata,
    Column("name", String(200), primary_key=True),
    Column("slot", BigInteger, nullable=False),
    Column("host", Text, nullable=False),
    Column("claimed_at", Float, nullable=False),
)

# Which Procrastinate schema `rosterdrop db upgrade` applied to this store.
queue_schema = Table(
    "queue_schema", metadata,
    Column("name", String(40), primary_key=True),
    Column("version", String(40), nullable=False),
    Column("applied_at", Float, nullable=False),
)


def uses_procrastinate(ctx: Context) -> bool:
    return ctx.config.queue.backend == "procrastinate"


def tenant_lock_name(tenant: str) -> str:
    return f"tenant:{tenant}"


def wake_lock_name(tenant: str) -> str:
    return f"wake:{tenant}"


# ---------------------------------------------------------------- the wake-up


_deferring_app = None


def _deferrer():
    """An App used only to defer on a connection we pass (its own pool is never opened)."""
    global _deferring_app
    if _deferring_app is None:
        import procrastinate

        _deferring_app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
    return _deferring_app


def ring(conn: Connection, tenant: str) -> bool:
    """Defer the tenant's wake-up in the caller's transaction; False if one waits already (nothing changed)."""
    from procrastinate.exceptions import AlreadyEnqueued

    try:
        with conn.begin_nested():  # an AlreadyEnqueued rolls back to here, never the caller's rows
            _deferrer().configure_task(
                TASK_NAME, queue=QUEUE_NAME, lock=tenant_lock_name(tenant), queueing_lock=wake_lock_name(tenant),
                connection=conn.connection.driver_connection).defer(tenant=tenant)
    except AlreadyEnqueued:
        return False
    return True


# ---------------------------------------------------------------- the job


def process_tenant(ctx: Context, tenant: str) -> int:
    """The job: the tenant's waiting drops, oldest first, until none is left or the oldest must wait
    (a backoff, an operator's command holding the tenant); how many runs it finished."""
    from processor.service import refresh_worker_config

    refresh_worker_config(ctx)  # policies changed in rosterdrop.toml apply to the next drop
    if tenant not in ctx.config.tenants:
        log.error("tenant %s: has waiting drops, but is not configured on this host (%s); left for a host "
                  "that has it", tenant, socket.gethostname())
        return 0
    done, seen = 0, set()
    while (row := next_run(ctx.engine, tenant)) is not None:
        if row["run_id"] in seen:  # still unfinished after its turn (the store refused even its failure)
            log.warning("run %s tenant %s: still unfinished after processing; the sweep rings it again",
                        row["run_id"], tenant)
            break
        seen.add(row["run_id"])
        if not work_on(ctx, row):
            break
        done += 1
    return done


def next_run(engine: Engine, tenant: str, now: float | None = None) -> dict | None:
    """The tenant's oldest unfinished run, if it is due (None while it waits out a backoff: FIFO)."""
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.tenant == tenant, runs.c.status.in_(UNFINISHED))
                           .order_by(runs.c.received_at, runs.c.run_id).limit(1)).mappings().first()
    if row is None:
        return None
    if row["next_attempt_at"] is not None and row["next_attempt_at"] > (time.time() if now is None else now):
        return None
    return dict(row)


def work_on(ctx: Context, row: dict) -> bool:
    """Process one run; whether the job may go on with the tenant's next one."""
    from processor.apply.tenant_lock import tenant_lock
    from processor.daemon.local_queue import (
        TRANSIENT_RETRIES,
        drop_of,
        fail_run,
        reopen_interrupted_release,
        transient_delay,
    )
    from processor.failures import failure_reason, log_failure
    from processor.pipeline import process_drop

    engine, run_id, tenant = ctx.engine, row["run_id"], row["tenant"]
    drop = drop_of(row)
    if row["status"] == "processing":
        # Our job holds the tenant's Procrastinate lock, so no other job works on it; a `processing` run of
        # a tenant whose lock is free was left by a process that died (the lock dies with its holder).
        try:
            with tenant_lock(engine, tenant, run_id, timeout=0):
                if not reopen_interrupted_release(ctx, run_id, tenant):
                    return True
                deaths = row["worker_deaths"] + 1
                with engine.begin() as conn:
                    conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status == "processing")
                                 .values(worker_deaths=deaths))
                if deaths >= 2:
                    fail_run(ctx, drop, "its worker process died twice")
                    return True
                log.error("run %s tenant %s: its worker process died; trying it once more", run_id, tenant)
        except UserError:
            log.info("run %s tenant %s: the tenant is busy with another process; its drops wait", run_id, tenant)
            return False
    try:
        drop = local_copy(ctx, row)
        status = process_drop(ctx, drop).status.value
    except OperationalError as exc:
        tries = row["attempts"] + 1
        reason = failure_reason(exc)
        if tries > TRANSIENT_RETRIES:
            fail_run(ctx, drop, reason)
            return True
        delay = transient_delay(tries)
        try:
            with engine.begin() as conn:
                conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status.in_(UNFINISHED))
                             .values(attempts=tries, next_attempt_at=time.time() + delay, status="received"))
        except Exception:  # noqa: BLE001 - the store is what fails: the sweep finds the run unfinished later
            log.warning("run %s tenant %s: the store failed (%s) and the retry could not be recorded", run_id,
                        tenant, reason)
            return False
        log.warning("run %s tenant %s: the store failed (%s); retrying in %.0f s (try %d of %d)", run_id, tenant,
                    reason, delay, tries, TRANSIENT_RETRIES)
        return False
    except Exception as exc:  # noqa: BLE001 - the pipeline records its own failures; this is what it could not
        log_failure(drop, exc)
        fail_run(ctx, drop, failure_reason(exc))
        return True
    log.debug("run %s tenant %s: worker done (%s)", run_id, tenant, status)
    return True


def local_copy(ctx: Context, row: dict):
    """The run's Drop with a path on this host: its spooled file when it lies in this home's spool, else
    its bytes fetched from the store into this home's spool (a drop received on another host)."""
    from processor.daemon.local_queue import drop_of

    drop = drop_of(row)
    spool = ctx.path("spool")
    if row["spool_path"] and drop.path.exists() and drop.path.resolve().is_relative_to(spool.resolve()):
        return drop
    from processor.intake.blobs import fetch_drop_bytes

    dest = ctx.path("spool", drop.tenant, drop.run_id, drop.path.name or "drop")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetched = fetch_drop_bytes(ctx.engine, drop.run_id, dest)
    log.info("run %s tenant %s: drop fetched from the store", drop.run_id, drop.tenant)
    return drop.__class__(drop.run_id, drop.tenant, Path(fetched), drop.sha256, drop.received_at, drop.source,
                          drop.original_name)


# ---------------------------------------------------------------- the worker process


def make_app(ctx: Context, ctx_for_task: Context | None = None):
    """A Procrastinate App on the store, with the process_tenant task (run on ctx_for_task's engine)."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=conninfo(ctx), min_size=1, max_size=4))
    task_ctx = ctx_for_task or ctx

    @app.task(name=TASK_NAME, queue=QUEUE_NAME, retry=False)
    def _process_tenant(tenant: str) -> int:
        return process_tenant(task_ctx, tenant)

    return app


def conninfo(ctx: Context) -> str:
    """The store's URL as libpq wants it (no SQLAlchemy driver suffix)."""
    from sqlalchemy.engine import make_url

    url = make_url(ctx.config.store_url())
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def run_worker(ctx: Context, wait: bool = True, name: str | None = None) -> None:
    """Run one Procrastinate worker in this process (one job at a time) until SIGTERM (with wait=False:
    until no job is left). SIGTERM lets the current run finish."""
    import signal

    app = make_app(ctx)
    stalled = ctx.config.queue.stalled_after_seconds

    async def main() -> None:
        async with app.open_async():
            worker = asyncio.create_task(app.run_worker_async(
                queues=[QUEUE_NAME], concurrency=1, wait=wait, install_signal_handlers=False,
                name=name or f"{socket.gethostname()}:{os.getpid()}", delete_jobs="successful",
                update_heartbeat_interval=min(HEARTBEAT_SECONDS, stalled / 3), stalled_worker_timeout=stalled,
                listen_notify=True, fetch_job_polling_interval=5.0))
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, worker.cancel)  # graceful: the current job finishes
            try:
                await worker
            except asyncio.CancelledError:
                pass

    asyncio.run(main())


# ---------------------------------------------------------------- the sweep


def sweep(ctx: Context, now: float | None = None) -> dict[str, int]:
    """Recover jobs of dead workers and ring tenants whose due runs have no job; what it did."""
    stalled = asyncio.run(_recover_stalled(ctx))
    rung = 0
    for tenant in tenants_to_ring(ctx.engine, now):
        if tenant not in ctx.config.tenants:
            continue
        with ctx.engine.begin() as conn:
            if ring(conn, tenant):
                rung += 1
    if stalled or rung:
        log.info("queue sweep: %d jobs of stopped workers recovered, %d tenants rung", stalled, rung)
    return {"stalled": stalled, "rung": rung}


def tenants_to_ring(engine: Engine, now: float | None = None) -> list[str]:
    """Tenants with an unfinished, due run and no Procrastinate job waiting or running for them."""
    now = time.time() if now is None else now
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT DISTINCT r.tenant FROM runs r WHERE r.status IN ('received', 'processing') "
            "AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= :now) "
            "AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.lock = 'tenant:' || r.tenant "
            "AND j.status IN ('todo', 'doing')) ORDER BY r.tenant"), {"now": now}).scalars())


async def _recover_stalled(ctx: Context) -> int:
    """Jobs left `doing` by workers without a heartbeat: back to `todo` (run again from the start by another
    worker), or ended when a newer wake-up of the tenant already waits (it will see the drop)."""
    from procrastinate import exceptions, jobs

    app = make_app(ctx)
    recovered = 0
    async with app.open_async():
        manager = app.job_manager
        for job in await manager.get_stalled_jobs(
                queue=QUEUE_NAME, seconds_since_heartbeat=ctx.config.queue.stalled_after_seconds):
            tenant = (job.task_kwargs or {}).get("tenant", "-")
            try:
                await manager.retry_job(job)
                log.warning("tenant %s: its worker stopped sending heartbeats (died?); its job %s is run again",
                            tenant, job.id)
            except exceptions.UniqueViolation:
                await manager.finish_job(job, status=jobs.Status.ABORTED, delete_job=False)
                log.warning("tenant %s: its worker stopped sending heartbeats (died?); job %s ended, a newer "
                            "wake-up waits", tenant, job.id)
            recovered += 1
    return recovered


def backlog(ctx: Context) -> tuple[int, int]:
    """Waiting or running jobs, and unfinished runs of configured tenants (burst is done at (0, 0))."""
    with ctx.engine.connect() as conn:
        jobs = conn.execute(text("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = :q AND status IN "
                                 "('todo', 'doing')"), {"q": QUEUE_NAME}).scalar()
        waiting = conn.execute(select(runs.c.tenant).where(runs.c.status.in_(UNFINISHED))).scalars().all()
    return int(jobs or 0), sum(1 for t in waiting if t in ctx.config.tenants)


# ---------------------------------------------------------------- once across hosts


def period_of(trigger) -> float:
    """A scheduled job's slot length: its interval, or a minute for a cron line."""
    interval = getattr(trigger, "interval", None)
    return max(1.0, interval.total_seconds()) if interval is not None else 60.0


@contextmanager
def once_across_hosts(engine: Engine, name: str, period: float, now: float | None = None):
    """Yield whether this host runs the job `name` now: its advisory lock is free and its slot unclaimed."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    from processor.apply.tenant_lock import lock_key

    key = lock_key("scheduled job\0" + name)
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            yield False  # running on another host
            return
        try:
            slot = int((time.time() if now is None else now) // period)
            stmt = pg_insert(scheduled_claims).values(name=name, slot=slot, host=_host(), claimed_at=time.time())
            stmt = stmt.on_conflict_do_update(
                index_elements=[scheduled_claims.c.name],
                set_={"slot": stmt.excluded.slot, "host": stmt.excluded.host, "claimed_at": stmt.excluded.claimed_at},
                where=scheduled_claims.c.slot < stmt.excluded.slot).returning(scheduled_claims.c.name)
            claimed = conn.execute(stmt).first() is not None
            yield claimed
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()


def _host() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------- Procrastinate's schema


def procrastinate_version() -> str:
    return importlib_metadata.version("procrastinate")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def apply_schema(engine: Engine) -> tuple[str | None, str]:
    """`rosterdrop db upgrade` with the procrastinate backend: Procrastinate's schema, the whole of it on a
    store without one, else the migrations of the Procrastinate versions after the one applied; idempotent.
    Returns the version before (None: none) and now."""
    from procrastinate.schema import SchemaManager

    want = procrastinate_version()
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x726F7374})  # one upgrade at a time
        before = conn.execute(select(queue_schema.c.version).where(queue_schema.c.name == "procrastinate")).scalar()
        raw = conn.connection.driver_connection
        if before is None:
            if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None:
                raise UserError("the store has Procrastinate tables that Rosterdrop did not create (a shared "
                                "database?); give [store] url a database of its own")
            raw.execute(SchemaManager.get_schema())
        elif _version_key(before) < _version_key(want):
            for migration in _migrations_after(before, want):
                raw.execute(migration.read_text(encoding="utf-8"))
        elif _version_key(before) > _version_key(want):
            raise UserError(f"the store's Procrastinate schema is of version {before}, newer than the installed "
                            f"procrastinate {want}; upgrade Rosterdrop")
        if before != want:
            conn.execute(queue_schema.delete().where(queue_schema.c.name == "procrastinate"))
            conn.execute(queue_schema.insert().values(name="procrastinate", version=want, applied_at=time.time()))
    return before, want


def _migrations_after(before: str, want: str) -> list[Path]:
    from procrastinate.schema import SchemaManager

    folder = Path(SchemaManager.get_migrations_path())
    found = []
    for path in sorted(folder.glob("*.sql")):
        version = _version_key(path.name.split("_", 1)[0])
        if _version_key(before) < version <= _version_key(want):
            found.append(path)
    return found


def check_schema(engine: Engine) -> None:
    """UserError unless `rosterdrop db upgrade` applied the installed Procrastinate's schema."""
    with engine.connect() as conn:
        have = conn.execute(select(queue_schema.c.version).where(queue_schema.c.name == "procrastinate")).scalar()
    if have is None:
        raise UserError('[queue] backend = "procrastinate": the store has no Procrastinate schema yet; run '
                        "`rosterdrop db upgrade`")
    if _version_key(have) != _version_key(procrastinate_version()):
        raise UserError(f"the store's Procrastinate schema is of version {have}, the installed procrastinate is "
                        f"{procrastinate_version()}; run `rosterdrop db upgrade`")

