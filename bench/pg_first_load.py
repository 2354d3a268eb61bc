"""How a PostgreSQL first load could write one big roster table, timed side by side (issue 18).

    .venv/bin/python bench/pg_first_load.py SQLITE_STORE PG_URL [--table enrollments] [--other-rows 200000]

SQLITE_STORE is a store a first load filled (e.g. $TMPDIR/rosterdrop-bench/home-300000/rosterdrop.db after
pipeline_bench.py); its rows of TABLE, in key order, are the CSV every strategy COPYs (prepared untimed).
PG_URL is a scratch database (tables exp_* are created and dropped). Each strategy starts from a shared
table that already holds another tenant's rows (--other-rows) and runs in one transaction:

  direct      COPY into the shared table with its primary key (what the writer does)
  staging     COPY into an unindexed TEMP table, then INSERT ... SELECT ... ORDER BY key into the shared one
  partition   the shared table LIST-partitioned by tenant: COPY into a new unindexed table, add its primary
              key, ATTACH it as the tenant's partition (the build-the-key-after variant that takes no
              exclusive lock on the shared table: prints the locks it held)

Plain `build the key after the load` on the shared table itself (DROP / ADD PRIMARY KEY) needs an ACCESS
EXCLUSIVE lock on a table every tenant uses, so it is not measured. Prints seconds per strategy.
"""

from __future__ import annotations

import argparse
import csv
import io
import sqlite3
import time

import psycopg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sqlite_store")
    ap.add_argument("pg_url", help="postgresql://... (a scratch database)")
    ap.add_argument("--table", default="enrollments")
    ap.add_argument("--other-rows", type=int, default=200_000)
    args = ap.parse_args()
    src = sqlite3.connect(args.sqlite_store)
    info = list(src.execute(f"PRAGMA table_info({args.table})"))
    cols = [r[1] for r in info]
    types = {r[1]: ("bigint" if r[2].upper().startswith("BIGINT") else "text") for r in info}
    buf = io.StringIO()
    w = csv.writer(buf)
    n = 0
    for row in src.execute(f"SELECT * FROM {args.table} ORDER BY tenant, sourced_id"):
        w.writerow(["" if v is None else v for v in row])
        n += 1
    payload = buf.getvalue().encode()
    del buf
    print(f"{args.table}: {n:,} rows, {len(payload) / 1e6:.0f} MB of CSV; another tenant's {args.other_rows:,} "
          "rows already in the shared table", flush=True)
    pg = psycopg.connect(args.pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    columns = ", ".join(f"{c} {types[c]}{' NOT NULL' if c in ('tenant', 'sourced_id') else ''}" for c in cols)
    other = ", ".join("'other'" if c == "tenant" else "'x' || g" if c == "sourced_id" else
                      "0" if types[c] == "bigint" else "''" for c in cols)

    def copy(cur, table: str) -> None:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as cp:
            for i in range(0, len(payload), 1 << 20):
                cp.write(payload[i:i + (1 << 20)])

    def shared(partitioned: bool) -> None:
        pg.execute("DROP TABLE IF EXISTS exp_shared CASCADE")
        pg.execute(f"CREATE TABLE exp_shared ({columns}, PRIMARY KEY (tenant, sourced_id))"
                   + (" PARTITION BY LIST (tenant)" if partitioned else ""))
        if partitioned:
            pg.execute("CREATE TABLE exp_shared_other PARTITION OF exp_shared FOR VALUES IN ('other')")
        pg.execute(f"INSERT INTO exp_shared SELECT {other} FROM generate_series(1, {args.other_rows}) g")
        pg.execute("ANALYZE exp_shared")

    tenant = "bench"
    for kind in ("direct", "staging", "partition"):
        shared(kind == "partition")
        detail, locks = "", []
        with pg.transaction():
            cur = pg.cursor()
            start = time.perf_counter()
            if kind == "direct":
                copy(cur, "exp_shared")
            elif kind == "staging":
                cur.execute("CREATE TEMP TABLE exp_staging (LIKE exp_shared) ON COMMIT DROP")
                copy(cur, "exp_staging")
                mid = time.perf_counter()
                cur.execute("INSERT INTO exp_shared SELECT * FROM exp_staging ORDER BY tenant, sourced_id")
                detail = f" (COPY {mid - start:.2f} s, merge {time.perf_counter() - mid:.2f} s)"
            else:
                cur.execute("CREATE TABLE exp_shared_new (LIKE exp_shared)")
                copy(cur, "exp_shared_new")
                mid = time.perf_counter()
                cur.execute("ALTER TABLE exp_shared_new ADD PRIMARY KEY (tenant, sourced_id)")
                key = time.perf_counter()
                cur.execute(f"ALTER TABLE exp_shared ATTACH PARTITION exp_shared_new FOR VALUES IN ('{tenant}')")
                detail = (f" (COPY {mid - start:.2f} s, primary key {key - mid:.2f} s, attach "
                          f"{time.perf_counter() - key:.2f} s)")
                locks = cur.execute("SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                    "WHERE l.pid = pg_backend_pid() AND c.relname IN ('exp_shared', 'exp_shared_pkey')"
                                    " ORDER BY 1, 2").fetchall()
            took = time.perf_counter() - start
        print(f"{kind:10s} {took:6.2f} s{detail}", flush=True)
        if locks:
            print("           locks on the shared table: " + ", ".join(f"{r} {m}" for r, m in locks))
    pg.execute("DROP TABLE IF EXISTS exp_shared CASCADE")


if __name__ == "__main__":
    main()
