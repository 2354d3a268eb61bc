"""The daemon: the doors, the queue (local or procrastinate) and its workers, the scheduled jobs, the
console; Daemon.run() is its whole life, top-down.

* SIGTERM/SIGINT: the doors close, current runs get daemon.stop_timeout_seconds to finish (a run still
  going then is stopped; its transaction rolls back and it resumes at the next start), exit 0. A second
  signal stops at once.
* --burst: no doors and no scheduler; take what waits (unfinished runs, spool, inboxes), process it all,
  deliver the outbox, exit (0; 1 if a run failed with an internal error). Tests use it so they never sleep.
* SIGHUP or a changed rosterdrop.toml: reload() takes the new configuration without a restart.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from processor.config import Config
from processor.context import Context
from processor.daemon.doors import Doors
from processor.daemon.local_queue import LocalQueue
from processor.daemon.scheduled import MAIL_EVERY_SECONDS, Mailer, Scheduler, deliver, scheduled_jobs
from processor.daemon.workers import QUIET_LIBRARIES

log = logging.getLogger("rosterdrop.daemon")

TICK_SECONDS = 0.2  # how often the loop looks at the stop flag while idle
MAIL_POLL_SECONDS = 5.0


class Daemon:
    """The doors, the scheduler, the queue and its workers; run() is the daemon's whole life."""

    def __init__(self, ctx: Context, burst: bool = False, workers_only: bool = False,
                 workers: int | None = None) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.burst = burst
        self.workers_only = workers_only  # `rosterdrop worker`: no doors, scheduler or console
        self.workers = workers or ctx.config.daemon.workers or os.cpu_count() or 1
        self.started_at = time.time()
        self.stopping = threading.Event()  # set by a signal or request_stop(): the loop ends
        # With procrastinate, runs finish in worker processes that may be on other hosts: no kick reaches this
        # one, so the outbox is looked at more often (one indexed query; delivery is claimed per email).
        self.mailer = Mailer(ctx, every=MAIL_POLL_SECONDS if ctx.config.queue.backend == "procrastinate"
                             else MAIL_EVERY_SECONDS)
        self.queue = _make_queue(ctx, self.workers, burst, on_done=lambda drop, status: self.mailer.kick())
        self.doors = Doors(ctx, self.queue.put, self.stopping)
        # built now: a bad cron fails before any door opens
        self.schedule = Scheduler([] if burst or workers_only else scheduled_jobs(
            ctx, self.started_at, self.doors.pull, self._sweeps), once=self.queue.once)
        self.web = None
        self._doors_text = ""
        self._old_handlers: dict[int, object] = {}
        self._config_watch = None
        # One line per event is ours to write; the libraries' own INFO lines are noise (and paramiko's
        # carry client details).
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        """Recover, open the doors, hand drops to the workers until told to stop; the exit code."""
        self._install_signal_handlers()
        code = 1
        try:
            self.ctx.engine  # noqa: B018 - created once here, before door threads share it
            self.queue.start()  # the workers
            self.queue.recover()  # runs left unfinished
            if not self.workers_only:
                self.doors.recover()  # the spool, pulls left half-way
            if self.burst:
                self.doors.take_inboxes()
            else:
                if not self.workers_only:
                    self._open_doors()  # and the console, the scheduler, the outbox
                log.info("%s %d tenants with %d workers%s", "working for" if self.workers_only else "serving",
                         len(self.config.tenants), self.workers, self._doors_text)
                self._service_ready()
            while not self.stopping.is_set():
                self._service_tick()
                self.queue.step(TICK_SECONDS)
                if self.burst and self.queue.idle():
                    break
        finally:
            code = self._shutdown()
            self._restore_signal_handlers()
        return code

    def request_stop(self) -> None:
        """What SIGTERM does: close the doors, let current runs finish, return from run()."""
        self.stopping.set()

    def _sweeps(self) -> None:
        """Every minute: failed hand-overs, orphaned spool folders, runs abandoned by a process that is gone."""
        self.doors.retry_hand_overs()
        self.queue.resume_abandoned()

    def _open_doors(self) -> None:
        doors = self.doors.open()
        self._doors_text = ": " + (", ".join(doors) or "no doors")
        if self.config.web.enabled:
            from processor.web.server import WebServer

            self.web = WebServer(self.ctx)
            self.web.start()  # UserError (one line) when its port is taken
        self.schedule.start()
        self.mailer.start()

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
        self.queue.kill()
        os._exit(0)

    def _shutdown(self) -> int:
        """Close the doors, let current runs finish (daemon.stop_timeout_seconds), stop the workers."""
        from processor.service import sd_notify

        sd_notify("STOPPING=1")
        if self.web is not None:
            self.web.stop()
        self.doors.close()
        self.schedule.stop()
        if not self.burst and not self.workers_only:
            log.info("stopping: doors closed; waiting for %s", self.queue.waiting_text())
        self.queue.stop(time.monotonic() + self.config.daemon.stop_timeout_seconds)
        self.mailer.stop()
        if self.burst:
            deliver(self.ctx, force=True)
        log.info("stopped")
        return 1 if self.burst and self.queue.errors else 0

    # ------------------------------------------------------------ service: systemd notify, live reload

    def _service_ready(self) -> None:
        from processor.service import ConfigWatch, Watchdog, sd_notify

        self._config_watch = ConfigWatch(self.ctx.home)
        self._watchdog = Watchdog()
        sd_notify(f"READY=1\nSTATUS=serving {len(self.config.tenants)} tenants\nMAINPID={os.getpid()}")

    def _service_tick(self) -> None:
        """From the main loop: ping systemd's watchdog; take a changed rosterdrop.toml (or SIGHUP)."""
        if self._config_watch is None:
            return
        self._watchdog.tick()
        new = self._config_watch.poll()
        if new is not None:
            self.reload(new)

    def _on_sighup(self, signum, frame) -> None:
        if self._config_watch is not None:
            self._config_watch.requested = True  # a flag only: the main loop reloads within a tick

    def reload(self, new: Config) -> None:
        """Take a new configuration without dropping a connection: tenants added or removed, their names,
        report_to and policies. Credentials and disabled tenants live in the store and need nothing."""
        from processor.service import restart_needed

        old = self.config
        added = sorted(set(new.tenants) - set(old.tenants))
        removed = sorted(set(old.tenants) - set(new.tenants))
        self.doors.reload(new, added)
        self.config = new
        log.info("configuration reloaded: %d tenants%s%s", len(new.tenants),
                 f"; added {', '.join(added)}" if added else "", f"; removed {', '.join(removed)}" if removed else "")
        for section in restart_needed(old, new):
            log.warning("configuration reloaded, but %s changed: that takes effect at the next start", section)


def _make_queue(ctx: Context, workers: int, burst: bool, on_done):
    if ctx.config.queue.backend == "procrastinate":
        from processor.daemon.procrastinate_queue import ProcrastinateQueue

        return ProcrastinateQueue(ctx, workers, burst, on_done)
    return LocalQueue(ctx, workers, burst, on_done)
