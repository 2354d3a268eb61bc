"""Worker death: kill -9 of one worker while another tenant's run is in flight, repeated.

    .venv/bin/python bench/worker_kill_bench.py [--trials 20] [--store-url URL] [--keep DIR]

One real `rosterdrop serve` (2 workers, watched inboxes) on a fresh home. Each trial uses two new tenants:
the same small district (sample_drops/clean) is dropped into both inboxes; a hook (a sitecustomize on the
daemon's PYTHONPATH) makes each worker pause 2 s in the read stage, holding its tenant's lock, and leaves
a marker naming its pid. Once both runs are in flight, the victim tenant's worker is killed with SIGKILL.
Both runs must then end `applied`: the victim's in a new worker, the survivor's in its own worker, once.

Prints per trial and in total:
  runs lost           a drop with no run, or whose run is not finished 90 s after the kill
  runs processed twice  a run applied twice (audit rows differ from a reference processing of the same
                      drop, or more than one report email), or the survivor's run started a second time
  runs with a wrong status  a finished run that is not `applied`
All three must be 0. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "sample_drops" / "clean"
FINAL = {"applied", "held", "rejected", "duplicate", "superseded", "discarded", "failed"}
HOOK = '''
import os, time
_markers = os.environ.get("RD_BENCH_MARKERS")
if _markers:
    import processor.pipeline as _p
    _read = _p.read_bundle
    def _slow_read(path, *args, **kwargs):
        tenant = path.parent.parent.name  # spool/<tenant>/<run-id>/<file>
        open(os.path.join(_markers, f"{tenant}.{os.getpid()}"), "w").close()
        time.sleep(float(os.environ.get("RD_BENCH_PAUSE", "2")))
        return _read(path, *args, **kwargs)
    _p.read_bundle = _slow_read
'''


def versions() -> str:
    from importlib.metadata import version

    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    libs = ", ".join(f"{n} {version(n)}" for n in ("sqlalchemy", "pandas", "pyarrow", "psycopg"))
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}\n"
            f"python {platform.python_version()}; {libs}")


def zip_sample(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")  # the watcher never takes a .part; renamed into place
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(SAMPLE.iterdir()):
            zf.write(f, f.name)
    tmp.replace(dest)
    return dest


def write_home(home: Path, tenants: list[str], store_url: str | None) -> None:
    from processor.home import init_home

    init_home(home, tenants)
    lines = []
    if store_url:
        lines += ["[store]", f'url = "{store_url}"', ""]
    lines += ["[sftp]", "enabled = false", "", "[daemon]", "workers = 2", "watch_stable_seconds = 0.1", ""]
    for t in tenants:
        lines += [f"[tenants.{t}]", f'name = "Bench {t}"', f'report_to = ["it@{t}.example"]', ""]
    (home / "rosterdrop.toml").write_text("\n".join(lines), encoding="utf-8")


def reset_postgres(url: str) -> None:
    from processor.apply.store import metadata, open_store

    engine = open_store(url, create=False)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    engine.dispose()


def reference_audit_rows(tmp: Path) -> int:
    from processor.context import Context
    from processor.pipeline import process_path

    home = tmp / "reference"
    write_home(home, ["reference"], None)
    ctx = Context.load(home)
    result = process_path(ctx, zip_sample(tmp / "ref" / "clean.zip"), "reference")
    assert result.status == "applied", result.status
    return audit_count(ctx.engine, result.run_id)


def audit_count(engine, run_id: str) -> int:
    from sqlalchemy import func, select

    from processor.apply.store import audit

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(audit).where(audit.c.run_id == run_id)).scalar_one()


def report_emails(engine, run_id: str) -> int:
    from sqlalchemy import func, select

    from processor.apply.store import outbox

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.run_id == run_id, outbox.c.kind == "run_report")).scalar_one()


def tenant_runs(engine, tenant: str) -> list[dict]:
    from processor.apply.runs import list_runs

    return list_runs(engine, tenant=tenant, limit=None)


def wait_for(predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def markers(folder: Path, tenant: str) -> list[int]:
    return [int(p.suffix[1:]) for p in folder.glob(f"{tenant}.*")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--store-url", help="a PostgreSQL URL (its tables are dropped and recreated); default SQLite")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = ap.parse_args()
    print(versions())
    print(f"store: {'PostgreSQL' if args.store_url else 'SQLite'}; {args.trials} trials; 2 workers")

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rd-kill-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    expected_audit = reference_audit_rows(tmp)
    if args.store_url:
        reset_postgres(args.store_url)
    pairs = [(f"t{i:02d}victim", f"t{i:02d}survivor") for i in range(1, args.trials + 1)]
    home = tmp / "home"
    write_home(home, [t for pair in pairs for t in pair], args.store_url)
    hook = tmp / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    folder = tmp / "markers"
    folder.mkdir(exist_ok=True)
    log_path = tmp / "daemon.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]), "RD_BENCH_MARKERS": str(folder)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with log_path.open("wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "processor", "serve", "--home", str(home)],
                                  stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)
    from processor.context import Context

    engine = Context.load(home).engine
    lost = twice = wrong = 0
    try:
        if not wait_for(lambda: b"serving" in log_path.read_bytes() or daemon.poll() is not None, 60):
            print("the daemon did not start; see", log_path)
            return 1
        for n, (victim, survivor) in enumerate(pairs, 1):
            start = time.monotonic()
            for tenant in (victim, survivor):
                zip_sample(home / "inbox" / tenant / "nightly.zip")
            pids = wait_for(lambda v=victim, s=survivor: (markers(folder, v), markers(folder, s))
                            if markers(folder, v) and markers(folder, s) else None, 60)
            if pids is None:
                print(f"trial {n:2d}: the two runs were never in flight together; see {log_path}")
                lost += 2
                continue
            os.kill(pids[0][0], signal.SIGKILL)
            done = wait_for(lambda v=victim, s=survivor: all(
                (rows := tenant_runs(engine, t)) and all(r["status"] in FINAL for r in rows) for t in (v, s)), 90)
            t_lost = t_twice = t_wrong = 0
            for tenant in (victim, survivor):
                rows = tenant_runs(engine, tenant)
                if not rows or not done:
                    t_lost += 1
                    continue
                t_twice += len(rows) > 1  # a second run of the same drop
                for r in rows:
                    if r["status"] != "applied":
                        t_wrong += 1
                    if audit_count(engine, r["run_id"]) != expected_audit or report_emails(engine, r["run_id"]) != 1:
                        t_twice += 1
            t_twice += len(markers(folder, survivor)) != 1  # the survivor's run started again elsewhere
            lost, twice, wrong = lost + t_lost, twice + t_twice, wrong + t_wrong
            statuses = "/".join(r["status"] for t in (victim, survivor) for r in tenant_runs(engine, t))
            print(f"trial {n:2d}: {time.monotonic() - start:5.1f} s  victim/survivor {statuses:<20} "
                  f"lost {t_lost}  twice {t_twice}  wrong status {t_wrong}", flush=True)
    finally:
        try:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(daemon.pid, signal.SIGKILL)
        engine.dispose()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nruns lost: {lost}\nruns processed twice: {twice}\nruns with a wrong status: {wrong}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
