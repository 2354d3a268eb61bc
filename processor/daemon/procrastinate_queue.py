"""The procrastinate queue (`[queue] backend = "procrastinate"`): worker processes that each run a
Procrastinate worker on the store, so that `serve` and `worker` on any number of hosts share the drops.

The doors need not tell the queue anything: pipeline.receive() rang the tenant's wake-up in the drop's
own transaction (processor/queue.py). What runs here:

* start(): `workers` processes (spawned; they die with this one), each a Procrastinate worker running one
  job at a time. A process that dies (kill -9, OOM) is replaced; its job is recovered by the sweep once
  its heartbeat is older than [queue] stalled_after_seconds.
* step(): every SWEEP_SECONDS, the sweep (once across hosts): jobs of dead workers, tenants to ring.
* stop(): SIGTERM to the workers (each finishes its current run), then after the deadline SIGKILL (that
  run's transaction rolls back; it is run again from the start by the next worker).
* burst: the workers stop when no job is left; idle() once nothing is due or queued.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime
from multiprocessing import get_context

from sqlalchemy import func, select

from processor import queue
from processor.apply.store import runs
from processor.context import Context
from processor.failures import failure_reason

log = logging.getLogger("rosterdrop.daemon")


class ProcrastinateQueue:
    """The same face as LocalQueue: start, recover, put, step, idle, running, stop, kill."""

    def __init__(self, ctx: Context, workers: int, burst: bool, on_done=None) -> None:
        self.ctx = ctx
        self.workers = workers
        self.burst = burst
        self.on_done = on_done
        self._procs: list = []
        self._next_sweep = 0.0
        self._started_iso = datetime.now(UTC).isoformat()
        self._mp = get_context("spawn")

    @property
    def errors(self) -> int:
        """Runs that ended `failed` since this queue started (burst's exit code)."""
        with self.ctx.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(runs).where(
                runs.c.status == "failed", runs.c.finished_at >= self._started_iso)).scalar() or 0

    def once(self, job):
        """The scheduler's guard: a host-local job runs here; any other runs once across hosts."""
        if getattr(job, "local", False):
            from contextlib import nullcontext

            return nullcontext(True)
        return queue.once_across_hosts(self.ctx.engine, job.name, queue.period_of(job.trigger))

    # ------------------------------------------------------------ life

    def start(self) -> None:
        queue.check_schema(self.ctx.engine)  # UserError: run `rosterdrop db upgrade`
        self._procs = [self._spawn(i) for i in range(self.workers)]

    def _spawn(self, slot: int):
        from processor.daemon.workers import run_queue_worker

        proc = self._mp.Process(target=run_queue_worker, name=f"rosterdrop-worker-{slot}", args=(
            str(self.ctx.home), self.ctx.config, os.getpid(), logging.getLogger().getEffectiveLevel(),
            not self.burst))
        proc.start()
        return proc

    def put(self, drop) -> None:
        """Nothing to do: the drop's transaction rang its tenant's wake-up."""

    def recover(self) -> None:
        """At start: what dead workers and a stopped host left is rung again now, not in a minute."""
        self._sweep(force=True)

    def resume_abandoned(self) -> None:
        """The sweep does it (in step())."""

    def step(self, timeout: float) -> None:
        time.sleep(timeout)
        if time.monotonic() >= self._next_sweep:
            self._sweep()
        for i, proc in enumerate(self._procs):
            if proc.is_alive():
                continue
            if self.burst and proc.exitcode == 0:
                continue
            log.error("worker process %s died (%s); starting a new one", proc.pid, _exit_text(proc.exitcode))
            self._procs[i] = self._spawn(i)

    def _sweep(self, force: bool = False) -> None:
        self._next_sweep = time.monotonic() + queue.SWEEP_SECONDS
        try:
            if force:
                queue.sweep(self.ctx)
                return
            with queue.once_across_hosts(self.ctx.engine, "queue-sweep", queue.SWEEP_SECONDS) as ours:
                if ours:
                    queue.sweep(self.ctx)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again; the store may be what fails
            log.warning("queue sweep failed (%s); tried again in %.0f s", failure_reason(exc), queue.SWEEP_SECONDS)
            log.debug("queue sweep failure in full", exc_info=True)

    def idle(self) -> bool:
        """Burst: the workers are done and no run waits (a due one not rung yet starts the workers again)."""
        if any(p.is_alive() for p in self._procs):
            return False
        jobs, waiting = queue.backlog(self.ctx)
        if not jobs and not waiting:
            return True
        if jobs or queue.tenants_to_ring(self.ctx.engine):
            self._sweep(force=True)
            self._procs = [self._spawn(i) for i in range(self.workers)]
        return False  # else runs wait out a backoff

    def running(self) -> list:
        return [p for p in self._procs if p.is_alive()]

    def waiting_text(self) -> str:
        """What shutdown waits for, for the log: this host's worker processes (their runs are in the store)."""
        return f"{len(self.running())} worker processes to end their current run"

    def stop(self, deadline: float) -> None:
        for p in self.running():
            try:
                os.kill(p.pid, signal.SIGTERM)  # the worker finishes its current run, then exits
            except ProcessLookupError:
                pass
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in self.running():
            log.warning("worker process %s: still running at the stop deadline; stopped, its drop is run again "
                        "by the next worker", p.pid)
        self.kill()
        for p in self._procs:
            p.join(timeout=5)

    def kill(self) -> None:
        for p in self._procs:
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
