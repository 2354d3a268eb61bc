"""Can a SQLite first load write one table while validating the next, in one process (issue 18)?

    .venv/bin/python bench/write_overlap.py STORE.db BUNDLE.zip [--table enrollments] [--repeat 2]

STORE.db is a SQLite store that holds a first load (e.g. $TMPDIR/rosterdrop-bench/home-300000/rosterdrop.db
after pipeline_bench.py), BUNDLE the bundle to validate (d300000.zip). The idea this measures: the CPU stages
(read, validate, convert) run before the first row of a first load is written; sqlite3 releases the GIL in
`sqlite3_step`, so a pipelined apply might write one table on one core while the next one is validated on
the other. But the DB-API binds every row's values with the GIL held, so the two threads contend for it.

Per repeat, three timings in this process (the rows are read from STORE.db beforehand, untimed, as
bench/floors.py does):
  write     executemany of TABLE's rows, in key order, in slices of 50,000, into a fresh file with the
            store's pragmas, then commit
  cpu       read_bundle + validate of BUNDLE (the work a pipelined apply would move beside the writes)
  together  both at once, in two threads: the wall until both are done, and when each finished

If the two overlapped fully, `together` would be max(write, cpu); if the GIL serialised them, write + cpu.
Prints min / median over the repeats and the share of `cpu` that the overlap hid. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # machine.py
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # processor, from a checkout
from machine import machine_line  # noqa: E402

# Imported here, not in cpu(): an import inside the first timed call would count as validation time.
from processor.apply.store import _sqlite_pragmas  # noqa: E402
from processor.bundle.read import read_bundle  # noqa: E402
from processor.bundle.unpack import Limits  # noqa: E402
from processor.config import Policy  # noqa: E402
from processor.validate.run import validate  # noqa: E402

SLICE = 50_000


def load_rows(store: Path, table: str) -> tuple[str, list[tuple]]:
    src = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        ddl = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        if ddl is None:
            raise SystemExit(f"{store} has no table {table!r}")
        rows = src.execute(f"SELECT * FROM {table} ORDER BY tenant, sourced_id").fetchall()
    finally:
        src.close()
    return ddl[0], rows


def fresh(work: Path, ddl: str) -> sqlite3.Connection:
    path = work / "overlap.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path, check_same_thread=False)
    _sqlite_pragmas(db, None)  # the store's own pragmas, as bench/floors.py sets them
    db.execute(ddl)
    db.commit()
    return db


def write(db: sqlite3.Connection, table: str, rows: list[tuple], out: dict, start: float) -> None:
    sql = f"INSERT INTO {table} VALUES ({', '.join('?' for _ in rows[0])})"
    for i in range(0, len(rows), SLICE):
        db.executemany(sql, rows[i:i + SLICE])
    db.commit()
    out["write"] = time.perf_counter() - start


def cpu(bundle: Path, out: dict, start: float) -> None:
    validate(read_bundle(bundle, Limits()), Policy())
    out["cpu"] = time.perf_counter() - start


def mm(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--table", default="enrollments")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(machine_line(("pandas", "pyarrow"), f", SQLite {sqlite3.sqlite_version}"))
    ddl, rows = load_rows(args.store, args.table)
    if not rows:
        raise SystemExit(f"{args.store}: {args.table} is empty (load a first drop first)")
    print(f"{args.table}: {len(rows):,} rows; cpu: read_bundle + validate of {args.bundle.name}", flush=True)
    figures: dict[str, list[float]] = {k: [] for k in ("write", "cpu", "together", "hidden")}
    with tempfile.TemporaryDirectory(prefix="write-overlap-") as tmp:
        work = Path(tmp)
        for rep in range(args.repeat):
            alone: dict = {}
            db = fresh(work, ddl)
            write(db, args.table, rows, alone, time.perf_counter())
            db.close()
            cpu(args.bundle, alone, time.perf_counter())
            both: dict = {}
            db = fresh(work, ddl)
            start = time.perf_counter()
            threads = [threading.Thread(target=write, args=(db, args.table, rows, both, start)),
                       threading.Thread(target=cpu, args=(args.bundle, both, start))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            together = time.perf_counter() - start
            db.close()
            hidden = (alone["write"] + alone["cpu"] - together) / alone["cpu"]
            for key, value in (("write", alone["write"]), ("cpu", alone["cpu"]), ("together", together),
                               ("hidden", hidden)):
                figures[key].append(value)
            print(f"  repeat {rep + 1}: write {alone['write']:.2f} s, cpu {alone['cpu']:.2f} s alone "
                  f"(sum {alone['write'] + alone['cpu']:.2f}); together {together:.2f} s (write done at "
                  f"{both['write']:.2f}, cpu at {both['cpu']:.2f}); {hidden:.0%} of cpu hidden", flush=True)
            os.sync()  # the next repeat's writes must not pay for this one's write-back
    print(f"\nmin / median over {args.repeat}: write {mm(figures['write'])} s, cpu {mm(figures['cpu'])} s, "
          f"together {mm(figures['together'])} s (full overlap would be the longer alone, none their sum); "
          f"share of cpu hidden by the overlap {min(figures['hidden']):.0%} / {statistics.median(figures['hidden']):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
