"""The local queue (`[queue] backend = "local"`, one host): an in-process FIFO per tenant in front of a
pool of worker processes.

The doors put() each recorded drop; step() (from the daemon's loop) gives a tenant its next drop only
when its previous one finished: one run at a time per tenant, in arrival order, tenants in parallel.

* A worker process that dies (OOM kill, a crash in a native library) affects only the run it had
  (processor/workers.py: the pool replaces that one process): the run is tried once more, and ends
  `failed` if its worker dies again. A run that raises ends `failed` (the pipeline records it: nothing
  applied, the district told, the bundle kept for `rosterdrop runs retry`); a busy or unreachable store
  is retried with backoff first. Later drops of the tenant go ahead meanwhile; if one of them is applied
  first, a retry marks the older run `superseded` instead of applying it over the newer one. It is never
  marked `rejected`: its bytes would then count as processed and a re-send of the same file after the
  fix would be refused as a duplicate.
* recover(): at start-up, runs left `received`/`processing` are resumed in arrival order.
  resume_abandoned() (every minute) takes runs left `processing` by another process that is gone.
"""

from __future__ import annotations

import json
import logging
import queue
import time
from collections import defaultdict, deque
from concurrent.futures import Future
from pathlib import Path

from sqlalchemy import select, update

from processor.apply.store import runs
from processor.apply.tenant_lock import tenant_lock
from processor.context import Context, UserError
from processor.daemon import workers
from processor.failures import record_failed
from processor.intake.spool import Drop
from processor.workers import WorkerDied, WorkerPool

log = logging.getLogger("rosterdrop.daemon")

UNFINISHED = ("received", "processing")
TRANSIENT_RETRIES = 8  # a run that fails on a busy or unreachable store is retried this often, with backoff
TRANSIENT_FIRST_DELAY = 5.0
TRANSIENT_MAX_DELAY = 300.0


def unfinished_runs(ctx: Context) -> list[dict]:
    """Runs left `received`/`processing`, oldest first."""
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(runs).where(runs.c.status.in_(UNFINISHED))
                            .order_by(runs.c.received_at, runs.c.run_id)).mappings().all()
    return [dict(r) for r in rows]


def drop_of(row: dict) -> Drop:
    path = Path(row["spool_path"] or "")
    return Drop(row["run_id"], row["tenant"], path, row["sha256"], row["received_at"], row["source"],
                row["original_name"] or path.name)


def transient_delay(tries: int) -> float:
    """The backoff before the tries-th retry of a run the store failed (5 s, 10 s, ... at most 5 min)."""
    return min(TRANSIENT_FIRST_DELAY * 2 ** (tries - 1), TRANSIENT_MAX_DELAY)


class LocalQueue:
    """put() from any thread; step() from the daemon's loop; on_done(drop, status) is called per finished run."""

    once = None  # one host: every scheduled job runs here

    def __init__(self, ctx: Context, workers: int, burst: bool, on_done=None) -> None:
        self.ctx = ctx
        self.workers = workers
        self.burst = burst
        self.on_done = on_done or (lambda drop, status: None)
        self.errors = 0  # runs that failed with an internal error (burst's exit code)
        self._events: queue.Queue = queue.Queue()  # ("drop", Drop) from the doors, ("done", Drop, Future)
        self._waiting: dict[str, deque[Drop]] = defaultdict(deque)  # per tenant, arrival order
        self._running: dict[str, tuple[Drop, Future]] = {}  # tenant -> its one running run
        self._known: set[str] = set()  # run ids waiting or running: a run is never queued twice
        self._retried: set[str] = set()
        self._transient: dict[str, int] = {}  # run id -> transient failures so far
        self._not_before: dict[str, float] = {}  # run id -> monotonic time before which it is not retried
        self._pool: WorkerPool | None = None

    # ------------------------------------------------------------ life

    def start(self) -> None:
        # Started now unless bursting: the first drop must not wait for imports.
        self._pool = workers.start_pool(self.ctx, self.workers, eager=not self.burst)

    def put(self, drop: Drop) -> None:
        """A recorded drop, from any thread (a door, a scheduler job)."""
        self._events.put(("drop", drop))

    def step(self, timeout: float) -> None:
        """Take what the doors and workers reported (waiting up to timeout), then start what can start."""
        self._handle_events(timeout)
        self._dispatch()

    def idle(self) -> bool:
        return not self._running and not any(self._waiting.values()) and self._events.empty()

    def waiting_text(self) -> str:
        """What shutdown waits for, for the log."""
        return f"{len(self._running)} current runs"

    def stop(self, deadline: float) -> None:
        """Let current runs finish until deadline (monotonic); then stop the workers (killing what still runs)."""
        while self._running and time.monotonic() < deadline:
            self._handle_events(0.05)
        for drop, _ in self._running.values():
            log.warning("run %s tenant %s: still running at the stop deadline; stopped, it resumes at the next "
                        "start", drop.run_id, drop.tenant)
        if self._running:
            self.kill()
        if self._pool is not None:
            self._pool.shutdown(wait=not self._running, cancel_futures=True)
        waiting = sum(len(q) for q in self._waiting.values())
        if waiting:
            log.info("%d received drops wait for the next start", waiting)

    def kill(self) -> None:
        workers.kill(self._pool.processes() if self._pool else [])

    # ------------------------------------------------------------ recovery

    def recover(self) -> None:
        """At start: runs left unfinished by the previous daemon go back in line, oldest first."""
        tenants = self.ctx.config.tenants
        for row in unfinished_runs(self.ctx):
            if row["tenant"] not in tenants:
                log.warning("run %s tenant %s: unfinished, but the tenant is no longer configured; left as it is",
                            row["run_id"], row["tenant"])
                continue
            drop = drop_of(row)
            if not row["spool_path"] or not drop.path.exists():
                log.error("run %s tenant %s: unfinished, but its spooled drop %s is missing; it cannot be "
                          "processed (ask the district to send it again)", row["run_id"], row["tenant"], drop.path)
                continue
            log.info("run %s tenant %s: resumed (left %s by the previous daemon)", row["run_id"], row["tenant"],
                     row["status"])
            self._enqueue(drop)

    def resume_abandoned(self) -> None:
        """Runs left `processing` by a process that is gone (an operator's `process` killed mid-run) go back
        in line now rather than at the next start. A run is processed only under its tenant's lock, and that
        lock dies with its holder: a `processing` run of a free tenant that this daemon is not running has
        nobody working on it. Called from the scheduler's thread; the main loop enqueues it."""
        for row in unfinished_runs(self.ctx):
            tenant = row["tenant"]
            if (row["status"] != "processing" or row["run_id"] in self._known
                    or tenant not in self.ctx.config.tenants
                    or not row["spool_path"] or not Path(row["spool_path"]).exists()):
                continue
            try:
                with tenant_lock(self.ctx.engine, tenant, row["run_id"], timeout=0):
                    self._resume_one(row)
            except UserError:
                continue  # someone is working on the tenant

    def _resume_one(self, row: dict) -> None:
        # Under the tenant's lock: nobody can be between taking it and working on this run.
        run_id, tenant = row["run_id"], row["tenant"]
        if not reopen_interrupted_release(self.ctx, run_id, tenant):
            return
        log.warning("run %s tenant %s: left processing by a process that is gone; resumed", run_id, tenant)
        self.put(drop_of(row))

    # ------------------------------------------------------------ the line

    def _handle_events(self, timeout: float) -> None:
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if event[0] == "drop":
                self._enqueue(event[1])
            else:
                self._finished(event[1], event[2])
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return

    def _enqueue(self, drop: Drop, front: bool = False) -> None:
        if drop.run_id in self._known:
            return  # the same run handed over again (a re-send of an unfinished drop resumes it)
        self._known.add(drop.run_id)
        if front:
            self._waiting[drop.tenant].appendleft(drop)
        else:
            self._waiting[drop.tenant].append(drop)

    def _dispatch(self) -> None:
        """Give each idle tenant its next drop, oldest first, while a worker is free."""
        now = time.monotonic()
        ready = [t for t, q in self._waiting.items() if q and t not in self._running
                 and self._not_before.get(q[0].run_id, 0) <= now]
        for tenant in sorted(ready, key=lambda t: self._waiting[t][0].received_at):
            if len(self._running) >= self.workers:
                return
            drop = self._waiting[tenant].popleft()
            future = self._pool.submit(workers.process_in_worker, drop)
            self._running[tenant] = (drop, future)
            future.add_done_callback(lambda f, d=drop: self._events.put(("done", d, f)))
        for tenant in [t for t, q in self._waiting.items() if not q]:
            del self._waiting[tenant]

    def _finished(self, drop: Drop, future: Future) -> None:
        self._running.pop(drop.tenant, None)
        self._known.discard(drop.run_id)
        try:
            status = future.result()
        except WorkerDied as exc:
            # Only this run's worker died (the pool replaces it); the other workers and their runs go on.
            if drop.run_id not in self._retried:
                self._retried.add(drop.run_id)
                log.error("run %s tenant %s: its worker process died (%s); trying it once more", drop.run_id,
                          drop.tenant, str(exc).rpartition("(")[2].rstrip(")"))
                self._enqueue(drop, front=True)
                return
            self._failed(drop, "its worker process died twice")
            return
        except workers.RunFailed as exc:
            if exc.transient and self._retry_later(drop, exc.reason):
                return
            self._failed(drop, exc.reason)
            return
        except Exception as exc:  # noqa: BLE001 - a failed run is logged and kept, never fatal to the loop
            self._failed(drop, type(exc).__name__)
            return
        self._transient.pop(drop.run_id, None)
        self._not_before.pop(drop.run_id, None)
        if status == "failed":
            self.errors += 1  # recorded by the pipeline; burst's exit code says so
        log.debug("run %s tenant %s: worker done (%s)", drop.run_id, drop.tenant, status)
        self.on_done(drop, status)

    def _retry_later(self, drop: Drop, why: str) -> bool:
        """A busy or unreachable store: the same run again after a backoff, still first in its tenant's line."""
        tries = self._transient.get(drop.run_id, 0) + 1
        if tries > TRANSIENT_RETRIES:
            return False
        self._transient[drop.run_id] = tries
        delay = transient_delay(tries)
        self._not_before[drop.run_id] = time.monotonic() + delay
        log.warning("run %s tenant %s: the store failed (%s); retrying in %.0f s (try %d of %d)", drop.run_id,
                    drop.tenant, why, delay, tries, TRANSIENT_RETRIES)
        self._enqueue(drop, front=True)
        return True

    def _failed(self, drop: Drop, why: str) -> None:
        self.errors += 1
        fail_run(self.ctx, drop, why)


def fail_run(ctx: Context, drop: Drop, why: str) -> None:
    """The run ends `failed` (the district is told; `runs retry` redoes it); the tenant's next drops go ahead."""
    try:
        if record_failed(ctx, drop, why) is None:
            log.warning("run %s tenant %s: failed (%s), but it had finished meanwhile; left as it is",
                        drop.run_id, drop.tenant, why)
    except Exception:  # noqa: BLE001 - the store itself may be what failed
        log.error("run %s tenant %s: failed (%s) and could not be recorded as failed; it stays unfinished and "
                  "is tried again at the next start", drop.run_id, drop.tenant, why)


def reopen_interrupted_release(ctx: Context, run_id: str, tenant: str) -> bool:
    """Under the tenant's lock, for a run found `processing` that nobody works on: whether to process it.

    A release that claimed a hold and died before applying it leaves the run `processing` with a held
    result: the hold stays open, to be released again (what a release that fails does itself)."""
    with ctx.engine.begin() as conn:
        now = conn.execute(select(runs.c.status, runs.c.result).where(runs.c.run_id == run_id)).first()
        if now is None or now.status != "processing":
            return False
        if json.loads(now.result or "{}").get("status") == "held":
            conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status == "processing")
                         .values(status="held"))
            log.warning("run %s tenant %s: a release of this hold was interrupted; it is held again", run_id,
                        tenant)
            return False
    return True

