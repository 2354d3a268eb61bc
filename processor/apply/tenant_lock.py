"""One run at a time per tenant, across processes, with a lock that dies with its holder.

A row naming its owner (`hostname:pid`, judged alive by kill(pid, 0)) outlived the holder whenever the
pid came back: after a container restart the new PID namespace hands out the same small pids, the dead
worker's lock looked alive, and the tenant was blocked for good. The exclusion now comes from something
the operating system or the database ends with the holder's process:

* PostgreSQL: a session advisory lock (`pg_try_advisory_lock` on a 64-bit hash of the tenant) taken on a
  connection of its own that is kept for the whole run; the server releases it when that session ends,
  however the process ended. Every host sharing the store sees it.
* SQLite: `flock` on a per-tenant file next to the database file; the kernel releases it when the last
  descriptor of the holder closes, which a dying process always does. SQLite serves one host, so a
  host-local lock is enough.

The `tenant_locks` row is still written while the lock is held, as information (which run holds the
tenant, since when); a row left by a dead holder is simply replaced by the next holder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, insert, text

from processor.apply.store import locks
from processor.context import UserError

POLL_SECONDS = 0.1
_SAFE_TENANT = re.compile(r"[a-z0-9_-]{1,64}")


def lock_key(tenant: str) -> int:
    """The tenant's advisory-lock key: a signed 64-bit hash, stable across processes and hosts."""
    digest = hashlib.sha256(b"rosterdrop tenant lock\0" + tenant.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_file(engine: Engine, tenant: str) -> Path:
    """Where a SQLite store's tenant lock lives: beside the database file, shared by every process using it."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).resolve().parent / (Path(database).name + ".locks")
    else:  # an in-memory store lives in one process; a private folder is enough
        folder = Path(tempfile.gettempdir()) / f"rosterdrop-locks-{os.getuid()}"
    name = tenant if _SAFE_TENANT.fullmatch(tenant) else hashlib.sha256(tenant.encode()).hexdigest()
    return folder / f"{name}.lock"


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        if self.fd is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Never unlinked: a holder of an unlinked file would not exclude the next opener.
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


class _AdvisoryLock:
    def __init__(self, engine: Engine, tenant: str) -> None:
        self.engine = engine
        self.key = lock_key(tenant)
        self.conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self.conn is None:
            # Autocommit: the session must not sit idle in a transaction for the length of a run.
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return bool(self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())

    def release(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except Exception:  # noqa: BLE001 - a broken session: dropping it releases the lock on the server
            self.conn.invalidate()
        finally:
            self.conn.close()
            self.conn = None


def _holder(engine: Engine, tenant: str) -> _FileLock | _AdvisoryLock:
    if engine.dialect.name == "postgresql":
        return _AdvisoryLock(engine, tenant)
    return _FileLock(lock_file(engine, tenant))


@contextmanager
def tenant_lock(engine: Engine, tenant: str, run_id: str, timeout: float = 600.0):
    """Hold the tenant for one run; UserError if another run holds it longer than timeout seconds."""
    holder = _holder(engine, tenant)
    deadline = time.monotonic() + timeout
    try:
        while not holder.try_acquire():
            if time.monotonic() > deadline:
                raise UserError(f"tenant {tenant} is busy with another run; try again later")
            time.sleep(POLL_SECONDS)
        with engine.begin() as conn:
            # Whatever row is there belongs to a holder that is gone: we hold the lock now.
            conn.execute(delete(locks).where(locks.c.tenant == tenant))
            conn.execute(insert(locks).values(tenant=tenant, run_id=run_id,
                                              owner=f"{socket.gethostname()}:{os.getpid()}",
                                              acquired_at=time.time()))
        try:
            yield
        finally:
            with engine.begin() as conn:
                conn.execute(delete(locks).where(locks.c.tenant == tenant, locks.c.run_id == run_id))
    finally:
        holder.release()
