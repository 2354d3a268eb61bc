"""`rosterdrop serve` and `rosterdrop worker`: the intake doors, the queue, the workers and the scheduled
jobs around the pipeline.

The pipeline decides *what* happens to a drop; the daemon only decides *when*. One room per concern:

* doors.py: the built-in SFTP server, the watched folder and pulls; every drop is spooled and recorded
  (`received`) before anything else, then handed to the queue.
* local_queue.py (`[queue] backend = "local"`, the default, one host): an in-process FIFO per tenant in
  front of a pool of worker processes.
* procrastinate_queue.py (`[queue] backend = "procrastinate"`, PostgreSQL, any number of hosts): a
  Procrastinate job per busy tenant wakes a worker on any host; the runs table stays the queue of record
  (processor/queue.py).
* workers.py: the worker processes (each loads its own Context, processes one drop at a time).
* scheduled.py: pull, missing drop, retention, digest, outbox, webhooks, retry sweeps (APScheduler);
  with procrastinate each job runs once across hosts.
* daemon.py: Daemon.run(), the life of `serve`, top-down; signals, stop, live reload.

Crash safety: the apply is one transaction, so kill -9 at any moment loses no drop and applies none
twice. Unfinished runs are resumed in arrival order: at start, and with procrastinate also by the queue's
sweep (every 15 s, once across hosts), which re-runs the jobs of workers whose heartbeat stopped.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path

from processor.context import Context, UserError
from processor.daemon.daemon import Daemon
from processor.daemon.scheduled import (
    apply_retention,
    check_missing_drops,
    cron_trigger,
    queue_weekly_digests,
)

__all__ = ["Daemon", "apply_retention", "check_missing_drops", "cron_trigger", "first_start",
           "queue_weekly_digests", "serve", "work"]

log = logging.getLogger("rosterdrop.daemon")

DEMO_TENANT = "demo"


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


def work(home: Path, processes: int | None = None) -> int:
    """`rosterdrop worker`: worker processes only, until SIGTERM/SIGINT (current runs finish); the exit
    code. Any number of them, on any hosts, beside any number of `serve`s; they share only the store."""
    ctx = Context.load(home)
    if ctx.config.queue.backend != "procrastinate":
        raise UserError('`rosterdrop worker` needs [queue] backend = "procrastinate" (and a PostgreSQL store); '
                        "with the local backend `rosterdrop serve` runs the workers itself")
    if processes is not None and processes < 1:
        raise UserError(f"--processes must be at least 1 (got {processes})")
    code = Daemon(ctx, workers_only=True, workers=processes).run()
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
