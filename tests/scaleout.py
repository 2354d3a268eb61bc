"""The scale-out harness shared by tests/test_scaleout.py and bench/scaleout_bench.py.

A Cluster is one PostgreSQL store, one shared configuration and any number of "hosts": a host is a home
folder of its own (its own spool) running `rosterdrop worker` as a real OS process, optionally inside a
network namespace. Drops are recorded by a door in this process (the procrastinate backend's door path:
the drop's run, its bytes and the tenant's wake-up job in one transaction), so a worker on any host has
only the store to go on.

Every worker process loads HOOK (a sitecustomize on its PYTHONPATH) which appends to one trace file:
  call/return  around pipeline.process_drop (a worker took the drop up / gave it back)
  start/end    around pipeline._process (inside the tenant's lock: the stages that do the work)
and, driven by files in the control folder, lets a test stop a worker in the middle of its apply (the
rows written, the transaction open) or make a tenant's drop kill every worker that applies it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINAL = {"applied", "held", "rejected", "duplicate", "superseded", "discarded", "failed", "dry_run", "reverted"}

HOOK = r'''
import json, os, signal, time
_trace = os.environ.get("RD_TRACE")
_ctl = os.environ.get("RD_CONTROL")
if _trace:
    import processor.pipeline as _p
    _host = os.environ.get("RD_HOST", "host")

    def _log(**rec):
        rec.update(pid=os.getpid(), host=_host, t=time.time())
        fd = os.open(_trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(rec) + "\n").encode())  # one write: whole lines, never interleaved
        finally:
            os.close(fd)

    _process_drop = _p.process_drop
    def process_drop(ctx, drop, *a, **kw):
        _log(ev="call", run=drop.run_id, tenant=drop.tenant)
        out = _process_drop(ctx, drop, *a, **kw)
        _log(ev="return", run=drop.run_id, tenant=drop.tenant, status=str(out.status))
        return out
    _p.process_drop = process_drop

    _inner = _p._process
    def _process(ctx, drop, *a, **kw):
        _log(ev="start", run=drop.run_id, tenant=drop.tenant)
        out = _inner(ctx, drop, *a, **kw)
        _log(ev="end", run=drop.run_id, tenant=drop.tenant, status=str(out.status))
        return out
    _p._process = _process

    _apply = _p.apply_changes
    def apply_changes(conn, tenant, run_id, *a, **kw):
        out = _apply(conn, tenant, run_id, *a, **kw)  # the rows are written; the transaction is still open
        if _ctl:
            if os.path.exists(os.path.join(_ctl, "poison." + tenant)):
                _log(ev="poisoned", run=run_id, tenant=tenant)
                os.kill(os.getpid(), signal.SIGKILL)  # a drop that kills whoever applies it (OOM, segfault)
            if os.path.exists(os.path.join(_ctl, "fail." + tenant)):
                raise RuntimeError("injected failure inside the apply")  # a drop that always fails
            try:
                os.unlink(os.path.join(_ctl, "hold." + tenant))  # only the first attempt is held
            except FileNotFoundError:
                pass
            else:
                _log(ev="holding", run=run_id, tenant=tenant)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:  # until the test kills this process
                    time.sleep(0.05)
        return out
    _p.apply_changes = apply_changes
'''

USERS_HEAD = ("sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,"
              "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n")


def drop_files(version: int) -> dict[str, str]:
    """A small district whose version-th drop renames one student and one teacher: each version differs
    from the one before, so every drop applied changes something and the roster says which came last."""
    from tests.bundles import CLEAN

    users = CLEAN["users.csv"].splitlines()
    users[2] = users[2].replace(",Jane,", f",Jane v{version},")
    users[1] = users[1].replace(",Tara,", f",Tara v{version},")
    return {**CLEAN, "users.csv": "\n".join(users) + "\n"}


@dataclass
class Worker:
    host: str
    proc: subprocess.Popen
    log: Path

    def kill_host(self) -> None:
        """kill -9 of the whole host: the worker and every process it started."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_host()
            except ProcessLookupError:
                pass


@dataclass
class Cluster:
    tmp: Path
    store_url: str
    tenants: list[str]
    backend: str = "procrastinate"
    stalled_after: float = 15
    extra_config: str = ""
    workers: list[Worker] = field(default_factory=list)
    committed: dict[str, float] = field(default_factory=dict)  # run id -> when its drop was committed

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.trace_path = self.tmp / "trace.jsonl"
        self.control = self.tmp / "control"
        self.control.mkdir(exist_ok=True)
        hook = self.tmp / "hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(HOOK)
        self.pythonpath = os.pathsep.join([str(hook), str(ROOT)])
        self.door_home = self.home("door")
        self._ctx = None
        self._n = 0

    # ------------------------------------------------------------ homes and configuration

    def config_text(self, store_url: str | None = None) -> str:
        lines = ["[store]", f'url = "{store_url or self.store_url}"', "",
                 "[sftp]", "enabled = false", "",
                 "[web]", "enabled = false", "",
                 "[queue]", f'backend = "{self.backend}"', f"stalled_after_seconds = {self.stalled_after}", ""]
        if self.extra_config:
            lines.append(self.extra_config)
        for t in self.tenants:
            lines += [f"[tenants.{t}]", f'name = "District {t}"', f'report_to = ["it@{t}.example"]', ""]
        return "\n".join(lines)

    def home(self, name: str, store_url: str | None = None) -> Path:
        """A host's home: its own folders, the shared configuration (the same file on every host)."""
        home = self.tmp / name
        (home / "inbox").mkdir(parents=True, exist_ok=True)
        for sub in ("spool", "archive", "reports", "outbox", "logs"):
            (home / sub).mkdir(exist_ok=True)
        (home / "rosterdrop.toml").write_text(self.config_text(store_url), encoding="utf-8")
        return home

    @property
    def ctx(self):
        if self._ctx is None:
            from processor.context import Context

            self._ctx = Context.load(self.door_home)
        return self._ctx

    def reset_store(self) -> None:
        """An empty scratch database: our tables at head, and Procrastinate's schema (`db upgrade`)."""
        from tests.conftest import reset_store

        self.empty_database()
        reset_store(self.store_url)
        if self.backend == "procrastinate":
            self.prepare_queue()

    def empty_database(self) -> None:
        """Nothing left in the scratch database, Procrastinate's tables, types and functions included (they
        are not in our metadata, and a database with tables is not "empty" to the other tests' reset)."""
        from sqlalchemy import create_engine

        engine = create_engine(self.store_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()

    def prepare_queue(self) -> None:
        """The queue's own tables (Procrastinate's schema), as `rosterdrop db upgrade` makes them."""
        subprocess.run([sys.executable, "-m", "processor", "--home", str(self.door_home), "db", "upgrade"],
                       cwd=ROOT, env=self.env(), check=True, capture_output=True, text=True)

    def env(self, host: str = "door", **extra: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": self.pythonpath, "RD_TRACE": str(self.trace_path),
               "RD_CONTROL": str(self.control), "RD_HOST": host, **extra}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    # ------------------------------------------------------------ workers

    def start_worker(self, host: str, processes: int = 1, netns: str | None = None,
                     store_url: str | None = None) -> Worker:
        home = self.home(host, store_url)
        log = self.tmp / f"{host}.log"
        cmd = [sys.executable, "-m", "processor", "--home", str(home), "worker", "--processes", str(processes)]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(host), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        worker = Worker(host, proc, log)
        self.workers.append(worker)
        return worker

    def note_killed(self, pids) -> None:
        """Written by the harness when it kills processes: their unfinished intervals end here."""
        now = time.time()
        with self.trace_path.open("a") as f:
            for pid in pids:
                f.write(json.dumps({"ev": "killed", "pid": pid, "host": "harness", "t": now}) + "\n")

    def kill_pid(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.note_killed([pid])

    def kill_host(self, worker: Worker) -> None:
        worker.kill_host()
        self.note_killed({r["pid"] for r in self.trace() if r.get("host") == worker.host})

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()
        if self._ctx is not None and "engine" in self._ctx.__dict__:
            self._ctx.engine.dispose()

    # ------------------------------------------------------------ drops

    def submit(self, tenant: str, files: dict[str, str]) -> str:
        """A door records one drop (its run, bytes and wake-up, in one transaction); its run id."""
        from processor.pipeline import receive
        from tests.bundles import make_bundle

        self._n += 1
        path = make_bundle(self.tmp / "drops" / tenant, files, as_zip=True, name=f"drop{self._n}")
        drop = receive(self.ctx, path, tenant, "sftp", move=True)  # what every door calls
        self.committed[drop.run_id] = time.time()
        return drop.run_id

    # ------------------------------------------------------------ what happened

    def statuses(self, run_ids=None) -> dict[str, str]:
        from sqlalchemy import select

        from processor.apply.store import runs

        q = select(runs.c.run_id, runs.c.status)
        if run_ids is not None:
            q = q.where(runs.c.run_id.in_(list(run_ids)))
        with self.ctx.engine.connect() as conn:
            return dict(conn.execute(q).all())

    def wait_final(self, run_ids, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        run_ids = list(run_ids)
        many = len(run_ids) > 50
        while True:
            if many and self.unfinished() and time.monotonic() < deadline:
                time.sleep(2)  # one count, not thousands of ids, while the queue drains
                continue
            st = self.statuses(run_ids)
            if all(st.get(r) in FINAL for r in run_ids) or time.monotonic() > deadline:
                return st
            time.sleep(0.2)

    def settle(self, run_ids, timeout: float = 15) -> None:
        """Until the worker that finished each run has written its `return` record: a run's status is
        committed inside process_drop, a moment before the trace hears of it."""
        want = set(run_ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if want <= {r["run"] for r in self.trace() if r["ev"] == "return"}:
                return
            time.sleep(0.05)

    def unfinished(self) -> int:
        from sqlalchemy import func, select

        from processor.apply.store import runs

        with self.ctx.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(runs).where(
                runs.c.status.in_(("received", "processing")))).scalar_one()

    def wait_trace(self, predicate, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.trace() if predicate(r)]
            if found:
                return found
            time.sleep(0.05)
        return []

    def trace(self) -> list[dict]:
        if not self.trace_path.exists():
            return []
        return [json.loads(line) for line in self.trace_path.read_text().splitlines() if line.strip()]

    def connections(self) -> int:
        """Connections to the store's database right now (every host's, and this door's)."""
        from sqlalchemy import text

        with self.ctx.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                                ).scalar_one()

    def backend_cpu(self) -> float:
        """CPU s of the PostgreSQL backends now connected to the store's database (same machine only:
        read from /proc; backends of connections already closed are not counted)."""
        from sqlalchemy import text

        with self.ctx.engine.connect() as conn:
            pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND pid <> pg_backend_pid()")).scalars().all()
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def table_sizes(self, *names: str) -> dict[str, int]:
        from sqlalchemy import text

        with self.ctx.engine.connect() as conn:
            return {n: conn.execute(text("SELECT coalesce(pg_total_relation_size(to_regclass(:n)), 0)"),
                                    {"n": n}).scalar_one() for n in names}

    def counts(self, table: str, run_id: str, **where) -> int:
        from sqlalchemy import func, select

        from processor.apply import store

        t = {"audit": store.audit, "outbox": store.outbox}[table]
        q = select(func.count()).select_from(t).where(t.c.run_id == run_id)
        for k, v in where.items():
            q = q.where(t.c[k] == v)
        with self.ctx.engine.connect() as conn:
            return conn.execute(q).scalar_one()

    def people(self, tenant: str) -> dict[str, str]:
        from processor.apply.export import export_roster

        return {p["sourced_id"]: p["given_name"] for p in export_roster(self.ctx.engine, tenant)["people"]}


def overlaps(trace: list[dict], begin: str = "call", end: str = "return") -> list[tuple[str, dict, dict]]:
    """Pairs of intervals (begin..end) of one tenant that overlap in time. An interval without an end is a
    killed worker's: it ends at the `killed` record the harness wrote for that process, or never."""
    killed_at: dict[int, float] = {}
    for r in trace:  # the first time the harness killed it (a host's later kill names its dead pids again)
        if r["ev"] == "killed":
            killed_at[r["pid"]] = min(r["t"], killed_at.get(r["pid"], r["t"]))
    open_: dict[tuple[int, str], dict] = {}
    spans: dict[str, list[tuple[float, float, dict]]] = defaultdict(list)
    for rec in sorted(trace, key=lambda r: r["t"]):
        key = (rec["pid"], rec.get("run"))
        if rec["ev"] == begin:
            open_[key] = rec
        elif rec["ev"] == end and key in open_:
            first = open_.pop(key)
            spans[rec["tenant"]].append((first["t"], rec["t"], first))
    for (pid, _), first in open_.items():
        spans[first["tenant"]].append((first["t"], killed_at.get(pid, float("inf")), first))
    out = []
    for tenant, items in spans.items():
        items.sort(key=lambda s: s[0])
        latest_end, latest = float("-inf"), None
        for start, stop, rec in items:
            if start < latest_end:
                out.append((tenant, latest, rec))
            if stop > latest_end:
                latest_end, latest = stop, rec
    return out


def order_kept(trace: list[dict], submitted: dict[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """Tenants whose runs did their work (`end`) in another order than their drops were committed."""
    done: dict[str, list[str]] = defaultdict(list)
    for rec in sorted(trace, key=lambda r: r["t"]):
        if rec["ev"] == "end" and rec["run"] not in done[rec["tenant"]]:
            done[rec["tenant"]].append(rec["run"])
    return {t: (runs, done[t]) for t, runs in submitted.items() if done[t] != runs}


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)
