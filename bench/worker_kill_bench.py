"""Worker death: kill -9 of one worker while another tenant's run is in flight, repeated.

    .venv/bin/python bench/worker_kill_bench.py [--trials 20] [--store-url URL] [--keep DIR]

Each trial starts a real `rosterdrop serve` (2 workers, watched inboxes) on a fresh home with two tenants:
the same small district (sample_drops/clean) is dropped into both inboxes; a hook (a sitecustomize on the
daemon's PYTHONPATH) makes each worker wait in the read stage, holding its tenant's lock, and leave a
marker naming its pid. Once both runs are in flight, the victim tenant's worker is killed with SIGKILL;
the survivor is let go once the victim's run has started again in a new worker (so the survivor's run is
still in flight while the daemon deals with the death), and the victim's retry with it.
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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from machine import machine_line

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
        # In flight, holding the tenant's lock, until the bench says go (or 60 s).
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(_markers, "go." + tenant)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return _read(path, *args, **kwargs)
    _p.read_bundle = _slow_read
'''


def versions() -> str:
    return machine_line(("sqlalchemy", "pandas", "pyarrow", "psycopg"))


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
    return [int(p.suffix[1:]) for p in folder.glob(f"{tenant}.[0-9]*")]


class Daemon:
    """`rosterdrop serve` on its own home, with the hook, its log in a file."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.log_path = home.parent / "daemon.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "processor", "serve", "--home", str(home)],
                                         stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)

    def started(self) -> bool:
        return bool(wait_for(lambda: b"serving" in self.log_path.read_bytes() or self.proc.poll() is not None, 60)) \
            and self.proc.poll() is None

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def trial(n: int, tmp: Path, env: dict[str, str], store_url: str | None, expected_audit: int) -> tuple[int, int, int]:
    """One daemon, one kill; (lost, processed twice, wrong status)."""
    from processor.context import Context

    victim, survivor = f"t{n:02d}victim", f"t{n:02d}survivor"
    home = tmp / f"trial{n:02d}" / "home"
    write_home(home, [victim, survivor], store_url)
    folder = Path(env["RD_BENCH_MARKERS"])
    start = time.monotonic()
    daemon = Daemon(home, env)
    engine = Context.load(home).engine
    try:
        if not daemon.started():
            print(f"trial {n:2d}: the daemon did not start; see {daemon.log_path}")
            return 2, 0, 0
        for tenant in (victim, survivor):
            zip_sample(home / "inbox" / tenant / "nightly.zip")
        pids = wait_for(lambda: (markers(folder, victim), markers(folder, survivor))
                        if markers(folder, victim) and markers(folder, survivor) else None, 60)
        if pids is None:
            print(f"trial {n:2d}: the two runs were never in flight together; see {daemon.log_path}")
            return 2, 0, 0
        os.kill(pids[0][0], signal.SIGKILL)
        # The survivor stays in flight until the victim's run has been handed to a new worker (or 60 s).
        wait_for(lambda: len(markers(folder, victim)) >= 2, 60)
        for tenant in (victim, survivor):
            (folder / f"go.{tenant}").touch()
        done = wait_for(lambda: all((rows := tenant_runs(engine, t)) and all(r["status"] in FINAL for r in rows)
                                    for t in (victim, survivor)), 90)
        # Anything still on its way (a second processing of the survivor) shows before the daemon stops.
        time.sleep(1.0)
        lost = twice = wrong = 0
        for tenant in (victim, survivor):
            rows = tenant_runs(engine, tenant)
            if not rows or not done:
                lost += 1
                continue
            twice += len(rows) > 1  # a second run of the same drop
            for r in rows:
                wrong += r["status"] != "applied"
                twice += audit_count(engine, r["run_id"]) != expected_audit or report_emails(engine, r["run_id"]) != 1
        twice += len(markers(folder, survivor)) != 1  # the survivor's run started again elsewhere
        statuses = "/".join(r["status"] for t in (victim, survivor) for r in tenant_runs(engine, t))
        print(f"trial {n:2d}: {time.monotonic() - start:5.1f} s  victim/survivor {statuses:<20} "
              f"lost {lost}  twice {twice}  wrong status {wrong}", flush=True)
        return lost, twice, wrong
    finally:
        daemon.stop()
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--store-url", help="a PostgreSQL URL (its tables are dropped and recreated); default SQLite")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = ap.parse_args()
    print(versions())
    print(f"store: {'PostgreSQL' if args.store_url else 'SQLite'}; {args.trials} trials, a new daemon each; "
          "2 workers")

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rd-kill-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        expected_audit = reference_audit_rows(tmp)
        if args.store_url:
            reset_postgres(args.store_url)
        hook = tmp / "hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(HOOK)
        folder = tmp / "markers"
        folder.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]),
               "RD_BENCH_MARKERS": str(folder)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        totals = [0, 0, 0]
        for n in range(1, args.trials + 1):
            for i, v in enumerate(trial(n, tmp, env, args.store_url, expected_audit)):
                totals[i] += v
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    lost, twice, wrong = totals
    print(f"\nruns lost: {lost}\nruns processed twice: {twice}\nruns with a wrong status: {wrong}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
