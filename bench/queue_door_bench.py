"""What the procrastinate backend adds to a door: receive() of one small drop (spool, run row; with
procrastinate also the drop's bytes and the tenant's wake-up job, in the same transaction), local vs
procrastinate backend, both on the same PostgreSQL store. Wall and CPU per receive, min / median.

    .venv/bin/python bench/queue_door_bench.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/rd_scratch \
        [--drops 60] [--repeat 2]

The database given is emptied (DROP SCHEMA public CASCADE) before and after each run: use a scratch one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TENANTS = 10


def empty(url: str) -> None:
    from processor.apply.store import open_store

    engine = open_store(url, create=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def one_run(url: str, backend: str, drops: int, tmp: Path) -> tuple[list[float], list[float]]:
    from processor.cli import main
    from processor.context import Context
    from processor.home import init_home
    from processor.pipeline import receive
    from tests.bundles import CLEAN, USERS, make_bundle, with_changes
    from tests.conftest import write_config

    empty(url)
    home = tmp / backend
    tenants = [f"t{i}" for i in range(TENANTS)]
    init_home(home, tenants)
    write_config(home, {t: {} for t in tenants}, url)
    with (home / "rosterdrop.toml").open("a") as f:
        f.write(f'\n[queue]\nbackend = "{backend}"\n')
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--home", str(home), "db", "upgrade", "--json"]) == 0
    ctx = Context.load(home)
    bundles = [make_bundle(tmp / "drops" / backend, with_changes(CLEAN, users_csv=USERS.replace("Tara", f"Tara{n}")),
                           name=f"d{n}") for n in range(drops)]
    walls, cpus = [], []
    for n, path in enumerate(bundles):
        w, c = time.perf_counter(), time.process_time()
        receive(ctx, path, tenants[n % TENANTS], source="watch", move=True)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    ctx.engine.dispose()
    empty(url)
    return walls[5:], cpus[5:]  # the first few warm the connection pool and the imports


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg-url", required=True)
    ap.add_argument("--drops", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from importlib.metadata import version

    import procrastinate  # noqa: F401
    import psycopg
    import sqlalchemy

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; python "
          f"{platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}, "
          f"procrastinate {version('procrastinate')}")
    print(f"receive() of a {TENANTS}-tenant round of small zips (~3 KB), {args.drops} drops, first 5 left out")
    results: dict[str, list[tuple[float, float]]] = {"local": [], "procrastinate": []}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(args.repeat):
            for backend in results:
                walls, cpus = one_run(args.pg_url, backend, args.drops, Path(d) / str(rep))
                results[backend].append((statistics.median(walls), statistics.median(cpus)))
                print(f"  rep {rep} {backend:13s} wall ms min {min(walls) * 1e3:6.2f} median "
                      f"{statistics.median(walls) * 1e3:6.2f}   cpu ms min {min(cpus) * 1e3:5.2f} median "
                      f"{statistics.median(cpus) * 1e3:5.2f}")
    local_cpu = min(c for _, c in results["local"])
    extra_cpu = min(c for _, c in results["procrastinate"]) - local_cpu
    print(f"procrastinate adds {extra_cpu * 1e3:.2f} ms CPU per drop at the door (best medians; local "
          f"{local_cpu * 1e3:.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
