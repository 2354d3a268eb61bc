"""Time the hourly pause-notice job (processor/calendar.py) over many tenants.

    python bench/pause_notices_bench.py [--tenants 500] [--store postgresql+psycopg://...]

Every tenant has a summer pause. Prints the CPU and wall seconds of one run when nothing is due, when every
tenant's start notice is due (one claim + one queued email each), and the hour after (every claim taken).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy

from processor.calendar import send_pause_notices
from processor.context import Context
from processor.home import init_home


def timed(label: str, fn) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    n = fn()
    print(f"{label:<34} {n:>6} notices  cpu {time.process_time() - cpu:6.3f} s  wall {time.perf_counter() - wall:6.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=500)
    ap.add_argument("--store", default=None, help="a PostgreSQL URL (its tables are dropped and recreated)")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="rd-pause-bench-")) / "home"
    init_home(home, [])
    store = f'[store]\nurl = "{args.store}"\n\n' if args.store else ""
    tenants = "".join(f'[tenants.t{i}]\nname = "District {i}"\nreport_to = ["it@t{i}.example"]\n'
                      f'timezone = "America/Chicago"\n[[tenants.t{i}.pauses]]\nfrom = 2027-06-12\n'
                      f'until = 2027-08-14\nmode = "additions_only"\n\n' for i in range(args.tenants))
    (home / "rosterdrop.toml").write_text(store + "[sftp]\nenabled = false\n\n" + tenants, encoding="utf-8")
    if args.store:
        from processor.apply.schema import create_at_head
        from processor.apply.store import metadata, open_store

        engine = open_store(args.store, create=False)
        metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        create_at_head(engine)
        engine.dispose()
    ctx = Context.load(home)
    chicago = ZoneInfo("America/Chicago")
    print(f"{platform.node()} Python {sys.version.split()[0]} SQLAlchemy {sqlalchemy.__version__} "
          f"{ctx.engine.dialect.name}, {args.tenants} tenants")
    timed("nothing due (2027-06-01)", lambda: send_pause_notices(ctx, datetime(2027, 6, 1, 9, tzinfo=chicago).timestamp()))
    timed("every start notice due", lambda: send_pause_notices(ctx, datetime(2027, 6, 11, 9, tzinfo=chicago).timestamp()))
    timed("the hour after (all claimed)", lambda: send_pause_notices(ctx, datetime(2027, 6, 11, 10, tzinfo=chicago).timestamp()))


if __name__ == "__main__":
    main()
