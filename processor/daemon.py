"""`rosterdrop serve`: the intake doors, the scheduler and the workers around the pipeline.

The pipeline decides *what* happens to a drop; the daemon only decides *when*. Its life reads top-down
in Daemon.run(): start the workers, recover what a previous daemon left, open the doors (built-in SFTP
server and/or watched folder, and scheduled SFTP pulls), then hand drops to the workers until told to
stop.

* Every door calls hand_over(tenant, path, source): pipeline.receive() moves the file atomically into
  the spool and records the run (`received`) before anything else; the Drop is then queued.
* Workers: a process pool (daemon.workers, 0 = one per core). The dispatcher keeps a FIFO per tenant and
  gives a tenant its next drop only when the previous one finished: one run at a time per tenant, in
  arrival order, tenants in parallel. Each worker process loads its own Context (engines do not cross
  processes) and calls pipeline.process_drop(). A newer drop of a tenant with a held run goes ahead.
* A worker process that dies (OOM kill, a crash in a native library) affects only the run it had
  (processor/workers.py: the pool replaces that one process): the run is tried once more, and ends
  `failed` if its worker dies again. A run that raises ends `failed` (the pipeline records it: nothing
  applied, the district told, the bundle kept for `rosterdrop runs retry`); a busy or unreachable store
  is retried with backoff first. Later drops of the tenant go ahead meanwhile; if one of them is applied
  first, a retry marks the older run `superseded` instead of applying it over the newer one. It is never
  marked `rejected`: its bytes would then count as processed and a re-send of the same file after the
  fix would be refused as a duplicate.
* Crash safety: at start-up, runs left `received`/`processing` are resumed in arrival order, spool
  folders without a run (a crash between the move and the insert) are recorded and processed, and
  whatever waits in the inboxes is handed over. The apply is one transaction, so kill -9 at any moment
  loses no drop and applies none twice. Workers die with the daemon (PR_SET_PDEATHSIG), so an orphaned
  worker cannot finish a run that the restarted daemon resumes.
* SIGTERM/SIGINT: the doors close, current runs get daemon.stop_timeout_seconds to finish (a run still
  going then is stopped; its transaction rolls back and it resumes at the next start), exit 0. A second
  signal stops at once.
* --burst: no doors and no scheduler; take what waits (unfinished runs, spool, inboxes), process it all,
  deliver the outbox, exit (0; 1 if a run failed with an internal error). Tests use it so they never sleep.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import defaultdict, deque
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from functools import partial
from multiprocessing import get_context
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from processor.apply.store import outbox, runs
from processor.apply.tenant_lock import tenant_lock
from processor.calendar import send_pause_notices
from processor.config import Config, ConfigError
from processor.context import Context, UserError
from processor.events import vendor_jobs
from processor.failures import record_failed
from processor.intake import pull
from processor.intake.leftovers import clean_leftovers
from processor.intake.loose import LooseCsvCollector, is_ignored, is_loose_csv
from processor.intake.spool import Drop, archive, spooled_bundle, spooled_runs
from processor.pipeline import process_drop, receive
from processor.runs import RunResult
from processor.workers import WorkerDied, WorkerPool

log = logging.getLogger("rosterdrop.daemon")

DEMO_TENANT = "demo"
UNFINISHED = ("received", "processing")
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # the CLI's format (cli.setup_logging)
TICK_SECONDS = 0.2  # how often the loop looks at the stop flag while idle
MAIL_EVERY_SECONDS = 60.0
RETRY_EVERY_SECONDS = 60.0
ORPHAN_MIN_AGE_SECONDS = 60.0  # while running, a spool folder this young may be a receive in flight
MISSING_DROP_CHECK_SECONDS = 60.0
TRANSIENT_RETRIES = 8  # a run that fails on a busy or unreachable store is retried this often, with backoff
TRANSIENT_FIRST_DELAY = 5.0


# ---------------------------------------------------------------- entry point


def serve(home: Path, burst: bool = False, create: bool = False) -> int:
    """Run the daemon until SIGTERM/SIGINT (with burst: until nothing is left); the exit code.

    A home that does not exist yet is created with a `demo` tenant whose SFTP password is printed once,
    so that the first `rosterdrop serve` on a new machine just works: on a terminal, or with create
    (`serve --init`). Without a terminal (a service, a script) a missing home is an error: a mistyped
    path must not quietly become a new, empty home. ConfigError and UserError go to the caller, which
    prints them. One daemon per home (service.ServeLock).
    """
    from processor.service import ServeLock, startup_warnings

    if not home.exists():
        if not (create or (sys.stdin is not None and sys.stdin.isatty())):
            raise UserError(f"{home} does not exist; create it with `rosterdrop init --home {home}` (or "
                            "`rosterdrop serve --init`), or give the right --home / ROSTERDROP_HOME")
        first_start(home)
    ctx = Context.load(home)
    with ServeLock(home):
        startup_warnings(ctx.config)
        code = Daemon(ctx, burst=burst).run()
    _exit_if_threads_linger(code)
    return code


def first_start(home: Path) -> str:
    """Create the home with a `demo` tenant and a generated SFTP password; print it once; return it."""
    from processor.home import init_home
    from processor.intake.auth import set_password

    init_home(home, [DEMO_TENANT])
    ctx = Context.load(home)
    password = secrets.token_urlsafe(12)
    set_password(ctx.engine, DEMO_TENANT, password)
    ctx.engine.dispose()
    sftp = ctx.config.sftp
    host = "127.0.0.1" if sftp.host in ("", "0.0.0.0", "::") else sftp.host
    host = f"[{host}]" if ":" in host else host
    print(f"Created a new Rosterdrop home at {home} with a tenant {DEMO_TENANT!r}.\n"
          f"SFTP password for {DEMO_TENANT} (shown only now; stored as a hash; change it with "
          f"`rosterdrop tenant passwd {DEMO_TENANT}`):\n\n    {password}\n\n"
          f"Upload a drop:  sftp -P {sftp.port} {DEMO_TENANT}@{host}   then   put nightly.zip\n",
          flush=True)
    return password


def _exit_if_threads_linger(code: int) -> None:
    # APScheduler's job threads are not daemon threads and the interpreter joins them at exit: a pull
    # stuck in a TCP connect would hold the process past its stop deadline. Everything that matters is
    # committed by now, so leave without waiting for them.
    deadline = time.monotonic() + 1.0
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# ---------------------------------------------------------------- the daemon


class Daemon:
    """The doors, the scheduler and the worker pool; run() is the daemon's whole life."""

    def __init__(self, ctx: Context, burst: bool = False) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.burst = burst
        self.tenants = sorted(ctx.config.tenants)
        self.workers = ctx.config.daemon.workers or os.cpu_count() or 1
        watch = ctx.config.daemon.watch_inbox
        self.watch = (not ctx.config.sftp.enabled) if watch is None else watch
        # What a file found lying in an inbox most likely came through.
        self.inbox_source = "sftp" if ctx.config.sftp.enabled and not self.watch else "watch"
        self.started_at = time.time()
        self.errors = 0  # runs that failed with an internal error (burst's exit code)
        self.sftp = None
        self.watcher = None
        self.scheduler: BackgroundScheduler | None = None
        self.stopping = threading.Event()  # set by a signal or request_stop(): the loop ends
        self._events: queue.Queue = queue.Queue()  # ("drop", Drop) from the doors, ("done", Drop, Future)
        self._waiting: dict[str, deque[Drop]] = defaultdict(deque)  # per tenant, arrival order
        self._running: dict[str, tuple[Drop, Future, int]] = {}  # tenant -> its one running run
        self._known: set[str] = set()  # run ids waiting or running: a run is never queued twice
        self._retried: set[str] = set()
        self._transient: dict[str, int] = {}  # run id -> transient failures so far
        self._not_before: dict[str, float] = {}  # run id -> monotonic time before which it is not retried
        self._pool: WorkerPool | None = None
        self._pool_generation = 0
        self._lock = threading.Lock()
        # made up front: a defaultdict filled from several door threads could hand out two locks for one tenant
        self._receive_locks = {t: threading.RLock() for t in self.tenants}
        self._failed_hand_overs: dict[Path, tuple[str, str]] = {}  # path -> (tenant, source)
        self._old_handlers: dict[int, object] = {}
        self._mailer = _Mailer(ctx)
        self._jobs = [] if burst else self._scheduled_jobs()  # built now: a bad cron fails before any door opens
        # One line per event is ours to write; the libraries' own INFO lines are noise (and paramiko's
        # carry client details).
        for name in ("apscheduler", "paramiko", "watchdog"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        """Recover, open the doors, hand drops to the workers until told to stop; the exit code."""
        self._install_signal_handlers()
        code = 1
        try:
            self.ctx.engine  # noqa: B018 - created once here, before door threads share it
            self._start_workers()
            self._recover()
            if self.burst:
                self._take_inboxes()
            else:
                self._open_doors()
                self._start_scheduler()
                self._mailer.start()
                self._service_ready()
            while not self.stopping.is_set():
                self._service_tick()
                self._handle_events(TICK_SECONDS)
                if self.burst and self._idle():
                    break
                self._dispatch()
        finally:
            code = self._shutdown()
            self._restore_signal_handlers()
        return code

    def request_stop(self) -> None:
        """What SIGTERM does: close the doors, let current runs finish, return from run()."""
        self.stopping.set()

    def _idle(self) -> bool:
        return not self._running and not any(self._waiting.values()) and self._events.empty()

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
            future = self._pool.submit(_process_in_worker, drop)
            self._running[tenant] = (drop, future, self._pool_generation)
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
        except RunFailed as exc:
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
        self._mailer.kick()

    def _retry_later(self, drop: Drop, why: str) -> bool:
        """A busy or unreachable store: the same run again after a backoff, still first in its tenant's line."""
        tries = self._transient.get(drop.run_id, 0) + 1
        if tries > TRANSIENT_RETRIES:
            return False
        self._transient[drop.run_id] = tries
        delay = min(TRANSIENT_FIRST_DELAY * 2 ** (tries - 1), 300.0)
        self._not_before[drop.run_id] = time.monotonic() + delay
        log.warning("run %s tenant %s: the store failed (%s); retrying in %.0f s (try %d of %d)", drop.run_id,
                    drop.tenant, why, delay, tries, TRANSIENT_RETRIES)
        self._enqueue(drop, front=True)
        return True

    def _failed(self, drop: Drop, why: str) -> None:
        """The run ends `failed` (the district is told; `runs retry` redoes it); the tenant's next drops go ahead."""
        self.errors += 1
        try:
            if record_failed(self.ctx, drop, why) is None:
                log.warning("run %s tenant %s: failed (%s), but it had finished meanwhile; left as it is",
                            drop.run_id, drop.tenant, why)
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            log.error("run %s tenant %s: failed (%s) and could not be recorded as failed; it stays unfinished and "
                      "is tried again at the next start", drop.run_id, drop.tenant, why)

    # ------------------------------------------------------------ intake: one way in for every door

    def hand_over(self, tenant: str, path: Path, source: str) -> str | None:
        """Spool and record a complete upload, queue its drop; the run id. Thread-safe; called by every door.

        A path that is already gone (another door took it) is not an error: None. Any other failure is
        raised back to the door (which keeps the file and logs it) and the hand-over is retried every
        minute.
        """
        self.ctx.config.tenant(tenant)  # ConfigError for a tenant that is not configured
        with self._receive_locks[tenant]:  # one receive per tenant at a time: the sha checks see each other
            if not os.path.lexists(path):
                return None
            try:
                received = receive(self.ctx, path, tenant, source=source, move=True)
            except (UserError, FileNotFoundError):
                if not os.path.lexists(path):
                    return None  # taken in the meantime
                self._remember_failure(tenant, path, source)
                raise
            except Exception:
                if os.path.lexists(path):
                    self._remember_failure(tenant, path, source)
                raise
        with self._lock:
            self._failed_hand_overs.pop(Path(path), None)
        if isinstance(received, RunResult):
            return received.run_id  # a duplicate: recorded and archived, nothing to run
        self._events.put(("drop", received))
        return received.run_id

    def _remember_failure(self, tenant: str, path: Path, source: str) -> None:
        with self._lock:
            self._failed_hand_overs[Path(path)] = (tenant, source)

    def _try_hand_over(self, tenant: str, path: Path, source: str) -> None:
        try:
            self.hand_over(tenant, path, source)
        except Exception:  # noqa: BLE001 - logged; the file stays where it is and is retried
            log.exception("tenant %s: handing over %s failed; retried in a minute", tenant, Path(path).name)

    # ------------------------------------------------------------ start-up recovery

    def _recover(self) -> None:
        """Resume unfinished runs, reconcile the spool, hand over what a pull left half-way."""
        for row in self._unfinished_runs():
            if row["tenant"] not in self.config.tenants:
                log.warning("run %s tenant %s: unfinished, but the tenant is no longer configured; left as it is",
                            row["run_id"], row["tenant"])
                continue
            path = Path(row["spool_path"] or "")
            if not row["spool_path"] or not path.exists():
                log.error("run %s tenant %s: unfinished, but its spooled drop %s is missing; it cannot be "
                          "processed (ask the district to send it again)", row["run_id"], row["tenant"], path)
                continue
            log.info("run %s tenant %s: resumed (left %s by the previous daemon)", row["run_id"], row["tenant"],
                     row["status"])
            self._enqueue(Drop(row["run_id"], row["tenant"], path, row["sha256"], row["received_at"],
                               row["source"], row["original_name"] or path.name))
        self._reconcile_spool(at_start=True)
        for tenant in self.tenants:
            pull.recover(self.ctx, tenant, self.hand_over)

    def _unfinished_runs(self) -> list[dict]:
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(select(runs).where(runs.c.status.in_(UNFINISHED))
                                .order_by(runs.c.received_at, runs.c.run_id)).mappings().all()
        return [dict(r) for r in rows]

    def _reconcile_spool(self, at_start: bool) -> None:
        """Spool folders without a run are adopted; at start, finished runs' folders are archived.

        A folder without a run is a drop a crash caught between its move into the spool and its insert.
        While the daemon runs, only folders older than a minute count (a receive may be in flight).
        """
        folders = [f for f in spooled_runs(self.ctx) if f[0] in self.config.tenants]
        statuses = self._statuses([run_id for _, run_id, _ in folders])
        now = time.time()
        for tenant, run_id, folder in folders:
            status = statuses.get(run_id)
            if status is None:
                if not at_start and now - _mtime(folder) < ORPHAN_MIN_AGE_SECONDS:
                    continue
                with self._receive_locks[tenant]:
                    if self._statuses([run_id]):
                        continue  # recorded in the meantime
                    self._adopt(tenant, run_id, folder)
            elif at_start and status not in (*UNFINISHED, "held", "failed"):
                # finished (its transaction committed) but a crash came before its folder was archived;
                # also held runs a newer drop superseded
                archive(self.ctx, folder, tenant, run_id)

    def _statuses(self, run_ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.ctx.engine.connect() as conn:
            for i in range(0, len(run_ids), 500):
                chunk = run_ids[i:i + 500]
                out.update(conn.execute(select(runs.c.run_id, runs.c.status)
                                        .where(runs.c.run_id.in_(chunk))).all())
        return out

    def _adopt(self, tenant: str, run_id: str, folder: Path) -> None:
        bundle = spooled_bundle(folder)
        if bundle is not None:
            log.info("tenant %s: spool folder %s has no run (interrupted between spooling and recording); "
                     "taking its drop now", tenant, run_id)
            # It becomes a new run: the folder's id was never recorded anywhere, and receive() applies
            # the duplicate and resume rules to its bytes like to any other drop.
            self._try_hand_over(tenant, bundle, self.inbox_source)
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: the hand-over failed and is retried

    # ------------------------------------------------------------ doors

    def _open_doors(self) -> None:
        from processor.intake.limits import sftp_options
        from processor.intake.sftp_server import SftpServer
        from processor.intake.watcher import InboxWatcher

        cfg = self.config
        if cfg.sftp.enabled:
            self.sftp = SftpServer(self.ctx.home, self.ctx.engine, cfg.sftp.host, cfg.sftp.port, self.tenants,
                                   partial(self.hand_over, source="sftp"),
                                   quiet_period=cfg.sftp.quiet_period_seconds, **sftp_options(cfg))
            try:
                self.sftp.start()
            except OSError as exc:
                raise UserError(f"cannot listen on {cfg.sftp.host}:{cfg.sftp.port} for SFTP: {exc.strerror or exc}; "
                                "is another `rosterdrop serve` running? Set [sftp] port (or "
                                "ROSTERDROP_SFTP__PORT), or [sftp] enabled = false") from None
        if self.watch:
            self.watcher = InboxWatcher(self.ctx.home, self.tenants, partial(self.hand_over, source="watch"),
                                        polling=cfg.daemon.polling_observer,
                                        stable_seconds=cfg.daemon.watch_stable_seconds,
                                        rescan_seconds=cfg.daemon.rescan_seconds,
                                        quiet_period=cfg.sftp.quiet_period_seconds)
            self.watcher.start()  # its start rescans the inboxes
        elif self.sftp is not None:
            # Uploads completed just before a crash were never handed over, and nothing rescans: take them.
            self._sweep_inboxes(self.inbox_source)
        if cfg.web.enabled:
            from processor.web.server import WebServer

            self.web = WebServer(self.ctx)
            self.web.start()  # UserError (one line) when its port is taken
        doors = [f"SFTP on {cfg.sftp.host}:{self.sftp.port}"] if self.sftp else []
        doors += ["watched inboxes"] if self.watcher else []
        doors += [f"pull for {n} tenants"] if (n := sum(1 for t in cfg.tenants.values() if t.pull)) else []
        if not doors:
            log.warning("no intake door is open ([sftp] enabled = false, daemon.watch_inbox = false, no pull)")
        log.info("serving %d tenants with %d workers: %s", len(self.tenants), self.workers,
                 ", ".join(doors) or "no doors")

    def _take_inboxes(self) -> None:
        """Burst: whatever waits in the inboxes is handed over now, as it is (nobody is uploading)."""
        collector = LooseCsvCollector(self.ctx.home, partial(self._try_hand_over, source=self.inbox_source),
                                      quiet_period=0)
        for tenant in self.tenants:
            collector.recover(tenant)  # .bundle-* folders, loose CSVs (a complete manifest flushes at once)
        collector.flush_due()  # the rest, as if their quiet period had passed
        self._sweep_inboxes(self.inbox_source)

    def _sweep_inboxes(self, source: str) -> None:
        """Hand over every complete file lying in the inboxes (CSVs are the loose collector's business)."""
        from processor.intake.watcher import zip_ok

        for tenant in self.tenants:
            inbox = self.ctx.path("inbox", tenant)
            for root, dirs, files in os.walk(inbox):
                rel_root = Path(root).relative_to(inbox)
                dirs[:] = [d for d in dirs if not is_ignored((rel_root / d).as_posix())]
                for name in sorted(files):
                    path = Path(root) / name
                    if is_ignored((rel_root / name).as_posix()) or is_loose_csv(name) or path.is_symlink():
                        continue
                    if path.suffix.lower() == ".zip" and not zip_ok(path):
                        log.warning("tenant %s: %s in the inbox is not a complete zip; left there",
                                    tenant, (rel_root / name).as_posix())
                        continue
                    self._try_hand_over(tenant, path, source)

    def _close_doors(self) -> None:
        if getattr(self, "web", None) is not None:
            self.web.stop()
        if self.sftp is not None:
            self.sftp.stop()  # uploads in flight become aborted uploads, kept aside
        if self.watcher is not None:
            self.watcher.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)

    # ------------------------------------------------------------ workers

    def _start_workers(self) -> None:
        # spawn, not fork: the daemon has threads (SFTP, watcher, scheduler) and a fork copies their locks.
        # Started now unless bursting: the first drop must not wait for imports.
        self._pool = WorkerPool(
            self.workers, mp_context=get_context("spawn"), initializer=_worker_init,
            initargs=(str(self.ctx.home), self.config, os.getpid(), logging.getLogger().getEffectiveLevel()),
            eager=not self.burst)

    def _restart_workers(self, generation: int) -> None:
        if generation != self._pool_generation:
            return  # already replaced for this breakage
        log.error("a worker process died; starting new workers")
        old = self._pool
        self._pool_generation += 1
        self._start_workers()
        if old is not None:
            old.shutdown(wait=False)  # its busy workers finish their runs (reported as usual), then exit

    def _worker_processes(self) -> list:
        return self._pool.processes() if self._pool else []

    def _kill_workers(self) -> None:
        for p in self._worker_processes():
            try:
                p.kill()  # workers ignore SIGTERM (see _worker_init); their transactions roll back
            except Exception:  # noqa: BLE001 - already gone
                pass

    # ------------------------------------------------------------ stopping

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # run() in a thread (tests): request_stop() is the way to stop it
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        self._old_handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_sighup)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        # A handler interrupts the main thread anywhere, even inside logging: only flags and raw writes.
        if not self.stopping.is_set():
            self.stopping.set()
            return
        os.write(2, b"rosterdrop: second signal: stopping at once; interrupted runs resume at the next start\n")
        self._kill_workers()
        os._exit(0)

    def _shutdown(self) -> int:
        """Close the doors, let current runs finish (daemon.stop_timeout_seconds), stop the workers."""
        from processor.service import sd_notify

        sd_notify("STOPPING=1")
        self._close_doors()
        if not self.burst:
            log.info("stopping: doors closed; waiting for %d current runs", len(self._running))
        deadline = time.monotonic() + self.config.daemon.stop_timeout_seconds
        while self._running and time.monotonic() < deadline:
            self._handle_events(0.05)
        for drop, _, _ in self._running.values():
            log.warning("run %s tenant %s: still running at the stop deadline; stopped, it resumes at the next "
                        "start", drop.run_id, drop.tenant)
        if self._running:
            self._kill_workers()
        if self._pool is not None:
            self._pool.shutdown(wait=not self._running, cancel_futures=True)
        self._mailer.stop()
        waiting = sum(len(q) for q in self._waiting.values())
        if waiting:
            log.info("%d received drops wait for the next start", waiting)
        if self.burst:
            _deliver(self.ctx, force=True)
        log.info("stopped")
        return 1 if self.burst and self.errors else 0

    # ------------------------------------------------------------ service: systemd notify, live reload

    def _service_ready(self) -> None:
        from processor.service import ConfigWatch, Watchdog, sd_notify

        self._config_watch = ConfigWatch(self.ctx.home)
        self._watchdog = Watchdog()
        sd_notify(f"READY=1\nSTATUS=serving {len(self.tenants)} tenants\nMAINPID={os.getpid()}")

    def _service_tick(self) -> None:
        """From the main loop: ping systemd's watchdog; take a changed rosterdrop.toml (or SIGHUP)."""
        if getattr(self, "_config_watch", None) is None:
            return
        self._watchdog.tick()
        new = self._config_watch.poll()
        if new is not None:
            self.reload(new)

    def _on_sighup(self, signum, frame) -> None:
        if getattr(self, "_config_watch", None) is not None:
            self._config_watch.requested = True  # a flag only: the main loop reloads within a tick

    def reload(self, new: Config) -> None:
        """Take a new configuration without dropping a connection: tenants added or removed, their names,
        report_to and policies. Credentials and disabled tenants live in the store and need nothing."""
        from processor.service import restart_needed, watch_new_inboxes

        old = self.config
        added = sorted(set(new.tenants) - set(old.tenants))
        removed = sorted(set(old.tenants) - set(new.tenants))
        for tenant in added:  # before any door can hand a drop of it over
            self._receive_locks.setdefault(tenant, threading.RLock())
            self.ctx.path("inbox", tenant).mkdir(parents=True, exist_ok=True)
        self.config = self.ctx.config = new
        self.tenants = sorted(new.tenants)
        if self.sftp is not None:
            self.sftp.tenants = frozenset(self.tenants)
        if self.watcher is not None:
            self.watcher.tenants = frozenset(self.tenants)
            watch_new_inboxes(self.watcher, added)
        log.info("configuration reloaded: %d tenants%s%s", len(self.tenants),
                 f"; added {', '.join(added)}" if added else "", f"; removed {', '.join(removed)}" if removed else "")
        for section in restart_needed(old, new):
            log.warning("configuration reloaded, but %s changed: that takes effect at the next start", section)

    # ------------------------------------------------------------ scheduler

    def _scheduled_jobs(self) -> list[tuple[str, object, object, dict]]:
        """(id, function, trigger, options) of every job, from the config; ConfigError on a bad schedule."""
        jobs: list[tuple[str, object, object, dict]] = []
        for tenant in self.tenants:
            cfg = self.config.tenants[tenant].pull
            if cfg is not None:
                jobs.append((f"pull-{tenant}", partial(self._pull, tenant),
                             cron_trigger(cfg.schedule, f"tenants.{tenant}.pull.schedule"), {}))
        if any(t.expect_drop_every_hours for t in self.config.tenants.values()):
            jobs.append(("missing-drops", lambda: check_missing_drops(self.ctx, started_at=self.started_at),
                         IntervalTrigger(seconds=MISSING_DROP_CHECK_SECONDS), {}))
        jobs.append(("retention", lambda: apply_retention(self.ctx), CronTrigger(hour=3, minute=17),
                     {"next_run_time": datetime.now(UTC) + timedelta(minutes=1)}))
        if self.config.daemon.weekly_digest:
            jobs.append(("weekly-digest", lambda: queue_weekly_digests(self.ctx),
                         cron_trigger(self.config.daemon.weekly_digest, "daemon.weekly_digest"), {}))
        jobs.extend(vendor_jobs(self.ctx))
        jobs.append(("pause-notices", lambda: send_pause_notices(self.ctx), IntervalTrigger(hours=1), {"next_run_time": datetime.now(UTC) + timedelta(seconds=30)}))  # noqa: E501
        jobs.append(("retry-hand-overs", self._retry_hand_overs, IntervalTrigger(seconds=RETRY_EVERY_SECONDS), {}))
        return jobs

    def _start_scheduler(self) -> None:
        self.scheduler = BackgroundScheduler(job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600})
        for job_id, fn, trigger, options in self._jobs:
            self.scheduler.add_job(_guarded(job_id, fn), trigger, id=job_id, name=job_id, **options)
        self.scheduler.start()

    def _pull(self, tenant: str) -> None:
        try:
            run_ids = pull.pull_tenant(self.ctx, tenant, self.hand_over, stop=self.stopping)
        except pull.PullError as exc:
            log.warning("tenant %s: pull failed: %s", tenant, exc)
            return
        if run_ids:
            log.info("tenant %s: pull fetched %d drops", tenant, len(run_ids))

    def _retry_hand_overs(self) -> None:
        with self._lock:
            failed = dict(self._failed_hand_overs)
        for path, (tenant, source) in failed.items():
            if os.path.lexists(path):
                self._try_hand_over(tenant, path, source)
            else:
                with self._lock:
                    self._failed_hand_overs.pop(path, None)
        self._reconcile_spool(at_start=False)
        self._resume_abandoned()

    def _resume_abandoned(self) -> None:
        """Runs left `processing` by a process that is gone (an operator's `process` killed mid-run) go back
        in line now rather than at the next start. A run is processed only under its tenant's lock, and that
        lock dies with its holder: a `processing` run of a free tenant that this daemon is not running has
        nobody working on it. Called from the scheduler's thread; the main loop enqueues it."""
        for row in self._unfinished_runs():
            tenant = row["tenant"]
            if (row["status"] != "processing" or row["run_id"] in self._known or tenant not in self.config.tenants
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
        with self.ctx.engine.begin() as conn:
            now = conn.execute(select(runs.c.status, runs.c.result).where(runs.c.run_id == run_id)).first()
            if now is None or now.status != "processing":
                return
            if json.loads(now.result or "{}").get("status") == "held":
                # A release that claimed the hold and died before applying it: the hold stays open, to be
                # released again (what a release that fails does itself).
                conn.execute(update(runs).where(runs.c.run_id == run_id, runs.c.status == "processing")
                             .values(status="held"))
                log.warning("run %s tenant %s: a release of this hold was interrupted; it is held again", run_id,
                            tenant)
                return
        log.warning("run %s tenant %s: left processing by a process that is gone; resumed", run_id, tenant)
        self._events.put(("drop", Drop(run_id, tenant, Path(row["spool_path"]), row["sha256"],
                                       row["received_at"], row["source"], row["original_name"] or "")))


# ---------------------------------------------------------------- the worker process side

_WORKER_CTX: Context | None = None
PR_SET_PDEATHSIG = 1


class RunFailed(Exception):
    """A run raised in a worker. It carries no exception message: those may quote roster rows."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason, transient)
        self.reason = reason
        self.transient = transient


def _worker_init(home: str, config: Config, parent_pid: int, log_level: int) -> None:
    """Runs once in each worker process."""
    global _WORKER_CTX
    # The daemon decides when a run stops: Ctrl-C reaches the whole process group and systemd signals
    # the whole cgroup, so workers ignore both and finish (or are killed by the daemon).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    logging.basicConfig(level=log_level, stream=sys.stderr, format=LOG_FORMAT)
    from processor.service import apply_log_format

    apply_log_format()  # the daemon's --log-format, passed on in the environment
    for name in ("apscheduler", "paramiko", "watchdog"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _WORKER_CTX = Context(home=Path(home), config=config)
    _WORKER_CTX.engine  # noqa: B018 - connected now, not when the first drop is waiting


def _die_with_parent(parent_pid: int) -> None:
    # A worker must not outlive the daemon: after a kill -9 of the daemon an orphaned worker would finish
    # its run while the restarted daemon resumes the same run. On Linux the kernel kills us with it.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux
    if os.getppid() != parent_pid:
        os._exit(1)  # the daemon died before the line above took effect


def _process_in_worker(drop: Drop) -> str:
    """Process one drop in a worker process; its final status. RunFailed if it raised."""
    ctx = _WORKER_CTX
    assert ctx is not None, "worker not initialised"
    from processor.service import refresh_worker_config

    refresh_worker_config(ctx)  # policies changed in rosterdrop.toml apply to the next drop
    try:
        # The run's status and a newer applied drop are checked by process_drop inside the tenant lock: a
        # check here, before the lock, could be out of date by the time the lock is ours.
        return process_drop(ctx, drop).status.value
    except Exception as exc:
        reason = _describe(exc)
        # The frames say where it failed; the message is left out because it may quote roster rows
        # (SQLAlchemy puts the statement's parameters in it). -vv logs it whole.
        log.error("run %s tenant %s: processing failed: %s\n%s", drop.run_id, drop.tenant, reason,
                  "".join(traceback.format_tb(exc.__traceback__)).rstrip())
        log.debug("run %s tenant %s: the failure in full", drop.run_id, drop.tenant, exc_info=True)
        raise RunFailed(reason, transient=isinstance(exc, OperationalError)) from None


def _describe(exc: BaseException) -> str:
    """The exception's type, and for a database error the driver's own message (e.g. `database is locked`)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__}: {str(exc.orig).splitlines()[0][:200]}"
    return type(exc).__name__


# ---------------------------------------------------------------- outbox


class _Mailer:
    """Delivers the outbox every minute (retries with backoff are mail.deliver_due's) and after each run."""

    def __init__(self, ctx: Context, every: float = MAIL_EVERY_SECONDS) -> None:
        self.ctx = ctx
        self.every = every
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # a daemon thread: an SMTP server that hangs must not hold up a stop (the row's lease covers it)
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._kick.set()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.every)
            self._kick.clear()
            if self._stop.is_set():
                return
            _deliver(self.ctx)


def _deliver(ctx: Context, force: bool = False) -> None:
    from processor.report.mail import deliver_due

    try:
        deliver_due(ctx, force=force)
    except Exception:  # noqa: BLE001 - a mail failure never stops the daemon; the emails stay queued
        log.exception("outbox delivery failed; the emails stay queued")


# ---------------------------------------------------------------- scheduled jobs


def _guarded(name: str, fn):
    def job() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - one failed job run must not disturb the others
            log.exception("scheduled job %s failed", name)

    return job


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _crontab_weekdays(field: str) -> str:
    # APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (and 7 = Sunday again).
    # Numbers are turned into names, which mean the same in both, so a crontab line means what it says.
    if field == "*":
        return field
    names: list[str] = []
    for part in field.split(","):
        rng, _, step = part.partition("/")
        m = re.fullmatch(r"\*|([0-7])(?:-([0-7]))?", rng)
        if m is None:
            names.append(part)  # names (mon-fri) already mean the same to both
            continue
        if rng == "*":
            lo, hi = 0, 6
        else:
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) else (6 if step else lo)
        names += [_WEEKDAYS[d] for d in range(lo, hi + 1, int(step) if step else 1)]
    return ",".join(dict.fromkeys(names))


def cron_trigger(expr: str, key: str) -> CronTrigger:
    """A CronTrigger from a crontab line (minute hour day month weekday, crontab's weekday numbers)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ConfigError(f"{key}: expected a crontab expression of 5 fields (minute hour day month weekday), "
                          f"got {expr!r}")
    try:
        fields[4] = _crontab_weekdays(fields[4])
        return CronTrigger.from_crontab(" ".join(fields))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc} (got {expr!r})") from None


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def check_missing_drops(ctx: Context, now: float | None = None, started_at: float | None = None) -> list[str]:
    """Queue one missing_drop notice per gap for tenants silent longer than expect_drop_every_hours.

    A gap starts at the tenant's last received drop (any run, whatever its outcome), or at started_at
    for a tenant that never sent one. It was already notified when a missing_drop notice was queued
    after its start, so each gap gets one notice however often this runs, across restarts too.
    Returns the tenants notified now.
    """
    from processor.report.mail import queue_notice

    now = time.time() if now is None else now
    notified = []
    for tenant, tcfg in sorted(ctx.config.tenants.items()):
        hours = tcfg.expect_drop_every_hours
        if not hours or not tcfg.report_to:
            continue
        with ctx.engine.begin() as conn:
            last = conn.execute(select(func.max(runs.c.received_at)).where(runs.c.tenant == tenant)).scalar()
            gap_start = _timestamp(last) if last else started_at
            if gap_start is None or now - gap_start < hours * 3600:
                continue
            told = conn.execute(select(outbox.c.id).where(
                outbox.c.tenant == tenant, outbox.c.kind == "missing_drop",
                outbox.c.created_at >= (_timestamp(last) if last else 0))).first()
            if told is not None:
                continue
            queue_notice(conn, ctx, tenant, "missing_drop", {
                "hours": (now - gap_start) / 3600, "last_received_at": last, "expect_every_hours": hours}, now=now)
        log.info("tenant %s: no drop for %.0f hours; missing-drop notice queued", tenant, (now - gap_start) / 3600)
        notified.append(tenant)
    return notified


def _received_time(entry: Path) -> float:
    # Run ids start with their UTC receive time: more reliable than an mtime a backup restore rewrote.
    try:
        return datetime.strptime(entry.name[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return _mtime(entry)


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return time.time()


def apply_retention(ctx: Context, now: float | None = None) -> int:
    """Delete raw archived drops (archive/<tenant>/<run-id>) and `.aborted` uploads older than retention_days.

    Runs, issues, reports and the audit log are kept. retention_days = 0 keeps raw drops forever.
    Returns how many entries were deleted.
    """
    clean_leftovers(ctx, now)  # .part/.tmp/dot files, empty folders, unreadable zips: [daemon] leftover_days
    days = ctx.config.daemon.retention_days
    if days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - days * 86400
    removed = 0
    archive_root = ctx.path("archive")
    for tenant_dir in sorted(archive_root.iterdir()) if archive_root.is_dir() else []:
        if not tenant_dir.is_dir() or tenant_dir.is_symlink():
            continue
        for entry in tenant_dir.iterdir():
            if _received_time(entry) < cutoff:
                _remove(entry)
                removed += 1
    inbox_root = ctx.path("inbox")
    for aborted in inbox_root.glob("*/**/*.aborted") if inbox_root.is_dir() else []:
        if not aborted.is_symlink() and _mtime(aborted) < cutoff:
            _remove(aborted)
            removed += 1
    if removed:
        log.info("retention: %d raw drops older than %d days deleted", removed, days)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def queue_weekly_digests(ctx: Context) -> int:
    """Queue the weekly digest for every tenant with report_to; how many were queued."""
    from processor.report.mail import queue_notice

    queued = 0
    for tenant, tcfg in sorted(ctx.config.tenants.items()):
        if not tcfg.report_to:
            continue
        with ctx.engine.begin() as conn:
            if queue_notice(conn, ctx, tenant, "weekly_digest", {}) is not None:
                queued += 1
    return queued
