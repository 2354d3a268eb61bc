"""District-scale pipeline benchmark: first load and a 1%-changed nightly, end to end through
`rosterdrop process`, with the time per stage, rows/s, peak RSS and the pyarrow CSV floor.

    .venv/bin/python bench/pipeline_bench.py --students 50000 300000 [--store sqlite|postgresql] [--keep DIR]

Each run is its own `rosterdrop process` subprocess (so peak RSS is that run's alone) on a fresh home.
Prints figures only; nothing is asserted (targets are in bench/README.md).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def versions() -> str:
    import pandas
    import pyarrow
    import sqlalchemy

    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}\n"
            f"python {platform.python_version()}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, "
            f"sqlalchemy {sqlalchemy.__version__}")


def generate(students: int, out: Path) -> tuple[Path, Path]:
    first, nightly = out / f"d{students}.zip", out / f"d{students}-nightly.zip"
    if not first.exists():
        schools = max(2, students // 2500)
        subprocess.run([PY, "-m", "processor", "generate", "--out", str(first), "--schools", str(schools),
                        "--students", str(students), "--seed", "1", "--nightly", str(nightly), "--changes", "1"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return first, nightly


def floor(zip_path: Path) -> tuple[float, int]:
    """Parsing the same CSVs with pyarrow.csv.read_csv alone: the floor for the read stage."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rows = 0
    start = time.perf_counter()
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            if not name.endswith(".csv"):
                continue
            data = zf.read(name)
            header = data.split(b"\n", 1)[0].decode().strip().split(",")
            t = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}))
            rows += t.num_rows
    return time.perf_counter() - start, rows


def run(home: Path, bundle: Path) -> tuple[dict, float, float]:
    """One `rosterdrop process` in its own process; wait4 gives that child's own peak RSS."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        # Without PYTHONDONTWRITEBYTECODE (set in some sandboxes): a deployed daemon has its bytecode cached,
        # and compiling the package from source at every start is not the pipeline's time.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        proc = subprocess.Popen([PY, "-m", "processor", "--home", str(home), "process", str(bundle), "--tenant",
                                 "bench", "--json"], stdout=out, stderr=err, cwd=ROOT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code not in (0, 3):
            raise SystemExit(f"process failed ({code}): {err.read()[-2000:]}")
        return json.loads(out.read()), wall, usage.ru_maxrss / 1024


def setup_home(home: Path, store_url: str | None) -> None:
    subprocess.run([PY, "-m", "processor", "--home", str(home), "init", "--tenant", "bench"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    cfg = home / "rosterdrop.toml"
    text = cfg.read_text().replace("[tenants.bench.policy]\n", "[tenants.bench.policy]\nmax_deactivated_percent = 50\n")
    if store_url:
        text = text.replace('url = "sqlite:///rosterdrop.db"', f'url = "{store_url}"')
    cfg.write_text(text)


def report(label: str, result: dict, wall: float, peak_mb: float, rows: int) -> None:
    t = result.get("timings", {})
    stages = " ".join(f"{k} {v:.2f}" for k, v in t.items())
    c = result["counts"]
    changed = {e: f"+{v['created']} ~{v['updated']} -{v['deactivated']}" for e, v in c.items()}
    print(f"  {label:9s} {result['status']:8s} wall {wall:6.2f} s  peak RSS {peak_mb:7.0f} MB  "
          f"{rows / wall:10,.0f} rows/s")
    print(f"            stages: {stages}")
    print(f"            changes: {changed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, nargs="+", default=[50000, 300000])
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/rosterdrop_bench")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "rosterdrop-bench"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(versions())
    print(f"store: {args.store}")
    for n in args.students:
        first, nightly = generate(n, work)
        floor_s, rows = floor(first)
        print(f"\n{n:,} students: {rows:,} rows, {first.stat().st_size / 1e6:.1f} MB zip; "
              f"pyarrow read_csv floor {floor_s:.2f} s")
        home = work / f"home-{n}"
        shutil.rmtree(home, ignore_errors=True)
        url = None
        if args.store == "postgresql":
            db = args.pg_url.rsplit("/", 1)[1]
            subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"DROP DATABASE IF EXISTS {db}",
                            "-c", f"CREATE DATABASE {db}"], check=True)
            url = args.pg_url
        setup_home(home, url)
        result, wall, peak = run(home, first)
        report("first", result, wall, peak, rows)
        print(f"            read stage / pyarrow floor: {result['timings'].get('read', 0) / floor_s:.1f}x")
        result, wall, peak = run(home, nightly)
        report("nightly", result, wall, peak, rows)
        print(f"            report stage (render + write): {result['timings'].get('report', 0):.2f} s")


if __name__ == "__main__":
    main()
