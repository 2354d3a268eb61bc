"""What a SQLite first load's commit costs, and how much of it is the WAL checkpoint (issue 18).

    .venv/bin/python bench/sqlite_commit.py CONFIG BUNDLE [--tenant bench] [--repeat 1]

CONFIG is a rosterdrop.toml with a SQLite store (e.g. $TMPDIR/rosterdrop-bench/home-300000/rosterdrop.toml
after pipeline_bench.py) and the tenant; BUNDLE the first bundle. Per repeat and per mode, a fresh home is made
in a temporary folder (`db upgrade`), then `rosterdrop process BUNDLE` runs in this process, with every
database commit over 0.5 s timed:

  auto   the store's pragmas as they are: SQLite checkpoints the WAL into the database file at the end of
         the commit that makes it pass 1,000 pages (the first load's one big transaction)
  manual the same, but PRAGMA wal_autocheckpoint=0: the commit only writes the WAL, and the checkpoint
         (wal_checkpoint(TRUNCATE)) is timed separately after the run
  passive PRAGMA wal_autocheckpoint=0 too, and right after every commit over 0.5 s the committing connection
         runs PRAGMA wal_checkpoint(PASSIVE) (timed with the commit): the checkpoint SQLite's automatic one
         would make, at the same moment, but asked for explicitly
  truncate the same with wal_checkpoint(TRUNCATE) (waits for readers, then empties the WAL file)

Prints per mode: the commit, the checkpoint after (manual; stops at the first run that is not applied), the run's wall, CPU (user + sys). Nothing is
asserted; run modes alternately (each repeat does both) because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path


def one(config: Path, bundle: Path, tenant: str, mode: str) -> dict:
    from sqlalchemy.engine import base

    from processor.apply import store
    from processor.cli import main

    home = Path(tempfile.mkdtemp(prefix=f"sqlite-commit-{mode}-"))
    try:
        shutil.copy(config, home / "rosterdrop.toml")
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(["--home", str(home), "db", "upgrade"])
            except SystemExit:
                pass
        commits: list[float] = []
        pragmas, commit_impl = store._sqlite_pragmas, base.Connection._commit_impl

        def with_mode(dbapi_conn, record):
            pragmas(dbapi_conn, record)
            if mode in ("manual", "passive", "truncate"):
                dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

        def timed_commit(self):
            start = time.perf_counter()
            commit_impl(self)
            if mode in ("passive", "truncate") and time.perf_counter() - start > 0.5:
                self.connection.dbapi_connection.execute(f"PRAGMA wal_checkpoint({mode.upper()})").fetchall()
            if (took := time.perf_counter() - start) > 0.5:
                commits.append(took)

        store._sqlite_pragmas, base.Connection._commit_impl = with_mode, timed_commit
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    code = main(["--home", str(home), "process", str(bundle), "--tenant", tenant, "--json"])
                except SystemExit as exc:
                    code = exc.code
            if code != 0:  # figures of a failed run would be meaningless (a config of another store, say)
                raise SystemExit(f"rosterdrop process exited {code} in mode {mode}: {out.getvalue()[-300:]}")
        finally:
            store._sqlite_pragmas, base.Connection._commit_impl = pragmas, commit_impl
        wall = time.perf_counter() - wall
        start = time.perf_counter()
        db = sqlite3.connect(home / "rosterdrop.db")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        checkpoint = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        return {"commit": sum(commits), "checkpoint_after": checkpoint, "wall": wall,
                "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
                "db_bytes": os.path.getsize(home / "rosterdrop.db")}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--tenant", default="bench")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--modes", nargs="+", choices=("auto", "manual", "passive", "truncate"), default=["auto", "manual"])
    args = ap.parse_args()
    for r in range(args.repeat):
        for mode in args.modes:
            f = one(args.config, args.bundle, args.tenant, mode)
            print(f"repeat {r + 1} {mode:6s}: commit {f['commit']:.2f} s, checkpoint after "
                  f"{f['checkpoint_after']:.2f} s, run wall {f['wall']:.2f} s, cpu user {f['user']:.2f} "
                  f"sys {f['sys']:.2f} s, store {f['db_bytes'] / 1e9:.2f} GB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
