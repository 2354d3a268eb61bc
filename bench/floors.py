"""The floors the pipeline is compared with, each measured in its own process (run it through measure.py).

    python bench/floors.py read BUNDLE.zip
    python bench/floors.py write STORE_URL TENANT WORKDIR [--one-transaction]

`read`: unzip + `pyarrow.csv.read_csv` (all columns as strings) of every CSV member of the bundle: what
reading the drop costs before any of our code runs.

`write`: the store's raw write floor for the rows a first load stored. Every roster table of the tenant is
read back from STORE_URL (not timed), then written raw into an equivalent table (same columns, same primary
key, key order): SQLite `executemany` into a WITHOUT ROWID table in a fresh file with the store's pragmas;
PostgreSQL `COPY ... (FORMAT csv)` into a table beside the store's, CSV prepared beforehand; then commit.
Only the inserts and the commit are timed. PostgreSQL's own CPU (the server) is in neither the floor's nor
rosterdrop's CPU seconds: compare walls on PostgreSQL. A commit per table is the floor issue 18 names;
`--one-transaction` commits once after every table, as a run's apply must (nothing half-applied), and
reports that final commit apart (`final_commit`): what atomicity itself costs on each engine.

Prints one JSON object: wall and CPU seconds of the timed part, rows, and per-table figures.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import zipfile
from pathlib import Path


def read_floor(bundle: Path) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows, files = 0, 0
    wall, cpu = time.perf_counter(), time.process_time()
    with zipfile.ZipFile(bundle) as zf:
        for name in zf.namelist():
            if not name.endswith(".csv"):
                continue
            data = zf.read(name)
            header = data.split(b"\n", 1)[0].decode().strip().split(",")
            t = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}))
            rows += t.num_rows
            files += 1
            del t, data
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "rows": rows, "files": files}


def write_floor(url: str, tenant: str, work: Path, one_transaction: bool = False) -> dict:
    """one_transaction: every table in one transaction committed once at the end, as a run's apply must
    (nothing half-applied), instead of a commit per table; the final commit is timed and reported apart."""
    from sqlalchemy import MetaData, create_engine, event, select

    from processor.apply.store import ENTITY_TABLES, _sqlite_pragmas

    source = create_engine(url)
    sqlite = source.dialect.name == "sqlite"
    if sqlite:
        target_file = work / "write-floor.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target_file}{suffix}").unlink(missing_ok=True)
        target = create_engine(f"sqlite:///{target_file}")
        event.listen(target, "connect", _sqlite_pragmas)
    else:
        target = source
    md = MetaData()
    copies = {name: t.to_metadata(md, name=f"floor_{name}") for name, t in ENTITY_TABLES.items()}
    md.drop_all(target)
    md.create_all(target)
    total_wall = total_cpu = 0.0
    total_rows = 0
    tables = {}
    shared = target.raw_connection() if one_transaction else None
    commit_wall = 0.0
    try:
        for name, table in ENTITY_TABLES.items():
            cols = [c.name for c in table.columns]
            with source.connect() as conn:
                rows = conn.execute(select(*table.columns).where(table.c.tenant == tenant)
                                    .order_by(table.c.tenant, table.c.sourced_id)).all()
            if not rows:
                continue
            copy_name = copies[name].name
            raw = shared if shared is not None else target.raw_connection()
            try:
                if sqlite:
                    sql = f"INSERT INTO {copy_name} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
                    values = [tuple(r) for r in rows]
                else:
                    buf = io.StringIO()
                    w = csv.writer(buf)
                    # NULL is an unquoted empty field in CSV COPY; an empty string must be quoted.
                    for r in rows:
                        w.writerow(["" if v is None else v for v in r])
                    payload = buf.getvalue().encode()
                    del buf
                del rows
                wall, cpu = time.perf_counter(), time.process_time()
                cur = raw.cursor()
                if sqlite:
                    cur.executemany(sql, values)
                else:
                    with cur.copy(f"COPY {copy_name} ({', '.join(cols)}) FROM STDIN (FORMAT csv)") as cp:
                        for start in range(0, len(payload), 1 << 20):
                            cp.write(payload[start:start + (1 << 20)])
                if shared is None:
                    raw.commit()
                took, took_cpu = time.perf_counter() - wall, time.process_time() - cpu
                n = len(values) if sqlite else payload.count(b"\n")
                values = payload = None
            finally:
                if shared is None:
                    raw.close()
            tables[name] = {"rows": n, "wall": round(took, 3)}
            total_wall += took
            total_cpu += took_cpu
            total_rows += n
        if shared is not None:
            wall, cpu = time.perf_counter(), time.process_time()
            shared.commit()
            commit_wall = time.perf_counter() - wall
            total_wall += commit_wall
            total_cpu += time.process_time() - cpu
    finally:
        if shared is not None:
            shared.close()
        if not sqlite:
            md.drop_all(target)
        target.dispose()
        source.dispose()
        if sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target_file}{suffix}").unlink(missing_ok=True)
    return {"wall": total_wall, "cpu": total_cpu, "rows": total_rows, "tables": tables,
            "engine": "sqlite executemany" if sqlite else "postgresql COPY",
            "transactions": "one" if one_transaction else "per table", "final_commit": round(commit_wall, 3)}


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "read":
        print(json.dumps(read_floor(Path(sys.argv[2]))))
    elif len(sys.argv) >= 5 and sys.argv[1] == "write":
        one = "--one-transaction" in sys.argv[5:]
        print(json.dumps(write_floor(sys.argv[2], sys.argv[3], Path(sys.argv[4]), one_transaction=one)))
    else:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
