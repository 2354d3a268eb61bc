"""The workers: processes that each load their own Context and process one drop at a time.

Either backend's workers run process_drop() in a process of their own (pandas work would starve the
doors' threads): the local queue hands drops to a WorkerPool (processor/workers.py) of these; the
procrastinate queue runs a Procrastinate worker in each (processor/queue.py). Workers ignore SIGINT and
SIGTERM (the daemon decides when a run stops) and die with the daemon (PR_SET_PDEATHSIG), so an orphaned
worker cannot finish a run that a restarted daemon resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from multiprocessing import get_context
from pathlib import Path

from sqlalchemy.exc import OperationalError

from processor.config import Config
from processor.context import Context
from processor.failures import failure_reason, log_failure
from processor.intake.spool import Drop
from processor.pipeline import process_drop
from processor.workers import WorkerPool

log = logging.getLogger("rosterdrop.daemon")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"  # the CLI's format (cli.setup_logging)
QUIET_LIBRARIES = ("apscheduler", "paramiko", "watchdog", "procrastinate")


_WORKER_CTX: Context | None = None
PR_SET_PDEATHSIG = 1


class RunFailed(Exception):
    """A run raised in a worker. It carries no exception message: those may quote roster rows."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason, transient)
        self.reason = reason
        self.transient = transient


def start_pool(ctx: Context, workers: int, eager: bool) -> WorkerPool:
    """The local queue's pool. spawn, not fork: the daemon has threads (SFTP, watcher, scheduler) and a fork
    copies their locks. eager: started now, so the first drop does not wait for imports."""
    return WorkerPool(workers, mp_context=get_context("spawn"), initializer=worker_init,
                      initargs=(str(ctx.home), ctx.config, os.getpid(), logging.getLogger().getEffectiveLevel()),
                      eager=eager)


def kill(processes: list) -> None:
    for p in processes:
        try:
            p.kill()  # workers ignore SIGTERM (see worker_init); their transactions roll back
        except Exception:  # noqa: BLE001 - already gone
            pass


def worker_init(home: str, config: Config, parent_pid: int, log_level: int) -> None:
    """Runs once in each worker process."""
    global _WORKER_CTX
    # The daemon decides when a run stops: Ctrl-C reaches the whole process group and systemd signals
    # the whole cgroup, so workers ignore both and finish (or are killed by the daemon).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent_pid)
    logging.basicConfig(level=log_level, stream=sys.stderr, format=LOG_FORMAT)
    from processor.service import apply_log_format

    apply_log_format()  # the daemon's --log-format, passed on in the environment
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    _WORKER_CTX = Context(home=Path(home), config=config)
    _WORKER_CTX.engine  # noqa: B018 - connected now, not when the first drop is waiting


def die_with_parent(parent_pid: int) -> None:
    # A worker must not outlive the daemon: after a kill -9 of the daemon an orphaned worker would finish
    # its run while the restarted daemon resumes the same run. On Linux the kernel kills us with it.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux
    if os.getppid() != parent_pid:
        os._exit(1)  # the daemon died before the line above took effect


def process_in_worker(drop: Drop) -> str:
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
        log_failure(drop, exc)  # the frames, never the message (it may quote roster rows)
        raise RunFailed(failure_reason(exc), transient=isinstance(exc, OperationalError)) from None


def run_queue_worker(home: str, config: Config, parent_pid: int, log_level: int, wait: bool) -> None:
    """A procrastinate backend's worker process: one Procrastinate worker, one job at a time. SIGTERM lets
    the current run finish (systemd signals the whole cgroup; the daemon sends it at stop); SIGINT is the
    daemon's to act on."""
    from processor.queue import run_worker

    worker_init(home, config, parent_pid, log_level)
    run_worker(_WORKER_CTX, wait=wait)
