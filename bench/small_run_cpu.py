"""CPU of one small district's nightly, in process: what the fleet pays per drop besides interpreter start-up.

    .venv/bin/python bench/small_run_cpu.py [--runs 40] [--repeat 3]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/small_run_cpu.py   # the same for other code

A fresh SQLite home; sample_drops/clean is loaded once, then --runs nightlies, each the same bundle with one
user's givenName changed (one update, everything else unchanged), are processed one after the other through
`process_path`, as the daemon's worker does. CPU is the process's (every thread's) CPU seconds per run;
the floor is unzip + `pyarrow.csv.read_csv` of every member of the same zip, timed in the same process
right after. Each repeat is a new home. Prints min and median over the repeats; nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import pyarrow.csv as pacsv
from machine import machine_line

ROOT = Path(__file__).resolve().parent.parent


def bundles(folder: Path, runs: int) -> list[Path]:
    source = ROOT / "sample_drops" / "clean"
    users = (source / "users.csv").read_text(encoding="utf-8")
    first = users.splitlines()[1].split(",")
    out = []
    for i in range(runs + 1):
        changed = users if i == 0 else users.replace("," + first[8] + ",", f",{first[8]}{i},", 1)
        path = folder / f"drop{i}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(source.iterdir()):
                zf.writestr(f.name, changed if f.name == "users.csv" else f.read_bytes())
        out.append(path)
    return out


def floor(path: Path) -> float:
    t = time.process_time()
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            pacsv.read_csv(io.BytesIO(zf.read(name)))
    return time.process_time() - t


def one_repeat(runs: int) -> tuple[float, float, float]:
    from processor.context import Context
    from processor.home import init_home
    from processor.pipeline import process_path

    tmp = Path(tempfile.mkdtemp(prefix="rd-small-"))
    home = tmp / "home"
    init_home(home, ["bench"])
    with (home / "rosterdrop.toml").open("a", encoding="utf-8") as f:
        f.write("min_deactivated_count = 0\n")
    ctx = Context.load(home)
    drops = bundles(tmp, runs)
    first = process_path(ctx, drops[0], "bench")
    assert first.status.value == "applied", first.status
    cpu, wall = time.process_time(), time.monotonic()
    for d in drops[1:]:
        result = process_path(ctx, d, "bench")
        assert result.status.value == "applied" and result.counts["users"].updated == 1, result.status
    cpu, wall = (time.process_time() - cpu) / runs, (time.monotonic() - wall) / runs
    floors = sorted(floor(d) for d in drops[1:11])
    ctx.engine.dispose()
    return cpu, wall, floors[len(floors) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import processor

    print(machine_line(("pandas", "pyarrow", "sqlalchemy")))
    print(f"code: {Path(processor.__file__).resolve().parent.parent}")
    got = [one_repeat(args.runs) for _ in range(args.repeat)]
    for label, i in (("cpu per run", 0), ("wall per run", 1), ("read floor cpu", 2)):
        vals = [g[i] * 1000 for g in got]
        print(f"{label:15s} min {min(vals):7.1f} ms   median {statistics.median(vals):7.1f} ms")
    ratios = [g[0] / g[2] for g in got]
    print(f"cpu / floor     min {min(ratios):7.1f}x    median {statistics.median(ratios):7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
