"""Hostile-bundle benchmark (issue 13, defect 6): peak memory and time of `rosterdrop process` on
`../shared/adversary/rows_1m_bad.zip` (5 MB, 1M invalid rows) and on a generated bundle whose users.csv has
517 rows x 20,000 `metadata.*` columns, each case in its own process.

Each case runs in a fresh wrapper process whose only child is `rosterdrop process`; the wrapper reports
`getrusage(RUSAGE_CHILDREN)` (that child's peak RSS and CPU seconds, nothing inherited from this script).
Printed per case: exit code, status, peak RSS, wall and CPU seconds, issue rows and issues counted (rows
past the cap per code and file stand for many), the report folder's size. Target: each <= 1 GB peak RSS.

    .venv/bin/python bench/adversary_bench.py [--adversary ../shared/adversary] [--columns 20000 --rows 517]
        [--also-raised]   # the wide bundle once more with [limits] max_columns_per_file raised above it
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
RD = str(Path(PY).with_name("rosterdrop"))
SAMPLE = ROOT / "sample_drops" / "clean"

# Runs `rosterdrop process` as its only child and prints that child's figures as JSON.
WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                  "maxrss_kb": ru.ru_maxrss, "stdout": p.stdout.decode("utf-8", "replace"),
                  "stderr": p.stderr.decode("utf-8", "replace")[-2000:]}))
"""


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


def wide_bundle(dest: Path, rows: int = 517, columns: int = 20_000) -> Path:
    """The sample district with users.csv widened to `rows` rows x `columns` extra metadata.* columns
    (517 x 20,000: ~21 MB of CSV, a ~9 MB zip)."""
    files = {p.name: p.read_bytes() for p in SAMPLE.glob("*.csv")}
    reader = csv.reader(io.StringIO(files["users.csv"].decode("utf-8-sig")))
    header, *people = list(reader)
    extra = [f"metadata.x{i:05d}" for i in range(columns)]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header + extra)
    # A digit in every cell, pseudo-random: the zip stays under the compression-ratio cap, like the original.
    rng = random.Random(13)
    school = next(r for r in people if r[header.index("role")] == "student")[header.index("orgSourcedIds")]
    for i in range(rows):
        if i < len(people):
            row = list(people[i])
        else:
            row = [""] * len(header)
            row[header.index("sourcedId")] = f"w{i:05d}"
            row[header.index("status")] = "active"
            row[header.index("enabledUser")] = "true"
            row[header.index("orgSourcedIds")] = school
            row[header.index("role")] = "student"
            row[header.index("username")] = f"w{i:05d}"
            row[header.index("givenName")], row[header.index("familyName")] = "Wide", f"Row{i}"
        w.writerow(row + rng.choices("0123456789", k=columns))
    files["users.csv"] = out.getvalue().encode()
    path = dest / f"wide_{rows}x{columns}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def run_case(label: str, bundle: Path, work: Path, limits: str = "") -> None:
    home = work / label
    subprocess.run([RD, "--home", str(home), "init", "--tenant", "bench"], check=True, stdout=subprocess.DEVNULL)
    if limits:
        cfg = home / "rosterdrop.toml"
        cfg.write_text(cfg.read_text() + f"\n[limits]\n{limits}\n")
    cmd = [RD, "--home", str(home), "process", str(bundle), "--tenant", "bench", "--json"]
    out = json.loads(subprocess.run([PY, "-c", WRAPPER, *cmd], check=True, stdout=subprocess.PIPE).stdout)
    try:
        result = json.loads(out["stdout"])
    except json.JSONDecodeError:
        print(f"{label}: exit {out['rc']}, no run result; stderr: {out['stderr']}")
        return
    issues = result.get("issues", [])
    counted = sum(i.get("count", 1) for i in issues)
    report = Path(result["report"]).parent if result.get("report") else None
    size = sum(f.stat().st_size for f in report.iterdir()) if report and report.is_dir() else 0
    first = next((i["message"] for i in issues if i["code"] == "bad_bundle"), "")
    print(f"{label}")
    print(f"  bundle {bundle.name} ({bundle.stat().st_size / 1e6:.1f} MB){'  [limits] ' + limits if limits else ''}")
    print(f"  exit {out['rc']}  status {result['status']}  peak RSS {out['maxrss_kb'] / 1024:,.0f} MiB "
          f"({out['maxrss_kb'] * 1024 / 1e9:.2f} GB)  wall {out['wall']:.2f} s  cpu {out['cpu']:.2f} s")
    print(f"  issues: {len(issues):,} rows standing for {counted:,}; report folder {size / 1e6:.2f} MB")
    print(f"  stages (s): {result.get('timings', {})}")
    if first:
        print(f"  bad_bundle: {first[:160]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adversary", type=Path, default=ROOT.parent / "shared" / "adversary")
    ap.add_argument("--rows", type=int, default=517)
    ap.add_argument("--columns", type=int, default=20_000)
    ap.add_argument("--also-raised", action="store_true",
                    help="also run the wide bundle with max_columns_per_file raised to accept it")
    args = ap.parse_args()
    print(versions())
    with tempfile.TemporaryDirectory(prefix="rosterdrop-adversary-") as tmp:
        work = Path(tmp)
        big = args.adversary / "rows_1m_bad.zip"
        if big.exists():
            run_case("rows_1m_bad (1M invalid rows, default limits)", big, work / "a")
        else:
            print(f"{big} not found: skipped")
        wide = wide_bundle(work, args.rows, args.columns)
        run_case(f"wide ({args.rows} rows x {args.columns:,} metadata columns, default limits)", wide, work / "b")
        if args.also_raised:
            run_case(f"wide ({args.rows} rows x {args.columns:,} metadata columns, limit raised)", wide, work / "c",
                     f"max_columns_per_file = {args.columns + 100}")


if __name__ == "__main__":
    main()
