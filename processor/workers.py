"""The daemon's worker processes: a pool in which a worker's death affects only the task it had.

concurrent.futures.ProcessPoolExecutor treats the death of one worker (OOM kill, a segfault in a native
library) as the breakage of the whole pool: every pending future fails with BrokenProcessPool, including
those of the workers that are still alive and go on to finish and commit their runs. The daemon then
queued those runs again and a second process worked on a run that the first had already finished.

Here each worker slot is a thread of the daemon that owns one process and one pipe to it; the thread
hands the process one task at a time and waits for either its answer or its death (its sentinel). A
death fails that one task's future with WorkerDied and the slot starts a fresh process for its next
task; every other worker, and its task, carries on untouched.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from multiprocessing import get_context
from multiprocessing.connection import wait

log = logging.getLogger("rosterdrop.workers")


class WorkerDied(Exception):
    """The worker process running the task died before it answered (killed, crashed)."""


def _worker_main(conn, initializer, initargs) -> None:
    """A worker process: initialise once, then run one task at a time until the pipe closes."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args = task
        try:
            answer = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - sent back to the daemon, which decides
            answer = ("error", exc)
        try:
            conn.send(answer)
        except Exception as exc:  # noqa: BLE001 - an answer that does not pickle
            conn.send(("error", RuntimeError(f"the worker's answer could not be sent back ({type(exc).__name__})")))


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


class WorkerPool:
    """submit() / shutdown() like ProcessPoolExecutor's, with deaths confined to their own task.

    eager: start every worker process now rather than with its first task.
    """

    def __init__(self, max_workers: int, mp_context=None, initializer=None, initargs: tuple = (),
                 eager: bool = False) -> None:
        self._ctx = mp_context or get_context("spawn")
        self._initializer = initializer
        self._initargs = initargs
        self._eager = eager
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._procs: dict[int, object] = {}  # slot -> its live process
        self._closed = False
        # A slot thread lives as long as its process: PR_SET_PDEATHSIG (see daemon.workers.die_with_parent) fires
        # when the thread that started the worker ends, so the worker must not outlive its slot either.
        self._slots = [threading.Thread(target=self._serve, args=(i,), name=f"worker-slot-{i}", daemon=True)
                       for i in range(max_workers)]
        for t in self._slots:
            t.start()

    def submit(self, fn, *args) -> Future:
        if self._closed:
            raise RuntimeError("cannot submit to a pool that was shut down")
        future: Future = Future()
        self._tasks.put((future, fn, args))
        return future

    def processes(self) -> list:
        """The live worker processes (for a kill at stop time)."""
        with self._lock:
            return list(self._procs.values())

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """No new tasks; idle workers exit. Busy ones finish their task first (their futures still complete)."""
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._slots:
            self._tasks.put(None)
        if wait:
            for t in self._slots:
                t.join()

    # ------------------------------------------------------------ one slot

    def _spawn(self, slot: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, self._initializer, self._initargs),
                                 name=f"rosterdrop-worker-{slot}")
        proc.start()
        child.close()
        with self._lock:
            self._procs[slot] = proc
        return _Worker(proc, parent)

    def _forget(self, slot: int, worker: _Worker) -> None:
        worker.conn.close()
        worker.proc.join(timeout=5)
        with self._lock:
            if self._procs.get(slot) is worker.proc:
                del self._procs[slot]

    def _serve(self, slot: int) -> None:
        worker: _Worker | None = None
        try:
            if self._eager:
                worker = self._spawn(slot)
            while (item := self._tasks.get()) is not None:
                future, fn, args = item
                if not future.set_running_or_notify_cancel():
                    continue
                if worker is not None and not worker.proc.is_alive():  # died while idle, with no task
                    self._forget(slot, worker)
                    worker = None
                try:
                    worker = worker or self._spawn(slot)
                except Exception as exc:  # noqa: BLE001 - the task fails; the next one tries again
                    future.set_exception(exc)
                    continue
                try:
                    worker.conn.send((fn, args))
                    if worker.conn not in wait([worker.conn, worker.proc.sentinel]):
                        raise EOFError
                    kind, value = worker.conn.recv()
                except (EOFError, OSError):
                    self._forget(slot, worker)
                    dead, worker = worker, None
                    future.set_exception(WorkerDied(f"worker process {dead.proc.pid} died "
                                                    f"({_exit_text(dead.proc.exitcode)})"))
                    continue
                except Exception as exc:  # noqa: BLE001 - a task or an answer that does not pickle; the pipe is intact
                    future.set_exception(exc)
                    continue
                if kind == "ok":
                    future.set_result(value)
                else:
                    future.set_exception(value)
        finally:
            if worker is not None:
                try:
                    worker.conn.send(None)  # the worker exits on it
                except OSError:
                    pass
                self._forget(slot, worker)


class _Worker:
    def __init__(self, proc, conn) -> None:
        self.proc = proc
        self.conn = conn
