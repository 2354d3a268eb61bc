"""Scale-out (issue 17): several `rosterdrop worker` processes on one PostgreSQL, drops as Procrastinate jobs.

    .venv/bin/python bench/scaleout_bench.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/DB \
        [--kill-trials 20] [--drops 120] [--workers 1,2,4] [--overhead-drops 60] [--blob-mib 64] [--only A,B]

The database is emptied first (use a scratch database). Sections (--only picks some):
  blobs       a drop's bytes into and out of the store: 1 MiB bytea rows (processor/intake/blobs.py) against
              PostgreSQL large objects (lo_put/lo_get, 1 MiB at a time), MiB/s and peak memory
  kill        kill -9 trials: each trial drops a new version for a tenant, kills the worker process in the
              middle of its apply (rows written, transaction open), alternately the process alone and the
              whole worker host; then counts drops lost, applied twice (a second completed pass of the
              stages, audit rows beyond the reference, more than one report email) and rosters that differ
              from the last drop
  throughput  for 1, 2 and 4 worker processes: hand-off latency (--paced drops committed one every --pace s,
              below capacity: drop committed -> its run started in a worker), median and p95; then drops/min
              (--drops drops of distinct tenants committed at once: first commit -> last run done); the
              most connections the store had meanwhile, and the worker's CPU s per drop
  overhead    the same drops, all waiting, through the local backend (`rosterdrop serve --burst`, one
              worker) and the procrastinate backend (`rosterdrop worker --processes 1`): the time the one
              worker spends between drops (taking the next one up), and CPU per drop
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import machine_line  # noqa: E402

from tests.scaleout import Cluster, drop_files, overlaps, percentile  # noqa: E402

MIB = 1 << 20


# ---------------------------------------------------------------- blobs


def bench_blobs(url: str, mib: int, tmp: Path) -> None:
    from sqlalchemy import insert, text

    from processor.apply.store import open_store, runs
    from processor.intake.blobs import fetch_drop_bytes, put_drop_bytes
    from processor.intake.spool import sha256_of
    from tests.conftest import reset_store

    reset_store(url)
    big = tmp / "big.zip"
    with big.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    sha = sha256_of(big)
    engine = open_store(url, create=False)
    rows = []
    for trial in range(3):
        run_id = f"blob{trial}"
        tracemalloc.start()
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert(runs).values(run_id=run_id, tenant="t", status="applied", source="sftp",
                                             received_at="2026-12-02T00:00:00+00:00", sha256=sha))
            put_drop_bytes(conn, "t", run_id, big)
        put_s = time.perf_counter() - t0
        put_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        fetch_drop_bytes(engine, run_id, tmp / "out.zip")
        fetch_s = time.perf_counter() - t0
        fetch_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

        t0 = time.perf_counter()
        with engine.begin() as conn, big.open("rb") as f:
            oid = conn.execute(text("SELECT lo_create(0)")).scalar_one()
            offset = 0
            while chunk := f.read(MIB):
                conn.execute(text("SELECT lo_put(:oid, :off, :data)"), {"oid": oid, "off": offset, "data": chunk})
                offset += len(chunk)
        lo_put_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with engine.connect() as conn, open(tmp / "lo.zip", "wb") as out:
            offset = 0
            while True:
                data = conn.execute(text("SELECT lo_get(:oid, :off, :n)"), {"oid": oid, "off": offset, "n": MIB}
                                    ).scalar_one()
                if not data:
                    break
                out.write(data)
                offset += len(data)
        lo_get_s = time.perf_counter() - t0
        with engine.begin() as conn:
            conn.execute(text("SELECT lo_unlink(:oid)"), {"oid": oid})
        rows.append((put_s, fetch_s, lo_put_s, lo_get_s, put_peak, fetch_peak))
    engine.dispose()
    print(f"\n## blobs: one {mib} MiB drop into and out of the store (3 trials, min / median)")

    def fig(i: int) -> str:
        vals = [r[i] for r in rows]
        return f"{mib / max(vals):.0f}-{mib / min(vals):.0f} MiB/s (median {mib / statistics.median(vals):.0f})"

    print(f"  bytea 1 MiB rows   put {fig(0)}, fetch {fig(1)}; Python peak put {max(r[4] for r in rows) / MIB:.1f} MiB, "
          f"fetch {max(r[5] for r in rows) / MIB:.1f} MiB")
    print(f"  large object       put {fig(2)}, fetch {fig(3)}")


# ---------------------------------------------------------------- kill -9 trials


def bench_kill(url: str, trials: int, tmp: Path) -> None:
    tenants = [f"k{i}" for i in range(4)]
    cluster = Cluster(tmp / "kill", url, tenants)
    cluster.reset_store()
    reference = reference_audit(tmp / "kill-ref")
    workers = [cluster.start_worker("host-a", processes=1), cluster.start_worker("host-b", processes=1)]
    lost = twice = mismatched = unfinished = 0
    recover = []
    version: dict[str, int] = {t: 0 for t in tenants}
    try:
        for t in tenants:  # a first load each, so that every trial's drop is an update
            cluster.submit(t, drop_files(0))
        cluster.wait_final(list(cluster.committed), 120)
        for trial in range(trials):
            tenant = tenants[trial % len(tenants)]
            version[tenant] += 1
            (cluster.control / f"hold.{tenant}").touch()
            run_id = cluster.submit(tenant, drop_files(version[tenant]))
            holding = cluster.wait_trace(lambda r, run_id=run_id: r["ev"] == "holding" and r["run"] == run_id, 60)
            host_kill = trial % 2 == 1
            killed_at = time.time()
            if not holding:
                print(f"  trial {trial + 1}: the drop never reached its apply", flush=True)
            elif host_kill:
                victim = next(w for w in workers if w.host == holding[0]["host"])
                cluster.kill_host(victim)
                workers.remove(victim)
                workers.append(cluster.start_worker(victim.host, processes=1))  # the host comes back
            else:
                cluster.kill_pid(holding[0]["pid"])
            status = cluster.wait_final([run_id], 180)[run_id]
            cluster.settle([run_id])
            ends = [r for r in cluster.trace() if r["ev"] == "end" and r["run"] == run_id]
            if status not in ("applied",):
                lost += status not in FINAL_OK
                unfinished += status != "applied"
            if len(ends) > 1 or cluster.counts("audit", run_id) != reference \
                    or cluster.counts("outbox", run_id, kind="run_report") > 1:
                twice += 1
            people = cluster.people(tenant)
            if people.get("u2") != f"Jane v{version[tenant]}" or people.get("u1") != f"Tara v{version[tenant]}":
                mismatched += 1
            recover.append(ends[-1]["t"] - killed_at if ends else float("nan"))
            print(f"  trial {trial + 1:2d}: {'host' if host_kill else 'process'} killed mid-apply -> {status}, "
                  f"stages completed {len(ends)}x, audit rows {cluster.counts('audit', run_id)} (reference "
                  f"{reference}), recovered in {recover[-1]:.1f} s", flush=True)
        ov = overlaps(cluster.trace())
    finally:
        cluster.stop_all()
    print(f"\n## kill -9 mid-apply: {trials} trials (half the worker process, half the whole host; 2 hosts)")
    print(f"  lost {lost}, applied twice {twice}, roster mismatches {mismatched}, not applied {unfinished}, "
          f"tenant overlaps {len(ov)}")
    ok = [r for r in recover if r == r]
    if ok:
        print(f"  recovery (kill -> run applied by another worker): median {statistics.median(ok):.1f} s, "
              f"max {max(ok):.1f} s (stalled_after_seconds = {cluster.stalled_after:g})")


FINAL_OK = {"applied", "held", "rejected", "superseded", "failed"}


def reference_audit(tmp: Path) -> int:
    """Audit rows of an update drop processed once, in a SQLite home of its own."""
    from processor.context import Context
    from processor.home import init_home
    from processor.pipeline import process_path
    from tests.bundles import make_bundle
    from tests.conftest import write_config

    home = tmp / "home"
    init_home(home, ["ref"])
    write_config(home, {"ref": {}})
    ctx = Context.load(home)
    process_path(ctx, make_bundle(tmp, drop_files(0), name="v0"), "ref")
    result = process_path(ctx, make_bundle(tmp, drop_files(1), name="v1"), "ref")
    from sqlalchemy import func, select

    from processor.apply.store import audit

    with ctx.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(audit).where(audit.c.run_id == result.run_id)).scalar_one()
    ctx.engine.dispose()
    return n


# ---------------------------------------------------------------- throughput and hand-off latency


def bench_throughput(url: str, drops: int, worker_counts: list[int], paced: int, pace: float, tmp: Path) -> None:
    print(f"\n## throughput ({drops} drops of {drops} tenants committed at once) and hand-off latency ({paced} "
          f"drops committed one every {pace:g} s: drop committed -> its run started in a worker)")
    print("  worker processes | drops/min | hand-off median | p95     | max connections | worker CPU s/drop | "
          "PostgreSQL CPU/drop (door's and workers' backends)")
    for n in worker_counts:
        tenants = [f"t{i}" for i in range(drops)]
        cluster = Cluster(tmp / f"tp{n}", url, tenants + [f"p{i}" for i in range(paced)])
        cluster.reset_store()
        worker = cluster.start_worker("host-a", processes=n)
        peak = [0]
        try:
            wait_listening(cluster, n)

            for i in range(paced):  # below capacity: what a drop waits for a worker that is free
                cluster.submit(f"p{i}", drop_files(0))
                peak[0] = max(peak[0], cluster.connections())
                time.sleep(pace)
            cluster.wait_final(list(cluster.committed), 300)
            started = first_calls(cluster.trace())
            hand = [started[r] - t for r, t in cluster.committed.items() if r in started]
            cpu0, pg0 = worker_cpu(worker.proc.pid), cluster.backend_cpu()
            t0 = time.time()
            run_ids = [cluster.submit(t, drop_files(0)) for t in tenants]
            while True:
                st = cluster.statuses(run_ids)
                peak[0] = max(peak[0], cluster.connections())
                if all(s in FINAL_OK for s in st.values()) or time.time() - t0 > 900:
                    break
                time.sleep(0.5)
            cluster.settle(run_ids)
            trace = cluster.trace()
            t_end = max(r["t"] for r in trace if r["ev"] == "return" and r["run"] in set(run_ids))
            cpu = worker_cpu(worker.proc.pid) - cpu0
            pg = cluster.backend_cpu() - pg0
            sizes = cluster.table_sizes("procrastinate_jobs", "procrastinate_events", "drop_blob_chunks", "runs")
        finally:
            cluster.stop_all()
        done = sum(1 for s in st.values() if s == "applied")
        print(f"  {n:16d} | {done / ((t_end - t0) / 60):9.0f} | {percentile(hand, 0.5) * 1000:12.0f} ms | "
              f"{percentile(hand, 0.95) * 1000:4.0f} ms | {peak[0]:15d} | {cpu / max(done, 1):.3f}"
              f" | {pg / max(done, 1) * 1000:.0f} ms   ({done}/{drops} applied)", flush=True)
    print("  store after the last run: " + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sizes.items()))


def first_calls(trace: list[dict]) -> dict[str, float]:
    started: dict[str, float] = {}
    for r in sorted(trace, key=lambda r: r["t"]):
        if r["ev"] == "call":
            started.setdefault(r["run"], r["t"])
    return started


def wait_listening(cluster: Cluster, processes: int, timeout: float = 60) -> None:
    """Until the worker processes are registered with Procrastinate (their heartbeat rows)."""
    from sqlalchemy import text

    deadline = time.time() + timeout
    while time.time() < deadline:
        with cluster.ctx.engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one() >= processes:
                return
        time.sleep(0.2)


def worker_cpu(pid: int) -> float:
    """user+sys CPU s of a process tree still alive (the worker and its children), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    seen = set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in os.listdir(f"/proc/{p}/task"):
                children = open(f"/proc/{p}/task/{task}/children").read().split()
                pids += [int(c) for c in children]
        except (OSError, IndexError):
            continue
    return total


# ---------------------------------------------------------------- coordination overhead


def bench_overhead(url: str, drops: int, tmp: Path) -> None:
    """Per drop, the time a single worker spends outside process_drop (taking the next drop up, the
    queue's bookkeeping): the span from its first drop taken to its last one done, less the time inside."""
    from tests.bundles import make_bundle

    tenants = [f"o{i}" for i in range(drops)]
    figures = {}
    for backend in ("local", "procrastinate"):
        cluster = Cluster(tmp / f"ov-{backend}", url, tenants, backend=backend,
                          extra_config="[daemon]\nworkers = 1\nwatch_stable_seconds = 0.1\n")
        cluster.reset_store()
        try:
            if backend == "local":
                home = cluster.home("host-a")
                for i, t in enumerate(tenants):  # the same drops, waiting in the inboxes for `serve --burst`
                    make_bundle(home / "inbox" / t, drop_files(0), name=f"drop{i}")
                out = tmp / "measure-local.json"
                subprocess.run([sys.executable, str(ROOT / "bench" / "measure.py"), str(out), "--",
                                sys.executable, "-m", "processor", "--home", str(home), "serve", "--burst"],
                               cwd=ROOT, env=cluster.env("host-a"), capture_output=True)
                cpu = json.loads(out.read_text())["cpu"]
            else:
                worker = cluster.start_worker("host-a", processes=1)
                wait_listening(cluster, 1)
                cpu0 = worker_cpu(worker.proc.pid)
                run_ids = [cluster.submit(t, drop_files(0)) for t in tenants]  # all waiting before the first
                cluster.wait_final(run_ids, 900)
                cluster.settle(run_ids)
                cpu = worker_cpu(worker.proc.pid) - cpu0
            trace = cluster.trace()
            st = cluster.statuses()
        finally:
            cluster.stop_all()
        calls = {r["run"]: r["t"] for r in trace if r["ev"] == "call"}
        rets = {r["run"]: r["t"] for r in trace if r["ev"] == "return"}
        busy = sum(rets[r] - calls[r] for r in rets if r in calls)
        span = max(rets.values()) - min(calls.values())
        done = sum(1 for s in st.values() if s == "applied")
        figures[backend] = ((span - busy) / max(len(rets) - 1, 1), busy / max(len(rets), 1), cpu / max(done, 1), done)
    print(f"\n## coordination overhead: the same {drops} drops of {drops} tenants, one worker process, all waiting")
    for backend, (gap, inside, cpu, done) in figures.items():
        print(f"  {backend:13s} between drops {gap * 1000:6.1f} ms, inside process_drop {inside * 1000:6.0f} ms, "
              f"CPU {cpu * 1000:5.0f} ms/drop ({done}/{drops} applied)")
    print(f"  overhead of the procrastinate backend: {(figures['procrastinate'][0] - figures['local'][0]) * 1000:+.1f}"
          " ms/drop between drops (CPU: the local figure is the whole `serve --burst`, doors and start-up included;"
          " the procrastinate one the worker's only)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-url", required=True)
    ap.add_argument("--kill-trials", type=int, default=20)
    ap.add_argument("--drops", type=int, default=120)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--overhead-drops", type=int, default=60)
    ap.add_argument("--paced", type=int, default=30, help="drops for the hand-off latency")
    ap.add_argument("--pace", type=float, default=1.0, help="seconds between paced drops")
    ap.add_argument("--blob-mib", type=int, default=64)
    ap.add_argument("--only", default="blobs,kill,throughput,overhead")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    only = set(args.only.split(","))
    os.environ["ROSTERDROP_TEST_PG_URL"] = args.pg_url
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="rd-scaleout-"))
    print(machine_line(("procrastinate", "sqlalchemy", "psycopg", "pandas")))
    try:
        if "blobs" in only:
            bench_blobs(args.pg_url, args.blob_mib, tmp)
        if "kill" in only:
            bench_kill(args.pg_url, args.kill_trials, tmp)
        if "throughput" in only:
            bench_throughput(args.pg_url, args.drops, [int(n) for n in args.workers.split(",")], args.paced,
                             args.pace, tmp)
        if "overhead" in only:
            bench_overhead(args.pg_url, args.overhead_drops, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nbench CPU (this process): {sum(resource.getrusage(resource.RUSAGE_SELF)[:2]):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
